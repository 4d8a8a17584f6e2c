//! Replacements (R2, R3).
//!
//! - A microinverter or AC battery swapped for a new unit ([`Registry::install_replacements`]):
//!   in one transaction the old unit is retired (`replaced_by` the new one), the new one is
//!   registered in its place (same kind, model, array cell, phase and gateway) and a
//!   `provision_devices` task asks that gateway to take it on. The new unit's readings are
//!   its own from its first report; its history continues the old unit's through
//!   `replaced_by` (the query layer's lineage), so nothing is copied.
//! - A gateway swapped for a new one ([`Registry::request_gateway_replacement`]): the new
//!   gateway is registered at once (so ingest admits it) and the replacement stays pending
//!   until its first batch is stored ([`Registry::save_gateway_sessions_at`]); then the old
//!   gateway is retired, every device that reported through it moves to the new one
//!   (batteries are flagged to be provisioned again), and the old gateway's unfinished
//!   tasks are cancelled. Device ids never change, so readings that arrive through either
//!   gateway in between are stored under the same devices.
//!
//! A refusal changes nothing: the transaction is rolled back.

use rusqlite::{OptionalExtension, Transaction, params};

use super::audit::insert_audit;
use super::devices::{ProvisionRefusal, is_gateway_in_service, provisioning_refusal};
use super::gateways::{GatewayTask, TASK_COLUMNS_OF_T, insert_task, task_row};
use super::{Registry, sql_error};
use crate::Error;
use crate::ids::Serial;

/// Why a replacement (R2) was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplacementRefusal {
    /// No device has the original serial.
    OriginalUnknown,
    /// The original serial is another system's device.
    OriginalElsewhere,
    /// Only microinverters and AC batteries are replaced here (a gateway has its own
    /// workflow; meters are not swapped by serial).
    OriginalNotReplaceable { kind: String },
    /// The original unit is retired already (by this replacement, if known).
    OriginalRetired { replaced_by: Option<u64> },
    /// The replacement serial is the original's.
    SameSerial,
    /// A registered device has the replacement serial.
    ReplacementRegistered { kind: String, in_this_system: bool },
    /// A provisioning request for the replacement serial stands.
    ReplacementBeingProvisioned { task_id: i64, in_this_system: bool },
    /// The system has no gateway in service to provision the new unit.
    NoGateway,
}

/// Why a gateway replacement (R3) was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayReplacementRefusal {
    /// The old gateway is not one of this system's gateways.
    NotThisSystemsGateway,
    /// The old gateway is retired already.
    GatewayRetired,
    /// A replacement of this gateway waits for its new gateway already.
    AlreadyPending { new_serial: u64 },
    /// The new serial is the old gateway's.
    SameSerial,
    /// A registered device has the new serial.
    SerialRegistered { kind: String, in_this_system: bool },
    /// A provisioning request for the new serial stands.
    SerialBeingProvisioned { task_id: i64, in_this_system: bool },
}

/// A microinverter or battery replaced by a new unit (R2).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceReplacement {
    pub id: i64,
    /// `microinverter` or `battery`.
    pub kind: String,
    pub old_device_id: i64,
    pub old_serial: u64,
    pub new_device_id: i64,
    pub new_serial: u64,
    /// The gateway asked to provision the new unit.
    pub gateway_id: Option<i64>,
    pub gateway_serial: Option<u64>,
    /// Its `provision_devices` task.
    pub task: Option<GatewayTask>,
    /// The array cell the new unit took over: array name, row, column.
    pub place: Option<(String, i64, i64)>,
    pub requested_us: i64,
    /// When the new unit first reported, if the registry knows.
    pub new_first_report_us: Option<i64>,
}

/// A gateway replacement (R3), pending or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayReplacement {
    pub id: i64,
    pub system_id: i64,
    pub old_gateway_id: i64,
    pub old_serial: u64,
    pub new_gateway_id: i64,
    pub new_serial: u64,
    pub requested_us: i64,
    /// When the new gateway's first batch was stored and the devices moved.
    pub completed_us: Option<i64>,
    pub moved: MovedDevices,
}

