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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use sunfleet_engine::activity::{Changes, DeviceLatest, UnregisteredDevices};
use sunfleet_engine::ids::{DeviceId, Serial, SystemId};
use sunfleet_engine::registry::{ConditionChanges, FoundCondition, ProductionSwitch, Registry};
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
    /// How often reversed meter clamps (a judgment over the past day) are judged again
    /// for the systems with new meter readings.
    pub meter_recheck_us: i64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            gateway_silence_us: 26 * HOUR_US,
            device_lag_us: 2 * HOUR_US,
            lookback_us: 3 * DAY_US,
            meter_recheck_us: HOUR_US,
        }
    }
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    GatewayNotReporting,
    /// Power production switched off by command on a gateway: zero production on purpose.
    ProductionOff,
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
            Condition::ProductionOff => "production_off",
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
            Condition::ProductionOff => "info",
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
            Condition::ProductionOff => Some("production_off"),
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
pub const STATUS_ORDER: [&str; 7] = [
    "comm",
    "production_off",
    "micro",
    "power",
    "meter",
    "meter_issue",
    "battery",
];

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
    pub rejudged: Rejudged,
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
    zone: TimeZone,
    threshold_pct: f64,
    threshold_days: i64,
    degradation_pct: f64,
    operational_date: Option<Date>,
    /// When its production was off by command, oldest first.
    production_off: Vec<OffPeriod>,
}

/// A time during which a system's power production was off by command: from the first of
/// its gateways switched off to the last switched on again (`None`: still off).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OffPeriod {
    from_us: i64,
    until_us: Option<i64>,
}

/// Each system's off periods from the switches its gateways carried out (oldest first).
fn off_periods(switches: &[ProductionSwitch]) -> HashMap<i64, Vec<OffPeriod>> {
    let mut gateways_off: HashMap<i64, HashSet<i64>> = HashMap::new();
    let mut periods: HashMap<i64, Vec<OffPeriod>> = HashMap::new();
    for switch in switches {
        let off = gateways_off.entry(switch.system_id).or_default();
        let was_off = !off.is_empty();
        if switch.off {
            off.insert(switch.gateway_id);
        } else {
            off.remove(&switch.gateway_id);
        }
        let system = periods.entry(switch.system_id).or_default();
        match (was_off, off.is_empty()) {
            (false, false) => system.push(OffPeriod {
                from_us: switch.at_us,
                until_us: None,
            }),
            (true, true) => {
                if let Some(open) = system.last_mut() {
                    open.until_us = Some(switch.at_us);
                }
            }
            _ => {}
        }
    }
    periods
}

/// Which systems a rule looks at in a round: all of them, or these.
#[derive(Debug, Clone, Copy)]
enum Only<'a> {
    All,
    Systems(&'a [u32]),
}

