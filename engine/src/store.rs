//! The telemetry store: WAL → write buffer → Parquet partitions listed by a manifest.
//!
//! - [`Store::append`] puts a gateway batch in the WAL; once it is durable the WAL's writer
//!   applies it to the write buffer and only then acknowledges it, so an acknowledged batch
//!   is readable at once.
//! - [`Store::persist`] freezes the buffer, writes one sorted, duplicate-free Parquet file
//!   per (table, UTC day) it holds, stores a new manifest listing them, and only then drops
//!   WAL segments the manifest covers.
//! - [`Store::compact`] merges the files of a day into one (the latest ingest of a key wins).
//! - [`Store::drop_days_before`] removes whole days (retention).
//! - [`Store::snapshot`] gives readers a consistent view: the manifest's files for a range
//!   plus the buffered batches, in precedence order. Files replaced by compaction or dropped
//!   by retention are deleted only once no snapshot refers to the manifest that listed them.
//!
//! Persist, compaction and retention take turns (one maintenance lock); appends and reads
//! go on meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use arrow::array::{BooleanArray, TimestampMicrosecondArray, UInt32Array};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use roaring::RoaringBitmap;

use crate::Error;
use crate::activity::Changes;
use crate::buffer::WriteBuffer;
use crate::compaction::merge_files;
use crate::dedup::sort_dedup;
use crate::directory::DeviceDirectory;
use crate::failpoint;
use crate::ids::{BatchSeq, Serial};
use crate::manifest::{FileEntry, FileStats, MANIFEST_DIR, Manifest, typed_column};
use crate::scan::{Systems, read_files};
use crate::storage::{FileKind, ObjectStorage, StorageLocation, encode_parquet};
use crate::tables::{SYSTEM_ID, TIME, Table};
use crate::telemetry::TelemetryBatch;
use crate::time::{CivilDate, MICROS_PER_DAY, now_micros};
use crate::wal::{PendingAppend, RecoveryReport, Wal, WalConfig, WalSeq};

mod rollup_jobs;

pub use rollup_jobs::DailyImport;

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub wal: WalConfig,
    /// Where partition files and manifests go.
    pub storage: StorageLocation,
    /// Persist once the buffer holds this many rows …
    pub persist_rows: usize,
    /// … or this long after the last persist.
    pub persist_interval: Duration,
    /// Appends are refused ([`Error::BufferFull`]) while the buffer holds this many rows
    /// (persistence is behind): this bounds the engine's memory.
    pub max_buffered_rows: usize,
    /// Compact an open day once its newest run of small files is this long.
    pub compact_min_files: usize,
    /// A file with fewer rows than this is small (merged during the day).
    pub small_file_rows: u64,
    /// A day is closed (merged into one file) this long after it ends, in microseconds.
    pub compaction_grace_us: i64,
    /// Compaction holds about this many rows in memory at once.
    pub compaction_chunk_rows: usize,
    /// Drop days older than this many days (none: keep everything).
    pub retention_days: Option<u32>,
}

impl StoreConfig {
    /// Production defaults with everything under `data_dir` (`wal/`, `parquet/`).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            wal: WalConfig::new(data_dir.join("wal")),
            storage: StorageLocation::Local(data_dir.join("parquet")),
            persist_rows: 8_000_000,
            persist_interval: Duration::from_secs(60),
            max_buffered_rows: 32_000_000,
            compact_min_files: 4,
            small_file_rows: 1_000_000,
            compaction_grace_us: 3_600 * 1_000_000,
            compaction_chunk_rows: 2_000_000,
            retention_days: None,
        }
    }

    /// Quick WAL settings and small thresholds for tests.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            wal: WalConfig::for_tests(data_dir.join("wal")),
            persist_rows: 100_000,
            max_buffered_rows: 10_000_000,
            compact_min_files: 2,
            compaction_chunk_rows: 5_000,
            ..Self::new(data_dir)
        }
    }
}

/// What a reader asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    pub table: Table,
    /// Inclusive start, UTC microseconds.
    pub start_us: i64,
    /// Exclusive end, UTC microseconds.
    pub end_us: i64,
    /// Only these systems (none: all).
    pub systems: Option<RoaringBitmap>,
}

