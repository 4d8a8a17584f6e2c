//! Per-device figures (S4) against SQL over the raw tables: a microinverter's lifetime
//! energy, newest report and average power on its last reporting day, a meter's lifetime
//! counters and a battery's state of charge, whether rollups, the write buffer or (for
//! devices silent longer than a week) hourly rollups lead to the rows.

use std::collections::HashMap;

use sunfleet_query::devices::DeviceFigures;
use sunfleet_query::{QueryError, Scope};

use crate::fleet::{Layout, TestFleet, first_day, test_fleet};

/// `SELECT device_id, <value>` rows as a map.
async fn by_device(fleet: &TestFleet, sql: &str) -> HashMap<u32, f64> {
    let answer = fleet.sql(&Scope::Fleet, sql).await;
    answer
        .i64s(0)
        .into_iter()
        .zip(answer.f64s(1))
        .map(|(device, value)| (device.unwrap() as u32, value.unwrap()))
        .collect()
}

/// The newest row's `column` of each device of `table` in `system`.
async fn newest(fleet: &TestFleet, table: &str, column: &str, system: u32) -> HashMap<u32, f64> {
    by_device(
        fleet,
        &format!(
            "SELECT CAST(t.device_id AS BIGINT), CAST(t.{column} AS DOUBLE) FROM {table} t
             JOIN (SELECT device_id, max(time) AS newest FROM {table}
                   WHERE system_id = {system} GROUP BY device_id) n
               ON t.device_id = n.device_id AND t.time = n.newest
             WHERE t.system_id = {system}"
        ),
    )
    .await
}

