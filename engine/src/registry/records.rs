//! Typed rows of the registry and the statements that add them.

use rusqlite::{Transaction, params};

use super::sql_error;
use crate::Error;
use crate::ids::Serial;
use crate::time::CivilDate;

fn last_id(tx: &Transaction<'_>) -> i64 {
    tx.last_insert_rowid()
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCompany {
    pub name: String,
    /// `installer` or `subcontractor`.
    pub kind: &'static str,
    pub city: String,
    pub region: String,
    pub country: String,
    pub phone: String,
    pub email: String,
    pub created_us: i64,
}

pub fn insert_company(tx: &Transaction<'_>, c: &NewCompany) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO companies (name, kind, city, region, country, phone, email, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            c.name,
            c.kind,
            c.city,
            c.region,
            c.country,
            c.phone,
            c.email,
            c.created_us
        ],
    )
    .map_err(sql_error(format!("adding company {:?}", c.name)))?;
    Ok(last_id(tx))
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewOwner {
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: String,
    pub language: String,
    pub created_us: i64,
}

pub fn insert_owner(tx: &Transaction<'_>, o: &NewOwner) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO owners (given_name, family_name, email, phone, language, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            o.given_name,
            o.family_name,
            o.email,
            o.phone,
            o.language,
            o.created_us
        ],
    )
    .map_err(sql_error(format!("adding owner {:?}", o.email)))?;
    Ok(last_id(tx))
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewUser {
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub phone: String,
    pub language: String,
    /// `installer_admin`, `installer_user`, `subcontractor`, `owner` or `analyst`.
    pub role: &'static str,
    pub company_id: Option<i64>,
    pub owner_id: Option<i64>,
    pub password_hash: Option<String>,
    pub created_us: i64,
}

pub fn insert_user(tx: &Transaction<'_>, u: &NewUser) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO users (email, given_name, family_name, phone, language, role, company_id,
                            owner_id, password_hash, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            u.email,
            u.given_name,
            u.family_name,
            u.phone,
            u.language,
            u.role,
            u.company_id,
            u.owner_id,
            u.password_hash,
            u.created_us
        ],
    )
    .map_err(sql_error(format!("adding user {:?}", u.email)))?;
    Ok(last_id(tx))
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSystem {
    /// The id to use (the demo fleet keeps its generator's numbering); `None` picks one.
    pub id: Option<i64>,
    pub name: String,
    /// `residential` or `commercial`.
    pub kind: &'static str,
    pub installer_id: i64,
    pub owner_id: Option<i64>,
    pub installer_reference: String,
    pub third_party_owned: bool,
    pub street_address: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub latitude: f64,
    pub longitude: f64,
    pub elevation_m: f64,
    pub time_zone: String,
    /// `started`, `connecting`, `verifying` or `ready`.
    pub stage: &'static str,
    /// `ethernet`, `wifi` or `cellular`.
    pub internet_connection: &'static str,
    pub install_date: Option<CivilDate>,
    pub operational_date: Option<CivilDate>,
    pub annual_degradation_pct: f64,
    pub threshold_pct: u8,
    pub threshold_days: u16,
    pub created_us: i64,
}

pub fn insert_system(tx: &Transaction<'_>, s: &NewSystem) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO systems (id, name, kind, installer_id, owner_id, installer_reference,
                              third_party_owned, street_address, city, region, postal_code,
                              country, latitude, longitude, elevation_m, time_zone, stage,
                              internet_connection, install_date, operational_date,
                              annual_degradation_pct, threshold_pct, threshold_days, created_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        params![
            s.id,
            s.name,
            s.kind,
            s.installer_id,
            s.owner_id,
            s.installer_reference,
            s.third_party_owned,
            s.street_address,
            s.city,
            s.region,
            s.postal_code,
            s.country,
            s.latitude,
            s.longitude,
            s.elevation_m,
            s.time_zone,
            s.stage,
            s.internet_connection,
            s.install_date.map(|d| d.to_string()),
            s.operational_date.map(|d| d.to_string()),
            s.annual_degradation_pct,
            s.threshold_pct,
            s.threshold_days,
            s.created_us
        ],
    )
    .map_err(sql_error(format!("adding system {:?}", s.name)))?;
    Ok(last_id(tx))
}

pub fn grant_subcontractor(
    tx: &Transaction<'_>,
    system_id: i64,
    company_id: i64,
    granted_us: i64,
) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO subcontractor_grants (system_id, company_id, granted_us) VALUES (?1, ?2, ?3)",
        params![system_id, company_id, granted_us],
    )
    .map_err(sql_error(format!(
        "granting company {company_id} access to system {system_id}"
    )))?;
    let grant = last_id(tx);
    tx.execute(
        "INSERT OR IGNORE INTO authorized_subcontractors (installer_id, company_id, added_us)
         SELECT installer_id, ?2, ?3 FROM systems WHERE id = ?1",
        params![system_id, company_id, granted_us],
    )
    .map_err(sql_error(format!(
        "authorising company {company_id} as a subcontractor"
    )))?;
    Ok(grant)
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewArray {
    pub system_id: i64,
    pub name: String,
    pub tilt_deg: f64,
    pub azimuth_deg: f64,
    pub grid_rows: u16,
    pub grid_columns: u16,
    pub position: u32,
}

pub fn insert_array(tx: &Transaction<'_>, a: &NewArray) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO arrays (system_id, name, tilt_deg, azimuth_deg, grid_rows, grid_columns, position)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            a.system_id,
            a.name,
            a.tilt_deg,
            a.azimuth_deg,
            a.grid_rows,
            a.grid_columns,
            a.position
        ],
    )
    .map_err(sql_error(format!("adding array {:?}", a.name)))?;
    Ok(last_id(tx))
}

