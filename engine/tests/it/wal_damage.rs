//! WAL recovery on damaged and arbitrary segment files: the log opens (cutting a torn tail)
//! or is refused with `WalCorrupt` and left as it was; never a panic, and never a record
//! that was not written.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use sunfleet_engine::Error;
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::wal::{RecoveryReport, Wal, WalConfig, WalSeq, codec};

use crate::damage::{Damage, damage};
use crate::sample_batches;

/// The first bytes of every segment.
const MAGIC: &[u8; 8] = b"SFWAL\0\0\x02";

/// A WAL folder's segment files: name → bytes.
type Files = BTreeMap<String, Vec<u8>>;

type Replayed = Vec<(WalSeq, TelemetryBatch)>;

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.wal")
}

fn wal_files(dir: &Path) -> Files {
    fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wal"))
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect()
}

/// Opens a WAL on `dir`: what it replayed (also when it refused to open) and the outcome.
fn open(dir: &Path) -> (Replayed, Result<RecoveryReport, Error>) {
    let mut replayed = Vec::new();
    let result = Wal::open(WalConfig::for_tests(dir), |seq, batch| {
        replayed.push((seq, batch));
        Ok(())
    })
    .map(|(wal, report)| {
        drop(wal);
        report
    });
    (replayed, result)
}

/// Opens a WAL on a folder holding `files` and checks what every recovery must give: an
/// opened log replays consecutive records, reports them, and opens again with the same
/// records and nothing left to cut; a refusal is `WalCorrupt` with a reason and changes no
/// file. Returns the records replayed (also those replayed before a refusal).
fn recover(files: &Files) -> Result<Replayed, TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    let (replayed, result) = open(dir.path());
    for pair in replayed.windows(2) {
        prop_assert_eq!(
            Some(pair[1].0.0),
            pair[0].0.0.checked_add(1),
            "records replayed out of order"
        );
    }
    match result {
        Ok(report) => {
            prop_assert_eq!(report.records, replayed.len() as u64);
            if let Some((last, _)) = replayed.last() {
                prop_assert_eq!(Some(report.next_seq), last.0.checked_add(1));
            }
            let (again, result) = open(dir.path());
            let report = result.map_err(|error| {
                TestCaseError::fail(format!("a recovered log does not open again: {error}"))
            })?;
            prop_assert_eq!(report.truncated_bytes, 0);
            prop_assert_eq!(&again, &replayed);
        }
        Err(Error::WalCorrupt { reason, .. }) => {
            prop_assert!(!reason.trim().is_empty(), "refused without a reason");
            prop_assert_eq!(&wal_files(dir.path()), files, "a refused log was changed");
        }
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "neither opened nor refused as corrupt: {other}"
            )));
        }
    }
    Ok(replayed)
}

/// Writes `batches` with the WAL itself (half one append at a time, half all at once, so
/// frames hold one record or several) into segments of about `segment_bytes`.
fn write(batches: &[TelemetryBatch], segment_bytes: u64) -> (Files, Vec<TelemetryBatch>) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::for_tests(dir.path());
    config.segment_bytes = segment_bytes;
    let (wal, _) = Wal::open(config, |_, _| Ok(())).unwrap();
    let (single, together) = batches.split_at(batches.len() / 2);
    for batch in single {
        wal.append(batch).unwrap().wait().unwrap();
    }
    let pending: Vec<_> = together.iter().map(|b| wal.append(b).unwrap()).collect();
    for append in pending {
        append.wait().unwrap();
    }
    drop(wal);
    (wal_files(dir.path()), batches.to_vec())
}

/// Logs the WAL wrote, with the batches appended (record `n` is batch `n - 1`): one
/// segment, and one segment per frame.
fn layouts() -> &'static [(Files, Vec<TelemetryBatch>)] {
    static LAYOUTS: OnceLock<Vec<(Files, Vec<TelemetryBatch>)>> = OnceLock::new();
    LAYOUTS.get_or_init(|| {
        let batches = sample_batches(1);
        let layouts = vec![
            write(&batches[96..102], u64::MAX),
            write(&batches[90..94], 1),
        ];
        assert_eq!(layouts[0].0.len(), 1);
        assert!(layouts[1].0.len() > 1);
        layouts
    })
}

/// What happens to a WAL folder between a crash and the next start, or to its disk.
#[derive(Debug, Clone)]
enum FileDamage {
    /// The bytes of one file changed (the index wraps around the files).
    Bytes(usize, Damage),
    /// One file deleted.
    Remove(usize),
    /// One file renamed as starting at another record.
    Rename(usize, u64),
    /// A new segment after the others, named as the next record's: one begun just before
    /// a crash, holding these bytes.
    Add(Vec<u8>),
}

