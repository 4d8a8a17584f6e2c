//! Fleet checks (E7): which systems have a condition right now, from their data.
//!
//! Every rule compares a system with itself, so night, weather and upload habits do not
//! look like faults:
//! - **gateway not reporting** (`comm`): nothing from the system for `gateway_silence`
//!   (longer than any night plus a low-bandwidth upload delay);
//! - **microinverter / meter / battery not reporting**: the device's latest data lags the
//!   system's latest data of the same kind (for meters and batteries: of anything) by more
//!   than `device_lag`;
//! - **meter issue**: a consumption meter measuring a negative load while nothing is
//!   produced (its clamps are on backwards);
//! - **production issue** (`power`): production over the system's threshold window (30 or
//!   90 site-local days) below its threshold percentage of the estimate (monthly values,
//!   system- or array-level, reduced by the annual degradation since the operational
//!   date); judged only once the window lies after both the operational date and the
//!   system's first data here;
//! - **device events** the gateways report (ACVOOR, ACFOOR, GFI tripped, …): open while the
//!   latest report of that event on a device raised it.
//!
//! [`record`] turns an evaluation into events that open and end, and system statuses.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use sunfleet_engine::registry::{ConditionChanges, FoundCondition, Registry};
use sunfleet_engine::telemetry::EventKind;

use crate::daily::{SystemZone, expected_kwh, local_date};
use crate::engine::SqlAnswer;
use crate::{QueryEngine, QueryError, Scope};

const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// The checks' thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSettings {
    pub gateway_silence_us: i64,
    pub device_lag_us: i64,
    /// How far back "latest data" is looked for (raw readings of the whole fleet are
    /// scanned over it every round); a device silent for longer counts as silent since
    /// then. Longer than `gateway_silence_us`.
    pub lookback_us: i64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            gateway_silence_us: 26 * HOUR_US,
            device_lag_us: 2 * HOUR_US,
            lookback_us: 3 * DAY_US,
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    GatewayNotReporting,
    MicroNotReporting,
    ProductionIssue,
    MeterNotReporting,
    MeterIssue,
    BatteryNotReporting,
    DeviceEvent(EventKind),
}

impl Condition {
    /// The event code stored in the registry.
    pub fn code(self) -> &'static str {
        match self {
            Condition::GatewayNotReporting => "gateway_not_reporting",
            Condition::MicroNotReporting => "micro_not_reporting",
            Condition::ProductionIssue => "production_issue",
            Condition::MeterNotReporting => "meter_not_reporting",
            Condition::MeterIssue => "meter_issue",
            Condition::BatteryNotReporting => "battery_not_reporting",
            Condition::DeviceEvent(kind) => kind.code(),
        }
    }

    pub fn severity(self) -> &'static str {
        match self {
            Condition::GatewayNotReporting | Condition::ProductionIssue => "high",
            Condition::MicroNotReporting | Condition::MeterIssue => "medium",
            Condition::MeterNotReporting | Condition::BatteryNotReporting => "low",
            Condition::DeviceEvent(EventKind::GfiTripped | EventKind::DcResistanceLow) => "high",
            Condition::DeviceEvent(_) => "medium",
        }
    }

    /// The system status this condition gives, most urgent first in [`STATUS_ORDER`].
    pub fn status(self) -> Option<&'static str> {
        match self {
            Condition::GatewayNotReporting => Some("comm"),
            Condition::MicroNotReporting => Some("micro"),
            Condition::ProductionIssue => Some("power"),
            Condition::MeterNotReporting => Some("meter"),
            Condition::MeterIssue => Some("meter_issue"),
            Condition::BatteryNotReporting => Some("battery"),
            Condition::DeviceEvent(_) => None,
        }
    }
}

/// When a system has several conditions, the first of these is its status.
pub const STATUS_ORDER: [&str; 6] = ["comm", "micro", "power", "meter", "meter_issue", "battery"];

/// One condition of one system (and device).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub system_id: u32,
    pub device_id: Option<u32>,
    pub condition: Condition,
    pub started_us: i64,
    pub details: String,
}