impl ReadRequest {
    pub fn days(table: Table, first: CivilDate, last: CivilDate) -> Self {
        Self {
            table,
            start_us: first.start_micros(),
            end_us: last.start_micros() + MICROS_PER_DAY,
            systems: None,
        }
    }

    fn first_day(&self) -> CivilDate {
        CivilDate::of_timestamp(self.start_us)
    }

    fn last_day(&self) -> CivilDate {
        CivilDate::of_timestamp(self.end_us - 1)
    }
}

/// A consistent view for one read: files, then buffered batches, oldest ingest first. On a
/// duplicate key the later one wins. Files stay in the store while this is alive.
#[derive(Debug, Clone)]
pub struct ReadSnapshot {
    pub manifest: Arc<Manifest>,
    /// Files that may hold rows of the request, by generation.
    pub files: Vec<FileEntry>,
    /// Buffered rows of the request's days (not filtered further), each with its UTC day,
    /// oldest first.
    pub buffered: Vec<(CivilDate, RecordBatch)>,
}

impl ReadSnapshot {
    /// The snapshot's sources grouped by UTC day, in day order.
    pub fn days(&self) -> Vec<DayParts> {
        let mut days: BTreeMap<CivilDate, DayParts> = BTreeMap::new();
        let part = |day: CivilDate| DayParts {
            day,
            files: Vec::new(),
            buffered: Vec::new(),
        };
        for file in &self.files {
            days.entry(file.day)
                .or_insert_with(|| part(file.day))
                .files
                .push(file.clone());
        }
        for (day, batch) in &self.buffered {
            days.entry(*day)
                .or_insert_with(|| part(*day))
                .buffered
                .push(batch.clone());
        }
        days.into_values().collect()
    }
}

/// One UTC day of a [`ReadSnapshot`]: the files (oldest generation first) and buffered
/// batches (oldest first) that may hold its rows.
#[derive(Debug, Clone)]
pub struct DayParts {
    pub day: CivilDate,
    pub files: Vec<FileEntry>,
    pub buffered: Vec<RecordBatch>,
}

impl DayParts {
    /// The file that alone holds the day, if there is one: every stored file is sorted and
    /// duplicate-free, so such a day can be scanned as it is, without merging.
    pub fn sole_file(&self) -> Option<&FileEntry> {
        match (self.files.as_slice(), self.buffered.is_empty()) {
            ([file], true) => Some(file),
            _ => None,
        }
    }
}

/// What [`Store::persist`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersistReport {
    pub files: usize,
    pub rows: u64,
    pub bytes: u64,
    pub persisted_wal_seq: u64,
    pub wal_segments_removed: usize,
}

struct State {
    active: WriteBuffer,
    /// A buffer being written out (or whose persist failed and will be retried).
    frozen: Option<Arc<WriteBuffer>>,
    manifest: Arc<Manifest>,
    /// Files no manifest lists any more, deleted once no snapshot holds the manifest.
    retired: Vec<(Arc<Manifest>, Vec<String>)>,
    /// What arrived since [`Store::take_changes`] last handed it over.
    changes: Changes,
}

