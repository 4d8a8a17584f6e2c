//! Reading stored Parquet files by system: files are sorted by `system_id`, so each row
//! group's `system_id` statistics say whether it can hold a wanted system, and only those
//! row groups are fetched; within them, `system_id` is decoded first and the other columns
//! only for the wanted systems' rows.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, RowFilter,
};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use roaring::RoaringBitmap;

use crate::Error;
use crate::dedup::sort_dedup;
use crate::manifest::FileEntry;
use crate::storage::{ObjectReader, ObjectStorage};
use crate::tables::{SYSTEM_ID, Table};

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

    /// The wanted systems as a set of their own; `None` for all.
    fn as_bitmap(&self) -> Option<RoaringBitmap> {
        match self {
            Systems::All => None,
            Systems::Range(low, high) => {
                let mut range = RoaringBitmap::new();
                range.insert_range(*low..=*high);
                Some(range)
            }
            Systems::Set(set) => Some((*set).clone()),
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
        let mut builder =
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, self.metadata.clone())
                .with_row_groups(row_groups)
                .with_batch_size(64 * 1024);
        if let Some(wanted) = systems.as_bitmap() {
            // A row group holds many systems: `system_id` is decoded first and the other
            // columns only for the rows of the wanted systems.
            let schema = self.metadata.metadata().file_metadata().schema_descr();
            let system_leaf = schema
                .columns()
                .iter()
                .position(|c| c.name() == SYSTEM_ID)
                .ok_or_else(|| Error::Schema {
                    table: self.entry.table.name(),
                    reason: format!("{path}: system_id missing"),
                })?;
            let predicate = ArrowPredicateFn::new(
                ProjectionMask::leaves(schema, [system_leaf]),
                move |batch: RecordBatch| {
                    let ids = batch
                        .column(0)
                        .as_any()
                        .downcast_ref::<UInt32Array>()
                        .ok_or_else(|| {
                            ArrowError::SchemaError("system_id is not a UInt32 column".to_owned())
                        })?;
                    Ok(ids
                        .values()
                        .iter()
                        .map(|&s| Some(wanted.contains(s)))
                        .collect::<BooleanArray>())
                },
            );
            builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
        }
        let mut stream = builder
            .build()
            .map_err(parquet_error(format!("reading {path}")))?;
        while let Some(batch) = stream
            .try_next()
            .await
            .map_err(parquet_error(format!("reading {path}")))?
        {
            if batch.num_rows() > 0 {
                out.push(batch);
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

/// Splits the systems of several sources — each given as (its systems, its rows) — into
/// ascending ranges of about `chunk_rows` rows each, estimating a source's rows per system
/// as its rows over its systems.
pub fn system_ranges(parts: &[(&RoaringBitmap, u64)], chunk_rows: usize) -> Vec<(u32, u32)> {
    let mut all = RoaringBitmap::new();
    for (systems, _) in parts {
        all |= *systems;
    }
    let mut ranges = Vec::new();
    let mut start: Option<u32> = None;
    let mut estimate = 0.0_f64;
    for system in &all {
        start.get_or_insert(system);
        estimate += parts
            .iter()
            .filter(|(systems, _)| systems.contains(system))
            .map(|(systems, rows)| *rows as f64 / systems.len().max(1) as f64)
            .sum::<f64>();
        if estimate >= chunk_rows as f64 {
            ranges.extend(start.take().map(|low| (low, system)));
            estimate = 0.0;
        }
    }
    if let (Some(low), Some(high)) = (start, all.max()) {
        ranges.push((low, high));
    }
    ranges
}

/// The rows of one UTC day held by several sources — files (oldest generation first) and
/// then buffered batches (oldest first) — merged: sorted into storage order, the latest
/// ingest of a key kept. The day is read a range of systems at a time, so memory holds
/// about `chunk_rows` rows whatever the day's size.
pub struct MergedDay {
    storage: ObjectStorage,
    table: Table,
    files: Vec<OpenFile>,
    buffered: Vec<RecordBatch>,
    wanted: Option<RoaringBitmap>,
    ranges: std::vec::IntoIter<(u32, u32)>,
}

impl MergedDay {
    /// Opens the day's files (their footers) and plans the system ranges. With `wanted`,
    /// only those systems are read.
    pub async fn open(
        storage: &ObjectStorage,
        table: Table,
        files: &[FileEntry],
        buffered: Vec<RecordBatch>,
        wanted: Option<RoaringBitmap>,
        chunk_rows: usize,
    ) -> Result<Self, Error> {
        let buffered_systems = buffered
            .iter()
            .map(|batch| {
                Ok((
                    system_ids(table, batch)?.values().iter().copied().collect(),
                    batch.num_rows() as u64,
                ))
            })
            .collect::<Result<Vec<(RoaringBitmap, u64)>, Error>>()?;
        let restrict = |systems: &RoaringBitmap| match &wanted {
            Some(wanted) => systems & wanted,
            None => systems.clone(),
        };
        let sources: Vec<(RoaringBitmap, u64)> = files
            .iter()
            .map(|f| (restrict(&f.systems), f.rows))
            .chain(
                buffered_systems
                    .iter()
                    .map(|(s, rows)| (restrict(s), *rows)),
            )
            .collect();
        let parts: Vec<(&RoaringBitmap, u64)> =
            sources.iter().map(|(s, rows)| (s, *rows)).collect();
        let ranges = system_ranges(&parts, chunk_rows);
        let mut opened = Vec::new();
        for (entry, (systems, _)) in files.iter().zip(&sources) {
            if !systems.is_empty() {
                opened.push(OpenFile::open(storage, entry).await?);
            }
        }
        Ok(Self {
            storage: storage.clone(),
            table,
            files: opened,
            buffered,
            wanted,
            ranges: ranges.into_iter(),
        })
    }

    /// The next range's rows, merged; `None` once the day is done. A range may yield no
    /// rows.
    pub async fn next_chunk(&mut self) -> Result<Option<RecordBatch>, Error> {
        let Some((low, high)) = self.ranges.next() else {
            return Ok(None);
        };
        let keep = |system: u32| {
            (low..=high).contains(&system)
                && self.wanted.as_ref().is_none_or(|w| w.contains(system))
        };
        let mut batches = Vec::new();
        for file in &self.files {
            let mut rows = Vec::new();
            file.read(&self.storage, Systems::Range(low, high), &mut rows)
                .await?;
            if self.wanted.is_none() {
                batches.extend(rows);
                continue;
            }
            for batch in rows {
                batches.push(filter_systems(self.table, &batch, keep)?);
            }
        }
        for batch in &self.buffered {
            batches.push(filter_systems(self.table, batch, keep)?);
        }
        let table = self.table;
        let merged = tokio::task::spawn_blocking(move || sort_dedup(table, &batches))
            .await
            .map_err(crate::store::join_error)??;
        Ok(Some(merged))
    }
}

fn system_ids(table: Table, batch: &RecordBatch) -> Result<&UInt32Array, Error> {
    batch
        .column_by_name(SYSTEM_ID)
        .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
        .ok_or_else(|| Error::Schema {
            table: table.name(),
            reason: "system_id missing".to_owned(),
        })
}

fn filter_systems(
    table: Table,
    batch: &RecordBatch,
    keep: impl Fn(u32) -> bool,
) -> Result<RecordBatch, Error> {
    let mask: BooleanArray = system_ids(table, batch)?
        .values()
        .iter()
        .map(|&s| Some(keep(s)))
        .collect();
    filter_record_batch(batch, &mask).map_err(|source| Error::Arrow {
        context: format!("filtering {table} by system"),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::CivilDate;

    fn entry(systems: &[u32], rows: u64) -> FileEntry {
        FileEntry {
            table: Table::Readings,
            day: CivilDate::from_days_since_epoch(0),
            path: String::new(),
            generation: 1,
            rows,
            bytes: 0,
            min_time_us: 0,
            max_time_us: 0,
            systems: systems.iter().copied().collect(),
            devices: RoaringBitmap::new(),
        }
    }

    #[test]
    fn ranges_cover_every_system_once_in_order() {
        let inputs = [entry(&[1, 2, 3, 4, 5, 6], 600), entry(&[4, 5, 6, 9], 40)];
        let parts: Vec<(&RoaringBitmap, u64)> =
            inputs.iter().map(|f| (&f.systems, f.rows)).collect();
        assert_eq!(system_ranges(&parts, 250), vec![(1, 3), (4, 6), (9, 9)]);
        assert_eq!(system_ranges(&parts, 1_000_000), vec![(1, 9)]);
        assert!(system_ranges(&[], 10).is_empty());
    }
}
