//! Production series for graphs: a system's (or one microinverter's) energy and average
//! power over a range, at 5 minutes, 15 minutes, an hour, a site-local day or month.
//!
//! Rollups answer what they cover; the UTC days whose rollups may be stale (rows still in
//! the write buffer, or persisted but not rolled up yet) are aggregated from raw readings,
//! so a graph includes a reading the moment it is acknowledged. A reading is stamped with
//! its interval's end, so it counts in the bucket that contains `time - 1 µs`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use sunfleet_engine::tables::Table;
use sunfleet_engine::time::{CivilDate, MICROS_PER_DAY};

use crate::daily::local_date;
use crate::{QueryEngine, QueryError, Scope};

const MINUTE_US: i64 = 60_000_000;

/// Most fixed-width buckets one series may have (a year of 5-minute buckets is 105,120).
const MAX_BUCKETS: i64 = 1_000_000;

/// The width of a series' buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    FiveMinutes,
    FifteenMinutes,
    Hour,
    /// A site-local day.
    Day,
    /// A site-local month.
    Month,
}

impl Granularity {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "5m" => Some(Granularity::FiveMinutes),
            "15m" => Some(Granularity::FifteenMinutes),
            "hour" => Some(Granularity::Hour),
            "day" => Some(Granularity::Day),
            "month" => Some(Granularity::Month),
            _ => None,
        }
    }

    fn fixed_width_us(self) -> Option<i64> {
        match self {
            Granularity::FiveMinutes => Some(5 * MINUTE_US),
            Granularity::FifteenMinutes => Some(15 * MINUTE_US),
            Granularity::Hour => Some(60 * MINUTE_US),
            Granularity::Day | Granularity::Month => None,
        }
    }
}

/// What a graph asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRequest {
    pub system_id: u32,
    /// One microinverter (its device id), with the units it replaced (its lineage: the
    /// series continues across a replacement); `None`: the whole system.
    pub device_id: Option<u32>,
    /// Inclusive start and exclusive end, UTC microseconds; rounded out to whole buckets.
    pub start_us: i64,
    pub end_us: i64,
    pub granularity: Granularity,
    /// At most this many points: consecutive buckets are merged to fit a screen.
    pub max_points: usize,
}

/// One bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoint {
    pub start_us: i64,
    pub end_us: i64,
    /// The bucket's start in the site's time zone, `YYYY-MM-DDTHH:MM`.
    pub local_start: String,
    pub energy_wh: f64,
    /// Energy over the bucket's length.
    pub power_avg_w: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub system_id: u32,
    pub device_id: Option<u32>,
    pub time_zone: String,
    pub granularity: Granularity,
    /// Buckets merged into each point to respect `max_points` (1: none).
    pub buckets_per_point: usize,
    pub points: Vec<SeriesPoint>,
}

/// Raw energy per bucket start, in joules.
type Buckets = BTreeMap<i64, u64>;

