//! CSV reports: golden files in `fixtures/reports/` (rewrite them with
//! `SUNFLEET_BLESS=1 cargo nextest run -p sunfleet-query reports::`), plus what must hold
//! whatever the data.

use std::path::Path;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use sunfleet_query::Scope;
use sunfleet_query::reports::{ReportKind, ReportRequest};
use sunfleet_query::series::Granularity;

use crate::fleet::{Layout, first_day, test_fleet};

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/reports")
        .join(name);
    if std::env::var_os("SUNFLEET_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless to create it)", path.display()));
    assert!(expected == actual, "{name} differs from {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_match_their_golden_files_and_the_raw_data() {
    let fleet = test_fleet(Layout::Settled).await;
    // The system with a consumption meter in net mode.
    let answer = fleet
        .sql(
            &Scope::Fleet,
            "SELECT min(system_id) FROM meter_readings WHERE meter_kind = 1",
        )
        .await;
    let system = answer.batches[0]
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::UInt32Type>()
        .value(0);
    let report = |kind, granularity| ReportRequest {
        kind,
        system_id: system,
        start_us: first_day().start_micros(),
        end_us: first_day().add_days(3).start_micros(),
        granularity,
    };
    let write = |request: ReportRequest| {
        let engine = &fleet.engine;
        async move {
            let mut out = Vec::new();
            let rows = engine
                .write_report(&Scope::Fleet, &request, &mut out)
                .await
                .unwrap();
            (rows, String::from_utf8(out).unwrap())
        }
    };

    let (rows, production) = write(report(ReportKind::Production, Granularity::Hour)).await;
    assert_eq!(production.lines().count() as u64, rows + 1);
    let total_wh: f64 = production
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse::<f64>().unwrap())
        .sum();
    let raw_wh = fleet.raw_wh(system, None).await;
    assert!(
        (total_wh - raw_wh).abs() < 0.01 * rows as f64,
        "{total_wh} vs {raw_wh}"
    );
    golden("production-hour.csv", &production);

    let (_, consumption) = write(report(ReportKind::Consumption, Granularity::Day)).await;
    for line in consumption.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let (consumed, produced, import): (f64, f64, f64) = (
            cells[3].parse().unwrap(),
            cells[4].parse().unwrap(),
            cells[5].parse().unwrap(),
        );
        assert!(consumed > 0.0, "{line}");
        assert!((consumed - produced - import).abs() < 0.01, "{line}");
    }
    golden("consumption-day.csv", &consumption);

    // Six hours of meter data keep the golden file short.
    let mut six_hours = report(ReportKind::MeterData, Granularity::Hour);
    six_hours.start_us += 10 * 3_600_000_000;
    six_hours.end_us = six_hours.start_us + 6 * 3_600_000_000;
    let (rows, meters) = write(six_hours.clone()).await;
    let count = fleet
        .sql(
            &Scope::Fleet,
            &format!(
                "SELECT count(*) FROM meter_readings WHERE system_id = {system}
                 AND time > to_timestamp_micros({}) AND time <= to_timestamp_micros({})",
                six_hours.start_us, six_hours.end_us
            ),
        )
        .await;
    assert_eq!(
        rows as i64,
        count.batches[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0)
    );
    assert!(meters.starts_with("time_local,time_zone,meter_serial,meter_kind,"));
    golden("meter-data.csv", &meters);

    let (rows, monthly) = write(report(ReportKind::MonthlyProduction, Granularity::Hour)).await;
    assert_eq!(rows, 1);
    golden("monthly-production.csv", &monthly);

    // Someone else's system is not found.
    let owner = Scope::of_owner(&fleet.registry, i64::from(system) % 4 + 1).unwrap();
    assert!(
        fleet
            .engine
            .write_report(
                &owner,
                &report(ReportKind::MeterData, Granularity::Day),
                Vec::new()
            )
            .await
            .is_err()
    );
}
