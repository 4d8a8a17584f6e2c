//! One system's devices as the Devices tab and a device's page show them (S4): each
//! device's newest report, lifetime energy, a microinverter's average power, a battery's
//! state of charge; a device's recent readings and the events it reported.
//!
//! A microinverter's lifetime energy is its hourly rollups where they are fresh plus its raw
//! readings on the UTC days whose rollups may be stale ([`Store::stale_rollup_days`]), so it
//! includes a reading the moment it is acknowledged. Newest reports come from raw rows: the
//! past week (and the stale days), and for a device silent longer, the hour its newest
//! rollup names.
//!
//! [`Store::stale_rollup_days`]: sunfleet_engine::store::Store::stale_rollup_days

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sunfleet_engine::time::{CivilDate, MICROS_PER_DAY};

use crate::daily::local_date;
use crate::series::{local_midnight, next_day};
use crate::{QueryEngine, QueryError, Scope};

const HOUR_US: i64 = 3_600_000_000;
/// Raw rows this far back answer "newest report" without looking at rollups.
const RECENT_US: i64 = 7 * MICROS_PER_DAY;

/// What the Devices tab shows of one device beside its registry facts. Figures a kind does
/// not have are `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceFigures {
    pub device_id: u32,
    /// `microinverter`, `meter`, `battery` or `gateway`.
    pub kind: String,
    /// Time of the newest reading (its interval's end).
    pub last_report_us: Option<i64>,
    /// Microinverters: every reading's energy added up, the readings of the units it
    /// replaced included (its lineage); meters: their own lifetime counter of energy
    /// delivered at the newest reading.
    pub lifetime_energy_wh: Option<f64>,
    /// Meters: the lifetime counter of energy received (export through a net meter).
    pub lifetime_received_wh: Option<f64>,
    /// Microinverters: AC energy over the length of the intervals they reported on the
    /// site-local day of their newest reading (they sleep at night, so nights do not
    /// count): the average real power while producing that day.
    pub average_power_w: Option<f64>,
    /// The newest reading's power: AC power of a microinverter, active power of a meter,
    /// a battery's (positive discharging).
    pub latest_power_w: Option<f64>,
    /// Microinverters: the newest reading's status flags (`micro_status`).
    pub latest_status: Option<u16>,
    /// Batteries: state of charge at the newest reading, in percent.
    pub state_of_charge_pct: Option<f64>,
}

/// A device's newest readings, newest first: each row's time and values in the order of
/// `columns` (SQL names carrying their unit, e.g. `ac_power_w`).
#[derive(Debug, Clone, PartialEq)]
pub struct RecentReadings {
    pub columns: Vec<&'static str>,
    pub rows: Vec<(i64, Vec<Option<f64>>)>,
}

/// One event a device reported (`device_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedEvent {
    pub time_us: i64,
    pub event_number: u16,
    /// Raised (`true`) or cleared.
    pub raised: bool,
}

