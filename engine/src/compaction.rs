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
use crate::scan::{OpenFile, Systems, system_ranges};
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
    let parts: Vec<(&RoaringBitmap, u64)> = inputs.iter().map(|f| (&f.systems, f.rows)).collect();
    for (low, high) in system_ranges(&parts, chunk_rows) {
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
