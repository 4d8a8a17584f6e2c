//! A system's settings as its installers change them (T1–T5): the installer reference and
//! the switches beside it, the production estimate and threshold, the arrays and where each
//! microinverter sits on them, and labour reimbursement claims. Each save is one
//! transaction with its audit entry; the portal validates what people type, the registry
//! refuses what would break its own rules (another system's array or device, a cell
//! outside its array's grid).

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{OptionalExtension, Transaction, params};

use super::audit::insert_audit;
use super::records::set_estimates;
use super::service_requests::{NewServiceRequest, insert_service_request, service_request_number};
use super::system_details::KioskContent;
use super::{Registry, sql_error};
use crate::Error;
use crate::time::CivilDate;

/// The "Installer reference and more" section (T3).
#[derive(Debug, Clone, PartialEq)]
pub struct InstallerSettings {
    pub installer_reference: String,
    pub other_references: String,
    /// `ethernet`, `wifi` or `cellular`.
    pub internet_connection: &'static str,
    /// One of the portal's attachment types, or empty when not said.
    pub attachment_type: String,
    /// Permission to operate: operational as of this date, or not yet.
    pub operational_date: Option<CivilDate>,
    pub weather_enabled: bool,
    /// `microinverters` or `meter`.
    pub production_source: &'static str,
    pub kiosk_content: KioskContent,
}

/// The production estimate and threshold (T4).
#[derive(Debug, Clone, PartialEq)]
pub struct EstimateSettings {
    /// `system` or `array`: which estimate the production check uses.
    pub level: &'static str,
    /// The system-level estimate (kWh, January … December); `None` removes it.
    pub system_monthly_kwh: Option<[f64; 12]>,
    /// Each array's estimate; `None` removes it. Arrays not listed keep theirs.
    pub array_monthly_kwh: Vec<(i64, Option<[f64; 12]>)>,
    pub annual_degradation_pct: f64,
    /// 50 to 95 in steps of 5.
    pub threshold_pct: u8,
    /// 30 or 90.
    pub threshold_days: u16,
}

/// One of a system's arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemArray {
    pub id: i64,
    pub name: String,
    pub tilt_deg: f64,
    pub azimuth_deg: f64,
    pub grid_rows: u16,
    pub grid_columns: u16,
    /// Microinverters (one per module) placed on it, retired ones left out.
    pub modules: u32,
}

/// Where a microinverter sits: `(array, row, column)`, counted from 0.
pub type GridPlace = (i64, u16, u16);

/// A microinverter or battery of a system, with its place when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemDevice {
    pub id: i64,
    pub serial: u64,
    /// `microinverter` or `battery`.
    pub kind: String,
    pub model: String,
    /// `provisioned`, `active` or `retired`.
    pub state: String,
    pub provisioned_us: i64,
    pub place: Option<GridPlace>,
}

/// An array as the builder saves it: `id` is `None` for a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct ArraySpec {
    pub id: Option<i64>,
    pub name: String,
    pub tilt_deg: f64,
    pub azimuth_deg: f64,
    pub grid_rows: u16,
    pub grid_columns: u16,
}

/// Where one microinverter goes: on `arrays[array]` of the layout at `(row, column)`
/// (from 0), or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub device_id: i64,
    pub cell: Option<(usize, u16, u16)>,
}

/// The arrays of a system and the place of its microinverters, as the builder saves them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ArrayLayout {
    /// In display order.
    pub arrays: Vec<ArraySpec>,
    /// Existing arrays to remove (their microinverters must be placed elsewhere or not at
    /// all).
    pub deleted: Vec<i64>,
    /// Microinverters not listed keep their place while it is still on the grid and free.
    pub placements: Vec<Placement>,
}

/// A labour reimbursement claim the portal found eligible (T2).
#[derive(Debug, Clone, PartialEq)]
pub struct LaborClaim {
    pub device_id: i64,
    pub serial: u64,
    pub defect_date: CivilDate,
    pub claim_date: CivilDate,
    pub labor_hours: f64,
    pub return_done: bool,
    pub description: String,
    /// The return request (R1) the claimed unit went back under, when the claim follows
    /// one: it must be a return of this system naming the unit, not rejected.
    pub return_request: Option<i64>,
}

/// A return (RMA) request of one of a system's devices (a return naming several devices
/// gives one of these per device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReturnRequest {
    pub id: i64,
    pub device_id: i64,
    pub state: String,
    pub rma_number: Option<String>,
}

/// An installer company's contact details.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompanyContact {
    pub name: String,
    pub city: String,
    pub country: String,
    pub phone: String,
    pub email: String,
}