/// What a completed gateway replacement moved to the new gateway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MovedDevices {
    pub microinverters: u32,
    pub meters: u32,
    pub batteries: u32,
    /// The old gateway's tasks that had not finished (queued, sent or started).
    pub cancelled_tasks: u32,
}

/// A gateway replacement completed by a save of sessions.
pub type CompletedGatewayReplacement = GatewayReplacement;

/// The unit a replacement takes the place of.
struct Original {
    id: i64,
    system_id: i64,
    kind: String,
    state: String,
    replaced_by_serial: Option<u64>,
    gateway_id: Option<i64>,
    array_id: Option<i64>,
    grid_row: Option<i64>,
    grid_column: Option<i64>,
}

fn original(tx: &Transaction<'_>, serial: Serial) -> Result<Option<Original>, Error> {
    tx.query_row(
        "SELECT d.id, d.system_id, d.kind, d.state, n.serial, d.gateway_id, d.array_id,
                d.grid_row, d.grid_column
           FROM devices d LEFT JOIN devices n ON n.id = d.replaced_by
          WHERE d.serial = ?1",
        params![serial.value() as i64],
        |row| {
            Ok(Original {
                id: row.get(0)?,
                system_id: row.get(1)?,
                kind: row.get(2)?,
                state: row.get(3)?,
                replaced_by_serial: row
                    .get::<_, Option<i64>>(4)?
                    .map(|s| s.max(0).unsigned_abs()),
                gateway_id: row.get(5)?,
                array_id: row.get(6)?,
                grid_row: row.get(7)?,
                grid_column: row.get(8)?,
            })
        },
    )
    .optional()
    .map_err(sql_error(format!("looking up device {serial}")))
}

/// The gateway that provisions a replacement: the old unit's own while it is in service,
/// else the system's oldest gateway in service.
fn provisioning_gateway(
    tx: &Transaction<'_>,
    system_id: i64,
    own: Option<i64>,
) -> Result<Option<i64>, Error> {
    if let Some(gateway) = own
        && is_gateway_in_service(tx, system_id, gateway)?
    {
        return Ok(Some(gateway));
    }
    tx.query_row(
        "SELECT id FROM devices WHERE system_id = ?1 AND kind = 'gateway' AND state <> 'retired'
          ORDER BY provisioned_us, id LIMIT 1",
        params![system_id],
        |row| row.get(0),
    )
    .optional()
    .map_err(sql_error(format!(
        "finding a gateway in service of system {system_id}"
    )))
}

