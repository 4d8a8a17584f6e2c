//! `sunfleet-bench`: the benchmark harness behind `BENCHMARKS.md`. Never part of the test run.
//!
//! Run in release mode: `cargo run --release -p sunfleet-benches -- <workload>`.

/// `println!` that ends the program quietly when stdout is closed (piped into `head`).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::say_line(format_args!($($arg)*))
    };
}

mod parquet_layout;
mod portal;
mod query;
mod quic;
mod store;

use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::{Fleet, FleetConfig, StreamStats, dry_run};

#[derive(Debug, Parser)]
#[command(name = "sunfleet-bench", about = "Sunfleet benchmarks")]
struct Cli {
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Debug, Subcommand)]
enum Workload {
    /// Fleet generator throughput (readings/s per core and on all cores) and peak memory.
    Generator {
        #[arg(long, default_value_t = 2_000)]
        systems: u32,
        #[arg(long, default_value_t = 1)]
        days: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Repetitions; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Bytes per microinverter reading in Parquet under several writer settings.
    ParquetLayout {
        #[arg(long, default_value_t = 1_000)]
        systems: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Sort by (system, time, device) instead of (system, device, time).
        #[arg(long)]
        time_major: bool,
    },
    /// Durable WAL appends: pre-generated batches from several threads, group commit with
    /// fsync; readings/s, bytes per reading, fsync groups.
    Wal {
        #[arg(long, default_value_t = 2_000)]
        systems: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Threads appending concurrently (like ingest connections).
        #[arg(long, default_value_t = 8)]
        writers: usize,
        /// Group commit interval in milliseconds.
        #[arg(long, default_value_t = 5)]
        flush_ms: u64,
        /// Appends each writer keeps waiting for their acknowledgement (like a gateway
        /// connection's window of unacknowledged batches).
        #[arg(long, default_value_t = 64)]
        in_flight: usize,
        /// Folder for the WAL (default: a temporary folder on the data disk).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The query layer on months of fleet history (built once into `--dir`, then reused):
    /// fleet checks, a 7-day 5-minute graph with unpersisted data, daily energy SQL beside
    /// DuckDB on the same files.
    Query {
        /// Generated systems average 18.3 microinverters: 2,400 of them hold about as many
        /// as the 1,000 systems × 25.
        #[arg(long, default_value_t = 2_400)]
        systems: u32,
        #[arg(long, default_value_t = 90)]
        days: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Timed repetitions after a warm-up.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Data folder (default: target/bench-query-<systems>x<days>d-seed<seed>).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// One system's pages (every tab and settings section) served by the portal over
    /// loopback HTTP, on the `query` workload's data folder: p50 and p95 per page.
    Portal {
        #[arg(long, default_value_t = 1_700)]
        systems: u32,
        #[arg(long, default_value_t = 30)]
        days: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// The system: the commercial one with the fewest microinverters at or above this.
        #[arg(long, default_value_t = 60)]
        micros: u32,
        #[arg(long, default_value_t = 30)]
        runs: usize,
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// The engine's write path: durable appends into the store with background persistence,
    /// then rollups and compaction; bytes per reading beside DuckDB; peak memory.
    Store {
        #[arg(long, default_value_t = 2_000)]
        systems: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 8)]
        writers: usize,
        #[arg(long, default_value_t = 512)]
        in_flight: usize,
        #[arg(long, default_value_t = 5)]
        flush_ms: u64,
        /// Persist once the write buffer holds this many rows.
        #[arg(long, default_value_t = 8_000_000)]
        persist_rows: usize,
        /// Data folder (default: target/bench-store).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// End-to-end durable ingest over QUIC: the server in its own process, every gateway of
    /// a generated fleet on its own connection from this one, a fleet-day streamed as fast
    /// as acks allow; readings/s, ack latency, server CPU-seconds per million readings.
    QuicIngest {
        #[arg(long, default_value_t = 10_000)]
        gateways: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Batches each gateway may have unacknowledged.
        #[arg(long, default_value_t = 4)]
        window: usize,
        /// Consecutive 5-minute uploads merged into one batch.
        #[arg(long, default_value_t = 1)]
        intervals_per_batch: usize,
        #[arg(long, default_value_t = 256)]
        connect_concurrency: usize,
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Server memory with idle gateway connections.
    QuicIdle {
        #[arg(long, default_value_t = 10_000)]
        gateways: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[arg(long, default_value_t = 256)]
        connect_concurrency: usize,
        /// Seconds to hold the connections before measuring.
        #[arg(long, default_value_t = 5)]
        hold_seconds: u64,
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// (Internal) the server process of the QUIC workloads.
    #[command(hide = true)]
    QuicServer {
        #[arg(long)]
        data: std::path::PathBuf,
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
}

fn say_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(error) = writeln!(std::io::stdout().lock(), "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("sunfleet-bench: writing results: {error}");
        std::process::exit(1);
    }
}

fn main() -> anyhow::Result<()> {
    // Off unless asked for (`SUNFLEET_LOG=sunfleet_query=debug` times every internal query).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SUNFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().workload {
        Workload::Generator {
            systems,
            days,
            seed,
            runs,
        } => generator(systems, days, seed, runs),
        Workload::ParquetLayout {
            systems,
            seed,
            time_major,
        } => parquet_layout::run(systems, seed, time_major),
        Workload::Wal {
            systems,
            seed,
            writers,
            flush_ms,
            in_flight,
            dir,
        } => wal(systems, seed, writers, flush_ms, in_flight, dir),
        Workload::Portal {
            systems,
            days,
            seed,
            micros,
            runs,
            dir,
        } => portal::run(portal::Options {
            systems,
            days,
            seed,
            micros,
            runs,
            dir,
        }),
        Workload::Query {
            systems,
            days,
            seed,
            runs,
            dir,
        } => query::run(query::Options {
            systems,
            days,
            seed,
            runs,
            dir,
        }),
        Workload::Store {
            systems,
            seed,
            writers,
            in_flight,
            flush_ms,
            persist_rows,
            dir,
        } => store::run(store::Options {
            systems,
            seed,
            writers,
            in_flight,
            flush_ms,
            persist_rows,
            dir,
        }),
        Workload::QuicIngest {
            gateways,
            seed,
            window,
            intervals_per_batch,
            connect_concurrency,
            dir,
        } => quic::run_ingest(quic::IngestOptions {
            gateways,
            seed,
            window,
            intervals_per_batch,
            connect_concurrency,
            dir,
        }),
        Workload::QuicIdle {
            gateways,
            seed,
            connect_concurrency,
            hold_seconds,
            dir,
        } => quic::run_idle(quic::IdleOptions {
            gateways,
            seed,
            connect_concurrency,
            hold_seconds,
            dir,
        }),
        Workload::QuicServer { data, listen } => quic::serve(data, listen),
    }
}

fn wal(
    systems: u32,
    seed: u64,
    writers: usize,
    flush_ms: u64,
    window: usize,
    dir: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use sunfleet_engine::wal::{Wal, WalConfig};
    use sunfleet_fixtures::stream::stream_system;

    let start = CivilDate::from_ymd(2026, 6, 1).context("start date")?;
    let fleet = Fleet::new(FleetConfig::new(seed, systems, start, 1));
    say!("machine: {}", machine_description());
    // Generation stays out of the timing: batches are made first.
    let mut batches = Vec::new();
    for spec in fleet.systems() {
        stream_system(&fleet, spec, |u| batches.push(Arc::clone(&u.batch)));
    }
    let readings: usize = batches.iter().map(|b| b.reading_count()).sum();
    let folder = match dir {
        Some(dir) => dir,
        None => std::env::current_dir()?.join("target").join("bench-wal"),
    };
    let _ = std::fs::remove_dir_all(&folder);
    let mut config = WalConfig::new(&folder);
    config.flush_interval = std::time::Duration::from_millis(flush_ms);
    let (wal, _) = Wal::open(config, |_, _| Ok(()))?;
    let wal = Arc::new(wal);
    say!(
        "workload: {} batches, {readings} readings from {systems} systems (1 June day), {writers} writers with {window} appends in flight each, group commit every {flush_ms} ms, fdatasync",
        batches.len()
    );
    let mut shares: Vec<Vec<Arc<sunfleet_engine::telemetry::TelemetryBatch>>> =
        vec![Vec::new(); writers];
    for (i, batch) in batches.iter().enumerate() {
        shares[i % writers].push(Arc::clone(batch));
    }
    let began = Instant::now();
    let appender = Arc::clone(&wal);
    append_from_threads(shares, window, move |batch| appender.append(&batch))?;
    let secs = began.elapsed().as_secs_f64();
    let stats = wal.stats();
    let bytes = stats.bytes.load(std::sync::atomic::Ordering::Relaxed);
    let groups = stats.groups.load(std::sync::atomic::Ordering::Relaxed);
    say!(
        "durable appends: {:.0} readings/s ({secs:.2} s)",
        readings as f64 / secs
    );
    let raw = stats.raw_bytes.load(std::sync::atomic::Ordering::Relaxed);
    say!(
        "WAL bytes: {bytes} ({:.2} bytes per reading; {:.2} before group compression), {:.1} MB/s",
        bytes as f64 / readings as f64,
        raw as f64 / readings as f64,
        bytes as f64 / secs / 1e6
    );
    say!(
        "fsync groups: {groups} ({:.0} readings per group)",
        readings as f64 / groups.max(1) as f64
    );
    drop(wal);
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}

/// Appends every item of each share from a thread of its own, keeping `window` appends
/// waiting for their acknowledgement per thread (like a gateway connection's window).
/// The pinned Python with DuckDB that `bash scripts/test` prepares (or `SUNFLEET_PYTHON`).
fn interop_python() -> anyhow::Result<std::path::PathBuf> {
    std::env::var_os("SUNFLEET_PYTHON")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let cached = std::env::home_dir()?.join(".cache/sunfleet-venv-interop/bin/python");
            cached.exists().then_some(cached)
        })
        .context("no Python with DuckDB: run `bash scripts/test` once or set SUNFLEET_PYTHON")
}

fn append_from_threads<T: Send + 'static>(
    shares: Vec<Vec<T>>,
    window: usize,
    append: impl Fn(T) -> Result<sunfleet_engine::wal::PendingAppend, sunfleet_engine::Error>
    + Send
    + Sync
    + 'static,
) -> anyhow::Result<()> {
    let append = std::sync::Arc::new(append);
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let append = std::sync::Arc::clone(&append);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut in_flight = std::collections::VecDeque::new();
                for item in share {
                    in_flight.push_back(append(item)?);
                    if in_flight.len() >= window
                        && let Some(p) = in_flight.pop_front()
                    {
                        p.wait()?;
                    }
                }
                for p in in_flight {
                    p.wait()?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))??;
    }
    Ok(())
}