impl Registry {
    /// System `system_id`'s arrays in display order, with how many modules each holds.
    pub fn system_arrays(&self, system_id: i64) -> Result<Vec<SystemArray>, Error> {
        let context = format!("reading the arrays of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT a.id, a.name, a.tilt_deg, a.azimuth_deg, a.grid_rows, a.grid_columns,
                        (SELECT count(*) FROM devices d
                          WHERE d.array_id = a.id AND d.state <> 'retired')
                   FROM arrays a WHERE a.system_id = ?1 ORDER BY a.position, a.id",
            )
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], |row| {
                Ok(SystemArray {
                    id: row.get(0)?,
                    name: row.get(1)?,
                    tilt_deg: row.get(2)?,
                    azimuth_deg: row.get(3)?,
                    grid_rows: row.get(4)?,
                    grid_columns: row.get(5)?,
                    modules: row.get(6)?,
                })
            })
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }

    /// System `system_id`'s microinverters and batteries (retired ones too: a claim may be
    /// about a unit already replaced), by serial.
    pub fn micros_and_batteries(&self, system_id: i64) -> Result<Vec<SystemDevice>, Error> {
        let context = format!("reading the devices of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT id, serial, kind, model, state, provisioned_us, array_id, grid_row,
                        grid_column
                   FROM devices
                  WHERE system_id = ?1 AND kind IN ('microinverter', 'battery')
                  ORDER BY kind DESC, serial",
            )
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], |row| {
                let place = match (row.get(6)?, row.get(7)?, row.get(8)?) {
                    (Some(array), Some(r), Some(c)) => Some((array, r, c)),
                    _ => None,
                };
                Ok(SystemDevice {
                    id: row.get(0)?,
                    serial: row.get::<_, i64>(1)?.max(0).unsigned_abs(),
                    kind: row.get(2)?,
                    model: row.get(3)?,
                    state: row.get(4)?,
                    provisioned_us: row.get(5)?,
                    place,
                })
            })
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }

    /// System `system_id`'s estimates: array id (0 for the system level) → kWh per month.
    pub fn system_estimates(&self, system_id: i64) -> Result<BTreeMap<i64, [f64; 12]>, Error> {
        let context = format!("reading the estimates of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT array_id, month, energy_kwh FROM production_estimates
                  WHERE system_id = ?1",
            )
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, f64>(2)?,
                ))
            })
            .map_err(sql_error(&context))?;
        let mut estimates: BTreeMap<i64, [f64; 12]> = BTreeMap::new();
        for row in rows {
            let (array, month, kwh) = row.map_err(sql_error(&context))?;
            if let Ok(index @ 0..=11) = usize::try_from(month - 1) {
                estimates.entry(array).or_insert([0.0; 12])[index] = kwh;
            }
        }
        Ok(estimates)
    }

    /// The return requests of system `system_id`'s devices that were not rejected, one per
    /// device they name: a unit with one was to be sent back (`resolved`: it was).
    pub fn return_requests(&self, system_id: i64) -> Result<Vec<ReturnRequest>, Error> {
        let context = format!("reading the return requests of system {system_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT r.id, d.device_id, r.state, r.rma_number
                   FROM service_requests r
                   JOIN service_request_devices d ON d.request_id = r.id
                  WHERE r.system_id = ?1 AND r.kind = 'return' AND r.state <> 'rejected'
                  ORDER BY r.id, d.device_id",
            )
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![system_id], |row| {
                Ok(ReturnRequest {
                    id: row.get(0)?,
                    device_id: row.get(1)?,
                    state: row.get(2)?,
                    rma_number: row.get(3)?,
                })
            })
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }

    /// Whether system `system_id` has a production meter in service (production figures
    /// may then come from it).
    pub fn has_production_meter(&self, system_id: i64) -> Result<bool, Error> {
        self.connection()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM devices
                                 WHERE system_id = ?1 AND kind = 'meter'
                                   AND meter_kind = 'production' AND state <> 'retired')",
                params![system_id],
                |row| row.get(0),
            )
            .map_err(sql_error(format!(
                "looking for the production meter of system {system_id}"
            )))
    }

    /// Company `company_id`'s name and contact details, when it exists.
    pub fn company_contact(&self, company_id: i64) -> Result<Option<CompanyContact>, Error> {
        self.connection()
            .query_row(
                "SELECT name, city, country, phone, email FROM companies WHERE id = ?1",
                params![company_id],
                |row| {
                    Ok(CompanyContact {
                        name: row.get(0)?,
                        city: row.get(1)?,
                        country: row.get(2)?,
                        phone: row.get(3)?,
                        email: row.get(4)?,
                    })
                },
            )
            .optional()
            .map_err(sql_error(format!("reading company {company_id}")))
    }

    /// Saves the "Installer reference and more" section of system `system_id`; audited.
    pub fn save_installer_settings(
        &self,
        system_id: i64,
        settings: &InstallerSettings,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("saving the installer reference and more", |tx| {
            let changed = tx
                .execute(
                    "UPDATE systems SET installer_reference = ?1, other_references = ?2,
                            internet_connection = ?3, attachment_type = ?4,
                            operational_date = ?5, weather_enabled = ?6,
                            production_source = ?7, kiosk_content = ?8
                      WHERE id = ?9",
                    params![
                        settings.installer_reference,
                        settings.other_references,
                        settings.internet_connection,
                        settings.attachment_type,
                        settings.operational_date.map(|d| d.to_string()),
                        settings.weather_enabled,
                        settings.production_source,
                        settings.kiosk_content.to_json(),
                        system_id
                    ],
                )
                .map_err(sql_error(format!("saving system {system_id}")))?;
            if changed == 0 {
                return Err(Error::UnknownSystem { system_id });
            }
            insert_audit(
                tx,
                Some(by_user),
                "system_settings_saved",
                "system",
                Some(system_id),
                &format!(
                    "installer reference and more: operational {}",
                    settings
                        .operational_date
                        .map_or_else(|| "not yet".to_owned(), |d| d.to_string())
                ),
                now_us,
            )
        })
    }

    /// Saves the production estimate and threshold of system `system_id`; audited. Array
    /// estimates must be of the system's own arrays.
    pub fn save_estimate_settings(
        &self,
        system_id: i64,
        settings: &EstimateSettings,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("saving the production estimate", |tx| {
            let changed = tx
                .execute(
                    "UPDATE systems SET estimate_level = ?1, annual_degradation_pct = ?2,
                            threshold_pct = ?3, threshold_days = ?4
                      WHERE id = ?5",
                    params![
                        settings.level,
                        settings.annual_degradation_pct,
                        settings.threshold_pct,
                        settings.threshold_days,
                        system_id
                    ],
                )
                .map_err(sql_error(format!("saving system {system_id}")))?;
            if changed == 0 {
                return Err(Error::UnknownSystem { system_id });
            }
            let own = arrays_of(tx, system_id)?;
            write_estimate(tx, system_id, 0, settings.system_monthly_kwh.as_ref())?;
            for (array_id, months) in &settings.array_monthly_kwh {
                if !own.contains_key(array_id) {
                    return Err(Error::NotOfSystem {
                        what: format!("array {array_id}"),
                        system_id,
                    });
                }
                write_estimate(tx, system_id, *array_id, months.as_ref())?;
            }
            insert_audit(
                tx,
                Some(by_user),
                "production_estimate_saved",
                "system",
                Some(system_id),
                &format!(
                    "{}-level estimate, threshold {} % over {} days, degradation {} %/year",
                    settings.level,
                    settings.threshold_pct,
                    settings.threshold_days,
                    settings.annual_degradation_pct
                ),
                now_us,
            )
        })
    }

    /// Saves system `system_id`'s arrays and the places of its microinverters in one
    /// transaction; audited. Refuses arrays or devices of another system and cells outside
    /// their array's grid; two microinverters in one cell break the devices table's
    /// uniqueness and roll everything back.
    pub fn save_array_layout(
        &self,
        system_id: i64,
        layout: &ArrayLayout,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("saving the arrays", |tx| {
            let own = arrays_of(tx, system_id)?;
            let not_of_system = |what: String| Error::NotOfSystem { what, system_id };
            for id in layout
                .arrays
                .iter()
                .filter_map(|a| a.id)
                .chain(layout.deleted.iter().copied())
            {
                if !own.contains_key(&id) {
                    return Err(not_of_system(format!("array {id}")));
                }
            }
            let micros: HashMap<i64, Option<GridPlace>> = micro_places(tx, system_id)?;
            for placement in &layout.placements {
                if !micros.contains_key(&placement.device_id) {
                    return Err(not_of_system(format!(
                        "microinverter {}",
                        placement.device_id
                    )));
                }
                if let Some((index, row, column)) = placement.cell {
                    let array = layout.arrays.get(index).ok_or_else(|| {
                        not_of_system(format!("array number {} of the layout", index + 1))
                    })?;
                    if row >= array.grid_rows || column >= array.grid_columns {
                        return Err(Error::OutsideGrid {
                            device_id: placement.device_id,
                            array: array.name.clone(),
                            row,
                            column,
                        });
                    }
                }
            }
            // Every microinverter leaves its cell first, so moves and swaps never meet an
            // occupied cell half-way; retired units give theirs up for good.
            tx.execute(
                "UPDATE devices SET array_id = NULL, grid_row = NULL, grid_column = NULL
                  WHERE system_id = ?1 AND array_id IS NOT NULL",
                params![system_id],
            )
            .map_err(sql_error("clearing the placements"))?;
            let mut ids = Vec::with_capacity(layout.arrays.len());
            for (position, array) in (0_i64..).zip(&layout.arrays) {
                let id = match array.id {
                    Some(id) => {
                        tx.execute(
                            "UPDATE arrays SET name = ?1, tilt_deg = ?2, azimuth_deg = ?3,
                                    grid_rows = ?4, grid_columns = ?5, position = ?6
                              WHERE id = ?7",
                            params![
                                array.name,
                                array.tilt_deg,
                                array.azimuth_deg,
                                array.grid_rows,
                                array.grid_columns,
                                position,
                                id
                            ],
                        )
                        .map_err(sql_error(format!("saving array {id}")))?;
                        id
                    }
                    None => {
                        tx.execute(
                            "INSERT INTO arrays (system_id, name, tilt_deg, azimuth_deg,
                                                 grid_rows, grid_columns, position)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![
                                system_id,
                                array.name,
                                array.tilt_deg,
                                array.azimuth_deg,
                                array.grid_rows,
                                array.grid_columns,
                                position
                            ],
                        )
                        .map_err(sql_error(format!("adding array {:?}", array.name)))?;
                        tx.last_insert_rowid()
                    }
                };
                ids.push(id);
            }
            for id in &layout.deleted {
                tx.execute(
                    "DELETE FROM production_estimates WHERE system_id = ?1 AND array_id = ?2",
                    params![system_id, id],
                )
                .map_err(sql_error(format!("removing the estimate of array {id}")))?;
                tx.execute("DELETE FROM arrays WHERE id = ?1", params![id])
                    .map_err(sql_error(format!("removing array {id}")))?;
            }
            let mut taken: HashSet<GridPlace> = HashSet::new();
            let mut listed: HashSet<i64> = HashSet::new();
            for placement in &layout.placements {
                listed.insert(placement.device_id);
                if let Some((index, row, column)) = placement.cell {
                    let array_id = ids.get(index).copied().ok_or_else(|| {
                        not_of_system(format!("array number {} of the layout", index + 1))
                    })?;
                    place(tx, placement.device_id, array_id, row, column)?;
                    taken.insert((array_id, row, column));
                }
            }
            // Units the form did not list (one a gateway registered meanwhile) keep their
            // place while it still exists and is free.
            let kept: HashMap<i64, &ArraySpec> = ids.iter().copied().zip(&layout.arrays).collect();
            for (device, place_before) in &micros {
                let Some((array_id, row, column)) = *place_before else {
                    continue;
                };
                let still_there = kept
                    .get(&array_id)
                    .is_some_and(|a| row < a.grid_rows && column < a.grid_columns);
                if listed.contains(device) || !still_there || !taken.insert((array_id, row, column))
                {
                    continue;
                }
                place(tx, *device, array_id, row, column)?;
            }
            let placed = layout
                .placements
                .iter()
                .filter(|p| p.cell.is_some())
                .count();
            insert_audit(
                tx,
                Some(by_user),
                "arrays_saved",
                "system",
                Some(system_id),
                &format!(
                    "{} array(s), {} removed, {placed} microinverter(s) placed",
                    layout.arrays.len(),
                    layout.deleted.len()
                ),
                now_us,
            )
        })
    }

    /// Records an eligible labour reimbursement claim as a new service request of
    /// `company_id` (the claiming installer); audited. Returns the request's id. A claim
    /// that names a return request must name one of this system's returns listing the unit.
    pub fn submit_labor_claim(
        &self,
        system_id: i64,
        company_id: i64,
        claim: &LaborClaim,
        by_user: i64,
        now_us: i64,
    ) -> Result<i64, Error> {
        self.transaction("submitting a labour claim", |tx| {
            let kind: Option<String> = tx
                .query_row(
                    "SELECT kind FROM devices WHERE id = ?1 AND system_id = ?2",
                    params![claim.device_id, system_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error("finding the claimed device"))?;
            if !matches!(kind.as_deref(), Some("microinverter" | "battery")) {
                return Err(Error::NotOfSystem {
                    what: format!("microinverter or battery {}", claim.device_id),
                    system_id,
                });
            }
            if let Some(return_id) = claim.return_request {
                let names_the_unit: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM service_requests r
                                          JOIN service_request_devices d ON d.request_id = r.id
                                         WHERE r.id = ?1 AND r.system_id = ?2
                                           AND r.kind = 'return' AND r.state <> 'rejected'
                                           AND d.device_id = ?3)",
                        params![return_id, system_id, claim.device_id],
                        |row| row.get(0),
                    )
                    .map_err(sql_error("finding the claim's return request"))?;
                if !names_the_unit {
                    return Err(Error::NotOfSystem {
                        what: format!(
                            "a return request {} naming device {}",
                            service_request_number(return_id),
                            claim.device_id
                        ),
                        system_id,
                    });
                }
            }
            insert_service_request(
                tx,
                &NewServiceRequest {
                    kind: "labor_claim",
                    system_id,
                    device_id: Some(claim.device_id),
                    company_id: Some(company_id),
                    created_by: by_user,
                    reason: format!(
                        "labour reimbursement, {:012}{}: {}",
                        claim.serial,
                        claim.return_request.map_or_else(String::new, |id| format!(
                            " (return {})",
                            service_request_number(id)
                        )),
                        claim.description.chars().take(120).collect::<String>()
                    ),
                    details: serde_json::json!({
                        "serial": format!("{:012}", claim.serial),
                        "defect_date": claim.defect_date.to_string(),
                        "claim_date": claim.claim_date.to_string(),
                        "labor_hours": claim.labor_hours,
                        "return_done": claim.return_done,
                        "description": claim.description,
                        "return_request": claim.return_request,
                    }),
                    at_us: now_us,
                },
            )
        })
    }
}

