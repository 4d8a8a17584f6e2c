//! `query`: the query layer on a quarter of fleet history, beside DuckDB on the same files.
//!
//! Builds (once, then reuses) a data folder with the generated fleet's readings for `days`
//! days through the engine's own write path (durable appends, persistence, rollups,
//! compaction), holding back the last day of a few systems, which are appended after the
//! build and stay in the write buffer (unpersisted). Then measures, warm:
//! - the fleet checks (every check, the 90-day production threshold among them): a
//!   checker's first round, its rounds after each 5-minute upload of the whole fleet, the
//!   hourly round that re-judges meter clamps, and an evaluation without memory;
//! - a system's 7-day 5-minute power graph that includes the unpersisted day (p50, p95);
//! - daily energy per system for a month of raw readings in SQL, and the same SQL in DuckDB
//!   over the same Parquet files; DuckDB's 90-day energy per system from raw readings.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sunfleet_engine::ids::BatchSeq;
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::{Store, StoreConfig};
use sunfleet_engine::telemetry::{MeterKind, MeterReading, MicroReading, TelemetryBatch};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::seed::{fleet_directory, seed_registry};
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig, SystemSpec};
use sunfleet_query::checks::{CheckSettings, FleetChecker};
use sunfleet_query::series::{Granularity, SeriesRequest};
use sunfleet_query::{QueryConfig, QueryEngine, Scope};

use crate::{append_from_threads, machine_description, peak_rss_kib};

pub struct Options {
    pub systems: u32,
    pub days: u32,
    pub seed: u64,
    pub runs: usize,
    pub dir: Option<PathBuf>,
}

/// Systems whose last day stays in the write buffer; the graph is measured on them.
const GRAPH_SYSTEMS: u32 = 10;
const DAY_US: i64 = 86_400_000_000;
const FIVE_MINUTES_US: i64 = 300_000_000;

fn first_day() -> anyhow::Result<CivilDate> {
    CivilDate::from_ymd(2026, 3, 1).context("start date")
}

/// A bench data folder, open: the fleet it was built from and the engine over it.
pub struct BenchData {
    pub runtime: tokio::runtime::Runtime,
    pub fleet: Fleet,
    pub folder: PathBuf,
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
    pub start: CivilDate,
    /// The last day of a few systems, held back from the build (see the module's doc).
    pub held_back: Vec<TelemetryBatch>,
}

