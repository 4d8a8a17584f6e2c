//! A small deterministic fleet in a temporary data folder, its telemetry laid out over every
//! storage path a scan can meet: compacted days (one file), days with several files, and
//! rows still in the write buffer, with duplicate and corrected re-sends.

use std::collections::HashMap;
use std::sync::Arc;

use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::BatchSeq;
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::{Store, StoreConfig};
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::seed::seed_registry;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};
use sunfleet_query::{QueryConfig, QueryEngine, Scope, SqlAnswer};

/// Fleet seed, systems, first day and days of every test fleet: four systems over the
/// weekend Europe moves its clocks forward (2026-03-29).
pub const SEED: u64 = 7;
pub const SYSTEMS: u32 = 4;
pub const FIRST_DAY: (i32, u32, u32) = (2026, 3, 28);
pub const DAYS: u32 = 3;

pub struct TestFleet {
    pub dir: tempfile::TempDir,
    pub registry: Arc<Registry>,
    pub store: Arc<Store>,
    pub engine: QueryEngine,
    /// Every batch appended, in append order.
    pub appended: Vec<TelemetryBatch>,
}

impl TestFleet {
    /// (serial, time) → energy_j of every microinverter reading, the latest append winning.
    pub fn expected_energy(&self) -> HashMap<(u64, i64), u32> {
        let mut expected = HashMap::new();
        for batch in &self.appended {
            for r in batch.micro.rows() {
                expected.insert((r.serial.value(), r.time_us), r.energy_j);
            }
        }
        expected
    }

    /// Watt-hours of a system's (or one microinverter's) raw readings, summed by SQL.
    pub async fn raw_wh(&self, system: u32, device: Option<u32>) -> f64 {
        let device = device
            .map(|d| format!(" AND device_id = {d}"))
            .unwrap_or_default();
        let answer = self
            .sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(sum(energy_j) AS BIGINT) FROM readings WHERE system_id = {system}{device}"
                ),
            )
            .await;
        answer.i64s(0)[0].unwrap_or(0) as f64 / 3600.0
    }

    pub async fn sql(&self, scope: &Scope, sql: &str) -> SqlAnswer {
        self.engine
            .sql(scope, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

pub fn first_day() -> CivilDate {
    CivilDate::from_ymd(FIRST_DAY.0, FIRST_DAY.1, FIRST_DAY.2).unwrap()
}

async fn append_all(store: &Store, batches: &[TelemetryBatch]) {
    let pending: Vec<_> = batches
        .iter()
        .map(|b| store.append(b.clone()).unwrap())
        .collect();
    for p in pending {
        p.durable().await.unwrap();
    }
}

/// Where the last uploads are left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// In the write buffer.
    Buffered,
    /// Persisted and rolled up, so rollups agree with readings.
    Settled,
}

/// Builds the fleet: the first 60 % of uploads persisted, rolled up and compacted; the next
/// 30 % persisted as a second generation; the rest, ten re-sent batches of that second part
/// and five corrected ones (energy + 1 J, a newer sequence number) left as `layout` says.
/// The first day ends up in one file, the others in several files and the buffer.
pub async fn test_fleet(layout: Layout) -> TestFleet {
    build(
        &Fleet::new(FleetConfig::new(SEED, SYSTEMS, first_day(), DAYS)),
        layout,
    )
    .await
}

/// [`test_fleet`]'s layout for any fleet.
pub async fn build(fleet: &Fleet, layout: Layout) -> TestFleet {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::open(dir.path().join("registry.sqlite3")).unwrap());
    seed_registry(&registry, fleet).unwrap();
    let directory = DeviceDirectory::new();
    registry.load_directory(&directory).unwrap();
    let store = Arc::new(
        Store::open(StoreConfig::for_tests(dir.path()), directory)
            .await
            .unwrap(),
    );
    let mut uploads = Vec::new();
    for spec in fleet.systems() {
        stream_system(fleet, spec, |u| {
            uploads.push((u.send_us, (*u.batch).clone()))
        });
    }
    uploads.sort_by_key(|(send_us, _)| *send_us);
    let batches: Vec<TelemetryBatch> = uploads.into_iter().map(|(_, b)| b).collect();
    let (first, rest) = batches.split_at(batches.len() * 6 / 10);
    let (second, third) = rest.split_at(rest.len() * 3 / 4);
    let mut appended = Vec::new();

    append_all(&store, first).await;
    appended.extend_from_slice(first);
    store.persist().await.unwrap();
    store.roll_up().await.unwrap();
    store.compact().await.unwrap();

    append_all(&store, second).await;
    appended.extend_from_slice(second);
    store.persist().await.unwrap();
    store.roll_up().await.unwrap();

    let mut late: Vec<TelemetryBatch> = third.to_vec();
    late.extend(second.iter().step_by(second.len() / 10).take(10).cloned());
    for (i, original) in second
        .iter()
        .skip(3)
        .step_by(second.len() / 5)
        .take(5)
        .enumerate()
    {
        let mut corrected = original.clone();
        corrected.seq = BatchSeq(1_000_000 + i as u64);
        for energy in &mut corrected.micro.energy_j {
            *energy += 1;
        }
        late.push(corrected);
    }
    append_all(&store, &late).await;
    appended.extend(late);
    if layout == Layout::Settled {
        store.persist().await.unwrap();
        store.roll_up().await.unwrap();
    }

    let engine = QueryEngine::start(
        Arc::clone(&store),
        Arc::clone(&registry),
        QueryConfig::new(dir.path().join("spill")),
    )
    .unwrap();
    TestFleet {
        dir,
        registry,
        store,
        engine,
        appended,
    }
}