/// One replacement inside the caller's transaction.
fn replace_one(
    tx: &Transaction<'_>,
    system_id: i64,
    original_serial: Serial,
    replacement: Serial,
    by_user: Option<i64>,
    now_us: i64,
) -> Result<Result<i64, ReplacementRefusal>, Error> {
    let Some(old) = original(tx, original_serial)? else {
        return Ok(Err(ReplacementRefusal::OriginalUnknown));
    };
    if old.system_id != system_id {
        return Ok(Err(ReplacementRefusal::OriginalElsewhere));
    }
    if !matches!(old.kind.as_str(), "microinverter" | "battery") {
        return Ok(Err(ReplacementRefusal::OriginalNotReplaceable {
            kind: old.kind,
        }));
    }
    if old.state == "retired" {
        return Ok(Err(ReplacementRefusal::OriginalRetired {
            replaced_by: old.replaced_by_serial,
        }));
    }
    if original_serial == replacement {
        return Ok(Err(ReplacementRefusal::SameSerial));
    }
    match provisioning_refusal(tx, system_id, replacement)? {
        Some(ProvisionRefusal::SerialRegistered {
            kind,
            in_this_system,
            ..
        }) => {
            return Ok(Err(ReplacementRefusal::ReplacementRegistered {
                kind,
                in_this_system,
            }));
        }
        Some(ProvisionRefusal::SerialBeingProvisioned {
            task_id,
            in_this_system,
            ..
        }) => {
            return Ok(Err(ReplacementRefusal::ReplacementBeingProvisioned {
                task_id,
                in_this_system,
            }));
        }
        // `None`: the serial is free (the other refusals are about a whole request).
        _ => {}
    }
    let Some(gateway_id) = provisioning_gateway(tx, system_id, old.gateway_id)? else {
        return Ok(Err(ReplacementRefusal::NoGateway));
    };
    let context = format!("replacing {original_serial} by {replacement}");
    // The cell is UNIQUE: the old unit gives it up before the new one takes it.
    tx.execute(
        "UPDATE devices SET state = 'retired', retired_us = ?2, array_id = NULL,
                grid_row = NULL, grid_column = NULL
          WHERE id = ?1",
        params![old.id, now_us],
    )
    .map_err(sql_error(&context))?;
    tx.execute(
        "INSERT INTO devices (serial, kind, system_id, model, firmware, phase, array_id,
                              grid_row, grid_column, module_stc_w, capacity_wh, state,
                              provisioned_us, gateway_id)
         SELECT ?1, kind, system_id, model, '', phase, ?3, ?4, ?5, module_stc_w, capacity_wh,
                'provisioned', ?6, ?7
           FROM devices WHERE id = ?2",
        params![
            replacement.value() as i64,
            old.id,
            old.array_id,
            old.grid_row,
            old.grid_column,
            now_us,
            gateway_id
        ],
    )
    .map_err(sql_error(&context))?;
    let new_id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE devices SET replaced_by = ?2 WHERE id = ?1",
        params![old.id, new_id],
    )
    .map_err(sql_error(&context))?;
    // The simulated gateway (and the replacement's installer) learn which unit left.
    let parameters = serde_json::json!({
        "serials": [replacement.to_string()],
        "replaces": original_serial.to_string(),
    })
    .to_string();
    let task_id = insert_task(
        tx,
        gateway_id,
        "provision_devices",
        &parameters,
        by_user,
        now_us,
    )?;
    tx.execute(
        "INSERT INTO replacements (system_id, kind, old_device_id, new_device_id, task_id,
                                   requested_by, requested_us, completed_us)
         VALUES (?1, 'device', ?2, ?3, ?4, ?5, ?6, ?6)",
        params![system_id, old.id, new_id, task_id, by_user, now_us],
    )
    .map_err(sql_error(&context))?;
    let replacement_id = tx.last_insert_rowid();
    insert_audit(
        tx,
        by_user,
        "device_replaced",
        "system",
        Some(system_id),
        &format!(
            "{} {original_serial} replaced by {replacement} (task {task_id})",
            old.kind
        ),
        now_us,
    )?;
    Ok(Ok(replacement_id))
}

const DEVICE_REPLACEMENT_COLUMNS: &str = "r.id, o.kind, o.id, o.serial, n.id, n.serial, \
     n.gateway_id, g.serial, a.name, n.grid_row, n.grid_column, r.requested_us, \
     n.first_report_us, r.task_id";

const DEVICE_REPLACEMENT_FROM: &str = "replacements r
     JOIN devices o ON o.id = r.old_device_id
     JOIN devices n ON n.id = r.new_device_id
     LEFT JOIN devices g ON g.id = n.gateway_id
     LEFT JOIN arrays a ON a.id = n.array_id";

fn device_replacement_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<(DeviceReplacement, Option<i64>)> {
    let serial = |value: i64| value.max(0).unsigned_abs();
    let place = match (
        row.get::<_, Option<String>>(8)?,
        row.get::<_, Option<i64>>(9)?,
        row.get::<_, Option<i64>>(10)?,
    ) {
        (Some(name), Some(r), Some(c)) => Some((name, r, c)),
        _ => None,
    };
    Ok((
        DeviceReplacement {
            id: row.get(0)?,
            kind: row.get(1)?,
            old_device_id: row.get(2)?,
            old_serial: serial(row.get(3)?),
            new_device_id: row.get(4)?,
            new_serial: serial(row.get(5)?),
            gateway_id: row.get(6)?,
            gateway_serial: row.get::<_, Option<i64>>(7)?.map(serial),
            task: None,
            place,
            requested_us: row.get(11)?,
            new_first_report_us: row.get(12)?,
        },
        row.get(13)?,
    ))
}

const GATEWAY_REPLACEMENT_COLUMNS: &str = "r.id, r.system_id, o.id, o.serial, n.id, n.serial, \
     r.requested_us, r.completed_us, r.details";

