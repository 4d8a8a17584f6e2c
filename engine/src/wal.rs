//! The write-ahead log: the first place an acknowledged reading lives.
//!
//! Appends are encoded on the caller's thread ([`codec`]) and handed to one writer thread,
//! which gathers everything that arrives within the flush interval into one group,
//! compresses the group as one zstd frame, writes it and calls `fdatasync` (group commit),
//! then completes every append of the group. An append therefore resolves only once the
//! bytes that hold it are on disk. Compressing per group rather than per record amortises
//! zstd's table building over hundreds of small gateway batches and lets it find what
//! neighbouring batches share.
//!
//! # Files
//! `DIR/NNNNNNNNNNNNNNNNNNNN.wal` segments, named by the first record's [`WalSeq`], each
//! starting with an 8-byte magic. A frame is
//! `len: u32 | crc32: u32 | first_seq: u64 | count: u32 | zstd(records)`, little-endian, the
//! CRC covering everything after itself; `records` is `count` times `varint len | body`.
//!
//! # Recovery policy
//! - **Torn write**: damage in the **last** segment that reaches the end of the file within
//!   one frame's size (a frame cut short, or a bad frame followed only by zeros) is what a
//!   crash during the last write leaves; nothing in it was acknowledged (its fsync had not
//!   returned). The file is truncated there.
//! - **Corruption**: anything else — a bad frame with more data after it, a bad frame in an
//!   earlier segment, a damaged segment header, a frame whose CRC holds but whose sequence
//!   number or content is wrong. Opening fails with [`Error::WalCorrupt`] naming the file
//!   and offset, and nothing is changed: an operator decides.
//! - Limitation: a bit flip inside the very last frame of the log looks like a torn write.
//! - A directory is used by one [`Wal`] at a time (an exclusive lock on `DIR/LOCK`).
//! - After a failed write or fsync the WAL refuses every later append
//!   ([`Error::WalPoisoned`]): the state of the file is unknown until it is reopened and
//!   recovered, and nothing may be acknowledged in between.

pub mod codec;

use codec::{get_varint, put_varint};

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::Error;
use crate::telemetry::TelemetryBatch;

const MAGIC: &[u8; 8] = b"SFWAL\0\0\x02";
const FRAME_HEADER: usize = 20;
/// Largest decompressed frame recovery accepts (a damaged length cannot allocate more).
const MAX_FRAME_RAW_BYTES: usize = 1 << 30;
const ZSTD_LEVEL: i32 = 1;
/// Largest encoded batch an append accepts (a gateway batch is a few KiB).
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Position of a record in the log: 1, 2, 3, … across segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WalSeq(pub u64);

/// WAL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// How long the writer waits for more appends before it writes and syncs a group.
    pub flush_interval: Duration,
    /// A group is written as soon as it holds this many bytes (before compression).
    pub max_group_bytes: usize,
    /// A new segment starts once the current one reaches this size.
    pub segment_bytes: u64,
    /// Appends waiting for the writer; when full, `append` blocks (back-pressure).
    pub queue_depth: usize,
}

impl WalConfig {
    /// Production defaults.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            flush_interval: Duration::from_millis(5),
            max_group_bytes: 8 << 20,
            segment_bytes: 64 << 20,
            queue_depth: 4096,
        }
    }

    /// Small segments and no waiting, so tests exercise rotation quickly.
    pub fn for_tests(dir: impl Into<PathBuf>) -> Self {
        Self {
            flush_interval: Duration::ZERO,
            segment_bytes: 64 << 10,
            ..Self::new(dir)
        }
    }
}

/// What recovery found when the WAL was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments: usize,
    pub records: u64,
    /// Bytes cut from the end of the last segment (a torn write).
    pub truncated_bytes: u64,
    /// The sequence number the next append gets.
    pub next_seq: u64,
}

/// Counters of the writer, for tests and metrics.
#[derive(Debug, Default)]
pub struct WalStats {
    pub records: AtomicU64,
    pub groups: AtomicU64,
    /// Bytes written to segments (compressed frames with headers).
    pub bytes: AtomicU64,
    /// Encoded record bytes before compression.
    pub raw_bytes: AtomicU64,
}

type Reply = oneshot::Sender<Result<WalSeq, Error>>;

