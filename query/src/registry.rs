//! The registry's tables (systems, devices, events, …) as DataFusion tables, read fresh
//! from SQLite for every scan so SQL always sees what the portal just saved.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use roaring::RoaringBitmap;
use sunfleet_engine::registry::{ColumnIn, Registry};

/// Longest IN list handed to SQLite (each value is a bound parameter).
const MAX_PUSHED_VALUES: usize = 1_000;

fn external(error: sunfleet_engine::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

fn ids(batch: &RecordBatch, column: &str) -> Result<Int64Array> {
    batch
        .column_by_name(column)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .cloned()
        .ok_or_else(|| {
            DataFusionError::Internal(format!("registry column {column} is not an integer"))
        })
}

impl RowScope {
    /// Which rows of `batch` the scope allows.
    fn mask(&self, registry: &Registry, batch: &RecordBatch) -> Result<BooleanArray> {
        let select = |column: &str, allowed: &dyn Fn(i64) -> bool| -> Result<BooleanArray> {
            let values = ids(batch, column)?;
            Ok((0..values.len())
                .map(|i| Some(values.is_valid(i) && allowed(values.value(i))))
                .collect())
        };
        let in_systems = |systems: &RoaringBitmap, id: i64| {
            u32::try_from(id).is_ok_and(|id| systems.contains(id))
        };
        // `column` of the rows of `table` that belong to the systems (by `system_column`).
        let of_systems =
            |table: &str, system_column: &str, column: &str, systems: &RoaringBitmap| {
                let rows = registry.table_batch(table).map_err(external)?;
                let (owners, values) = (ids(&rows, system_column)?, ids(&rows, column)?);
                Ok::<_, DataFusionError>(
                    (0..rows.num_rows())
                        .filter(|&i| {
                            owners.is_valid(i)
                                && values.is_valid(i)
                                && in_systems(systems, owners.value(i))
                        })
                        .map(|i| values.value(i))
                        .collect::<std::collections::HashSet<i64>>(),
                )
            };
        match self {
            RowScope::OfSystems { column, systems } => {
                select(column, &|id| in_systems(systems, id))
            }
            RowScope::OfDevicesOf { column, systems } => {
                let devices = of_systems("devices", "system_id", "id", systems)?;
                select(column, &|id| devices.contains(&id))
            }
            RowScope::NamedBySystems { column, systems } => {
                let named = of_systems("systems", "id", column, systems)?;
                select("id", &|id| named.contains(&id))
            }
            RowScope::Values { column, values } => select(column, &|id| values.contains(&id)),
            RowScope::GrantsSeenBy { company_id } => {
                let installed: std::collections::HashSet<i64> = {
                    let systems = registry.table_batch("systems").map_err(external)?;
                    let (ids_of, installers) =
                        (ids(&systems, "id")?, ids(&systems, "installer_id")?);
                    (0..systems.num_rows())
                        .filter(|&i| installers.is_valid(i) && installers.value(i) == *company_id)
                        .map(|i| ids_of.value(i))
                        .collect()
                };
                let (grantees, granted) = (ids(batch, "company_id")?, ids(batch, "system_id")?);
                Ok((0..batch.num_rows())
                    .map(|i| {
                        Some(
                            (grantees.is_valid(i) && grantees.value(i) == *company_id)
                                || (granted.is_valid(i) && installed.contains(&granted.value(i))),
                        )
                    })
                    .collect())
            }
        }
    }
}

/// Which rows of a registry table a principal may see.
#[derive(Debug, Clone, PartialEq)]
pub enum RowScope {
    /// Rows whose `column` is one of the systems.
    OfSystems {
        column: &'static str,
        systems: Arc<RoaringBitmap>,
    },
    /// Rows whose `column` names a device of one of the systems.
    OfDevicesOf {
        column: &'static str,
        systems: Arc<RoaringBitmap>,
    },
    /// Rows whose `id` is the `column` (owner_id, installer_id) of one of the systems.
    NamedBySystems {
        column: &'static str,
        systems: Arc<RoaringBitmap>,
    },
    /// Rows whose `column` is one of these values.
    Values {
        column: &'static str,
        values: Vec<i64>,
    },
    /// Subcontractor grants a company may see: its own, and those on systems it installed
    /// (a subcontractor does not learn which other subcontractors share a system).
    GrantsSeenBy { company_id: i64 },
}

/// One registry table, unscoped or limited to a [`RowScope`].
pub struct RegistryTable {
    registry: Arc<Registry>,
    name: &'static str,
    schema: SchemaRef,
    scope: Option<RowScope>,
}

impl fmt::Debug for RegistryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryTable")
            .field("name", &self.name)
            .finish()
    }
}

impl RegistryTable {
    pub fn new(
        registry: Arc<Registry>,
        name: &'static str,
    ) -> Result<Self, sunfleet_engine::Error> {
        let schema = registry.table_schema(name)?;
        Ok(Self {
            registry,
            name,
            schema,
            scope: None,
        })
    }

    /// The same table showing only the rows `scope` allows; they are selected before any
    /// expression of a query runs.
    pub fn scoped(&self, scope: RowScope) -> Self {
        Self {
            registry: Arc::clone(&self.registry),
            name: self.name,
            schema: Arc::clone(&self.schema),
            scope: Some(scope),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// `column = value` or `column IN (values)` on one of this table's integer columns.
    fn integer_condition(&self, term: &Expr) -> Option<ColumnIn> {
        let (column, values) = match term {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            }) => match (left.as_ref(), right.as_ref()) {
                (Expr::Column(column), other) | (other, Expr::Column(column)) => {
                    (column, vec![integer(other)?])
                }
                _ => return None,
            },
            Expr::InList(list) if !list.negated && list.list.len() <= MAX_PUSHED_VALUES => {
                let Expr::Column(column) = list.expr.as_ref() else {
                    return None;
                };
                let values = list.list.iter().map(integer).collect::<Option<Vec<_>>>()?;
                (column, values)
            }
            _ => return None,
        };
        let field = self.schema.field_with_name(&column.name).ok()?;
        (field.data_type() == &DataType::Int64).then(|| ColumnIn {
            column: column.name.clone(),
            values,
        })
    }
}

/// An integer literal's value (not a float's or a string's: their comparison with an
/// integer column is not a match on one integer).
fn integer(expr: &Expr) -> Option<i64> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    if !value.data_type().is_integer() {
        return None;
    }
    match value.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(Some(v)) => Some(v),
        _ => None,
    }
}

#[async_trait]
impl TableProvider for RegistryTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Equality and IN-list filters on integer columns are handed to SQLite (so a query
    /// about one system reads that system's rows, not the fleet's); DataFusion applies every
    /// filter again afterwards.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if split_conjunction(filter)
                    .into_iter()
                    .any(|term| self.integer_condition(term).is_some())
                {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let registry = Arc::clone(&self.registry);
        let (name, scope) = (self.name, self.scope.clone());
        let conditions: Vec<ColumnIn> = filters
            .iter()
            .flat_map(split_conjunction)
            .filter_map(|term| self.integer_condition(term))
            .collect();
        let batch = tokio::task::spawn_blocking(move || -> Result<RecordBatch> {
            let batch = registry
                .table_batch_matching(name, &conditions)
                .map_err(external)?;
            match scope {
                None => Ok(batch),
                Some(scope) => Ok(filter_record_batch(
                    &batch,
                    &scope.mask(&registry, &batch)?,
                )?),
            }
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}
