//! One system as its pages show it (S1–S8, T1, T3, T4): its facts and settings, its device
//! counts and its events, read by id straight from the registry (indexed lookups, so a
//! system page does not scan the fleet's tables).

use rusqlite::{OptionalExtension, params};

use super::activation::OwnerDetails;
use super::{Registry, sql_error};
use crate::Error;

/// A system's registry row with its installer's and owner's names.
#[derive(Debug, Clone, PartialEq)]
pub struct SystemDetails {
    pub id: i64,
    pub name: String,
    /// `residential` or `commercial`.
    pub kind: String,
    pub installer_id: i64,
    pub installer_name: String,
    pub installer_reference: String,
    pub other_references: String,
    pub owner: Option<OwnerDetails>,
    pub street_address: String,
    pub city: String,
    pub region: String,
    pub postal_code: String,
    pub country: String,
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub time_zone: String,
    pub stage: String,
    pub status: String,
    pub status_since_us: Option<i64>,
    /// `ethernet`, `wifi` or `cellular`.
    pub internet_connection: String,
    pub attachment_type: String,
    pub install_date: Option<String>,
    /// Permission to operate: operational as of this date (ISO), or not yet.
    pub operational_date: Option<String>,
    pub weather_enabled: bool,
    /// `microinverters` or `meter`.
    pub production_source: String,
    /// What the kiosk shows.
    pub kiosk_content: KioskContent,
    /// `system` or `array`.
    pub estimate_level: String,
    pub annual_degradation_pct: f64,
    pub threshold_pct: i64,
    pub threshold_days: i64,
    pub expected_microinverters: Option<i64>,
    pub created_us: i64,
}

/// What a system's kiosk page (S8) shows, chosen in its settings (T3); stored as JSON in
/// `systems.kiosk_content`. A switch missing from the JSON is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct KioskContent {
    /// Energy of the past seven days.
    pub past_7_days: bool,
    /// The daily energy graph.
    pub daily_graph: bool,
    /// CO2 avoided and its everyday equivalents.
    pub benefits: bool,
    /// The system's description (name, place, size).
    pub description: bool,
}

impl Default for KioskContent {
    fn default() -> Self {
        Self {
            past_7_days: true,
            daily_graph: true,
            benefits: true,
            description: true,
        }
    }
}

impl KioskContent {
    /// The stored JSON; anything unreadable shows everything.
    pub fn from_json(text: &str) -> Self {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn to_json(self) -> String {
        serde_json::to_string(&self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// How many devices of each kind a system has (retired ones left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceCounts {
    pub gateways: u32,
    pub microinverters: u32,
    pub meters: u32,
    pub batteries: u32,
    /// Gateways with a cellular modem.
    pub cell_modems: u32,
}

/// Which of a system's events to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    Current,
    Cleared,
    Any,
}

/// What the events list asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter {
    pub state: EventState,
    /// Only this event code.
    pub code: Option<String>,
    /// Only this device's.
    pub device_id: Option<i64>,
    pub limit: u32,
    pub offset: u32,
}

/// One event of a system (a condition the checks found or a device reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemEvent {
    pub id: i64,
    pub device_id: Option<i64>,
    /// The device's serial and kind, when the event is a device's.
    pub device: Option<(u64, String)>,
    pub code: String,
    /// `info`, `low`, `medium` or `high`.
    pub severity: String,
    pub started_us: i64,
    pub ended_us: Option<i64>,
    pub details: String,
}

impl Registry {
    /// The system `id`, or `None` when there is none.
    pub fn system_details(&self, id: i64) -> Result<Option<SystemDetails>, Error> {
        let connection = self.connection();
        connection
            .query_row(
                "SELECT s.id, s.name, s.kind, s.installer_id, c.name, s.installer_reference,
                        s.other_references, s.street_address, s.city, s.region, s.postal_code,
                        s.country, s.latitude, s.longitude, s.time_zone, s.stage, s.status,
                        s.status_since_us, s.internet_connection, s.attachment_type,
                        s.install_date, s.operational_date, s.weather_enabled,
                        s.production_source, s.kiosk_content, s.estimate_level,
                        s.annual_degradation_pct, s.threshold_pct, s.threshold_days,
                        s.expected_microinverters, s.created_us,
                        o.given_name, o.family_name, o.email, o.phone
                   FROM systems s
                   JOIN companies c ON c.id = s.installer_id
                   LEFT JOIN owners o ON o.id = s.owner_id
                  WHERE s.id = ?1",
                params![id],
                |row| {
                    let owner = match row.get::<_, Option<String>>(33)? {
                        Some(email) => Some(OwnerDetails {
                            given_name: row.get(31)?,
                            family_name: row.get(32)?,
                            email,
                            phone: row.get(34)?,
                        }),
                        None => None,
                    };
                    Ok(SystemDetails {
                        id: row.get(0)?,
                        name: row.get(1)?,
                        kind: row.get(2)?,
                        installer_id: row.get(3)?,
                        installer_name: row.get(4)?,
                        installer_reference: row.get(5)?,
                        other_references: row.get(6)?,
                        owner,
                        street_address: row.get(7)?,
                        city: row.get(8)?,
                        region: row.get(9)?,
                        postal_code: row.get(10)?,
                        country: row.get(11)?,
                        latitude: row.get(12)?,
                        longitude: row.get(13)?,
                        time_zone: row.get(14)?,
                        stage: row.get(15)?,
                        status: row.get(16)?,
                        status_since_us: row.get(17)?,
                        internet_connection: row.get(18)?,
                        attachment_type: row.get(19)?,
                        install_date: row.get(20)?,
                        operational_date: row.get(21)?,
                        weather_enabled: row.get(22)?,
                        production_source: row.get(23)?,
                        kiosk_content: KioskContent::from_json(&row.get::<_, String>(24)?),
                        estimate_level: row.get(25)?,
                        annual_degradation_pct: row.get(26)?,
                        threshold_pct: row.get(27)?,
                        threshold_days: row.get(28)?,
                        expected_microinverters: row.get(29)?,
                        created_us: row.get(30)?,
                    })
                },
            )
            .optional()
            .map_err(sql_error(format!("reading system {id}")))
    }

