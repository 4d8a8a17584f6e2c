//! Fleet checks scored against the generator's ground truth: every injected fault that is
//! present at the time of a check is found, and nothing else is.

use std::collections::{BTreeSet, HashMap};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use sunfleet_engine::ids::BatchSeq;
use sunfleet_engine::telemetry::{DeviceEvent, EventKind, EventState, TelemetryBatch};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::faults::{Fault, FaultRates};
use sunfleet_fixtures::{Fleet, FleetConfig};
use sunfleet_query::Scope;
use sunfleet_query::checks::{CheckSettings, Condition, FleetCheck, FleetChecker, record};

use crate::fleet::{Layout, build};

const DAY_US: i64 = 86_400_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_present_fault_is_found_and_no_healthy_system_is_flagged() {
    let mut config = FleetConfig::new(21, 40, CivilDate::from_ymd(2026, 6, 1).unwrap(), 4);
    config.fault_rates = FaultRates {
        micro_not_reporting: 0.15,
        gateway_outage: 0.1,
        gateway_gone: 0.1,
        meter_issue: 0.3,
        under_production: 0.0,
        grid_out_of_range: 0.15,
    };
    let fleet = Fleet::new(config.clone());
    let test = build(&fleet, Layout::Settled).await;
    let device_ids: HashMap<u64, u32> = {
        let answer = test
            .sql(&Scope::Fleet, "SELECT serial, id FROM devices")
            .await;
        let mut map = HashMap::new();
        for batch in &answer.batches {
            let serials = batch.column(0).as_primitive::<Int64Type>();
            let ids = batch.column(1).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                map.insert(serials.value(i) as u64, ids.value(i) as u32);
            }
        }
        map
    };

    // At the end of the window: what is still wrong.
    let as_of = config.window_end_us();
    let settings = CheckSettings::default();
    let check = test.engine.check_fleet(as_of, &settings).await.unwrap();
    let mut expected: BTreeSet<(u32, Option<u32>, Condition)> = BTreeSet::new();
    let mut kinds_injected = BTreeSet::new();
    let mut grid_faults = Vec::new();
    for spec in fleet.systems() {
        let system = spec.id.0;
        let gone = spec
            .faults
            .iter()
            .any(|f| matches!(f, Fault::GatewayOffline { until_us: None, .. }));
        for fault in &spec.faults {
            kinds_injected.insert(fault.name());
            match fault {
                Fault::GatewayOffline { until_us: None, .. } => {
                    expected.insert((system, None, Condition::GatewayNotReporting));
                }
                // A silent gateway hides its devices' conditions.
                _ if gone => {}
                Fault::MicroNotReporting { micros, .. } => {
                    for micro in micros {
                        let device = device_ids[&micro.value()];
                        expected.insert((system, Some(device), Condition::MicroNotReporting));
                    }
                }
                Fault::MeterNotReporting { meter, .. } => {
                    let device = device_ids[&meter.value()];
                    expected.insert((system, Some(device), Condition::MeterNotReporting));
                }
                Fault::MeterReversedClamp { meter } => {
                    let device = device_ids[&meter.value()];
                    expected.insert((system, Some(device), Condition::MeterIssue));
                }
                Fault::GridOutOfRange {
                    event,
                    from_us,
                    until_us,
                } => {
                    grid_faults.push((system, *event, *from_us, *until_us));
                }
                // Over by the end of the window; under-production is scored elsewhere.
                Fault::GatewayOffline { .. } | Fault::UnderProduction { .. } => {}
            }
        }
    }
    let found: BTreeSet<(u32, Option<u32>, Condition)> = check
        .findings
        .iter()
        .map(|f| (f.system_id, f.device_id, f.condition))
        .collect();
    assert_eq!(
        found.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(u32, Option<u32>, Condition)>::new(),
        "flagged without a fault"
    );
    assert_eq!(
        expected.difference(&found).collect::<Vec<_>>(),
        Vec::<&(u32, Option<u32>, Condition)>::new(),
        "faults not found"
    );
    for kind in [
        "micro_not_reporting",
        "gateway_gone",
        "gateway_outage",
        "meter_reversed_clamp",
        "meter_not_reporting",
        "grid_out_of_range",
    ] {
        assert!(
            kinds_injected.contains(kind),
            "the fleet has no {kind}: change the seed"
        );
    }

    // While the grid is out of range, the event is open on that system; after, it is not.
    for (system, event, from_us, until_us) in grid_faults {
        let during = test
            .engine
            .check_fleet((from_us + until_us) / 2, &settings)
            .await
            .unwrap();
        assert!(
            during
                .findings
                .iter()
                .any(|f| f.system_id == system && f.condition == Condition::DeviceEvent(event)),
            "system {system}: {event:?} not found while it lasted"
        );
        let after = test
            .engine
            .check_fleet(until_us + 30 * 60_000_000, &settings)
            .await
            .unwrap();
        assert!(
            !after
                .findings
                .iter()
                .any(|f| f.system_id == system && matches!(f.condition, Condition::DeviceEvent(_))),
            "system {system}: {event:?} still open after it cleared"
        );
    }

    // Recording opens events and sets statuses; a later check that finds nothing ends them.
    let changes = record(&test.registry, &check).unwrap();
    assert_eq!(changes.opened, check.findings.len());
    assert_eq!(
        record(&test.registry, &check).unwrap().opened,
        0,
        "events opened twice"
    );
    let statuses = check.statuses();
    let answer = test
        .sql(&Scope::Fleet, "SELECT id, status FROM systems ORDER BY id")
        .await;
    for batch in &answer.batches {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let stored = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            if let Some(status) = statuses.get(&(ids.value(i) as u32)) {
                assert_eq!(stored.value(i), *status, "system {}", ids.value(i));
            }
        }
    }
    let mut healed = check.clone();
    healed.findings.clear();
    healed.as_of_us += DAY_US;
    let changes = record(&test.registry, &healed).unwrap();
    assert_eq!(changes.ended, check.findings.len());
    let open = test
        .sql(
            &Scope::Fleet,
            "SELECT count(*) FROM events WHERE ended_us IS NULL",
        )
        .await;
    assert_eq!(
        open.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0),
        0
    );
}

