//! A result in the formats the SQL endpoints offer.

use std::io::Write;

use datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::ArrayWriter;

use crate::engine::SqlAnswer;

/// How a result is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFormat {
    /// An array of objects, one per row.
    Json,
    /// RFC 4180 with a header line.
    Csv,
    /// An Arrow IPC stream.
    ArrowIpc,
}

impl ResultFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ResultFormat::Json => "application/json",
            ResultFormat::Csv => "text/csv; charset=utf-8",
            ResultFormat::ArrowIpc => "application/vnd.apache.arrow.stream",
        }
    }

    /// The format named by a `format` parameter or a file extension.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "json" => Some(ResultFormat::Json),
            "csv" => Some(ResultFormat::Csv),
            "arrow" | "ipc" | "arrow-ipc" => Some(ResultFormat::ArrowIpc),
            _ => None,
        }
    }
}

impl SqlAnswer {
    pub fn write(&self, format: ResultFormat, out: impl Write) -> Result<(), ArrowError> {
        match format {
            ResultFormat::Json => {
                let mut writer = ArrayWriter::new(out);
                for batch in &self.batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            ResultFormat::Csv => {
                let mut writer = CsvWriterBuilder::new().with_header(true).build(out);
                for batch in &self.batches {
                    writer.write(batch)?;
                }
                // The header comes with the first batch; an empty result still has one.
                if self.batches.is_empty() {
                    let header: Vec<&str> = self
                        .schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect();
                    writer
                        .into_inner()
                        .write_all(format!("{}\n", header.join(",")).as_bytes())?;
                }
            }
            ResultFormat::ArrowIpc => {
                let mut writer = StreamWriter::try_new(out, &self.schema)?;
                for batch in &self.batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
        }
        Ok(())
    }
}
