//! The query engine: DataFusion sessions over the store and the registry, run on their own
//! threads (so a heavy query never slows ingest), under a memory pool that spills to disk,
//! a time limit and caps on the size of a result.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use futures::StreamExt;
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::Store;
use url::Url;

use crate::QueryError;
use crate::catalog::Tables;
use crate::scope::Scope;
use crate::telemetry::STORE_URL;

/// Limits and resources of the query engine.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Threads of the query runtime (and DataFusion's target partitions).
    pub threads: usize,
    /// Memory all running queries may hold before operators spill or fail.
    pub memory_limit_bytes: usize,
    /// Where spilled data goes (a folder inside the data folder).
    pub spill_dir: PathBuf,
    /// Spilled data all queries together may hold: the WAL shares the disk.
    pub max_spill_bytes: u64,
    /// A query running longer is stopped.
    pub timeout: Duration,
    pub max_result_rows: u64,
    pub max_result_bytes: u64,
}

impl QueryConfig {
    pub fn new(spill_dir: impl Into<PathBuf>) -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_limit_bytes: 2 << 30,
            spill_dir: spill_dir.into(),
            max_spill_bytes: 8 << 30,
            timeout: Duration::from_secs(60),
            max_result_rows: 1_000_000,
            max_result_bytes: 256 << 20,
        }
    }
}

/// A finished query's result.
#[derive(Debug, Clone)]
pub struct SqlAnswer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

impl SqlAnswer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Column `index` of every row as `i64` (`None` for NULL, or if the column is not
    /// BIGINT: cast in the SQL).
    pub fn i64s(&self, index: usize) -> Vec<Option<i64>> {
        self.column(index, |c| {
            c.as_primitive_opt::<Int64Type>()
                .map(|v| v.iter().collect())
        })
    }

    /// Column `index` as `f64` (DOUBLE in the SQL).
    pub fn f64s(&self, index: usize) -> Vec<Option<f64>> {
        self.column(index, |c| {
            c.as_primitive_opt::<Float64Type>()
                .map(|v| v.iter().collect())
        })
    }

    /// Column `index` as text (VARCHAR in the SQL).
    pub fn strings(&self, index: usize) -> Vec<Option<String>> {
        self.column(index, |c| {
            c.as_string_opt::<i32>()
                .map(|v| v.iter().map(|s| s.map(str::to_owned)).collect())
                .or_else(|| {
                    c.as_string_view_opt()
                        .map(|v| v.iter().map(|s| s.map(str::to_owned)).collect())
                })
        })
    }

    fn column<T>(
        &self,
        index: usize,
        values: impl Fn(&dyn Array) -> Option<Vec<Option<T>>>,
    ) -> Vec<Option<T>> {
        let mut out = Vec::with_capacity(self.rows());
        for batch in &self.batches {
            let column = batch.column(index);
            match values(column.as_ref()) {
                Some(v) => out.extend(v),
                None => out.extend((0..column.len()).map(|_| None)),
            }
        }
        out
    }
}

/// Runs queries. Dropping it stops its threads.
pub struct QueryEngine {
    runtime: Option<tokio::runtime::Runtime>,
    env: Arc<RuntimeEnv>,
    tables: Arc<Tables>,
    store: Arc<Store>,
    registry: Arc<Registry>,
    config: QueryConfig,
    rechecks: crate::checks::Rechecks,
}

