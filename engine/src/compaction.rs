//! Merging the files of one (table, day) into one sorted, duplicate-free file, in bounded
//! memory.
//!
//! Files are sorted by system first, so the merge walks the day's systems in ranges holding
//! about `chunk_rows` rows: for each range it reads only the row groups that can hold it
//! ([`crate::scan`]; every input, oldest generation first), resolves duplicates
//! (the latest ingest wins) and streams the result to the output object. Memory holds one
//! range's rows, not the day's.

use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as ObjectPath;
use parquet::arrow::async_writer::AsyncArrowWriter;
use roaring::RoaringBitmap;

use crate::Error;
use crate::dedup::sort_dedup;
use crate::manifest::{FileEntry, FileStats};
use crate::scan::{OpenFile, Systems};
use crate::storage::{FileKind, ObjectStorage, writer_properties};
use crate::tables::Table;

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
        opened.push(OpenFile::open(storage, entry).await?);
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
            input
                .read(storage, Systems::Range(low, high), &mut batches)
                .await?;
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