/// What the writer thread is asked to do.
// Appends are the hot path and rolls are rare: boxing the append would allocate per batch.
#[allow(clippy::large_enum_variant)]
enum Command {
    Append(Request),
    /// Start a new segment (if the current one holds records), so that everything written
    /// so far can be removed once persisted.
    Roll(oneshot::Sender<Result<(), Error>>),
}

struct Request {
    body: Vec<u8>,
    /// Handed to the [`DurableSink`] once the record is durable (appends made with
    /// [`Wal::append_owned`]).
    batch: Option<TelemetryBatch>,
    reply: Reply,
}

/// Receives every record appended with [`Wal::append_owned`] once it is durable, in WAL order,
/// one commit group at a time, before any append of the group is acknowledged. Runs on the
/// writer thread: it must be quick and must not wait for the WAL.
pub type DurableSink = Box<dyn FnMut(&mut Vec<(WalSeq, TelemetryBatch)>) + Send>;

/// An append that completes when its record is durable.
#[derive(Debug)]
pub struct PendingAppend {
    reply: oneshot::Receiver<Result<WalSeq, Error>>,
}

impl PendingAppend {
    /// Waits (async) until the record is fsync'd.
    pub async fn durable(self) -> Result<WalSeq, Error> {
        self.reply.await.unwrap_or(Err(Error::WalClosed))
    }

    /// Waits (blocking the thread) until the record is fsync'd. Not for async contexts.
    pub fn wait(self) -> Result<WalSeq, Error> {
        self.reply.blocking_recv().unwrap_or(Err(Error::WalClosed))
    }
}

/// The write-ahead log. Dropping it finishes pending groups and stops the writer.
pub struct Wal {
    /// Held for the WAL's lifetime; the OS releases it when the process dies.
    _lock: File,
    sender: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
    poisoned: Arc<AtomicBool>,
    stats: Arc<WalStats>,
}

impl Wal {
    /// Opens (or creates) the WAL in `config.dir`, recovering what is there: every intact
    /// record is passed to `replay` in order before any new append is accepted.
    pub fn open(
        config: WalConfig,
        replay: impl FnMut(WalSeq, TelemetryBatch) -> Result<(), Error>,
    ) -> Result<(Self, RecoveryReport), Error> {
        Self::open_with_sink(config, replay, None)
    }

