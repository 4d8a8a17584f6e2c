//! The fleet registry: an embedded SQLite database in the data folder holding everything
//! that is not telemetry: companies, users, owners, systems, arrays, devices and their
//! lifecycle, estimates, the activation checklist, events, gateway tasks, service
//! requests with their status history, an audit log and an e-mail outbox.
//!
//! The schema is created and upgraded by numbered migrations (`migrations/NNNN_*.sql`,
//! applied in order in one transaction each; `PRAGMA user_version` records how far). The
//! database runs in WAL mode with `synchronous = FULL`, so a committed change survives a
//! power loss. Serial → device lookups for the write path are served from memory
//! ([`Registry::load_directory`] fills a [`DeviceDirectory`]).

mod access;
mod activation;
mod api_keys;
mod arrow_tables;
mod audit;
mod conditions;
mod devices;
mod gateways;
mod kiosk_links;
mod members;
mod outbox;
mod owners;
pub mod records;
mod replacements;
mod report_feeds;
mod returns;
mod secret_links;
mod service_requests;
mod sessions;
mod system_details;
mod system_settings;
mod users;

pub use activation::{
    ACTIVATION_STEPS, ActivatingSystem, Activation, ActivationForm, OwnerDetails, stage_of,
};
pub use api_keys::{API_KEY_PREFIX, ApiKeySummary, NewApiKey};
pub use arrow_tables::{ColumnIn, SQL_TABLES};
pub use audit::AuditEntry;
pub use conditions::{
    CheckedSystem, ConditionChanges, FoundCondition, ProductionSwitch, WatchedDevice,
};
pub use devices::{DeviceRecord, ProvisionRefusal, ProvisioningRequest, TaskLine};
pub use gateways::{GatewaySession, GatewayTask, TaskProgress, TaskReport};
pub use kiosk_links::KIOSK_TOKEN_PREFIX;
pub use members::{Grant, INVITATION_LIFETIME_US, Invitation, NewMember, Subcontractor};
pub use outbox::{
    MAIL_LEASE_US, MAIL_MAX_ATTEMPTS, MailRecord, MailState, NewMail, OutgoingMail,
    mail_backoff_us, queue_mail,
};
pub use owners::{OwnerAccess, OwnerChange, OwnerInfo, OwnerUpdate};
pub use replacements::{
    CompletedGatewayReplacement, DeviceReplacement, GatewayReplacement, GatewayReplacementRefusal,
    MovedDevices, ReplacementRefusal,
};
pub use report_feeds::{FEED_TOKEN_PREFIX, NewReportFeed, ReportFeed};
pub use returns::{
    MAX_RETURN_DEVICES, NewReturn, ReturnCandidate, ReturnContacts, ReturnDeviceType,
    ReturnRefusal, po_box,
};
pub use secret_links::{NewSecret, SecretSummary};
pub use service_requests::{
    HistoryEntry, NewServiceRequest, RequestDevice, RequestState, ServiceRequestRecord,
    TransitionRefusal, rma_number, service_request_number, ships_hardware,
};
pub use sessions::{NewSession, SessionUser, random_token};
pub use system_details::{
    DeviceCounts, EventFilter, EventState, KioskContent, SystemDetails, SystemEvent,
};
pub use system_settings::{
    ArrayLayout, ArraySpec, CompanyContact, EstimateSettings, GridPlace, InstallerSettings,
    LaborClaim, Placement, ReturnRequest, SystemArray, SystemDevice,
};
pub use users::{MIN_PASSWORD_CHARS, StandingSignIn, UserRecord, UserRole, UserSummary};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::Error;
use crate::directory::{DeviceDirectory, DeviceRef};
use crate::ids::{DeviceId, Serial, SystemId};

pub use records::*;
pub use rusqlite::Transaction;

/// Migrations in order; the database's `user_version` is how many have been applied.
const MIGRATIONS: &[(&str, &str)] = &[
    ("0001_initial", include_str!("migrations/0001_initial.sql")),
    (
        "0002_gateway_tasks",
        include_str!("migrations/0002_gateway_tasks.sql"),
    ),
    (
        "0003_portal_sessions",
        include_str!("migrations/0003_portal_sessions.sql"),
    ),
    (
        "0004_activation_invitations_keys",
        include_str!("migrations/0004_activation_invitations_keys.sql"),
    ),
    (
        "0005_kiosk_links",
        include_str!("migrations/0005_kiosk_links.sql"),
    ),
    (
        "0006_service_request_history",
        include_str!("migrations/0006_service_request_history.sql"),
    ),
    (
        "0007_device_gateways",
        include_str!("migrations/0007_device_gateways.sql"),
    ),
    (
        "0008_mail_delivery",
        include_str!("migrations/0008_mail_delivery.sql"),
    ),
    (
        "0009_production_off_status",
        include_str!("migrations/0009_production_off_status.sql"),
    ),
    (
        "0010_retired_gateways",
        include_str!("migrations/0010_retired_gateways.sql"),
    ),
];