async fn agree_with_raw_tables(layout: Layout) {
    let fleet = test_fleet(layout).await;
    let end_of_data = first_day().add_days(3).start_micros();
    let (mut meters, mut batteries) = (0, 0);
    for system in 1..=4u32 {
        let zone = {
            let answer = fleet
                .sql(
                    &Scope::Fleet,
                    &format!("SELECT time_zone FROM systems WHERE id = {system}"),
                )
                .await;
            jiff::tz::TimeZone::get(answer.strings(0)[0].as_deref().unwrap()).unwrap()
        };
        // Every raw microinverter reading of the system: (device, time, energy, interval,
        // status).
        let raw = fleet
            .sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(device_id AS BIGINT), CAST(time AS BIGINT), CAST(energy_j AS BIGINT),
                            CAST(interval_s AS BIGINT), CAST(status AS BIGINT)
                     FROM readings WHERE system_id = {system}"
                ),
            )
            .await;
        let column = |i: usize| raw.i64s(i).into_iter().map(Option::unwrap);
        let mut micro_rows: HashMap<u32, Vec<(i64, i64, i64, i64)>> = HashMap::new();
        for ((((device, time), energy), interval), status) in column(0)
            .zip(column(1))
            .zip(column(2))
            .zip(column(3))
            .zip(column(4))
        {
            micro_rows
                .entry(device as u32)
                .or_default()
                .push((time, energy, interval, status));
        }
        let mut newest_us = HashMap::new();
        for table in ["readings", "meter_readings", "battery_readings"] {
            newest_us.extend(
                by_device(
                    &fleet,
                    &format!(
                        "SELECT CAST(device_id AS BIGINT), CAST(CAST(max(time) AS BIGINT) AS DOUBLE)
                         FROM {table} WHERE system_id = {system} GROUP BY 1"
                    ),
                )
                .await,
            );
        }
        let delivered = newest(&fleet, "meter_readings", "energy_delivered_wh", system).await;
        let received = newest(&fleet, "meter_readings", "energy_received_wh", system).await;
        let soc = newest(&fleet, "battery_readings", "soc_permille", system).await;
        // Just after the data (the past week holds it) and a month later (every device has
        // been silent for weeks: rollups point to its newest hour).
        for as_of in [
            end_of_data + 3_600_000_000,
            end_of_data + 30 * 86_400_000_000,
        ] {
            let figures: Vec<DeviceFigures> = fleet
                .engine
                .device_figures(&Scope::Fleet, system, as_of)
                .await
                .unwrap();
            let registered = fleet
                .sql(
                    &Scope::Fleet,
                    &format!("SELECT count(*) FROM devices WHERE system_id = {system}"),
                )
                .await;
            assert_eq!(
                figures.len() as i64,
                registered.batches[0]
                    .column(0)
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .unwrap()
                    .value(0)
            );
            for f in &figures {
                let id = f.device_id;
                let context = format!("{layout:?} system {system} device {id} ({})", f.kind);
                assert_eq!(
                    f.last_report_us,
                    newest_us.get(&id).map(|t| *t as i64),
                    "{context}"
                );
                match f.kind.as_str() {
                    "microinverter" => {
                        let rows = &micro_rows[&id];
                        let joules: i64 = rows.iter().map(|r| r.1).sum();
                        let got = f.lifetime_energy_wh.unwrap();
                        assert!(
                            (got - joules as f64 / 3600.0).abs() < 1e-6,
                            "{context}: {got} Wh vs {joules} J"
                        );
                        let newest = rows.iter().max_by_key(|r| r.0).unwrap();
                        assert_eq!(f.latest_status, Some(newest.3 as u16), "{context}");
                        // The average over the site-local day of the newest reading (a
                        // reading stamped at midnight ends the day before).
                        let day = |t: i64| {
                            zone.to_datetime(jiff::Timestamp::from_microsecond(t - 1).unwrap())
                                .date()
                        };
                        let last_day = day(newest.0);
                        let (day_j, day_s) = rows
                            .iter()
                            .filter(|r| day(r.0) == last_day)
                            .fold((0, 0), |(j, s), r| (j + r.1, s + r.2));
                        let expected = day_j as f64 / day_s as f64;
                        let got = f.average_power_w.unwrap();
                        assert!(
                            (got - expected).abs() < 1e-9,
                            "{context}: {got} vs {expected}"
                        );
                        assert!(got > 0.0, "{context}");
                    }
                    "meter" => {
                        meters += 1;
                        assert_eq!(
                            f.lifetime_energy_wh,
                            delivered.get(&id).copied(),
                            "{context}"
                        );
                        assert_eq!(
                            f.lifetime_received_wh,
                            received.get(&id).copied(),
                            "{context}"
                        );
                    }
                    "battery" => {
                        batteries += 1;
                        assert_eq!(
                            f.state_of_charge_pct,
                            soc.get(&id).map(|permille| permille / 10.0),
                            "{context}"
                        );
                    }
                    _ => {
                        assert_eq!(f.kind, "gateway");
                        assert_eq!(f.last_report_us, None);
                    }
                }
            }
        }
    }
    assert!(
        meters > 0 && batteries > 0,
        "the test fleet has meters and batteries"
    );

    // A device's readings: newest first, within the day before the asked time.
    let micro = fleet
        .engine
        .device_figures(&Scope::Fleet, 1, end_of_data)
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.kind == "microinverter")
        .unwrap();
    let last = micro.last_report_us.unwrap();
    let readings = fleet
        .engine
        .device_readings(&Scope::Fleet, 1, micro.device_id, last, 12)
        .await
        .unwrap();
    assert_eq!(readings.columns[1], "ac_power_w");
    assert_eq!(readings.rows.len(), 12);
    assert_eq!(readings.rows[0].0, last);
    assert!(readings.rows.windows(2).all(|w| w[0].0 > w[1].0));

    // Outside the scope, or a device of another system: not found.
    let owner = Scope::of_owner(&fleet.registry, 1).unwrap();
    assert!(matches!(
        fleet.engine.device_figures(&owner, 2, end_of_data).await,
        Err(QueryError::NotFound { .. })
    ));
    assert!(
        fleet
            .engine
            .device_figures(&owner, 1, end_of_data)
            .await
            .is_ok()
    );
    assert!(matches!(
        fleet
            .engine
            .device_readings(&Scope::Fleet, 2, micro.device_id, last, 12)
            .await,
        Err(QueryError::NotFound { .. })
    ));
    assert!(matches!(
        fleet
            .engine
            .device_reported_events(&owner, 2, micro.device_id, 10)
            .await,
        Err(QueryError::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_figures_agree_with_the_raw_tables_with_buffered_rows() {
    agree_with_raw_tables(Layout::Buffered).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_figures_agree_with_the_raw_tables_from_rollups() {
    agree_with_raw_tables(Layout::Settled).await;
}
