//! Kill -9 proof for the whole store: a child process appends batches while persisting and
//! compacting in the background, reporting every acknowledged batch; the parent kills it
//! (SIGKILL at varied moments, or an abort at a named point: around the WAL fsync, mid-persist,
//! mid-compaction, around a manifest swap), reopens the store and checks that
//!
//! - every acknowledged batch's readings are present, exactly once, with their values;
//! - every batch is all there or not there at all (never half-present);
//! - per-system energy totals equal a reference model built from the batches present.
//!
//! Every append is a sample batch shifted by whole days (`cycle`), so each append has keys
//! of its own. Long variant: `SUNFLEET_CRASH_ROUNDS=200 cargo nextest run -p sunfleet-engine
//! store_crash`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{TimestampMicrosecondType, UInt32Type, UInt64Type};
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::BatchSeq;
use sunfleet_engine::store::{ReadRequest, Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::time::MICROS_PER_DAY;

use crate::store::{col, day, fleet_day};

const CHILD_DIR: &str = "SUNFLEET_STORE_CRASH_DIR";
const SYSTEMS: u32 = 2;
/// Cycles stay within this many days, so reads cover a known range.
const MAX_CYCLES: u64 = 40;

/// Sample batch `index` moved `cycle` days later, numbered uniquely.
fn shifted(batches: &[TelemetryBatch], index: usize, cycle: u64) -> TelemetryBatch {
    let mut batch = batches[index].clone();
    let shift = cycle as i64 * MICROS_PER_DAY;
    batch.seq = BatchSeq(cycle * batches.len() as u64 + index as u64 + 1);
    batch.created_us += shift;
    batch.micro.time_us.iter_mut().for_each(|t| *t += shift);
    batch.meters.iter_mut().for_each(|m| m.time_us += shift);
    batch.batteries.iter_mut().for_each(|b| b.time_us += shift);
    batch.events.iter_mut().for_each(|e| e.time_us += shift);
    batch
}

fn config(dir: &Path) -> StoreConfig {
    let mut config = StoreConfig::for_tests(dir);
    config.wal.flush_interval = Duration::from_millis(1);
    config.persist_rows = 2_000;
    config
}

/// Runs only as the child of `acknowledged_batches_survive_store_crashes`.
#[test]
#[ignore = "child process of the store crash test"]
fn child_store_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let (batches, directory) = fleet_day(SYSTEMS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(
            Store::open(config(Path::new(&dir)), directory)
                .await
                .unwrap(),
        );
        // Continue after what earlier rounds stored: cycles are per round, from a file.
        let start_cycle: u64 = std::fs::read_to_string(Path::new(&dir).join("next-cycle"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let maintenance = Arc::clone(&store);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(15)).await;
                maintenance.maintain(Duration::ZERO).await.unwrap();
            }
        });
        let mut in_flight = std::collections::VecDeque::new();
        for cycle in start_cycle..MAX_CYCLES {
            for index in 0..batches.len() {
                let pending = store.append(shifted(&batches, index, cycle)).unwrap();
                in_flight.push_back((index, cycle, pending));
                if in_flight.len() >= 16 {
                    let (index, cycle, pending) = in_flight.pop_front().unwrap();
                    pending.durable().await.unwrap();
                    println!("{index} {cycle}");
                }
            }
        }
        for (index, cycle, pending) in in_flight {
            pending.durable().await.unwrap();
            println!("{index} {cycle}");
        }
        println!("done");
    });
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    After(Duration),
    AtFailpoint(&'static str, u64),
}

/// Runs the child until it is killed (or finishes); returns the acknowledged (index, cycle).
fn run_and_kill(dir: &Path, kill: Kill) -> Vec<(usize, u64)> {
    let failpoint = match kill {
        Kill::AtFailpoint(name, hit) => Some(format!("{name}:{hit}")),
        Kill::After(_) => None,
    };
    let mut child =
        crate::child_process("store_crash::child_store_writer", CHILD_DIR, dir, failpoint)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| {
                let (index, cycle) = line.split_once(' ')?;
                Some((index.parse().ok()?, cycle.parse().ok()?))
            })
            .collect::<Vec<(usize, u64)>>()
    });
    let started = Instant::now();
    let deadline = match kill {
        Kill::After(after) => after,
        Kill::AtFailpoint(..) => Duration::from_secs(60),
    };
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() >= deadline {
            child.kill().unwrap(); // SIGKILL on Unix
            child.wait().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    reader.join().unwrap()
}

