//! Merging the files of one (table, day) into one sorted, duplicate-free file, in bounded
//! memory.
//!
//! Files are sorted by system first, so the merge walks the day's systems in ranges holding
//! about `chunk_rows` rows: for each range it reads only the row groups whose `system_id`
//! statistics overlap it (from every input, oldest generation first), resolves duplicates
//! (the latest ingest wins) and streams the result to the output object. Memory holds one
//! range's rows, not the day's.

use std::sync::Arc;

use arrow::array::{Array, BooleanArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use parquet::arrow::async_writer::AsyncArrowWriter;
use roaring::RoaringBitmap;

use crate::Error;
use crate::dedup::sort_dedup;
use crate::manifest::{FileEntry, FileStats};
use crate::storage::{FileKind, ObjectReader, ObjectStorage, writer_properties};
use crate::tables::{SYSTEM_ID, Table};

struct Input {
    entry: FileEntry,
    metadata: ArrowReaderMetadata,
    /// (min, max) `system_id` of each row group.
    row_group_systems: Vec<(u32, u32)>,
}

fn parquet_error(context: String) -> impl FnOnce(parquet::errors::ParquetError) -> Error {
    move |source| Error::Parquet { context, source }
}

/// Merges `inputs` (oldest generation first) into a new object at `output_path` and returns
/// what it holds (its size included).
pub async fn merge_files(
    storage: &ObjectStorage,
    table: Table,
    inputs: &[FileEntry],
    output_path: &str,
    chunk_rows: usize,
) -> Result<FileStats, Error> {
    let store = storage.store();
    let mut opened = Vec::with_capacity(inputs.len());
    for entry in inputs {
        opened.push(open_input(storage, entry).await?);
    }
    let mut writer = AsyncArrowWriter::try_new(
        BufWriter::new(store.clone(), ObjectPath::from(output_path)),
        table.schema(),
        Some(writer_properties(table, FileKind::Compacted)?),
    )
    .map_err(parquet_error(format!("starting {output_path}")))?;
    let mut stats = FileStats::default();
    for (low, high) in system_ranges(inputs, chunk_rows) {
        let mut batches = Vec::new();
        for input in &opened {
            read_system_range(storage, input, low, high, &mut batches).await?;
        }
        let rows = tokio::task::spawn_blocking(move || sort_dedup(table, &batches))
            .await
            .map_err(crate::store::join_error)??;
        stats.add(table, &rows)?;
        writer
            .write(&rows)
            .await
            .map_err(parquet_error(format!("writing {output_path}")))?;
    }
    writer
        .close()
        .await
        .map_err(parquet_error(format!("finishing {output_path}")))?;
    stats.bytes = store
        .head(&ObjectPath::from(output_path))
        .await
        .map_err(|source| Error::Storage {
            context: format!("sizing {output_path}"),
            source: Box::new(source),
        })?
        .size;
    storage.make_durable(output_path).await?;
    Ok(stats)
}

async fn open_input(storage: &ObjectStorage, entry: &FileEntry) -> Result<Input, Error> {
    let mut reader = ObjectReader::new(storage, &entry.path, entry.bytes);
    let metadata = ArrowReaderMetadata::load_async(&mut reader, ArrowReaderOptions::new())
        .await
        .map_err(parquet_error(format!(
            "reading the footer of {}",
            entry.path
        )))?;
    let converter = StatisticsConverter::try_new(
        SYSTEM_ID,
        metadata.schema(),
        metadata.metadata().file_metadata().schema_descr(),
    )
    .map_err(parquet_error(format!("statistics of {}", entry.path)))?;
    let row_groups = metadata.metadata().row_groups();
    let mins = converter
        .row_group_mins(row_groups.iter())
        .map_err(parquet_error(format!("statistics of {}", entry.path)))?;
    let maxes = converter
        .row_group_maxes(row_groups.iter())
        .map_err(parquet_error(format!("statistics of {}", entry.path)))?;
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
    // A row group without statistics is read for every range.
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
    Ok(Input {
        entry: entry.clone(),
        metadata,
        row_group_systems,
    })
}

/// Splits the day's systems into ascending ranges of about `chunk_rows` rows each,
/// estimating a file's rows per system as its rows over its systems.
fn system_ranges(inputs: &[FileEntry], chunk_rows: usize) -> Vec<(u32, u32)> {
    let mut all = RoaringBitmap::new();
    for input in inputs {
        all |= &input.systems;
    }
    let mut ranges = Vec::new();
    let mut start: Option<u32> = None;
    let mut estimate = 0.0_f64;
    for system in &all {
        start.get_or_insert(system);
        estimate += inputs
            .iter()
            .filter(|f| f.systems.contains(system))
            .map(|f| f.rows as f64 / f.systems.len().max(1) as f64)
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

async fn read_system_range(
    storage: &ObjectStorage,
    input: &Input,
    low: u32,
    high: u32,
    out: &mut Vec<RecordBatch>,
) -> Result<(), Error> {
    let row_groups: Vec<usize> = input
        .row_group_systems
        .iter()
        .enumerate()
        .filter(|(_, (min, max))| *min <= high && *max >= low)
        .map(|(i, _)| i)
        .collect();
    if row_groups.is_empty() {
        return Ok(());
    }
    let path = &input.entry.path;
    let reader = ObjectReader::new(storage, path, input.entry.bytes);
    let mut stream =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, input.metadata.clone())
            .with_row_groups(row_groups)
            .with_batch_size(64 * 1024)
            .build()
            .map_err(parquet_error(format!("reading {path}")))?;
    while let Some(batch) = stream
        .try_next()
        .await
        .map_err(parquet_error(format!("reading {path}")))?
    {
        let systems = batch
            .column_by_name(SYSTEM_ID)
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .ok_or_else(|| Error::Schema {
                table: input.entry.table.name(),
                reason: format!("{path}: system_id missing"),
            })?;
        let keep: BooleanArray = systems
            .values()
            .iter()
            .map(|&s| Some(s >= low && s <= high))
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
        let ranges = system_ranges(&inputs, 250);
        assert_eq!(ranges, vec![(1, 3), (4, 6), (9, 9)]);
        assert_eq!(system_ranges(&inputs, 1_000_000), vec![(1, 9)]);
        assert!(system_ranges(&[], 10).is_empty());
    }
}
