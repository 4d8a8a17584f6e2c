//! The systems list's figures (F4) and the kiosk's (S8): energy today and over the past
//! seven site-local days, lifetime energy and its share of the estimate, the last report,
//! and the environmental benefit of what was produced.

use std::collections::HashMap;

use jiff::civil::Date;

use crate::daily::{expected_kwh, local_date};
use crate::{QueryEngine, QueryError, Scope};

const DAY_US: i64 = 86_400_000_000;

/// One system's line in the systems list.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemFigures {
    pub system_id: u32,
    /// Today, in the site's time zone, so far.
    pub energy_today_wh: f64,
    /// The seven local days ending today.
    pub energy_past_7_days_wh: f64,
    /// The site-local month so far, today included.
    pub energy_month_wh: f64,
    /// Daily energy of those seven days, oldest first.
    pub daily_wh: Vec<(Date, f64)>,
    pub lifetime_energy_wh: f64,
    /// Lifetime energy over what the estimate expected since the operational date or the
    /// first data here, whichever is later (none without an estimate or an operational
    /// date).
    pub lifetime_estimate_pct: Option<f64>,
    /// Newest reading of any device of the system.
    pub last_report_us: Option<i64>,
}

/// CO2 a kWh of solar avoids, and how that is told in everyday terms. The factor depends on
/// the grid the system displaces: state it and let the operator change it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmissionFactors {
    pub co2_kg_per_kwh: f64,
    /// CO2 one tree takes up in a year.
    pub co2_kg_per_tree_year: f64,
    /// CO2 of driving one kilometre in an average car.
    pub co2_kg_per_car_km: f64,
}

impl Default for EmissionFactors {
    fn default() -> Self {
        // Grid average of the EU (about 0.25 kg/kWh in 2024); 22 kg a tree; 0.12 kg/km.
        Self {
            co2_kg_per_kwh: 0.25,
            co2_kg_per_tree_year: 22.0,
            co2_kg_per_car_km: 0.12,
        }
    }
}

/// The environmental benefit of some energy.
#[derive(Debug, Clone, PartialEq)]
pub struct Benefit {
    pub co2_avoided_kg: f64,
    pub tree_years: f64,
    pub car_km: f64,
}

impl EmissionFactors {
    pub fn benefit(&self, energy_wh: f64) -> Benefit {
        let co2 = energy_wh / 1000.0 * self.co2_kg_per_kwh;
        Benefit {
            co2_avoided_kg: co2,
            tree_years: co2 / self.co2_kg_per_tree_year,
            car_km: co2 / self.co2_kg_per_car_km,
        }
    }
}

impl QueryEngine {
    /// The figures of every system `scope` sees, at `as_of_us`.
    pub async fn system_figures(
        &self,
        scope: &Scope,
        as_of_us: i64,
    ) -> Result<Vec<SystemFigures>, QueryError> {
        self.figures_of(scope, None, as_of_us).await
    }

    /// The figures of one system `scope` sees, at `as_of_us` ("not found" outside it).
    pub async fn one_system_figures(
        &self,
        scope: &Scope,
        system: u32,
        as_of_us: i64,
    ) -> Result<SystemFigures, QueryError> {
        self.visible_system_zone(scope, system).await?;
        self.figures_of(scope, Some(system), as_of_us)
            .await?
            .pop()
            .ok_or(QueryError::NotFound {
                what: format!("system {system}"),
            })
    }

