//! The write-ahead log: durable appends, group commit, recovery and its policy.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sunfleet_engine::Error;
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::wal::{Wal, WalConfig, WalSeq};

use crate::sample_batches;

fn open(
    dir: &Path,
) -> (
    Wal,
    Vec<(WalSeq, TelemetryBatch)>,
    sunfleet_engine::wal::RecoveryReport,
) {
    let mut replayed = Vec::new();
    let (wal, report) = Wal::open(WalConfig::for_tests(dir), |seq, batch| {
        replayed.push((seq, batch));
        Ok(())
    })
    .unwrap();
    (wal, replayed, report)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

#[test]
fn appended_batches_come_back_in_order_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let batches = sample_batches(3);
    {
        let (wal, replayed, report) = open(dir.path());
        assert!(replayed.is_empty());
        assert_eq!(report.next_seq, 1);
        for (i, batch) in batches.iter().enumerate() {
            let seq = wal.append(batch).unwrap().wait().unwrap();
            assert_eq!(seq, WalSeq(i as u64 + 1));
        }
    }
    let (wal, replayed, report) = open(dir.path());
    assert_eq!(report.records, batches.len() as u64);
    assert_eq!(report.truncated_bytes, 0);
    assert!(segments(dir.path()).len() > 1, "small test segments rotate");
    let replayed_batches: Vec<_> = replayed.iter().map(|(_, b)| b.clone()).collect();
    assert_eq!(replayed_batches, batches);
    // Numbering continues after a restart.
    let seq = wal.append(&batches[0]).unwrap().wait().unwrap();
    assert_eq!(seq, WalSeq(batches.len() as u64 + 1));
}

#[test]
fn concurrent_appends_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = WalConfig::for_tests(dir.path());
    config.flush_interval = std::time::Duration::from_millis(2);
    let (wal, _) = Wal::open(config, |_, _| Ok(())).unwrap();
    let wal = Arc::new(wal);
    let batches = Arc::new(sample_batches(2));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let wal = Arc::clone(&wal);
            let batches = Arc::clone(&batches);
            std::thread::spawn(move || {
                let pending: Vec<_> = batches
                    .iter()
                    .skip(t)
                    .step_by(8)
                    .map(|b| wal.append(b).unwrap())
                    .collect();
                pending
                    .into_iter()
                    .map(|p| p.wait().unwrap().0)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=batches.len() as u64).collect();
    assert_eq!(seqs, expected, "every append acknowledged exactly once");
    let stats = wal.stats();
    let groups = stats.groups.load(std::sync::atomic::Ordering::Relaxed);
    let records = stats.records.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(records, batches.len() as u64);
    assert!(
        groups < records,
        "{groups} fsync groups for {records} records"
    );
    // Group compression: what reaches the disk is a fraction of the encoded records.
    let bytes = stats.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let raw = stats.raw_bytes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        bytes * 4 < raw * 3,
        "{bytes} bytes written for {raw} encoded"
    );
}

/// Three records, then the file cut at every byte of the last one: recovery keeps the
/// first two, truncates the rest, and the next append takes the third number.
#[test]
fn a_torn_last_record_is_truncated_at_every_offset() {
    let source = tempfile::tempdir().unwrap();
    let batches = sample_batches(1);
    let mut boundaries = Vec::new();
    {
        let mut config = WalConfig::for_tests(source.path());
        config.segment_bytes = u64::MAX;
        let (wal, _) = Wal::open(config, |_, _| Ok(())).unwrap();
        for batch in &batches[100..103] {
            wal.append(batch).unwrap().wait().unwrap();
            boundaries.push(fs::metadata(&segments(source.path())[0]).unwrap().len());
        }
    }
    let original = fs::read(&segments(source.path())[0]).unwrap();
    let name = segments(source.path())[0].file_name().unwrap().to_owned();
    for cut in boundaries[1]..boundaries[2] {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(&name), &original[..cut as usize]).unwrap();
        let (wal, replayed, report) = open(dir.path());
        assert_eq!(replayed.len(), 2, "cut at {cut}");
        assert_eq!(replayed[1].1, batches[101]);
        assert_eq!(report.truncated_bytes, cut - boundaries[1]);
        assert_eq!(
            fs::metadata(dir.path().join(&name)).unwrap().len(),
            boundaries[1]
        );
        assert_eq!(wal.append(&batches[0]).unwrap().wait().unwrap(), WalSeq(3));
    }
}

#[test]
fn a_flipped_bit_in_the_last_record_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let batches = sample_batches(1);
    let mut config = WalConfig::for_tests(dir.path());
    config.segment_bytes = u64::MAX;
    {
        let (wal, _) = Wal::open(config.clone(), |_, _| Ok(())).unwrap();
        for batch in &batches[..3] {
            wal.append(batch).unwrap().wait().unwrap();
        }
    }
    let path = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let (_, replayed, report) = open(dir.path());
    assert_eq!(replayed.len(), 2);
    assert!(report.truncated_bytes > 0);
}

