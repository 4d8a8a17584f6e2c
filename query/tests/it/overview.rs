//! The systems list's figures add up to the raw readings, from rollups or the buffer.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{Int64Type, UInt64Type};
use sunfleet_query::Scope;
use sunfleet_query::overview::EmissionFactors;

use crate::fleet::{Layout, TestFleet, first_day, test_fleet};

const DAY_US: i64 = 86_400_000_000;

async fn raw_by_system(fleet: &TestFleet) -> Vec<(u32, f64, i64)> {
    let answer = fleet
        .sql(
            &Scope::Fleet,
            "SELECT system_id, sum(energy_j), CAST(max(time) AS BIGINT) FROM readings
             GROUP BY 1 ORDER BY 1",
        )
        .await;
    let batch = &answer.batches[0];
    let ids = batch
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
    let joules = batch.column(1).as_primitive::<UInt64Type>();
    let last = batch.column(2).as_primitive::<Int64Type>();
    (0..batch.num_rows())
        .map(|i| (ids.value(i), joules.value(i) as f64 / 3600.0, last.value(i)))
        .collect()
}

async fn figures_match(layout: Layout) {
    let fleet = test_fleet(layout).await;
    let raw = raw_by_system(&fleet).await;
    // Right after the window, and three weeks later (the days are then older rollups).
    for as_of in [
        first_day().add_days(3).start_micros(),
        first_day().add_days(24).start_micros(),
    ] {
        let figures = fleet
            .engine
            .system_figures(&Scope::Fleet, as_of)
            .await
            .unwrap();
        assert_eq!(figures.len(), 4);
        for (system, wh, last) in &raw {
            let f = figures.iter().find(|f| f.system_id == *system).unwrap();
            assert!(
                (f.lifetime_energy_wh - wh).abs() < 1e-6,
                "{layout:?} {system}: {} vs {wh}",
                f.lifetime_energy_wh
            );
            // Meters report around the clock, later than the microinverters. Weeks later the
            // last report comes from the newest rollup.
            let newest = if as_of == first_day().add_days(3).start_micros() {
                *last
            } else {
                i64::MIN
            };
            assert!(
                f.last_report_us.is_some_and(|t| t >= newest && t <= as_of),
                "{f:?}"
            );
            assert_eq!(f.daily_wh.len(), 7);
            if as_of == first_day().add_days(24).start_micros() {
                assert_eq!(f.energy_past_7_days_wh, 0.0);
                assert_eq!(f.energy_today_wh, 0.0);
                // Late April: the window was in March.
                assert_eq!(f.energy_month_wh, 0.0);
            } else {
                // The week and the month (March) hold the whole window.
                assert!((f.energy_past_7_days_wh - wh).abs() < 1e-6);
                assert!((f.energy_month_wh - wh).abs() < 1e-6, "{f:?}");
            }
            assert!(f.lifetime_estimate_pct.is_some_and(|p| p > 0.0), "{f:?}");
        }
    }
    // A scope sees its systems only.
    let owner = Scope::of_owner(&fleet.registry, 2).unwrap();
    let mine = fleet
        .engine
        .system_figures(&owner, first_day().add_days(3).start_micros())
        .await
        .unwrap();
    assert_eq!(
        mine.iter().map(|f| f.system_id).collect::<Vec<_>>(),
        vec![2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_figures_add_up_with_buffered_rows() {
    figures_match(Layout::Buffered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_figures_add_up_from_rollups() {
    figures_match(Layout::Settled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn today_is_the_site_local_day() {
    let fleet = test_fleet(Layout::Settled).await;
    // 2026-03-29 21:30 UTC is already 03-30 in Réunion (UTC+4), still 03-29 in Berlin.
    let as_of = first_day().add_days(1).start_micros() + 21 * 3_600_000_000 + DAY_US / 48;
    let figures = fleet
        .engine
        .system_figures(&Scope::Fleet, as_of)
        .await
        .unwrap();
    let day_of = |system: u32| {
        figures
            .iter()
            .find(|f| f.system_id == system)
            .unwrap()
            .daily_wh
            .last()
            .unwrap()
            .0
    };
    assert_eq!(day_of(1).to_string(), "2026-03-30");
    assert_eq!(day_of(2).to_string(), "2026-03-29");
    let benefit = EmissionFactors::default().benefit(1_000_000.0);
    assert!((benefit.co2_avoided_kg - 250.0).abs() < 1e-9);
    assert!((benefit.car_km - 250.0 / 0.12).abs() < 1e-9);
}
