//! Where partition files and manifests live: a local folder by default, any S3-compatible
//! store by configuration, both behind `object_store`.
//!
//! `object_store`'s local backend writes a temporary file and renames it into place, but
//! does not fsync. The engine truncates its WAL once a manifest is stored, so on a local
//! disk every object is fsync'd (with its folders) before [`ObjectStorage::put_durable`]
//! returns. An S3 PUT is durable when it succeeds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use std::ops::Range;

use futures::future::BoxFuture;
use futures::{FutureExt, TryFutureExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::Error;
use crate::tables::Table;

/// Where the store's objects are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageLocation {
    /// A folder on this machine.
    Local(PathBuf),
    /// A bucket of an S3-compatible service.
    S3(S3Location),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// For services other than AWS (MinIO, moto, …): `http://host:port`.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Plain HTTP endpoints are refused unless this is set.
    pub allow_http: bool,
}

/// The object store and what is needed to make its writes durable.
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    /// For a local folder: its path, to fsync what is written.
    local_root: Option<PathBuf>,
    description: String,
}

fn storage_error(context: String) -> impl FnOnce(object_store::Error) -> Error {
    move |source| Error::Storage {
        context,
        source: Box::new(source),
    }
}

impl ObjectStorage {
    pub fn open(location: &StorageLocation) -> Result<Self, Error> {
        match location {
            StorageLocation::Local(root) => {
                std::fs::create_dir_all(root).map_err(|source| Error::Io {
                    path: root.clone(),
                    source,
                })?;
                let store = LocalFileSystem::new_with_prefix(root)
                    .map_err(storage_error(format!("opening {}", root.display())))?;
                Ok(Self {
                    store: Arc::new(store),
                    local_root: Some(root.clone()),
                    description: root.display().to_string(),
                })
            }
            StorageLocation::S3(s3) => {
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key)
                    .with_allow_http(s3.allow_http);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let store = builder
                    .build()
                    .map_err(storage_error(format!("configuring bucket {}", s3.bucket)))?;
                Ok(Self {
                    store: Arc::new(store),
                    local_root: None,
                    description: format!("s3://{}", s3.bucket),
                })
            }
        }
    }

    /// The underlying store (for readers such as the query layer).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// `s3://bucket` or the local folder.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The local folder, when the store is one.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// Stores `bytes` at `path` (replacing any object there) and returns once they are durable.
    pub async fn put_durable(&self, path: &str, bytes: Vec<u8>) -> Result<(), Error> {
        if crate::failpoint::fails("object-write-error") {
            return Err(Error::Io {
                path: PathBuf::from(path),
                source: crate::failpoint::injected_error(),
            });
        }
        let location = ObjectPath::from(path);
        self.store
            .put(&location, PutPayload::from(bytes))
            .await
            .map_err(storage_error(format!("writing {path}")))?;
        crate::failpoint::hit("object-before-sync");
        self.make_durable(path).await
    }

    /// Makes an object written through [`ObjectStorage::store`] durable (fsync on a local
    /// disk; nothing to do on S3).
    pub async fn make_durable(&self, path: &str) -> Result<(), Error> {
        if let Some(root) = &self.local_root {
            let root = root.clone();
            let file = root.join(path);
            tokio::task::spawn_blocking(move || sync_file_and_folders(&root, &file))
                .await
                .map_err(|e| Error::Io {
                    path: PathBuf::from(path),
                    source: std::io::Error::other(e),
                })??;
        }
        Ok(())
    }

    pub async fn get(&self, path: &str) -> Result<Bytes, Error> {
        let location = ObjectPath::from(path);
        let context = || format!("reading {path}");
        self.store
            .get(&location)
            .await
            .map_err(storage_error(context()))?
            .bytes()
            .await
            .map_err(storage_error(context()))
    }

    /// Every object under `prefix`, as (path, size).
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, Error> {
        let location = ObjectPath::from(prefix);
        let objects: Vec<_> = self
            .store
            .list(Some(&location))
            .try_collect()
            .await
            .map_err(storage_error(format!("listing {prefix}")))?;
        Ok(objects
            .into_iter()
            .map(|o| (o.location.to_string(), o.size))
            .collect())
    }

    /// Deletes an object; one already gone is not an error.
    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        match self.store.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(storage_error(format!("deleting {path}"))(source)),
        }
    }
}

fn sync_file_and_folders(root: &Path, file: &Path) -> Result<(), Error> {
    let sync = |path: &Path| {
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })
    };
    sync(file)?;
    // The rename and any folders created for it must be durable too.
    let mut folder = file.parent();
    while let Some(dir) = folder {
        sync(dir)?;
        if dir == root {
            break;
        }
        folder = dir.parent();
    }
    Ok(())
}

/// How hard a Parquet file is compressed: persisted files are rewritten by compaction
/// soon, so they are written quickly; compacted files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Persisted,
    Compacted,
}

/// Writer settings per column, chosen by measurement (BENCHMARKS.md, "Parquet layout"):
/// integers and timestamps delta-binary-packed without dictionaries, ZSTD, sorted-by
/// metadata so readers know the order.
pub fn writer_properties(table: Table, kind: FileKind) -> Result<WriterProperties, Error> {
    let level = match kind {
        FileKind::Persisted => 1,
        FileKind::Compacted => 9,
    };
    let zstd = ZstdLevel::try_new(level).map_err(|source| Error::Parquet {
        context: format!("zstd level {level}"),
        source,
    })?;
    let schema = table.schema();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_dictionary_enabled(false)
        .set_max_row_group_row_count(Some(256 * 1024));
    for field in schema.fields() {
        if field.data_type().is_integer() || matches!(field.data_type(), DataType::Timestamp(..)) {
            builder = builder.set_column_encoding(
                ColumnPath::from(field.name().as_str()),
                Encoding::DELTA_BINARY_PACKED,
            );
        }
    }
    let sorting = table
        .sort_columns()
        .iter()
        .map(|name| {
            schema
                .index_of(name)
                .map(|index| SortingColumn {
                    column_idx: index as i32,
                    descending: false,
                    nulls_first: false,
                })
                .map_err(|source| Error::Arrow {
                    context: format!("sort column {name} of {table}"),
                    source,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(builder.set_sorting_columns(Some(sorting)).build())
}

/// Encodes sorted rows of `table` as a Parquet file.
pub fn encode_parquet(table: Table, kind: FileKind, rows: &RecordBatch) -> Result<Vec<u8>, Error> {
    let parquet_error = |context: &str| {
        let context = format!("{context} ({table})");
        move |source| Error::Parquet { context, source }
    };
    let mut writer = ArrowWriter::try_new(
        Vec::new(),
        table.schema(),
        Some(writer_properties(table, kind)?),
    )
    .map_err(parquet_error("starting a file"))?;
    writer.write(rows).map_err(parquet_error("writing rows"))?;
    writer
        .into_inner()
        .map_err(parquet_error("finishing a file"))
}

/// Reads a Parquet object of known size through the object store, fetching only the byte
/// ranges the reader asks for (footer, chosen row groups).
#[derive(Debug, Clone)]
pub struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    size: u64,
}

impl ObjectReader {
    pub fn new(storage: &ObjectStorage, path: &str, size: u64) -> Self {
        Self {
            store: storage.store(),
            path: ObjectPath::from(path),
            size,
        }
    }
}

fn external(error: object_store::Error) -> parquet::errors::ParquetError {
    parquet::errors::ParquetError::External(Box::new(error))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.store
            .get_range(&self.path, range)
            .map_err(external)
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
