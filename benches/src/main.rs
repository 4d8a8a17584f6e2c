//! `sunfleet-bench`: the benchmark harness behind `BENCHMARKS.md`. Never part of the test run.
//!
//! Run in release mode: `cargo run --release -p sunfleet-benches -- <workload>`.

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().workload {
        Workload::Generator {
            systems,
            days,
            seed,
            runs,
        } => generator(systems, days, seed, runs),
    }
}

fn generator(systems: u32, days: u32, seed: u64, runs: usize) -> anyhow::Result<()> {
    let start = CivilDate::from_ymd(2026, 6, 1).context("start date")?;
    let fleet = Fleet::new(FleetConfig::new(seed, systems, start, days));
    println!("machine: {}", machine_description());
    println!("fleet: seed {seed}, {systems} systems, {days} day(s) from {start}");

    let one_core = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let (stats, single) = median_run(runs, || one_core.install(|| dry_run(&fleet)));
    let all_threads = rayon::current_num_threads();
    let (stats_all, parallel) = median_run(runs, || dry_run(&fleet));
    anyhow::ensure!(
        stats == stats_all,
        "the stream differs between 1 and {all_threads} threads"
    );

    let readings = stats.readings() as f64;
    println!(
        "readings generated: {} ({} microinverter)",
        stats.readings(),
        stats.micro_readings
    );
    println!(
        "1 thread:   {single:.3} s  {:>12.0} readings/s",
        readings / single
    );
    println!(
        "{all_threads} threads:  {parallel:.3} s  {:>12.0} readings/s",
        readings / parallel
    );
    println!("checksum: {:016x}", stats.checksum);
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
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
