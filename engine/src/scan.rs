//! Reading stored Parquet files by system: files are sorted by `system_id`, so each row
//! group's `system_id` statistics say whether it can hold a wanted system, and only those
//! row groups are fetched.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use roaring::RoaringBitmap;

use crate::Error;
use crate::manifest::FileEntry;
use crate::storage::{ObjectReader, ObjectStorage};
use crate::tables::SYSTEM_ID;

/// Which systems to read.
#[derive(Debug, Clone, Copy)]
pub enum Systems<'a> {
    All,
    /// An inclusive range of system ids.
    Range(u32, u32),
    Set(&'a RoaringBitmap),
}

impl Systems<'_> {
    fn bounds(&self) -> Option<(u32, u32)> {
        match self {
            Systems::All => None,
            Systems::Range(low, high) => Some((*low, *high)),
            Systems::Set(set) => Some((set.min()?, set.max()?)),
        }
    }

    fn contains(&self, system: u32) -> bool {
        match self {
            Systems::All => true,
            Systems::Range(low, high) => (*low..=*high).contains(&system),
            Systems::Set(set) => set.contains(system),
        }
    }
}

fn parquet_error(context: String) -> impl FnOnce(parquet::errors::ParquetError) -> Error {
    move |source| Error::Parquet { context, source }
}

/// A stored file with its footer read once, for several scans.
pub struct OpenFile {
    pub entry: FileEntry,
    metadata: ArrowReaderMetadata,
    /// (min, max) `system_id` of each row group.
    row_group_systems: Vec<(u32, u32)>,
}

impl OpenFile {
    pub async fn open(storage: &ObjectStorage, entry: &FileEntry) -> Result<Self, Error> {
        let mut reader = ObjectReader::new(storage, &entry.path, entry.bytes);
        let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
            .await
            .map_err(parquet_error(format!(
                "reading the footer of {}",
                entry.path
            )))?;
        let statistics_error = || parquet_error(format!("statistics of {}", entry.path));
        let converter = StatisticsConverter::try_new(
            SYSTEM_ID,
            metadata.schema(),
            metadata.metadata().file_metadata().schema_descr(),
        )
        .map_err(statistics_error())?;
        let row_groups = metadata.metadata().row_groups();
        let mins = converter
            .row_group_mins(row_groups.iter())
            .map_err(statistics_error())?;
        let maxes = converter
            .row_group_maxes(row_groups.iter())
            .map_err(statistics_error())?;
        let as_u32 = |array: &Arc<dyn Array>| {
            array
                .as_any()
                .downcast_ref::<UInt32Array>()
                .cloned()
                .ok_or_else(|| Error::Schema {
                    table: entry.table.name(),
                    reason: format!("{}: system_id statistics are not u32", entry.path),
                })
        };
        let (mins, maxes) = (as_u32(&mins)?, as_u32(&maxes)?);
        // A row group without statistics is read for every scan.
        let row_group_systems = (0..row_groups.len())
            .map(|i| {
                let low = if mins.is_null(i) { 0 } else { mins.value(i) };
                let high = if maxes.is_null(i) {
                    u32::MAX
                } else {
                    maxes.value(i)
                };
                (low, high)
            })
            .collect();
        Ok(Self {
            entry: entry.clone(),
            metadata,
            row_group_systems,
        })
    }

    /// Appends to `out` the rows of the wanted systems, in file order.
    pub async fn read(
        &self,
        storage: &ObjectStorage,
        systems: Systems<'_>,
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), Error> {
        let bounds = systems.bounds();
        let row_groups: Vec<usize> = self
            .row_group_systems
            .iter()
            .enumerate()
            .filter(|(_, (min, max))| bounds.is_none_or(|(low, high)| *min <= high && *max >= low))
            .map(|(i, _)| i)
            .collect();
        if row_groups.is_empty() {
            return Ok(());
        }
        let path = &self.entry.path;
        let reader = ObjectReader::new(storage, path, self.entry.bytes);
        let mut stream =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.metadata.clone())
                .with_row_groups(row_groups)
                .with_batch_size(64 * 1024)
                .build()
                .map_err(parquet_error(format!("reading {path}")))?;
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(parquet_error(format!("reading {path}")))?
        {
            if matches!(systems, Systems::All) {
                out.push(batch);
                continue;
            }
            let ids = batch
                .column_by_name(SYSTEM_ID)
                .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
                .ok_or_else(|| Error::Schema {
                    table: self.entry.table.name(),
                    reason: format!("{path}: system_id missing"),
                })?;
            let keep: BooleanArray = ids
                .values()
                .iter()
                .map(|&s| Some(systems.contains(s)))
                .collect();
            let rows = filter_record_batch(&batch, &keep).map_err(|source| Error::Arrow {
                context: format!("filtering {path}"),
                source,
            })?;
            if rows.num_rows() > 0 {
                out.push(rows);
            }
        }
        Ok(())
    }
}

/// The rows of the wanted systems in `files` (given oldest generation first), in that order.
pub async fn read_files(
    storage: &ObjectStorage,
    files: &[FileEntry],
    systems: Systems<'_>,
) -> Result<Vec<RecordBatch>, Error> {
    let mut out = Vec::new();
    for entry in files {
        OpenFile::open(storage, entry)
            .await?
            .read(storage, systems, &mut out)
            .await?;
    }
    Ok(out)
}