#[test]
fn corruption_in_an_earlier_segment_refuses_to_open_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _, _) = open(dir.path());
        for batch in &sample_batches(2) {
            wal.append(batch).unwrap().wait().unwrap();
        }
    }
    let files = segments(dir.path());
    assert!(files.len() >= 2);
    let mut bytes = fs::read(&files[0]).unwrap();
    bytes[40] ^= 0xff;
    fs::write(&files[0], &bytes).unwrap();
    let before: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    let error = Wal::open(WalConfig::for_tests(dir.path()), |_, _| Ok(()))
        .err()
        .expect("corrupt WAL must not open");
    match &error {
        Error::WalCorrupt { path, offset, .. } => {
            assert_eq!(path, &files[0]);
            assert_eq!(*offset, 8, "the first record starts after the header");
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(error.to_string().contains("byte 8"), "{error}");
    let after: Vec<Vec<u8>> = files.iter().map(|f| fs::read(f).unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn a_segment_torn_inside_its_header_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _, _) = open(dir.path());
        wal.append(&sample_batches(1)[0]).unwrap().wait().unwrap();
    }
    fs::write(dir.path().join(format!("{:020}.wal", 2)), b"SFW").unwrap();
    let (wal, replayed, _) = open(dir.path());
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        wal.append(&sample_batches(1)[1]).unwrap().wait().unwrap(),
        WalSeq(2)
    );
    drop(wal);
    let (_, replayed, _) = open(dir.path());
    assert_eq!(replayed.len(), 2);
}

#[test]
fn old_segments_can_be_removed_once_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let batches = sample_batches(2);
    {
        let (wal, _, _) = open(dir.path());
        for batch in &batches {
            wal.append(batch).unwrap().wait().unwrap();
        }
    }
    let files = segments(dir.path());
    assert!(files.len() >= 2, "{files:?}");
    let first_of =
        |path: &PathBuf| -> u64 { path.file_stem().unwrap().to_str().unwrap().parse().unwrap() };
    let keep_from = WalSeq(first_of(&files[files.len() - 1]));
    let removed = Wal::remove_segments_before(dir.path(), keep_from).unwrap();
    assert_eq!(removed, files.len() - 1);
    // What is left still recovers, from the first kept record on.
    let (_, replayed, _) = open(dir.path());
    assert_eq!(replayed[0].0, keep_from);
    assert_eq!(replayed.last().unwrap().1, *batches.last().unwrap());
}

/// Three single-frame appends in one segment; returns the segment path and frame ends.
fn three_frames(dir: &Path) -> (PathBuf, Vec<u64>) {
    let mut config = WalConfig::for_tests(dir);
    config.segment_bytes = u64::MAX;
    let (wal, _) = Wal::open(config, |_, _| Ok(())).unwrap();
    let mut ends = Vec::new();
    for batch in &sample_batches(1)[..3] {
        wal.append(batch).unwrap().wait().unwrap();
        ends.push(fs::metadata(&segments(dir)[0]).unwrap().len());
    }
    (segments(dir)[0].clone(), ends)
}

#[test]
fn damage_before_the_end_of_the_last_segment_is_corruption_not_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ends) = three_frames(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    // Inside the first frame's body: two acknowledged frames follow it.
    bytes[30] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let error = Wal::open(WalConfig::for_tests(dir.path()), |_, _| Ok(()))
        .err()
        .expect("acknowledged data must not be truncated away");
    assert!(
        matches!(error, Error::WalCorrupt { offset: 8, .. }),
        "{error}"
    );
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        ends[2],
        "nothing truncated"
    );
}

#[test]
fn a_zero_filled_tail_is_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (path, ends) = three_frames(dir.path());
    // A crash after the file grew but before the last frame's data reached the disk.
    let mut bytes = fs::read(&path).unwrap();
    for b in &mut bytes[ends[1] as usize..] {
        *b = 0;
    }
    fs::write(&path, &bytes).unwrap();
    let (_, replayed, report) = open(dir.path());
    assert_eq!(replayed.len(), 2);
    assert_eq!(report.truncated_bytes, ends[2] - ends[1]);
}

#[test]
fn a_second_writer_on_the_same_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _, _) = open(dir.path());
    let error = Wal::open(WalConfig::for_tests(dir.path()), |_, _| Ok(()))
        .err()
        .expect("a second WAL must not open the same folder");
    assert!(matches!(error, Error::WalLocked { .. }), "{error}");
    drop(first);
    let _reopened = open(dir.path());
}

#[test]
fn a_batch_that_could_not_be_replayed_is_refused_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _, _) = open(dir.path());
    let mut batch = sample_batches(1)
        .into_iter()
        .find(|b| !b.micro.is_empty())
        .unwrap();
    batch.micro.energy_j.pop();
    let error = wal
        .append(&batch)
        .expect_err("unequal columns must be refused");
    assert!(error.to_string().contains("unequal length"), "{error}");
    // The WAL keeps working, and the log holds nothing bad.
    wal.append(&sample_batches(1)[0]).unwrap().wait().unwrap();
    drop(wal);
    let (_, replayed, _) = open(dir.path());
    assert_eq!(replayed.len(), 1);
}
