//! The telemetry store: buffer → Parquet → manifest, dedup, compaction, retention, recovery.

use std::collections::HashMap;
use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{TimestampMicrosecondType, UInt32Type, UInt64Type};
use sunfleet_engine::Error;
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::BatchSeq;
use sunfleet_engine::manifest::Manifest;
use sunfleet_engine::store::{ReadRequest, Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::seed::fleet_directory;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};

const DAY: (i32, u32, u32) = (2026, 6, 1);

/// A column of `rows` as its primitive array type.
pub fn col<'a, T: arrow::datatypes::ArrowPrimitiveType>(
    rows: &'a RecordBatch,
    name: &str,
) -> &'a arrow::array::PrimitiveArray<T> {
    rows.column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_primitive::<T>()
}

pub fn day() -> CivilDate {
    CivilDate::from_ymd(DAY.0, DAY.1, DAY.2).unwrap()
}

/// A small fleet's day of uploads and a directory of its devices (the generator's system ids).
pub fn fleet_day(systems: u32) -> (Vec<TelemetryBatch>, DeviceDirectory) {
    let fleet = Fleet::new(FleetConfig::new(11, systems, day(), 1));
    let mut batches = Vec::new();
    for spec in fleet.systems() {
        stream_system(&fleet, spec, |u| batches.push((*u.batch).clone()));
    }
    (batches, fleet_directory(&fleet).unwrap())
}

pub async fn append_all(store: &Store, batches: &[TelemetryBatch]) {
    let pending: Vec<_> = batches
        .iter()
        .map(|b| store.append(b.clone()).unwrap())
        .collect();
    for p in pending {
        p.durable().await.unwrap();
    }
}

/// (serial, time) → energy_j of every microinverter reading, the latest batch winning.
fn expected_energy(batches: &[TelemetryBatch]) -> HashMap<(u64, i64), u32> {
    let mut expected = HashMap::new();
    for batch in batches {
        for r in batch.micro.rows() {
            expected.insert((r.serial.value(), r.time_us), r.energy_j);
        }
    }
    expected
}

fn energy_by_key(rows: &RecordBatch) -> HashMap<(u64, i64), u32> {
    let serials = col::<UInt64Type>(rows, "serial");
    let times = col::<TimestampMicrosecondType>(rows, "time");
    let energy = col::<UInt32Type>(rows, "energy_j");
    let mut out = HashMap::new();
    for i in 0..rows.num_rows() {
        let previous = out.insert((serials.value(i), times.value(i)), energy.value(i));
        assert!(previous.is_none(), "duplicate key in a read");
    }
    out
}

async fn read_day(store: &Store) -> RecordBatch {
    store
        .read(&ReadRequest::days(Table::Readings, day(), day()))
        .await
        .unwrap()
}

fn assert_storage_order(rows: &RecordBatch) {
    let systems = col::<UInt32Type>(rows, "system_id");
    let devices = col::<UInt32Type>(rows, "device_id");
    let times = col::<TimestampMicrosecondType>(rows, "time");
    for i in 1..rows.num_rows() {
        let a = (
            systems.value(i - 1),
            devices.value(i - 1),
            times.value(i - 1),
        );
        let b = (systems.value(i), devices.value(i), times.value(i));
        assert!(a < b, "row {i} out of order: {a:?} then {b:?}");
    }
}

