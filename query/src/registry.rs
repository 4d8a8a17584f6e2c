//! The registry's tables (systems, devices, events, …) as DataFusion tables, read fresh
//! from SQLite for every scan so SQL always sees what the portal just saved.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use sunfleet_engine::registry::Registry;

/// One registry table, unscoped.
pub struct RegistryTable {
    registry: Arc<Registry>,
    name: &'static str,
    schema: SchemaRef,
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
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
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

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let registry = Arc::clone(&self.registry);
        let name = self.name;
        let batch = tokio::task::spawn_blocking(move || registry.table_batch(name))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}