/// The system's arrays: id → (rows, columns).
fn arrays_of(tx: &Transaction<'_>, system_id: i64) -> Result<HashMap<i64, (u16, u16)>, Error> {
    let context = "listing the system's arrays";
    let mut statement = tx
        .prepare("SELECT id, grid_rows, grid_columns FROM arrays WHERE system_id = ?1")
        .map_err(sql_error(context))?;
    let rows = statement
        .query_map(params![system_id], |row| {
            Ok((row.get(0)?, (row.get(1)?, row.get(2)?)))
        })
        .map_err(sql_error(context))?;
    rows.collect::<Result<_, _>>().map_err(sql_error(context))
}

/// The system's microinverters in service and their places.
fn micro_places(
    tx: &Transaction<'_>,
    system_id: i64,
) -> Result<HashMap<i64, Option<GridPlace>>, Error> {
    let context = "listing the system's microinverters";
    let mut statement = tx
        .prepare(
            "SELECT id, array_id, grid_row, grid_column FROM devices
              WHERE system_id = ?1 AND kind = 'microinverter' AND state <> 'retired'",
        )
        .map_err(sql_error(context))?;
    let rows = statement
        .query_map(params![system_id], |row| {
            let place = match (row.get(1)?, row.get(2)?, row.get(3)?) {
                (Some(array), Some(r), Some(c)) => Some((array, r, c)),
                _ => None,
            };
            Ok((row.get(0)?, place))
        })
        .map_err(sql_error(context))?;
    rows.collect::<Result<_, _>>().map_err(sql_error(context))
}

fn place(
    tx: &Transaction<'_>,
    device_id: i64,
    array_id: i64,
    row: u16,
    column: u16,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE devices SET array_id = ?1, grid_row = ?2, grid_column = ?3 WHERE id = ?4",
        params![array_id, row, column, device_id],
    )
    .map_err(sql_error(format!(
        "placing device {device_id} at row {row}, column {column} of array {array_id}"
    )))?;
    Ok(())
}

/// Sets or (with `None`) removes one estimate.
fn write_estimate(
    tx: &Transaction<'_>,
    system_id: i64,
    array_id: i64,
    monthly_kwh: Option<&[f64; 12]>,
) -> Result<(), Error> {
    match monthly_kwh {
        Some(months) => set_estimates(tx, system_id, array_id, months),
        None => {
            tx.execute(
                "DELETE FROM production_estimates WHERE system_id = ?1 AND array_id = ?2",
                params![system_id, array_id],
            )
            .map_err(sql_error(format!(
                "removing the estimate of system {system_id}, array {array_id}"
            )))?;
            Ok(())
        }
    }
}