    async fn figures_of(
        &self,
        scope: &Scope,
        only: Option<u32>,
        as_of_us: i64,
    ) -> Result<Vec<SystemFigures>, QueryError> {
        let mut zones = self.system_zones(scope).await?;
        if let Some(system) = only {
            zones.retain(|z| z.id == system);
        }
        let and_system = only.map_or(String::new(), |id| format!(" AND system_id = {id}"));
        // Days read through `daily_energy` (fresh to the last reading): the month so far
        // (it holds the past week), and back to the oldest day whose rollups may be stale
        // (a late backfill).
        let oldest_stale = zones
            .iter()
            .filter_map(|z| {
                self.store()
                    .stale_rollup_days(z.id)
                    .first()
                    .map(|d| d.start_micros())
            })
            .min()
            .unwrap_or(i64::MAX);
        let recent_from = (as_of_us - 32 * DAY_US).min(oldest_stale - DAY_US);
        // Lifetime: rollups before the recent days, then the recent days as `daily` has them.
        let lifetime_sql = format!(
            "SELECT CAST(system_id AS BIGINT), CAST(local_date AS VARCHAR), CAST(energy_j AS DOUBLE)
             FROM rollup_day WHERE device_id = 0 AND time < to_timestamp_micros({as_of_us}){and_system}"
        );
        // The last report: raw data of the past two days, else the end of the newest
        // 15-minute rollup (so the page never scans a system's whole history).
        let recent = as_of_us - 2 * DAY_US;
        let last_sql = format!(
            "SELECT CAST(system_id AS BIGINT), CAST(max(time) AS BIGINT) FROM (
               SELECT system_id, time FROM readings
                WHERE time > to_timestamp_micros({recent}) AND time <= to_timestamp_micros({as_of_us}){and_system}
               UNION ALL
               SELECT system_id, time FROM meter_readings
                WHERE time > to_timestamp_micros({recent}) AND time <= to_timestamp_micros({as_of_us}){and_system}
               UNION ALL
               SELECT system_id, time + INTERVAL '15 minutes' FROM rollup_15m
                WHERE device_id = 0 AND time + INTERVAL '15 minutes' <= to_timestamp_micros({as_of_us}){and_system})
             GROUP BY 1"
        );
        let operational_sql = format!(
            "SELECT id, operational_date, annual_degradation_pct FROM systems{}",
            only.map_or(String::new(), |id| format!(" WHERE id = {id}"))
        );
        // Independent reads, side by side.
        let (daily, lifetime, last, estimates, operational) = tokio::try_join!(
            self.daily_energy(&zones, recent_from, as_of_us),
            self.internal_sql(scope, &lifetime_sql),
            self.internal_sql(scope, &last_sql),
            self.monthly_estimates(),
            self.internal_sql(scope, &operational_sql),
        )?;
        let mut rolled: HashMap<u32, Vec<(Date, f64)>> = HashMap::new();
        for ((id, date), joules) in lifetime
            .i64s(0)
            .into_iter()
            .zip(lifetime.strings(1))
            .zip(lifetime.f64s(2))
        {
            if let (Some(Ok(id)), Some(Ok(date)), Some(joules)) = (
                id.map(u32::try_from),
                date.as_deref().map(str::parse::<Date>),
                joules,
            ) {
                rolled.entry(id).or_default().push((date, joules / 3600.0));
            }
        }
        let last_report: HashMap<u32, i64> = last
            .i64s(0)
            .into_iter()
            .zip(last.i64s(1))
            .filter_map(|(id, time)| Some((u32::try_from(id?).ok()?, time?)))
            .collect();
        let operation: HashMap<u32, (Date, f64)> = operational
            .i64s(0)
            .into_iter()
            .zip(operational.strings(1))
            .zip(operational.f64s(2))
            .filter_map(|((id, date), degradation)| {
                Some((
                    u32::try_from(id?).ok()?,
                    (date?.parse().ok()?, degradation.unwrap_or(0.5)),
                ))
            })
            .collect();
        let mut figures = Vec::with_capacity(zones.len());
        for system in &zones {
            let today = local_date(&system.zone, as_of_us)?;
            let week_start = today.checked_sub(jiff::Span::new().days(6)).map_err(|e| {
                QueryError::BadRequest {
                    message: e.to_string(),
                }
            })?;
            let recent_start = local_date(&system.zone, recent_from)?;
            let days = daily.get(&system.id);
            let day_wh = |date: Date| days.and_then(|d| d.get(&date)).copied().unwrap_or(0.0);
            let mut daily_wh = Vec::with_capacity(7);
            let mut date = week_start;
            while date <= today {
                daily_wh.push((date, day_wh(date)));
                let Ok(next) = date.tomorrow() else { break };
                date = next;
            }
            let older: f64 = rolled
                .get(&system.id)
                .map(|rows| {
                    rows.iter()
                        .filter(|(d, _)| *d < recent_start)
                        .map(|(_, wh)| wh)
                        .sum()
                })
                .unwrap_or(0.0);
            let recent: f64 = days
                .map(|d| d.range(recent_start..).map(|(_, wh)| wh).sum())
                .unwrap_or(0.0);
            let lifetime_energy_wh = older + recent;
            // Days before the system's first data here are unknown (it was monitored
            // elsewhere, or history was not imported), not zero: the estimate counts from
            // the later of its operational date and its first data.
            let first_data = rolled
                .get(&system.id)
                .and_then(|rows| rows.iter().map(|(d, _)| *d).min())
                .into_iter()
                .chain(days.and_then(|d| d.keys().next().copied()))
                .min();
            let lifetime_estimate_pct = match (operation.get(&system.id), estimates.get(&system.id))
            {
                (Some((operational, degradation)), Some(monthly)) if *operational <= today => {
                    let from = first_data.map_or(*operational, |d| d.max(*operational));
                    let expected =
                        expected_kwh(monthly, *degradation, *operational, from, today) * 1000.0;
                    (expected > 0.0).then(|| lifetime_energy_wh / expected * 100.0)
                }
                _ => None,
            };
            figures.push(SystemFigures {
                system_id: system.id,
                energy_today_wh: day_wh(today),
                energy_past_7_days_wh: daily_wh.iter().map(|(_, wh)| wh).sum(),
                energy_month_wh: days
                    .map(|d| d.range(today.first_of_month()..).map(|(_, wh)| wh).sum())
                    .unwrap_or(0.0),
                daily_wh,
                lifetime_energy_wh,
                lifetime_estimate_pct,
                last_report_us: last_report.get(&system.id).copied(),
            });
        }
        Ok(figures)
    }
}