/// One evaluation of the fleet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetCheck {
    pub as_of_us: i64,
    /// Systems that were judged (past the first activation stage, not deactivated,
    /// retired or unmonitored), ascending.
    pub systems: Vec<u32>,
    pub findings: Vec<Finding>,
}

impl FleetCheck {
    /// Each judged system's status: its most urgent condition, or `normal`.
    pub fn statuses(&self) -> BTreeMap<u32, &'static str> {
        let mut statuses: BTreeMap<u32, &'static str> =
            self.systems.iter().map(|&s| (s, "normal")).collect();
        for finding in &self.findings {
            let Some(status) = finding.condition.status() else {
                continue;
            };
            let rank = |s: &str| {
                STATUS_ORDER
                    .iter()
                    .position(|o| *o == s)
                    .unwrap_or(usize::MAX)
            };
            statuses
                .entry(finding.system_id)
                .and_modify(|current| {
                    if rank(status) < rank(current) {
                        *current = status;
                    }
                })
                .or_insert(status);
        }
        statuses
    }
}

/// A judged system's settings.
struct SystemRow {
    id: u32,
    time_zone: String,
    threshold_pct: f64,
    threshold_days: i64,
    degradation_pct: f64,
    operational_date: Option<Date>,
}

impl QueryEngine {
    /// Evaluates every reporting system of the fleet at `as_of_us`.
    pub async fn check_fleet(
        &self,
        as_of_us: i64,
        settings: &CheckSettings,
    ) -> Result<FleetCheck, QueryError> {
        let systems = self.judged_systems().await?;
        let since = as_of_us - settings.lookback_us;
        let latest = |table: &str| {
            format!(
                "SELECT CAST(system_id AS BIGINT), CAST(device_id AS BIGINT), CAST(max(time) AS BIGINT)
                 FROM {table}
                 WHERE time > to_timestamp_micros({since}) AND time <= to_timestamp_micros({as_of_us})
                 GROUP BY 1, 2"
            )
        };
        let micros = LatestData::from(
            &self
                .internal_sql(&Scope::Fleet, &latest("readings"))
                .await?,
        );
        let meters = LatestData::from(
            &self
                .internal_sql(&Scope::Fleet, &latest("meter_readings"))
                .await?,
        );
        let batteries = LatestData::from(
            &self
                .internal_sql(&Scope::Fleet, &latest("battery_readings"))
                .await?,
        );
        let any_data = |system: u32| {
            [&micros, &meters, &batteries]
                .into_iter()
                .filter_map(|data| data.of_system.get(&system).copied())
                .max()
        };
        let judged: HashSet<u32> = systems.iter().map(|s| s.id).collect();
        let mut findings = Vec::new();
        let mut silent = HashSet::new();
        for system in &systems {
            let last = any_data(system.id);
            if last.is_none_or(|last| as_of_us - last > settings.gateway_silence_us) {
                silent.insert(system.id);
                findings.push(Finding {
                    system_id: system.id,
                    device_id: None,
                    condition: Condition::GatewayNotReporting,
                    started_us: last.unwrap_or(since),
                    details: match last {
                        Some(last) => format!("no data for {} hours", (as_of_us - last) / HOUR_US),
                        None => {
                            format!("no data in the past {} days", settings.lookback_us / DAY_US)
                        }
                    },
                });
            }
        }
        let devices = self
            .internal_sql(
                &Scope::Fleet,
                "SELECT system_id, id, kind, serial FROM devices
                 WHERE state <> 'retired' AND kind <> 'gateway'",
            )
            .await?;
        let (owners, ids, kinds, serials) = (
            devices.i64s(0),
            devices.i64s(1),
            devices.strings(2),
            devices.i64s(3),
        );
        for (((system, device), kind), serial) in owners.iter().zip(&ids).zip(&kinds).zip(&serials)
        {
            let (Some(Ok(system)), Some(Ok(device)), Some(kind)) =
                (system.map(u32::try_from), device.map(u32::try_from), kind)
            else {
                continue;
            };
            if silent.contains(&system) || !judged.contains(&system) {
                continue;
            }
            // A microinverter is compared with its siblings (they all sleep at night); a meter
            // or a battery, which report around the clock, with anything from the system.
            let (own, reference, condition) = match kind.as_str() {
                "microinverter" => (
                    &micros,
                    micros.of_system.get(&system).copied(),
                    Condition::MicroNotReporting,
                ),
                "meter" => (&meters, any_data(system), Condition::MeterNotReporting),
                "battery" => (&batteries, any_data(system), Condition::BatteryNotReporting),
                _ => continue,
            };
            let Some(reference) = reference else { continue };
            let last = own.of_device.get(&(system, device)).copied();
            if last.is_none_or(|t| reference - t > settings.device_lag_us) {
                findings.push(Finding {
                    system_id: system,
                    device_id: Some(device),
                    condition,
                    started_us: last.unwrap_or(since),
                    details: format!("{kind} {:012}", serial.unwrap_or(0)),
                });
            }
        }
        findings.extend(self.reversed_meters(as_of_us, &silent).await?);
        findings.extend(self.open_device_events(as_of_us).await?);
        findings.extend(self.production_issues(&systems, as_of_us).await?);
        // Only judged systems get events and statuses: a system not yet reporting, or
        // deactivated, is left as it is.
        findings.retain(|f| judged.contains(&f.system_id));
        findings.sort_by_key(|f| (f.system_id, f.condition, f.device_id));
        Ok(FleetCheck {
            as_of_us,
            systems: systems.iter().map(|s| s.id).collect(),
            findings,
        })
    }

