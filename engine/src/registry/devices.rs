//! A system's devices as its Devices tab shows them (S4): every device with its facts (and,
//! for a gateway, what it said it runs when it last connected); microinverters being
//! provisioned (a task asked a gateway to add them; they join the registry once the gateway
//! reports them, see [`Registry::register_reported_micros`]); a gateway's task list; and the
//! requests that queue tasks from the portal, refused when the gateway or serial does not
//! fit.

use rusqlite::{OptionalExtension, Transaction, params};

use super::audit::insert_audit;
use super::gateways::{GatewaySession, GatewayTask, TASK_COLUMNS_OF_T, insert_task, task_row};
use super::{Registry, sql_error};
use crate::Error;
use crate::ids::{DeviceId, Serial};

/// One device of a system.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub id: i64,
    pub serial: u64,
    /// `gateway`, `microinverter`, `meter` or `battery`.
    pub kind: String,
    /// A microinverter's or gateway's SKU, a meter's part number, a battery's SKU.
    pub model: String,
    pub firmware: String,
    /// Microinverters: the AC phase (`A`, `B`, `C`).
    pub phase: Option<String>,
    /// Microinverters: the array they sit in.
    pub array_name: Option<String>,
    /// Meters: `production`, `consumption_net` or `consumption_total`.
    pub meter_kind: Option<String>,
    pub capacity_wh: Option<f64>,
    pub cell_modem_sku: Option<String>,
    /// ISO date.
    pub cell_plan_end: Option<String>,
    pub low_bandwidth: bool,
    pub grid_profile: Option<String>,
    /// `provisioned`, `active` or `retired`.
    pub state: String,
    pub provisioned_us: i64,
    pub first_report_us: Option<i64>,
    pub retired_us: Option<i64>,
    /// The device that took this one's place (R2, R3).
    pub replaced_by: Option<i64>,
    /// Devices other than gateways: the gateway they report through, if known.
    pub gateway_id: Option<i64>,
    /// A battery moved to a new gateway that must be provisioned on it again: since when.
    pub reprovision_since_us: Option<i64>,
    /// Gateways that ever connected: what they said then.
    pub session: Option<GatewaySession>,
}

/// A microinverter a gateway was asked to add that has not reported yet.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisioningRequest {
    pub serial: u64,
    pub gateway_serial: u64,
    pub task: GatewayTask,
}

/// A task as a gateway's task list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLine {
    pub task: GatewayTask,
    /// Who queued it (`None`: the command line or the system itself).
    pub created_by: Option<String>,
}

/// Why a provisioning request was not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionRefusal {
    /// The gateway is not one of this system's gateways in service.
    NotThisSystemsGateway,
    /// No serial was given.
    NoSerials,
    /// The same serial appears twice in the request.
    SerialRepeated { serial: Serial },
    /// A registered device has this serial.
    SerialRegistered {
        serial: Serial,
        kind: String,
        in_this_system: bool,
    },
    /// A provisioning request for this serial is under way (queued, running, or done and
    /// waiting for the microinverter's first report).
    SerialBeingProvisioned {
        serial: Serial,
        task_id: i64,
        in_this_system: bool,
    },
}

const DEVICE_COLUMNS: &str = "d.id, d.serial, d.kind, d.model, d.firmware, d.phase, a.name, \
     d.meter_kind, d.capacity_wh, d.cell_modem_sku, d.cell_plan_end, d.low_bandwidth, \
     d.grid_profile, d.state, d.provisioned_us, d.first_report_us, d.retired_us, \
     d.replaced_by, d.gateway_id, d.reprovision_since_us, \
     s.gateway_id, s.acked_seq, s.firmware, s.software_version, s.last_connected_us";

const DEVICE_FROM: &str = "devices d LEFT JOIN arrays a ON a.id = d.array_id
     LEFT JOIN gateway_sessions s ON s.gateway_id = d.id";

fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let session = match row.get::<_, Option<i64>>(20)? {
        Some(gateway) => Some(GatewaySession {
            gateway: DeviceId(u32::try_from(gateway).unwrap_or(0)),
            acked_seq: row.get::<_, i64>(21)?.max(0).unsigned_abs(),
            firmware: row.get(22)?,
            software_version: row.get(23)?,
            last_connected_us: row.get::<_, Option<i64>>(24)?.unwrap_or(0),
        }),
        None => None,
    };
    Ok(DeviceRecord {
        id: row.get(0)?,
        serial: row.get::<_, i64>(1)?.max(0).unsigned_abs(),
        kind: row.get(2)?,
        model: row.get(3)?,
        firmware: row.get(4)?,
        phase: row.get(5)?,
        array_name: row.get(6)?,
        meter_kind: row.get(7)?,
        capacity_wh: row.get(8)?,
        cell_modem_sku: row.get(9)?,
        cell_plan_end: row.get(10)?,
        low_bandwidth: row.get(11)?,
        grid_profile: row.get(12)?,
        state: row.get(13)?,
        provisioned_us: row.get(14)?,
        first_report_us: row.get(15)?,
        retired_us: row.get(16)?,
        replaced_by: row.get(17)?,
        gateway_id: row.get(18)?,
        reprovision_since_us: row.get(19)?,
        session,
    })
}

/// The serials a provisioning task names, as one row each (`serial`), for tasks in
/// `states`. Serials may be written as text or numbers; anything else (and parameters that
/// are not JSON at all) names nothing.
pub(super) fn requested_serials_sql(states: &str) -> String {
    format!(
        "SELECT t.id AS task_id, t.gateway_id AS gateway_id, CAST(j.value AS INTEGER) AS serial
           FROM gateway_tasks t,
                json_each(CASE WHEN json_valid(t.parameters) THEN t.parameters ELSE '{{}}' END,
                          '$.serials') j
          WHERE t.kind = 'provision_devices' AND t.state IN {states}
            AND (j.type = 'integer'
                 OR (j.type = 'text' AND j.value <> '' AND j.value NOT GLOB '*[^0-9]*'))"
    )
}

/// Task states in which a provisioning request still stands.
pub(super) const LIVE_PROVISIONING: &str = "('queued', 'sent', 'started', 'succeeded')";

/// Whether a gateway of `system_id` was asked to add `serial` by a request that still
/// stands: a microinverter it then reports joins the system whatever its stage.
pub(super) fn provisioning_requested(
    tx: &Transaction<'_>,
    system_id: i64,
    serial: Serial,
) -> Result<bool, Error> {
    tx.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM ({}) r JOIN devices g ON g.id = r.gateway_id
                             WHERE g.system_id = ?1 AND r.serial = ?2)",
            requested_serials_sql(LIVE_PROVISIONING)
        ),
        params![system_id, serial.value() as i64],
        |row| row.get(0),
    )
    .map_err(sql_error(format!(
        "looking for a request to provision {serial}"
    )))
}