/// What kind of device a row is, with the fields only that kind has.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceDetails {
    Gateway {
        cell_modem_sku: Option<String>,
        cell_plan_end: Option<CivilDate>,
        low_bandwidth: bool,
        /// A name from [`crate::grid_profiles::GRID_PROFILES`], if known.
        grid_profile: Option<&'static str>,
    },
    Microinverter {
        phase: char,
        array_id: i64,
        grid_row: u16,
        grid_column: u16,
        module_stc_w: f64,
    },
    Meter {
        /// `production`, `consumption_net` or `consumption_total`.
        meter_kind: &'static str,
    },
    Battery {
        capacity_wh: f64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDevice {
    pub serial: Serial,
    pub system_id: i64,
    pub model: String,
    pub firmware: String,
    pub details: DeviceDetails,
    /// `provisioned` or `active`.
    pub state: &'static str,
    pub provisioned_us: i64,
}

/// The kind-specific columns of a `devices` row; the ones a kind does not have stay NULL.
#[derive(Default)]
struct KindColumns {
    phase: Option<String>,
    array_id: Option<i64>,
    grid_row: Option<u16>,
    grid_column: Option<u16>,
    module_stc_w: Option<f64>,
    meter_kind: Option<&'static str>,
    capacity_wh: Option<f64>,
    cell_modem_sku: Option<String>,
    cell_plan_end: Option<String>,
    low_bandwidth: bool,
    grid_profile: Option<&'static str>,
}

pub fn insert_device(tx: &Transaction<'_>, d: &NewDevice) -> Result<i64, Error> {
    let (kind, c) = match &d.details {
        DeviceDetails::Gateway {
            cell_modem_sku,
            cell_plan_end,
            low_bandwidth,
            grid_profile,
        } => (
            "gateway",
            KindColumns {
                cell_modem_sku: cell_modem_sku.clone(),
                cell_plan_end: cell_plan_end.map(|d| d.to_string()),
                low_bandwidth: *low_bandwidth,
                grid_profile: *grid_profile,
                ..KindColumns::default()
            },
        ),
        DeviceDetails::Microinverter {
            phase,
            array_id,
            grid_row,
            grid_column,
            module_stc_w,
        } => (
            "microinverter",
            KindColumns {
                phase: Some(phase.to_string()),
                array_id: Some(*array_id),
                grid_row: Some(*grid_row),
                grid_column: Some(*grid_column),
                module_stc_w: Some(*module_stc_w),
                ..KindColumns::default()
            },
        ),
        DeviceDetails::Meter { meter_kind } => (
            "meter",
            KindColumns {
                meter_kind: Some(*meter_kind),
                ..KindColumns::default()
            },
        ),
        DeviceDetails::Battery { capacity_wh } => (
            "battery",
            KindColumns {
                capacity_wh: Some(*capacity_wh),
                ..KindColumns::default()
            },
        ),
    };
    tx.execute(
        "INSERT INTO devices (serial, kind, system_id, model, firmware, phase, array_id, grid_row,
                              grid_column, module_stc_w, meter_kind, capacity_wh, cell_modem_sku,
                              cell_plan_end, low_bandwidth, state, provisioned_us, grid_profile)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            d.serial.value() as i64,
            kind,
            d.system_id,
            d.model,
            d.firmware,
            c.phase,
            c.array_id,
            c.grid_row,
            c.grid_column,
            c.module_stc_w,
            c.meter_kind,
            c.capacity_wh,
            c.cell_modem_sku,
            c.cell_plan_end,
            c.low_bandwidth,
            d.state,
            d.provisioned_us,
            c.grid_profile
        ],
    )
    .map_err(sql_error(format!("adding device {}", d.serial)))?;
    Ok(last_id(tx))
}

/// Records that every device of system `system_id` other than gateways reports through
/// gateway `gateway_id` (a system with one gateway).
pub fn set_reporting_gateway(
    tx: &Transaction<'_>,
    system_id: i64,
    gateway_id: i64,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE devices SET gateway_id = ?2 WHERE system_id = ?1 AND kind <> 'gateway'",
        params![system_id, gateway_id],
    )
    .map_err(sql_error(format!(
        "recording the gateway of system {system_id}'s devices"
    )))?;
    Ok(())
}

/// Sets the 12 monthly estimates (kWh) of a system (`array_id` 0) or one of its arrays.
pub fn set_estimates(
    tx: &Transaction<'_>,
    system_id: i64,
    array_id: i64,
    monthly_kwh: &[f64; 12],
) -> Result<(), Error> {
    for (month, kwh) in (1..=12).zip(monthly_kwh) {
        tx.execute(
            "INSERT INTO production_estimates (system_id, array_id, month, energy_kwh)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (system_id, array_id, month) DO UPDATE SET energy_kwh = excluded.energy_kwh",
            params![system_id, array_id, month, kwh],
        )
        .map_err(sql_error(format!("setting estimates of system {system_id}")))?;
    }
    Ok(())
}

/// Records that an activation step was completed at `at_us` (the first time counts).
pub fn complete_step(
    tx: &Transaction<'_>,
    system_id: i64,
    step: &'static str,
    at_us: i64,
) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO activation_steps (system_id, step, completed_us) VALUES (?1, ?2, ?3)
         ON CONFLICT (system_id, step) DO NOTHING",
        params![system_id, step, at_us],
    )
    .map_err(sql_error(format!(
        "activation step {step} of system {system_id}"
    )))?;
    Ok(())
}
