//! Daily production per system in site-local days, for many systems at once: `rollup_day`
//! where it is fresh, raw readings for the local days over a UTC day whose rollups may be
//! stale (rows still buffered, or persisted but not rolled up yet). The systems list, the
//! kiosk and the production threshold all read it; and what an estimate expects.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use roaring::RoaringBitmap;
use sunfleet_engine::registry::Registry;
use sunfleet_engine::time::{CivilDate, MICROS_PER_DAY};

use crate::{QueryEngine, QueryError, Scope};

/// Watt-hours per system and local date.
pub type DailyEnergy = HashMap<u32, BTreeMap<Date, f64>>;

/// A system's place in time: its zone, for local days.
#[derive(Debug, Clone)]
pub struct SystemZone {
    pub id: u32,
    pub zone: TimeZone,
}

impl QueryEngine {
    /// The systems `scope` sees with their time zones (an unknown zone reads as UTC).
    pub async fn system_zones(&self, scope: &Scope) -> Result<Vec<SystemZone>, QueryError> {
        let answer = self
            .internal_sql(scope, "SELECT id, time_zone FROM systems ORDER BY id")
            .await?;
        Ok(answer
            .i64s(0)
            .into_iter()
            .zip(answer.strings(1))
            .filter_map(|(id, zone)| {
                Some(SystemZone {
                    id: u32::try_from(id?).ok()?,
                    zone: zone
                        .and_then(|z| TimeZone::get(&z).ok())
                        .unwrap_or(TimeZone::UTC),
                })
            })
            .collect())
    }

    /// Each system's twelve monthly estimates (kWh): its own, or the sum of its arrays'.
    pub(crate) async fn monthly_estimates(&self) -> Result<HashMap<u32, [f64; 12]>, QueryError> {
        let monthly = self.registry_read(Registry::monthly_estimates).await?;
        Ok(monthly
            .into_iter()
            .filter_map(|(id, months)| Some((u32::try_from(id).ok()?, months)))
            .collect())
    }

    /// Each visible system's production (Wh) per site-local month (`YYYY-MM`), for the
    /// `months` months that end with the current one, oldest first; months without data
    /// are left out.
    pub async fn monthly_production(
        &self,
        scope: &Scope,
        months: u32,
        now_us: i64,
    ) -> Result<Vec<(u32, String, f64)>, QueryError> {
        let systems = self.system_zones(scope).await?;
        let (year, month, _) = CivilDate::of_timestamp(now_us).ymd();
        let first_index = year * 12 + month as i32 - 1 - months.saturating_sub(1) as i32;
        let first_month = format!(
            "{:04}-{:02}",
            first_index.div_euclid(12),
            first_index.rem_euclid(12) + 1
        );
        let first_day = CivilDate::from_ymd(
            first_index.div_euclid(12),
            first_index.rem_euclid(12) as u32 + 1,
            1,
        )
        .unwrap_or(CivilDate::of_timestamp(now_us));
        // A day either side: local dates run up to 14 hours from UTC ones.
        let daily = self
            .daily_energy(
                &systems,
                first_day.start_micros() - MICROS_PER_DAY,
                now_us + MICROS_PER_DAY,
            )
            .await?;
        let mut monthly: BTreeMap<(u32, String), f64> = BTreeMap::new();
        for (system, days) in daily {
            for (date, wh) in days {
                let key = format!("{:04}-{:02}", date.year(), date.month());
                if key >= first_month {
                    *monthly.entry((system, key)).or_default() += wh;
                }
            }
        }
        Ok(monthly
            .into_iter()
            .map(|((system, month), wh)| (system, month, wh))
            .collect())
    }

