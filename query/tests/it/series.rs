//! Graph series: every granularity adds up to the raw readings, whether rollups cover the
//! range or readings are still buffered; local days follow daylight saving.

use datafusion::arrow::array::AsArray;
use sunfleet_query::series::{Granularity, SeriesRequest};
use sunfleet_query::{QueryError, Scope};

use crate::fleet::{Layout, test_fleet};

const WINDOW: (i64, i64) = (1_774_656_000_000_000, 1_774_915_200_000_000); // 2026-03-28 .. 03-31 UTC

fn request(system: u32, granularity: Granularity) -> SeriesRequest {
    SeriesRequest {
        system_id: system,
        device_id: None,
        start_us: WINDOW.0,
        end_us: WINDOW.1,
        granularity,
        max_points: 10_000,
    }
}

async fn totals_match_raw(layout: Layout) {
    let fleet = test_fleet(layout).await;
    // Settled, rollups answer every day; buffered, the days with new rows come from raw.
    let stale = fleet.store.stale_rollup_days(2);
    assert_eq!(stale.is_empty(), layout == Layout::Settled, "{stale:?}");
    for system in 1..=4 {
        let raw = fleet.raw_wh(system, None).await;
        for granularity in [
            Granularity::FiveMinutes,
            Granularity::FifteenMinutes,
            Granularity::Hour,
            Granularity::Day,
            Granularity::Month,
        ] {
            let series = fleet
                .engine
                .production_series(&Scope::Fleet, &request(system, granularity))
                .await
                .unwrap();
            let total: f64 = series.points.iter().map(|p| p.energy_wh).sum();
            assert!(
                (total - raw).abs() < 1e-6,
                "{layout:?} system {system} {granularity:?}: {total} Wh vs raw {raw} Wh"
            );
            for pair in series.points.windows(2) {
                assert!(
                    pair[0].end_us <= pair[1].start_us,
                    "points overlap or are unsorted"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_granularity_adds_up_to_the_raw_readings_with_buffered_rows() {
    totals_match_raw(Layout::Buffered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_granularity_adds_up_to_the_raw_readings_from_rollups() {
    totals_match_raw(Layout::Settled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_days_follow_daylight_saving_and_points_fit_the_screen() {
    let fleet = test_fleet(Layout::Settled).await;
    // System 2 is in Berlin: 2026-03-29 has 23 hours.
    let days = fleet
        .engine
        .production_series(&Scope::Fleet, &request(2, Granularity::Day))
        .await
        .unwrap();
    assert_eq!(days.time_zone, "Europe/Berlin");
    let hours: Vec<(String, i64)> = days
        .points
        .iter()
        .map(|p| {
            (
                p.local_start.clone(),
                (p.end_us - p.start_us) / 3_600_000_000,
            )
        })
        .collect();
    assert!(
        hours.contains(&("2026-03-29T00:00".to_owned(), 23)),
        "{hours:?}"
    );
    assert!(
        hours.contains(&("2026-03-30T00:00".to_owned(), 24)),
        "{hours:?}"
    );
    let march = fleet
        .engine
        .production_series(&Scope::Fleet, &request(2, Granularity::Month))
        .await
        .unwrap();
    assert_eq!(march.points.len(), 1);
    assert_eq!(march.points[0].local_start, "2026-03-01T00:00");

    let mut five = request(2, Granularity::FiveMinutes);
    five.max_points = 100;
    let series = fleet
        .engine
        .production_series(&Scope::Fleet, &five)
        .await
        .unwrap();
    assert!(series.points.len() <= 100 && series.buckets_per_point > 1);
    let p = &series.points[series.points.len() / 2];
    let hours = (p.end_us - p.start_us) as f64 / 3.6e9;
    assert!((p.power_avg_w * hours - p.energy_wh).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_microinverter_series_and_what_a_scope_may_not_see() {
    let fleet = test_fleet(Layout::Buffered).await;
    let device = fleet
        .sql(
            &Scope::Fleet,
            "SELECT min(device_id) FROM readings WHERE system_id = 3",
        )
        .await;
    let device = device.batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
        .value(0);
    let mut micro = request(3, Granularity::Hour);
    micro.device_id = Some(device);
    let series = fleet
        .engine
        .production_series(&Scope::Fleet, &micro)
        .await
        .unwrap();
    let total: f64 = series.points.iter().map(|p| p.energy_wh).sum();
    let raw = fleet.raw_wh(3, Some(device)).await;
    assert!((total - raw).abs() < 1e-6, "{total} vs {raw}");

    // Owner 2 sees system 2 only: system 3 is "not found", like a system that does not exist.
    let owner = Scope::of_owner(&fleet.registry, 2).unwrap();
    for system in [3, 999] {
        match fleet
            .engine
            .production_series(&owner, &request(system, Granularity::Day))
            .await
        {
            Err(QueryError::NotFound { what }) => assert_eq!(what, format!("system {system}")),
            other => panic!("{other:?}"),
        }
    }
    let mut empty = request(2, Granularity::Day);
    empty.end_us = empty.start_us;
    assert!(matches!(
        fleet.engine.production_series(&owner, &empty).await,
        Err(QueryError::BadRequest { .. })
    ));
}

/// Sites in the Americas, Asia and Oceania produce across midnight UTC: a reading stamped
/// 00:00 belongs to the last bucket of the previous UTC day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_across_midnight_utc_add_up_everywhere() {
    use sunfleet_fixtures::{Fleet, FleetConfig};
    let config = FleetConfig::new(
        21,
        40,
        sunfleet_engine::time::CivilDate::from_ymd(2026, 6, 1).unwrap(),
        2,
    );
    for layout in [Layout::Settled, Layout::Buffered] {
        let fleet = crate::fleet::build(&Fleet::new(config.clone()), layout).await;
        let at_midnight = fleet
            .sql(
                &Scope::Fleet,
                "SELECT DISTINCT system_id FROM readings
                 WHERE time = '2026-06-02T00:00:00Z' AND energy_j > 0 ORDER BY 1",
            )
            .await;
        let systems: Vec<u32> = at_midnight
            .batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert!(
            !systems.is_empty(),
            "no system produces at midnight UTC: change the seed"
        );
        for system in systems.into_iter().take(3) {
            let raw = fleet.raw_wh(system, None).await;
            for granularity in [
                Granularity::FifteenMinutes,
                Granularity::Hour,
                Granularity::Day,
            ] {
                let mut request = request(system, granularity);
                request.start_us = config.window_start_us() - 86_400_000_000;
                request.end_us = config.window_end_us() + 86_400_000_000;
                let series = fleet
                    .engine
                    .production_series(&Scope::Fleet, &request)
                    .await
                    .unwrap();
                let total: f64 = series.points.iter().map(|p| p.energy_wh).sum();
                assert!(
                    (total - raw).abs() < 1e-6,
                    "{layout:?} system {system} {granularity:?}: {total} vs {raw}"
                );
            }
        }
    }
}