impl FileDamage {
    fn apply(&self, files: &mut Files, next_seq: u64) {
        match self {
            FileDamage::Bytes(i, damage) => {
                if let Some(name) = nth(files, *i)
                    && let Some(bytes) = files.get_mut(&name)
                {
                    damage.apply(bytes);
                }
            }
            FileDamage::Remove(i) => {
                if let Some(name) = nth(files, *i) {
                    files.remove(&name);
                }
            }
            FileDamage::Rename(i, first_seq) => {
                if let Some(name) = nth(files, *i)
                    && let Some(bytes) = files.remove(&name)
                {
                    files.insert(segment_name(*first_seq), bytes);
                }
            }
            FileDamage::Add(bytes) => {
                files.insert(segment_name(next_seq), bytes.clone());
            }
        }
    }
}

/// The name of file `i` (wrapping around the files).
fn nth(files: &Files, i: usize) -> Option<String> {
    files.keys().nth(i % files.len().max(1)).cloned()
}

/// Bytes a segment file may hold: anything, a header then anything, a cut header, or a
/// header then garbage then zeros.
fn segment_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(|b| [&MAGIC[..], &b[..]].concat()),
        (0usize..=8).prop_map(|n| MAGIC[..n].to_vec()),
        (prop::collection::vec(any::<u8>(), 0..64), 0usize..256).prop_map(|(b, zeros)| {
            let mut bytes = [&MAGIC[..], &b[..]].concat();
            bytes.resize(bytes.len() + zeros, 0);
            bytes
        }),
    ]
}

fn file_damage() -> impl Strategy<Value = FileDamage> {
    prop_oneof![
        6 => (any::<usize>(), damage()).prop_map(|(file, damage)| FileDamage::Bytes(file, damage)),
        1 => any::<usize>().prop_map(FileDamage::Remove),
        1 => (any::<usize>(), prop_oneof![0u64..8, Just(u64::MAX)])
            .prop_map(|(file, first_seq)| FileDamage::Rename(file, first_seq)),
        1 => segment_bytes().prop_map(FileDamage::Add),
    ]
}

/// File names a WAL folder may hold: segment names of any record, and names that parse as
/// one but are not spelt as the WAL spells them.
fn any_segment_name() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..4).prop_map(segment_name),
        Just(segment_name(u64::MAX)),
        any::<u64>().prop_map(segment_name),
        (0u64..4).prop_map(|seq| format!("{seq}.wal")),
        (0u64..4).prop_map(|seq| format!("+{seq}.wal")),
    ]
}

/// A record of a hand-made frame.
#[derive(Debug, Clone)]
enum Record {
    /// The body of a real batch (an index into `bodies()`).
    Real(usize),
    /// Arbitrary bytes as the body.
    Bytes(Vec<u8>),
    /// A length that need not be the bytes' that follow it.
    Lying(u64, Vec<u8>),
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        3 => (0usize..3).prop_map(Record::Real),
        1 => prop::collection::vec(any::<u8>(), 0..32).prop_map(Record::Bytes),
        1 => (
            prop_oneof![0u64..64, Just(u64::MAX), any::<u64>()],
            prop::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(len, bytes)| Record::Lying(len, bytes)),
    ]
}

/// What the frame holds instead of its records compressed.
#[derive(Debug, Clone)]
enum Compressed {
    /// The records, compressed.
    Honest,
    /// The records compressed, then damaged (under a checksum of the damaged bytes).
    Damaged(Vec<Damage>),
    /// Arbitrary bytes.
    Bytes(Vec<u8>),
}

fn compressed() -> impl Strategy<Value = Compressed> {
    prop_oneof![
        4 => Just(Compressed::Honest),
        2 => prop::collection::vec(damage(), 1..3).prop_map(Compressed::Damaged),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Compressed::Bytes),
    ]
}

/// Encoded bodies of real batches.
fn bodies() -> &'static [Vec<u8>] {
    static BODIES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    BODIES.get_or_init(|| {
        layouts()[0]
            .1
            .iter()
            .take(3)
            .map(|batch| codec::encode(batch).unwrap())
            .collect()
    })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A frame as the WAL lays it out (`len | crc32 | first_seq | count | compressed`), its
/// checksum right whatever it holds.
fn frame(first_seq: u64, count: u32, compressed: &[u8]) -> Vec<u8> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&first_seq.to_le_bytes());
    crc.update(&count.to_le_bytes());
    crc.update(compressed);
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(compressed.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(compressed);
    out
}

#[test]
fn the_written_logs_recover_whole() {
    for (files, batches) in layouts() {
        let replayed = recover(files).unwrap();
        let replayed: Vec<TelemetryBatch> = replayed.into_iter().map(|(_, b)| b).collect();
        assert_eq!(&replayed, batches);
    }
}