impl QueryEngine {
    pub fn start(
        store: Arc<Store>,
        registry: Arc<Registry>,
        config: QueryConfig,
    ) -> Result<Self, QueryError> {
        let runtime_error = |e: std::io::Error| QueryError::Runtime {
            message: e.to_string(),
        };
        std::fs::create_dir_all(&config.spill_dir).map_err(runtime_error)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("query")
            .enable_all()
            .build()
            .map_err(runtime_error)?;
        let env = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit_bytes)))
            .with_temp_file_path(config.spill_dir.clone())
            .with_max_temp_directory_size(config.max_spill_bytes)
            .build_arc()?;
        let url = Url::parse(STORE_URL).map_err(|e| QueryError::Runtime {
            message: e.to_string(),
        })?;
        env.register_object_store(&url, store.storage().store());
        let tables = Arc::new(Tables::new(&store, &registry)?);

        Ok(Self {
            runtime: Some(runtime),
            env,
            tables,
            store,
            registry,
            config,
            rechecks: crate::checks::Rechecks::new(),
        })
    }

    pub fn config(&self) -> &QueryConfig {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Puts one system's devices and time zone into the write path's directory after the
    /// registry gained them, so their readings resolve at once (blocking: SQLite).
    pub fn load_system_devices(&self, system_id: i64) -> Result<(), QueryError> {
        Ok(self
            .registry
            .load_system_into(system_id, self.store.directory())?)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Where to ask the running fleet checks to judge a system again (its settings
    /// changed) without waiting for their schedule.
    pub fn rechecks(&self) -> &crate::checks::Rechecks {
        &self.rechecks
    }

    /// Runs a registry read off the async threads (SQLite blocks).
    pub(crate) async fn registry_read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Registry) -> Result<T, sunfleet_engine::Error> + Send + 'static,
    ) -> Result<T, QueryError> {
        let registry = Arc::clone(&self.registry);
        tokio::task::spawn_blocking(move || read(&registry))
            .await
            .map_err(|e| QueryError::Runtime {
                message: format!("a registry read failed: {e}"),
            })?
            .map_err(QueryError::from)
    }

    /// A DataFusion session showing what `scope` may see. Sessions are cheap; make one per
    /// request or per connection.
    pub fn session(&self, scope: &Scope) -> Result<SessionContext, QueryError> {
        let config = SessionConfig::new()
            .with_target_partitions(self.config.threads.max(1))
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.env))
            .with_default_features()
            .build();
        let context = SessionContext::new_with_state(state);
        self.tables.register(&context, scope)?;
        Ok(context)
    }

    /// Runs one SQL query for `scope` on the query threads, within the time limit and the
    /// result caps. Statements that would write, create or configure anything are refused.
    pub async fn sql(&self, scope: &Scope, sql: &str) -> Result<SqlAnswer, QueryError> {
        let planned = self.plan(scope, sql).await?;
        self.execute(planned).await
    }

    /// Plans one SQL statement for `scope` without running it (its result schema and
    /// parameter types are then known: the Postgres extended protocol needs both). Refuses
    /// what [`QueryEngine::sql`] refuses.
    pub async fn plan(&self, scope: &Scope, sql: &str) -> Result<PlannedQuery, QueryError> {
        let context = self.session(scope)?;
        let state = context.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(sql, &dialect)?;
        // Refused before planning: planning them may already fail on the path or format
        // with a message that does not say they are not allowed at all.
        let refused = match &statement {
            Statement::CreateExternalTable(_) => Some("DDL not supported: CreateExternalTable"),
            Statement::CopyTo(_) => Some("DML not supported: COPY"),
            _ => None,
        };
        if let Some(reason) = refused {
            return Err(QueryError::Refused {
                reason: reason.to_owned(),
            });
        }
        let plan = state.statement_to_plan(statement).await?;
        if let Err(refusal) = read_only().verify_plan(&plan) {
            return Err(QueryError::Refused {
                reason: refusal.message().to_string(),
            });
        }
        if reads_settings(&plan) {
            return Err(QueryError::Refused {
                reason: "the server's settings (SHOW <setting>, information_schema.df_settings) \
                         are the operator's"
                    .to_owned(),
            });
        }
        Ok(PlannedQuery { context, plan })
    }

    /// Runs a planned query (its parameters bound) within the time limit and result caps.
    pub async fn execute(&self, planned: PlannedQuery) -> Result<SqlAnswer, QueryError> {
        let caps = (self.config.max_result_rows, self.config.max_result_bytes);
        self.run(planned, caps).await
    }

    /// [`QueryEngine::sql`] for this crate's own queries (checks, series, reports), whose
    /// results are sized by the fleet rather than by an analyst: no result caps.
    pub(crate) async fn internal_sql(
        &self,
        scope: &Scope,
        sql: &str,
    ) -> Result<SqlAnswer, QueryError> {
        let began = std::time::Instant::now();
        let planned = self.plan(scope, sql).await?;
        let planned_after = began.elapsed();
        let answer = self.run(planned, (u64::MAX, u64::MAX)).await;
        // The portal's pages are a handful of these each: this says which one is slow.
        tracing::debug!(
            planning_ms = planned_after.as_secs_f64() * 1e3,
            total_ms = began.elapsed().as_secs_f64() * 1e3,
            sql = %sql.split_whitespace().collect::<Vec<_>>().join(" "),
            "internal query"
        );
        answer
    }

    async fn run(
        &self,
        PlannedQuery { context, plan }: PlannedQuery,
        (max_rows, max_bytes): (u64, u64),
    ) -> Result<SqlAnswer, QueryError> {
        let timeout = self.config.timeout;
        let run = async move {
            let frame = context.execute_logical_plan(plan).await?;
            let schema = Arc::clone(frame.schema().inner());
            let mut stream = frame.execute_stream().await?;
            let (mut rows, mut bytes) = (0u64, 0u64);
            let mut batches = Vec::new();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                rows += batch.num_rows() as u64;
                bytes += batch.get_array_memory_size() as u64;
                if rows > max_rows {
                    return Err(QueryError::ResultTooLarge {
                        limit: max_rows,
                        unit: "rows",
                    });
                }
                if bytes > max_bytes {
                    return Err(QueryError::ResultTooLarge {
                        limit: max_bytes,
                        unit: "bytes",
                    });
                }
                batches.push(batch);
            }
            Ok(SqlAnswer { schema, batches })
        };
        let handle = self.handle()?.spawn(async move {
            tokio::time::timeout(timeout, run)
                .await
                .unwrap_or(Err(QueryError::Timeout {
                    seconds: timeout.as_secs(),
                }))
        });
        handle.await.map_err(|e| QueryError::Runtime {
            message: e.to_string(),
        })?
    }

    fn handle(&self) -> Result<&tokio::runtime::Handle, QueryError> {
        self.runtime
            .as_ref()
            .map(tokio::runtime::Runtime::handle)
            .ok_or_else(|| QueryError::Runtime {
                message: "the query engine is stopped".to_owned(),
            })
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A read-only statement planned for one scope's session.
#[derive(Clone)]
pub struct PlannedQuery {
    context: SessionContext,
    plan: LogicalPlan,
}

impl std::fmt::Debug for PlannedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlannedQuery")
            .field("plan", &self.plan.display_indent().to_string())
            .finish_non_exhaustive()
    }
}

