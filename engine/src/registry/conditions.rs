//! Events (conditions of systems and devices) and system statuses, as the fleet checks
//! record them: an evaluation opens the events it finds that are not open yet, ends the
//! open ones it no longer finds, and sets each evaluated system's status.

use std::collections::{HashMap, HashSet};

use rusqlite::params;

use super::{Registry, sql_error};
use crate::Error;

/// A condition found by an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundCondition {
    pub system_id: i64,
    pub device_id: Option<i64>,
    pub code: String,
    /// `info`, `low`, `medium` or `high`.
    pub severity: &'static str,
    pub started_us: i64,
    pub details: String,
}

/// What one evaluation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConditionChanges {
    pub opened: usize,
    pub ended: usize,
    pub statuses_changed: usize,
}

/// A system the checks judge, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSystem {
    pub id: i64,
    pub time_zone: String,
    pub threshold_pct: f64,
    pub threshold_days: i64,
    pub annual_degradation_pct: f64,
    /// ISO date, if the system is operational.
    pub operational_date: Option<String>,
}

/// A device whose reporting the checks watch (not a gateway, not retired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedDevice {
    pub system_id: i64,
    pub device_id: i64,
    /// `microinverter`, `meter` or `battery`.
    pub kind: String,
    pub serial: i64,
    /// When it joined the system (seeded, entered, or registered on its first report).
    pub registered_us: i64,
}

/// A production switch a gateway carried out: a `production_on` or `production_off` task it
/// reported done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductionSwitch {
    pub system_id: i64,
    pub gateway_id: i64,
    /// Switched off (`false`: back on).
    pub off: bool,
    pub at_us: i64,
}

/// Statuses the checks never replace: set by people, not by data.
const MANUAL_STATUSES: &[&str] = &["deactivated", "retired", "not_monitored"];