/// Every micro reading in the store: (serial, time) → (system, energy); and the per-system
/// energy of the daily rollups, brought up to date first.
async fn stored_readings(
    dir: &Path,
    directory: &DeviceDirectory,
) -> (HashMap<(u64, i64), (u32, u32)>, BTreeMap<u32, u64>) {
    let store = Store::open(config(dir), directory.clone()).await.unwrap();
    let request = ReadRequest::days(
        Table::Readings,
        day(),
        day().add_days(MAX_CYCLES as i32 + 1),
    );
    let rows = store.read(&request).await.unwrap();
    // Rollups cover persisted rows: persist what the WAL replayed, then roll up.
    store.persist().await.unwrap();
    store.roll_up().await.unwrap();
    let daily = store
        .read(&ReadRequest::days(
            Table::RollupDay,
            day().add_days(-2),
            day().add_days(MAX_CYCLES as i32 + 2),
        ))
        .await
        .unwrap();
    let mut rollup_totals = BTreeMap::new();
    let daily_systems = col::<UInt32Type>(&daily, "system_id");
    let daily_devices = col::<UInt32Type>(&daily, "device_id");
    let daily_energy = col::<UInt64Type>(&daily, "energy_j");
    for i in 0..daily.num_rows() {
        if daily_devices.value(i) == 0 {
            *rollup_totals.entry(daily_systems.value(i)).or_default() += daily_energy.value(i);
        }
    }
    let serials = col::<UInt64Type>(&rows, "serial");
    let times = col::<TimestampMicrosecondType>(&rows, "time");
    let systems = col::<UInt32Type>(&rows, "system_id");
    let energy = col::<UInt32Type>(&rows, "energy_j");
    let mut out = HashMap::new();
    for i in 0..rows.num_rows() {
        let previous = out.insert(
            (serials.value(i), times.value(i)),
            (systems.value(i), energy.value(i)),
        );
        assert!(previous.is_none(), "a reading is stored twice");
    }
    (out, rollup_totals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_store_crashes() {
    let (batches, directory) = fleet_day(SYSTEMS);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: BTreeSet<(usize, u64)> = BTreeSet::new();
    let mut rounds = vec![
        Kill::AtFailpoint("persist-before-manifest", 2),
        Kill::After(Duration::from_millis(400)),
        Kill::AtFailpoint("compact-before-manifest", 1),
        Kill::AtFailpoint("object-before-sync", 5),
        Kill::AtFailpoint("persist-after-manifest", 2),
        Kill::AtFailpoint("wal-after-write", 30),
        Kill::AtFailpoint("compact-after-manifest", 1),
        Kill::AtFailpoint("wal-after-sync", 20),
        Kill::After(Duration::from_millis(150)),
    ];
    let extra: u64 = std::env::var("SUNFLEET_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    const POINTS: [&str; 7] = [
        "wal-after-write",
        "wal-after-sync",
        "persist-before-manifest",
        "persist-after-manifest",
        "compact-before-manifest",
        "compact-after-manifest",
        "object-before-sync",
    ];
    for round in 0..extra {
        let h = sunfleet_fixtures::hash::hash(&[0x570e, round]);
        rounds.push(match h % 4 {
            0 => Kill::After(Duration::from_millis(50 + (h >> 8) % 500)),
            _ => Kill::AtFailpoint(POINTS[((h >> 16) % 7) as usize], 1 + (h >> 24) % 8),
        });
    }
    // The reference model: each (index, cycle) batch's readings.
    let keys_of = |index: usize, cycle: u64| -> Vec<((u64, i64), u32)> {
        let batch = shifted(&batches, index, cycle);
        batch
            .micro
            .rows()
            .map(|r| ((r.serial.value(), r.time_us), r.energy_j))
            .collect()
    };
    for (round, kill) in rounds.into_iter().enumerate() {
        acknowledged.extend(run_and_kill(dir.path(), kill));
        let (stored, rollup_totals) = stored_readings(dir.path(), &directory).await;
        let mut present: BTreeSet<(usize, u64)> = BTreeSet::new();
        let mut highest_cycle = 0;
        for cycle in 0..MAX_CYCLES {
            for index in 0..batches.len() {
                let keys = keys_of(index, cycle);
                let found = keys
                    .iter()
                    .filter(|(key, _)| stored.contains_key(key))
                    .count();
                assert!(
                    found == 0 || found == keys.len(),
                    "round {round} ({kill:?}): batch {index} of cycle {cycle} is half-present ({found} of {})",
                    keys.len()
                );
                if found > 0 && !keys.is_empty() {
                    present.insert((index, cycle));
                    highest_cycle = highest_cycle.max(cycle);
                    for (key, energy) in &keys {
                        assert_eq!(stored[key].1, *energy, "round {round}: value of {key:?}");
                    }
                }
            }
        }
        for acked in &acknowledged {
            let empty = keys_of(acked.0, acked.1).is_empty();
            assert!(
                empty || present.contains(acked),
                "round {round} ({kill:?}): acknowledged batch {acked:?} is missing"
            );
        }
        // Aggregates: per-system energy equals the model's: the batches present, in append
        // order, a re-sent reading replacing the earlier one.
        let system_of: HashMap<u64, u32> = stored
            .iter()
            .map(|((serial, _), (system, _))| (*serial, *system))
            .collect();
        let mut latest: HashMap<(u64, i64), u32> = HashMap::new();
        let mut in_append_order: Vec<(usize, u64)> = present.iter().copied().collect();
        in_append_order.sort_by_key(|&(index, cycle)| (cycle, index));
        for (index, cycle) in in_append_order {
            latest.extend(keys_of(index, cycle));
        }
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        for ((serial, _), energy) in latest {
            *model.entry(system_of[&serial]).or_default() += u64::from(energy);
        }
        let mut totals: BTreeMap<u32, u64> = BTreeMap::new();
        for (system, energy) in stored.values() {
            *totals.entry(*system).or_default() += u64::from(*energy);
        }
        assert_eq!(totals, model, "round {round}: per-system energy");
        assert_eq!(
            rollup_totals, model,
            "round {round}: per-system energy of the daily rollups"
        );
        // The next round continues after the last cycle that reached the store.
        std::fs::write(
            dir.path().join("next-cycle"),
            (highest_cycle + 1).min(MAX_CYCLES - 1).to_string(),
        )
        .unwrap();
    }
    assert!(
        acknowledged.len() > 100,
        "only {} acknowledgements: too few to prove anything",
        acknowledged.len()
    );
}