/// Opens the data folder of `systems` × `days` (building it on first use).
pub fn open_data(
    systems: u32,
    days: u32,
    seed: u64,
    dir: Option<PathBuf>,
) -> anyhow::Result<BenchData> {
    let start = first_day()?;
    let fleet = Fleet::new(FleetConfig::new(seed, systems, start, days));
    let folder = dir.unwrap_or_else(|| {
        PathBuf::from("target").join(format!("bench-query-{systems}x{days}d-seed{seed}"))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let built_marker = folder.join("bench-built");
    let fresh = !built_marker.exists();
    if fresh {
        let _ = std::fs::remove_dir_all(&folder);
    }
    let registry = Arc::new(Registry::open(folder.join("registry.sqlite3"))?);
    if fresh {
        seed_registry(&registry, &fleet)?;
    }
    let mut config = StoreConfig::new(&folder);
    config.persist_rows = 4_000_000;
    config.persist_interval = Duration::from_secs(3_600);
    let store = Arc::new(runtime.block_on(Store::open(config, fleet_directory(&fleet)?))?);
    let last_day_start = start.add_days(days as i32 - 1).start_micros();
    let held_back = if fresh {
        let held = build(&runtime, &store, &fleet, last_day_start)?;
        std::fs::write(&built_marker, b"built\n")?;
        held
    } else {
        say!("data: reusing {}", folder.display());
        held_back_batches(&fleet, last_day_start)
    };
    Ok(BenchData {
        runtime,
        fleet,
        folder,
        registry,
        store,
        start,
        held_back,
    })
}

pub fn run(options: Options) -> anyhow::Result<()> {
    say!("machine: {}", machine_description());
    let BenchData {
        runtime,
        fleet,
        folder,
        registry,
        store,
        start,
        held_back,
    } = open_data(
        options.systems,
        options.days,
        options.seed,
        options.dir.clone(),
    )?;
    // The held-back day goes into the write buffer and stays there: no maintenance runs.
    let unpersisted: usize = held_back.iter().map(TelemetryBatch::reading_count).sum();
    for batch in held_back {
        store.append(batch)?.wait()?;
    }
    let micros: i64 = registry.read(|c| {
        c.query_row(
            "SELECT count(*) FROM devices WHERE kind = 'microinverter'",
            [],
            |row| row.get(0),
        )
        .map_err(|e| sunfleet_engine::Error::Registry {
            context: "counting microinverters".into(),
            source: e,
        })
    })?;
    let manifest = store.manifest();
    let (files, rows, bytes) = manifest.files.iter().fold((0, 0u64, 0u64), |(n, r, b), f| {
        (n + 1, r + f.rows, b + f.bytes)
    });
    say!(
        "data: {} systems, {micros} microinverters ({:.1} per system), {} days from {start}; {rows} rows in {files} Parquet files ({:.2} GiB); {unpersisted} readings of the last day of {GRAPH_SYSTEMS} systems in the write buffer",
        options.systems,
        micros as f64 / options.systems as f64,
        options.days,
        bytes as f64 / (1u64 << 30) as f64
    );

    let engine = QueryEngine::start(
        Arc::clone(&store),
        Arc::clone(&registry),
        QueryConfig::new(folder.join("tmp").join("query")),
    )?;
    let as_of = start.add_days(options.days as i32).start_micros();

    // Fleet checks as the server runs them: one checker; its first round reads everything
    // from storage, then every 5 minutes the whole fleet uploads an interval (micro and
    // meter readings) and a round follows.
    let settings = CheckSettings::default();
    let mut checker = FleetChecker::new(settings.clone());
    let began = Instant::now();
    let first = runtime.block_on(checker.check(&engine, as_of))?;
    let first_time = began.elapsed();
    let specs: Vec<_> = fleet.systems().collect();
    let rounds = options.runs.max(5);
    let mut round_times = Vec::new();
    let mut last = first.clone();
    for round in 1..=rounds {
        let at = as_of + round as i64 * FIVE_MINUTES_US;
        let pending = specs
            .iter()
            .map(|spec| store.append(interval_upload(spec, at, round as u64)))
            .collect::<Result<Vec<_>, _>>()?;
        for append in pending {
            append.wait()?;
        }
        let began = Instant::now();
        last = runtime.block_on(checker.check(&engine, at))?;
        round_times.push(began.elapsed());
    }
    let statuses = |check: &sunfleet_query::checks::FleetCheck| {
        check
            .statuses()
            .values()
            .filter(|s| **s != "normal")
            .count()
    };
    say!(
        "fleet checks (every check, the 90-day production threshold among them), {} systems: first round (everything from storage) {}, {} flagged; round after each 5-minute upload of the whole fleet: median {} (max {}) over {rounds} rounds, re-judged {:?}; {} flagged",
        options.systems,
        ms(first_time),
        statuses(&first),
        ms(median(&round_times)),
        ms(max(&round_times)),
        last.rejudged,
        statuses(&last)
    );
    // The hourly re-judgment of reversed meter clamps: every system with new meter data.
    let at = as_of + settings.meter_recheck_us;
    let began = Instant::now();
    let hourly = runtime.block_on(checker.check(&engine, at))?;
    say!(
        "fleet checks, the hourly round that also re-judges meter clamps ({} systems): {}",
        hourly.rejudged.meter_systems,
        ms(began.elapsed())
    );
    // The first round of a new day: every system's production window moved, so every
    // system is judged again against its estimate.
    let at = as_of + DAY_US;
    let pending = specs
        .iter()
        .map(|spec| store.append(interval_upload(spec, at, rounds as u64 + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    for append in pending {
        append.wait()?;
    }
    let began = Instant::now();
    let new_day = runtime.block_on(checker.check(&engine, at))?;
    say!(
        "fleet checks, the first round of a new day (production against the estimate re-judged for {} systems): {}",
        new_day.rejudged.production_systems,
        ms(began.elapsed())
    );
    // A full evaluation without memory, as a fresh checker's first round.
    let full_times = timings(options.runs, || {
        runtime.block_on(engine.check_fleet(as_of, &settings))?;
        Ok(())
    })?;
    say!(
        "fleet checks without memory (every rule from storage): median {}",
        ms(median(&full_times))
    );

    // 7-day 5-minute power graph of one system, ending with the unpersisted day.
    let mut graph_times = Vec::new();
    let mut points = 0;
    for round in 0..(options.runs * 20).max(50) {
        let system_id = (round as u32 % GRAPH_SYSTEMS) + 1;
        let request = SeriesRequest {
            system_id,
            device_id: None,
            start_us: as_of - 7 * DAY_US,
            end_us: as_of,
            granularity: Granularity::FiveMinutes,
            max_points: 2_016,
        };
        let began = Instant::now();
        let series = runtime.block_on(engine.production_series(&Scope::Fleet, &request))?;
        graph_times.push(began.elapsed());
        points = series.points.len();
    }
    let warm = &graph_times[GRAPH_SYSTEMS as usize..];
    say!(
        "7-day 5-minute power graph of one system incl. its unpersisted last day ({points} points), {} requests: p50 {}, p95 {}",
        warm.len(),
        ms(median(warm)),
        ms(percentile(warm, 0.95))
    );

    // Daily energy per system for a month of raw readings (before the held-back day).
    let month_start = start.add_days(options.days as i32 - 31);
    let month_end = start.add_days(options.days as i32 - 1);
    let daily_sql = format!(
        "SELECT system_id, date_trunc('day', time) AS day, sum(energy_j) AS energy_j \
         FROM readings WHERE time >= TIMESTAMP '{month_start}T00:00:00Z' AND time < TIMESTAMP '{month_end}T00:00:00Z' \
         GROUP BY system_id, date_trunc('day', time)"
    );
    let mut groups = 0;
    let sql_times = timings(options.runs + 1, || {
        let answer = runtime.block_on(engine.sql(&Scope::Fleet, &daily_sql))?;
        groups = answer.rows();
        Ok(())
    })?;
    let ours = median(&sql_times[1..]);
    say!(
        "daily energy per system for 30 days (raw readings, SQL), Sunfleet: first {}, warm median {} ({groups} rows)",
        ms(sql_times[0]),
        ms(ours)
    );
    match duckdb_times(
        &folder.join("parquet"),
        &daily_sql,
        start,
        as_of,
        options.runs,
    ) {
        Ok((duck_daily, duck_groups, duck_90)) => {
            say!(
                "the same SQL in DuckDB over the same files: warm median {} ({duck_groups} rows); Sunfleet / DuckDB = {:.2}",
                ms(duck_daily),
                ours.as_secs_f64() / duck_daily.as_secs_f64()
            );
            say!(
                "DuckDB, energy per system over the {} days from raw readings (what a threshold check needs without rollups): warm median {}",
                options.days,
                ms(duck_90)
            );
        }
        Err(error) => say!("DuckDB comparison skipped: {error:#}"),
    }
    say!("peak memory: {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

/// Appends every system's readings through the engine's write path, then persists, rolls
/// up and compacts. Returns the held-back last day of the graph systems.
fn build(
    runtime: &tokio::runtime::Runtime,
    store: &Arc<Store>,
    fleet: &Fleet,
    last_day_start: i64,
) -> anyhow::Result<Vec<TelemetryBatch>> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let maintenance =
        runtime.spawn(Arc::clone(store).run_maintenance(Duration::from_millis(500), stopped));
    let began = Instant::now();
    let mut held = Vec::new();
    let mut readings = 0usize;
    let specs: Vec<_> = fleet.systems().collect();
    for chunk in specs.chunks(100) {
        let mut shares: Vec<Vec<TelemetryBatch>> = vec![Vec::new(); 2];
        for (index, spec) in chunk.iter().enumerate() {
            stream_system(fleet, spec.clone(), |upload| {
                let batch = (*upload.batch).clone();
                let hold = spec.id.0 <= GRAPH_SYSTEMS && batch_start(&batch) >= last_day_start;
                if hold {
                    held.push(batch);
                } else {
                    readings += batch.reading_count();
                    shares[index % 2].push(batch);
                }
            });
        }
        let appender = Arc::clone(store);
        append_from_threads(shares, 64, move |batch| {
            // Back-pressure, as a gateway meets it: wait for persistence and retry.
            loop {
                match appender.append(batch.clone()) {
                    Err(sunfleet_engine::Error::BufferFull { .. }) => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    result => return result,
                }
            }
        })?;
    }
    say!(
        "build: {readings} readings appended durably in {:.0} s ({:.0} readings/s incl. generation)",
        began.elapsed().as_secs_f64(),
        readings as f64 / began.elapsed().as_secs_f64()
    );
    stop.send(true)?;
    runtime.block_on(maintenance)?;
    let began = Instant::now();
    runtime.block_on(store.persist())?;
    runtime.block_on(store.roll_up())?;
    runtime.block_on(store.compact())?;
    say!(
        "build: persist, rollups and compaction {:.0} s",
        began.elapsed().as_secs_f64()
    );
    Ok(held)
}

/// The held-back batches again, for a run on a folder built before.
fn held_back_batches(fleet: &Fleet, last_day_start: i64) -> Vec<TelemetryBatch> {
    let mut held = Vec::new();
    for spec in fleet.systems().filter(|s| s.id.0 <= GRAPH_SYSTEMS) {
        stream_system(fleet, spec, |upload| {
            if batch_start(&upload.batch) >= last_day_start {
                held.push((*upload.batch).clone());
            }
        });
    }
    held
}

/// The earliest reading time in a batch (its uploads are grouped by interval).
fn batch_start(batch: &TelemetryBatch) -> i64 {
    batch
        .micro
        .time_us
        .iter()
        .copied()
        .min()
        .unwrap_or(i64::MAX)
}

fn timings(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Vec<Duration>> {
    (0..runs)
        .map(|_| {
            let began = Instant::now();
            f()?;
            Ok(began.elapsed())
        })
        .collect()
}

fn median(times: &[Duration]) -> Duration {
    percentile(times, 0.5)
}

fn percentile(times: &[Duration], share: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let index = ((sorted.len() as f64 - 1.0) * share).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn max(times: &[Duration]) -> Duration {
    times.iter().copied().max().unwrap_or_default()
}

/// One 5-minute interval of a system at `at`: every microinverter and meter reports.
fn interval_upload(spec: &SystemSpec, at: i64, seq: u64) -> TelemetryBatch {
    let mut batch = TelemetryBatch::new(spec.gateway.serial, BatchSeq(1 << 40 | seq), at);
    for micro in &spec.micros {
        batch.micro.push(MicroReading {
            serial: micro.serial,
            time_us: at,
            interval_s: 300,
            energy_j: 30_000,
            ac_power_w: 100,
            dc_voltage_mv: 32_000,
            dc_current_ma: 3_300,
            ac_voltage_mv: 240_000,
            ac_frequency_mhz: 60_000,
            temperature_c: 30,
            status: 0,
        });
    }
    let meters = spec
        .production_meter
        .iter()
        .map(|m| (m.serial, MeterKind::Production))
        .chain(
            spec.consumption_meter
                .iter()
                .map(|(m, mode)| (m.serial, MeterKind::Consumption(*mode))),
        );
    for (serial, kind) in meters {
        batch.meters.push(MeterReading {
            serial,
            kind,
            time_us: at,
            interval_s: 300,
            active_power_w: 500,
            reactive_power_var: 0,
            apparent_power_va: 500,
            energy_delivered_wh: 0,
            energy_received_wh: 0,
            voltage_mv: 240_000,
            current_ma: 2_000,
            frequency_mhz: 60_000,
            power_factor_milli: 1000,
        });
    }
    batch
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// DuckDB (pinned, via Python) on the same files: the daily-energy SQL and a 90-day energy
/// per system, each run `runs + 1` times in one process (the first is a warm-up).
fn duckdb_times(
    parquet: &Path,
    daily_sql: &str,
    start: CivilDate,
    end_us: i64,
    runs: usize,
) -> anyhow::Result<(Duration, usize, Duration)> {
    let python = crate::interop_python()?;
    let end = CivilDate::of_timestamp(end_us);
    let script = format!(
        r#"
import duckdb, statistics, time
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("SET TimeZone = 'UTC'")
con.execute("CREATE VIEW readings AS SELECT * FROM read_parquet('{root}/readings/*/*.parquet', hive_partitioning = true)")
def timed(sql):
    times, rows = [], 0
    for _ in range({runs} + 1):
        began = time.perf_counter()
        rows = con.sql(sql).to_arrow_table().num_rows
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:]), rows
daily, daily_rows = timed("""{daily}""")
ninety, _ = timed("SELECT system_id, sum(energy_j) FROM readings WHERE time >= TIMESTAMPTZ '{start} 00:00:00+00' AND time < TIMESTAMPTZ '{end} 00:00:00+00' GROUP BY system_id")
print(daily, daily_rows, ninety)
"#,
        root = parquet.display(),
        daily = daily_sql.replace("TIMESTAMP '", "TIMESTAMPTZ '"),
    );
    let output = std::process::Command::new(python)
        .args(["-c", &script])
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    let fields: Vec<&str> = text
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    anyhow::ensure!(fields.len() == 3, "duckdb printed {text:?}");
    Ok((
        Duration::from_secs_f64(fields[0].parse()?),
        fields[1].parse()?,
        Duration::from_secs_f64(fields[2].parse()?),
    ))
}