    /// Like [`Wal::open`], with a sink that sees every durable record appended with
    /// [`Wal::append_owned`] (the engine's write buffer).
    pub fn open_with_sink(
        config: WalConfig,
        mut replay: impl FnMut(WalSeq, TelemetryBatch) -> Result<(), Error>,
        sink: Option<DurableSink>,
    ) -> Result<(Self, RecoveryReport), Error> {
        fs::create_dir_all(&config.dir).map_err(|source| Error::WalIo {
            path: config.dir.clone(),
            source,
        })?;
        // One WAL per directory: a second writer would recover (truncate) under the first.
        let lock_path = config.dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| Error::WalIo {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::WalLocked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::WalIo {
                    path: lock_path,
                    source,
                });
            }
        }
        let max_torn_bytes = FRAME_HEADER
            + zstd::zstd_safe::compress_bound(config.max_group_bytes + MAX_RECORD_BYTES);
        let report = recover(&config.dir, max_torn_bytes, &mut replay)?;
        let segment = open_segment(&config.dir, report.next_seq)?;
        let (sender, receiver) = mpsc::sync_channel(config.queue_depth.max(1));
        let poisoned = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WalStats::default());
        let compressor =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|source| Error::Codec {
                reason: format!("zstd: {source}"),
            })?;
        let writer = Writer {
            config,
            compressor,
            segment,
            next_seq: report.next_seq,
            poisoned: Arc::clone(&poisoned),
            stats: Arc::clone(&stats),
            sink,
            durable: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(receiver))
            .map_err(|source| Error::WalIo {
                path: PathBuf::from("<wal-writer thread>"),
                source,
            })?;
        Ok((
            Self {
                _lock: lock,
                sender: Some(sender),
                writer: Some(handle),
                poisoned,
                stats,
            },
            report,
        ))
    }

    /// Queues a batch; the returned handle completes once it is durable. Blocks while the
    /// writer's queue is full.
    pub fn append(&self, batch: &TelemetryBatch) -> Result<PendingAppend, Error> {
        let body = self.encode(batch)?;
        self.send(body, None)
    }

    /// Whether a write failed: the WAL then refuses every append until the process
    /// restarts (see [`Error::WalPoisoned`]).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Like [`Wal::append`], and hands the batch to the [`DurableSink`] once it is durable.
    pub fn append_owned(&self, batch: TelemetryBatch) -> Result<PendingAppend, Error> {
        let body = self.encode(&batch)?;
        self.send(body, Some(batch))
    }

    fn encode(&self, batch: &TelemetryBatch) -> Result<Vec<u8>, Error> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::WalPoisoned);
        }
        let body = codec::encode(batch)?;
        if body.len() > MAX_RECORD_BYTES {
            return Err(Error::Codec {
                reason: format!(
                    "batch encodes to {} bytes, more than the {MAX_RECORD_BYTES} a record may hold",
                    body.len()
                ),
            });
        }
        Ok(body)
    }

    fn send(&self, body: Vec<u8>, batch: Option<TelemetryBatch>) -> Result<PendingAppend, Error> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .as_ref()
            .ok_or(Error::WalClosed)?
            .send(Command::Append(Request { body, batch, reply }))
            .map_err(|_| Error::WalClosed)?;
        Ok(PendingAppend { reply: receiver })
    }

    pub fn stats(&self) -> &WalStats {
        &self.stats
    }

    /// Closes the current segment (if it holds records) and starts a new one, so that every
    /// record written so far can be removed by [`Wal::remove_segments_before`].
    pub async fn roll_segment(&self) -> Result<(), Error> {
        let (reply, receiver) = oneshot::channel();
        self.sender
            .as_ref()
            .ok_or(Error::WalClosed)?
            .send(Command::Roll(reply))
            .map_err(|_| Error::WalClosed)?;
        receiver.await.unwrap_or(Err(Error::WalClosed))
    }

    /// The first record number of the oldest segment in `dir`, if there is one.
    pub fn first_seq_on_disk(dir: &Path) -> Result<Option<WalSeq>, Error> {
        if !dir.exists() {
            return Ok(None);
        }
        Ok(list_segments(dir)?.first().map(|(first, _)| WalSeq(*first)))
    }

    /// Deletes whole segments whose every record is below `seq` (they are persisted
    /// elsewhere). The segment being written is never deleted.
    pub fn remove_segments_before(dir: &Path, seq: WalSeq) -> Result<usize, Error> {
        let segments = list_segments(dir)?;
        let mut removed = 0;
        for pair in segments.windows(2) {
            let (_, path) = &pair[0];
            let (next_first, _) = pair[1];
            if next_first <= seq.0 {
                fs::remove_file(path).map_err(|source| Error::WalIo {
                    path: path.clone(),
                    source,
                })?;
                removed += 1;
            }
        }
        if removed > 0 {
            sync_dir(dir)?;
        }
        Ok(removed)
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

struct Segment {
    path: PathBuf,
    file: File,
    len: u64,
}

struct Writer {
    config: WalConfig,
    compressor: zstd::bulk::Compressor<'static>,
    segment: Segment,
    next_seq: u64,
    poisoned: Arc<AtomicBool>,
    stats: Arc<WalStats>,
    sink: Option<DurableSink>,
    durable: Vec<(WalSeq, TelemetryBatch)>,
}

impl Writer {
    fn run(mut self, requests: Receiver<Command>) {
        let mut group: Vec<Request> = Vec::new();
        let mut raw = Vec::new();
        let mut frame = Vec::new();
        while let Ok(command) = requests.recv() {
            let first = match command {
                Command::Append(request) => request,
                Command::Roll(reply) => {
                    let _ = reply.send(self.roll());
                    continue;
                }
            };
            let mut roll_after = None;
            group.push(first);
            let deadline = Instant::now() + self.config.flush_interval;
            let mut group_bytes = group[0].body.len();
            while group_bytes < self.config.max_group_bytes {
                let command = match requests.try_recv() {
                    Ok(command) => command,
                    Err(_) => match requests
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(command) => command,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    },
                };
                match command {
                    Command::Append(next) => {
                        group_bytes += next.body.len();
                        group.push(next);
                    }
                    Command::Roll(reply) => {
                        roll_after = Some(reply);
                        break;
                    }
                }
            }
            self.commit(&mut group, &mut raw, &mut frame);
            if let Some(reply) = roll_after {
                let _ = reply.send(self.roll());
            }
        }
    }

    fn roll(&mut self) -> Result<(), Error> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::WalPoisoned);
        }
        if self.segment.len > MAGIC.len() as u64 {
            self.segment = open_segment(&self.config.dir, self.next_seq)?;
        }
        Ok(())
    }

    /// Writes and syncs a group as one frame, then answers every append in it.
    fn commit(&mut self, group: &mut Vec<Request>, raw: &mut Vec<u8>, frame: &mut Vec<u8>) {
        if self.poisoned.load(Ordering::Acquire) {
            for request in group.drain(..) {
                let _ = request.reply.send(Err(Error::WalPoisoned));
            }
            return;
        }
        let first_seq = self.next_seq;
        raw.clear();
        for request in group.iter() {
            put_varint(raw, request.body.len() as u64);
            raw.extend_from_slice(&request.body);
        }
        let result = encode_frame(&mut self.compressor, frame, first_seq, group.len(), raw)
            .and_then(|()| self.write_and_sync(frame, first_seq));
        match result {
            Ok(()) => {
                self.next_seq += group.len() as u64;
                self.stats.groups.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .records
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                self.stats
                    .bytes
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
                self.stats
                    .raw_bytes
                    .fetch_add(raw.len() as u64, Ordering::Relaxed);
                if let Some(sink) = self.sink.as_mut() {
                    self.durable.clear();
                    for (i, request) in group.iter_mut().enumerate() {
                        if let Some(batch) = request.batch.take() {
                            self.durable.push((WalSeq(first_seq + i as u64), batch));
                        }
                    }
                    if !self.durable.is_empty() {
                        sink(&mut self.durable);
                    }
                }
                for (i, request) in group.drain(..).enumerate() {
                    let _ = request.reply.send(Ok(WalSeq(first_seq + i as u64)));
                }
            }
            Err(error) => {
                tracing::error!(%error, "WAL write failed; refusing further appends");
                self.poisoned.store(true, Ordering::Release);
                let message = error.to_string();
                for request in group.drain(..) {
                    let _ = request.reply.send(Err(Error::WalWriteFailed {
                        message: message.clone(),
                    }));
                }
            }
        }
    }

    fn write_and_sync(&mut self, bytes: &[u8], first_seq: u64) -> Result<(), Error> {
        if self.segment.len >= self.config.segment_bytes {
            self.segment = open_segment(&self.config.dir, first_seq)?;
        }
        let io = |source| Error::WalIo {
            path: self.segment.path.clone(),
            source,
        };
        if crate::failpoint::fails("wal-write-error") {
            // A partial write, as a full disk leaves it.
            let _ = self.segment.file.write_all(&bytes[..bytes.len() / 2]);
            return Err(io(crate::failpoint::injected_error()));
        }
        self.segment.file.write_all(bytes).map_err(io)?;
        crate::failpoint::hit("wal-after-write");
        crate::failpoint::slow_sync();
        self.segment
            .file
            .sync_data()
            .map_err(|source| Error::WalIo {
                path: self.segment.path.clone(),
                source,
            })?;
        crate::failpoint::hit("wal-after-sync");
        self.segment.len += bytes.len() as u64;
        Ok(())
    }
}