fn open(dir: &Path, directory: &DeviceDirectory) -> impl Future<Output = Result<Store, Error>> {
    Store::open(StoreConfig::for_tests(dir), directory.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_rows_are_readable_before_and_after_persist_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(4);
    let expected = expected_energy(&batches);
    assert!(expected.len() > 1000);
    {
        let store = open(dir.path(), &directory).await.unwrap();
        append_all(&store, &batches).await;
        // Readable from the buffer, before any file exists.
        assert!(store.manifest().files.is_empty());
        let rows = read_day(&store).await;
        assert_eq!(energy_by_key(&rows), expected);
        assert_storage_order(&rows);

        let report = store.persist().await.unwrap();
        assert_eq!(report.rows as usize, distinct_rows(&batches));
        assert!(
            report.wal_segments_removed > 0,
            "the WAL it covered is dropped"
        );
        assert_eq!(store.buffered_rows(), 0);
        let rows = read_day(&store).await;
        assert_eq!(energy_by_key(&rows), expected);
        assert_storage_order(&rows);
    }
    let store = open(dir.path(), &directory).await.unwrap();
    assert_eq!(store.replayed_records(), 0, "nothing left to replay");
    assert_eq!(energy_by_key(&read_day(&store).await), expected);
}

/// Rows of every table once duplicate sends are resolved.
fn distinct_rows(batches: &[TelemetryBatch]) -> usize {
    let mut keys = std::collections::HashSet::new();
    for b in batches {
        for r in b.micro.rows() {
            keys.insert((0, r.serial, r.time_us, 0));
        }
        for m in &b.meters {
            keys.insert((1, m.serial, m.time_us, 0));
        }
        for r in &b.batteries {
            keys.insert((2, r.serial, r.time_us, 0));
        }
        for e in &b.events {
            keys.insert((3, e.serial, e.time_us, e.kind.number()));
        }
    }
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpersisted_rows_come_back_from_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(3);
    let (first, second) = batches.split_at(batches.len() / 2);
    {
        let store = open(dir.path(), &directory).await.unwrap();
        append_all(&store, first).await;
        store.persist().await.unwrap();
        append_all(&store, second).await;
    }
    let store = open(dir.path(), &directory).await.unwrap();
    assert_eq!(store.replayed_records() as usize, second.len());
    assert_eq!(
        energy_by_key(&read_day(&store).await),
        expected_energy(&batches)
    );
}

/// One reading, re-sent with a new value: the later ingest must win everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_ingest_wins_in_reads_persist_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(2);
    let target = batches
        .iter()
        .find(|b| !b.micro.is_empty())
        .unwrap()
        .clone();
    let key = (target.micro.serial[0].value(), target.micro.time_us[0]);
    let mut corrected = target.clone();
    corrected.seq = BatchSeq(1_000_000);
    corrected.micro.energy_j[0] = 777_777;

    let store = open(dir.path(), &directory).await.unwrap();
    append_all(&store, &batches).await;
    store.persist().await.unwrap();
    append_all(&store, std::slice::from_ref(&corrected)).await;
    // The buffer (newer) beats the file.
    assert_eq!(energy_by_key(&read_day(&store).await)[&key], 777_777);
    store.persist().await.unwrap();
    // The newer file beats the older one.
    assert_eq!(energy_by_key(&read_day(&store).await)[&key], 777_777);
    let files_before = store.manifest().files.len();
    // Older again, in the buffer: the original values re-sent win over both files.
    append_all(&store, std::slice::from_ref(&target)).await;
    assert_eq!(
        energy_by_key(&read_day(&store).await)[&key],
        target.micro.energy_j[0]
    );
    store.persist().await.unwrap();
    assert!(store.compact().await.unwrap() > 0);
    let manifest = store.manifest();
    let readings: Vec<_> = manifest
        .files
        .iter()
        .filter(|f| f.table == Table::Readings)
        .collect();
    assert_eq!(readings.len(), 1, "one file per day after compaction");
    assert!(manifest.files.len() < files_before + Table::TELEMETRY.len());
    let rows = read_day(&store).await;
    assert_eq!(energy_by_key(&rows)[&key], target.micro.energy_j[0]);
    assert_eq!(energy_by_key(&rows).len(), expected_energy(&batches).len());
    assert_storage_order(&rows);
    // Only listed files remain on disk once readers are done.
    let on_disk = parquet_files(&dir.path().join("parquet"));
    let listed: Vec<String> = manifest.files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(on_disk.len(), listed.len(), "{on_disk:?} vs {listed:?}");
}