impl QueryEngine {
    /// The production series of a system or one of its microinverters, as `scope` may see
    /// it: a system outside the scope is "not found", like one that does not exist.
    pub async fn production_series(
        &self,
        scope: &Scope,
        request: &SeriesRequest,
    ) -> Result<Series, QueryError> {
        let system = request.system_id;
        if request.start_us >= request.end_us || request.max_points == 0 {
            return Err(QueryError::BadRequest {
                message: "the range must end after it starts and allow at least one point".into(),
            });
        }
        let (zone_name, zone) = self.visible_system_zone(scope, system).await?;
        // Rollups hold each device's rows and the system's under device 0.
        let devices = match request.device_id {
            Some(device) => self.lineage(system, device).await?,
            None => vec![0],
        };
        let raw_devices = request.device_id.map(|_| devices.as_slice());
        let stale = self.store().stale_rollup_days(system);
        let mut buckets: Vec<(i64, i64, u64)> = match request.granularity.fixed_width_us() {
            Some(width) => {
                let start = request.start_us.div_euclid(width) * width;
                let end = request.end_us.saturating_add(width - 1).div_euclid(width) * width;
                if (end - start) / width > MAX_BUCKETS {
                    return Err(QueryError::BadRequest {
                        message: format!(
                            "more than {MAX_BUCKETS} buckets: choose a coarser granularity or a shorter range"
                        ),
                    });
                }
                let mut energy = self
                    .raw_buckets(
                        system,
                        raw_devices,
                        start,
                        end,
                        width,
                        &stale,
                        request.granularity == Granularity::FiveMinutes,
                    )
                    .await?;
                if request.granularity != Granularity::FiveMinutes {
                    let table = if width == 15 * MINUTE_US {
                        Table::Rollup15m
                    } else {
                        Table::RollupHour
                    };
                    let rolled = self
                        .rollup_rows(table, system, &devices, start, end)
                        .await?;
                    for (time, joules) in rolled {
                        if !stale.contains(&CivilDate::of_timestamp(time)) {
                            energy.insert(time, joules);
                        }
                    }
                }
                // Every bucket of the range, so nights and gaps are zeros on the graph and a
                // merged point spans exactly its buckets.
                (start..end)
                    .step_by(width.unsigned_abs() as usize)
                    .map(|t| (t, t + width, energy.get(&t).copied().unwrap_or(0)))
                    .collect()
            }
            None => {
                let days = self
                    .local_days(&zone, system, &devices, raw_devices, request, &stale)
                    .await?;
                match request.granularity {
                    Granularity::Month => months(&zone, days)?,
                    _ => days,
                }
            }
        };
        buckets.sort_by_key(|(start, _, _)| *start);
        let per_point = buckets.len().div_ceil(request.max_points).max(1);
        let points = buckets
            .chunks(per_point)
            .map(|chunk| {
                let start_us = chunk[0].0;
                let end_us = chunk[chunk.len() - 1].1;
                let joules: u64 = chunk.iter().map(|(_, _, e)| e).sum();
                SeriesPoint {
                    start_us,
                    end_us,
                    local_start: local_label(&zone, start_us),
                    energy_wh: joules as f64 / 3600.0,
                    power_avg_w: joules as f64 / ((end_us - start_us) as f64 / 1e6),
                }
            })
            .collect();
        Ok(Series {
            system_id: system,
            device_id: request.device_id,
            time_zone: zone_name,
            granularity: request.granularity,
            buckets_per_point: per_point,
            points,
        })
    }

    /// The time zone of a system `scope` may see (its name and the zone); a system outside
    /// the scope is "not found", like one that does not exist.
    pub(crate) async fn visible_system_zone(
        &self,
        scope: &Scope,
        system: u32,
    ) -> Result<(String, TimeZone), QueryError> {
        let answer = self
            .internal_sql(
                scope,
                &format!("SELECT time_zone FROM systems WHERE id = {system}"),
            )
            .await?;
        let name = answer
            .strings(0)
            .into_iter()
            .flatten()
            .next()
            .ok_or(QueryError::NotFound {
                what: format!("system {system}"),
            })?;
        let zone = zone_named(&name)?;
        Ok((name, zone))
    }

