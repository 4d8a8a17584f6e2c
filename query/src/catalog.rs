//! The tables a session offers, scoped. Under a company or owner scope every table is a
//! view over the unscoped provider with the scope's filter; the unscoped providers are
//! never in the catalog, so no SQL can reach around the filter.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::catalog::default_table_source::provider_as_source;
use datafusion::datasource::ViewTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, in_subquery};
use datafusion::prelude::{SessionContext, col, lit};
use roaring::RoaringBitmap;
use sunfleet_engine::registry::{Registry, SQL_TABLES};
use sunfleet_engine::store::Store;
use sunfleet_engine::tables::{SYSTEM_ID, Table};

use crate::QueryError;
use crate::registry::RegistryTable;
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
            let filter = scope.systems().map(|s| system_in(SYSTEM_ID, s, lit));
            register(context, name, Arc::clone(table) as _, filter)?;
        }
        for table in &self.registry {
            let filter = self.registry_filter(table.name(), scope)?;
            register(context, table.name(), Arc::clone(table) as _, filter)?;
        }
        Ok(())
    }

    fn registry_table(&self, name: &str) -> Result<Arc<dyn TableProvider>> {
        self.registry
            .iter()
            .find(|t| t.name() == name)
            .map(|t| Arc::clone(t) as _)
            .ok_or_else(|| {
                datafusion::error::DataFusionError::Plan(format!("no registry table {name}"))
            })
    }

    /// `SELECT <column> FROM <table> WHERE <filter>`, unscoped, for a scope's subqueries.
    fn select(&self, table: &str, column: &str, filter: Expr) -> Result<Arc<LogicalPlan>> {
        Ok(Arc::new(
            LogicalPlanBuilder::scan(table, provider_as_source(self.registry_table(table)?), None)?
                .filter(filter)?
                .project(vec![col(column)])?
                .build()?,
        ))
    }

    /// The rows of a registry table a scope may see; `None` for all.
    fn registry_filter(&self, table: &str, scope: &Scope) -> Result<Option<Expr>> {
        let Some(systems) = scope.systems() else {
            return Ok(None);
        };
        let system_ids = |column: &str| system_in(column, systems, |id| lit(i64::from(id)));
        Ok(Some(match table {
            "systems" => system_ids("id"),
            "subcontractor_grants"
            | "arrays"
            | "devices"
            | "production_estimates"
            | "activation_steps"
            | "events"
            | "service_requests" => system_ids(SYSTEM_ID),
            "gateway_tasks" => in_subquery(
                col("gateway_id"),
                self.select("devices", "id", system_ids(SYSTEM_ID))?,
            ),
            "owners" => in_subquery(
                col("id"),
                self.select("systems", "owner_id", system_ids("id"))?,
            ),
            "companies" => match scope {
                Scope::Company { companies, .. } => {
                    col("id").in_list(companies.iter().map(|&c| lit(c)).collect(), false)
                }
                _ => in_subquery(
                    col("id"),
                    self.select("systems", "installer_id", system_ids("id"))?,
                ),
            },
            "users" => match scope {
                Scope::Company { company_id, .. } => col("company_id").eq(lit(*company_id)),
                Scope::Owner { owner_id, .. } => col("owner_id").eq(lit(*owner_id)),
                Scope::Fleet => lit(true),
            },
            // A table without a rule shows nothing under a scope.
            _ => lit(false),
        }))
    }
}

fn register(
    context: &SessionContext,
    name: &str,
    provider: Arc<dyn TableProvider>,
    filter: Option<Expr>,
) -> Result<()> {
    let table: Arc<dyn TableProvider> = match filter {
        None => provider,
        Some(filter) => {
            let plan = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?
                .filter(filter)?
                .build()?;
            Arc::new(ViewTable::new(plan, None))
        }
    };
    context.register_table(name, table)?;
    Ok(())
}

/// `column IN (systems)`; false for no systems.
fn system_in(column: &str, systems: &RoaringBitmap, literal: impl Fn(u32) -> Expr) -> Expr {
    if systems.is_empty() {
        return lit(false);
    }
    col(column).in_list(systems.iter().map(literal).collect(), false)
}