    /// Production of `systems` per local date, for the dates from the one holding
    /// `from_us` to the one holding `until_us - 1`.
    pub(crate) async fn daily_energy(
        &self,
        systems: &[SystemZone],
        from_us: i64,
        until_us: i64,
    ) -> Result<DailyEnergy, QueryError> {
        let ids: RoaringBitmap = systems.iter().map(|s| s.id).collect();
        let mut daily = DailyEnergy::new();
        if ids.is_empty() || from_us >= until_us {
            return Ok(daily);
        }
        let in_list = ids
            .iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        // Local days reach up to 14 hours either side of the UTC ones.
        let (span_from, span_until) = (from_us - MICROS_PER_DAY, until_us + MICROS_PER_DAY);
        let rolled = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(system_id AS BIGINT), CAST(local_date AS VARCHAR), CAST(energy_j AS DOUBLE)
                     FROM rollup_day
                     WHERE device_id = 0 AND system_id IN ({in_list})
                       AND time >= to_timestamp_micros({span_from}) AND time < to_timestamp_micros({span_until})"
                ),
            )
            .await?;
        for ((id, date), joules) in rolled
            .i64s(0)
            .into_iter()
            .zip(rolled.strings(1))
            .zip(rolled.f64s(2))
        {
            if let (Some(Ok(id)), Some(Ok(date)), Some(joules)) = (
                id.map(u32::try_from),
                date.as_deref().map(str::parse::<Date>),
                joules,
            ) {
                daily.entry(id).or_default().insert(date, joules / 3600.0);
            }
        }
        let (first_day, last_day) = (
            CivilDate::of_timestamp(span_from),
            CivilDate::of_timestamp(span_until - 1),
        );
        let stale: HashMap<u32, BTreeSet<CivilDate>> = systems
            .iter()
            .map(|s| {
                let days = self.store().stale_rollup_days(s.id);
                (
                    s.id,
                    days.range(first_day..=last_day)
                        .copied()
                        .collect::<BTreeSet<_>>(),
                )
            })
            .filter(|(_, days)| !days.is_empty())
            .collect();
        if let (Some(first), Some(last)) = (
            stale.values().flat_map(|d| d.iter()).min(),
            stale.values().flat_map(|d| d.iter()).max(),
        ) {
            // Raw readings over the stale UTC days and the local days around them.
            let raw_from = first.start_micros() - MICROS_PER_DAY;
            let raw_until = last.start_micros() + 2 * MICROS_PER_DAY;
            let raw = self
                .internal_sql(
                    &Scope::Fleet,
                    &format!(
                        "SELECT CAST(system_id AS BIGINT), CAST(time AS BIGINT), CAST(sum(energy_j) AS DOUBLE)
                         FROM readings
                         WHERE system_id IN ({in_list})
                           AND time > to_timestamp_micros({raw_from}) AND time <= to_timestamp_micros({raw_until})
                         GROUP BY 1, 2"
                    ),
                )
                .await?;
            let zones: HashMap<u32, &TimeZone> = systems.iter().map(|s| (s.id, &s.zone)).collect();
            let mut from_raw: HashMap<u32, BTreeMap<Date, f64>> = HashMap::new();
            for ((id, time), joules) in raw.i64s(0).into_iter().zip(raw.i64s(1)).zip(raw.f64s(2)) {
                let (Some(Ok(id)), Some(time), Some(joules)) =
                    (id.map(u32::try_from), time, joules)
                else {
                    continue;
                };
                let Some(zone) = zones.get(&id) else { continue };
                let date = local_date(zone, time - 1)?;
                *from_raw.entry(id).or_default().entry(date).or_default() += joules / 3600.0;
            }
            for system in systems {
                let Some(days) = stale.get(&system.id) else {
                    continue;
                };
                let raw_days = from_raw.remove(&system.id).unwrap_or_default();
                let entry = daily.entry(system.id).or_default();
                // Every local date that overlaps a stale UTC day is replaced by its raw sum.
                let mut touched = BTreeSet::new();
                for day in days {
                    touched.insert(local_date(&system.zone, day.start_micros())?);
                    touched.insert(local_date(
                        &system.zone,
                        day.start_micros() + MICROS_PER_DAY - 1,
                    )?);
                }
                for date in touched {
                    match raw_days.get(&date) {
                        Some(wh) => entry.insert(date, *wh),
                        None => entry.remove(&date),
                    };
                }
            }
        }
        let (first, last) = (from_us, until_us - 1);
        for system in systems {
            if let Some(days) = daily.get_mut(&system.id) {
                let (first, last) = (
                    local_date(&system.zone, first)?,
                    local_date(&system.zone, last)?,
                );
                days.retain(|date, _| (first..=last).contains(date));
            }
        }
        Ok(daily)
    }
}

/// What an estimate expects over the local dates `[first, last]`: monthly kWh spread evenly
/// over each month's days, reduced by `degradation_pct` a year since `operational`.
pub fn expected_kwh(
    monthly_kwh: &[f64; 12],
    degradation_pct: f64,
    operational: Date,
    first: Date,
    last: Date,
) -> f64 {
    let mut expected = 0.0;
    let mut day = first;
    while day <= last {
        let years = (day - operational).get_days().max(0) as f64 / 365.25;
        let degraded = (1.0 - degradation_pct / 100.0).powf(years);
        expected += monthly_kwh[usize::from(day.month().unsigned_abs()) - 1]
            / f64::from(day.days_in_month())
            * degraded;
        let Ok(next) = day.tomorrow() else { break };
        day = next;
    }
    expected
}

pub(crate) fn local_date(zone: &TimeZone, micros: i64) -> Result<Date, QueryError> {
    let timestamp =
        jiff::Timestamp::from_microsecond(micros).map_err(|e| QueryError::BadRequest {
            message: format!("time out of range: {e}"),
        })?;
    Ok(zone.to_datetime(timestamp).date())
}
