//! `store`: the engine's whole write path without the network: durable appends (WAL, then
//! the write buffer) from several threads while persistence runs in the background; then
//! compaction and rollups; bytes per microinverter reading on disk beside DuckDB's default
//! Parquet writer; peak memory; the reopen after a crash (the WAL replayed into the buffer).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sunfleet_engine::store::{Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::seed::fleet_directory;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};

use crate::{append_from_threads, machine_description, peak_rss_kib};

pub struct Options {
    pub systems: u32,
    pub seed: u64,
    pub writers: usize,
    pub in_flight: usize,
    pub flush_ms: u64,
    pub persist_rows: usize,
    pub dir: Option<PathBuf>,
}

fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(options: Options) -> anyhow::Result<()> {
    let start = CivilDate::from_ymd(2026, 6, 1).context("start date")?;
    let fleet = Fleet::new(FleetConfig::new(options.seed, options.systems, start, 1));
    say!("machine: {}", machine_description());
    let directory = fleet_directory(&fleet)?;
    // Generation stays out of the timing: batches are made first, one share per writer.
    let mut shares: Vec<Vec<TelemetryBatch>> = vec![Vec::new(); options.writers];
    let mut count = 0usize;
    let mut readings = 0usize;
    let mut micro_readings = 0usize;
    for spec in fleet.systems() {
        stream_system(&fleet, spec, |u| {
            readings += u.batch.reading_count();
            micro_readings += u.batch.micro.len();
            shares[count % options.writers].push((*u.batch).clone());
            count += 1;
        });
    }
    let folder = options
        .dir
        .unwrap_or_else(|| PathBuf::from("target").join("bench-store"));
    let _ = std::fs::remove_dir_all(&folder);
    let mut config = StoreConfig::new(&folder);
    config.wal.flush_interval = Duration::from_millis(options.flush_ms);
    config.persist_rows = options.persist_rows;
    config.persist_interval = Duration::from_secs(3_600);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = Arc::new(runtime.block_on(Store::open(config.clone(), directory.clone()))?);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let maintenance =
        runtime.spawn(Arc::clone(&store).run_maintenance(Duration::from_millis(200), stopped));
    let rss_before = current_rss_kib();
    say!(
        "workload: {count} gateway batches, {readings} readings ({micro_readings} microinverter) from {} systems (1 June day); {} writers × {} appends in flight; group commit every {} ms with fdatasync; persist every {} buffered rows in the background",
        options.systems,
        options.writers,
        options.in_flight,
        options.flush_ms,
        options.persist_rows
    );
    let began = Instant::now();
    let appender = Arc::clone(&store);
    append_from_threads(shares, options.in_flight, move |batch| {
        appender.append(batch)
    })?;
    let ingest_s = began.elapsed().as_secs_f64();
    let wal_bytes = store
        .wal()
        .stats()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let persisted_during = store.manifest().files.len();
    say!(
        "durable appends into the store: {:.0} readings/s ({ingest_s:.2} s); WAL {:.2} bytes per reading; {persisted_during} files persisted meanwhile",
        readings as f64 / ingest_s,
        wal_bytes as f64 / readings as f64
    );
    stop.send(true)?;
    runtime.block_on(maintenance)?;
    say!(
        "memory: {} MiB resident after generating the batches; peak {} MiB while ingesting (persist_rows = {})",
        rss_before / 1024,
        peak_rss_kib() / 1024,
        options.persist_rows
    );

    // A crash now: everything since the last persist is only in the WAL. Opening the store
    // again replays it into the write buffer; that is a restart's cost after a crash.
    let buffered = store.buffered_rows();
    let store = Arc::into_inner(store).context("the store is still shared")?;
    drop(store);
    let began = Instant::now();
    let store = Arc::new(runtime.block_on(Store::open(config, directory))?);
    let replay_s = began.elapsed().as_secs_f64();
    say!(
        "reopen after a crash: {buffered} buffered rows ({} WAL records) replayed in {replay_s:.2} s ({:.0} rows/s; the buffer holds at most max_buffered_rows = {})",
        store.replayed_records(),
        buffered as f64 / replay_s.max(1e-9),
        StoreConfig::new(&folder).max_buffered_rows
    );

    let timed = |label: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        let began = Instant::now();
        f()?;
        say!("{label}: {:.2} s", began.elapsed().as_secs_f64());
        Ok(())
    };
    timed("final persist", &mut || {
        runtime.block_on(store.persist())?;
        Ok(())
    })?;
    timed("rollups (15 min, hour, local day, month)", &mut || {
        runtime.block_on(store.roll_up())?;
        Ok(())
    })?;
    timed("compaction", &mut || {
        runtime.block_on(store.compact())?;
        Ok(())
    })?;
    let manifest = store.manifest();
    let (rows, bytes) = manifest
        .files
        .iter()
        .filter(|f| f.table == Table::Readings)
        .fold((0, 0), |(r, b), f| (r + f.rows, b + f.bytes));
    say!(
        "after compaction: {rows} microinverter readings in {bytes} bytes: {:.2} bytes per reading",
        bytes as f64 / rows as f64
    );
    let root = folder.join("parquet");
    match duckdb_rewrite(&root) {
        Ok((duck_rows, duck_bytes)) => say!(
            "DuckDB's default Parquet writer, same rows: {duck_rows} readings in {duck_bytes} bytes: {:.2} bytes per reading (Sunfleet's files are {:.2}× its size)",
            duck_bytes as f64 / duck_rows as f64,
            bytes as f64 / duck_bytes as f64
        ),
        Err(error) => say!("DuckDB comparison skipped: {error:#}"),
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}

/// Rewrites the readings with DuckDB's default Parquet writer; returns (rows, bytes).
fn duckdb_rewrite(root: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let python = crate::interop_python()?;
    let out = root.join("duckdb-default.parquet");
    let sql = format!(
        "import duckdb; duckdb.sql('SET enable_progress_bar = false'); duckdb.sql(\"COPY (SELECT * FROM read_parquet('{}/readings/*/*.parquet')) TO '{}' (FORMAT parquet)\"); print(duckdb.sql(\"SELECT count(*) FROM '{}'\").fetchall()[0][0])",
        root.display(),
        out.display(),
        out.display()
    );
    let output = std::process::Command::new(python)
        .args(["-c", &sql])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let rows = stdout
        .lines()
        .last()
        .context("duckdb printed nothing")?
        .trim()
        .parse()
        .with_context(|| format!("duckdb printed {stdout:?}"))?;
    Ok((rows, std::fs::metadata(&out)?.len()))
}