    async fn judged_systems(&self) -> Result<Vec<SystemRow>, QueryError> {
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                "SELECT id, time_zone, CAST(threshold_pct AS DOUBLE), threshold_days,
                        annual_degradation_pct, operational_date
                 FROM systems
                 WHERE stage <> 'started' AND status NOT IN ('deactivated', 'retired', 'not_monitored')
                 ORDER BY id",
            )
            .await?;
        let ids = answer.i64s(0);
        let zones = answer.strings(1);
        let pcts = answer.f64s(2);
        let days = answer.i64s(3);
        let degradation = answer.f64s(4);
        let operational = answer.strings(5);
        let mut rows = Vec::new();
        for i in 0..ids.len() {
            let Some(Ok(id)) = ids[i].map(u32::try_from) else {
                continue;
            };
            rows.push(SystemRow {
                id,
                time_zone: zones[i].clone().unwrap_or_else(|| "UTC".to_owned()),
                threshold_pct: pcts[i].unwrap_or(90.0),
                threshold_days: days[i].unwrap_or(90),
                degradation_pct: degradation[i].unwrap_or(0.5),
                operational_date: operational[i].as_deref().and_then(|d| d.parse().ok()),
            });
        }
        Ok(rows)
    }

    /// Consumption meters whose load is negative while the system produces nothing, over
    /// the past day.
    async fn reversed_meters(
        &self,
        as_of_us: i64,
        silent: &HashSet<u32>,
    ) -> Result<Vec<Finding>, QueryError> {
        let since = as_of_us - DAY_US;
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(m.system_id AS BIGINT), CAST(m.device_id AS BIGINT),
                            CAST(min(m.time) AS BIGINT), CAST(avg(m.active_power_w) AS DOUBLE)
                     FROM meter_readings m
                     LEFT JOIN (SELECT DISTINCT system_id AS producing, time AS produced_at
                                FROM readings
                                WHERE time > to_timestamp_micros({since})
                                  AND time <= to_timestamp_micros({as_of_us})) p
                       ON p.producing = m.system_id AND p.produced_at = m.time
                     WHERE m.meter_kind IN (1, 2) AND p.producing IS NULL
                       AND m.time > to_timestamp_micros({since}) AND m.time <= to_timestamp_micros({as_of_us})
                     GROUP BY 1, 2
                     HAVING avg(m.active_power_w) < 0"
                ),
            )
            .await?;
        let (systems, devices, starts, power) = (
            answer.i64s(0),
            answer.i64s(1),
            answer.i64s(2),
            answer.f64s(3),
        );
        let mut findings = Vec::new();
        for i in 0..systems.len() {
            let (Some(Ok(system)), Some(Ok(device))) =
                (systems[i].map(u32::try_from), devices[i].map(u32::try_from))
            else {
                continue;
            };
            if silent.contains(&system) {
                continue;
            }
            findings.push(Finding {
                system_id: system,
                device_id: Some(device),
                condition: Condition::MeterIssue,
                started_us: starts[i].unwrap_or(since),
                details: format!(
                    "consumption reads {:.0} W on average with no production: current clamps reversed?",
                    power[i].unwrap_or(0.0)
                ),
            });
        }
        Ok(findings)
    }

    /// Device events whose latest report on a device raised them; one finding per system
    /// and event, over all its devices. The whole history counts (events are rare): a GFI
    /// latched weeks ago is still open.
    async fn open_device_events(&self, as_of_us: i64) -> Result<Vec<Finding>, QueryError> {
        let answer = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(system_id AS BIGINT), CAST(event_number AS BIGINT),
                            CAST(min(raised_at) AS BIGINT), count(*)
                     FROM (SELECT system_id, device_id, event_number,
                                  last_value(raised ORDER BY time) AS raised,
                                  max(time) AS raised_at
                           FROM device_events
                           WHERE time <= to_timestamp_micros({as_of_us})
                           GROUP BY 1, 2, 3)
                     WHERE raised
                     GROUP BY 1, 2"
                ),
            )
            .await?;
        let (systems, events, starts, devices) = (
            answer.i64s(0),
            answer.i64s(1),
            answer.i64s(2),
            answer.i64s(3),
        );
        let mut findings = Vec::new();
        for i in 0..systems.len() {
            let (Some(Ok(system)), Some(kind)) = (
                systems[i].map(u32::try_from),
                events[i]
                    .and_then(|n| u16::try_from(n).ok())
                    .and_then(EventKind::from_number),
            ) else {
                continue;
            };
            findings.push(Finding {
                system_id: system,
                device_id: None,
                condition: Condition::DeviceEvent(kind),
                started_us: starts[i].unwrap_or(as_of_us),
                details: format!("{} device(s)", devices[i].unwrap_or(0)),
            });
        }
        Ok(findings)
    }

    /// Systems producing below their threshold share of the estimate over their window.
    async fn production_issues(
        &self,
        systems: &[SystemRow],
        as_of_us: i64,
    ) -> Result<Vec<Finding>, QueryError> {
        let monthly = self.monthly_estimates().await?;
        // The window must lie within the system's history here: days before its first data
        // are unknown, not zero.
        let first_days = self
            .internal_sql(
                &Scope::Fleet,
                "SELECT CAST(system_id AS BIGINT), CAST(min(local_date) AS VARCHAR)
                 FROM rollup_day WHERE device_id = 0 GROUP BY 1",
            )
            .await?;
        let first_data: HashMap<u32, Date> = first_days
            .i64s(0)
            .into_iter()
            .zip(first_days.strings(1))
            .filter_map(|(id, date)| Some((u32::try_from(id?).ok()?, date?.parse().ok()?)))
            .collect();
        let mut judged = Vec::new();
        for system in systems {
            let (Some(operational), Some(estimate)) =
                (system.operational_date, monthly.get(&system.id))
            else {
                continue;
            };
            let zone = TimeZone::get(&system.time_zone).unwrap_or(TimeZone::UTC);
            let today = local_date(&zone, as_of_us)?;
            let Ok(first) = today.checked_sub(jiff::Span::new().days(system.threshold_days)) else {
                continue;
            };
            let Ok(last) = today.yesterday() else {
                continue;
            };
            if first < operational || first_data.get(&system.id).is_none_or(|d| first < *d) {
                continue;
            }
            let expected = expected_kwh(estimate, system.degradation_pct, operational, first, last);
            judged.push((
                system,
                SystemZone {
                    id: system.id,
                    zone,
                },
                expected,
            ));
        }
        let longest = judged
            .iter()
            .map(|(s, _, _)| s.threshold_days)
            .max()
            .unwrap_or(0);
        let zones: Vec<SystemZone> = judged.iter().map(|(_, z, _)| z.clone()).collect();
        let daily = self
            .daily_energy(&zones, as_of_us - (longest + 1) * DAY_US, as_of_us)
            .await?;
        let mut findings = Vec::new();
        for (system, zone, expected) in judged {
            let today = local_date(&zone.zone, as_of_us)?;
            let Ok(first) = today.checked_sub(jiff::Span::new().days(system.threshold_days)) else {
                continue;
            };
            let actual: f64 = daily
                .get(&system.id)
                .map(|days| days.range(first..today).map(|(_, wh)| wh / 1000.0).sum())
                .unwrap_or(0.0);
            if expected > 0.0 && actual < expected * system.threshold_pct / 100.0 {
                findings.push(Finding {
                    system_id: system.id,
                    device_id: None,
                    condition: Condition::ProductionIssue,
                    started_us: as_of_us,
                    details: format!(
                        "{actual:.1} kWh over the past {} days: {:.0} % of the {expected:.1} kWh estimate (threshold {} %)",
                        system.threshold_days,
                        actual / expected * 100.0,
                        system.threshold_pct
                    ),
                });
            }
        }
        Ok(findings)
    }
}