impl Registry {
    /// Every device of system `system_id`, retired ones too, gateways first, then
    /// microinverters, meters and batteries, each by serial.
    pub fn system_devices(&self, system_id: i64) -> Result<Vec<DeviceRecord>, Error> {
        let context = format!("listing the devices of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM {DEVICE_FROM} WHERE d.system_id = ?1
                  ORDER BY CASE d.kind WHEN 'gateway' THEN 0 WHEN 'microinverter' THEN 1
                                       WHEN 'meter' THEN 2 ELSE 3 END, d.serial"
            ))
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], device_row)
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }

    /// Device `device_id` if it belongs to system `system_id`.
    pub fn system_device(
        &self,
        system_id: i64,
        device_id: i64,
    ) -> Result<Option<DeviceRecord>, Error> {
        self.connection()
            .query_row(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM {DEVICE_FROM} WHERE d.system_id = ?1 AND d.id = ?2"
                ),
                params![system_id, device_id],
                device_row,
            )
            .optional()
            .map_err(sql_error(format!(
                "reading device {device_id} of system {system_id}"
            )))
    }

    /// Microinverters a gateway of system `system_id` was asked to add that no device has
    /// the serial of yet, newest request first (failed requests too, so the installer sees
    /// why; cancelled ones are gone).
    pub fn provisioning_requests(&self, system_id: i64) -> Result<Vec<ProvisioningRequest>, Error> {
        let context = format!("listing the provisioning requests of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS_OF_T}, g.serial, r.serial
                   FROM ({}) r
                   JOIN gateway_tasks t ON t.id = r.task_id
                   JOIN devices g ON g.id = r.gateway_id
                  WHERE g.system_id = ?1
                    AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.serial = r.serial)
                  ORDER BY t.id DESC, r.serial",
                requested_serials_sql("('queued', 'sent', 'started', 'succeeded', 'failed')")
            ))
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], |row| {
                Ok(ProvisioningRequest {
                    task: task_row(row)?,
                    gateway_serial: row.get::<_, i64>(10)?.max(0).unsigned_abs(),
                    serial: row.get::<_, i64>(11)?.max(0).unsigned_abs(),
                })
            })
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }

    /// Queues one `provision_devices` task asking gateway `gateway_id` of system
    /// `system_id` to add the microinverters `serials`; audited. Refused as a whole (nothing
    /// queued) when the gateway is not one of the system's in service, or for the first
    /// serial that is repeated, that a device anywhere has, or that a request stands for.
    /// Returns the task's id.
    pub fn request_provisioning(
        &self,
        system_id: i64,
        gateway_id: i64,
        serials: &[Serial],
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<Result<i64, ProvisionRefusal>, Error> {
        self.transaction("requesting provisioning", |tx| {
            if !is_gateway_in_service(tx, system_id, gateway_id)? {
                return Ok(Err(ProvisionRefusal::NotThisSystemsGateway));
            }
            if serials.is_empty() {
                return Ok(Err(ProvisionRefusal::NoSerials));
            }
            for (index, serial) in serials.iter().enumerate() {
                if serials[..index].contains(serial) {
                    return Ok(Err(ProvisionRefusal::SerialRepeated { serial: *serial }));
                }
                if let Some(refusal) = provisioning_refusal(tx, system_id, *serial)? {
                    return Ok(Err(refusal));
                }
            }
            let listed: Vec<String> = serials.iter().map(Serial::to_string).collect();
            let parameters = serde_json::json!({ "serials": listed }).to_string();
            let task_id = insert_task(
                tx,
                gateway_id,
                "provision_devices",
                &parameters,
                by_user,
                now_us,
            )?;
            insert_audit(
                tx,
                by_user,
                "device_provision_requested",
                "system",
                Some(system_id),
                &format!("microinverters {} (task {task_id})", listed.join(", ")),
                now_us,
            )?;
            Ok(Ok(task_id))
        })
    }

    /// Queues task `kind` (with JSON `parameters`) for gateway `gateway_id` of system
    /// `system_id`, on behalf of `by_user`; audited. `None` (nothing queued) when the
    /// gateway is not one of the system's in service.
    pub fn queue_system_task(
        &self,
        system_id: i64,
        gateway_id: i64,
        kind: &str,
        parameters: &str,
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<Option<i64>, Error> {
        self.transaction("queueing a task from the portal", |tx| {
            if !is_gateway_in_service(tx, system_id, gateway_id)? {
                return Ok(None);
            }
            let task_id = insert_task(tx, gateway_id, kind, parameters, by_user, now_us)?;
            insert_audit(
                tx,
                by_user,
                "gateway_task_queued",
                "system",
                Some(system_id),
                &format!("{kind} for gateway device {gateway_id} (task {task_id})"),
                now_us,
            )?;
            Ok(Some(task_id))
        })
    }

    /// The kind (`production_on` or `production_off`) of gateway `gateway_id`'s newest
    /// production task that succeeded: whether its microinverters produce now, as far as the
    /// registry knows (`None`: never switched, so on).
    pub fn latest_production_task(&self, gateway_id: i64) -> Result<Option<String>, Error> {
        self.connection()
            .query_row(
                "SELECT kind FROM gateway_tasks
                  WHERE gateway_id = ?1 AND kind IN ('production_on', 'production_off')
                    AND state = 'succeeded'
                  ORDER BY finished_us DESC, id DESC LIMIT 1",
                params![gateway_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error(format!(
                "reading the production state of gateway device {gateway_id}"
            )))
    }

    /// A page of gateway `gateway_id`'s tasks, newest first, with who queued each, and how
    /// many it has in all.
    pub fn gateway_task_page(
        &self,
        gateway_id: i64,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<TaskLine>, u64), Error> {
        let context = format!("listing the tasks of gateway device {gateway_id}");
        let connection = self.connection();
        let total: i64 = connection
            .query_row(
                "SELECT count(*) FROM gateway_tasks WHERE gateway_id = ?1",
                params![gateway_id],
                |row| row.get(0),
            )
            .map_err(sql_error(&context))?;
        let mut statement = connection
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS_OF_T},
                        CASE WHEN u.id IS NULL THEN NULL
                             ELSE trim(u.given_name || ' ' || u.family_name) END
                   FROM gateway_tasks t LEFT JOIN users u ON u.id = t.created_by
                  WHERE t.gateway_id = ?1 ORDER BY t.id DESC LIMIT ?2 OFFSET ?3"
            ))
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![gateway_id, limit, offset], |row| {
                Ok(TaskLine {
                    task: task_row(row)?,
                    created_by: row.get(10)?,
                })
            })
            .map_err(sql_error(&context))?;
        let lines = rows
            .collect::<Result<_, _>>()
            .map_err(sql_error(&context))?;
        Ok((lines, total.max(0).unsigned_abs()))
    }
}

