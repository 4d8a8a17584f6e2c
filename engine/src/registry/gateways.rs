//! What ingest keeps in the registry: each gateway's session (the highest batch acknowledged
//! as durable, what it last said it runs) and the remote tasks queued for it.

use rusqlite::{OptionalExtension, Transaction, params};

use super::devices::requested_serials_sql;
use super::replacements::{CompletedGatewayReplacement, complete_gateway_replacements};
use super::{Registry, sql_error};
use crate::Error;
use crate::ids::DeviceId;

/// A gateway's session state, saved by ingest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySession {
    pub gateway: DeviceId,
    pub acked_seq: u64,
    pub firmware: String,
    pub software_version: String,
    pub last_connected_us: i64,
}

/// Where a task is in its life (the `gateway_tasks.state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskProgress {
    Queued,
    Sent,
    Started,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskProgress {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskProgress::Queued => "queued",
            TaskProgress::Sent => "sent",
            TaskProgress::Started => "started",
            TaskProgress::Succeeded => "succeeded",
            TaskProgress::Failed => "failed",
            TaskProgress::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            TaskProgress::Queued,
            TaskProgress::Sent,
            TaskProgress::Started,
            TaskProgress::Succeeded,
            TaskProgress::Failed,
            TaskProgress::Cancelled,
        ]
        .into_iter()
        .find(|p| p.as_str() == text)
    }

    /// A finished task is never sent again and takes no more reports.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskProgress::Succeeded | TaskProgress::Failed | TaskProgress::Cancelled
        )
    }
}

/// What a gateway can say about a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskReport {
    Started,
    Succeeded,
    Failed,
}

/// One row of `gateway_tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayTask {
    pub id: i64,
    pub gateway: DeviceId,
    /// `production_on`, `reboot`, … (the table's CHECK lists them).
    pub kind: String,
    /// JSON.
    pub parameters: String,
    pub state: TaskProgress,
    pub created_us: i64,
    pub sent_us: Option<i64>,
    pub started_us: Option<i64>,
    pub finished_us: Option<i64>,
    pub result: String,
}

const TASK_COLUMNS: &str = "id, gateway_id, kind, parameters, state, created_us, sent_us, \
                            started_us, finished_us, result";

/// [`TASK_COLUMNS`] of `gateway_tasks t`, for queries that join it.
pub(super) const TASK_COLUMNS_OF_T: &str = "t.id, t.gateway_id, t.kind, t.parameters, t.state, \
     t.created_us, t.sent_us, t.started_us, t.finished_us, t.result";

pub(super) fn task_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GatewayTask> {
    let state: String = row.get(4)?;
    Ok(GatewayTask {
        id: row.get(0)?,
        gateway: DeviceId(row.get(1)?),
        kind: row.get(2)?,
        parameters: row.get(3)?,
        state: TaskProgress::parse(&state).unwrap_or(TaskProgress::Cancelled),
        created_us: row.get(5)?,
        sent_us: row.get(6)?,
        started_us: row.get(7)?,
        finished_us: row.get(8)?,
        result: row.get(9)?,
    })
}

impl Registry {
    /// Saves sessions in one transaction. A saved high-water mark never moves backwards.
    /// A gateway replacement waiting for one of these gateways completes when its first
    /// batch is acknowledged ([`Registry::save_gateway_sessions_at`]).
    pub fn save_gateway_sessions(&self, sessions: &[GatewaySession]) -> Result<(), Error> {
        self.save_gateway_sessions_at(sessions, crate::time::now_micros())
            .map(|_| ())
    }