/// The telemetry store. See the module documentation.
pub struct Store {
    state: Arc<Mutex<State>>,
    wal: Wal,
    wal_dir: PathBuf,
    storage: ObjectStorage,
    config: StoreConfig,
    maintenance: tokio::sync::Mutex<()>,
    recovery: RecoveryReport,
    replayed_records: u64,
    replayed_gateway_seqs: HashMap<Serial, BatchSeq>,
    devices: DeviceDirectory,
    /// Rows in `active` and `frozen`, kept beside the lock so `append` need not take it.
    buffered: Arc<AtomicUsize>,
    data_arrived: Arc<tokio::sync::Notify>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    /// Opens the store: loads the newest valid manifest, replays the WAL records it does not
    /// cover into the buffer, and removes files a crash left unlisted.
    pub async fn open(config: StoreConfig, devices: DeviceDirectory) -> Result<Self, Error> {
        let storage = ObjectStorage::open(&config.storage)?;
        let wal_dir = config.wal.dir.clone();
        let manifest = load_manifest(&storage, &wal_dir).await?;
        let persisted = manifest.persisted_wal_seq;
        let state = Arc::new(Mutex::new(State {
            active: WriteBuffer::new(),
            frozen: None,
            manifest: Arc::new(manifest),
            retired: Vec::new(),
            changes: Changes::default(),
        }));
        let replay_state = Arc::clone(&state);
        let replay_devices = devices.clone();
        let replayed = Arc::new(AtomicU64::new(0));
        let replay_count = Arc::clone(&replayed);
        let gateway_seqs = Arc::new(Mutex::new(HashMap::<Serial, BatchSeq>::new()));
        let replay_gateway_seqs = Arc::clone(&gateway_seqs);
        let sink_state = Arc::clone(&state);
        let sink_devices = devices.clone();
        let buffered = Arc::new(AtomicUsize::new(0));
        let replay_buffered = Arc::clone(&buffered);
        let sink_buffered = Arc::clone(&buffered);
        let data_arrived = Arc::new(tokio::sync::Notify::new());
        let sink_arrived = Arc::clone(&data_arrived);
        let wal_config = config.wal.clone();
        let (wal, recovery) = tokio::task::spawn_blocking(move || {
            Wal::open_with_sink(
                wal_config,
                move |seq, batch| {
                    replay_gateway_seqs
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .entry(batch.gateway)
                        .and_modify(|s| *s = (*s).max(batch.seq))
                        .or_insert(batch.seq);
                    if seq.0 > persisted {
                        replay_count.fetch_add(1, Ordering::Relaxed);
                        let added = replay_devices
                            .read(|map| lock(&replay_state).active.apply(seq, &batch, map));
                        replay_buffered.fetch_add(added, Ordering::Relaxed);
                    }
                    Ok(())
                },
                Some(Box::new(
                    move |records: &mut Vec<(WalSeq, TelemetryBatch)>| {
                        let added: usize = sink_devices.read(|map| {
                            let mut state = lock(&sink_state);
                            records
                                .drain(..)
                                .map(|(seq, batch)| {
                                    state.changes.observe(&batch, map);
                                    state.active.apply(seq, &batch, map)
                                })
                                .sum()
                        });
                        sink_buffered.fetch_add(added, Ordering::Relaxed);
                        sink_arrived.notify_one();
                    },
                )),
            )
        })
        .await
        .map_err(|e| Error::Io {
            path: wal_dir.clone(),
            source: std::io::Error::other(e),
        })??;
        if recovery.next_seq <= persisted {
            return Err(Error::WalBehindManifest {
                wal_next_seq: recovery.next_seq,
                persisted_wal_seq: persisted,
            });
        }
        let store = Self {
            state,
            wal,
            wal_dir,
            storage,
            config,
            maintenance: tokio::sync::Mutex::new(()),
            recovery,
            replayed_records: replayed.load(Ordering::Relaxed),
            replayed_gateway_seqs: std::mem::take(
                &mut gateway_seqs.lock().unwrap_or_else(PoisonError::into_inner),
            ),
            devices,
            buffered,
            data_arrived,
        };
        store.remove_unlisted_files().await?;
        Ok(store)
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The serial → device map the write path resolves with; the registry adds to it.
    pub fn directory(&self) -> &DeviceDirectory {
        &self.devices
    }

    pub fn storage(&self) -> &ObjectStorage {
        &self.storage
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// What WAL recovery found when the store was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// WAL records replayed into the buffer at open (those no manifest covered).
    pub fn replayed_records(&self) -> u64 {
        self.replayed_records
    }

    /// The highest batch sequence number of each gateway among the WAL records found at
    /// open. They were durable, so ingest may acknowledge them even if it had not saved
    /// that acknowledgement before a crash.
    pub fn replayed_gateway_seqs(&self) -> &HashMap<Serial, BatchSeq> {
        &self.replayed_gateway_seqs
    }

    /// Queues a batch; the handle resolves once it is durable and readable. Refused with
    /// [`Error::BufferFull`] while persistence is too far behind (the caller retries later),
    /// and with [`Error::TimeOutOfRange`] when a time is outside
    /// [`crate::time::STORABLE_TIMES_US`] (nothing of the batch is stored).
    pub fn append(&self, batch: TelemetryBatch) -> Result<PendingAppend, Error> {
        if let Some(time_us) = batch.time_out_of_range() {
            return Err(Error::TimeOutOfRange {
                gateway: batch.gateway,
                seq: batch.seq.0,
                time_us,
            });
        }
        let rows = self.buffered_rows();
        if rows >= self.config.max_buffered_rows {
            return Err(Error::BufferFull {
                rows,
                limit: self.config.max_buffered_rows,
            });
        }
        self.wal.append_owned(batch)
    }

    /// Whether the WAL refuses appends after a failed write (a full or failing disk):
    /// nothing is acknowledged until the process restarts.
    pub fn wal_failed(&self) -> bool {
        self.wal.is_poisoned()
    }

    /// Rows in the write buffer (including one being persisted). Lock-free: `append`
    /// checks it on every call.
    pub fn buffered_rows(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Hands over what arrived since the previous call (devices' newest reading times,
    /// systems that got rows) and starts collecting afresh. One consumer per store: the
    /// fleet checks. Rows replayed from the WAL at open are not included.
    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut lock(&self.state).changes)
    }

    /// Resolves once rows arrive after the call (or arrived since the last wake-up of a
    /// single waiter).
    pub async fn data_arrived(&self) {
        self.data_arrived.notified().await;
    }

    pub fn manifest(&self) -> Arc<Manifest> {
        Arc::clone(&lock(&self.state).manifest)
    }

    /// UTC days whose rollups may not include every reading of `system` now: days with
    /// readings in the write buffer (of any system: the buffer does not index them by
    /// system), and the day before each (a reading stamped midnight ends that day's last
    /// interval), and persisted days still waiting to be rolled up for it.
    pub fn stale_rollup_days(&self, system: u32) -> BTreeSet<CivilDate> {
        let state = lock(&self.state);
        let mut days: BTreeSet<CivilDate> = state
            .frozen
            .iter()
            .flat_map(|f| f.reading_days())
            .chain(state.active.reading_days())
            .flat_map(|day| [day.add_days(-1), day])
            .collect();
        days.extend(
            state
                .manifest
                .rollups_pending
                .iter()
                .filter(|p| p.systems.contains(system))
                .map(|p| p.day),
        );
        days
    }

    /// A consistent view of everything that may hold rows for `request`.
    pub fn snapshot(&self, request: &ReadRequest) -> ReadSnapshot {
        let (first, last) = (request.first_day(), request.last_day());
        let mut state = lock(&self.state);
        state.active.seal_all();
        let manifest = Arc::clone(&state.manifest);
        let files = manifest.select(
            request.table,
            request.start_us,
            request.end_us,
            request.systems.as_ref(),
        );
        let mut buffered = Vec::new();
        for buffer in state.frozen.iter().map(|f| &**f).chain([&state.active]) {
            buffered.extend(buffer.batches(request.table, first, last));
        }
        ReadSnapshot {
            manifest,
            files,
            buffered,
        }
    }

    /// The rows for `request`, deduplicated (latest ingest wins), in storage order.
    /// Materialises the answer: for exports, rollups and tests, not for large scans.
    pub async fn read(&self, request: &ReadRequest) -> Result<RecordBatch, Error> {
        let snapshot = self.snapshot(request);
        let systems = match &request.systems {
            Some(set) => Systems::Set(set),
            None => Systems::All,
        };
        let mut batches = read_files(&self.storage, &snapshot.files, systems).await?;
        batches.extend(snapshot.buffered.into_iter().map(|(_, batch)| batch));
        let table = request.table;
        let rows = tokio::task::spawn_blocking(move || sort_dedup(table, &batches))
            .await
            .map_err(join_error)??;
        filter_rows(&rows, request)
    }

    /// Writes the write buffer out as Parquet, then truncates the WAL it covered.
    pub async fn persist(&self) -> Result<PersistReport, Error> {
        let _turn = self.maintenance.lock().await;
        let frozen = {
            let mut state = lock(&self.state);
            match &state.frozen {
                // A persist that failed earlier: retry it before taking newer rows.
                Some(frozen) => Arc::clone(frozen),
                None if state.active.is_empty() => return Ok(PersistReport::default()),
                None => {
                    let mut buffer = std::mem::take(&mut state.active);
                    buffer.seal_all();
                    let frozen = Arc::new(buffer);
                    state.frozen = Some(Arc::clone(&frozen));
                    frozen
                }
            }
        };
        let Some(last_seq) = frozen.last_seq() else {
            lock(&self.state).frozen = None;
            return Ok(PersistReport::default());
        };
        let base = self.manifest();
        let mut generation = base.next_generation.max(1);
        let mut report = PersistReport {
            persisted_wal_seq: last_seq.0,
            ..PersistReport::default()
        };
        let mut new_files = Vec::new();
        // A reading stamped at midnight UTC ends the previous day's last interval: it
        // changes that day's rollups too.
        let mut midnight_readings: Vec<(CivilDate, RoaringBitmap)> = Vec::new();
        for (table, day, batches) in frozen.all_batches() {
            if table == Table::Readings {
                let systems = systems_at(&batches, day.start_micros())?;
                if !systems.is_empty() {
                    midnight_readings.push((day.add_days(-1), systems));
                }
            }
            let path = file_path(table, day, &format!("{generation:020}"));
            let entry = self
                .write_file(table, day, generation, path, batches)
                .await?;
            if let Some(entry) = entry {
                report.files += 1;
                report.rows += entry.rows;
                report.bytes += entry.bytes;
                new_files.push(entry);
                generation += 1;
            }
        }
        failpoint::hit("persist-before-manifest");
        let mut manifest = Manifest {
            version: base.version + 1,
            persisted_wal_seq: last_seq.0,
            next_generation: generation,
            ..(*base).clone()
        };
        for file in new_files {
            if file.table == Table::Readings {
                manifest.mark_pending(file.day, &file.systems);
            }
            manifest.files.push(file);
        }
        for (day, systems) in &midnight_readings {
            manifest.mark_pending(*day, systems);
        }
        self.install_manifest(manifest, Vec::new(), |state| state.frozen = None)
            .await?;
        self.buffered.fetch_sub(frozen.rows(), Ordering::Relaxed);
        failpoint::hit("persist-after-manifest");
        // Records after `last_seq` may share its segment: start a new one so this one can go.
        self.wal.roll_segment().await?;
        report.wal_segments_removed =
            Wal::remove_segments_before(&self.wal_dir, WalSeq(last_seq.0 + 1))?;
        tracing::debug!(?report, "persisted write buffer");
        Ok(report)
    }

    fn day_closed(&self, day: CivilDate, now_us: i64) -> bool {
        day.start_micros() + MICROS_PER_DAY + self.config.compaction_grace_us <= now_us
    }

    /// Compacts every (table, day) the policy picks (see [`compaction_inputs`]). Returns how
    /// many merges ran.
    pub async fn compact(&self) -> Result<usize, Error> {
        let days: std::collections::BTreeSet<(Table, CivilDate)> = self
            .manifest()
            .files
            .iter()
            .map(|f| (f.table, f.day))
            .collect();
        let mut compacted = 0;
        for (table, day) in days {
            if self.compact_day(table, day).await? {
                compacted += 1;
            }
        }
        Ok(compacted)
    }

    /// Merges the files of one (table, day) that the policy picks into one sorted,
    /// duplicate-free file. Returns whether a merge ran.
    pub async fn compact_day(&self, table: Table, day: CivilDate) -> Result<bool, Error> {
        let _turn = self.maintenance.lock().await;
        let base = self.manifest();
        let mut files: Vec<FileEntry> = base
            .files
            .iter()
            .filter(|f| f.table == table && f.day == day)
            .cloned()
            .collect();
        files.sort_by_key(|f| f.generation);
        let day_closed =
            day.start_micros() + MICROS_PER_DAY + self.config.compaction_grace_us <= now_micros();
        let inputs = compaction_inputs(&files, day_closed, &self.config);
        if inputs.len() < 2 {
            return Ok(false);
        }
        // The merged file keeps the newest input's generation: files persisted later
        // still win over it.
        let generation = inputs.iter().map(|f| f.generation).max().unwrap_or(0);
        let path = file_path(
            table,
            day,
            &format!("{generation:020}-c{:020}", base.version + 1),
        );
        let stats = merge_files(
            &self.storage,
            table,
            inputs,
            &path,
            self.config.compaction_chunk_rows,
        )
        .await?;
        let output = (stats.rows > 0).then(|| FileEntry::new(table, day, path, generation, stats));
        failpoint::hit("compact-before-manifest");
        let input_paths: Vec<String> = inputs.iter().map(|f| f.path.clone()).collect();
        let mut files: Vec<FileEntry> = base
            .files
            .iter()
            .filter(|f| !input_paths.contains(&f.path))
            .cloned()
            .collect();
        files.extend(output);
        let manifest = Manifest {
            version: base.version + 1,
            files,
            ..(*base).clone()
        };
        drop(base);
        self.install_manifest(manifest, input_paths, |_| {}).await?;
        failpoint::hit("compact-after-manifest");
        self.delete_retired().await?;
        Ok(true)
    }

    /// Removes every day before `first_kept` from the manifest (retention); their files are
    /// deleted once no reader uses them. Returns how many files were dropped.
    pub async fn drop_days_before(&self, first_kept: CivilDate) -> Result<usize, Error> {
        let _turn = self.maintenance.lock().await;
        let base = self.manifest();
        // Rollups are small and outlive the readings they summarise.
        let (dropped, kept): (Vec<FileEntry>, Vec<FileEntry>) = base
            .files
            .iter()
            .cloned()
            .partition(|f| !f.table.is_rollup() && f.day < first_kept);
        if dropped.is_empty() {
            return Ok(0);
        }
        let manifest = Manifest {
            version: base.version + 1,
            files: kept,
            rollups_pending: base
                .rollups_pending
                .iter()
                .filter(|p| p.day >= first_kept)
                .cloned()
                .collect(),
            ..(*base).clone()
        };
        let paths = dropped.iter().map(|f| f.path.clone()).collect();
        drop(base);
        self.install_manifest(manifest, paths, |_| {}).await?;
        self.delete_retired().await?;
        Ok(dropped.len())
    }

    /// One round of background work: persist when due, compact, apply retention, delete
    /// retired files. `since_persist` is how long ago the last persist ran.
    pub async fn maintain(&self, since_persist: Duration) -> Result<bool, Error> {
        let due = self.buffered_rows() >= self.config.persist_rows
            || (since_persist >= self.config.persist_interval && self.buffered_rows() > 0);
        if due {
            self.persist().await?;
        }
        self.roll_up().await?;
        self.compact().await?;
        if let Some(days) = self.config.retention_days {
            let today = CivilDate::of_timestamp(now_micros());
            let days = i32::try_from(days).unwrap_or(i32::MAX);
            self.drop_days_before(today.add_days(-days)).await?;
        }
        self.delete_retired().await?;
        Ok(due)
    }

    /// Runs [`Store::maintain`] until `stop` fires, waking every `tick`.
    pub async fn run_maintenance(
        self: Arc<Self>,
        tick: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut last_persist = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.changed() => break,
            }
            match self.maintain(last_persist.elapsed()).await {
                Ok(true) => last_persist = tokio::time::Instant::now(),
                Ok(false) => {}
                Err(error) => tracing::error!(%error, "store maintenance failed; will retry"),
            }
        }
    }