fn gateway_replacement_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GatewayReplacement> {
    let serial = |value: i64| value.max(0).unsigned_abs();
    let details: String = row.get(8)?;
    let details: serde_json::Value = serde_json::from_str(&details).unwrap_or_default();
    let count = |name: &str| {
        details
            .get(name)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    Ok(GatewayReplacement {
        id: row.get(0)?,
        system_id: row.get(1)?,
        old_gateway_id: row.get(2)?,
        old_serial: serial(row.get(3)?),
        new_gateway_id: row.get(4)?,
        new_serial: serial(row.get(5)?),
        requested_us: row.get(6)?,
        completed_us: row.get(7)?,
        moved: MovedDevices {
            microinverters: count("microinverters"),
            meters: count("meters"),
            batteries: count("batteries"),
            cancelled_tasks: count("cancelled_tasks"),
        },
    })
}

impl Registry {
    /// Runs `f` in one transaction, committed only if it returns `Ok(Ok(_))`: a refusal
    /// rolls back whatever `f` did before it found the reason.
    fn refusable<T, R>(
        &self,
        context: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<Result<T, R>, Error>,
    ) -> Result<Result<T, R>, Error> {
        let mut connection = self.connection();
        let tx = connection
            .transaction()
            .map_err(sql_error(format!("{context}: begin")))?;
        let outcome = f(&tx)?;
        if outcome.is_ok() {
            tx.commit()
                .map_err(sql_error(format!("{context}: commit")))?;
        }
        Ok(outcome)
    }

    /// Replaces microinverters or AC batteries of system `system_id`, each `(original
    /// serial, replacement serial)` in order, all in one transaction; audited. The first
    /// refusal (with the index of its pair) rolls every one back. Returns the replacements'
    /// ids.
    pub fn install_replacements(
        &self,
        system_id: i64,
        pairs: &[(Serial, Serial)],
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<Result<Vec<i64>, (usize, ReplacementRefusal)>, Error> {
        self.refusable("installing replacements", |tx| {
            let mut ids = Vec::with_capacity(pairs.len());
            for (index, (original, replacement)) in pairs.iter().enumerate() {
                match replace_one(tx, system_id, *original, *replacement, by_user, now_us)? {
                    Ok(id) => ids.push(id),
                    Err(refusal) => return Ok(Err((index, refusal))),
                }
            }
            Ok(Ok(ids))
        })
    }

    /// One replacement ([`Registry::install_replacements`] of one pair).
    pub fn install_replacement(
        &self,
        system_id: i64,
        original: Serial,
        replacement: Serial,
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<Result<i64, ReplacementRefusal>, Error> {
        Ok(self
            .install_replacements(system_id, &[(original, replacement)], by_user, now_us)?
            .map(|ids| ids.first().copied().unwrap_or(0))
            .map_err(|(_, refusal)| refusal))
    }

    /// The newest `limit` device replacements of system `system_id`, newest first, with
    /// their provisioning tasks.
    pub fn device_replacements(
        &self,
        system_id: i64,
        limit: u32,
    ) -> Result<Vec<DeviceReplacement>, Error> {
        let context = format!("listing the replacements of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {DEVICE_REPLACEMENT_COLUMNS} FROM {DEVICE_REPLACEMENT_FROM}
                  WHERE r.system_id = ?1 AND r.kind = 'device'
                  ORDER BY r.id DESC LIMIT ?2"
            ))
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id, limit], device_replacement_row)
            .map_err(sql_error(&context))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_error(&context))?;
        let mut task_statement = connection
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS_OF_T} FROM gateway_tasks t WHERE t.id = ?1"
            ))
            .map_err(sql_error(&context))?;
        let mut replacements = Vec::with_capacity(rows.len());
        for (mut replacement, task_id) in rows {
            if let Some(task_id) = task_id {
                replacement.task = task_statement
                    .query_row(params![task_id], task_row)
                    .optional()
                    .map_err(sql_error(&context))?;
            }
            replacements.push(replacement);
        }
        Ok(replacements)
    }

    /// Registers `new_serial` as a gateway of system `system_id` that is to replace its
    /// gateway `old_gateway_id` (same model, cell modem and bandwidth mode; the old one's
    /// grid profile is queued as a task for it), pending until the new gateway's first
    /// batch is stored; audited. Returns the replacement.
    pub fn request_gateway_replacement(
        &self,
        system_id: i64,
        old_gateway_id: i64,
        new_serial: Serial,
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<Result<GatewayReplacement, GatewayReplacementRefusal>, Error> {
        self.refusable("requesting a gateway replacement", |tx| {
            let old: Option<(i64, String, i64, Option<String>)> = tx
                .query_row(
                    "SELECT system_id, state, serial, grid_profile FROM devices
                      WHERE id = ?1 AND kind = 'gateway'",
                    params![old_gateway_id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()
                .map_err(sql_error(format!(
                    "reading gateway device {old_gateway_id}"
                )))?;
            let Some((owner, state, old_serial, grid_profile)) = old else {
                return Ok(Err(GatewayReplacementRefusal::NotThisSystemsGateway));
            };
            if owner != system_id {
                return Ok(Err(GatewayReplacementRefusal::NotThisSystemsGateway));
            }
            if state == "retired" {
                return Ok(Err(GatewayReplacementRefusal::GatewayRetired));
            }
            let pending: Option<i64> = tx
                .query_row(
                    "SELECT n.serial FROM replacements r JOIN devices n ON n.id = r.new_device_id
                      WHERE r.kind = 'gateway' AND r.old_device_id = ?1 AND r.completed_us IS NULL",
                    params![old_gateway_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error("looking for a pending replacement"))?;
            if let Some(serial) = pending {
                return Ok(Err(GatewayReplacementRefusal::AlreadyPending {
                    new_serial: serial.max(0).unsigned_abs(),
                }));
            }
            if new_serial.value() as i64 == old_serial {
                return Ok(Err(GatewayReplacementRefusal::SameSerial));
            }
            match provisioning_refusal(tx, system_id, new_serial)? {
                Some(ProvisionRefusal::SerialRegistered {
                    kind,
                    in_this_system,
                    ..
                }) => {
                    return Ok(Err(GatewayReplacementRefusal::SerialRegistered {
                        kind,
                        in_this_system,
                    }));
                }
                Some(ProvisionRefusal::SerialBeingProvisioned {
                    task_id,
                    in_this_system,
                    ..
                }) => {
                    return Ok(Err(GatewayReplacementRefusal::SerialBeingProvisioned {
                        task_id,
                        in_this_system,
                    }));
                }
                // `None`: the serial is free (the other refusals are about a whole request).
                _ => {}
            }
            let context = format!("registering gateway {new_serial}");
            tx.execute(
                "INSERT INTO devices (serial, kind, system_id, model, firmware, cell_modem_sku,
                                      cell_plan_end, low_bandwidth, state, provisioned_us)
                 SELECT ?1, 'gateway', system_id, model, '', cell_modem_sku, cell_plan_end,
                        low_bandwidth, 'provisioned', ?3
                   FROM devices WHERE id = ?2",
                params![new_serial.value() as i64, old_gateway_id, now_us],
            )
            .map_err(sql_error(&context))?;
            let new_gateway_id = tx.last_insert_rowid();
            // The grid profile is known once the new gateway applied it.
            let profile_task = match &grid_profile {
                Some(profile) => Some(insert_task(
                    tx,
                    new_gateway_id,
                    "grid_profile",
                    &serde_json::json!({ "profile": profile }).to_string(),
                    by_user,
                    now_us,
                )?),
                None => None,
            };
            tx.execute(
                "INSERT INTO replacements (system_id, kind, old_device_id, new_device_id, task_id,
                                           requested_by, requested_us)
                 VALUES (?1, 'gateway', ?2, ?3, ?4, ?5, ?6)",
                params![
                    system_id,
                    old_gateway_id,
                    new_gateway_id,
                    profile_task,
                    by_user,
                    now_us
                ],
            )
            .map_err(sql_error(&context))?;
            let id = tx.last_insert_rowid();
            insert_audit(
                tx,
                by_user,
                "gateway_replacement_requested",
                "system",
                Some(system_id),
                &format!(
                    "gateway {:012} to be replaced by {new_serial}",
                    old_serial.max(0)
                ),
                now_us,
            )?;
            Ok(Ok(GatewayReplacement {
                id,
                system_id,
                old_gateway_id,
                old_serial: old_serial.max(0).unsigned_abs(),
                new_gateway_id,
                new_serial: new_serial.value(),
                requested_us: now_us,
                completed_us: None,
                moved: MovedDevices::default(),
            }))
        })
    }

    /// Queues a `provision_devices` task for gateway `gateway_id` of system `system_id`
    /// naming the batteries that must be provisioned on it again (they moved to it with a
    /// gateway replacement); audited. `None` when it has none (or is not the system's gateway
    /// in service). Once the task succeeds their flag clears.
    pub fn queue_reprovisioning(
        &self,
        system_id: i64,
        gateway_id: i64,
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<Option<(i64, Vec<u64>)>, Error> {
        self.transaction("queueing re-provisioning", |tx| {
            if !is_gateway_in_service(tx, system_id, gateway_id)? {
                return Ok(None);
            }
            let serials: Vec<u64> = {
                let mut statement = tx
                    .prepare(
                        "SELECT serial FROM devices
                          WHERE system_id = ?1 AND gateway_id = ?2 AND state <> 'retired'
                            AND reprovision_since_us IS NOT NULL
                          ORDER BY serial",
                    )
                    .map_err(sql_error("listing devices to provision again"))?;
                let rows = statement
                    .query_map(params![system_id, gateway_id], |row| row.get::<_, i64>(0))
                    .map_err(sql_error("listing devices to provision again"))?;
                rows.map(|serial| serial.map(|s| s.max(0).unsigned_abs()))
                    .collect::<Result<_, _>>()
                    .map_err(sql_error("listing devices to provision again"))?
            };
            if serials.is_empty() {
                return Ok(None);
            }
            let listed: Vec<String> = serials.iter().map(|s| format!("{s:012}")).collect();
            let task_id = insert_task(
                tx,
                gateway_id,
                "provision_devices",
                &serde_json::json!({ "serials": listed }).to_string(),
                by_user,
                now_us,
            )?;
            insert_audit(
                tx,
                by_user,
                "devices_reprovision_requested",
                "system",
                Some(system_id),
                &format!("{} (task {task_id})", listed.join(", ")),
                now_us,
            )?;
            Ok(Some((task_id, serials)))
        })
    }

    /// The gateway replacements of system `system_id`, newest first.
    pub fn gateway_replacements(&self, system_id: i64) -> Result<Vec<GatewayReplacement>, Error> {
        let context = format!("listing the gateway replacements of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {GATEWAY_REPLACEMENT_COLUMNS}
                   FROM replacements r JOIN devices o ON o.id = r.old_device_id
                   JOIN devices n ON n.id = r.new_device_id
                  WHERE r.system_id = ?1 AND r.kind = 'gateway'
                  ORDER BY r.id DESC"
            ))
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], gateway_replacement_row)
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }
}

