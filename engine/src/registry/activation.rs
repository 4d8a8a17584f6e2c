//! Activation (F3): a system an installer enters in the portal, its four-stage checklist,
//! and the devices its gateway reports once it connects.
//!
//! The portal writes what people enter ([`Registry::create_activation`],
//! [`Registry::update_activation`]); the fleet checks write what data shows
//! ([`Registry::register_reported_micros`], [`Registry::complete_activation_steps`]).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{OptionalExtension, Transaction, params};

use super::audit::insert_audit;
use super::devices::provisioning_requested;
use super::outbox::{NewMail, queue_mail};
use super::records::{
    DeviceDetails, NewDevice, NewOwner, NewSystem, complete_step, insert_device, insert_owner,
    insert_system, set_estimates,
};
use super::{Registry, sql_error};
use crate::Error;
use crate::directory::{DeviceDirectory, DeviceRef};
use crate::ids::{DeviceId, Serial, SystemId};
use crate::time::CivilDate;

/// The checklist in order, with the stage each step belongs to (F3).
pub const ACTIVATION_STEPS: [(&str, &str); 9] = [
    ("owner_entered", "started"),
    ("location_entered", "started"),
    ("gateways_entered", "started"),
    ("gateways_reported", "connecting"),
    ("good_communication", "verifying"),
    ("operation_verified", "verifying"),
    ("arrays_built", "ready"),
    ("system_operational", "ready"),
    ("owner_access_granted", "ready"),
];

/// The stage a system with these steps done is in: Connecting once a gateway reported,
/// Verifying once communication and operation are verified, Ready when every step is done.
pub fn stage_of(done: &[&str]) -> &'static str {
    let has = |step: &str| done.contains(&step);
    if ACTIVATION_STEPS.iter().all(|(step, _)| has(step)) {
        "ready"
    } else if has("good_communication") && has("operation_verified") {
        "verifying"
    } else if has("gateways_reported") {
        "connecting"
    } else {
        "started"
    }
}

/// The system's owner as the activation form enters them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerDetails {
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: String,
}

/// What the activation form holds. Validation (required fields, ranges, time zone) is the
/// portal's; the registry refuses what would break its own rules (a serial taken).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActivationForm {
    pub name: String,
    /// `residential` or `commercial`.
    pub kind: &'static str,
    pub installer_reference: String,
    pub third_party_owned: bool,
    pub owner: Option<OwnerDetails>,
    pub street_address: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub time_zone: String,
    pub gateway_serials: Vec<Serial>,
    pub expected_microinverters: Option<u32>,
    /// Permission to operate.
    pub operational_date: Option<CivilDate>,
    pub annual_degradation_pct: f64,
    /// kWh for January … December; `None` keeps no estimate.
    pub monthly_estimate_kwh: Option<[f64; 12]>,
}

impl ActivationForm {
    fn location_entered(&self) -> bool {
        !self.street_address.trim().is_empty()
            && !self.city.trim().is_empty()
            && self.latitude.is_some()
            && self.longitude.is_some()
    }
}

/// One system's activation as the portal shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub system_id: i64,
    pub installer_id: i64,
    pub stage: String,
    pub created_us: i64,
    pub form: ActivationForm,
    /// Step → when it was completed.
    pub steps: BTreeMap<String, i64>,
    /// Microinverters registered (entered or reported by the gateway), not retired.
    pub microinverters: u32,
}

/// A system still activating, with what the checks need to advance it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivatingSystem {
    pub system_id: i64,
    pub stage: String,
    pub steps: Vec<String>,
    pub expected_microinverters: Option<u32>,
    pub operational_date: Option<String>,
    /// IANA name: the permission-to-operate date is a day there.
    pub time_zone: String,
    pub status: String,
    /// When a gateway of the system last connected, if one ever did.
    pub gateway_connected_us: Option<i64>,
    pub microinverters: u32,
    /// Microinverters with a place in an array.
    pub placed_microinverters: u32,
    pub owner_email: Option<String>,
}

/// Columns of a new array's grid: discovered microinverters fill it row by row.
const DISCOVERED_ARRAY_COLUMNS: u16 = 8;