/// The columns a device page lists per kind, and the table they come from.
fn reading_columns(kind: &str) -> Option<(&'static str, &'static [&'static str])> {
    match kind {
        "microinverter" => Some((
            "readings",
            &[
                "energy_j",
                "ac_power_w",
                "dc_voltage_mv",
                "dc_current_ma",
                "ac_voltage_mv",
                "ac_frequency_mhz",
                "temperature_c",
                "status",
            ],
        )),
        "meter" => Some((
            "meter_readings",
            &[
                "active_power_w",
                "reactive_power_var",
                "energy_delivered_wh",
                "energy_received_wh",
                "voltage_mv",
                "current_ma",
                "frequency_mhz",
                "power_factor_milli",
            ],
        )),
        "battery" => Some((
            "battery_readings",
            &["power_w", "soc_permille", "temperature_c"],
        )),
        _ => None,
    }
}

impl QueryEngine {
    /// The figures of every registered device of `system` (retired ones too), as `scope`
    /// may see it ("not found" outside it), by device id.
    pub async fn device_figures(
        &self,
        scope: &Scope,
        system: u32,
        as_of_us: i64,
    ) -> Result<Vec<DeviceFigures>, QueryError> {
        let (_, zone) = self.visible_system_zone(scope, system).await?;
        let registered = self
            .internal_sql(
                scope,
                &format!(
                    "SELECT CAST(id AS BIGINT) AS device_id, kind FROM devices WHERE system_id = {system} ORDER BY device_id"
                ),
            )
            .await?;
        let mut figures: BTreeMap<u32, DeviceFigures> = registered
            .i64s(0)
            .into_iter()
            .zip(registered.strings(1))
            .filter_map(|(id, kind)| {
                let id = u32::try_from(id?).ok()?;
                Some((
                    id,
                    DeviceFigures {
                        device_id: id,
                        kind: kind?,
                        ..DeviceFigures::default()
                    },
                ))
            })
            .collect();
        let of_kind = |figures: &BTreeMap<u32, DeviceFigures>, kind: &str| -> Vec<u32> {
            figures
                .values()
                .filter(|f| f.kind == kind)
                .map(|f| f.device_id)
                .collect()
        };
        let stale = stale_ranges(&self.store().stale_rollup_days(system));
        let recent = recent_condition(as_of_us - RECENT_US, &stale);

        // Microinverters.
        let micros = of_kind(&figures, "microinverter");
        if !micros.is_empty() {
            let columns = ["status", "ac_power_w"];
            // Independent reads, side by side.
            let (own, predecessors, mut latest) = tokio::try_join!(
                self.micro_lifetime_j(system, &stale),
                self.predecessors(system),
                self.latest_rows("readings", system, &columns, &recent),
            )?;
            for device in &micros {
                let lineage = predecessors.get(device).map(Vec::as_slice).unwrap_or(&[]);
                let sums: Vec<u64> = std::iter::once(device)
                    .chain(lineage)
                    .filter_map(|d| own.get(d).copied())
                    .collect();
                if let (false, Some(f)) = (sums.is_empty(), figures.get_mut(device)) {
                    f.lifetime_energy_wh = Some(sums.iter().sum::<u64>() as f64 / 3600.0);
                }
            }
            let silent: Vec<u32> = micros
                .iter()
                .copied()
                .filter(|d| !latest.contains_key(d))
                .collect();
            if !silent.is_empty() {
                latest.extend(
                    self.latest_micro_rows_from_rollups(system, &silent, &columns)
                        .await?,
                );
            }
            for (device, (time, values)) in &latest {
                if let Some(f) = figures.get_mut(device) {
                    f.last_report_us = Some(*time);
                    f.latest_status = values[0].map(|s| s as u16);
                    f.latest_power_w = values[1];
                }
            }
            for (device, watts) in self.average_power_w(system, &zone, &latest).await? {
                if let Some(f) = figures.get_mut(&device) {
                    f.average_power_w = Some(watts);
                }
            }
        }

        // Meters and batteries report around the clock and have no rollups: their newest
        // row, from the past week or else from all they ever sent.
        for (kind, table, columns) in [
            (
                "meter",
                "meter_readings",
                &[
                    "energy_delivered_wh",
                    "energy_received_wh",
                    "active_power_w",
                ][..],
            ),
            (
                "battery",
                "battery_readings",
                &["soc_permille", "power_w"][..],
            ),
        ] {
            let devices = of_kind(&figures, kind);
            if devices.is_empty() {
                continue;
            }
            let mut latest = self.latest_rows(table, system, columns, &recent).await?;
            let silent: Vec<u32> = devices
                .iter()
                .copied()
                .filter(|d| !latest.contains_key(d))
                .collect();
            if !silent.is_empty() {
                let all_time = format!("device_id IN ({})", id_list(&silent));
                latest.extend(self.latest_rows(table, system, columns, &all_time).await?);
            }
            for (device, (time, values)) in latest {
                let Some(f) = figures.get_mut(&device) else {
                    continue;
                };
                f.last_report_us = Some(time);
                if kind == "meter" {
                    f.lifetime_energy_wh = values[0];
                    f.lifetime_received_wh = values[1];
                    f.latest_power_w = values[2];
                } else {
                    f.state_of_charge_pct = values[0].map(|permille| permille / 10.0);
                    f.latest_power_w = values[1];
                }
            }
        }
        Ok(figures.into_values().collect())
    }

    /// Up to `limit` of a device's readings ending at or before `until_us`, within the day
    /// before it, newest first. "Not found" when the device is not one of `system`'s or
    /// the system is outside `scope`.
    pub async fn device_readings(
        &self,
        scope: &Scope,
        system: u32,
        device: u32,
        until_us: i64,
        limit: usize,
    ) -> Result<RecentReadings, QueryError> {
        let kind = self.visible_device_kind(scope, system, device).await?;
        let Some((table, columns)) = reading_columns(&kind) else {
            return Ok(RecentReadings {
                columns: Vec::new(),
                rows: Vec::new(),
            });
        };
        let values = columns
            .iter()
            .map(|c| format!("CAST({c} AS DOUBLE)"))
            .collect::<Vec<_>>()
            .join(", ");
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(time AS BIGINT) AS time_us, {values} FROM {table}
                     WHERE system_id = {system} AND device_id = {device}
                       AND time > to_timestamp_micros({since}) AND time <= to_timestamp_micros({until_us})
                     ORDER BY time_us DESC LIMIT {limit}",
                    since = until_us - MICROS_PER_DAY,
                ),
            )
            .await?;
        let times = answer.i64s(0);
        let value_columns: Vec<Vec<Option<f64>>> =
            (1..=columns.len()).map(|i| answer.f64s(i)).collect();
        let rows = times
            .into_iter()
            .enumerate()
            .filter_map(|(row, time)| {
                Some((
                    time?,
                    value_columns
                        .iter()
                        .map(|c| c.get(row).copied().flatten())
                        .collect(),
                ))
            })
            .collect();
        Ok(RecentReadings {
            columns: columns.to_vec(),
            rows,
        })
    }

    /// The newest `limit` events a device reported, newest first ("not found" as for
    /// [`QueryEngine::device_readings`]).
    pub async fn device_reported_events(
        &self,
        scope: &Scope,
        system: u32,
        device: u32,
        limit: usize,
    ) -> Result<Vec<ReportedEvent>, QueryError> {
        self.visible_device_kind(scope, system, device).await?;
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(time AS BIGINT) AS time_us, CAST(event_number AS BIGINT),
                            CAST(CASE WHEN raised THEN 1 ELSE 0 END AS BIGINT)
                     FROM device_events WHERE system_id = {system} AND device_id = {device}
                     ORDER BY time_us DESC LIMIT {limit}"
                ),
            )
            .await?;
        Ok(answer
            .i64s(0)
            .into_iter()
            .zip(answer.i64s(1))
            .zip(answer.i64s(2))
            .filter_map(|((time, number), raised)| {
                Some(ReportedEvent {
                    time_us: time?,
                    event_number: u16::try_from(number?).ok()?,
                    raised: raised? == 1,
                })
            })
            .collect())
    }

    /// The kind of `device` if it is one of `system`'s and the system is in `scope`.
    async fn visible_device_kind(
        &self,
        scope: &Scope,
        system: u32,
        device: u32,
    ) -> Result<String, QueryError> {
        self.visible_system_zone(scope, system).await?;
        let answer = self
            .internal_sql(
                scope,
                &format!("SELECT kind FROM devices WHERE system_id = {system} AND id = {device}"),
            )
            .await?;
        answer
            .strings(0)
            .into_iter()
            .flatten()
            .next()
            .ok_or(QueryError::NotFound {
                what: format!("device {device} of system {system}"),
            })
    }

    /// Joules per microinverter: hourly rollups outside the stale ranges, raw readings in
    /// them.
    async fn micro_lifetime_j(
        &self,
        system: u32,
        stale: &[(i64, i64)],
    ) -> Result<HashMap<u32, u64>, QueryError> {
        let outside_stale: String = stale
            .iter()
            .map(|(start, end)| {
                format!(
                    " AND NOT (time >= to_timestamp_micros({start}) AND time < to_timestamp_micros({end}))"
                )
            })
            .collect();
        let mut sums = HashMap::new();
        let rolled = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(device_id AS BIGINT), CAST(sum(energy_j) AS BIGINT) FROM rollup_hour
                     WHERE system_id = {system} AND device_id <> 0{outside_stale}
                     GROUP BY 1"
                ),
            )
            .await?;
        add_sums(&mut sums, &rolled);
        if !stale.is_empty() {
            let raw = self
                .internal_sql(
                    &Scope::Fleet,
                    &format!(
                        "SELECT CAST(device_id AS BIGINT), CAST(sum(energy_j) AS BIGINT) FROM readings
                         WHERE system_id = {system} AND ({})
                         GROUP BY 1",
                        range_condition(stale)
                    ),
                )
                .await?;
            add_sums(&mut sums, &raw);
        }
        Ok(sums)
    }

    /// Each device's newest row of `table` among those matching `condition`: its time and
    /// `columns` (as numbers).
    async fn latest_rows(
        &self,
        table: &str,
        system: u32,
        columns: &[&str],
        condition: &str,
    ) -> Result<HashMap<u32, (i64, Vec<Option<f64>>)>, QueryError> {
        let values: String = columns
            .iter()
            .map(|c| format!(", CAST(last_value({c} ORDER BY time) AS DOUBLE)"))
            .collect();
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(device_id AS BIGINT), CAST(max(time) AS BIGINT){values} FROM {table}
                     WHERE system_id = {system} AND ({condition})
                     GROUP BY 1"
                ),
            )
            .await?;
        let value_columns: Vec<Vec<Option<f64>>> =
            (0..columns.len()).map(|i| answer.f64s(i + 2)).collect();
        Ok(answer
            .i64s(0)
            .into_iter()
            .zip(answer.i64s(1))
            .enumerate()
            .filter_map(|(row, (device, time))| {
                Some((
                    u32::try_from(device?).ok()?,
                    (
                        time?,
                        value_columns
                            .iter()
                            .map(|c| c.get(row).copied().flatten())
                            .collect(),
                    ),
                ))
            })
            .collect())
    }

    /// The newest rows of microinverters silent for the past week: the hour their newest
    /// rollup bucket names, read raw.
    async fn latest_micro_rows_from_rollups(
        &self,
        system: u32,
        devices: &[u32],
        columns: &[&str],
    ) -> Result<HashMap<u32, (i64, Vec<Option<f64>>)>, QueryError> {
        let hours = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(device_id AS BIGINT), CAST(max(time) AS BIGINT) FROM rollup_hour
                     WHERE system_id = {system} AND device_id IN ({}) AND readings > 0
                     GROUP BY 1",
                    id_list(devices)
                ),
            )
            .await?;
        let newest_hour: Vec<(u32, i64)> = hours
            .i64s(0)
            .into_iter()
            .zip(hours.i64s(1))
            .filter_map(|(device, hour)| Some((u32::try_from(device?).ok()?, hour?)))
            .collect();
        if newest_hour.is_empty() {
            return Ok(HashMap::new());
        }
        // A bucket starting at `h` holds readings stamped in (h, h + 1 h].
        let condition = newest_hour
            .iter()
            .map(|(device, hour)| {
                format!(
                    "(device_id = {device} AND time > to_timestamp_micros({hour})
                      AND time <= to_timestamp_micros({}))",
                    hour + HOUR_US
                )
            })
            .collect::<Vec<_>>()
            .join(" OR ");
        self.latest_rows("readings", system, columns, &condition)
            .await
    }

    /// Per microinverter, the average real power over the intervals it reported on the
    /// site-local day of its newest reading.
    async fn average_power_w(
        &self,
        system: u32,
        zone: &jiff::tz::TimeZone,
        latest: &HashMap<u32, (i64, Vec<Option<f64>>)>,
    ) -> Result<HashMap<u32, f64>, QueryError> {
        // Devices by the local day of their newest reading: usually one day for them all.
        let mut by_day: BTreeMap<jiff::civil::Date, Vec<u32>> = BTreeMap::new();
        for (device, (time, _)) in latest {
            // A reading stamped at midnight ends the previous day's last interval.
            by_day
                .entry(local_date(zone, time - 1)?)
                .or_default()
                .push(*device);
        }
        let mut averages = HashMap::new();
        for (day, devices) in by_day {
            let (start, end) = (
                local_midnight(zone, day)?,
                local_midnight(zone, next_day(day)?)?,
            );
            let answer = self
                .internal_sql(
                    &Scope::Fleet,
                    &format!(
                        "SELECT CAST(device_id AS BIGINT), CAST(sum(energy_j) AS DOUBLE),
                                CAST(sum(interval_s) AS DOUBLE)
                         FROM readings
                         WHERE system_id = {system} AND device_id IN ({})
                           AND time > to_timestamp_micros({start}) AND time <= to_timestamp_micros({end})
                         GROUP BY 1",
                        id_list(&devices)
                    ),
                )
                .await?;
            for ((device, joules), seconds) in answer
                .i64s(0)
                .into_iter()
                .zip(answer.f64s(1))
                .zip(answer.f64s(2))
            {
                if let (Some(Ok(device)), Some(joules), Some(seconds)) =
                    (device.map(u32::try_from), joules, seconds)
                    && seconds > 0.0
                {
                    averages.insert(device, joules / seconds);
                }
            }
        }
        Ok(averages)
    }
}