/// Completes the pending gateway replacements whose new gateway is among `reported` (its
/// first batch is stored): the old gateway is retired and replaced by the new one, which
/// is active from now; every device in service that reported through the old gateway (or,
/// when the old gateway was the system's only one, whose gateway was never recorded) moves
/// to the new one, batteries flagged to be provisioned again; the old gateway's unfinished
/// tasks are cancelled. Audited; returns what was completed.
pub(super) fn complete_gateway_replacements(
    tx: &Transaction<'_>,
    reported: &[i64],
    now_us: i64,
) -> Result<Vec<GatewayReplacement>, Error> {
    let context = "completing gateway replacements";
    // Usually none is pending: one indexed read, then nothing.
    let pending: Vec<(i64, i64, i64, i64)> = {
        let mut statement = tx
            .prepare_cached(
                "SELECT id, system_id, old_device_id, new_device_id FROM replacements
                  WHERE kind = 'gateway' AND completed_us IS NULL",
            )
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .map_err(sql_error(context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))?
    };
    let mut completed = Vec::new();
    for (id, system_id, old, new) in pending {
        if !reported.contains(&new) {
            continue;
        }
        let others_in_service: i64 = tx
            .query_row(
                "SELECT count(*) FROM devices WHERE system_id = ?1 AND kind = 'gateway'
                   AND state <> 'retired' AND id NOT IN (?2, ?3)",
                params![system_id, old, new],
                |row| row.get(0),
            )
            .map_err(sql_error(context))?;
        let moving = if others_in_service == 0 {
            "(gateway_id = ?1 OR gateway_id IS NULL)"
        } else {
            "gateway_id = ?1"
        };
        let scope =
            format!("system_id = ?2 AND kind <> 'gateway' AND state <> 'retired' AND {moving}");
        let count_kind = |kind: &str| -> Result<u32, Error> {
            tx.query_row(
                &format!("SELECT count(*) FROM devices WHERE {scope} AND kind = ?3"),
                params![old, system_id, kind],
                |row| row.get(0),
            )
            .map_err(sql_error(context))
        };
        let mut moved = MovedDevices {
            microinverters: count_kind("microinverter")?,
            meters: count_kind("meter")?,
            batteries: count_kind("battery")?,
            cancelled_tasks: 0,
        };
        tx.execute(
            &format!(
                "UPDATE devices SET reprovision_since_us = ?3 WHERE {scope} AND kind = 'battery'"
            ),
            params![old, system_id, now_us],
        )
        .map_err(sql_error(context))?;
        tx.execute(
            &format!("UPDATE devices SET gateway_id = ?3 WHERE {scope}"),
            params![old, system_id, new],
        )
        .map_err(sql_error(context))?;
        let new_serial: i64 = tx
            .query_row(
                "SELECT serial FROM devices WHERE id = ?1",
                params![new],
                |row| row.get(0),
            )
            .map_err(sql_error(context))?;
        moved.cancelled_tasks = u32::try_from(
            tx.execute(
                "UPDATE gateway_tasks SET state = 'cancelled', finished_us = ?2, result = ?3
                  WHERE gateway_id = ?1 AND state IN ('queued', 'sent', 'started')",
                params![
                    old,
                    now_us,
                    format!(
                        "cancelled: the gateway was replaced by {:012} before it finished this task",
                        new_serial.max(0)
                    )
                ],
            )
            .map_err(sql_error(context))?,
        )
        .unwrap_or(u32::MAX);
        tx.execute(
            "UPDATE devices SET state = 'retired', retired_us = ?2, replaced_by = ?3
              WHERE id = ?1",
            params![old, now_us, new],
        )
        .map_err(sql_error(context))?;
        tx.execute(
            "UPDATE devices SET state = 'active', first_report_us = COALESCE(first_report_us, ?2)
              WHERE id = ?1",
            params![new, now_us],
        )
        .map_err(sql_error(context))?;
        let details = serde_json::json!({
            "microinverters": moved.microinverters,
            "meters": moved.meters,
            "batteries": moved.batteries,
            "cancelled_tasks": moved.cancelled_tasks,
        })
        .to_string();
        tx.execute(
            "UPDATE replacements SET completed_us = ?2, details = ?3 WHERE id = ?1",
            params![id, now_us, details],
        )
        .map_err(sql_error(context))?;
        let replacement = tx
            .query_row(
                &format!(
                    "SELECT {GATEWAY_REPLACEMENT_COLUMNS}
                       FROM replacements r JOIN devices o ON o.id = r.old_device_id
                       JOIN devices n ON n.id = r.new_device_id
                      WHERE r.id = ?1"
                ),
                params![id],
                gateway_replacement_row,
            )
            .map_err(sql_error(context))?;
        insert_audit(
            tx,
            None,
            "gateway_replaced",
            "system",
            Some(system_id),
            &format!(
                "gateway {:012} replaced by {:012}: {} microinverter(s), {} meter(s), {} battery(ies) moved; {} task(s) cancelled",
                replacement.old_serial,
                replacement.new_serial,
                moved.microinverters,
                moved.meters,
                moved.batteries,
                moved.cancelled_tasks
            ),
            now_us,
        )?;
        tracing::info!(
            system = system_id,
            old = replacement.old_serial,
            new = replacement.new_serial,
            ?moved,
            "gateway replacement completed"
        );
        completed.push(replacement);
    }
    Ok(completed)
}