impl Registry {
    /// Systems the checks judge: past the first activation stage and monitored; by id.
    pub fn checked_systems(&self) -> Result<Vec<CheckedSystem>, Error> {
        let context = "listing the systems the checks judge";
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT id, time_zone, threshold_pct, threshold_days, annual_degradation_pct,
                        operational_date
                 FROM systems
                 WHERE stage <> 'started' AND status NOT IN ('deactivated', 'retired', 'not_monitored')
                 ORDER BY id",
            )
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| {
                Ok(CheckedSystem {
                    id: row.get(0)?,
                    time_zone: row.get(1)?,
                    threshold_pct: row.get(2)?,
                    threshold_days: row.get(3)?,
                    annual_degradation_pct: row.get(4)?,
                    operational_date: row.get(5)?,
                })
            })
            .map_err(sql_error(context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))
    }

    /// Every production switch gateways carried out, oldest first: when each system's
    /// production was off by command.
    pub fn production_switches(&self) -> Result<Vec<ProductionSwitch>, Error> {
        let context = "listing the production switches gateways carried out";
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT g.system_id, t.gateway_id, t.kind = 'production_off', t.finished_us
                   FROM gateway_tasks t JOIN devices g ON g.id = t.gateway_id
                  WHERE t.kind IN ('production_on', 'production_off')
                    AND t.state = 'succeeded' AND t.finished_us IS NOT NULL
                  ORDER BY t.finished_us, t.id",
            )
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| {
                Ok(ProductionSwitch {
                    system_id: row.get(0)?,
                    gateway_id: row.get(1)?,
                    off: row.get(2)?,
                    at_us: row.get(3)?,
                })
            })
            .map_err(sql_error(context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))
    }

    /// Devices whose reporting the checks watch, by system.
    pub fn watched_devices(&self) -> Result<Vec<WatchedDevice>, Error> {
        let context = "listing the devices the checks watch";
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT system_id, id, kind, serial, provisioned_us FROM devices
                 WHERE state <> 'retired' AND kind <> 'gateway'
                 ORDER BY system_id, id",
            )
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| {
                Ok(WatchedDevice {
                    system_id: row.get(0)?,
                    device_id: row.get(1)?,
                    kind: row.get(2)?,
                    serial: row.get(3)?,
                    registered_us: row.get(4)?,
                })
            })
            .map_err(sql_error(context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))
    }

    /// Each system's twelve monthly production estimates (kWh): its own, or the sum of its
    /// arrays', as its estimate level says.
    pub fn monthly_estimates(&self) -> Result<HashMap<i64, [f64; 12]>, Error> {
        let context = "reading the production estimates";
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT e.system_id, e.month, sum(e.energy_kwh)
                 FROM production_estimates e JOIN systems s ON s.id = e.system_id
                 WHERE (s.estimate_level = 'array') = (e.array_id <> 0)
                 GROUP BY 1, 2",
            )
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, f64>(2)?,
                ))
            })
            .map_err(sql_error(context))?;
        let mut monthly: HashMap<i64, [f64; 12]> = HashMap::new();
        for row in rows {
            let (system, month, kwh) = row.map_err(sql_error(context))?;
            if let Ok(index @ 0..=11) = usize::try_from(month - 1) {
                monthly.entry(system).or_insert([0.0; 12])[index] = kwh;
            }
        }
        Ok(monthly)
    }

    /// Records one evaluation of `systems` at `now_us`: `found` are the conditions present
    /// now (of these systems only), `statuses` each system's resulting status. Open events
    /// of these systems that were not found again end at `now_us`. One transaction.
    pub fn record_conditions(
        &self,
        systems: &[i64],
        found: &[FoundCondition],
        statuses: &[(i64, &str)],
        now_us: i64,
    ) -> Result<ConditionChanges, Error> {
        let evaluated: HashSet<i64> = systems.iter().copied().collect();
        self.transaction("recording fleet checks", |tx| {
            let context = || "recording fleet checks".to_owned();
            // Open events by key; a key open twice (never written by this code) ends as well.
            let mut open: HashMap<(i64, Option<i64>, String), i64> = HashMap::new();
            let mut duplicates = Vec::new();
            {
                let mut statement = tx
                    .prepare("SELECT id, system_id, device_id, code FROM events WHERE ended_us IS NULL")
                    .map_err(sql_error(context()))?;
                let rows = statement
                    .query_map([], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?, row.get::<_, Option<i64>>(2)?, row.get::<_, String>(3)?))
                    })
                    .map_err(sql_error(context()))?;
                for row in rows {
                    let (id, system, device, code) = row.map_err(sql_error(context()))?;
                    if evaluated.contains(&system)
                        && let Some(older) = open.insert((system, device, code), id)
                    {
                        duplicates.push(older);
                    }
                }
            }
            let mut changes = ConditionChanges::default();
            for condition in found.iter().filter(|c| evaluated.contains(&c.system_id)) {
                let key = (condition.system_id, condition.device_id, condition.code.clone());
                if open.remove(&key).is_none() {
                    tx.execute(
                        "INSERT INTO events (system_id, device_id, code, severity, started_us, details)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                        params![
                            condition.system_id,
                            condition.device_id,
                            condition.code,
                            condition.severity,
                            condition.started_us,
                            condition.details
                        ],
                    )
                    .map_err(sql_error(context()))?;
                    changes.opened += 1;
                }
            }
            for id in open.values().chain(&duplicates) {
                tx.execute("UPDATE events SET ended_us = ?2 WHERE id = ?1", params![id, now_us])
                    .map_err(sql_error(context()))?;
                changes.ended += 1;
            }
            let manual = MANUAL_STATUSES
                .iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ");
            for (system, status) in statuses {
                changes.statuses_changed += tx
                    .execute(
                        &format!(
                            "UPDATE systems SET status = ?2, status_since_us = ?3
                             WHERE id = ?1 AND status <> ?2 AND status NOT IN ({manual})"
                        ),
                        params![system, status, now_us],
                    )
                    .map_err(sql_error(context()))?;
            }
            Ok(changes)
        })
    }
}
