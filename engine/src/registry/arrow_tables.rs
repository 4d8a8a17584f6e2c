//! The registry's tables as Arrow batches, for the query layer to expose to SQL.
//!
//! Column types follow the declared SQLite types (INTEGER → Int64, REAL → Float64, TEXT →
//! Utf8) and their NOT NULL constraints. Secrets never leave: password hashes are left out.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::{Registry, sql_error};
use crate::Error;

/// Registry tables that SQL may read.
pub const SQL_TABLES: &[&str] = &[
    "companies",
    "owners",
    "users",
    "systems",
    "subcontractor_grants",
    "arrays",
    "devices",
    "production_estimates",
    "activation_steps",
    "events",
    "gateway_tasks",
    "service_requests",
];

/// Rows whose integer `column` is one of `values` (a filter SQLite applies for a scan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnIn {
    pub column: String,
    pub values: Vec<i64>,
}

/// Columns that SQL never sees.
const HIDDEN_COLUMNS: &[&str] = &["password_hash"];

enum Column {
    Integer(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
}

/// A column as SQLite declares it.
struct Declared {
    name: String,
    sql_type: String,
    not_null: bool,
}

impl Declared {
    fn field(&self) -> Field {
        let data_type = match self.sql_type.to_ascii_uppercase().as_str() {
            "INTEGER" => DataType::Int64,
            "REAL" => DataType::Float64,
            _ => DataType::Utf8,
        };
        // An INTEGER PRIMARY KEY is never NULL though SQLite does not declare it so.
        Field::new(&self.name, data_type, !self.not_null && self.name != "id")
    }

    fn builder(&self) -> Column {
        match self.field().data_type() {
            DataType::Int64 => Column::Integer(Int64Builder::new()),
            DataType::Float64 => Column::Real(Float64Builder::new()),
            _ => Column::Text(StringBuilder::new()),
        }
    }
}

fn declared_columns(connection: &Connection, table: &str) -> Result<Vec<Declared>, Error> {
    if !SQL_TABLES.contains(&table) {
        return Err(Error::UnknownTable {
            name: table.to_owned(),
        });
    }
    let context = || format!("reading the columns of {table}");
    let mut info = connection
        .prepare(&format!("PRAGMA table_info({table})"))
        .map_err(sql_error(context()))?;
    let declared: Vec<Declared> = info
        .query_map([], |row| {
            Ok(Declared {
                name: row.get(1)?,
                sql_type: row.get(2)?,
                not_null: row.get::<_, i64>(3)? != 0,
            })
        })
        .map_err(sql_error(context()))?
        .collect::<Result<_, _>>()
        .map_err(sql_error(context()))?;
    Ok(declared
        .into_iter()
        .filter(|c| !HIDDEN_COLUMNS.contains(&c.name.as_str()))
        .collect())
}

impl Registry {
    /// The Arrow schema of a registry table (one of [`SQL_TABLES`]).
    pub fn table_schema(&self, table: &str) -> Result<SchemaRef, Error> {
        self.read(|connection| {
            let fields: Vec<Field> = declared_columns(connection, table)?
                .iter()
                .map(Declared::field)
                .collect();
            Ok(Arc::new(Schema::new(fields)))
        })
    }

    /// A registry table (one of [`SQL_TABLES`]) as one Arrow batch.
    pub fn table_batch(&self, table: &str) -> Result<RecordBatch, Error> {
        self.table_batch_matching(table, &[])
    }

    /// The rows of a registry table (one of [`SQL_TABLES`]) whose integer columns hold one
    /// of the given values, every condition met, as one Arrow batch: SQLite reads only those
    /// rows, through its indexes where it has them.
    pub fn table_batch_matching(
        &self,
        table: &str,
        conditions: &[ColumnIn],
    ) -> Result<RecordBatch, Error> {
        self.read(|connection| {
            let context = || format!("reading {table}");
            let declared = declared_columns(connection, table)?;
            let fields: Vec<Field> = declared.iter().map(Declared::field).collect();
            let mut columns: Vec<Column> = declared.iter().map(Declared::builder).collect();
            let names: Vec<&str> = declared.iter().map(|c| c.name.as_str()).collect();
            let mut clauses = Vec::with_capacity(conditions.len());
            let mut values: Vec<i64> = Vec::new();
            for condition in conditions {
                let is_integer = declared.iter().any(|c| {
                    c.name == condition.column && c.field().data_type() == &DataType::Int64
                });
                if !is_integer {
                    return Err(Error::UnknownColumn {
                        table: table.to_owned(),
                        column: condition.column.clone(),
                    });
                }
                let marks = vec!["?"; condition.values.len()].join(", ");
                clauses.push(format!("{} IN ({marks})", condition.column));
                values.extend(&condition.values);
            }
            let filter = if clauses.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", clauses.join(" AND "))
            };
            let mut select = connection
                .prepare(&format!(
                    "SELECT {} FROM {table}{filter} ORDER BY rowid",
                    names.join(", ")
                ))
                .map_err(sql_error(context()))?;
            let mut rows = select
                .query(rusqlite::params_from_iter(values))
                .map_err(sql_error(context()))?;
            while let Some(row) = rows.next().map_err(sql_error(context()))? {
                for (i, column) in columns.iter_mut().enumerate() {
                    let value = row.get_ref(i).map_err(sql_error(context()))?;
                    match (column, value) {
                        (Column::Integer(b), ValueRef::Integer(v)) => b.append_value(v),
                        (Column::Real(b), ValueRef::Real(v)) => b.append_value(v),
                        (Column::Real(b), ValueRef::Integer(v)) => b.append_value(v as f64),
                        (Column::Text(b), ValueRef::Text(v)) => {
                            b.append_value(String::from_utf8_lossy(v))
                        }
                        (Column::Text(b), ValueRef::Integer(v)) => b.append_value(v.to_string()),
                        (Column::Text(b), ValueRef::Real(v)) => b.append_value(v.to_string()),
                        (Column::Integer(b), _) => b.append_null(),
                        (Column::Real(b), _) => b.append_null(),
                        (Column::Text(b), _) => b.append_null(),
                    }
                }
            }
            let arrays: Vec<ArrayRef> = columns
                .into_iter()
                .map(|c| -> ArrayRef {
                    match c {
                        Column::Integer(mut b) => Arc::new(b.finish()),
                        Column::Real(mut b) => Arc::new(b.finish()),
                        Column::Text(mut b) => Arc::new(b.finish()),
                    }
                })
                .collect();
            RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).map_err(|source| {
                Error::Arrow {
                    context: context(),
                    source,
                }
            })
        })
    }
}