    /// How many devices of each kind system `id` has in service.
    pub fn device_counts(&self, id: i64) -> Result<DeviceCounts, Error> {
        let context = format!("counting the devices of system {id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached(
                "SELECT kind, count(*), count(cell_modem_sku) FROM devices
                  WHERE system_id = ?1 AND state <> 'retired' GROUP BY kind",
            )
            .map_err(sql_error(&context))?;
        let mut rows = statement.query(params![id]).map_err(sql_error(&context))?;
        let mut counts = DeviceCounts::default();
        while let Some(row) = rows.next().map_err(sql_error(&context))? {
            let kind: String = row.get(0).map_err(sql_error(&context))?;
            let count: u32 = row.get(1).map_err(sql_error(&context))?;
            match kind.as_str() {
                "gateway" => {
                    counts.gateways = count;
                    counts.cell_modems = row.get(2).map_err(sql_error(&context))?;
                }
                "microinverter" => counts.microinverters = count,
                "meter" => counts.meters = count,
                "battery" => counts.batteries = count,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// A page of system `id`'s events, newest first, and how many match in all.
    pub fn system_events(
        &self,
        id: i64,
        filter: &EventFilter,
    ) -> Result<(Vec<SystemEvent>, u64), Error> {
        let context = format!("reading the events of system {id}");
        let connection = self.connection();
        let state = match filter.state {
            EventState::Current => "AND e.ended_us IS NULL",
            EventState::Cleared => "AND e.ended_us IS NOT NULL",
            EventState::Any => "",
        };
        let conditions = format!(
            "e.system_id = ?1 {state} AND (?2 IS NULL OR e.code = ?2)
             AND (?3 IS NULL OR e.device_id = ?3)"
        );
        let total: i64 = connection
            .query_row(
                &format!("SELECT count(*) FROM events e WHERE {conditions}"),
                params![id, filter.code, filter.device_id],
                |row| row.get(0),
            )
            .map_err(sql_error(&context))?;
        let mut statement = connection
            .prepare(&format!(
                "SELECT e.id, e.device_id, d.serial, d.kind, e.code, e.severity, e.started_us,
                        e.ended_us, e.details
                   FROM events e LEFT JOIN devices d ON d.id = e.device_id
                  WHERE {conditions}
                  ORDER BY e.ended_us IS NOT NULL, e.started_us DESC, e.id DESC
                  LIMIT ?4 OFFSET ?5"
            ))
            .map_err(sql_error(&context))?;
        let events = statement
            .query_map(
                params![
                    id,
                    filter.code,
                    filter.device_id,
                    filter.limit,
                    filter.offset
                ],
                |row| {
                    let device = match (row.get::<_, Option<i64>>(2)?, row.get(3)?) {
                        (Some(serial), Some(kind)) => Some((serial.max(0).unsigned_abs(), kind)),
                        _ => None,
                    };
                    Ok(SystemEvent {
                        id: row.get(0)?,
                        device_id: row.get(1)?,
                        device,
                        code: row.get(4)?,
                        severity: row.get(5)?,
                        started_us: row.get(6)?,
                        ended_us: row.get(7)?,
                        details: row.get(8)?,
                    })
                },
            )
            .map_err(sql_error(&context))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_error(&context))?;
        Ok((events, total.max(0).unsigned_abs()))
    }
}

impl Registry {
    /// The event codes system `id` has ever had, for the events list's filter.
    pub fn system_event_codes(&self, id: i64) -> Result<Vec<String>, Error> {
        let context = format!("listing the event codes of system {id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare_cached("SELECT DISTINCT code FROM events WHERE system_id = ?1 ORDER BY code")
            .map_err(sql_error(&context))?;
        let rows = statement
            .query_map(params![id], |row| row.get(0))
            .map_err(sql_error(&context))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(&context))
    }
}