    /// Sorts, deduplicates and stores buffered rows as one file; `None` when there are none.
    async fn write_file(
        &self,
        table: Table,
        day: CivilDate,
        generation: u64,
        path: String,
        batches: Vec<RecordBatch>,
    ) -> Result<Option<FileEntry>, Error> {
        let encoded = tokio::task::spawn_blocking(move || {
            let rows = sort_dedup(table, &batches)?;
            if rows.num_rows() == 0 {
                return Ok(None);
            }
            let mut stats = FileStats::default();
            stats.add(table, &rows)?;
            let bytes = encode_parquet(table, FileKind::Persisted, &rows)?;
            Ok::<_, Error>(Some((stats, bytes)))
        })
        .await
        .map_err(join_error)??;
        let Some((mut stats, bytes)) = encoded else {
            return Ok(None);
        };
        stats.bytes = bytes.len() as u64;
        self.storage.put_durable(&path, bytes).await?;
        Ok(Some(FileEntry::new(table, day, path, generation, stats)))
    }

    /// Stores `manifest` durably, then makes it current (running `also` under the same
    /// lock) and retires `replaced` files.
    async fn install_manifest(
        &self,
        manifest: Manifest,
        replaced: Vec<String>,
        also: impl FnOnce(&mut State),
    ) -> Result<(), Error> {
        let version = manifest.version;
        self.storage
            .put_durable(&Manifest::object_path(version), manifest.encode()?)
            .await?;
        {
            let mut state = lock(&self.state);
            let old = std::mem::replace(&mut state.manifest, Arc::new(manifest));
            if !replaced.is_empty() {
                state.retired.push((old, replaced));
            }
            also(&mut state);
        }
        // Keep the previous version: recovery falls back to it if the newest is damaged.
        for (path, _) in self.storage.list(MANIFEST_DIR).await? {
            if Manifest::version_of(&path).is_some_and(|v| v + 1 < version) {
                self.storage.delete(&path).await?;
            }
        }
        Ok(())
    }