fn encode_frame(
    compressor: &mut zstd::bulk::Compressor<'static>,
    out: &mut Vec<u8>,
    first_seq: u64,
    count: usize,
    raw: &[u8],
) -> Result<(), Error> {
    let compressed = compressor.compress(raw).map_err(|source| Error::Codec {
        reason: format!("zstd compression failed: {source}"),
    })?;
    let count = u32::try_from(count).map_err(|_| Error::Codec {
        reason: format!("{count} records in one group"),
    })?;
    let len = u32::try_from(compressed.len()).map_err(|_| Error::Codec {
        reason: format!("frame of {} bytes", compressed.len()),
    })?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&first_seq.to_le_bytes());
    crc.update(&count.to_le_bytes());
    crc.update(&compressed);
    out.clear();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&compressed);
    Ok(())
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

/// Creates a new segment (or reopens an empty one left by a crash) for appends.
fn open_segment(dir: &Path, first_seq: u64) -> Result<Segment, Error> {
    let path = segment_path(dir, first_seq);
    let io = |source| Error::WalIo {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io)?;
    let mut len = file.metadata().map_err(io)?.len();
    if len == 0 {
        file.write_all(MAGIC).map_err(io)?;
        file.sync_all().map_err(io)?;
        sync_dir(dir)?;
        len = MAGIC.len() as u64;
    }
    Ok(Segment { path, file, len })
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| Error::WalIo {
            path: dir.to_path_buf(),
            source,
        })
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let io = |source| Error::WalIo {
        path: dir.to_path_buf(),
        source,
    };
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".wal"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            segments.push((first, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Reads every segment, replays intact records, truncates a torn tail of the last segment.
fn recover(
    dir: &Path,
    max_torn_bytes: usize,
    replay: &mut impl FnMut(WalSeq, TelemetryBatch) -> Result<(), Error>,
) -> Result<RecoveryReport, Error> {
    let segments = list_segments(dir)?;
    let mut report = RecoveryReport {
        segments: segments.len(),
        next_seq: 1,
        ..RecoveryReport::default()
    };
    for (index, (first_seq, path)) in segments.iter().enumerate() {
        let is_last = index + 1 == segments.len();
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|source| Error::WalIo {
                path: path.clone(),
                source,
            })?;
        if index > 0 && *first_seq != report.next_seq {
            return Err(Error::WalCorrupt {
                path: path.clone(),
                offset: 0,
                reason: format!(
                    "segment starts at record {first_seq}, expected {}",
                    report.next_seq
                ),
            });
        }
        let (good_len, damage) = scan_segment(
            path,
            &bytes,
            *first_seq,
            max_torn_bytes,
            &mut |offset, seq, body| {
                let batch = codec::decode(body).map_err(|error| Error::WalCorrupt {
                    path: path.clone(),
                    offset: offset as u64,
                    reason: format!(
                        "record {seq} passed its checksum but does not decode: {error}"
                    ),
                })?;
                replay(WalSeq(seq), batch)?;
                report.records += 1;
                report.next_seq = seq + 1;
                Ok(())
            },
        )?;
        if report.records == 0 {
            report.next_seq = report.next_seq.max(*first_seq);
        }
        let reason = match damage {
            None => continue,
            Some(Damage::Torn { reason }) if is_last => reason,
            Some(Damage::Torn { reason } | Damage::Corrupt { reason }) => {
                return Err(Error::WalCorrupt {
                    path: path.clone(),
                    offset: good_len as u64,
                    reason,
                });
            }
        };
        {
            tracing::warn!(path = %path.display(), offset = good_len, %reason, "truncating torn WAL tail");
            if good_len < MAGIC.len() {
                // Torn while its header was written (a prefix of it): it holds nothing.
                fs::remove_file(path)
                    .map_err(|source| Error::WalIo {
                        path: path.clone(),
                        source,
                    })
                    .and_then(|()| sync_dir(dir))?;
                report.truncated_bytes = bytes.len() as u64;
                continue;
            }
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|source| Error::WalIo {
                    path: path.clone(),
                    source,
                })?;
            let truncate_to = good_len as u64;
            file.set_len(truncate_to)
                .and_then(|()| file.sync_all())
                .map_err(|source| Error::WalIo {
                    path: path.clone(),
                    source,
                })?;
            report.truncated_bytes = bytes.len() as u64 - truncate_to;
        }
    }
    Ok(report)
}