impl Registry {
    /// Creates a system from the activation form, with its owner, gateways, estimate and
    /// the checklist steps the form completes; audited. Returns the system's id.
    pub fn create_activation(
        &self,
        installer_id: i64,
        form: &ActivationForm,
        by_user: i64,
        now_us: i64,
    ) -> Result<i64, Error> {
        self.transaction("creating a system", |tx| {
            let owner_id = match &form.owner {
                Some(owner) => Some(owner_by_email(tx, owner, now_us)?),
                None => None,
            };
            let system_id = insert_system(
                tx,
                &NewSystem {
                    id: None,
                    name: form.name.clone(),
                    kind: form.kind,
                    installer_id,
                    owner_id,
                    installer_reference: form.installer_reference.clone(),
                    third_party_owned: form.third_party_owned,
                    street_address: form.street_address.clone(),
                    city: form.city.clone(),
                    region: form.region.clone(),
                    postal_code: form.postal_code.clone(),
                    country: form.country.clone(),
                    latitude: form.latitude.unwrap_or(0.0),
                    longitude: form.longitude.unwrap_or(0.0),
                    elevation_m: 0.0,
                    time_zone: form.time_zone.clone(),
                    stage: "started",
                    internet_connection: "ethernet",
                    install_date: None,
                    operational_date: form.operational_date,
                    annual_degradation_pct: form.annual_degradation_pct,
                    threshold_pct: 90,
                    threshold_days: 90,
                    created_us: now_us,
                },
            )?;
            if form.latitude.is_none() {
                tx.execute(
                    "UPDATE systems SET latitude = NULL, longitude = NULL WHERE id = ?1",
                    params![system_id],
                )
                .map_err(sql_error("clearing unknown coordinates"))?;
            }
            write_form_extras(tx, system_id, form)?;
            add_gateways(tx, system_id, &form.gateway_serials, now_us)?;
            complete_form_steps(tx, system_id, form, owner_id.is_some(), now_us)?;
            insert_audit(
                tx,
                Some(by_user),
                "system_created",
                "system",
                Some(system_id),
                &form.name,
                now_us,
            )?;
            Ok(system_id)
        })
    }