impl PlannedQuery {
    /// The columns the statement returns.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(self.plan.schema().inner())
    }

    /// The types of `$1`, `$2`, … in order (`None`: the SQL does not say; pass text).
    pub fn parameter_types(&self) -> Result<Vec<Option<DataType>>, QueryError> {
        let types = self.plan.get_parameter_types()?;
        let mut numbered: Vec<(usize, Option<DataType>)> = types
            .into_iter()
            .map(|(name, data_type)| {
                name.trim_start_matches('$')
                    .parse::<usize>()
                    .map(|n| (n, data_type))
                    .map_err(|_| QueryError::BadRequest {
                        message: format!("parameter {name} is not positional ($1, $2, ...)"),
                    })
            })
            .collect::<Result<_, _>>()?;
        numbered.sort_by_key(|(n, _)| *n);
        if numbered.iter().enumerate().any(|(i, (n, _))| *n != i + 1) {
            return Err(QueryError::BadRequest {
                message: "parameters must be numbered $1, $2, ... without gaps".to_owned(),
            });
        }
        Ok(numbered.into_iter().map(|(_, t)| t).collect())
    }

    /// The statement with `$1`, `$2`, … replaced by `values`.
    pub fn with_parameters(self, values: Vec<ScalarValue>) -> Result<Self, QueryError> {
        let plan = self.plan.with_param_values(values)?;
        Ok(Self {
            context: self.context,
            plan,
        })
    }
}

/// Whether the plan reads the session's settings (`SHOW <setting>`, `SHOW ALL` and
/// `information_schema.df_settings` all do): they name the data folder's paths and the
/// limits. The other `information_schema` tables (tables, columns) stay open.
fn reads_settings(plan: &LogicalPlan) -> bool {
    let mut found = false;
    // The visitor never fails; a failure could only mean "not found".
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.table() == "df_settings"
        {
            found = true;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// Queries only: no DDL (`CREATE EXTERNAL TABLE … LOCATION`), no DML (`COPY … TO`,
/// `INSERT`), no statements (`SET`).
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}
