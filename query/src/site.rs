//! A site's energy flows over time (S2 graph, S3 consumption report, S6 side panel):
//! production from the microinverters, and where metered the consumption and the net
//! import, and where a battery is installed its discharge (negative: charge), in the same
//! buckets as the production series.
//!
//! Consumption is per bucket: a net consumption meter measures import minus export, so the
//! load is what was imported plus what was produced in the same bucket; a total consumption
//! meter measures the load itself, and the net import is the load minus production.

use std::collections::BTreeMap;

use crate::series::{Granularity, SeriesRequest, bucket_of, local_label};
use crate::{QueryEngine, QueryError, Scope};

/// One period of a site.
#[derive(Debug, Clone, PartialEq)]
pub struct SitePoint {
    pub start_us: i64,
    pub end_us: i64,
    /// The period's start in the site's time zone, `YYYY-MM-DDTHH:MM`.
    pub local_start: String,
    pub produced_wh: f64,
    /// Where a consumption meter reported in the period.
    pub consumed_wh: Option<f64>,
    /// Imported minus exported, where a consumption meter reported.
    pub net_import_wh: Option<f64>,
    /// Discharged minus charged, where a battery reported.
    pub battery_wh: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SiteSeries {
    pub system_id: u32,
    pub time_zone: String,
    pub granularity: Granularity,
    pub buckets_per_point: usize,
    /// Whether any consumption meter or battery reported in the range.
    pub metered: bool,
    pub has_battery: bool,
    pub points: Vec<SitePoint>,
}

/// Meter and battery energy of one bucket, in joules.
#[derive(Debug, Clone, Copy, Default)]
struct Flows {
    /// Net consumption meter: import minus export.
    net_meter_j: Option<i64>,
    /// Total consumption meter: the load.
    total_meter_j: Option<i64>,
    battery_j: Option<i64>,
}

fn add(slot: &mut Option<i64>, joules: i64) {
    *slot = Some(slot.unwrap_or(0) + joules);
}

fn add_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

impl QueryEngine {
    /// The site series of a system (`request.device_id` is ignored: meters and batteries
    /// are the site's), as `scope` may see it.
    pub async fn site_series(
        &self,
        scope: &Scope,
        request: &SeriesRequest,
    ) -> Result<SiteSeries, QueryError> {
        let production = self
            .production_series(
                scope,
                &SeriesRequest {
                    device_id: None,
                    max_points: usize::MAX,
                    ..request.clone()
                },
            )
            .await?;
        let zone = crate::series::zone_named(&production.time_zone)?;
        let (Some(first), Some(last)) = (production.points.first(), production.points.last())
        else {
            return Ok(SiteSeries {
                system_id: request.system_id,
                time_zone: production.time_zone,
                granularity: request.granularity,
                buckets_per_point: 1,
                metered: false,
                has_battery: false,
                points: Vec::new(),
            });
        };
        let (start, end, system) = (first.start_us, last.end_us, request.system_id);
        // Interval energy (J) per reading time: meters by kind (1 net, 2 total), batteries.
        let flows = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT CAST(time AS BIGINT), CAST(meter_kind AS BIGINT),
                            CAST(sum(CAST(active_power_w AS BIGINT) * interval_s) AS BIGINT)
                     FROM meter_readings
                     WHERE system_id = {system} AND meter_kind IN (1, 2)
                       AND time > to_timestamp_micros({start}) AND time <= to_timestamp_micros({end})
                     GROUP BY 1, 2
                     UNION ALL
                     SELECT CAST(time AS BIGINT), CAST(3 AS BIGINT),
                            CAST(sum(CAST(power_w AS BIGINT) * interval_s) AS BIGINT)
                     FROM battery_readings
                     WHERE system_id = {system}
                       AND time > to_timestamp_micros({start}) AND time <= to_timestamp_micros({end})
                     GROUP BY 1"
                ),
            )
            .await?;
        let mut buckets: BTreeMap<i64, Flows> = BTreeMap::new();
        for ((time, kind), joules) in flows
            .i64s(0)
            .into_iter()
            .zip(flows.i64s(1))
            .zip(flows.i64s(2))
        {
            let (Some(time), Some(kind), Some(joules)) = (time, kind, joules) else {
                continue;
            };
            let (bucket, _) = bucket_of(&zone, request.granularity, time)?;
            let entry = buckets.entry(bucket).or_default();
            match kind {
                1 => add(&mut entry.net_meter_j, joules),
                2 => add(&mut entry.total_meter_j, joules),
                _ => add(&mut entry.battery_j, joules),
            }
        }
        let metered = buckets
            .values()
            .any(|f| f.net_meter_j.is_some() || f.total_meter_j.is_some());
        let has_battery = buckets.values().any(|f| f.battery_j.is_some());
        let wh = |joules: i64| joules as f64 / 3600.0;
        let periods: Vec<SitePoint> = production
            .points
            .iter()
            .map(|point| {
                let flows = buckets.get(&point.start_us).copied().unwrap_or_default();
                let produced = point.energy_wh;
                let (consumed, net_import) = match (flows.total_meter_j, flows.net_meter_j) {
                    (Some(total), _) => (Some(wh(total)), Some(wh(total) - produced)),
                    (None, Some(net)) => (Some(wh(net) + produced), Some(wh(net))),
                    (None, None) => (None, None),
                };
                SitePoint {
                    start_us: point.start_us,
                    end_us: point.end_us,
                    local_start: point.local_start.clone(),
                    produced_wh: produced,
                    consumed_wh: consumed,
                    net_import_wh: net_import,
                    battery_wh: flows.battery_j.map(wh),
                }
            })
            .collect();
        let per_point = periods.len().div_ceil(request.max_points.max(1)).max(1);
        let points = periods
            .chunks(per_point)
            .map(|chunk| {
                let mut merged = chunk[0].clone();
                for p in &chunk[1..] {
                    merged.end_us = p.end_us;
                    merged.produced_wh += p.produced_wh;
                    merged.consumed_wh = add_opt(merged.consumed_wh, p.consumed_wh);
                    merged.net_import_wh = add_opt(merged.net_import_wh, p.net_import_wh);
                    merged.battery_wh = add_opt(merged.battery_wh, p.battery_wh);
                }
                merged.local_start = local_label(&zone, merged.start_us);
                merged
            })
            .collect();
        Ok(SiteSeries {
            system_id: system,
            time_zone: production.time_zone,
            granularity: request.granularity,
            buckets_per_point: per_point,
            metered,
            has_battery,
            points,
        })
    }
}