    /// Saves an edited activation form of a system of `installer_id`: details, owner (a
    /// changed e-mail is a change of owner), added gateways (gateways are not removed
    /// here), estimate; audited.
    pub fn update_activation(
        &self,
        installer_id: i64,
        system_id: i64,
        form: &ActivationForm,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("saving an activation", |tx| {
            let owner_id: Option<Option<i64>> = tx
                .query_row(
                    "SELECT owner_id FROM systems WHERE id = ?1 AND installer_id = ?2",
                    params![system_id, installer_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error("finding the system"))?;
            let Some(mut owner_id) = owner_id else {
                return Err(Error::UnknownSystem { system_id });
            };
            let mut details = String::new();
            if let Some(owner) = &form.owner {
                let current_email: Option<String> = match owner_id {
                    Some(id) => tx
                        .query_row("SELECT email FROM owners WHERE id = ?1", params![id], |r| {
                            r.get(0)
                        })
                        .optional()
                        .map_err(sql_error("reading the owner"))?,
                    None => None,
                };
                match (owner_id, current_email) {
                    (Some(id), Some(email)) if email.eq_ignore_ascii_case(&owner.email) => {
                        tx.execute(
                            "UPDATE owners SET given_name = ?1, family_name = ?2, phone = ?3
                             WHERE id = ?4",
                            params![owner.given_name, owner.family_name, owner.phone, id],
                        )
                        .map_err(sql_error("updating the owner"))?;
                    }
                    _ => {
                        owner_id = Some(owner_by_email(tx, owner, now_us)?);
                        details = format!("owner changed to {}", owner.email);
                        // The new owner has no access yet: the step is to be done again.
                        tx.execute(
                            "DELETE FROM activation_steps
                             WHERE system_id = ?1 AND step = 'owner_access_granted'",
                            params![system_id],
                        )
                        .map_err(sql_error("reopening the owner access step"))?;
                        tx.execute(
                            "UPDATE systems SET stage = 'verifying'
                             WHERE id = ?1 AND stage = 'ready'",
                            params![system_id],
                        )
                        .map_err(sql_error("reopening the activation"))?;
                    }
                }
            }
            tx.execute(
                "UPDATE systems SET name = ?1, kind = ?2, owner_id = ?3, installer_reference = ?4,
                        third_party_owned = ?5, street_address = ?6, city = ?7, region = ?8,
                        postal_code = ?9, country = ?10, latitude = ?11, longitude = ?12,
                        time_zone = ?13, operational_date = ?14, annual_degradation_pct = ?15
                  WHERE id = ?16",
                params![
                    form.name,
                    form.kind,
                    owner_id,
                    form.installer_reference,
                    form.third_party_owned,
                    form.street_address,
                    form.city,
                    form.region,
                    form.postal_code,
                    form.country,
                    form.latitude,
                    form.longitude,
                    form.time_zone,
                    form.operational_date.map(|d| d.to_string()),
                    form.annual_degradation_pct,
                    system_id
                ],
            )
            .map_err(sql_error(format!("saving system {system_id}")))?;
            write_form_extras(tx, system_id, form)?;
            let known: Vec<i64> = column_of_system(
                tx,
                "SELECT serial FROM devices WHERE system_id = ?1 AND kind = 'gateway'",
                system_id,
                "listing gateways",
            )?;
            let added: Vec<Serial> = form
                .gateway_serials
                .iter()
                .copied()
                .filter(|s| !known.contains(&(s.value() as i64)))
                .collect();
            add_gateways(tx, system_id, &added, now_us)?;
            complete_form_steps(tx, system_id, form, owner_id.is_some(), now_us)?;
            insert_audit(
                tx,
                Some(by_user),
                "activation_saved",
                "system",
                Some(system_id),
                &details,
                now_us,
            )?;
            Ok(())
        })
    }

    /// One system's activation (its form as saved, checklist and counts).
    pub fn activation(&self, system_id: i64) -> Result<Option<Activation>, Error> {
        let context = format!("reading the activation of system {system_id}");
        let connection = self.connection();
        let row = connection
            .query_row(
                "SELECT s.installer_id, s.stage, s.created_us, s.name, s.kind,
                        s.installer_reference, s.third_party_owned, s.street_address, s.city,
                        s.region, s.postal_code, s.country, s.latitude, s.longitude,
                        s.time_zone, s.expected_microinverters, s.operational_date,
                        s.annual_degradation_pct, o.given_name, o.family_name, o.email, o.phone
                   FROM systems s LEFT JOIN owners o ON o.id = s.owner_id
                  WHERE s.id = ?1",
                params![system_id],
                |row| {
                    let owner = match row.get::<_, Option<String>>(20)? {
                        Some(email) => Some(OwnerDetails {
                            given_name: row.get(18)?,
                            family_name: row.get(19)?,
                            email,
                            phone: row.get(21)?,
                        }),
                        None => None,
                    };
                    let kind: String = row.get(4)?;
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                        row.get::<_, Option<String>>(16)?,
                        ActivationForm {
                            name: row.get(3)?,
                            kind: if kind == "commercial" {
                                "commercial"
                            } else {
                                "residential"
                            },
                            installer_reference: row.get(5)?,
                            third_party_owned: row.get(6)?,
                            owner,
                            street_address: row.get(7)?,
                            city: row.get(8)?,
                            region: row.get(9)?,
                            postal_code: row.get(10)?,
                            country: row.get(11)?,
                            latitude: row.get(12)?,
                            longitude: row.get(13)?,
                            time_zone: row.get(14)?,
                            gateway_serials: Vec::new(),
                            expected_microinverters: row.get(15)?,
                            operational_date: None,
                            annual_degradation_pct: row.get(17)?,
                            monthly_estimate_kwh: None,
                        },
                    ))
                },
            )
            .optional()
            .map_err(sql_error(context.clone()))?;
        let Some((installer_id, stage, created_us, operational_date, mut form)) = row else {
            return Ok(None);
        };
        form.operational_date = operational_date.and_then(|d| d.parse().ok());
        let serials: Vec<i64> = rows_of_system(
            &connection,
            "SELECT serial FROM devices WHERE system_id = ?1 AND kind = 'gateway'
             ORDER BY provisioned_us, id",
            system_id,
            &context,
            |row| row.get(0),
        )?;
        form.gateway_serials = serials
            .into_iter()
            .filter_map(|serial| u64::try_from(serial).ok().and_then(Serial::new))
            .collect();
        let monthly: Vec<(i64, f64)> = rows_of_system(
            &connection,
            "SELECT month, energy_kwh FROM production_estimates
             WHERE system_id = ?1 AND array_id = 0",
            system_id,
            &context,
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut estimate = [0.0; 12];
        let mut months = 0;
        for (month, kwh) in monthly {
            let slot = usize::try_from(month - 1)
                .ok()
                .and_then(|index| estimate.get_mut(index));
            if let Some(slot) = slot {
                *slot = kwh;
                months += 1;
            }
        }
        if months > 0 {
            form.monthly_estimate_kwh = Some(estimate);
        }
        let steps: BTreeMap<String, i64> = rows_of_system(
            &connection,
            "SELECT step, completed_us FROM activation_steps WHERE system_id = ?1",
            system_id,
            &context,
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .into_iter()
        .collect();
        let microinverters: u32 = connection
            .query_row(
                "SELECT count(*) FROM devices
                 WHERE system_id = ?1 AND kind = 'microinverter' AND state <> 'retired'",
                params![system_id],
                |row| row.get(0),
            )
            .map_err(sql_error(context.clone()))?;
        Ok(Some(Activation {
            system_id,
            installer_id,
            stage,
            created_us,
            form,
            steps,
            microinverters,
        }))
    }

    /// How many checklist steps each system has completed.
    pub fn activation_step_counts(&self) -> Result<HashMap<i64, u32>, Error> {
        let context = "counting activation steps";
        let connection = self.connection();
        let mut statement = connection
            .prepare("SELECT system_id, count(*) FROM activation_steps GROUP BY system_id")
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql_error(context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))
    }