/// Why a segment scan stopped early.
#[derive(Debug)]
enum Damage {
    /// What a crash during the last write leaves: the damage reaches the end of the file
    /// within one frame's size (a cut-short frame, or a frame followed only by zeros).
    Torn { reason: String },
    /// Anything else: bytes that were synced (and acknowledged) are damaged.
    Corrupt { reason: String },
}

/// Walks the frames of one segment, passing each record (with its frame's offset) to
/// `on_record`. Returns how many leading bytes are good and, if the walk stopped early,
/// what kind of damage stopped it. `max_torn_bytes` bounds what one unfinished write can
/// leave behind.
fn scan_segment(
    path: &Path,
    bytes: &[u8],
    first_seq: u64,
    max_torn_bytes: usize,
    on_record: &mut impl FnMut(usize, u64, &[u8]) -> Result<(), Error>,
) -> Result<(usize, Option<Damage>), Error> {
    if bytes.len() < MAGIC.len() {
        let damage = if MAGIC.starts_with(bytes) {
            Damage::Torn {
                reason: "segment header cut short".to_owned(),
            }
        } else {
            Damage::Corrupt {
                reason: "damaged segment header".to_owned(),
            }
        };
        return Ok((0, Some(damage)));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Ok((
            0,
            Some(Damage::Corrupt {
                reason: "damaged segment header".to_owned(),
            }),
        ));
    }
    // Damage at `pos` is a torn write only if everything from there to the end of the
    // file could be one unfinished frame.
    let classify = |pos: usize, frame_end: Option<usize>, reason: String| {
        let tail = &bytes[pos..];
        let reaches_end =
            frame_end.is_none_or(|end| end >= bytes.len()) || tail.iter().all(|b| *b == 0);
        if tail.len() <= max_torn_bytes && reaches_end {
            Damage::Torn { reason }
        } else {
            Damage::Corrupt { reason }
        }
    };
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(|source| Error::Codec {
        reason: format!("zstd: {source}"),
    })?;
    let mut pos = MAGIC.len();
    let mut expected_seq = first_seq;
    while pos < bytes.len() {
        let Some(header) = bytes.get(pos..pos + FRAME_HEADER) else {
            let damage = classify(pos, None, "frame header cut short".to_owned());
            return Ok((pos, Some(damage)));
        };
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let len = word(0) as usize;
        let crc = word(4);
        let seq = u64::from(word(8)) | u64::from(word(12)) << 32;
        let count = word(16);
        let frame_end = pos + FRAME_HEADER + len;
        let Some(compressed) = bytes.get(pos + FRAME_HEADER..frame_end) else {
            let damage = classify(pos, None, format!("frame of {len} bytes cut short"));
            return Ok((pos, Some(damage)));
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[8..FRAME_HEADER]);
        hasher.update(compressed);
        if hasher.finalize() != crc {
            let damage = classify(pos, Some(frame_end), "checksum mismatch".to_owned());
            return Ok((pos, Some(damage)));
        }
        let corrupt = |reason: String| Error::WalCorrupt {
            path: path.to_path_buf(),
            offset: pos as u64,
            reason: format!("frame passed its checksum but {reason}"),
        };
        if seq != expected_seq {
            return Err(corrupt(format!(
                "starts at record {seq} where {expected_seq} was expected"
            )));
        }
        // The record after this frame's last must have a number too (a damaged file name
        // and header that agree could otherwise number records past the largest).
        let Some(next_seq) = seq.checked_add(u64::from(count)) else {
            return Err(corrupt(format!(
                "numbers its {count} records from {seq}, past the largest record number"
            )));
        };
        // zstd records the frame's size; allocate exactly that, within a cap.
        let raw_len = match zstd::zstd_safe::get_frame_content_size(compressed) {
            Ok(Some(n)) if n <= MAX_FRAME_RAW_BYTES as u64 => n as usize,
            _ => return Err(corrupt("has no valid content size".to_owned())),
        };
        let raw = decompressor
            .decompress(compressed, raw_len)
            .map_err(|source| corrupt(format!("does not decompress: {source}")))?;
        let mut at = 0;
        for i in 0..u64::from(count) {
            let body_len = get_varint(&raw, &mut at)
                .ok_or_else(|| corrupt(format!("record {i} has no length")))?;
            let body = usize::try_from(body_len)
                .ok()
                .and_then(|n| raw.get(at..at.checked_add(n)?))
                .ok_or_else(|| corrupt(format!("record {i} is cut short")))?;
            at += body.len();
            on_record(pos, seq + i, body)?;
        }
        if at != raw.len() {
            return Err(corrupt(format!(
                "has {} bytes after its records",
                raw.len() - at
            )));
        }
        expected_seq = next_seq;
        pos = frame_end;
    }
    Ok((pos, None))
}