    /// Raw energy per bucket of `width` over `[start, end)` of `devices` (all: `None`);
    /// only the stale days unless `all_days`.
    #[allow(clippy::too_many_arguments)]
    async fn raw_buckets(
        &self,
        system: u32,
        devices: Option<&[u32]>,
        start: i64,
        end: i64,
        width: i64,
        stale: &BTreeSet<CivilDate>,
        all_days: bool,
    ) -> Result<Buckets, QueryError> {
        let mut ranges: Vec<(i64, i64)> = Vec::new();
        if all_days {
            ranges.push((start, end));
        } else {
            for day in stale {
                let (s, e) = (
                    day.start_micros().max(start),
                    (day.start_micros() + MICROS_PER_DAY).min(end),
                );
                if s < e {
                    ranges.push((s, e));
                }
            }
        }
        let mut buckets = Buckets::new();
        for (s, e) in ranges {
            let device_filter = devices
                .map(|d| format!(" AND device_id IN ({})", id_list(d)))
                .unwrap_or_default();
            let answer = self
                .internal_sql(
                    &Scope::Fleet,
                    &format!(
                        "SELECT CAST(time AS BIGINT), CAST(sum(energy_j) AS BIGINT) FROM readings
                         WHERE system_id = {system}{device_filter}
                           AND time > to_timestamp_micros({s}) AND time <= to_timestamp_micros({e})
                         GROUP BY time"
                    ),
                )
                .await?;
            for (time, joules) in answer.i64s(0).into_iter().zip(answer.i64s(1)) {
                if let (Some(time), Some(joules)) = (time, joules) {
                    let bucket = (time - 1).div_euclid(width) * width;
                    *buckets.entry(bucket).or_default() += joules.unsigned_abs();
                }
            }
        }
        Ok(buckets)
    }

    /// Rollup energy per bucket of `devices` added up.
    async fn rollup_rows(
        &self,
        table: Table,
        system: u32,
        devices: &[u32],
        start: i64,
        end: i64,
    ) -> Result<Vec<(i64, u64)>, QueryError> {
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(time AS BIGINT), CAST(sum(energy_j) AS BIGINT) FROM {table}
                     WHERE system_id = {system} AND device_id IN ({})
                       AND time >= to_timestamp_micros({start}) AND time < to_timestamp_micros({end})
                     GROUP BY time",
                    id_list(devices)
                ),
            )
            .await?;
        Ok(answer
            .i64s(0)
            .into_iter()
            .zip(answer.i64s(1))
            .filter_map(|(time, joules)| Some((time?, joules?.unsigned_abs())))
            .collect())
    }

    /// Site-local days overlapping the request: from `rollup_day` where fresh, from raw
    /// readings where a UTC day under them is stale. `devices` are the rollups' device ids
    /// (`[0]`: the system), `raw_devices` the readings' (`None`: all).
    async fn local_days(
        &self,
        zone: &TimeZone,
        system: u32,
        devices: &[u32],
        raw_devices: Option<&[u32]>,
        request: &SeriesRequest,
        stale: &BTreeSet<CivilDate>,
    ) -> Result<Vec<(i64, i64, u64)>, QueryError> {
        let first = local_date(zone, request.start_us)?;
        let last = local_date(zone, request.end_us - 1)?;
        let mut days: BTreeMap<Date, (i64, i64, u64)> = BTreeMap::new();
        let mut day = first;
        while day <= last {
            let (start, end) = (
                local_midnight(zone, day)?,
                local_midnight(zone, next_day(day)?)?,
            );
            days.insert(day, (start, end, 0));
            day = next_day(day)?;
        }
        let span_start = days.values().next().map_or(request.start_us, |d| d.0);
        let span_end = days.values().last().map_or(request.end_us, |d| d.1);
        let is_stale = |(start, end): (i64, i64)| {
            stale
                .iter()
                .any(|d| d.start_micros() < end && d.start_micros() + MICROS_PER_DAY > start)
        };
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(local_date AS VARCHAR), CAST(sum(energy_j) AS BIGINT) FROM rollup_day
                     WHERE system_id = {system} AND device_id IN ({})
                       AND time >= to_timestamp_micros({span_start}) AND time < to_timestamp_micros({span_end})
                     GROUP BY local_date",
                    id_list(devices)
                ),
            )
            .await?;
        for (date, joules) in answer.strings(0).into_iter().zip(answer.i64s(1)) {
            let (Some(Ok(date)), Some(joules)) = (date.as_deref().map(str::parse::<Date>), joules)
            else {
                continue;
            };
            if let Some(entry) = days.get_mut(&date)
                && !is_stale((entry.0, entry.1))
            {
                entry.2 = joules.unsigned_abs();
            }
        }
        let stale_days: Vec<Date> = days
            .iter()
            .filter(|(_, (s, e, _))| is_stale((*s, *e)))
            .map(|(d, _)| *d)
            .collect();
        if let (Some(first), Some(last)) = (stale_days.first(), stale_days.last()) {
            let (start, end) = (days[first].0, days[last].1);
            let raw = self
                .raw_buckets(system, raw_devices, start, end, 5 * MINUTE_US, stale, true)
                .await?;
            for day in &stale_days {
                if let Some((s, e, total)) = days.get_mut(day) {
                    *total = raw.range(*s..*e).map(|(_, j)| j).sum();
                }
            }
        }
        Ok(days.into_values().collect())
    }
}

