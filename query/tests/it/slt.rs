//! The SQL behaviour suite: every `.slt` file under `fixtures/slt/` runs against the test
//! fleet ([`crate::fleet`], settled: every upload persisted and rolled up).
//!
//! Besides SQL, a file may change who is asking with a harness statement:
//! `SCOPE fleet`, `SCOPE company <id>` or `SCOPE owner <id>` (see `sunfleet_query::Scope`).
//! `SLT_COMPLETE=1 cargo nextest run -p sunfleet-query sql_behaviour_suite` rewrites the
//! expected results from what the engine answers (review the diff before committing).
//!
//! Values are printed as the CLI prints them: integers plainly, floats rounded to 6
//! significant digits, timestamps in RFC 3339, NULL as `NULL`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Array;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use sqllogictest::{DBOutput, DefaultColumnType};
use sunfleet_query::{QueryError, Scope};

use crate::fleet::{Layout, TestFleet, test_fleet};

struct FleetDb {
    fleet: Arc<TestFleet>,
    scope: Scope,
}

#[derive(Debug, thiserror::Error)]
enum SltError {
    #[error("{0}")]
    Query(#[from] QueryError),
    #[error("harness: {0}")]
    Harness(String),
}

impl FleetDb {
    fn set_scope(&mut self, words: &[&str]) -> Result<(), SltError> {
        let now = sunfleet_engine::time::now_micros();
        let id = |text: &str| {
            text.parse::<i64>()
                .map_err(|_| SltError::Harness(format!("bad id {text:?}")))
        };
        self.scope = match words {
            ["fleet"] => Scope::Fleet,
            ["company", company] => Scope::of_company(&self.fleet.registry, id(company)?, now)?,
            ["owner", owner] => Scope::of_owner(&self.fleet.registry, id(owner)?)?,
            _ => return Err(SltError::Harness(format!("unknown SCOPE {words:?}"))),
        };
        Ok(())
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for FleetDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        let words: Vec<&str> = sql.split_whitespace().collect();
        if let Some((&"SCOPE", rest)) = words.split_first() {
            self.set_scope(rest)?;
            return Ok(DBOutput::StatementComplete(0));
        }
        let answer = self.fleet.engine.sql(&self.scope, sql).await?;
        let types = answer
            .schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &answer.batches {
            let formatters: Vec<ArrayFormatter> = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<_, _>>()
                .map_err(|e| SltError::Harness(e.to_string()))?;
            for row in 0..batch.num_rows() {
                rows.push(
                    batch
                        .columns()
                        .iter()
                        .zip(&formatters)
                        .map(|(column, formatter)| cell(column.as_ref(), formatter, row))
                        .collect(),
                );
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sunfleet"
    }
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    if data_type.is_integer() {
        DefaultColumnType::Integer
    } else if data_type.is_floating() || matches!(data_type, DataType::Decimal128(..)) {
        DefaultColumnType::FloatingPoint
    } else if matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

fn cell(column: &dyn Array, formatter: &ArrayFormatter, row: usize) -> String {
    if column.is_null(row) {
        return "NULL".to_owned();
    }
    let text = formatter.value(row).to_string();
    if column.data_type().is_floating()
        && let Ok(value) = text.parse::<f64>()
    {
        return format!("{}", round_significant(value, 6));
    }
    if text.is_empty() {
        "(empty)".to_owned()
    } else {
        text
    }
}

fn round_significant(value: f64, digits: i32) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let scale = 10f64.powi(digits - 1 - value.abs().log10().floor() as i32);
    (value * scale).round() / scale
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_behaviour_suite() {
    let fleet = Arc::new(test_fleet(Layout::Settled).await);
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files");
    let mut failures = Vec::new();
    for file in &files {
        let fleet = Arc::clone(&fleet);
        let mut runner = sqllogictest::Runner::new(move || {
            let fleet = Arc::clone(&fleet);
            async move {
                Ok(FleetDb {
                    fleet,
                    scope: Scope::Fleet,
                })
            }
        });
        if std::env::var_os("SLT_COMPLETE").is_some() {
            runner
                .update_test_file(
                    file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            continue;
        }
        runner.with_column_validator(sqllogictest::strict_column_validator);
        if let Err(error) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{}", file.display(), error.display(false)));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
