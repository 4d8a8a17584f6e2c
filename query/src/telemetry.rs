//! The engine's telemetry tables (`readings`, `meter_readings`, …, the rollups) as
//! DataFusion tables: a scan takes a consistent snapshot of the store and reads
//!
//! - days held by one file alone (compacted days, and days persisted once) with
//!   DataFusion's Parquet scan: row groups and pages pruned by the filters, columns
//!   projected, files read in parallel;
//! - every other day (several files, or rows still in the write buffer) through the
//!   engine's [`MergedDay`], which merges them and keeps the latest ingest of each key.
//!
//! So a reading is visible the moment its append is acknowledged, exactly once. The
//! snapshot's manifest is held by the plan until it is dropped, so no file it lists is
//! deleted under it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::stream;
use roaring::RoaringBitmap;
use sunfleet_engine::manifest::Manifest;
use sunfleet_engine::scan::MergedDay;
use sunfleet_engine::store::{DayParts, ReadRequest, Store};
use sunfleet_engine::tables::Table;

use crate::bounds::ScanBounds;
use crate::scope_filter::ScopeFilterExec;

/// The URL under which the store's object store is registered with DataFusion.
pub const STORE_URL: &str = "sunfleet://telemetry/";

/// Rows a merged day holds in memory at once.
const MERGE_CHUNK_ROWS: usize = 1 << 20;

/// One telemetry table of the store, unscoped.
#[derive(Clone)]
pub struct TelemetryTable {
    store: Arc<Store>,
    table: Table,
    /// Only these systems' rows (a principal's scope); `None`: every system.
    scope: Option<Arc<RoaringBitmap>>,
}

impl fmt::Debug for TelemetryTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryTable")
            .field("table", &self.table)
            .finish()
    }
}

impl TelemetryTable {
    pub fn new(store: Arc<Store>, table: Table) -> Self {
        Self {
            store,
            table,
            scope: None,
        }
    }

    /// The same table showing only `systems`' rows, filtered below anything a query adds.
    pub fn scoped(&self, systems: Arc<RoaringBitmap>) -> Self {
        Self {
            scope: Some(systems),
            ..self.clone()
        }
    }

    pub fn table(&self) -> Table {
        self.table
    }

    fn parquet_scan(
        &self,
        state: &dyn Session,
        manifest: &Arc<Manifest>,
        days: &[DayParts],
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let url = ObjectStoreUrl::parse(STORE_URL)?;
        let runtime = state.runtime_env();
        let readers = SnapshotReaders {
            inner: CachedParquetFileReaderFactory::new(
                runtime.object_store(&url)?,
                runtime.cache_manager.get_file_metadata_cache(),
            ),
            _manifest: Arc::clone(manifest),
        };
        let schema = self.table.schema();
        let mut source = ParquetSource::new(Arc::clone(&schema))
            .with_parquet_file_reader_factory(Arc::new(readers));
        if let Some(predicate) = pruning_predicate(state, &schema, filters) {
            source = source.with_predicate(predicate);
        }
        // Spread files over the session's partitions, largest first.
        let mut files: Vec<_> = days.iter().filter_map(DayParts::sole_file).collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.bytes));
        let partitions = state
            .config()
            .target_partitions()
            .clamp(1, files.len().max(1));
        let mut groups: Vec<(u64, Vec<PartitionedFile>)> = vec![(0, Vec::new()); partitions];
        for file in files {
            if let Some(group) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
                group.0 += file.bytes;
                group
                    .1
                    .push(PartitionedFile::new(file.path.clone(), file.bytes));
            }
        }
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups.into_iter().map(|(_, f)| FileGroup::new(f)).collect())
            .with_projection_indices(projection.cloned())?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The filters as one physical predicate for row-group and page pruning, if they can be
/// planned against the table alone.
fn pruning_predicate(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: &[Expr],
) -> Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>> {
    let unqualified = filters
        .iter()
        .map(|f| {
            f.clone()
                .transform(|e| match e {
                    Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                        c.name,
                    )))),
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
        })
        .collect::<Result<Vec<_>>>()
        .ok()?;
    let predicate = conjunction(unqualified)?;
    let df_schema = DFSchema::try_from(Arc::clone(schema)).ok()?;
    state.create_physical_expr(predicate, &df_schema).ok()
}