    /// Puts one system's devices and time zone into `directory` (after it was created or
    /// got devices), so the write path resolves them at once.
    pub fn load_system_into(
        &self,
        system_id: i64,
        directory: &DeviceDirectory,
    ) -> Result<(), Error> {
        let context = format!("loading system {system_id} into the directory");
        let connection = self.connection();
        let zone: String = connection
            .query_row(
                "SELECT time_zone FROM systems WHERE id = ?1",
                params![system_id],
                |row| row.get(0),
            )
            .map_err(sql_error(context.clone()))?;
        directory.set_time_zone(SystemId(system_id as u32), &zone)?;
        let mut statement = connection
            .prepare("SELECT serial, id FROM devices WHERE system_id = ?1")
            .map_err(sql_error(context.clone()))?;
        let rows = statement
            .query_map(params![system_id], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, u32>(1)?))
            })
            .map_err(sql_error(context.clone()))?;
        for row in rows {
            let (serial, device) = row.map_err(sql_error(context.clone()))?;
            if let Some(serial) = u64::try_from(serial).ok().and_then(Serial::new) {
                directory.insert(
                    serial,
                    DeviceRef {
                        system: SystemId(system_id as u32),
                        device: DeviceId(device),
                    },
                );
            }
        }
        Ok(())
    }

    /// Registers microinverters a gateway reported that the registry does not have, under
    /// the gateway's system: while it activates (up to the expected number), and at any
    /// stage when someone asked a gateway of the system to provision that serial (a
    /// standing `provision_devices` task); each in the next free cell of the system's first
    /// array (one is created when there is none). Serials registered elsewhere are left
    /// alone; an unknown or retired gateway registers nothing, nor does a Ready system
    /// without a request. Returns the system that got devices.
    pub fn register_reported_micros(
        &self,
        gateway: Serial,
        micros: &[Serial],
        now_us: i64,
    ) -> Result<Option<i64>, Error> {
        self.transaction("registering reported microinverters", |tx| {
            let system: Option<(i64, String, i64)> = tx
                .query_row(
                    "SELECT system_id, state, id FROM devices WHERE serial = ?1 AND kind = 'gateway'",
                    params![gateway.value() as i64],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql_error(format!("finding gateway {gateway}")))?;
            let Some((system_id, state, gateway_id)) = system else {
                return Ok(None);
            };
            if state == "retired" {
                return Ok(None);
            }
            // Devices join by themselves only while the system activates, and no more than
            // the installer expects: a Ready system's newcomers (a neighbour's units heard
            // over the power line, a faulty gateway) need a person (provisioning), whose
            // request lets that one serial in.
            let (stage, expected, registered): (String, Option<i64>, i64) = tx
                .query_row(
                    "SELECT s.stage, s.expected_microinverters,
                            (SELECT count(*) FROM devices d WHERE d.system_id = s.id
                               AND d.kind = 'microinverter' AND d.state <> 'retired')
                       FROM systems s WHERE s.id = ?1",
                    params![system_id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .map_err(sql_error("reading the system's activation"))?;
            let room = if stage == "ready" {
                0
            } else {
                expected.map_or(usize::MAX, |n| (n - registered).max(0) as usize)
            };
            let (mut added, mut joined_by_themselves) = (0, 0);
            for serial in micros {
                let exists: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM devices WHERE serial = ?1)",
                        params![serial.value() as i64],
                        |row| row.get(0),
                    )
                    .map_err(sql_error(format!("looking up serial {serial}")))?;
                if exists {
                    continue;
                }
                let requested = provisioning_requested(tx, system_id, *serial)?;
                if !requested && joined_by_themselves >= room {
                    continue;
                }
                let (array_id, grid_row, grid_column) = next_free_cell(tx, system_id)?;
                let device_id = insert_device(
                    tx,
                    &NewDevice {
                        serial: *serial,
                        system_id,
                        model: String::new(),
                        firmware: String::new(),
                        details: DeviceDetails::Microinverter {
                            phase: 'A',
                            array_id,
                            grid_row,
                            grid_column,
                            module_stc_w: 0.0,
                        },
                        state: "active",
                        provisioned_us: now_us,
                    },
                )?;
                // It reports through the gateway that heard it.
                tx.execute(
                    "UPDATE devices SET first_report_us = ?1, gateway_id = ?3 WHERE id = ?2",
                    params![now_us, device_id, gateway_id],
                )
                .map_err(sql_error("noting the first report"))?;
                added += 1;
                if !requested {
                    joined_by_themselves += 1;
                }
            }
            if added > 0 {
                insert_audit(
                    tx,
                    None,
                    "devices_reported",
                    "system",
                    Some(system_id),
                    &format!("gateway {gateway} reported {added} new microinverter(s)"),
                    now_us,
                )?;
            }
            Ok((added > 0).then_some(system_id))
        })
    }

    /// Systems not yet Ready, with what advancing their checklist needs.
    pub fn activating_systems(&self) -> Result<Vec<ActivatingSystem>, Error> {
        let context = "listing activating systems";
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT s.id, s.stage, s.expected_microinverters, s.operational_date, s.status,
                        (SELECT max(g.last_connected_us) FROM gateway_sessions g
                           JOIN devices d ON d.id = g.gateway_id
                          WHERE d.system_id = s.id),
                        (SELECT count(*) FROM devices d WHERE d.system_id = s.id
                           AND d.kind = 'microinverter' AND d.state <> 'retired'),
                        (SELECT count(*) FROM devices d WHERE d.system_id = s.id
                           AND d.kind = 'microinverter' AND d.state <> 'retired'
                           AND d.array_id IS NOT NULL),
                        o.email,
                        (SELECT group_concat(step) FROM activation_steps a
                          WHERE a.system_id = s.id),
                        s.time_zone
                   FROM systems s LEFT JOIN owners o ON o.id = s.owner_id
                  WHERE s.stage <> 'ready' AND s.status NOT IN ('deactivated', 'retired')
                  ORDER BY s.id",
            )
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map([], |row| {
                let steps: Option<String> = row.get(9)?;
                Ok(ActivatingSystem {
                    system_id: row.get(0)?,
                    stage: row.get(1)?,
                    expected_microinverters: row.get(2)?,
                    operational_date: row.get(3)?,
                    status: row.get(4)?,
                    gateway_connected_us: row.get(5)?,
                    microinverters: row.get(6)?,
                    placed_microinverters: row.get(7)?,
                    owner_email: row.get(8)?,
                    time_zone: row.get(10)?,
                    steps: steps
                        .map(|s| s.split(',').map(str::to_owned).collect())
                        .unwrap_or_default(),
                })
            })
            .map_err(sql_error(context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))
    }

    /// Completes `steps` of a system at `now_us` and sets the stage they lead to. The
    /// `owner_access_granted` step also creates the owner's sign-in (no password yet) and
    /// queues the notice that tells them (the welcome e-mail with the link that sets their
    /// password is the installer's: [`Registry::send_owner_access`]).
    pub fn complete_activation_steps(
        &self,
        system_id: i64,
        steps: &[&'static str],
        now_us: i64,
    ) -> Result<&'static str, Error> {
        self.transaction("advancing an activation", |tx| {
            for step in steps {
                if *step == "owner_access_granted" {
                    grant_owner_access(tx, system_id, now_us)?;
                }
                complete_step(tx, system_id, step, now_us)?;
            }
            let done: Vec<String> = column_of_system(
                tx,
                "SELECT step FROM activation_steps WHERE system_id = ?1",
                system_id,
                "reading steps",
            )?;
            let done: Vec<&str> = done.iter().map(String::as_str).collect();
            let stage = stage_of(&done);
            tx.execute(
                "UPDATE systems SET stage = ?1 WHERE id = ?2",
                params![stage, system_id],
            )
            .map_err(sql_error("setting the stage"))?;
            Ok(stage)
        })
        .inspect(|_| {
            if steps.contains(&"owner_access_granted") {
                self.wake_mail();
            }
        })
    }
}