fn parquet_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_compacted_files_until_it_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(2);
    let store = open(dir.path(), &directory).await.unwrap();
    let (a, b) = batches.split_at(batches.len() / 2);
    append_all(&store, a).await;
    store.persist().await.unwrap();
    append_all(&store, b).await;
    store.persist().await.unwrap();
    let request = ReadRequest::days(Table::Readings, day(), day());
    let snapshot = store.snapshot(&request);
    assert_eq!(snapshot.files.len(), 2);
    store.compact().await.unwrap();
    for file in &snapshot.files {
        assert!(
            dir.path().join("parquet").join(&file.path).exists(),
            "{} deleted under a reader",
            file.path
        );
    }
    drop(snapshot);
    store.maintain(std::time::Duration::ZERO).await.unwrap();
    assert_eq!(
        parquet_files(&dir.path().join("parquet")).len(),
        store.manifest().files.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_days() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(2);
    let store = open(dir.path(), &directory).await.unwrap();
    append_all(&store, &batches).await;
    store.persist().await.unwrap();
    assert_eq!(store.drop_days_before(day()).await.unwrap(), 0);
    let dropped = store.drop_days_before(day().add_days(1)).await.unwrap();
    assert!(dropped >= 1);
    assert!(store.manifest().files.iter().all(|f| f.day > day()));
    assert_eq!(read_day(&store).await.num_rows(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_newest_manifest_falls_back_only_when_the_wal_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(2);
    let (a, b) = batches.split_at(batches.len() / 2);
    let newest;
    {
        let store = open(dir.path(), &directory).await.unwrap();
        append_all(&store, a).await;
        store.persist().await.unwrap();
        append_all(&store, b).await;
        // A compaction writes a new manifest without truncating the WAL further.
        store.persist().await.unwrap();
        store.compact().await.unwrap();
        newest = store.manifest().version;
    }
    let manifest_path = dir
        .path()
        .join("parquet")
        .join(Manifest::object_path(newest));
    let mut bytes = std::fs::read(&manifest_path).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x20;
    std::fs::write(&manifest_path, bytes).unwrap();
    // The previous version (before compaction) covers the same WAL records: safe to use.
    let store = open(dir.path(), &directory).await.unwrap();
    assert_eq!(store.manifest().version, newest - 1);
    assert_eq!(
        energy_by_key(&read_day(&store).await),
        expected_energy(&batches)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_wal_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(1);
    {
        let store = open(dir.path(), &directory).await.unwrap();
        append_all(&store, &batches).await;
        store.persist().await.unwrap();
    }
    std::fs::remove_dir_all(dir.path().join("wal")).unwrap();
    let error = open(dir.path(), &directory).await.err().unwrap();
    assert!(matches!(error, Error::WalBehindManifest { .. }), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_serials_are_kept_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, _) = fleet_day(1);
    let store = open(dir.path(), &DeviceDirectory::new()).await.unwrap();
    append_all(&store, &batches).await;
    let rows = read_day(&store).await;
    assert_eq!(energy_by_key(&rows), expected_energy(&batches));
    let systems = col::<UInt32Type>(&rows, "system_id");
    assert!(systems.values().iter().all(|&s| s == 0));
}

/// Energy per (system, device) of rows, with device 0 the system total.
pub fn energy_by_device(rows: &RecordBatch) -> std::collections::BTreeMap<(u32, u32), u64> {
    let systems = col::<UInt32Type>(rows, "system_id");
    let devices = col::<UInt32Type>(rows, "device_id");
    let energy = rows.column_by_name("energy_j").unwrap();
    let mut out = std::collections::BTreeMap::new();
    for i in 0..rows.num_rows() {
        let joules = match energy.data_type() {
            arrow::datatypes::DataType::UInt64 => energy.as_primitive::<UInt64Type>().value(i),
            _ => u64::from(energy.as_primitive::<UInt32Type>().value(i)),
        };
        *out.entry((systems.value(i), devices.value(i))).or_default() += joules;
        if devices.value(i) != 0 && rows.column_by_name("serial").is_some() {
            *out.entry((systems.value(i), 0)).or_default() += joules;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_add_up_to_the_readings_and_late_data_rebuilds_only_its_system() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(3);
    let store = open(dir.path(), &directory).await.unwrap();
    append_all(&store, &batches).await;
    store.persist().await.unwrap();
    assert_eq!(store.roll_up().await.unwrap(), 1);
    assert!(store.manifest().rollups_pending.is_empty());
    let around = |table| ReadRequest::days(table, day().add_days(-3), day().add_days(3));

    let check = |expected: std::collections::BTreeMap<(u32, u32), u64>| {
        let store = &store;
        async move {
            for table in Table::ROLLUPS {
                let rows = store.read(&around(table)).await.unwrap();
                assert_eq!(energy_by_device(&rows), expected, "{table}");
            }
        }
    };
    let expected = energy_by_device(&read_day(&store).await);
    assert!(expected.len() > 10);
    check(expected.clone()).await;

    // A late correction for one reading of one system.
    let mut late = batches
        .iter()
        .find(|b| !b.micro.is_empty())
        .unwrap()
        .clone();
    late.seq = BatchSeq(9_999_999);
    late.micro.energy_j[0] += 1_000;
    let system = directory.get(late.micro.serial[0]).unwrap().system.0;
    append_all(&store, std::slice::from_ref(&late)).await;
    store.persist().await.unwrap();
    let pending = store.manifest().rollups_pending.clone();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].systems.iter().collect::<Vec<_>>(), [system]);
    assert_eq!(store.roll_up().await.unwrap(), 1);
    let newest_quarter = store
        .manifest()
        .files
        .iter()
        .filter(|f| f.table == Table::Rollup15m)
        .max_by_key(|f| f.generation)
        .unwrap()
        .clone();
    assert_eq!(
        newest_quarter.systems.iter().collect::<Vec<_>>(),
        [system],
        "only its system is rebuilt"
    );
    let mut updated = expected;
    *updated.get_mut(&(system, 0)).unwrap() += 1_000;
    let device = directory.get(late.micro.serial[0]).unwrap().device.0;
    *updated.get_mut(&(system, device)).unwrap() += 1_000;
    check(updated.clone()).await;
    // Compaction keeps the answer.
    store.compact().await.unwrap();
    check(updated).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_refused_while_the_buffer_is_full_and_accepted_after_persist() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(1);
    let mut config = StoreConfig::for_tests(dir.path());
    config.max_buffered_rows = 100;
    let store = Store::open(config, directory).await.unwrap();
    let mut appended = 0;
    let refused = loop {
        match store.append(batches[appended].clone()) {
            Ok(pending) => pending.durable().await.unwrap(),
            Err(error) => break error,
        };
        appended += 1;
    };
    assert!(
        matches!(refused, Error::BufferFull { limit: 100, .. }),
        "{refused}"
    );
    store.persist().await.unwrap();
    store
        .append(batches[appended].clone())
        .unwrap()
        .durable()
        .await
        .unwrap();
}

/// The microinverter rows `batches` should leave in the store (resolved, deduplicated).
pub fn readings_of(batches: &[TelemetryBatch], directory: &DeviceDirectory) -> RecordBatch {
    use sunfleet_engine::tables::{ReadingsBuilder, RowBuilder};
    let mut builder = ReadingsBuilder::new();
    for batch in batches {
        for reading in batch.micro.rows() {
            builder.push(directory.get(reading.serial).unwrap(), &reading);
        }
    }
    sunfleet_engine::dedup::sort_dedup(Table::Readings, &[builder.finish()]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_time_no_day_can_hold_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(1);
    let store = open(dir.path(), &directory).await.unwrap();
    let (first, rest) = batches.split_first().unwrap();
    append_all(&store, std::slice::from_ref(first)).await;
    let before = read_day(&store).await;
    let with_readings = rest.iter().find(|b| b.micro.len() > 1).unwrap();
    for bad_time_us in [
        i64::MIN,
        -1,
        946_684_799_999_999,
        253_402_300_800_000_000,
        i64::MAX,
    ] {
        let mut batch = with_readings.clone();
        let last = batch.micro.len() - 1;
        batch.micro.time_us[last] = bad_time_us;
        let refused = store.append(batch).unwrap_err();
        assert!(
            matches!(refused, Error::TimeOutOfRange { time_us, .. } if time_us == bad_time_us),
            "{refused}"
        );
    }
    // Nothing of the refused batches was stored, and the store persists and reopens.
    assert_eq!(read_day(&store).await, before);
    store.persist().await.unwrap();
    drop(store);
    let store = open(dir.path(), &directory).await.unwrap();
    assert_eq!(read_day(&store).await, before);
}