/// Stale UTC days as ranges `[start, end)` of whole days, consecutive days merged.
fn stale_ranges(days: &BTreeSet<CivilDate>) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = Vec::new();
    for day in days {
        let (start, end) = (day.start_micros(), day.start_micros() + MICROS_PER_DAY);
        match ranges.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

/// Readings of the stale ranges: a day's readings are stamped in (midnight, next midnight].
fn range_condition(ranges: &[(i64, i64)]) -> String {
    ranges
        .iter()
        .map(|(start, end)| {
            format!("(time > to_timestamp_micros({start}) AND time <= to_timestamp_micros({end}))")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Rows since `since_us`, or in a stale range (a late backfill of an older day).
fn recent_condition(since_us: i64, stale: &[(i64, i64)]) -> String {
    let mut condition = format!("time > to_timestamp_micros({since_us})");
    if !stale.is_empty() {
        condition.push_str(" OR ");
        condition.push_str(&range_condition(stale));
    }
    condition
}

fn id_list(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn add_sums(sums: &mut HashMap<u32, u64>, answer: &crate::SqlAnswer) {
    for (device, joules) in answer.i64s(0).into_iter().zip(answer.i64s(1)) {
        if let (Some(Ok(device)), Some(joules)) = (device.map(u32::try_from), joules) {
            *sums.entry(device).or_default() += joules.unsigned_abs();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_stale_days_make_one_range() {
        let day = |d| CivilDate::from_ymd(2026, 6, d).unwrap();
        let days: BTreeSet<CivilDate> = [day(1), day(2), day(4)].into_iter().collect();
        let ranges = stale_ranges(&days);
        assert_eq!(
            ranges,
            [
                (day(1).start_micros(), day(3).start_micros()),
                (day(4).start_micros(), day(5).start_micros())
            ]
        );
        assert!(stale_ranges(&BTreeSet::new()).is_empty());
    }
}
