//! Live status (S6): a site's power flows from each device's freshest reading: production
//! from the microinverters, consumption and import/export from the consumption meter, the
//! battery's charge or discharge and state of charge.

use crate::{QueryEngine, QueryError, Scope};

/// How old a device's newest reading may be and still count as live.
pub const LIVE_WINDOW_US: i64 = 30 * 60_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub system_id: u32,
    /// Time of the newest reading used; `None`: nothing reported in the window.
    pub as_of_us: Option<i64>,
    pub production_w: f64,
    pub microinverters_reporting: u32,
    /// Where a consumption meter reported in the window.
    pub consumption_w: Option<f64>,
    /// Import (positive) or export (negative).
    pub net_import_w: Option<f64>,
    /// Discharge (positive) or charge (negative).
    pub battery_w: Option<f64>,
    pub battery_soc_pct: Option<f64>,
}

impl QueryEngine {
    /// The live status of `system` at `now_us`, as `scope` may see it.
    pub async fn live_status(
        &self,
        scope: &Scope,
        system: u32,
        now_us: i64,
    ) -> Result<LiveStatus, QueryError> {
        self.visible_system_zone(scope, system).await?;
        let since = now_us - LIVE_WINDOW_US;
        let window = format!(
            "system_id = {system} AND time > to_timestamp_micros({since})
             AND time <= to_timestamp_micros({now_us})"
        );
        // Each device's newest reading in the window; kind 0 microinverters, 1–3 meters by
        // meter kind + 1, 4 batteries.
        let answer = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT CAST(0 AS BIGINT) AS kind, CAST(max(time) AS BIGINT),
                            CAST(first_value(ac_power_w ORDER BY time DESC) AS DOUBLE), CAST(NULL AS DOUBLE)
                       FROM readings WHERE {window} GROUP BY device_id
                     UNION ALL
                     SELECT CAST(meter_kind AS BIGINT) + 1, CAST(max(time) AS BIGINT),
                            CAST(first_value(active_power_w ORDER BY time DESC) AS DOUBLE), CAST(NULL AS DOUBLE)
                       FROM meter_readings WHERE {window} GROUP BY device_id, meter_kind
                     UNION ALL
                     SELECT CAST(4 AS BIGINT), CAST(max(time) AS BIGINT),
                            CAST(first_value(power_w ORDER BY time DESC) AS DOUBLE),
                            CAST(first_value(soc_permille ORDER BY time DESC) AS DOUBLE) / 10.0
                       FROM battery_readings WHERE {window} GROUP BY device_id"
                ),
            )
            .await?;
        let mut live = LiveStatus {
            system_id: system,
            as_of_us: None,
            production_w: 0.0,
            microinverters_reporting: 0,
            consumption_w: None,
            net_import_w: None,
            battery_w: None,
            battery_soc_pct: None,
        };
        let (mut net_meter, mut total_meter) = (None::<f64>, None::<f64>);
        let (mut soc_sum, mut batteries) = (0.0, 0u32);
        let add = |slot: &mut Option<f64>, w: f64| *slot = Some(slot.unwrap_or(0.0) + w);
        for (((kind, time), power), soc) in answer
            .i64s(0)
            .into_iter()
            .zip(answer.i64s(1))
            .zip(answer.f64s(2))
            .zip(answer.f64s(3))
        {
            let (Some(kind), Some(time), Some(power)) = (kind, time, power) else {
                continue;
            };
            live.as_of_us = Some(live.as_of_us.map_or(time, |t| t.max(time)));
            match kind {
                0 => {
                    live.production_w += power;
                    live.microinverters_reporting += 1;
                }
                2 => add(&mut net_meter, power),
                3 => add(&mut total_meter, power),
                4 => {
                    add(&mut live.battery_w, power);
                    if let Some(soc) = soc {
                        soc_sum += soc;
                        batteries += 1;
                    }
                }
                // A production meter: the microinverters already tell production.
                _ => {}
            }
        }
        if batteries > 0 {
            live.battery_soc_pct = Some(soc_sum / f64::from(batteries));
        }
        // A net meter measures import minus export; a total meter the load itself.
        match (total_meter, net_meter) {
            (Some(load), _) => {
                live.consumption_w = Some(load);
                live.net_import_w = Some(load - live.production_w);
            }
            (None, Some(net)) => {
                live.consumption_w = Some(net + live.production_w);
                live.net_import_w = Some(net);
            }
            (None, None) => {}
        }
        Ok(live)
    }
}