    /// [`Registry::save_gateway_sessions`] at `now_us`; returns the gateway replacements it
    /// completed: those whose new gateway has a batch acknowledged among `sessions` (see
    /// `replacements::complete_gateway_replacements`).
    pub fn save_gateway_sessions_at(
        &self,
        sessions: &[GatewaySession],
        now_us: i64,
    ) -> Result<Vec<CompletedGatewayReplacement>, Error> {
        self.transaction("saving gateway sessions", |tx| {
            let mut statement = tx
                .prepare_cached(
                    "INSERT INTO gateway_sessions
                         (gateway_id, acked_seq, firmware, software_version, last_connected_us)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (gateway_id) DO UPDATE SET
                         acked_seq = max(acked_seq, excluded.acked_seq),
                         firmware = excluded.firmware,
                         software_version = excluded.software_version,
                         last_connected_us = excluded.last_connected_us",
                )
                .map_err(sql_error("preparing the session upsert"))?;
            for s in sessions {
                statement
                    .execute(params![
                        s.gateway.0,
                        s.acked_seq as i64,
                        s.firmware,
                        s.software_version,
                        s.last_connected_us
                    ])
                    .map_err(sql_error(format!(
                        "saving the session of gateway device {}",
                        s.gateway.0
                    )))?;
            }
            let reported: Vec<i64> = sessions
                .iter()
                .filter(|s| s.acked_seq > 0)
                .map(|s| i64::from(s.gateway.0))
                .collect();
            complete_gateway_replacements(tx, &reported, now_us)
        })
    }

    /// Queues a task for a gateway; returns its id.
    pub fn queue_task(
        &self,
        gateway: DeviceId,
        kind: &str,
        parameters: &str,
        created_by: Option<i64>,
        now_us: i64,
    ) -> Result<i64, Error> {
        self.transaction("queueing a gateway task", |tx| {
            insert_task(
                tx,
                i64::from(gateway.0),
                kind,
                parameters,
                created_by,
                now_us,
            )
        })
    }

