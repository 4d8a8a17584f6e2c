//! Sorting rows into storage order and resolving duplicate keys: the latest ingest wins.
//!
//! Inputs are given oldest first (files by generation, then buffered chunks in WAL order,
//! rows within each in arrival order). Among rows with the same key the one that comes last
//! is kept, so the result is deterministic whatever order rows arrived in within a stage.

use arrow::array::{ArrayRef, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};

use crate::Error;
use crate::tables::Table;

fn arrow_error(context: &str) -> impl FnOnce(arrow::error::ArrowError) -> Error + '_ {
    move |source| Error::Arrow {
        context: context.to_owned(),
        source,
    }
}

/// Sorts the rows of `batches` (oldest ingest first) by the table's sort columns and keeps
/// only the last-ingested row of every key.
pub fn sort_dedup(table: Table, batches: &[RecordBatch]) -> Result<RecordBatch, Error> {
    let schema = table.schema();
    let all = concat_batches(&schema, batches).map_err(arrow_error("concatenating rows"))?;
    if all.num_rows() == 0 {
        return Ok(all);
    }
    let key_columns: Vec<ArrayRef> = table
        .sort_columns()
        .iter()
        .map(|name| {
            all.column_by_name(name)
                .cloned()
                .ok_or_else(|| Error::Schema {
                    table: table.name(),
                    reason: format!("missing key column {name}"),
                })
        })
        .collect::<Result<_, _>>()?;
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(arrow_error("building the sort key"))?;
    let keys = converter
        .convert_columns(&key_columns)
        .map_err(arrow_error("encoding the sort key"))?;
    let row_count = u32::try_from(all.num_rows()).map_err(|_| Error::Schema {
        table: table.name(),
        reason: format!("{} rows in one sort, more than u32", all.num_rows()),
    })?;
    let mut order: Vec<u32> = (0..row_count).collect();
    // Stable: equal keys stay in arrival order, so the last of a run is the latest ingest.
    order.sort_by(|&a, &b| keys.row(a as usize).cmp(&keys.row(b as usize)));
    let mut keep = Vec::with_capacity(order.len());
    for (position, &index) in order.iter().enumerate() {
        let last_of_run = order
            .get(position + 1)
            .is_none_or(|&next| keys.row(next as usize) != keys.row(index as usize));
        if last_of_run {
            keep.push(index);
        }
    }
    take_record_batch(&all, &UInt32Array::from(keep)).map_err(arrow_error("reordering rows"))
}
