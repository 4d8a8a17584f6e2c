//! The tables a session offers, scoped. Under a company or owner scope every table is a
//! scoped copy of its provider that selects the allowed rows itself, below any expression
//! of the query (so not even a failing expression runs on another company's rows); the
//! unscoped providers are never in a scoped catalog.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use sunfleet_engine::registry::{Registry, SQL_TABLES};
use sunfleet_engine::store::Store;
use sunfleet_engine::tables::{SYSTEM_ID, Table};

use crate::QueryError;
use crate::registry::{RegistryTable, RowScope};
use crate::scope::Scope;
use crate::telemetry::TelemetryTable;

/// Every table SQL may read, unscoped; built once per engine.
#[derive(Debug)]
pub struct Tables {
    telemetry: Vec<Arc<TelemetryTable>>,
    registry: Vec<Arc<RegistryTable>>,
}

impl Tables {
    pub fn new(store: &Arc<Store>, registry: &Arc<Registry>) -> Result<Self, QueryError> {
        Ok(Self {
            telemetry: Table::ALL
                .into_iter()
                .map(|t| Arc::new(TelemetryTable::new(Arc::clone(store), t)))
                .collect(),
            registry: SQL_TABLES
                .iter()
                .map(|name| RegistryTable::new(Arc::clone(registry), name).map(Arc::new))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Registers every table in `context`, filtered by `scope`.
    pub fn register(&self, context: &SessionContext, scope: &Scope) -> Result<()> {
        for table in &self.telemetry {
            let name = table.table().name();
            let provider: Arc<dyn TableProvider> = match scope.systems_shared() {
                Some(systems) => Arc::new(table.scoped(systems)),
                None => Arc::clone(table) as _,
            };
            context.register_table(name, provider)?;
        }
        for table in &self.registry {
            let provider: Arc<dyn TableProvider> = match registry_scope(table.name(), scope) {
                None => Arc::clone(table) as _,
                Some(rows) => Arc::new(table.scoped(rows)),
            };
            context.register_table(table.name(), provider)?;
        }
        Ok(())
    }
}

/// The rows of a registry table a scope may see; `None` for all.
fn registry_scope(table: &str, scope: &Scope) -> Option<RowScope> {
    let systems = scope.systems_shared()?;
    let of_systems = |column| RowScope::OfSystems {
        column,
        systems: Arc::clone(&systems),
    };
    Some(match (table, scope) {
        ("systems", _) => of_systems("id"),
        ("subcontractor_grants", Scope::Company { company_id, .. }) => RowScope::GrantsSeenBy {
            company_id: *company_id,
        },
        ("subcontractor_grants", _) => RowScope::Values {
            column: "id",
            values: Vec::new(),
        },
        (
            "arrays"
            | "devices"
            | "production_estimates"
            | "activation_steps"
            | "events"
            | "service_requests",
            _,
        ) => of_systems(SYSTEM_ID),
        ("gateway_tasks", _) => RowScope::OfDevicesOf {
            column: "gateway_id",
            systems,
        },
        ("owners", _) => RowScope::NamedBySystems {
            column: "owner_id",
            systems,
        },
        ("companies", Scope::Company { companies, .. }) => RowScope::Values {
            column: "id",
            values: companies.as_ref().clone(),
        },
        ("companies", _) => RowScope::NamedBySystems {
            column: "installer_id",
            systems,
        },
        ("users", Scope::Company { company_id, .. }) => RowScope::Values {
            column: "company_id",
            values: vec![*company_id],
        },
        ("users", Scope::Owner { owner_id, .. }) => RowScope::Values {
            column: "owner_id",
            values: vec![*owner_id],
        },
        // A table without a rule shows nothing under a scope.
        _ => RowScope::Values {
            column: "id",
            values: Vec::new(),
        },
    })
}
