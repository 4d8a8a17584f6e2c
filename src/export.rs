//! `sunfleet export`: writes a time range of a table, for chosen systems, to Parquet or CSV.
//!
//! Rows come from the engine's read API (deduplicated, files and write buffer together), one
//! UTC day at a time so memory holds a day, not the range. The output is written to a
//! temporary file beside the destination and renamed into place only when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arrow::array::TimestampMicrosecondArray;
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use jiff::Timestamp;
use parquet::arrow::ArrowWriter;
use roaring::RoaringBitmap;
use sunfleet_engine::storage::{FileKind, writer_properties};
use sunfleet_engine::store::ReadRequest;
use sunfleet_engine::tables::Table;
use sunfleet_engine::time::CivilDate;

use crate::data::{DEFAULT_DATA_DIR, DataFolder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Parquet,
    Csv,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// First UTC day to export (YYYY-MM-DD).
    #[arg(long)]
    pub from: CivilDate,
    /// Last UTC day to export, inclusive (YYYY-MM-DD).
    #[arg(long)]
    pub to: CivilDate,
    /// Systems to export, by id (comma-separated); every system when omitted.
    #[arg(long, value_delimiter = ',')]
    pub systems: Vec<u32>,
    /// Table: readings, meter_readings, battery_readings, device_events, rollup_15m,
    /// rollup_hour, rollup_day or rollup_month.
    #[arg(long, default_value = "readings")]
    pub table: Table,
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: Format,
    /// Output file.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Data folder.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    pub data: PathBuf,
}

enum CsvColumn<'a> {
    Time(&'a TimestampMicrosecondArray),
    Other(ArrayFormatter<'a>),
}

/// Where rows go.
enum Sink {
    Parquet(Box<ArrowWriter<File>>),
    Csv(BufWriter<File>),
}

impl Sink {
    fn write(&mut self, rows: &RecordBatch) -> anyhow::Result<()> {
        match self {
            Sink::Parquet(writer) => writer.write(rows)?,
            Sink::Csv(out) => {
                let options = FormatOptions::default();
                let columns =
                    rows.columns()
                        .iter()
                        .map(
                            |c| match c.as_any().downcast_ref::<TimestampMicrosecondArray>() {
                                // RFC 3339 in UTC, which arrow's formatter cannot do for a named zone.
                                Some(times) => Ok(CsvColumn::Time(times)),
                                None => ArrayFormatter::try_new(c.as_ref(), &options)
                                    .map(CsvColumn::Other),
                            },
                        )
                        .collect::<Result<Vec<_>, _>>()?;
                for row in 0..rows.num_rows() {
                    for (i, column) in columns.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        match column {
                            CsvColumn::Time(times) => {
                                write!(out, "{}", Timestamp::from_microsecond(times.value(row))?)?;
                            }
                            CsvColumn::Other(formatter) => write!(out, "{}", formatter.value(row))?,
                        }
                    }
                    out.write_all(b"\n")?;
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::Parquet(writer) => {
                writer.into_inner()?.sync_all()?;
            }
            Sink::Csv(out) => {
                out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            }
        }
        Ok(())
    }
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    if args.from > args.to {
        bail!("--from {} is after --to {}", args.from, args.to);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(export(&args))
}

async fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let data = DataFolder::open(&args.data).await?;
    let systems: Option<RoaringBitmap> =
        (!args.systems.is_empty()).then(|| args.systems.iter().copied().collect());
    let file_name = args
        .output
        .file_name()
        .context("--output must name a file")?
        .to_string_lossy()
        .into_owned();
    let partial = args.output.with_file_name(format!(".{file_name}.partial"));
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let schema = args.table.schema();
    let mut sink = match args.format {
        Format::Parquet => Sink::Parquet(Box::new(ArrowWriter::try_new(
            file,
            schema.clone(),
            Some(writer_properties(args.table, FileKind::Compacted)?),
        )?)),
        Format::Csv => {
            let mut out = BufWriter::new(file);
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            writeln!(out, "{}", names.join(","))?;
            Sink::Csv(out)
        }
    };
    let mut rows = 0;
    let mut day = args.from;
    let result = async {
        while day <= args.to {
            let request = ReadRequest {
                systems: systems.clone(),
                ..ReadRequest::days(args.table, day, day)
            };
            let batch = data.store.read(&request).await?;
            rows += batch.num_rows();
            sink.write(&batch)?;
            day = day.add_days(1);
        }
        sink.finish()
    }
    .await;
    if let Err(error) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, &args.output)
        .with_context(|| format!("moving the export to {}", args.output.display()))?;
    println!(
        "exported {rows} rows of {} from {} to {} to {}",
        args.table,
        args.from,
        args.to,
        args.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