/// The owner with this e-mail (one person owning several systems is one owner, so their
/// sign-in shows all of them), or a new one.
fn owner_by_email(tx: &Transaction<'_>, owner: &OwnerDetails, now_us: i64) -> Result<i64, Error> {
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM owners WHERE email = ?1 COLLATE NOCASE ORDER BY id LIMIT 1",
            params![owner.email],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql_error("looking up the owner"))?;
    match existing {
        Some(id) => Ok(id),
        None => insert_owner(tx, &new_owner(owner, now_us)),
    }
}

/// The one column `sql` selects for the system `?1`.
fn column_of_system<T: rusqlite::types::FromSql>(
    connection: &rusqlite::Connection,
    sql: &str,
    system_id: i64,
    context: &str,
) -> Result<Vec<T>, Error> {
    rows_of_system(connection, sql, system_id, context, |row| row.get(0))
}

/// The rows `sql` selects for the system `?1`, each made by `row`.
fn rows_of_system<T>(
    connection: &rusqlite::Connection,
    sql: &str,
    system_id: i64,
    context: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, Error> {
    let mut statement = connection.prepare(sql).map_err(sql_error(context))?;
    let rows = statement
        .query_map(params![system_id], row)
        .map_err(sql_error(context))?;
    rows.collect::<Result<_, _>>().map_err(sql_error(context))
}

fn new_owner(owner: &OwnerDetails, now_us: i64) -> NewOwner {
    NewOwner {
        given_name: owner.given_name.clone(),
        family_name: owner.family_name.clone(),
        email: owner.email.clone(),
        phone: owner.phone.clone(),
        language: "en".to_owned(),
        created_us: now_us,
    }
}

/// The columns `NewSystem` does not carry: expected microinverters and the estimate.
fn write_form_extras(
    tx: &Transaction<'_>,
    system_id: i64,
    form: &ActivationForm,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE systems SET expected_microinverters = ?1 WHERE id = ?2",
        params![form.expected_microinverters, system_id],
    )
    .map_err(sql_error("saving the expected microinverters"))?;
    if let Some(estimate) = &form.monthly_estimate_kwh {
        set_estimates(tx, system_id, 0, estimate)?;
    }
    Ok(())
}