/// Why `serial` cannot be provisioned on system `system_id`, if it cannot: a device has it,
/// or a request for it stands.
pub(super) fn provisioning_refusal(
    tx: &Transaction<'_>,
    system_id: i64,
    serial: Serial,
) -> Result<Option<ProvisionRefusal>, Error> {
    let registered: Option<(i64, String)> = tx
        .query_row(
            "SELECT system_id, kind FROM devices WHERE serial = ?1",
            params![serial.value() as i64],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sql_error(format!("looking up serial {serial}")))?;
    if let Some((owner, kind)) = registered {
        return Ok(Some(ProvisionRefusal::SerialRegistered {
            serial,
            kind,
            in_this_system: owner == system_id,
        }));
    }
    let pending: Option<(i64, i64)> = tx
        .query_row(
            &format!(
                "SELECT r.task_id, g.system_id FROM ({}) r
                   JOIN devices g ON g.id = r.gateway_id
                  WHERE r.serial = ?1 ORDER BY r.task_id DESC LIMIT 1",
                requested_serials_sql(LIVE_PROVISIONING)
            ),
            params![serial.value() as i64],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sql_error(format!("looking for requests for {serial}")))?;
    Ok(pending.map(
        |(task_id, owner)| ProvisionRefusal::SerialBeingProvisioned {
            serial,
            task_id,
            in_this_system: owner == system_id,
        },
    ))
}

pub(super) fn is_gateway_in_service(
    tx: &Transaction<'_>,
    system_id: i64,
    gateway_id: i64,
) -> Result<bool, Error> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE id = ?1 AND system_id = ?2
                          AND kind = 'gateway' AND state <> 'retired')",
        params![gateway_id, system_id],
        |row| row.get(0),
    )
    .map_err(sql_error(format!("checking gateway device {gateway_id}")))
}