/// The registry database.
pub struct Registry {
    connection: Mutex<Connection>,
    path: PathBuf,
    /// Woken when a mail is queued, so the deliverer sends it at once.
    mail_queued: Arc<Notify>,
}

pub(crate) fn sql_error(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> Error {
    let context = context.into();
    move |source| Error::Registry { context, source }
}

impl Registry {
    /// Opens (creating if needed) the registry at `path` and brings its schema up to date.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, Error> {
        let path = path.into();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let opening = format!("opening {}", path.display());
        let mut connection = Connection::open(&path).map_err(sql_error(opening.clone()))?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = FULL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(sql_error(opening))?;
        migrate(&mut connection, &path)?;
        Ok(Self {
            connection: Mutex::new(connection),
            path,
            mail_queued: Arc::new(Notify::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many migrations the database has.
    pub fn schema_version(&self) -> Result<u32, Error> {
        self.connection()
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(sql_error("reading the schema version"))
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in one transaction, committed if it returns `Ok`.
    pub fn transaction<T>(
        &self,
        context: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut connection = self.connection();
        let tx = connection
            .transaction()
            .map_err(sql_error(format!("{context}: begin")))?;
        let value = f(&tx)?;
        tx.commit()
            .map_err(sql_error(format!("{context}: commit")))?;
        Ok(value)
    }

    /// Runs a read-only `f` against the database.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, Error>) -> Result<T, Error> {
        f(&self.connection())
    }

    /// Fills `directory` with every device (retired ones too: their history stays theirs)
    /// and every system's time zone. Returns the number of devices.
    pub fn load_directory(&self, directory: &DeviceDirectory) -> Result<usize, Error> {
        let connection = self.connection();
        let mut devices = connection
            .prepare("SELECT serial, system_id, id FROM devices")
            .map_err(sql_error("listing devices"))?;
        let rows = devices
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, u32>(1)?,
                    row.get::<_, u32>(2)?,
                ))
            })
            .map_err(sql_error("listing devices"))?;
        let mut count = 0;
        for row in rows {
            let (serial, system, device) = row.map_err(sql_error("reading a device"))?;
            let serial = u64::try_from(serial)
                .ok()
                .and_then(Serial::new)
                .ok_or_else(|| Error::InvalidSerial {
                    text: serial.to_string(),
                })?;
            directory.insert(
                serial,
                DeviceRef {
                    system: SystemId(system),
                    device: DeviceId(device),
                },
            );
            count += 1;
        }
        let mut zones = connection
            .prepare("SELECT id, time_zone FROM systems")
            .map_err(sql_error("listing time zones"))?;
        let rows = zones
            .query_map([], |row| {
                Ok((row.get::<_, u32>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(sql_error("listing time zones"))?;
        for row in rows {
            let (system, zone) = row.map_err(sql_error("reading a time zone"))?;
            directory.set_time_zone(SystemId(system), &zone)?;
        }
        Ok(count)
    }

    /// The gateway with this serial, if the registry knows one.
    pub fn gateway(&self, serial: Serial) -> Result<Option<GatewayInfo>, Error> {
        self.connection()
            .query_row(
                "SELECT d.id, d.system_id, d.state, COALESCE(s.acked_seq, 0)
                   FROM devices d LEFT JOIN gateway_sessions s ON s.gateway_id = d.id
                  WHERE d.serial = ?1 AND d.kind = 'gateway'",
                params![serial.value() as i64],
                |row| {
                    Ok(GatewayInfo {
                        device: DeviceId(row.get(0)?),
                        system: SystemId(row.get(1)?),
                        retired: row.get::<_, String>(2)? == "retired",
                        acked_seq: row.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .optional()
            .map_err(sql_error(format!("looking up gateway {serial}")))
    }

    /// Revokes a gateway's access (a stolen or compromised unit): it is retired, so its
    /// certificate gets it in nowhere, ingest closes its open connection within about a
    /// second, and its unfinished tasks are cancelled. Audited. Refused for a serial that
    /// is not a registered gateway still in service.
    pub fn revoke_gateway(
        &self,
        serial: Serial,
        by_user: Option<i64>,
        now_us: i64,
    ) -> Result<DeviceId, Error> {
        self.transaction("revoking a gateway", |tx| {
            let device: Option<u32> = tx
                .query_row(
                    "SELECT id FROM devices
                      WHERE serial = ?1 AND kind = 'gateway' AND state <> 'retired'",
                    params![serial.value() as i64],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error(format!("looking up gateway {serial}")))?;
            let Some(device) = device else {
                return Err(Error::NoActiveGateway { serial });
            };
            tx.execute(
                "UPDATE devices SET state = 'retired', retired_us = ?2 WHERE id = ?1",
                params![device, now_us],
            )
            .map_err(sql_error(format!("retiring gateway {serial}")))?;
            tx.execute(
                "UPDATE gateway_tasks SET state = 'cancelled', finished_us = ?2,
                        result = 'the gateway was revoked'
                  WHERE gateway_id = ?1 AND state IN ('queued', 'sent', 'started')",
                params![device, now_us],
            )
            .map_err(sql_error(format!(
                "cancelling the tasks of gateway {serial}"
            )))?;
            audit::insert_audit(
                tx,
                by_user,
                "gateway_revoked",
                "device",
                Some(i64::from(device)),
                &serial.to_string(),
                now_us,
            )?;
            Ok(DeviceId(device))
        })
    }

    /// Gateways retired at or after `since_us` (ingest closes their open connections).
    pub fn gateways_retired_since(&self, since_us: i64) -> Result<Vec<Serial>, Error> {
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT serial FROM devices
                  WHERE kind = 'gateway' AND state = 'retired' AND retired_us >= ?1",
            )
            .map_err(sql_error("listing retired gateways"))?;
        let serials = statement
            .query_map(params![since_us], |row| row.get::<_, i64>(0))
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql_error("listing retired gateways"))?;
        Ok(serials
            .into_iter()
            .filter_map(|serial| u64::try_from(serial).ok().and_then(Serial::new))
            .collect())
    }

    /// Counts rows of a table (for tests and the status page).
    pub fn count(&self, table: &str) -> Result<u64, Error> {
        if !table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(Error::Registry {
                context: format!("counting {table:?}"),
                source: rusqlite::Error::InvalidParameterName(table.to_owned()),
            });
        }
        self.connection()
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
                row.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(sql_error(format!("counting {table}")))
    }
}

/// What ingest needs to know about a gateway when it connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayInfo {
    pub device: DeviceId,
    pub system: SystemId,
    pub retired: bool,
    /// Highest batch sequence number acknowledged to it.
    pub acked_seq: u64,
}

fn migrate(connection: &mut Connection, path: &Path) -> Result<(), Error> {
    let context = |what: &str| format!("{what} ({})", path.display());
    let applied: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql_error(context("reading the schema version")))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(Error::RegistryTooNew {
            path: path.to_path_buf(),
            version: applied,
            known: MIGRATIONS.len(),
        });
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    // Rebuilding a table (the only way to change a CHECK constraint in SQLite) drops the
    // old one, which foreign keys would refuse; SQLite's documented procedure turns them
    // off outside the transaction and checks them before committing.
    connection
        .pragma_update(None, "foreign_keys", false)
        .map_err(sql_error(context("turning foreign keys off to migrate")))?;
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = connection.transaction().map_err(sql_error(context(name)))?;
        tx.execute_batch(sql).map_err(sql_error(context(name)))?;
        let violation: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |row| row.get(0))
            .optional()
            .map_err(sql_error(context(name)))?;
        if let Some(table) = violation {
            return Err(Error::RegistryMigration {
                path: path.to_path_buf(),
                migration: name,
                reason: format!("it would leave a dangling reference in table {table}"),
            });
        }
        tx.pragma_update(None, "user_version", (index + 1) as i64)
            .map_err(sql_error(context(name)))?;
        tx.commit().map_err(sql_error(context(name)))?;
        tracing::info!(migration = name, "registry schema upgraded");
    }
    connection
        .pragma_update(None, "foreign_keys", true)
        .map_err(sql_error(context("turning foreign keys back on")))?;
    Ok(())
}