fn add_gateways(
    tx: &Transaction<'_>,
    system_id: i64,
    serials: &[Serial],
    now_us: i64,
) -> Result<(), Error> {
    for serial in serials {
        let taken: Option<i64> = tx
            .query_row(
                "SELECT id FROM devices WHERE serial = ?1",
                params![serial.value() as i64],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error(format!("looking up serial {serial}")))?;
        if let Some(device_id) = taken {
            return Err(Error::SerialTaken {
                serial: *serial,
                device_id,
            });
        }
        insert_device(
            tx,
            &NewDevice {
                serial: *serial,
                system_id,
                model: String::new(),
                firmware: String::new(),
                details: DeviceDetails::Gateway {
                    cell_modem_sku: None,
                    cell_plan_end: None,
                    low_bandwidth: false,
                    grid_profile: None,
                },
                state: "provisioned",
                provisioned_us: now_us,
            },
        )?;
    }
    Ok(())
}

/// The steps the form itself completes.
fn complete_form_steps(
    tx: &Transaction<'_>,
    system_id: i64,
    form: &ActivationForm,
    has_owner: bool,
    now_us: i64,
) -> Result<(), Error> {
    if has_owner {
        complete_step(tx, system_id, "owner_entered", now_us)?;
    }
    if form.location_entered() {
        complete_step(tx, system_id, "location_entered", now_us)?;
    }
    let gateways: i64 = tx
        .query_row(
            "SELECT count(*) FROM devices WHERE system_id = ?1 AND kind = 'gateway'",
            params![system_id],
            |row| row.get(0),
        )
        .map_err(sql_error("counting gateways"))?;
    if gateways > 0 {
        complete_step(tx, system_id, "gateways_entered", now_us)?;
    }
    Ok(())
}