/// A frame whose records would be numbered past the largest record number: its file name
/// and header agree, its checksum holds, its records decode.
#[test]
fn records_numbered_past_the_largest_number_are_corruption() {
    for (first_seq, records) in [(u64::MAX, 1usize), (u64::MAX - 1, 2)] {
        let mut raw = Vec::new();
        for body in &bodies()[..records] {
            put_varint(&mut raw, body.len() as u64);
            raw.extend_from_slice(body);
        }
        let compressed = zstd::bulk::compress(&raw, 1).unwrap();
        let count = u32::try_from(records).unwrap();
        let segment = [&MAGIC[..], &frame(first_seq, count, &compressed)[..]].concat();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(segment_name(first_seq)), segment).unwrap();
        let (replayed, result) = open(dir.path());
        assert!(replayed.is_empty(), "{replayed:?}");
        match result {
            Err(Error::WalCorrupt { offset, reason, .. }) => {
                assert_eq!(offset, 8);
                assert!(reason.contains("largest record number"), "{reason}");
            }
            other => panic!("{first_seq}: {other:?}"),
        }
    }
}

proptest! {
    // Each case opens a WAL (and reopens a recovered one): files and fsyncs.
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A log the WAL wrote, damaged: it opens with records it holds (a prefix of what was
    /// written, or what follows removed segments) or is refused, unchanged.
    #[test]
    fn a_damaged_log_opens_with_written_records_or_is_refused(
        layout in 0usize..2,
        damages in prop::collection::vec(file_damage(), 1..4),
    ) {
        let (files, batches) = &layouts()[layout];
        let mut files = files.clone();
        for damage in &damages {
            damage.apply(&mut files, batches.len() as u64 + 1);
        }
        for (seq, batch) in recover(&files)? {
            let written = usize::try_from(seq.0)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| batches.get(i));
            prop_assert!(written == Some(&batch), "record {} was not written", seq.0);
        }
    }

    /// Files that the WAL did not write: they hold no record, so none is replayed.
    #[test]
    fn arbitrary_segment_files_replay_nothing(
        files in prop::collection::btree_map(any_segment_name(), segment_bytes(), 0..4),
    ) {
        let replayed = recover(&files)?;
        prop_assert!(replayed.is_empty(), "{} records from arbitrary bytes", replayed.len());
    }

    /// Frames whose checksums hold over hostile contents (wrong numbers, counts and
    /// lengths, undecodable or damaged compressed data, arbitrary bodies, garbage after):
    /// every record replayed is numbered from the file's name and is what the frame holds.
    #[test]
    fn frames_with_valid_checksums_replay_only_what_they_hold(
        first_seq in prop_oneof![
            Just(1u64),
            Just(0),
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(u64::MAX - 2),
            any::<u64>(),
        ],
        frame_seq in prop_oneof![4 => Just(None), 1 => any::<u64>().prop_map(Some)],
        count in prop_oneof![
            4 => Just(None),
            1 => prop_oneof![0u32..6, Just(u32::MAX)].prop_map(Some),
        ],
        records in prop::collection::vec(record(), 0..4),
        trailing in prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec(any::<u8>(), 1..8),
        ],
        compressed in compressed(),
        after in prop_oneof![3 => Just(Vec::new()), 1 => segment_bytes()],
    ) {
        let mut raw = Vec::new();
        // The bodies the reader finds, as long as every length told the truth.
        let mut expected = Vec::new();
        let mut honest = true;
        for record in &records {
            let (len, body) = match record {
                Record::Real(i) => (bodies()[*i].len() as u64, &bodies()[*i]),
                Record::Bytes(bytes) => (bytes.len() as u64, bytes),
                Record::Lying(len, bytes) => {
                    honest &= *len == bytes.len() as u64;
                    (*len, bytes)
                }
            };
            put_varint(&mut raw, len);
            raw.extend_from_slice(body);
            if honest {
                expected.push(body.clone());
            }
        }
        raw.extend_from_slice(&trailing);
        let mut bytes = zstd::bulk::compress(&raw, 1).unwrap();
        match &compressed {
            Compressed::Honest => {}
            Compressed::Damaged(damages) => {
                for damage in damages {
                    damage.apply(&mut bytes);
                }
            }
            Compressed::Bytes(arbitrary) => bytes = arbitrary.clone(),
        }
        let count = count.unwrap_or_else(|| u32::try_from(records.len()).unwrap());
        let segment = [
            &MAGIC[..],
            &frame(frame_seq.unwrap_or(first_seq), count, &bytes)[..],
            &after[..],
        ]
        .concat();
        let replayed = recover(&Files::from([(segment_name(first_seq), segment)]))?;
        for (i, (seq, batch)) in replayed.iter().enumerate() {
            prop_assert_eq!(Some(seq.0), first_seq.checked_add(i as u64));
            if matches!(compressed, Compressed::Honest) && let Some(body) = expected.get(i) {
                prop_assert_eq!(batch, &codec::decode(body).unwrap());
            }
        }
        if honest && matches!(compressed, Compressed::Honest) {
            prop_assert!(replayed.len() <= records.len());
        }
    }
}