/// Local months from local days. A month's point spans the whole month, though only the
/// requested days' energy is in it.
fn months(zone: &TimeZone, days: Vec<(i64, i64, u64)>) -> Result<Vec<(i64, i64, u64)>, QueryError> {
    let mut months: BTreeMap<Date, u64> = BTreeMap::new();
    for (start, _, joules) in days {
        let first = local_date(zone, start)?.first_of_month();
        *months.entry(first).or_default() += joules;
    }
    months
        .into_iter()
        .map(|(first, joules)| {
            let next = first
                .checked_add(jiff::Span::new().months(1))
                .map_err(time_error)?;
            Ok((
                local_midnight(zone, first)?,
                local_midnight(zone, next)?,
                joules,
            ))
        })
        .collect()
}

fn id_list(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn time_error(error: jiff::Error) -> QueryError {
    QueryError::BadRequest {
        message: format!("date out of range: {error}"),
    }
}

pub(crate) fn zone_named(name: &str) -> Result<TimeZone, QueryError> {
    TimeZone::get(name).map_err(|e| QueryError::BadRequest {
        message: format!("unknown time zone {name:?}: {e}"),
    })
}

pub(crate) fn local_midnight(zone: &TimeZone, date: Date) -> Result<i64, QueryError> {
    Ok(zone
        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .map_err(time_error)?
        .as_microsecond())
}

pub(crate) fn next_day(date: Date) -> Result<Date, QueryError> {
    date.tomorrow().map_err(time_error)
}

pub(crate) fn local_label(zone: &TimeZone, micros: i64) -> String {
    Timestamp::from_microsecond(micros)
        .map(|t| zone.to_datetime(t).strftime("%Y-%m-%dT%H:%M").to_string())
        .unwrap_or_default()
}

/// The bucket of `granularity` that holds a reading stamped `time_us` (its interval's end).
pub(crate) fn bucket_of(
    zone: &TimeZone,
    granularity: Granularity,
    time_us: i64,
) -> Result<(i64, i64), QueryError> {
    if let Some(width) = granularity.fixed_width_us() {
        let start = (time_us - 1).div_euclid(width) * width;
        return Ok((start, start + width));
    }
    let date = local_date(zone, time_us - 1)?;
    let (first, next) = match granularity {
        Granularity::Month => {
            let first = date.first_of_month();
            let next = first
                .checked_add(jiff::Span::new().months(1))
                .map_err(time_error)?;
            (first, next)
        }
        _ => (date, next_day(date)?),
    };
    Ok((local_midnight(zone, first)?, local_midnight(zone, next)?))
}

/// RFC 3339 in the site's zone, `YYYY-MM-DDTHH:MM:SS+HH:MM`: the offset tells apart the
/// hour that repeats when clocks go back.
pub(crate) fn local_time_label(zone: &TimeZone, micros: i64) -> String {
    let Ok(timestamp) = Timestamp::from_microsecond(micros) else {
        return String::new();
    };
    let offset = zone.to_offset(timestamp).seconds();
    let sign = if offset < 0 { '-' } else { '+' };
    let offset = offset.unsigned_abs();
    format!(
        "{}{sign}{:02}:{:02}",
        zone.to_datetime(timestamp).strftime("%Y-%m-%dT%H:%M:%S"),
        offset / 3600,
        offset % 3600 / 60
    )
}