/// The next free cell of the system's first array, row by row; the grid grows a row when
/// it is full, and an array is created when the system has none.
fn next_free_cell(tx: &Transaction<'_>, system_id: i64) -> Result<(i64, u16, u16), Error> {
    let array: Option<(i64, u16, u16)> = tx
        .query_row(
            "SELECT id, grid_rows, grid_columns FROM arrays WHERE system_id = ?1
             ORDER BY position, id LIMIT 1",
            params![system_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(sql_error("finding the system's first array"))?;
    let (array_id, rows, columns) = match array {
        Some(array) => array,
        None => {
            tx.execute(
                "INSERT INTO arrays (system_id, name, tilt_deg, azimuth_deg, grid_rows,
                                     grid_columns, position)
                 VALUES (?1, 'Array 1', 30, 180, 1, ?2, 0)",
                params![system_id, DISCOVERED_ARRAY_COLUMNS],
            )
            .map_err(sql_error("creating an array"))?;
            (tx.last_insert_rowid(), 1, DISCOVERED_ARRAY_COLUMNS)
        }
    };
    let placed: u32 = tx
        .query_row(
            "SELECT count(*) FROM devices WHERE array_id = ?1",
            params![array_id],
            |row| row.get(0),
        )
        .map_err(sql_error("counting placed microinverters"))?;
    // Cells fill row-major and are never freed here, so the count is the next cell.
    let columns = columns.max(1);
    let mut cell = placed;
    loop {
        let (row, column) = (
            (cell / u32::from(columns)) as u16,
            (cell % u32::from(columns)) as u16,
        );
        let taken: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM devices
                                 WHERE array_id = ?1 AND grid_row = ?2 AND grid_column = ?3)",
                params![array_id, row, column],
                |r| r.get(0),
            )
            .map_err(sql_error("looking for a free cell"))?;
        if !taken {
            if row >= rows {
                tx.execute(
                    "UPDATE arrays SET grid_rows = ?1 WHERE id = ?2",
                    params![row + 1, array_id],
                )
                .map_err(sql_error("growing the array"))?;
            }
            return Ok((array_id, row, column));
        }
        cell += 1;
    }
}