    /// Deletes retired files whose manifest no snapshot holds any more.
    async fn delete_retired(&self) -> Result<(), Error> {
        let ready: Vec<String> = {
            let mut state = lock(&self.state);
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut state.retired)
                .into_iter()
                .partition(|(manifest, _)| Arc::strong_count(manifest) == 1);
            state.retired = waiting;
            ready.into_iter().flat_map(|(_, paths)| paths).collect()
        };
        for path in ready {
            self.storage.delete(&path).await?;
        }
        Ok(())
    }

    /// Deletes table files the manifest does not list (left by a crash mid-persist or
    /// mid-compaction).
    async fn remove_unlisted_files(&self) -> Result<(), Error> {
        let manifest = self.manifest();
        for table in Table::ALL {
            for (path, _) in self.storage.list(table.name()).await? {
                if !manifest.files.iter().any(|f| f.path == path) {
                    tracing::info!(%path, "removing a file no manifest lists");
                    self.storage.delete(&path).await?;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn join_error(error: tokio::task::JoinError) -> Error {
    Error::Io {
        path: PathBuf::from("<worker task>"),
        source: std::io::Error::other(error),
    }
}

/// Which files of a day (by generation) to merge. A closed day (ended more than the grace
/// period ago) is merged into one file. An open day merges only its newest run of small
/// files once the run is `compact_min_files` long, so the day's big file is not rewritten
/// every few minutes. Inputs are always a run of consecutive generations, so that the
/// merged file (which takes the newest input's generation) ranks correctly against the rest.
pub fn compaction_inputs<'a>(
    files: &'a [FileEntry],
    day_closed: bool,
    config: &StoreConfig,
) -> &'a [FileEntry] {
    if day_closed {
        return files;
    }
    let small_run = files
        .iter()
        .rev()
        .take_while(|f| f.rows < config.small_file_rows)
        .count();
    if small_run >= config.compact_min_files.max(2) {
        &files[files.len() - small_run..]
    } else {
        &[]
    }
}

/// `table/day=YYYY-MM-DD/NAME.parquet`: hive-style, so other engines see the day column.
pub(crate) fn file_path(table: Table, day: CivilDate, name: &str) -> String {
    format!("{}/day={day}/{name}.parquet", table.name())
}

/// Keeps the rows inside the request's time range and systems.
/// Systems with a reading stamped exactly `time_us` in `batches`.
fn systems_at(batches: &[RecordBatch], time_us: i64) -> Result<RoaringBitmap, Error> {
    let mut systems = RoaringBitmap::new();
    for batch in batches {
        let times = typed_column::<TimestampMicrosecondArray>(batch, Table::Readings, TIME)?;
        let ids = typed_column::<UInt32Array>(batch, Table::Readings, SYSTEM_ID)?;
        for (time, system) in times.values().iter().zip(ids.values()) {
            if *time == time_us {
                systems.insert(*system);
            }
        }
    }
    Ok(systems)
}

fn filter_rows(rows: &RecordBatch, request: &ReadRequest) -> Result<RecordBatch, Error> {
    let times = typed_column::<TimestampMicrosecondArray>(rows, request.table, TIME)?;
    let systems = typed_column::<UInt32Array>(rows, request.table, SYSTEM_ID)?;
    let keep: BooleanArray = times
        .values()
        .iter()
        .zip(systems.values())
        .map(|(&time, &system)| {
            Some(
                time >= request.start_us
                    && time < request.end_us
                    && request.systems.as_ref().is_none_or(|s| s.contains(system)),
            )
        })
        .collect();
    filter_record_batch(rows, &keep).map_err(|source| Error::Arrow {
        context: format!("filtering {}", request.table),
        source,
    })
}

/// Loads the newest manifest that checks out. A damaged newest version is skipped only when
/// the WAL still holds every record since the older version's persist point (so nothing it
/// covered is lost); otherwise opening fails.
async fn load_manifest(
    storage: &ObjectStorage,
    wal_dir: &std::path::Path,
) -> Result<Manifest, Error> {
    let mut versions: Vec<(u64, String)> = storage
        .list(MANIFEST_DIR)
        .await?
        .into_iter()
        .filter_map(|(path, _)| Manifest::version_of(&path).map(|v| (v, path)))
        .collect();
    versions.sort();
    let Some((newest, newest_path)) = versions.pop() else {
        return Ok(Manifest {
            next_generation: 1,
            ..Manifest::default()
        });
    };
    let newest_error = match Manifest::decode(newest, &storage.get(&newest_path).await?) {
        Ok(manifest) => return Ok(manifest),
        Err(error) => error,
    };
    let Some((previous, previous_path)) = versions.pop() else {
        return Err(newest_error);
    };
    let older = Manifest::decode(previous, &storage.get(&previous_path).await?)?;
    let wal_first = Wal::first_seq_on_disk(wal_dir)?;
    if wal_first.is_some_and(|first| first.0 <= older.persisted_wal_seq + 1) {
        tracing::warn!(error = %newest_error, "newest manifest is damaged; using the previous one, the WAL still covers the difference");
        return Ok(older);
    }
    Err(newest_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(generation: u64, rows: u64) -> FileEntry {
        FileEntry::new(
            Table::Readings,
            CivilDate::from_days_since_epoch(0),
            format!("f{generation}"),
            generation,
            FileStats {
                rows,
                ..FileStats::default()
            },
        )
    }

    #[test]
    fn an_open_day_merges_only_its_newest_run_of_small_files() {
        let config = StoreConfig {
            compact_min_files: 3,
            small_file_rows: 100,
            ..StoreConfig::new("/unused")
        };
        let generations =
            |files: &[FileEntry]| files.iter().map(|f| f.generation).collect::<Vec<_>>();
        let files = [file(1, 10), file(2, 5000), file(3, 10), file(4, 10)];
        assert!(
            compaction_inputs(&files, false, &config).is_empty(),
            "run of 2 < 3"
        );
        let files = [
            file(1, 10),
            file(2, 5000),
            file(3, 10),
            file(4, 10),
            file(5, 99),
        ];
        assert_eq!(
            generations(compaction_inputs(&files, false, &config)),
            [3, 4, 5]
        );
        // A closed day is merged whole.
        assert_eq!(
            generations(compaction_inputs(&files, true, &config)),
            [1, 2, 3, 4, 5]
        );
    }
}