/// (system, device, condition) of every finding.
fn found(check: &FleetCheck) -> BTreeSet<(u32, Option<u32>, Condition)> {
    check
        .findings
        .iter()
        .map(|f| (f.system_id, f.device_id, f.condition))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_round_rejudges_only_what_changed_and_agrees_with_a_full_one() {
    let mut config = FleetConfig::new(21, 40, CivilDate::from_ymd(2026, 6, 1).unwrap(), 4);
    config.fault_rates = FaultRates {
        micro_not_reporting: 0.15,
        gateway_outage: 0.0,
        gateway_gone: 0.1,
        meter_issue: 0.3,
        under_production: 0.0,
        grid_out_of_range: 0.0,
    };
    let fleet = Fleet::new(config.clone());
    let test = build(&fleet, Layout::Settled).await;
    let as_of = config.window_end_us();
    let mut checker = FleetChecker::new(CheckSettings::default());

    let first = checker.check(&test.engine, as_of).await.unwrap();
    assert!(first.rejudged.everything);
    let full = test
        .engine
        .check_fleet(as_of, &CheckSettings::default())
        .await
        .unwrap();
    assert_eq!(first.findings, full.findings);

    // Nothing arrived: nothing is read again, and the answer stands.
    let quiet = checker
        .check(&test.engine, as_of + 60_000_000)
        .await
        .unwrap();
    assert!(!quiet.rejudged.everything);
    assert_eq!(quiet.rejudged.device_event_systems, 0);
    assert_eq!(quiet.rejudged.production_systems, 0);
    assert_eq!(found(&quiet), found(&first));

    // One healthy system's microinverter trips its GFI, and the healthy system's other
    // microinverters report; a day later, with nothing else arriving, every other system
    // has gone silent.
    let healthy = fleet
        .systems()
        .find(|s| s.faults.is_empty() && s.micros.len() > 1)
        .expect("a healthy system");
    let tripped = healthy.micros[0].serial;
    let mut batch = TelemetryBatch::new(healthy.gateway.serial, BatchSeq(1_000_000), as_of);
    batch.events.push(DeviceEvent {
        serial: tripped,
        time_us: as_of + 120_000_000,
        kind: EventKind::GfiTripped,
        state: EventState::Raised,
    });
    test.store.append(batch).unwrap().durable().await.unwrap();
    let later = as_of + 120_000_000 + 27 * 3_600_000_000;
    let round = checker.check(&test.engine, later).await.unwrap();
    assert!(!round.rejudged.everything);
    assert_eq!(round.rejudged.device_event_systems, 1);
    let full = test
        .engine
        .check_fleet(later, &CheckSettings::default())
        .await
        .unwrap();
    assert_eq!(found(&round), found(&full));
    assert!(
        found(&round).contains(&(
            healthy.id.0,
            None,
            Condition::DeviceEvent(EventKind::GfiTripped)
        )),
        "the tripped GFI is found"
    );
    assert_eq!(
        round
            .findings
            .iter()
            .filter(|f| f.condition == Condition::GatewayNotReporting)
            .count(),
        round.systems.len(),
        "a day of silence is seen without new data"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_below_the_threshold_share_of_the_estimate_is_an_issue() {
    let test = crate::fleet::test_fleet(Layout::Settled).await;
    // 300 kWh every month, no degradation, a 30-day window at 90 %; operational long ago.
    test.registry
        .transaction("estimates", |tx| {
            tx.execute_batch(
                "UPDATE systems SET estimate_level = 'system', threshold_days = 30,
                   threshold_pct = 90, annual_degradation_pct = 0, operational_date = '2025-01-01';
                 DELETE FROM production_estimates;
                 INSERT INTO production_estimates (system_id, array_id, month, energy_kwh)
                   SELECT s.id, 0, m.value, 300.0 FROM systems s,
                     (SELECT 1 AS value UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5
                      UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9 UNION SELECT 10
                      UNION SELECT 11 UNION SELECT 12) m;",
            )
            .map_err(|source| sunfleet_engine::Error::Registry {
                context: "estimates".into(),
                source,
            })
        })
        .unwrap();
    // History before the telemetry: system 1 at about the estimate (10.5 kWh a day), system
    // 2 at about 60 %; systems 3 and 4 have none, so they are not judged yet.
    let first = crate::fleet::first_day();
    let mut totals = Vec::new();
    for days_before in 1..=40 {
        let day = first.add_days(-days_before);
        totals.push((sunfleet_engine::ids::SystemId(1), day, 37_800_000));
        totals.push((sunfleet_engine::ids::SystemId(2), day, 21_600_000));
    }
    test.store.import_daily_totals(&totals).await.unwrap();
    // After the telemetry's first day, so the gateway is reporting.
    let as_of = first.add_days(1).start_micros();
    let check = test
        .engine
        .check_fleet(as_of, &CheckSettings::default())
        .await
        .unwrap();
    let issues: Vec<u32> = check
        .findings
        .iter()
        .filter(|f| f.condition == Condition::ProductionIssue)
        .map(|f| f.system_id)
        .collect();
    assert_eq!(issues, vec![2]);
    let details = &check
        .findings
        .iter()
        .find(|f| f.system_id == 2 && f.condition == Condition::ProductionIssue)
        .unwrap()
        .details;
    assert!(
        details.contains("over the past 30 days") && details.contains("threshold 90 %"),
        "{details}"
    );
    assert_eq!(check.statuses().get(&2), Some(&"power"));
    // At 60 % the threshold is met.
    test.registry
        .transaction("threshold", |tx| {
            tx.execute_batch("UPDATE systems SET threshold_pct = 60 WHERE id = 2")
                .map_err(|source| sunfleet_engine::Error::Registry {
                    context: "threshold".into(),
                    source,
                })
        })
        .unwrap();
    let check = test
        .engine
        .check_fleet(as_of, &CheckSettings::default())
        .await
        .unwrap();
    assert!(
        !check
            .findings
            .iter()
            .any(|f| f.condition == Condition::ProductionIssue)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_off_by_command_is_a_status_and_no_production_issue() {
    let test = crate::fleet::test_fleet(Layout::Settled).await;
    let registry_sql = |sql: &str| {
        test.registry
            .transaction("test setup", |tx| {
                tx.execute_batch(sql)
                    .map_err(|source| sunfleet_engine::Error::Registry {
                        context: "test setup".into(),
                        source,
                    })
            })
            .unwrap();
    };
    // 300 kWh every month, a 30-day window at 90 %; operational long ago.
    registry_sql(
        "UPDATE systems SET estimate_level = 'system', threshold_days = 30,
           threshold_pct = 90, annual_degradation_pct = 0, operational_date = '2025-01-01';
         DELETE FROM production_estimates;
         INSERT INTO production_estimates (system_id, array_id, month, energy_kwh)
           SELECT 1, 0, m.value, 300.0 FROM
             (SELECT 1 AS value UNION SELECT 2 UNION SELECT 3 UNION SELECT 4 UNION SELECT 5
              UNION SELECT 6 UNION SELECT 7 UNION SELECT 8 UNION SELECT 9 UNION SELECT 10
              UNION SELECT 11 UNION SELECT 12) m;",
    );
    // System 1 produces its estimate, except nothing for twenty days in its window.
    let first = crate::fleet::first_day();
    let totals: Vec<_> = (1..=40)
        .map(|days_before| {
            let joules = if (3..=22).contains(&days_before) {
                0
            } else {
                37_800_000
            };
            (
                sunfleet_engine::ids::SystemId(1),
                first.add_days(-days_before),
                joules,
            )
        })
        .collect();
    test.store.import_daily_totals(&totals).await.unwrap();
    let as_of = first.add_days(1).start_micros();
    let judge = async || {
        test.engine
            .check_fleet(as_of, &CheckSettings::default())
            .await
            .unwrap()
    };
    let of_system_1 = |check: &FleetCheck| -> Vec<Condition> {
        check
            .findings
            .iter()
            .filter(|f| f.system_id == 1 && f.device_id.is_none())
            .map(|f| f.condition)
            .collect()
    };
    assert_eq!(
        of_system_1(&judge().await),
        vec![Condition::ProductionIssue]
    );

    // The gateway had production switched off for those days (and on again): they are left
    // out of the judgment, so there is no issue.
    let noon = |days_before: i32| first.add_days(-days_before).start_micros() + DAY_US / 2;
    registry_sql(&format!(
        "INSERT INTO gateway_tasks (gateway_id, kind, state, created_us, finished_us)
           SELECT id, 'production_off', 'succeeded', {off}, {off}
             FROM devices WHERE system_id = 1 AND kind = 'gateway';
         INSERT INTO gateway_tasks (gateway_id, kind, state, created_us, finished_us)
           SELECT id, 'production_on', 'succeeded', {on}, {on}
             FROM devices WHERE system_id = 1 AND kind = 'gateway';
         -- A switch that failed changes nothing.
         INSERT INTO gateway_tasks (gateway_id, kind, state, created_us, finished_us)
           SELECT id, 'production_off', 'failed', {on}, {on}
             FROM devices WHERE system_id = 1 AND kind = 'gateway';",
        off = noon(23),
        on = noon(2),
    ));
    let check = judge().await;
    assert_eq!(of_system_1(&check), Vec::<Condition>::new());
    assert_eq!(check.statuses().get(&1), Some(&"normal"));

    // Still off: the status says so, and it is no production issue either.
    registry_sql("DELETE FROM gateway_tasks WHERE kind = 'production_on'");
    let check = judge().await;
    assert_eq!(of_system_1(&check), vec![Condition::ProductionOff]);
    assert_eq!(check.statuses().get(&1), Some(&"production_off"));
    let finding = check
        .findings
        .iter()
        .find(|f| f.condition == Condition::ProductionOff)
        .unwrap();
    assert_eq!(finding.started_us, noon(23));
}