/// The sign-in of the system's owner, created if needed (no password until they set one
/// through a link): `(user id, e-mail, created now)`. `None` when the system has no owner,
/// or the owner's e-mail already signs in someone who is not this owner.
pub(super) fn ensure_owner_user(
    tx: &Transaction<'_>,
    system_id: i64,
    now_us: i64,
) -> Result<Option<(i64, String, bool)>, Error> {
    let owner: Option<(i64, String, String, String, String, String)> = tx
        .query_row(
            "SELECT o.id, o.email, o.given_name, o.family_name, o.phone, o.language
               FROM systems s JOIN owners o ON o.id = s.owner_id WHERE s.id = ?1",
            params![system_id],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            },
        )
        .optional()
        .map_err(sql_error("reading the owner"))?;
    let Some((owner_id, email, given_name, family_name, phone, language)) = owner else {
        return Ok(None);
    };
    let existing: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT id, owner_id FROM users WHERE email = ?1",
            params![email],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sql_error("looking up the owner's e-mail"))?;
    match existing {
        Some((user_id, Some(id))) if id == owner_id => Ok(Some((user_id, email, false))),
        Some(_) => Ok(None),
        None => {
            // The owner's sign-in speaks the language their mails are written in.
            tx.execute(
                "INSERT INTO users (email, given_name, family_name, phone, language, role,
                                    owner_id, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'owner', ?6, ?7)",
                params![
                    email,
                    given_name,
                    family_name,
                    phone,
                    language,
                    owner_id,
                    now_us
                ],
            )
            .map_err(sql_error(format!("adding owner {email:?}")))?;
            Ok(Some((tx.last_insert_rowid(), email, true)))
        }
    }
}

/// Gives the system's owner a sign-in once the system is operational, and queues the
/// notice that says so, in the owner's language (the link that sets the password comes
/// from the installer: [`Registry::send_owner_access`]). The fleet checks call this, so
/// the notice's two wordings live here rather than with the portal's.
fn grant_owner_access(tx: &Transaction<'_>, system_id: i64, now_us: i64) -> Result<(), Error> {
    let Some((_, email, true)) = ensure_owner_user(tx, system_id, now_us)? else {
        return Ok(());
    };
    let (system_name, language): (String, String) = tx
        .query_row(
            "SELECT s.name, o.language FROM systems s JOIN owners o ON o.id = s.owner_id
              WHERE s.id = ?1",
            params![system_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(sql_error("reading the system's name"))?;
    let french = language.eq_ignore_ascii_case("fr");
    let (subject, body_text) = if french {
        (
            format!("Votre installation solaire {system_name} est opérationnelle"),
            format!(
                "Bonjour,\n\nvotre installation {system_name} est opérationnelle : vous pouvez \
                 désormais suivre sa production dans Sunfleet avec cette adresse e-mail. Votre \
                 installateur vous envoie par e-mail le lien qui définit votre mot de passe.\n"
            ),
        )
    } else {
        (
            format!("Your solar system {system_name} is operational"),
            format!(
                "Hello,\n\nyour system {system_name} is operational and you can now follow \
                 its production in Sunfleet with this e-mail address. Your installer e-mails \
                 you the link that sets your password.\n"
            ),
        )
    };
    queue_mail(
        tx,
        &NewMail {
            to_address: email,
            subject,
            body_text,
            kind: "owner_operational",
            language: if french { "fr" } else { "en" }.to_owned(),
            system_id: Some(system_id),
            secret: None,
        },
        now_us,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_follows_the_checklist() {
        assert_eq!(stage_of(&[]), "started");
        assert_eq!(
            stage_of(&["owner_entered", "location_entered", "gateways_entered"]),
            "started"
        );
        assert_eq!(
            stage_of(&["gateways_entered", "gateways_reported"]),
            "connecting"
        );
        assert_eq!(
            stage_of(&[
                "gateways_reported",
                "good_communication",
                "operation_verified"
            ]),
            "verifying"
        );
        let all: Vec<&str> = ACTIVATION_STEPS.iter().map(|(s, _)| *s).collect();
        assert_eq!(stage_of(&all), "ready");
    }
}
