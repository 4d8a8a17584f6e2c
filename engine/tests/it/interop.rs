//! Interoperability with stock tools: DuckDB reads the partition folders and agrees with the
//! engine's rollups; the engine runs against a real S3-compatible server (moto).
//!
//! The Python tools come from the pinned virtualenv that `bash scripts/test` prepares and
//! names in `SUNFLEET_PYTHON`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::Date32Array;
use arrow::datatypes::{UInt32Type, UInt64Type};
use sunfleet_engine::storage::{S3Location, StorageLocation};
use sunfleet_engine::store::{ReadRequest, Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::time::CivilDate;

use crate::store::{append_all, col, day, energy_by_device, fleet_day};

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("SUNFLEET_PYTHON") {
        return PathBuf::from(python);
    }
    let cached = std::env::home_dir()
        .unwrap_or_default()
        .join(".cache/sunfleet-venv-interop/bin/python");
    assert!(
        cached.exists(),
        "interop tests need the pinned Python tools: run `bash scripts/test` once (it creates \
         them), or set SUNFLEET_PYTHON to a python with scripts/interop-requirements.txt"
    );
    cached
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

fn run_python(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(python()).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "python {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_partitions_and_agrees_with_the_daily_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let (batches, directory) = fleet_day(6);
    let store = Store::open(StoreConfig::for_tests(dir.path()), directory.clone())
        .await
        .unwrap();
    // Two persists, so that duplicates across files are resolved by compaction first.
    let (a, b) = batches.split_at(batches.len() / 2);
    append_all(&store, a).await;
    store.persist().await.unwrap();
    append_all(&store, b).await;
    store.persist().await.unwrap();
    store.maintain(Duration::ZERO).await.unwrap();

    let mut zones = String::from("system_id,time_zone\n");
    for system in 1..=6 {
        let zone = directory.time_zone(sunfleet_engine::ids::SystemId(system));
        zones.push_str(&format!("{system},{}\n", zone.iana_name().unwrap()));
    }
    let zones_path = dir.path().join("zones.csv");
    std::fs::write(&zones_path, zones).unwrap();
    let duckdb = run_python(&[
        script("duckdb_daily_energy.py").as_os_str(),
        dir.path().join("parquet").as_os_str(),
        zones_path.as_os_str(),
    ]);
    let from_duckdb: BTreeMap<(u32, String), u64> = duckdb
        .lines()
        .map(|line| {
            let mut parts = line.split(',');
            let system = parts.next().unwrap().parse().unwrap();
            let date = parts.next().unwrap().to_owned();
            let energy = parts.next().unwrap().parse().unwrap();
            ((system, date), energy)
        })
        .collect();

    let rows = store
        .read(&ReadRequest::days(
            Table::RollupDay,
            day().add_days(-3),
            day().add_days(3),
        ))
        .await
        .unwrap();
    let devices = col::<UInt32Type>(&rows, "device_id");
    let system_ids = col::<UInt32Type>(&rows, "system_id");
    let energy = col::<UInt64Type>(&rows, "energy_j");
    let dates = rows
        .column_by_name("local_date")
        .unwrap()
        .as_any()
        .downcast_ref::<Date32Array>()
        .unwrap();
    let mut from_rollups = BTreeMap::new();
    for i in 0..rows.num_rows() {
        if devices.value(i) == 0 {
            let date = CivilDate::from_days_since_epoch(dates.value(i)).to_string();
            from_rollups.insert((system_ids.value(i), date), energy.value(i));
        }
    }
    assert!(from_rollups.len() >= 4, "{from_rollups:?}");
    assert_eq!(from_duckdb, from_rollups);
}

/// moto's S3 server on a free local port, stopped on drop.
struct MotoServer {
    child: Child,
    endpoint: String,
}

impl MotoServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut log = String::new();
                for line in BufReader::new(child.stderr.take().unwrap()).lines() {
                    log.push_str(&line.unwrap());
                    log.push('\n');
                }
                panic!("moto server exited ({status}): {log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { child, endpoint }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_runs_on_an_s3_compatible_server() {
    let server = MotoServer::start();
    let listed = run_python(&[
        script("s3_bucket.py").as_os_str(),
        server.endpoint.as_ref(),
        "sunfleet-test".as_ref(),
    ]);
    assert_eq!(listed.trim(), "0");
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = StoreConfig::for_tests(dir.path());
        config.storage = StorageLocation::S3(S3Location {
            bucket: "sunfleet-test".into(),
            endpoint: Some(server.endpoint.clone()),
            region: "us-east-1".into(),
            access_key_id: "sunfleet".into(),
            secret_access_key: "sunfleet-secret".into(),
            allow_http: true,
        });
        config
    };
    let (batches, directory) = fleet_day(3);
    let expected;
    {
        let store = Store::open(config(), directory.clone()).await.unwrap();
        let (a, b) = batches.split_at(batches.len() / 2);
        append_all(&store, a).await;
        store.persist().await.unwrap();
        append_all(&store, b).await;
        store.persist().await.unwrap();
        store.maintain(Duration::ZERO).await.unwrap();
        expected = energy_by_device(
            &store
                .read(&ReadRequest::days(Table::Readings, day(), day()))
                .await
                .unwrap(),
        );
        assert!(
            store
                .manifest()
                .files
                .iter()
                .any(|f| f.table == Table::RollupDay)
        );
    }
    // A new process (same bucket) reads back what was written.
    let listed: usize = run_python(&[
        script("s3_bucket.py").as_os_str(),
        server.endpoint.as_ref(),
        "sunfleet-other".as_ref(),
    ])
    .trim()
    .parse()
    .unwrap();
    assert_eq!(listed, 0, "a fresh bucket is empty");
    let store = Store::open(config(), directory).await.unwrap();
    assert_eq!(store.replayed_records(), 0);
    let rows = store
        .read(&ReadRequest::days(Table::Readings, day(), day()))
        .await
        .unwrap();
    assert_eq!(energy_by_device(&rows), expected);
    let daily = store
        .read(&ReadRequest::days(
            Table::RollupDay,
            day().add_days(-3),
            day().add_days(3),
        ))
        .await
        .unwrap();
    let total: u64 = energy_by_device(&daily)
        .iter()
        .filter(|((_, device), _)| *device == 0)
        .map(|(_, e)| e)
        .sum();
    let expected_total: u64 = expected
        .iter()
        .filter(|((_, device), _)| *device == 0)
        .map(|(_, e)| e)
        .sum();
    assert_eq!(total, expected_total);
}