fn generator(systems: u32, days: u32, seed: u64, runs: usize) -> anyhow::Result<()> {
    let start = CivilDate::from_ymd(2026, 6, 1).context("start date")?;
    let fleet = Fleet::new(FleetConfig::new(seed, systems, start, days));
    say!("machine: {}", machine_description());
    say!("fleet: seed {seed}, {systems} systems, {days} day(s) from {start}");

    let one_core = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (stats, single) = median_run(runs, || one_core.install(|| dry_run(&fleet)));
    let all_threads = rayon::current_num_threads();
    let (stats_all, parallel) = median_run(runs, || dry_run(&fleet));
    anyhow::ensure!(
        stats == stats_all,
        "the stream differs between 1 and {all_threads} threads"
    );

    let readings = stats.readings() as f64;
    say!(
        "readings generated: {} ({} microinverter)",
        stats.readings(),
        stats.micro_readings
    );
    say!(
        "1 thread:   {single:.3} s  {:>12.0} readings/s",
        readings / single
    );
    say!(
        "{all_threads} threads:  {parallel:.3} s  {:>12.0} readings/s",
        readings / parallel
    );
    say!("checksum: {:016x}", stats.checksum);
    say!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

fn median_run(runs: usize, mut f: impl FnMut() -> StreamStats) -> (StreamStats, f64) {
    let mut times = Vec::with_capacity(runs);
    let mut stats = StreamStats::default();
    for _ in 0..runs.max(1) {
        let began = Instant::now();
        stats = f();
        times.push(began.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    (stats, times[times.len() / 2])
}

fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!(
        "{} cores, {memory_gib:.0} GiB, {cpu}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// Peak resident memory of this process (Linux), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("VmHWM"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