#[async_trait]
impl TableProvider for TelemetryTable {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        // Filters are applied above the scan, so a limit cannot be applied here.
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.table.schema();
        let projected = match projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => Arc::clone(&schema),
        };
        let mut bounds = ScanBounds::from_filters(filters);
        if let Some(scope) = &self.scope {
            bounds.systems = Some(match bounds.systems.take() {
                Some(wanted) => wanted & scope.as_ref(),
                None => scope.as_ref().clone(),
            });
        }
        if bounds.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        // Under a scope the rows are read with `system_id` (column 0) and filtered by
        // `ScopeFilterExec` before anything else sees them.
        let requested: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let read: Vec<usize> = match &self.scope {
            Some(_) if !requested.contains(&0) => {
                [0].into_iter().chain(requested.iter().copied()).collect()
            }
            _ => requested.clone(),
        };
        let projection = Some(&read);
        let snapshot = self.store.snapshot(&ReadRequest {
            table: self.table,
            start_us: bounds.start_us,
            end_us: bounds.end_us,
            systems: bounds.systems.clone(),
        });
        let (whole, merged): (Vec<DayParts>, Vec<DayParts>) = snapshot
            .days()
            .into_iter()
            .partition(|day| day.sole_file().is_some());
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !whole.is_empty() {
            plans.push(self.parquet_scan(
                state,
                &snapshot.manifest,
                &whole,
                projection,
                filters,
            )?);
        }
        if !merged.is_empty() {
            let days: Vec<Arc<dyn PartitionStream>> = merged
                .into_iter()
                .map(|parts| -> Arc<dyn PartitionStream> {
                    Arc::new(MergedDayPartition {
                        store: Arc::clone(&self.store),
                        table: self.table,
                        schema: Arc::clone(&schema),
                        parts,
                        systems: bounds.systems.clone(),
                        manifest: Arc::clone(&snapshot.manifest),
                    })
                })
                .collect();
            plans.push(Arc::new(StreamingTableExec::try_new(
                Arc::clone(&schema),
                days,
                projection,
                Vec::new(),
                false,
                None,
            )?));
        }
        if plans.is_empty() {
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let rows = UnionExec::try_new(plans)?;
        match &self.scope {
            None => Ok(rows),
            Some(scope) => {
                let position = |column: usize| read.iter().position(|&c| c == column).unwrap_or(0);
                Ok(Arc::new(ScopeFilterExec::try_new(
                    rows,
                    Arc::clone(scope),
                    position(0),
                    requested.iter().map(|&c| position(c)).collect(),
                )?))
            }
        }
    }
}

/// Opens files for DataFusion's Parquet scan (footers cached across queries) and keeps the
/// snapshot's manifest alive while the plan is.
#[derive(Debug)]
struct SnapshotReaders {
    inner: CachedParquetFileReaderFactory,
    _manifest: Arc<Manifest>,
}

impl ParquetFileReaderFactory for SnapshotReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        self.inner.create_reader(
            partition_index,
            partitioned_file,
            metadata_size_hint,
            metrics,
        )
    }
}

/// One day that needs merging, as a stream of merged chunks.
struct MergedDayPartition {
    store: Arc<Store>,
    table: Table,
    schema: SchemaRef,
    parts: DayParts,
    systems: Option<RoaringBitmap>,
    /// Held so the snapshot's files outlive the plan.
    manifest: Arc<Manifest>,
}

impl fmt::Debug for MergedDayPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergedDay")
            .field("table", &self.table)
            .field("day", &self.parts.day.to_string())
            .field("files", &self.parts.files.len())
            .field("buffered_batches", &self.parts.buffered.len())
            .finish()
    }
}

impl PartitionStream for MergedDayPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        enum Progress {
            Start(DayParts, Arc<Manifest>),
            Reading(MergedDay, Arc<Manifest>),
        }
        let store = Arc::clone(&self.store);
        let table = self.table;
        let systems = self.systems.clone();
        let start = Progress::Start(self.parts.clone(), Arc::clone(&self.manifest));
        let chunks = stream::try_unfold(start, move |progress| {
            let store = Arc::clone(&store);
            let systems = systems.clone();
            async move {
                let (mut day, manifest) = match progress {
                    Progress::Reading(day, manifest) => (day, manifest),
                    Progress::Start(parts, manifest) => {
                        let day = MergedDay::open(
                            store.storage(),
                            table,
                            &parts.files,
                            parts.buffered,
                            systems,
                            MERGE_CHUNK_ROWS,
                        )
                        .await
                        .map_err(external)?;
                        (day, manifest)
                    }
                };
                let chunk = day.next_chunk().await.map_err(external)?;
                Ok(chunk.map(|rows| (rows, Progress::Reading(day, manifest))))
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            chunks,
        ))
    }
}

fn external(error: sunfleet_engine::Error) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}
