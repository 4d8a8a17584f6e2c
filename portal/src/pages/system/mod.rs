//! One system's pages (S1–S8) and its settings (T1–T5). Every tab shares a header (the
//! system's name, the tabs, the kiosk and settings icons) and a side panel (devices,
//! connection, location and local time, weather, status with its alerts, energy today):
//! [`SystemChrome`], built by [`load`] after the principal is authorised for the system.

pub mod devices;
pub mod diagnostics;
pub mod events;
pub mod graph;
pub mod kiosk;
pub mod live;
pub mod reports;
pub mod services;
pub mod settings;
pub mod view;

use jiff::tz::TimeZone;
use sunfleet_engine::registry::{EventFilter, EventState, SystemDetails};
use sunfleet_query::series::{Granularity, SeriesRequest};

use super::Chrome;
use crate::access::{Need, authorize};
use crate::fleet::{event_label, status_label};
use crate::server::AppState;
use crate::weather::Site;
use crate::{PortalError, Principal};

/// The tabs: code, label, path after `/systems/{id}`.
pub const TABS: [(&str, &str, &str); 7] = [
    ("view", "View", ""),
    ("graph", "Graph", "/graph"),
    ("reports", "Reports", "/reports"),
    ("devices", "Devices", "/devices"),
    ("events", "Events", "/events"),
    ("live", "Live status", "/live"),
    ("services", "Services", "/services"),
];

pub struct TabLink {
    pub href: String,
    pub label: String,
    pub active: bool,
}

/// One open alert in the side panel.
pub struct PanelAlert {
    pub label: String,
    pub severity: String,
    pub since: String,
}

/// The side panel every tab shows.
pub struct SidePanel {
    pub microinverters: u32,
    pub batteries: u32,
    pub gateways: u32,
    pub meters: u32,
    pub connection: String,
    pub address: String,
    pub local_time: String,
    pub time_zone: String,
    /// When the system's settings turn weather on and the source knows the site.
    pub weather: Option<String>,
    pub status: String,
    pub status_label: String,
    pub status_since: String,
    pub alerts: Vec<PanelAlert>,
    pub more_alerts: u64,
    pub produced_today: String,
    /// Where a consumption meter reported today.
    pub consumed_today: Option<String>,
}

/// What every system page needs besides the layout's [`Chrome`].
pub struct SystemChrome {
    pub id: u32,
    pub name: String,
    pub tab: &'static str,
    pub tabs: Vec<TabLink>,
    pub panel: SidePanel,
    /// The principal may change the system (settings, tasks, service requests).
    pub can_manage: bool,
    pub details: SystemDetails,
    pub zone: TimeZone,
}

impl SystemChrome {
    pub fn is_tab(&self, tab: &str) -> bool {
        self.tab == tab
    }
}

const DAY_US: i64 = 86_400_000_000;

/// How many open alerts the side panel lists.
const PANEL_ALERTS: u32 = 5;

