//! `sunfleet sql`: one query against a data folder, as the whole fleet or as a company's
//! members see it. A running server holds the data folder; use its SQL endpoints then.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use sunfleet_engine::time::now_micros;
use sunfleet_query::{QueryConfig, QueryEngine, ResultFormat, Scope};

use crate::data::{DEFAULT_DATA_DIR, DataFolder};

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Data folder.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SUNFLEET_DATA")]
    data: PathBuf,
    /// Answer as this company's members see it (its systems and grants); default: the
    /// whole fleet.
    #[arg(long)]
    company: Option<i64>,
    /// table, csv, json or arrow (an Arrow IPC stream).
    #[arg(long, default_value = "table")]
    format: String,
    /// The query; read from standard input when absent.
    query: Option<String>,
}

pub fn run(args: SqlArgs) -> anyhow::Result<ExitCode> {
    let format = match args.format.as_str() {
        "table" => None,
        name => Some(ResultFormat::from_name(name).with_context(|| {
            format!("unknown format {name:?}: expected table, csv, json or arrow")
        })?),
    };
    let query = match args.query {
        Some(query) => query,
        None => {
            let mut query = String::new();
            std::io::stdin()
                .read_to_string(&mut query)
                .context("reading the query from standard input")?;
            query
        }
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    let answer = runtime.block_on(async {
        let data = DataFolder::open(&args.data).await?;
        let scope = match args.company {
            Some(company) => {
                data.registry
                    .company_name(company)?
                    .with_context(|| format!("company {company} is not registered"))?;
                Scope::of_company(&data.registry, company, now_micros())?
            }
            None => Scope::Fleet,
        };
        let engine = QueryEngine::start(
            data.store.clone(),
            data.registry.clone(),
            QueryConfig::new(args.data.join("tmp").join("query")),
        )?;
        anyhow::Ok(engine.sql(&scope, &query).await?)
    })?;
    let mut out = std::io::stdout().lock();
    match format {
        Some(format) => answer.write(format, &mut out)?,
        None => {
            let table = arrow::util::pretty::pretty_format_batches(&answer.batches)?;
            writeln!(out, "{table}")?;
            writeln!(out, "({} rows)", answer.rows())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