    /// One task.
    pub fn task(&self, id: i64) -> Result<Option<GatewayTask>, Error> {
        self.connection()
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM gateway_tasks WHERE id = ?1"),
                params![id],
                task_row,
            )
            .optional()
            .map_err(sql_error(format!("reading task {id}")))
    }

    /// A gateway's tasks, newest first.
    pub fn tasks_of(&self, gateway: DeviceId, limit: usize) -> Result<Vec<GatewayTask>, Error> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM gateway_tasks WHERE gateway_id = ?1
                  ORDER BY id DESC LIMIT ?2"
            ))
            .map_err(sql_error("listing a gateway's tasks"))?;
        let rows = statement
            .query_map(params![gateway.0, limit as i64], task_row)
            .map_err(sql_error("listing a gateway's tasks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql_error("listing a gateway's tasks"))
    }

    /// Gateways with queued tasks.
    pub fn gateways_with_queued_tasks(&self) -> Result<Vec<DeviceId>, Error> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT DISTINCT gateway_id FROM gateway_tasks WHERE state = 'queued'")
            .map_err(sql_error("listing gateways with queued tasks"))?;
        let rows = statement
            .query_map([], |row| Ok(DeviceId(row.get(0)?)))
            .map_err(sql_error("listing gateways with queued tasks"))?;
        rows.collect::<Result<_, _>>()
            .map_err(sql_error("listing gateways with queued tasks"))
    }

    /// Takes the tasks a connected gateway should run: queued ones, and ones sent or started
    /// on an earlier connection that never reported an end (the gateway may have lost them;
    /// it answers a task it already finished with that result again). Marks them sent.
    pub fn take_tasks_to_send(
        &self,
        gateway: DeviceId,
        include_unfinished: bool,
        now_us: i64,
    ) -> Result<Vec<GatewayTask>, Error> {
        self.transaction("taking tasks to send", |tx| {
            let states = if include_unfinished {
                "('queued', 'sent', 'started')"
            } else {
                "('queued')"
            };
            let mut tasks = {
                let mut statement = tx
                    .prepare_cached(&format!(
                        "SELECT {TASK_COLUMNS} FROM gateway_tasks
                          WHERE gateway_id = ?1 AND state IN {states} ORDER BY id"
                    ))
                    .map_err(sql_error("listing tasks to send"))?;
                let rows = statement
                    .query_map(params![gateway.0], task_row)
                    .map_err(sql_error("listing tasks to send"))?;
                rows.collect::<Result<Vec<_>, _>>()
                    .map_err(sql_error("listing tasks to send"))?
            };
            for task in &mut tasks {
                if task.state == TaskProgress::Queued {
                    tx.execute(
                        "UPDATE gateway_tasks SET state = 'sent', sent_us = ?2 WHERE id = ?1",
                        params![task.id, now_us],
                    )
                    .map_err(sql_error(format!("marking task {} sent", task.id)))?;
                    task.state = TaskProgress::Sent;
                    task.sent_us = Some(now_us);
                }
            }
            Ok(tasks)
        })
    }

    /// Records what a gateway reported about one of its tasks. Returns `Ok(false)` when the
    /// task is not this gateway's, or already finished (a late or repeated report).
    pub fn record_task_progress(
        &self,
        gateway: DeviceId,
        id: i64,
        report: TaskReport,
        message: &str,
        now_us: i64,
    ) -> Result<bool, Error> {
        let (progress, column) = match report {
            TaskReport::Started => (TaskProgress::Started, "started_us"),
            TaskReport::Succeeded => (TaskProgress::Succeeded, "finished_us"),
            TaskReport::Failed => (TaskProgress::Failed, "finished_us"),
        };
        self.transaction("recording task progress", |tx| {
            let changed = tx
                .execute(
                    &format!(
                        "UPDATE gateway_tasks SET state = ?3, {column} = ?4, result = ?5
                          WHERE id = ?1 AND gateway_id = ?2
                            AND state IN ('queued', 'sent', 'started')"
                    ),
                    params![id, gateway.0, progress.as_str(), now_us, message],
                )
                .map_err(sql_error(format!("recording progress of task {id}")))?;
            // The gateway applied the profile the task named: remember it.
            if changed == 1 && progress == TaskProgress::Succeeded {
                tx.execute(
                    "UPDATE devices SET grid_profile = json_extract(t.parameters, '$.profile')
                       FROM gateway_tasks t
                      WHERE t.id = ?1 AND t.kind = 'grid_profile' AND devices.id = t.gateway_id",
                    params![id],
                )
                .map_err(sql_error(format!("noting the grid profile of task {id}")))?;
                // The consumption meters behind it now measure in the mode the task named.
                tx.execute(
                    "UPDATE devices
                        SET meter_kind = CASE json_extract(t.parameters, '$.mode')
                                         WHEN 'net' THEN 'consumption_net'
                                         ELSE 'consumption_total' END
                       FROM gateway_tasks t JOIN devices g ON g.id = t.gateway_id
                      WHERE t.id = ?1 AND t.kind = 'meter_mode'
                        AND json_extract(t.parameters, '$.mode') IN ('net', 'total')
                        AND devices.system_id = g.system_id AND devices.kind = 'meter'
                        AND devices.meter_kind IN ('consumption_net', 'consumption_total')",
                    params![id],
                )
                .map_err(sql_error(format!("noting the meter mode of task {id}")))?;
                // A device moved to a new gateway that must be provisioned on it again
                // (a battery, after a gateway replacement) is, once a task naming it ran.
                tx.execute(
                    &format!(
                        "UPDATE devices SET reprovision_since_us = NULL
                          WHERE reprovision_since_us IS NOT NULL AND gateway_id = ?2
                            AND serial IN (SELECT serial FROM ({}) WHERE task_id = ?1)",
                        requested_serials_sql("('succeeded')")
                    ),
                    params![id, gateway.0],
                )
                .map_err(sql_error(format!("noting what task {id} provisioned")))?;
            }
            Ok(changed == 1)
        })
    }
}

pub(super) fn insert_task(
    tx: &Transaction<'_>,
    gateway_id: i64,
    kind: &str,
    parameters: &str,
    created_by: Option<i64>,
    now_us: i64,
) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO gateway_tasks (gateway_id, kind, parameters, created_by, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![gateway_id, kind, parameters, created_by, now_us],
    )
    .map_err(sql_error(format!(
        "queueing task {kind:?} for gateway device {gateway_id}"
    )))?;
    Ok(tx.last_insert_rowid())
}

impl Registry {
    /// The grid profile a gateway applied, if known.
    pub fn gateway_grid_profile(&self, gateway_id: i64) -> Result<Option<String>, Error> {
        self.connection()
            .query_row(
                "SELECT grid_profile FROM devices WHERE id = ?1 AND kind = 'gateway'",
                params![gateway_id],
                |row| row.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(sql_error(format!(
                "reading the grid profile of gateway {gateway_id}"
            )))
    }
}