/// Records an evaluation in the registry: events open and end, statuses change.
pub fn record(registry: &Registry, check: &FleetCheck) -> Result<ConditionChanges, QueryError> {
    let systems: Vec<i64> = check.systems.iter().map(|&s| i64::from(s)).collect();
    let found: Vec<FoundCondition> = check
        .findings
        .iter()
        .map(|f| FoundCondition {
            system_id: i64::from(f.system_id),
            device_id: f.device_id.map(i64::from),
            code: f.condition.code().to_owned(),
            severity: f.condition.severity(),
            started_us: f.started_us,
            details: f.details.clone(),
        })
        .collect();
    let statuses: Vec<(i64, &str)> = check
        .statuses()
        .into_iter()
        .map(|(s, status)| (i64::from(s), status))
        .collect();
    Ok(registry.record_conditions(&systems, &found, &statuses, check.as_of_us)?)
}

/// The newest data time of each device and of each system, in one table.
struct LatestData {
    of_device: HashMap<(u32, u32), i64>,
    of_system: HashMap<u32, i64>,
}

impl From<&SqlAnswer> for LatestData {
    fn from(answer: &SqlAnswer) -> Self {
        let mut data = LatestData {
            of_device: HashMap::new(),
            of_system: HashMap::new(),
        };
        let (systems, devices, times) = (answer.i64s(0), answer.i64s(1), answer.i64s(2));
        for ((system, device), time) in systems.into_iter().zip(devices).zip(times) {
            if let (Some(Ok(system)), Some(Ok(device)), Some(time)) =
                (system.map(u32::try_from), device.map(u32::try_from), time)
            {
                data.of_device.insert((system, device), time);
                let newest = data.of_system.entry(system).or_insert(time);
                *newest = (*newest).max(time);
            }
        }
        data
    }
}

/// Runs the fleet checks every `every` and records each evaluation, until `stop` turns
/// true. A failed round is logged and the next one runs as planned.
pub async fn run_checks(
    engine: std::sync::Arc<QueryEngine>,
    registry: std::sync::Arc<Registry>,
    every: std::time::Duration,
    settings: CheckSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let now = sunfleet_engine::time::now_micros();
        let round = async {
            let check = engine.check_fleet(now, &settings).await?;
            let registry = std::sync::Arc::clone(&registry);
            let findings = check.findings.len();
            // SQLite blocks: not on the runtime's threads.
            let changes = tokio::task::spawn_blocking(move || record(&registry, &check))
                .await
                .map_err(|e| QueryError::Runtime {
                    message: e.to_string(),
                })??;
            Ok::<_, QueryError>((findings, changes))
        };
        // A stop request abandons a round in progress: nothing was recorded yet, or the
        // recording transaction finishes on its own.
        let outcome = tokio::select! {
            outcome = round => outcome,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok((findings, changes)) => tracing::info!(findings, ?changes, "fleet checks"),
            Err(error) => tracing::warn!(%error, "fleet checks failed; next round as planned"),
        }
    }
}