impl Only<'_> {
    /// A SQL condition on `column` (empty for all systems).
    fn and_system_in(self, column: &str) -> String {
        match self {
            Only::All => String::new(),
            Only::Systems(ids) => format!(
                " AND {column} IN ({})",
                ids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn is_nothing(self) -> bool {
        matches!(self, Only::Systems([]))
    }
}

/// The production rule's answer for a system, and what it depended on: it is judged again
/// only when one of those changes or late data reaches its window.
#[derive(Debug, Clone, PartialEq)]
struct ProductionKey {
    today: Date,
    threshold_pct: f64,
    threshold_days: i64,
    degradation_pct: f64,
    operational_date: Option<Date>,
    estimate: Option<[f64; 12]>,
    production_off: Vec<OffPeriod>,
}

/// What an incremental checker remembers between rounds.
struct Memory {
    micros: LatestData,
    meters: LatestData,
    batteries: LatestData,
    /// Open device events per system.
    events: HashMap<u32, Vec<Finding>>,
    /// Reversed-clamp findings per system, judged at `meters_judged_us`.
    meter_issues: HashMap<u32, Vec<Finding>>,
    meters_judged_us: i64,
    /// Systems with new meter readings since `meters_judged_us`.
    meters_changed: HashSet<u32>,
    production: HashMap<u32, (ProductionKey, Option<Finding>)>,
}

/// How much a round re-judged (the rest came from the checker's memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejudged {
    /// The round read every rule's data from storage (a checker's first round).
    pub everything: bool,
    pub device_event_systems: usize,
    pub meter_systems: usize,
    pub production_systems: usize,
}

/// The fleet checks with a memory. The first round judges everything from storage; each
/// later round takes what arrived since ([`Store::take_changes`]) and re-judges only what
/// that (or the passing of time) can change:
/// - reporting (gateway, microinverters, meters, batteries): from each device's newest
///   data time, kept in memory: every system, every round, without reading storage;
/// - device events: systems that sent events;
/// - reversed meter clamps (a judgment over the past day): systems with new meter readings
///   or an open finding, at most every [`CheckSettings::meter_recheck_us`];
/// - production against the estimate: systems whose local date, settings or estimate
///   changed, or that received data for a day in their window.
///
/// One checker per store: it consumes the store's changes. Daily totals imported outside
/// the WAL are seen by the next checker (a restart), not by a running one.
///
/// [`Store::take_changes`]: sunfleet_engine::store::Store::take_changes
pub struct FleetChecker {
    settings: CheckSettings,
    memory: Option<Memory>,
    /// Devices gateways reported that the registry does not know, for activation.
    unregistered: BTreeMap<Serial, UnregisteredDevices>,
    /// Systems whose production the next round judges again even if nothing it depends
    /// on seems to have changed.
    forced: HashSet<u32>,
}

impl FleetChecker {
    pub fn new(settings: CheckSettings) -> Self {
        Self {
            settings,
            memory: None,
            unregistered: BTreeMap::new(),
            forced: HashSet::new(),
        }
    }

    /// Has the next round judge these systems' production again (their settings changed).
    pub fn recheck(&mut self, systems: impl IntoIterator<Item = u32>) {
        self.forced.extend(systems);
    }

    /// The unknown devices gateways reported since the previous call.
    pub fn take_unregistered(&mut self) -> BTreeMap<Serial, UnregisteredDevices> {
        std::mem::take(&mut self.unregistered)
    }

    /// One round at `as_of_us` (rounds go forward in time).
    pub async fn check(
        &mut self,
        engine: &QueryEngine,
        as_of_us: i64,
    ) -> Result<FleetCheck, QueryError> {
        // Taken before anything is read, so rows arriving during the round are either seen
        // by this round's reads or handed to the next round (or both: harmless).
        let mut changes = engine.store().take_changes();
        for (gateway, devices) in std::mem::take(&mut changes.unregistered) {
            let known = self.unregistered.entry(gateway).or_default();
            known.micros.extend(devices.micros);
            known.meters.extend(devices.meters);
            known.batteries.extend(devices.batteries);
        }
        let memory = match self.memory.take() {
            Some(memory) => memory,
            None => {
                let (check, memory) = engine.judge_everything(as_of_us, &self.settings).await?;
                self.memory = Some(memory);
                return Ok(check);
            }
        };
        let forced = std::mem::take(&mut self.forced);
        let (check, memory) = engine
            .judge_changes(as_of_us, &self.settings, memory, changes, &forced)
            .await?;
        self.memory = Some(memory);
        Ok(check)
    }
}

impl QueryEngine {
    /// Evaluates every reporting system of the fleet at `as_of_us`, from storage (a
    /// fresh checker's round; it leaves the store's changes to the running checker).
    pub async fn check_fleet(
        &self,
        as_of_us: i64,
        settings: &CheckSettings,
    ) -> Result<FleetCheck, QueryError> {
        Ok(self.judge_everything(as_of_us, settings).await?.0)
    }

    async fn judge_everything(
        &self,
        as_of_us: i64,
        settings: &CheckSettings,
    ) -> Result<(FleetCheck, Memory), QueryError> {
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
        let mut memory = Memory {
            micros: LatestData::from(
                &self
                    .internal_sql(&Scope::Fleet, &latest("readings"))
                    .await?,
            ),
            meters: LatestData::from(
                &self
                    .internal_sql(&Scope::Fleet, &latest("meter_readings"))
                    .await?,
            ),
            batteries: LatestData::from(
                &self
                    .internal_sql(&Scope::Fleet, &latest("battery_readings"))
                    .await?,
            ),
            events: group_by_system(self.open_device_events(as_of_us, Only::All).await?),
            meter_issues: group_by_system(self.reversed_meters(as_of_us, Only::All).await?),
            meters_judged_us: as_of_us,
            meters_changed: HashSet::new(),
            production: HashMap::new(),
        };
        let rejudged = self
            .judge_production(&systems, as_of_us, &mut memory.production, &HashSet::new())
            .await?;
        let check = self
            .assemble(
                as_of_us,
                settings,
                &systems,
                &memory,
                Rejudged {
                    everything: true,
                    device_event_systems: memory.events.len(),
                    meter_systems: memory.meter_issues.len(),
                    production_systems: rejudged,
                },
            )
            .await?;
        Ok((check, memory))
    }

    async fn judge_changes(
        &self,
        as_of_us: i64,
        settings: &CheckSettings,
        mut memory: Memory,
        changes: Changes,
        forced: &HashSet<u32>,
    ) -> Result<(FleetCheck, Memory), QueryError> {
        let systems = self.judged_systems().await?;
        memory.micros.merge(&changes.micro);
        memory.meters.merge(&changes.meters);
        memory.batteries.merge(&changes.batteries);

        let with_events: Vec<u32> = changes
            .systems
            .iter()
            .filter(|(_, c)| c.device_events)
            .map(|(s, _)| s.0)
            .collect();
        if !with_events.is_empty() {
            let found = group_by_system(
                self.open_device_events(as_of_us, Only::Systems(&with_events))
                    .await?,
            );
            for system in &with_events {
                memory.events.remove(system);
            }
            memory.events.extend(found);
        }

        memory.meters_changed.extend(
            changes
                .systems
                .iter()
                .filter(|(_, c)| c.meter_readings)
                .map(|(s, _)| s.0),
        );
        let mut meter_systems = 0;
        if as_of_us - memory.meters_judged_us >= settings.meter_recheck_us {
            let due: Vec<u32> = memory
                .meters_changed
                .iter()
                .chain(memory.meter_issues.keys())
                .copied()
                .collect::<BTreeSet<u32>>()
                .into_iter()
                .collect();
            let found = group_by_system(self.reversed_meters(as_of_us, Only::Systems(&due)).await?);
            for system in &due {
                memory.meter_issues.remove(system);
            }
            memory.meter_issues.extend(found);
            memory.meters_judged_us = as_of_us;
            memory.meters_changed.clear();
            meter_systems = due.len();
        }

        // Data for a day before the system's local today reaches its production window.
        let mut late = HashSet::new();
        for system in &systems {
            let Some(change) = changes.systems.get(&SystemId(system.id)) else {
                continue;
            };
            if local_date(&system.zone, change.earliest_us)? < local_date(&system.zone, as_of_us)? {
                late.insert(system.id);
            }
        }
        late.extend(forced);
        let production_systems = self
            .judge_production(&systems, as_of_us, &mut memory.production, &late)
            .await?;
        let check = self
            .assemble(
                as_of_us,
                settings,
                &systems,
                &memory,
                Rejudged {
                    everything: false,
                    device_event_systems: with_events.len(),
                    meter_systems,
                    production_systems,
                },
            )
            .await?;
        Ok((check, memory))
    }

    /// Every finding at `as_of_us` from the reporting times and the rules' remembered
    /// answers.
    async fn assemble(
        &self,
        as_of_us: i64,
        settings: &CheckSettings,
        systems: &[SystemRow],
        memory: &Memory,
        rejudged: Rejudged,
    ) -> Result<FleetCheck, QueryError> {
        let since = as_of_us - settings.lookback_us;
        let (micros, meters, batteries) = (&memory.micros, &memory.meters, &memory.batteries);
        let any_data = |system: u32| {
            [micros, meters, batteries]
                .into_iter()
                .filter_map(|data| data.of_system.get(&system).copied())
                .max()
        };
        let judged: HashSet<u32> = systems.iter().map(|s| s.id).collect();
        let mut findings = Vec::new();
        let mut silent = HashSet::new();
        for system in systems {
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
        let devices = self.registry_read(Registry::watched_devices).await?;
        for device in &devices {
            let (Ok(system), Ok(id)) = (
                u32::try_from(device.system_id),
                u32::try_from(device.device_id),
            ) else {
                continue;
            };
            if silent.contains(&system) || !judged.contains(&system) {
                continue;
            }
            // A microinverter is compared with its siblings (they all sleep at night); a meter
            // or a battery, which report around the clock, with anything from the system.
            let kind = device.kind.as_str();
            let (own, reference, condition) = match kind {
                "microinverter" => (
                    micros,
                    micros.of_system.get(&system).copied(),
                    Condition::MicroNotReporting,
                ),
                "meter" => (meters, any_data(system), Condition::MeterNotReporting),
                "battery" => (batteries, any_data(system), Condition::BatteryNotReporting),
                _ => continue,
            };
            let Some(reference) = reference else { continue };
            let last = own.of_device.get(&(system, id)).copied();
            // A unit registered on its first report (a provisioned one joining a running
            // system) has its data under its id only from the next upload on: give it the
            // same lag as a unit that stopped.
            if last.is_none() && as_of_us - device.registered_us < settings.device_lag_us {
                continue;
            }
            if last.is_none_or(|t| reference - t > settings.device_lag_us) {
                findings.push(Finding {
                    system_id: system,
                    device_id: Some(id),
                    condition,
                    started_us: last.unwrap_or(since),
                    details: format!("{kind} {:012}", device.serial),
                });
            }
        }
        findings.extend(
            memory
                .meter_issues
                .iter()
                .filter(|(system, _)| !silent.contains(system))
                .flat_map(|(_, found)| found.iter().cloned()),
        );
        findings.extend(memory.events.values().flatten().cloned());
        findings.extend(memory.production.values().filter_map(|(_, f)| f.clone()));
        findings.extend(systems.iter().filter_map(|system| {
            let still_off = system
                .production_off
                .last()
                .filter(|period| period.until_us.is_none())?;
            Some(Finding {
                system_id: system.id,
                device_id: None,
                condition: Condition::ProductionOff,
                started_us: still_off.from_us,
                details: "power production switched off by command: zero production is expected"
                    .to_owned(),
            })
        }));
        // Only judged systems get events and statuses: a system not yet reporting, or
        // deactivated, is left as it is.
        findings.retain(|f| judged.contains(&f.system_id));
        findings.sort_by_key(|f| (f.system_id, f.condition, f.device_id));
        Ok(FleetCheck {
            as_of_us,
            systems: systems.iter().map(|s| s.id).collect(),
            findings,
            rejudged,
        })
    }

    async fn judged_systems(&self) -> Result<Vec<SystemRow>, QueryError> {
        let systems = self.registry_read(Registry::checked_systems).await?;
        let mut production_off =
            off_periods(&self.registry_read(Registry::production_switches).await?);
        let mut zones: HashMap<String, TimeZone> = HashMap::new();
        Ok(systems
            .into_iter()
            .filter_map(|s| {
                let zone = zones
                    .entry(s.time_zone)
                    .or_insert_with_key(|name| TimeZone::get(name).unwrap_or(TimeZone::UTC))
                    .clone();
                Some(SystemRow {
                    id: u32::try_from(s.id).ok()?,
                    zone,
                    threshold_pct: s.threshold_pct,
                    threshold_days: s.threshold_days,
                    degradation_pct: s.annual_degradation_pct,
                    operational_date: s.operational_date.as_deref().and_then(|d| d.parse().ok()),
                    production_off: production_off.remove(&s.id).unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Consumption meters whose load is negative while the system produces nothing, over
    /// the past day.
    async fn reversed_meters(
        &self,
        as_of_us: i64,
        only: Only<'_>,
    ) -> Result<Vec<Finding>, QueryError> {
        if only.is_nothing() {
            return Ok(Vec::new());
        }
        let since = as_of_us - DAY_US;
        let (meter_systems, producing_systems) = (
            only.and_system_in("m.system_id"),
            only.and_system_in("system_id"),
        );
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
                                  AND time <= to_timestamp_micros({as_of_us}){producing_systems}) p
                       ON p.producing = m.system_id AND p.produced_at = m.time
                     WHERE m.meter_kind IN (1, 2) AND p.producing IS NULL
                       AND m.time > to_timestamp_micros({since}) AND m.time <= to_timestamp_micros({as_of_us}){meter_systems}
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
    async fn open_device_events(
        &self,
        as_of_us: i64,
        only: Only<'_>,
    ) -> Result<Vec<Finding>, QueryError> {
        if only.is_nothing() {
            return Ok(Vec::new());
        }
        let systems_filter = only.and_system_in("system_id");
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
                           WHERE time <= to_timestamp_micros({as_of_us}){systems_filter}
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

    /// Judges production against the estimate for the systems whose answer in `verdicts`
    /// may have changed (its key differs, or it is in `late`); forgets systems no longer
    /// judged. Returns how many were judged.
    async fn judge_production(
        &self,
        systems: &[SystemRow],
        as_of_us: i64,
        verdicts: &mut HashMap<u32, (ProductionKey, Option<Finding>)>,
        late: &HashSet<u32>,
    ) -> Result<usize, QueryError> {
        let monthly = self.monthly_estimates().await?;
        let mut due = Vec::new();
        for system in systems {
            let zone = system.zone.clone();
            let key = ProductionKey {
                today: local_date(&zone, as_of_us)?,
                threshold_pct: system.threshold_pct,
                threshold_days: system.threshold_days,
                degradation_pct: system.degradation_pct,
                operational_date: system.operational_date,
                estimate: monthly.get(&system.id).copied(),
                production_off: system.production_off.clone(),
            };
            let unchanged = verdicts.get(&system.id).is_some_and(|(k, _)| *k == key);
            if !unchanged || late.contains(&system.id) {
                due.push((system, zone, key));
            }
        }
        let judged: HashSet<u32> = systems.iter().map(|s| s.id).collect();
        verdicts.retain(|id, _| judged.contains(id));
        if due.is_empty() {
            return Ok(0);
        }
        let ids: Vec<u32> = due.iter().map(|(s, _, _)| s.id).collect();
        // The window must lie within the system's history here: days before its first data
        // are unknown, not zero.
        let first_days = self
            .internal_sql(
                &Scope::Fleet,
                &format!(
                    "SELECT CAST(system_id AS BIGINT), CAST(min(local_date) AS VARCHAR)
                     FROM rollup_day WHERE device_id = 0{} GROUP BY 1",
                    Only::Systems(&ids).and_system_in("system_id")
                ),
            )
            .await?;
        let first_data: HashMap<u32, Date> = first_days
            .i64s(0)
            .into_iter()
            .zip(first_days.strings(1))
            .filter_map(|(id, date)| Some((u32::try_from(id?).ok()?, date?.parse().ok()?)))
            .collect();
        // (system, key, window, days left out, expected kWh) for systems the rule can judge
        // today. Days production was off by command are left out of both sides: zero on
        // purpose is no production issue, then or later.
        let mut windows = Vec::new();
        for (system, zone, key) in due {
            let window =
                key.estimate
                    .zip(system.operational_date)
                    .and_then(|(estimate, operational)| {
                        let first = key
                            .today
                            .checked_sub(jiff::Span::new().days(system.threshold_days))
                            .ok()?;
                        let last = key.today.yesterday().ok()?;
                        if first < operational
                            || first_data.get(&system.id).is_none_or(|d| first < *d)
                        {
                            return None;
                        }
                        Some((first, last, estimate, operational))
                    });
            let window = match window {
                Some((first, last, estimate, operational)) => {
                    let off_days = days_off(&system.production_off, &zone, first, last, as_of_us)?;
                    let expected =
                        expected_kwh(&estimate, system.degradation_pct, operational, first, last)
                            - off_days
                                .iter()
                                .map(|&day| {
                                    expected_kwh(
                                        &estimate,
                                        system.degradation_pct,
                                        operational,
                                        day,
                                        day,
                                    )
                                })
                                .sum::<f64>();
                    Some((first, off_days, expected))
                }
                None => None,
            };
            match window {
                Some((first, off_days, expected)) => {
                    windows.push((system, zone, key, first, off_days, expected));
                }
                None => {
                    verdicts.insert(system.id, (key, None));
                }
            }
        }
        let judged_now = ids.len();
        let longest = windows
            .iter()
            .map(|(s, ..)| s.threshold_days)
            .max()
            .unwrap_or(0);
        let zones: Vec<SystemZone> = windows
            .iter()
            .map(|(s, zone, ..)| SystemZone {
                id: s.id,
                zone: zone.clone(),
            })
            .collect();
        let daily = self
            .daily_energy(&zones, as_of_us - (longest + 1) * DAY_US, as_of_us)
            .await?;
        for (system, _, key, first, off_days, expected) in windows {
            let actual: f64 = daily
                .get(&system.id)
                .map(|days| {
                    days.range(first..key.today)
                        .filter(|(day, _)| !off_days.contains(day))
                        .map(|(_, wh)| wh / 1000.0)
                        .sum()
                })
                .unwrap_or(0.0);
            let over = if off_days.is_empty() {
                format!("over the past {} days", system.threshold_days)
            } else {
                format!(
                    "over the past {} days less {} with production off by command",
                    system.threshold_days,
                    off_days.len()
                )
            };
            let finding = (expected > 0.0 && actual < expected * system.threshold_pct / 100.0)
                .then(|| {
                    // An issue already open keeps the time it was first found.
                    let started_us = verdicts
                        .get(&system.id)
                        .and_then(|(_, f)| f.as_ref())
                        .map_or(as_of_us, |f| f.started_us);
                    Finding {
                        system_id: system.id,
                        device_id: None,
                        condition: Condition::ProductionIssue,
                        started_us,
                        details: format!(
                            "{actual:.1} kWh {over}: {:.0} % of the {expected:.1} kWh estimate (threshold {} %)",
                            actual / expected * 100.0,
                            system.threshold_pct
                        ),
                    }
                });
            verdicts.insert(system.id, (key, finding));
        }
        Ok(judged_now)
    }
}

/// The local days of `first..=last` during which production was off by command.
fn days_off(
    periods: &[OffPeriod],
    zone: &TimeZone,
    first: Date,
    last: Date,
    as_of_us: i64,
) -> Result<BTreeSet<Date>, QueryError> {
    let mut days = BTreeSet::new();
    for period in periods {
        let mut day = local_date(zone, period.from_us)?.max(first);
        let until = local_date(zone, period.until_us.unwrap_or(as_of_us))?.min(last);
        while day <= until {
            days.insert(day);
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
    }
    Ok(days)
}

fn group_by_system(findings: Vec<Finding>) -> HashMap<u32, Vec<Finding>> {
    let mut grouped: HashMap<u32, Vec<Finding>> = HashMap::new();
    for finding in findings {
        grouped.entry(finding.system_id).or_default().push(finding);
    }
    grouped
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

impl LatestData {
    /// Takes newer times from what arrived.
    fn merge(&mut self, arrived: &HashMap<DeviceId, DeviceLatest>) {
        for (device, latest) in arrived {
            self.note(latest.system.0, device.0, latest.time_us);
        }
    }

    /// A device's data at `time`: the newer time wins, for the device and its system.
    fn note(&mut self, system: u32, device: u32, time: i64) {
        let newest = self.of_device.entry((system, device)).or_insert(time);
        *newest = (*newest).max(time);
        let newest = self.of_system.entry(system).or_insert(time);
        *newest = (*newest).max(time);
    }
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
                data.note(system, device, time);
            }
        }
        data
    }
}

/// When the fleet checks run.
#[derive(Debug, Clone, Copy)]
pub struct CheckSchedule {
    /// A round at least this often …
    pub every: std::time::Duration,
    /// … and one this long after data arrives, at the soonest this long after the
    /// previous round (data arrives all the time: this bounds the rounds it causes).
    pub after_ingest: std::time::Duration,
}

/// Runs the fleet checks on `schedule` with one [`FleetChecker`] and records each round,
/// until `stop` turns true. A failed round is logged and the next one runs as planned.
pub async fn run_checks(
    engine: std::sync::Arc<QueryEngine>,
    registry: std::sync::Arc<Registry>,
    schedule: CheckSchedule,
    settings: CheckSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut checker = FleetChecker::new(settings);
    let rechecks = engine.rechecks();
    let _listening = rechecks.listen();
    let mut next_round = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_round) => {}
            _ = rechecks.requested() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
        let began = tokio::time::Instant::now();
        let now = sunfleet_engine::time::now_micros();
        let (forced, ticket) = rechecks.take();
        checker.recheck(forced.iter().copied());
        let round = async {
            let check = checker.check(&engine, now).await?;
            let activation =
                crate::activation::advance_activations(&engine, checker.take_unregistered(), now)
                    .await?;
            if activation != Default::default() {
                tracing::info!(?activation, "activations");
            }
            let registry = std::sync::Arc::clone(&registry);
            let findings = check.findings.len();
            let rejudged = check.rejudged.clone();
            // SQLite blocks: not on the runtime's threads.
            let changes = tokio::task::spawn_blocking(move || record(&registry, &check))
                .await
                .map_err(|e| QueryError::Runtime {
                    message: e.to_string(),
                })??;
            Ok::<_, QueryError>((findings, rejudged, changes))
        };
        // A stop request abandons a round in progress: nothing was recorded yet, or the
        // recording transaction finishes on its own.
        let outcome = tokio::select! {
            outcome = round => outcome,
            _ = stop.changed() => return,
        };
        match outcome {
            Ok((findings, rejudged, changes)) => {
                rechecks.recorded_up_to(ticket);
                tracing::info!(
                    findings,
                    ?rejudged,
                    ?changes,
                    took_ms = began.elapsed().as_millis() as u64,
                    "fleet checks"
                )
            }
            Err(error) => {
                // The checker forgot what it was asked to judge again: the next round is
                // asked again.
                rechecks.give_back(forced);
                tracing::warn!(%error, "fleet checks failed; next round as planned")
            }
        }
        // The next round: on schedule, sooner once data arrives, at once when asked.
        let soonest = began + schedule.after_ingest;
        let scheduled = began + schedule.every;
        tokio::select! {
            _ = tokio::time::sleep_until(scheduled) => next_round = scheduled,
            _ = engine.store().data_arrived() => next_round = soonest.min(scheduled),
            _ = rechecks.requested() => next_round = tokio::time::Instant::now(),
            _ = stop.changed() => return,
        }
    }
}

/// Requests for an early round of the fleet checks that judges some systems again, from
/// whoever changed what the checks depend on (the portal, after an estimate or threshold
/// is saved) to the running [`run_checks`] loop, which wakes at once instead of waiting
/// for its schedule. A requester can wait, boundedly, until a round that includes its
/// request is recorded in the registry, so the page it shows next has the new status.
#[derive(Debug)]
pub struct Rechecks {
    /// Systems asked for and the newest ticket handed out.
    pending: std::sync::Mutex<(BTreeSet<u32>, u64)>,
    wake: tokio::sync::Notify,
    /// The newest ticket whose round was recorded.
    recorded: tokio::sync::watch::Sender<u64>,
    /// How many [`run_checks`] loops are running.
    listeners: std::sync::atomic::AtomicUsize,
}

/// What [`Rechecks::request`] hands out: the round to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RecheckTicket(u64);

/// Marks a [`run_checks`] loop as running while it lives.
pub struct Listening<'a>(&'a Rechecks);

impl Drop for Listening<'_> {
    fn drop(&mut self) {
        self.0
            .listeners
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Default for Rechecks {
    fn default() -> Self {
        Self::new()
    }
}

impl Rechecks {
    pub fn new() -> Self {
        Self {
            pending: std::sync::Mutex::new((BTreeSet::new(), 0)),
            wake: tokio::sync::Notify::new(),
            recorded: tokio::sync::watch::Sender::new(0),
            listeners: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Asks for a round that judges `system` again, as soon as the current one (if any)
    /// is over.
    pub fn request(&self, system: u32) -> RecheckTicket {
        let ticket = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            pending.0.insert(system);
            pending.1 += 1;
            RecheckTicket(pending.1)
        };
        self.wake.notify_one();
        ticket
    }

    /// Whether fleet checks are running to answer requests.
    pub fn is_listened_to(&self) -> bool {
        self.listeners.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Waits until a round that includes `ticket` is recorded, for at most `timeout`;
    /// `false` when none was (no checks running, or the round took longer).
    pub async fn recorded(&self, ticket: RecheckTicket, timeout: std::time::Duration) -> bool {
        if !self.is_listened_to() {
            return false;
        }
        let mut recorded = self.recorded.subscribe();
        tokio::time::timeout(timeout, recorded.wait_for(|&done| done >= ticket.0))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    fn listen(&self) -> Listening<'_> {
        self.listeners
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Listening(self)
    }

    /// Resolves once a request is waiting (at once if one came since the last call).
    async fn requested(&self) {
        self.wake.notified().await;
    }

    /// The systems asked for so far and the newest ticket they cover.
    fn take(&self) -> (BTreeSet<u32>, RecheckTicket) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (std::mem::take(&mut pending.0), RecheckTicket(pending.1))
    }

    /// Puts back systems a failed round did not judge.
    fn give_back(&self, systems: BTreeSet<u32>) {
        if systems.is_empty() {
            return;
        }
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .extend(systems);
    }

    fn recorded_up_to(&self, ticket: RecheckTicket) {
        self.recorded.send_if_modified(|done| {
            let newer = ticket.0 > *done;
            if newer {
                *done = ticket.0;
            }
            newer
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_recheck_request_wakes_the_loop_and_is_answered_once_recorded() {
        let rechecks = Rechecks::new();
        let ticket = rechecks.request(7);
        // Nobody runs the checks: a requester does not wait.
        assert!(!rechecks.recorded(ticket, Duration::from_secs(60)).await);

        let listening = rechecks.listen();
        // The request came before the loop waited: it wakes at once.
        tokio::time::timeout(Duration::from_secs(5), rechecks.requested())
            .await
            .expect("a pending request wakes the loop");
        let second = rechecks.request(9);
        let (systems, covered) = rechecks.take();
        assert_eq!(systems.into_iter().collect::<Vec<_>>(), vec![7, 9]);
        assert_eq!(covered, second);
        assert!(!rechecks.recorded(ticket, Duration::from_millis(10)).await);
        rechecks.recorded_up_to(covered);
        assert!(rechecks.recorded(ticket, Duration::from_secs(5)).await);
        assert!(rechecks.recorded(second, Duration::from_secs(5)).await);

        // A later request is not answered by an earlier round; a failed round gives its
        // systems back for the next.
        let third = rechecks.request(11);
        let (systems, covered) = rechecks.take();
        rechecks.give_back(systems);
        assert!(!rechecks.recorded(third, Duration::from_millis(10)).await);
        let (systems, _) = rechecks.take();
        assert_eq!(systems.into_iter().collect::<Vec<_>>(), vec![11]);
        rechecks.recorded_up_to(covered);
        assert!(rechecks.recorded(third, Duration::from_secs(5)).await);

        drop(listening);
        assert!(!rechecks.is_listened_to());
    }
}