/// The system `id` as `principal` may see it, with its side panel, for `tab` (one of
/// [`TABS`], or `settings` / `kiosk`). Another company's system is "not found".
pub async fn load(
    state: &AppState,
    principal: &Principal,
    id: u32,
    tab: &'static str,
) -> Result<(Chrome, SystemChrome), PortalError> {
    authorize(principal, Need::System(id))?;
    let (details, zone) = system_record(state, id)?;
    let lang = principal.lang();
    let now = sunfleet_engine::time::now_micros();
    let counts = state.registry().device_counts(i64::from(id))?;
    let (open, open_total) = state.registry().system_events(
        i64::from(id),
        &EventFilter {
            state: EventState::Current,
            code: None,
            device_id: None,
            limit: PANEL_ALERTS,
            offset: 0,
        },
    )?;
    let today = today_energy(state, principal, id, &zone, now).await?;
    let weather = match (details.weather_enabled, details.latitude, details.longitude) {
        (true, Some(latitude), Some(longitude)) => {
            state.shared().config.weather.as_ref().and_then(|source| {
                source.0.weather(
                    Site {
                        system_id: id,
                        latitude,
                        longitude,
                    },
                    now,
                )
            })
        }
        _ => None,
    }
    .map(|w| {
        format!(
            "{}, {} °C",
            lang.t(w.sky.label()),
            lang.decimal(w.temperature_c, 0)
        )
    });
    let connection = match details.internet_connection.as_str() {
        "wifi" => "Wi-Fi",
        "cellular" => "Cellular",
        _ => "Ethernet",
    };
    let connection = if counts.cell_modems > 0 && details.internet_connection != "cellular" {
        format!("{} ({})", lang.t(connection), lang.t("cellular modem"))
    } else {
        lang.t(connection).to_owned()
    };
    let address = [
        details.street_address.as_str(),
        details.city.as_str(),
        details.region.as_str(),
        details.postal_code.as_str(),
        details.country.as_str(),
    ]
    .into_iter()
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join(", ");
    let panel = SidePanel {
        microinverters: counts.microinverters,
        batteries: counts.batteries,
        gateways: counts.gateways,
        meters: counts.meters,
        connection,
        address,
        local_time: lang.local_time(now, &zone),
        time_zone: details.time_zone.clone(),
        weather,
        status: details.status.clone(),
        status_label: lang.t(status_label(&details.status)).to_owned(),
        status_since: details
            .status_since_us
            .map(|since| lang.time(since))
            .unwrap_or_default(),
        more_alerts: open_total.saturating_sub(open.len() as u64),
        alerts: open
            .iter()
            .map(|event| PanelAlert {
                label: lang.t(&event_label(&event.code)).to_owned(),
                severity: event.severity.clone(),
                since: lang.age(now - event.started_us),
            })
            .collect(),
        produced_today: lang.energy(today.0),
        consumed_today: today.1.map(|wh| lang.energy(wh)),
    };
    let tabs = TABS
        .iter()
        .map(|(code, label, path)| TabLink {
            href: format!("/systems/{id}{path}"),
            label: lang.t(label).to_owned(),
            active: *code == tab,
        })
        .collect();
    let chrome = Chrome::new(principal, details.name.clone(), "systems");
    let system = SystemChrome {
        id,
        name: details.name.clone(),
        tab,
        tabs,
        panel,
        can_manage: authorize(principal, Need::ManageSystem(id)).is_ok(),
        details,
        zone,
    };
    Ok((chrome, system))
}

/// System `id`'s registry row and time zone, for the JSON and download endpoints (which
/// have no side panel); the caller has authorised the principal for the system.
pub fn system_record(state: &AppState, id: u32) -> Result<(SystemDetails, TimeZone), PortalError> {
    let details = state
        .registry()
        .system_details(i64::from(id))?
        .ok_or_else(|| PortalError::NotFound {
            what: format!("system {id}"),
        })?;
    let zone = TimeZone::get(&details.time_zone).unwrap_or(TimeZone::UTC);
    Ok((details, zone))
}

/// Energy produced today (site-local) and, where metered, consumed.
async fn today_energy(
    state: &AppState,
    principal: &Principal,
    id: u32,
    zone: &TimeZone,
    now: i64,
) -> Result<(f64, Option<f64>), PortalError> {
    let midnight = local_midnight(zone, now)?;
    let site = state
        .query()
        .site_series(
            &principal.scope,
            &SeriesRequest {
                system_id: id,
                device_id: None,
                start_us: midnight,
                end_us: now.max(midnight + 1),
                granularity: Granularity::Day,
                max_points: 1,
            },
        )
        .await?;
    let produced = site.points.iter().map(|p| p.produced_wh).sum();
    let consumed = site
        .points
        .iter()
        .filter_map(|p| p.consumed_wh)
        .reduce(|a, b| a + b);
    Ok((produced, consumed))
}

/// The start of the site-local day that holds `us`.
pub fn local_midnight(zone: &TimeZone, us: i64) -> Result<i64, PortalError> {
    let time_error = |e: jiff::Error| PortalError::Internal {
        context: format!("site-local midnight: {e}"),
    };
    let at = jiff::Timestamp::from_microsecond(us).map_err(time_error)?;
    let day = zone.to_datetime(at).date();
    zone.to_timestamp(day.to_datetime(jiff::civil::Time::midnight()))
        .map(|t| t.as_microsecond())
        .map_err(time_error)
}

/// A site-local date (`YYYY-MM-DD`) as the UTC microseconds of its start, and of the next
/// day's start; `None` when the text is not a date.
pub fn local_day_bounds(zone: &TimeZone, date: &str) -> Option<(i64, i64)> {
    let date: jiff::civil::Date = date.parse().ok()?;
    let midnight = |date: jiff::civil::Date| {
        zone.to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
            .ok()
            .map(|t| t.as_microsecond())
    };
    Some((midnight(date)?, midnight(date.tomorrow().ok()?)?))
}

/// The site-local date of `us`, `YYYY-MM-DD`.
pub fn local_date(zone: &TimeZone, us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| zone.to_datetime(t).date().to_string())
        .unwrap_or_default()
}
