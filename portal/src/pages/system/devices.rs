//! Devices (S4): a system's gateways, meters, microinverters (paged, sortable) and
//! batteries with their figures and status; microinverters being provisioned with their
//! task's state; the form that provisions one (C7) as a `provision_devices` gateway task.
//! A device's own page: its facts, a microinverter's power curve for a day, its recent
//! readings and events; a gateway's page adds its task list and the tasks an installer
//! may queue (production on/off (C6), reboot, signal check, scan).
//!
//! The block with a device's summary is `#device-summary`: the View tab loads exactly that
//! into its details box.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::device_models::device_model;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{
    DeviceRecord, EventFilter, EventState, ProvisionRefusal, ProvisioningRequest, SystemEvent,
    TaskLine, TaskProgress,
};
use sunfleet_engine::telemetry::{EventKind, micro_status};
use sunfleet_query::devices::{DeviceFigures, RecentReadings};
use sunfleet_query::series::{Granularity, SeriesRequest};

use super::{SystemChrome, load, local_date, local_day_bounds};
use crate::access::{Need, authorize};
use crate::fleet::event_label;
use crate::i18n::Lang;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// Microinverters per page of the Devices tab.
const MICROS_PER_PAGE: usize = 25;
/// Tasks per page of a gateway's task list.
const TASKS_PER_PAGE: u32 = 20;
/// Readings a device page lists.
const READINGS_SHOWN: usize = 24;
/// Events a device page lists.
const EVENTS_SHOWN: u32 = 20;
const MINUTE_US: i64 = 60_000_000;
const DAY_US: i64 = 86_400_000_000;

/// The tasks an installer queues from a gateway's page, with their button's wording.
pub const GATEWAY_TASKS: [(&str, &str); 5] = [
    ("production_on", "Enable power production"),
    ("production_off", "Disable power production"),
    ("reboot", "Reboot gateway"),
    ("check_signal", "Check signal strength"),
    ("scan_devices", "Scan for new devices"),
];

/// A device's status as a list shows it.
pub struct Status {
    /// `normal`, `issue`, `retired` or `waiting` (for the stylesheet).
    pub class: &'static str,
    pub label: String,
}

pub struct SortHeader {
    pub heading: String,
    pub href: String,
    pub marker: &'static str,
}

pub struct GatewayRow {
    pub href: String,
    pub serial: String,
    pub model: String,
    pub connection: String,
    pub cell_modem: String,
    pub cell_plan_end: String,
    pub software: String,
    pub last_report: String,
    pub status: Status,
    pub battery_present: String,
}

pub struct MeterRow {
    pub href: String,
    pub serial: String,
    pub meter_type: String,
    pub part_number: String,
    pub lifetime: String,
    pub last_report: String,
    pub status: Status,
}

pub struct MicroRow {
    pub href: String,
    pub serial: String,
    pub part_number: String,
    pub firmware: String,
    pub phase: String,
    pub average_power: String,
    pub lifetime: String,
    pub sku: String,
    pub last_report: String,
    pub status: Status,
}

pub struct BatteryRow {
    pub href: String,
    pub serial: String,
    pub model: String,
    pub capacity: String,
    pub state_of_charge: String,
    pub last_report: String,
    pub status: Status,
}

pub struct PendingRow {
    pub serial: String,
    pub gateway: String,
    pub requested: String,
    pub state: String,
    pub state_class: &'static str,
    pub progress: String,
    pub result: String,
}

pub struct GatewayChoice {
    pub id: i64,
    pub serial: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "system/devices.html")]
struct DevicesPage {
    chrome: Chrome,
    system: SystemChrome,
    gateways: Vec<GatewayRow>,
    meters: Vec<MeterRow>,
    micro_headers: Vec<SortHeader>,
    micros: Vec<MicroRow>,
    micro_total: usize,
    first: usize,
    last: usize,
    page: usize,
    pages: usize,
    previous_href: Option<String>,
    next_href: Option<String>,
    batteries: Vec<BatteryRow>,
    pending: Vec<PendingRow>,
    gateway_choices: Vec<GatewayChoice>,
    serial_value: String,
    error: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DevicesQuery {
    sort: Option<String>,
    dir: Option<String>,
    page: Option<usize>,
    /// Set after a provisioning request: its task.
    requested: Option<i64>,
}

/// Everything the registry and the query layer say about a system's devices.
pub(super) struct SystemDevices {
    pub(super) records: Vec<DeviceRecord>,
    figures: HashMap<i64, DeviceFigures>,
    open_events: Vec<SystemEvent>,
    pending: Vec<ProvisioningRequest>,
    /// The newest report of any device of the system.
    pub(super) newest_report_us: Option<i64>,
}

pub(super) async fn system_devices(
    state: &AppState,
    principal: &Principal,
    id: u32,
    now: i64,
) -> Result<SystemDevices, PortalError> {
    let registry = Arc::clone(state.registry());
    let system_id = i64::from(id);
    let (records, open_events, pending) = blocking(move || {
        let records = registry.system_devices(system_id)?;
        let (open, _) = registry.system_events(
            system_id,
            &EventFilter {
                state: EventState::Current,
                code: None,
                device_id: None,
                limit: u32::MAX,
                offset: 0,
            },
        )?;
        let pending = registry.provisioning_requests(system_id)?;
        Ok((records, open, pending))
    })
    .await?;
    let figures: HashMap<i64, DeviceFigures> = state
        .query()
        .device_figures(&principal.scope, id, now)
        .await?
        .into_iter()
        .map(|f| (i64::from(f.device_id), f))
        .collect();
    let newest_report_us = figures.values().filter_map(|f| f.last_report_us).max();
    Ok(SystemDevices {
        records,
        figures,
        open_events,
        pending,
        newest_report_us,
    })
}

/// What a list says about a device's health: retired; the worst open event about it; a
/// stop the microinverter's newest reading reports; never reported; else normal.
fn status_of(
    record: &DeviceRecord,
    figures: Option<&DeviceFigures>,
    open_events: &[SystemEvent],
    lang: Lang,
) -> Status {
    if record.state == "retired" {
        return Status {
            class: "retired",
            label: lang.t("Retired").to_owned(),
        };
    }
    if record.reprovision_since_us.is_some() {
        return Status {
            class: "issue",
            label: lang.t("To provision again with its new gateway").to_owned(),
        };
    }
    let severity_rank = |s: &str| match s {
        "high" => 3,
        "medium" => 2,
        "low" => 1,
        _ => 0,
    };
    let about_device = open_events
        .iter()
        .filter(|e| {
            e.device_id == Some(record.id)
                || (record.kind == "gateway" && e.code == "gateway_not_reporting")
        })
        .max_by_key(|e| severity_rank(&e.severity));
    if let Some(event) = about_device {
        return Status {
            class: "issue",
            label: lang.t(&event_label(&event.code)).to_owned(),
        };
    }
    if let Some(stop) = figures.and_then(|f| f.latest_status).and_then(stopped_by) {
        return Status {
            class: "issue",
            label: lang.t(stop.label()).to_owned(),
        };
    }
    let reported =
        figures.is_some_and(|f| f.last_report_us.is_some()) || record.first_report_us.is_some();
    if record.kind != "gateway" && !reported {
        return Status {
            class: "waiting",
            label: lang.t("Not reported yet").to_owned(),
        };
    }
    Status {
        class: "normal",
        label: lang.t("Normal").to_owned(),
    }
}

/// The condition that stopped a microinverter, from its reading's status flags.
fn stopped_by(flags: u16) -> Option<EventKind> {
    [
        (micro_status::GFI_TRIPPED, EventKind::GfiTripped),
        (micro_status::DC_RESISTANCE_LOW, EventKind::DcResistanceLow),
        (
            micro_status::POWER_OFF_BY_COMMAND,
            EventKind::PowerGenerationOffByCommand,
        ),
        (
            micro_status::AC_VOLTAGE_OUT_OF_RANGE,
            EventKind::AcVoltageOutOfRange,
        ),
        (
            micro_status::AC_FREQUENCY_OUT_OF_RANGE,
            EventKind::AcFrequencyOutOfRange,
        ),
    ]
    .into_iter()
    .find(|(flag, _)| flags & flag != 0)
    .map(|(_, kind)| kind)
}

/// The status flags of a reading in words.
fn flag_words(flags: u16, lang: Lang) -> String {
    let mut words = Vec::new();
    if flags & micro_status::PRODUCING != 0 {
        words.push(lang.t("producing").to_owned());
    }
    if flags & micro_status::CLIPPING != 0 {
        words.push(lang.t("clipping").to_owned());
    }
    if let Some(kind) = stopped_by(flags) {
        words.push(lang.t(kind.label()).to_owned());
    }
    if words.is_empty() {
        lang.t("idle").to_owned()
    } else {
        words.join(", ")
    }
}

fn serial_text(serial: u64) -> String {
    format!("{serial:012}")
}

/// `800-00555-r03 (Envoy-S Metered)` from a SKU the catalogue knows; the SKU itself else.
fn model_label(model: &str) -> String {
    match device_model(model) {
        Some(m) if m.part_number != m.sku => format!("{} ({})", m.part_number, m.name),
        Some(m) => m.name.to_owned(),
        None if model.is_empty() => "—".to_owned(),
        None => model.to_owned(),
    }
}

fn part_number(model: &str) -> String {
    device_model(model).map_or_else(
        || {
            if model.is_empty() {
                "—".to_owned()
            } else {
                model.to_owned()
            }
        },
        |m| format!("{} ({})", m.part_number, m.name),
    )
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "—".to_owned()
    } else {
        text.to_owned()
    }
}

pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "gateway" => "Gateway",
        "microinverter" => "Microinverter",
        "meter" => "Meter",
        "battery" => "Battery",
        _ => "Device",
    }
}

fn meter_type(meter_kind: Option<&str>) -> &'static str {
    match meter_kind {
        Some("production") => "Production meter",
        Some("consumption_net") => "Consumption meter (net: load with solar)",
        Some("consumption_total") => "Consumption meter (total: load only)",
        _ => "Meter",
    }
}

fn phase_label(phase: Option<&str>) -> String {
    match phase {
        Some("A") => "L1 (A)".to_owned(),
        Some("B") => "L2 (B)".to_owned(),
        Some("C") => "L3 (C)".to_owned(),
        Some(other) => other.to_owned(),
        None => "—".to_owned(),
    }
}

pub fn task_kind_label(kind: &str) -> &'static str {
    match kind {
        "production_on" => "Power production on",
        "production_off" => "Power production off",
        "reboot" => "Reboot gateway",
        "provision_devices" => "Provision devices",
        "meter_mode" => "Consumption meter mode",
        "grid_profile" => "Grid profile",
        "check_signal" => "Check signal strength",
        "scan_devices" => "Scan for new devices",
        "clear_gfi" => "Clear GFI",
        "reset_dc_resistance" => "Reset DC-resistance-low sensor",
        _ => "Task",
    }
}

pub fn task_state_label(state: TaskProgress) -> &'static str {
    match state {
        TaskProgress::Queued => "Queued",
        TaskProgress::Sent => "Sent",
        TaskProgress::Started => "Running",
        TaskProgress::Succeeded => "Succeeded",
        TaskProgress::Failed => "Failed",
        TaskProgress::Cancelled => "Cancelled",
    }
}

fn task_state_class(state: TaskProgress) -> &'static str {
    match state {
        TaskProgress::Succeeded => "normal",
        TaskProgress::Failed | TaskProgress::Cancelled => "issue",
        _ => "waiting",
    }
}

/// The connection line of a gateway: the system's internet connection, and the cellular
/// modem when it has one.
fn connection_label(internet: &str, record: &DeviceRecord, lang: Lang) -> String {
    let connection = match internet {
        "wifi" => "Wi-Fi",
        "cellular" => "Cellular",
        _ => "Ethernet",
    };
    let mut text = lang.t(connection).to_owned();
    if record.low_bandwidth {
        text.push_str(&format!(" ({})", lang.t("low-bandwidth mode")));
    }
    text
}

fn optional_time(us: Option<i64>, lang: Lang, zone: &jiff::tz::TimeZone) -> String {
    us.map(|t| lang.local_time(t, zone))
        .unwrap_or_else(|| lang.t("never").to_owned())
}

/// The sortable microinverter columns: key, heading.
const MICRO_COLUMNS: [(&str, &str); 9] = [
    ("serial", "Serial number"),
    ("part", "Part number"),
    ("firmware", "Firmware version"),
    ("phase", "Phase"),
    ("power", "Average real power"),
    ("energy", "Lifetime energy"),
    ("sku", "SKU"),
    ("last_report", "Last report"),
    ("status", "Status"),
];

fn devices_link(id: u32, sort: &str, dir: &str, page: usize) -> String {
    let mut link = format!("/systems/{id}/devices?sort={sort}&dir={dir}");
    if page > 1 {
        link.push_str(&format!("&page={page}"));
    }
    link.push_str("#microinverters");
    link
}

/// The Devices tab: what [`page`] and a refused provisioning form show.
async fn devices_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    query: &DevicesQuery,
    form: Option<(String, i64, String)>,
) -> Result<Response, PortalError> {
    // Authorised before the reads run side by side, so a refusal's status never depends on
    // which read fails first.
    authorize(principal, Need::System(id))?;
    let now = sunfleet_engine::time::now_micros();
    let ((chrome, system), devices) = tokio::try_join!(
        load(state, principal, id, "devices"),
        system_devices(state, principal, id, now)
    )?;
    let lang = principal.lang();
    let zone = system.zone.clone();
    let href = |device: i64| format!("/systems/{id}/devices/{device}");
    let figures_of = |device: i64| devices.figures.get(&device);
    let has_battery = devices
        .records
        .iter()
        .any(|r| r.kind == "battery" && r.state != "retired");
    let mut gateways = Vec::new();
    let mut meters = Vec::new();
    let mut micros: Vec<(&DeviceRecord, Option<&DeviceFigures>, Status)> = Vec::new();
    let mut batteries = Vec::new();
    for record in &devices.records {
        let figures = figures_of(record.id);
        let status = status_of(record, figures, &devices.open_events, lang);
        let last_report = figures.and_then(|f| f.last_report_us);
        match record.kind.as_str() {
            "gateway" => gateways.push(GatewayRow {
                href: href(record.id),
                serial: serial_text(record.serial),
                model: model_label(&record.model),
                connection: connection_label(&system.details.internet_connection, record, lang),
                cell_modem: record.cell_modem_sku.clone().unwrap_or_else(|| "—".into()),
                cell_plan_end: record
                    .cell_plan_end
                    .as_deref()
                    .map_or_else(|| "—".to_owned(), |d| lang.date(d)),
                software: match &record.session {
                    Some(s) if !s.software_version.is_empty() => {
                        format!("{} · {}", or_dash(&record.firmware), s.software_version)
                    }
                    _ => or_dash(&record.firmware),
                },
                // Telemetry does not name the gateway it came through: a gateway's last
                // report is its system's newest data.
                last_report: optional_time(devices.newest_report_us, lang, &zone),
                status,
                battery_present: lang.t(if has_battery { "Yes" } else { "No" }).to_owned(),
            }),
            "meter" => meters.push(MeterRow {
                href: href(record.id),
                serial: serial_text(record.serial),
                meter_type: lang.t(meter_type(record.meter_kind.as_deref())).to_owned(),
                part_number: or_dash(&record.model),
                lifetime: figures
                    .and_then(|f| f.lifetime_energy_wh)
                    .map_or_else(|| "—".to_owned(), |wh| lang.energy(wh)),
                last_report: optional_time(last_report, lang, &zone),
                status,
            }),
            "microinverter" => micros.push((record, figures, status)),
            "battery" => batteries.push(BatteryRow {
                href: href(record.id),
                serial: serial_text(record.serial),
                model: model_label(&record.model),
                capacity: record
                    .capacity_wh
                    .map_or_else(|| "—".to_owned(), |wh| lang.energy(wh)),
                state_of_charge: figures
                    .and_then(|f| f.state_of_charge_pct)
                    .map_or_else(|| "—".to_owned(), |pct| lang.percent(pct, 0)),
                last_report: optional_time(last_report, lang, &zone),
                status,
            }),
            _ => {}
        }
    }

    // Microinverters: sorted as asked (serial by default), a page at a time.
    let sort = query
        .sort
        .as_deref()
        .filter(|s| MICRO_COLUMNS.iter().any(|(key, _)| key == s))
        .unwrap_or("serial")
        .to_owned();
    let descending = query.dir.as_deref() == Some("desc");
    let number = |v: Option<f64>| v.unwrap_or(f64::NEG_INFINITY);
    micros.sort_by(|(a, fa, sa), (b, fb, sb)| {
        let by = match sort.as_str() {
            "part" => part_number(&a.model).cmp(&part_number(&b.model)),
            "firmware" => a.firmware.cmp(&b.firmware),
            "phase" => a.phase.cmp(&b.phase),
            "power" => number(fa.and_then(|f| f.average_power_w))
                .total_cmp(&number(fb.and_then(|f| f.average_power_w))),
            "energy" => number(fa.and_then(|f| f.lifetime_energy_wh))
                .total_cmp(&number(fb.and_then(|f| f.lifetime_energy_wh))),
            "sku" => a.model.cmp(&b.model),
            "last_report" => fa
                .and_then(|f| f.last_report_us)
                .cmp(&fb.and_then(|f| f.last_report_us)),
            "status" => sa.label.cmp(&sb.label),
            _ => Ordering::Equal,
        };
        by.then(a.serial.cmp(&b.serial))
    });
    if descending {
        micros.reverse();
    }
    let micro_total = micros.len();
    let pages = micro_total.div_ceil(MICROS_PER_PAGE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let dir = if descending { "desc" } else { "asc" };
    let micro_headers = MICRO_COLUMNS
        .iter()
        .map(|(key, heading)| {
            let current = sort == *key;
            SortHeader {
                heading: lang.t(heading).to_owned(),
                href: devices_link(
                    id,
                    key,
                    if current && !descending {
                        "desc"
                    } else {
                        "asc"
                    },
                    1,
                ),
                marker: match (current, descending) {
                    (true, false) => " ▲",
                    (true, true) => " ▼",
                    _ => "",
                },
            }
        })
        .collect();
    let micro_rows: Vec<MicroRow> = micros
        .into_iter()
        .skip((page - 1) * MICROS_PER_PAGE)
        .take(MICROS_PER_PAGE)
        .map(|(record, figures, status)| MicroRow {
            href: href(record.id),
            serial: serial_text(record.serial),
            part_number: part_number(&record.model),
            firmware: or_dash(&record.firmware),
            phase: phase_label(record.phase.as_deref()),
            average_power: figures
                .and_then(|f| f.average_power_w)
                .map_or_else(|| "—".to_owned(), |w| lang.power(w)),
            lifetime: figures
                .and_then(|f| f.lifetime_energy_wh)
                .map_or_else(|| "—".to_owned(), |wh| lang.energy(wh)),
            sku: or_dash(&record.model),
            last_report: optional_time(figures.and_then(|f| f.last_report_us), lang, &zone),
            status,
        })
        .collect();
    let first = if micro_total == 0 {
        0
    } else {
        (page - 1) * MICROS_PER_PAGE + 1
    };

    let gateway_serials: HashMap<i64, u64> = devices
        .records
        .iter()
        .filter(|r| r.kind == "gateway")
        .map(|r| (r.id, r.serial))
        .collect();
    let pending = devices
        .pending
        .iter()
        .map(|p| PendingRow {
            serial: serial_text(p.serial),
            gateway: serial_text(p.gateway_serial),
            requested: lang.local_time(p.task.created_us, &zone),
            state: lang.t(task_state_label(p.task.state)).to_owned(),
            state_class: task_state_class(p.task.state),
            progress: task_progress(&p.task, lang, &zone),
            result: match p.task.state {
                TaskProgress::Succeeded => {
                    let waiting = lang
                        .t("The gateway added it; it appears in the list with its first report.");
                    if p.task.result.is_empty() {
                        waiting.to_owned()
                    } else {
                        format!("{} {waiting}", p.task.result)
                    }
                }
                _ => p.task.result.clone(),
            },
        })
        .collect();
    let (serial_value, chosen_gateway, error) = match form {
        Some((serial, gateway, error)) => (serial, Some(gateway), Some(error)),
        None => (String::new(), None, None),
    };
    let gateway_choices = devices
        .records
        .iter()
        .filter(|r| r.kind == "gateway" && r.state != "retired")
        .enumerate()
        .map(|(i, r)| GatewayChoice {
            id: r.id,
            serial: serial_text(r.serial),
            selected: chosen_gateway.map_or(i == 0, |g| g == r.id),
        })
        .collect();
    let notice = query.requested.and_then(|task| {
        devices
            .pending
            .iter()
            .find(|p| p.task.id == task)
            .map(|p| {
                lang.fill(
                    "Provisioning of microinverter {} requested from gateway {} (task {}): the gateway runs it when it is connected, and the microinverter appears among the devices once the gateway reports it.",
                    &[
                        &serial_text(p.serial),
                        &gateway_serials
                            .get(&i64::from(p.task.gateway.0))
                            .map_or_else(String::new, |s| serial_text(*s)),
                        &task,
                    ],
                )
            })
    });
    let page_view = DevicesPage {
        chrome,
        system,
        gateways,
        meters,
        micro_headers,
        micros: micro_rows,
        micro_total,
        first,
        last: micro_total.min(page * MICROS_PER_PAGE),
        page,
        pages,
        previous_href: (page > 1).then(|| devices_link(id, &sort, dir, page - 1)),
        next_href: (page < pages).then(|| devices_link(id, &sort, dir, page + 1)),
        batteries,
        pending,
        gateway_choices,
        serial_value,
        error: error.clone(),
        notice,
    };
    let mut response = render("system devices", &page_view)?;
    if error.is_some() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<DevicesQuery>,
) -> Result<Response, PortalError> {
    devices_page(&state, &principal, id, &query, None).await
}

/// Sent, started and finished times of a task, as far as it got.
fn task_progress(
    task: &sunfleet_engine::registry::GatewayTask,
    lang: Lang,
    zone: &jiff::tz::TimeZone,
) -> String {
    [
        ("sent", task.sent_us),
        ("started", task.started_us),
        ("finished", task.finished_us),
    ]
    .into_iter()
    .filter_map(|(what, at)| Some(format!("{} {}", lang.t(what), lang.local_time(at?, zone))))
    .collect::<Vec<_>>()
    .join(" · ")
}

#[derive(Debug, Deserialize)]
pub struct ProvisionForm {
    csrf_token: Option<String>,
    gateway: Option<String>,
    serial: Option<String>,
}

/// Provisions a microinverter: a `provision_devices` task for the chosen gateway. A bad
/// serial, a serial any device already has or a request stands for, or a gateway not of
/// this system is refused (400) with the reason, and nothing is queued.
pub async fn provision(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(form): Form<ProvisionForm>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    principal.check_csrf(form.csrf_token.as_deref())?;
    let serial_text = form.serial.unwrap_or_default().trim().to_owned();
    let gateway = form
        .gateway
        .as_deref()
        .and_then(|g| g.trim().parse::<i64>().ok());
    let refusal = match request_provisioning(&state, &principal, id, &serial_text, gateway).await? {
        Ok(task) => {
            return Ok(
                Redirect::to(&format!("/systems/{id}/devices?requested={task}#pending"))
                    .into_response(),
            );
        }
        Err(message) => message,
    };
    devices_page(
        &state,
        &principal,
        id,
        &DevicesQuery::default(),
        Some((serial_text, gateway.unwrap_or(0), refusal)),
    )
    .await
}

/// Queues one provisioning task for the serials in `serials_text` (one, or several
/// separated by commas or spaces); `Err` says why not, in the user's language, naming the
/// serial at fault. Nothing is queued unless every serial is acceptable.
pub(super) async fn request_provisioning(
    state: &AppState,
    principal: &Principal,
    id: u32,
    serials_text: &str,
    gateway: Option<i64>,
) -> Result<Result<i64, String>, PortalError> {
    let lang = principal.lang();
    let mut serials = Vec::new();
    for text in serials_text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|t| !t.is_empty())
    {
        match text.parse::<Serial>() {
            Ok(serial) if text.len() == 12 => serials.push(serial),
            _ => {
                return Ok(Err(lang.fill(
                    "{} is not a microinverter serial number: enter the 12 digits on its label.",
                    &[&format!("{text:?}")],
                )));
            }
        }
    }
    if serials.is_empty() {
        return Ok(Err(lang
            .t("Enter the serial number of the microinverter to provision.")
            .to_owned()));
    }
    let Some(gateway) = gateway else {
        return Ok(Err(lang
            .t("Choose the gateway that is to provision the microinverter.")
            .to_owned()));
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.request_provisioning(i64::from(id), gateway, &serials, Some(user), now)?)
    })
    .await?;
    Ok(outcome.map_err(|refusal| match refusal {
        ProvisionRefusal::NotThisSystemsGateway => lang
            .t("The chosen gateway is not one of this system's gateways in service: nothing was queued.")
            .to_owned(),
        ProvisionRefusal::NoSerials => lang
            .t("Enter the serial number of the microinverter to provision.")
            .to_owned(),
        ProvisionRefusal::SerialRepeated { serial } => lang.fill(
            "Serial number {} is entered twice: nothing was queued.",
            &[&serial],
        ),
        ProvisionRefusal::SerialRegistered {
            serial,
            kind,
            in_this_system: true,
        } => lang.fill(
            "Serial number {} is already registered to this system (a {}): nothing was queued.",
            &[&serial, &lang.t(kind_label(&kind)).to_lowercase()],
        ),
        ProvisionRefusal::SerialRegistered {
            serial,
            in_this_system: false,
            ..
        } => lang.fill(
            "Serial number {} is already registered to another system: a device belongs to one system only. Nothing was queued; if the unit moved here, retire it there first.",
            &[&serial],
        ),
        ProvisionRefusal::SerialBeingProvisioned {
            serial,
            task_id,
            in_this_system: true,
        } => lang.fill(
            "Microinverter {} is already being provisioned on this system (task {}): nothing was queued.",
            &[&serial, &task_id],
        ),
        ProvisionRefusal::SerialBeingProvisioned {
            serial,
            in_this_system: false,
            ..
        } => lang.fill(
            "Microinverter {} is already being provisioned on another system: nothing was queued.",
            &[&serial],
        ),
    }))
}

pub struct Fact {
    pub label: String,
    pub value: String,
    /// A fact naming another device links to its page.
    pub href: Option<String>,
}

pub struct EventLine {
    pub time: String,
    pub label: String,
    pub state: String,
    pub class: String,
}

pub struct ReadingTable {
    pub headings: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

pub struct Curve {
    pub heading: String,
    pub json: String,
    pub summary: String,
    pub previous_href: String,
    pub next_href: Option<String>,
    pub date: String,
}

pub struct TaskRow {
    pub kind: String,
    pub parameters: String,
    pub created_by: String,
    pub created: String,
    pub state: String,
    pub state_class: &'static str,
    pub progress: String,
    pub result: String,
}

pub struct TaskButton {
    pub kind: &'static str,
    pub label: String,
}

/// A gateway page's task section.
pub struct GatewayTasks {
    pub rows: Vec<TaskRow>,
    pub total: u64,
    pub page: u32,
    pub pages: u32,
    pub previous_href: Option<String>,
    pub next_href: Option<String>,
    pub buttons: Vec<TaskButton>,
    pub production: String,
    pub delivery: String,
}

#[derive(Template)]
#[template(path = "system/device.html")]
struct DevicePage {
    chrome: Chrome,
    system: SystemChrome,
    device_id: i64,
    heading: String,
    facts: Vec<Fact>,
    status: Status,
    curve: Option<Curve>,
    events: Vec<EventLine>,
    readings: Option<ReadingTable>,
    tasks: Option<GatewayTasks>,
    notice: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DeviceQuery {
    date: Option<String>,
    tasks_page: Option<u32>,
    queued: Option<i64>,
}

/// One device's page (`#device-summary` holds what the View tab shows of it).
pub async fn device(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, device_id)): Path<(u32, i64)>,
    Query(query): Query<DeviceQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::System(id))?;
    let now = sunfleet_engine::time::now_micros();
    let ((chrome, system), devices) = tokio::try_join!(
        load(&state, &principal, id, "devices"),
        system_devices(&state, &principal, id, now)
    )?;
    let lang = principal.lang();
    let zone = system.zone.clone();
    let not_found = || PortalError::NotFound {
        what: format!("device {device_id} of system {id}"),
    };
    let record = devices
        .records
        .iter()
        .find(|r| r.id == device_id)
        .ok_or_else(not_found)?;
    let device = u32::try_from(device_id).map_err(|_| not_found())?;
    let figures = devices.figures.get(&device_id);
    let status = status_of(record, figures, &devices.open_events, lang);
    let last_report = match record.kind.as_str() {
        "gateway" => devices.newest_report_us,
        _ => figures.and_then(|f| f.last_report_us),
    };
    let mut facts = vec![
        fact(lang, "Serial number", serial_text(record.serial)),
        fact(lang, "Last report", optional_time(last_report, lang, &zone)),
    ];
    let energy = |wh: Option<f64>| wh.map_or_else(|| "—".to_owned(), |wh| lang.energy(wh));
    match record.kind.as_str() {
        "microinverter" => {
            facts.push(fact(
                lang,
                "Lifetime energy",
                energy(figures.and_then(|f| f.lifetime_energy_wh)),
            ));
            facts.push(fact(
                lang,
                "Average real power",
                figures
                    .and_then(|f| f.average_power_w)
                    .map_or_else(|| "—".to_owned(), |w| lang.power(w)),
            ));
            facts.push(fact(lang, "Part number", part_number(&record.model)));
            facts.push(fact(lang, "SKU", or_dash(&record.model)));
            facts.push(fact(lang, "Firmware version", or_dash(&record.firmware)));
            facts.push(fact(lang, "Phase", phase_label(record.phase.as_deref())));
            if let Some(array) = &record.array_name {
                facts.push(fact(lang, "Array", array.clone()));
            }
        }
        "meter" => {
            facts.push(fact(
                lang,
                "Type",
                lang.t(meter_type(record.meter_kind.as_deref())).to_owned(),
            ));
            facts.push(fact(lang, "Part number", or_dash(&record.model)));
            facts.push(fact(
                lang,
                "Lifetime energy",
                energy(figures.and_then(|f| f.lifetime_energy_wh)),
            ));
            facts.push(fact(
                lang,
                "Lifetime energy received",
                energy(figures.and_then(|f| f.lifetime_received_wh)),
            ));
        }
        "battery" => {
            facts.push(fact(lang, "Model", model_label(&record.model)));
            facts.push(fact(
                lang,
                "Capacity",
                record
                    .capacity_wh
                    .map_or_else(|| "—".to_owned(), |wh| lang.energy(wh)),
            ));
            facts.push(fact(
                lang,
                "State of charge",
                figures
                    .and_then(|f| f.state_of_charge_pct)
                    .map_or_else(|| "—".to_owned(), |p| lang.percent(p, 0)),
            ));
        }
        _ => {
            facts.push(fact(lang, "Type", model_label(&record.model)));
            facts.push(fact(
                lang,
                "Connection",
                connection_label(&system.details.internet_connection, record, lang),
            ));
            if let Some(sku) = &record.cell_modem_sku {
                facts.push(fact(lang, "Cell modem", sku.clone()));
                facts.push(fact(
                    lang,
                    "Cell modem plan end",
                    record
                        .cell_plan_end
                        .as_deref()
                        .map_or_else(|| "—".to_owned(), |d| lang.date(d)),
                ));
            }
            facts.push(fact(lang, "Firmware version", or_dash(&record.firmware)));
            if let Some(session) = &record.session {
                facts.push(fact(
                    lang,
                    "Software version",
                    or_dash(&session.software_version),
                ));
                facts.push(fact(
                    lang,
                    "Last connected",
                    optional_time(
                        (session.last_connected_us > 0).then_some(session.last_connected_us),
                        lang,
                        &zone,
                    ),
                ));
            }
            facts.push(fact(
                lang,
                "Grid profile",
                record
                    .grid_profile
                    .clone()
                    .unwrap_or_else(|| lang.t("Not reported yet").to_owned()),
            ));
            let has_battery = devices
                .records
                .iter()
                .any(|r| r.kind == "battery" && r.state != "retired");
            facts.push(fact(
                lang,
                "Battery present",
                lang.t(if has_battery { "Yes" } else { "No" }).to_owned(),
            ));
        }
    }
    if record.state == "retired" {
        facts.push(fact(
            lang,
            "Retired",
            optional_time(record.retired_us, lang, &zone),
        ));
    }
    // Replacements (R2, R3): the unit that took this one's place, and the units this one
    // replaced, whose readings its history continues.
    let by_id = |id: i64| devices.records.iter().find(|r| r.id == id);
    if let Some(successor) = record.replaced_by.and_then(by_id) {
        facts.push(device_fact(lang, "Replaced by", id, successor));
    }
    for predecessor in devices
        .records
        .iter()
        .filter(|r| r.replaced_by == Some(record.id))
    {
        facts.push(device_fact(lang, "Replaces", id, predecessor));
    }
    if record.kind != "gateway"
        && let Some(gateway) = record.gateway_id.and_then(by_id)
    {
        facts.push(device_fact(lang, "Reports through gateway", id, gateway));
    }
    if let Some(since) = record.reprovision_since_us {
        facts.push(Fact {
            href: Some(format!(
                "/systems/{id}/settings/self-service/gateway#reprovision"
            )),
            ..fact(
                lang,
                "Provisioning",
                lang.fill(
                    "moved to a new gateway on {}: to provision again with it",
                    &[&lang.local_time(since, &zone)],
                ),
            )
        });
    }

    let curve = if record.kind == "microinverter" {
        Some(
            power_curve(
                &state,
                &principal,
                &system,
                device,
                last_report,
                query.date.as_deref(),
                now,
            )
            .await?,
        )
    } else {
        None
    };
    let events = device_events(&state, &principal, &system, record, device).await?;
    let readings = match record.kind.as_str() {
        "gateway" => None,
        _ => {
            // The readings up to the end of the day the curve shows, or the newest.
            let until = match (&curve, last_report) {
                (Some(curve), Some(last)) => {
                    local_day_bounds(&zone, &curve.date).map_or(last, |(_, end)| end.min(last))
                }
                (_, Some(last)) => last,
                (_, None) => now,
            };
            let recent = state
                .query()
                .device_readings(&principal.scope, id, device, until, READINGS_SHOWN)
                .await?;
            Some(reading_table(&recent, lang, &zone))
        }
    };
    let tasks = if record.kind == "gateway" {
        Some(
            gateway_tasks(
                &state,
                &system,
                record,
                devices.newest_report_us,
                query.tasks_page.unwrap_or(1),
                lang,
                now,
            )
            .await?,
        )
    } else {
        None
    };
    let notice = query.queued.map(|task| {
        lang.fill(
            "Task {} queued: it is listed below with its state.",
            &[&task],
        )
    });
    let page = DevicePage {
        heading: format!(
            "{} {}",
            lang.t(kind_label(&record.kind)),
            serial_text(record.serial)
        ),
        chrome,
        system,
        device_id,
        facts,
        status,
        curve,
        events,
        readings,
        tasks,
        notice,
    };
    render("device", &page)
}

fn fact(lang: Lang, label: &str, value: String) -> Fact {
    Fact {
        label: lang.t(label).to_owned(),
        value,
        href: None,
    }
}

/// A fact naming device `device` of system `system`, linked to its page.
fn device_fact(lang: Lang, label: &str, system: u32, device: &DeviceRecord) -> Fact {
    Fact {
        href: Some(format!("/systems/{system}/devices/{}", device.id)),
        ..fact(lang, label, serial_text(device.serial))
    }
}

/// A microinverter's power over one site-local day (the one asked for, else the day of its
/// newest report), as the chart's JSON.
async fn power_curve(
    state: &AppState,
    principal: &Principal,
    system: &SystemChrome,
    device: u32,
    last_report: Option<i64>,
    date: Option<&str>,
    now: i64,
) -> Result<Curve, PortalError> {
    let lang = principal.lang();
    let zone = &system.zone;
    let date = date
        .filter(|d| local_day_bounds(zone, d).is_some())
        .map(str::to_owned)
        .unwrap_or_else(|| local_date(zone, last_report.map_or(now, |t| t - 1)));
    let (start, end) = local_day_bounds(zone, &date).ok_or_else(|| PortalError::Internal {
        context: format!("the bounds of {date} in {}", system.details.time_zone),
    })?;
    let series = state
        .query()
        .production_series(
            &principal.scope,
            &SeriesRequest {
                system_id: system.id,
                device_id: Some(device),
                start_us: start,
                end_us: end,
                granularity: Granularity::FiveMinutes,
                max_points: 300,
            },
        )
        .await?;
    let labels: Vec<String> = series
        .points
        .iter()
        .map(|p| p.local_start.get(11..16).unwrap_or_default().to_owned())
        .collect();
    let values: Vec<f64> = series
        .points
        .iter()
        .map(|p| (p.power_avg_w * 10.0).round() / 10.0)
        .collect();
    let energy_wh: f64 = series.points.iter().map(|p| p.energy_wh).sum();
    let peak_w = values.iter().copied().fold(0.0, f64::max);
    let json = serde_json::json!({ "labels": labels, "values": values, "unit": "W" }).to_string();
    let base = format!("/systems/{}/devices/{device}", system.id);
    let previous = local_date(zone, start - DAY_US / 2);
    let next = local_date(zone, end + DAY_US / 2);
    let today = local_date(zone, now);
    Ok(Curve {
        heading: lang.fill("Power on {}", &[&lang.date(&date)]),
        json,
        summary: lang.fill(
            "{} produced that day; highest 5-minute power {}.",
            &[&lang.energy(energy_wh), &lang.power(peak_w)],
        ),
        previous_href: format!("{base}?date={previous}"),
        next_href: (date < today).then(|| format!("{base}?date={next}")),
        date,
    })
}

/// The events about a device, newest first: conditions the checks found (open or ended)
/// and events the device itself reported.
async fn device_events(
    state: &AppState,
    principal: &Principal,
    system: &SystemChrome,
    record: &DeviceRecord,
    device: u32,
) -> Result<Vec<EventLine>, PortalError> {
    let lang = principal.lang();
    let zone = &system.zone;
    let registry = Arc::clone(state.registry());
    let (system_id, device_id, is_gateway) =
        (i64::from(system.id), record.id, record.kind == "gateway");
    let conditions = blocking(move || {
        let filter = |code: Option<String>, device_id: Option<i64>| EventFilter {
            state: EventState::Any,
            code,
            device_id,
            limit: EVENTS_SHOWN,
            offset: 0,
        };
        let mut events = registry
            .system_events(system_id, &filter(None, Some(device_id)))?
            .0;
        // Whether the gateway reports is a condition of the system as a whole.
        if is_gateway {
            events.extend(
                registry
                    .system_events(
                        system_id,
                        &filter(Some("gateway_not_reporting".to_owned()), None),
                    )?
                    .0,
            );
        }
        Ok(events)
    })
    .await?;
    let mut lines: Vec<(i64, EventLine)> = conditions
        .into_iter()
        .map(|e| {
            (
                e.started_us,
                EventLine {
                    time: lang.local_time(e.started_us, zone),
                    label: lang.t(&event_label(&e.code)).to_owned(),
                    state: match e.ended_us {
                        None => lang.t("Current").to_owned(),
                        Some(ended) => {
                            format!("{} {}", lang.t("Cleared"), lang.local_time(ended, zone))
                        }
                    },
                    class: format!("severity-{}", e.severity),
                },
            )
        })
        .collect();
    // What the device itself reported (a gateway: its power-on reset after a reboot).
    let reported = state
        .query()
        .device_reported_events(&principal.scope, system.id, device, EVENTS_SHOWN as usize)
        .await?;
    lines.extend(reported.into_iter().map(|e| {
        let label = EventKind::from_number(e.event_number).map_or_else(
            || format!("#{}", e.event_number),
            |k| lang.t(k.label()).to_owned(),
        );
        (
            e.time_us,
            EventLine {
                time: lang.local_time(e.time_us, zone),
                label,
                state: lang
                    .t(if e.raised {
                        "Reported by the device"
                    } else {
                        "Cleared, reported by the device"
                    })
                    .to_owned(),
                class: if e.raised {
                    "severity-medium".to_owned()
                } else {
                    "severity-info".to_owned()
                },
            },
        )
    }));
    lines.sort_by_key(|line| std::cmp::Reverse(line.0));
    Ok(lines
        .into_iter()
        .take(EVENTS_SHOWN as usize)
        .map(|(_, line)| line)
        .collect())
}

/// A reading column's heading and how its stored unit is shown.
fn column_display(name: &str) -> (&'static str, f64, usize) {
    match name {
        "energy_j" => ("Energy (Wh)", 3600.0, 1),
        "ac_power_w" => ("AC power (W)", 1.0, 0),
        "dc_voltage_mv" => ("DC voltage (V)", 1000.0, 1),
        "dc_current_ma" => ("DC current (A)", 1000.0, 2),
        "ac_voltage_mv" | "voltage_mv" => ("AC voltage (V)", 1000.0, 1),
        "ac_frequency_mhz" | "frequency_mhz" => ("Frequency (Hz)", 1000.0, 2),
        "temperature_c" => ("Temperature (°C)", 1.0, 0),
        "status" => ("Status", 1.0, 0),
        "active_power_w" => ("Active power (W)", 1.0, 0),
        "reactive_power_var" => ("Reactive power (var)", 1.0, 0),
        "energy_delivered_wh" => ("Energy delivered, lifetime (kWh)", 1000.0, 1),
        "energy_received_wh" => ("Energy received, lifetime (kWh)", 1000.0, 1),
        "current_ma" => ("Current (A)", 1000.0, 2),
        "power_factor_milli" => ("Power factor", 1000.0, 2),
        "power_w" => ("Power (W, + discharging)", 1.0, 0),
        "soc_permille" => ("State of charge (%)", 10.0, 1),
        _ => ("Value", 1.0, 0),
    }
}

fn reading_table(recent: &RecentReadings, lang: Lang, zone: &jiff::tz::TimeZone) -> ReadingTable {
    let mut headings = vec![lang.t("Time").to_owned()];
    headings.extend(
        recent
            .columns
            .iter()
            .map(|c| lang.t(column_display(c).0).to_owned()),
    );
    let rows = recent
        .rows
        .iter()
        .map(|(time, values)| {
            let mut row = vec![lang.local_time(*time, zone)];
            row.extend(recent.columns.iter().zip(values).map(|(column, value)| {
                match (*column, value) {
                    (_, None) => "—".to_owned(),
                    ("status", Some(flags)) => flag_words(*flags as u16, lang),
                    (column, Some(value)) => {
                        let (_, divisor, places) = column_display(column);
                        lang.decimal(value / divisor, places)
                    }
                }
            }));
            row
        })
        .collect();
    ReadingTable { headings, rows }
}

/// A gateway's task list and the buttons that queue tasks, with what the server knows of
/// when the gateway will get them.
pub(super) async fn gateway_tasks(
    state: &AppState,
    system: &SystemChrome,
    record: &DeviceRecord,
    newest_report_us: Option<i64>,
    page: u32,
    lang: Lang,
    now: i64,
) -> Result<GatewayTasks, PortalError> {
    let zone = &system.zone;
    let registry = Arc::clone(state.registry());
    let gateway_id = record.id;
    let page = page.max(1);
    let (lines, total, production) = blocking(move || {
        let (lines, total) = registry.gateway_task_page(
            gateway_id,
            TASKS_PER_PAGE,
            (page - 1).saturating_mul(TASKS_PER_PAGE),
        )?;
        let production = registry.latest_production_task(gateway_id)?;
        Ok((lines, total, production))
    })
    .await?;
    let pages = u32::try_from(total.div_ceil(u64::from(TASKS_PER_PAGE)))
        .unwrap_or(u32::MAX)
        .max(1);
    let base = format!("/systems/{}/devices/{gateway_id}", system.id);
    let rows = lines
        .iter()
        .map(|TaskLine { task, created_by }| TaskRow {
            kind: lang.t(task_kind_label(&task.kind)).to_owned(),
            parameters: if task.parameters == "{}" {
                String::new()
            } else {
                task.parameters.clone()
            },
            created_by: created_by
                .clone()
                .unwrap_or_else(|| lang.t("command line or system").to_owned()),
            created: lang.local_time(task.created_us, zone),
            state: lang.t(task_state_label(task.state)).to_owned(),
            state_class: task_state_class(task.state),
            progress: task_progress(task, lang, zone),
            result: task.result.clone(),
        })
        .collect();
    // The server delivers a queued task within a second to a connected gateway, or when it
    // next connects; whether it is connected now is ingest's, so the page says what the
    // registry and the data show.
    let silence_us = newest_report_us.map(|t| now - t);
    let usual_gap_us = if record.low_bandwidth {
        7 * 60 * MINUTE_US
    } else {
        20 * MINUTE_US
    };
    let delivery = match silence_us {
        Some(silence) if silence <= usual_gap_us => lang.fill(
            "The gateway sent data {} ago: it is most likely connected and gets a queued task within seconds (the server looks for new tasks every second).",
            &[&lang.age(silence.max(0))],
        ),
        Some(silence) => lang.fill(
            "The gateway has sent nothing for {}: a queued task waits until it connects again.",
            &[&lang.age(silence)],
        ),
        None => lang
            .t("The gateway has not sent data yet: a queued task waits until it connects.")
            .to_owned(),
    };
    let delivery = if record.low_bandwidth {
        format!(
            "{delivery} {}",
            lang.t("Over a cellular link, allow an hour or more.")
        )
    } else {
        delivery
    };
    let production_on = production.as_deref() != Some("production_off");
    let production_text = match production.as_deref() {
        Some("production_off") => {
            "Power production is disabled on the microinverters of this gateway: batteries neither charge nor discharge."
        }
        Some(_) => "Power production is enabled on the microinverters of this gateway.",
        None => "Power production is enabled (no production task has run on this gateway).",
    };
    let buttons = if system.can_manage {
        GATEWAY_TASKS
            .iter()
            .filter(|(kind, _)| match *kind {
                "production_on" => !production_on,
                "production_off" => production_on,
                _ => true,
            })
            .map(|(kind, label)| TaskButton {
                kind,
                label: lang.t(label).to_owned(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(GatewayTasks {
        rows,
        total,
        page,
        pages,
        previous_href: (page > 1).then(|| format!("{base}?tasks_page={}#tasks", page - 1)),
        next_href: (page < pages).then(|| format!("{base}?tasks_page={}#tasks", page + 1)),
        buttons,
        production: lang.t(production_text).to_owned(),
        delivery,
    })
}

#[derive(Debug, Deserialize)]
pub struct TaskForm {
    csrf_token: Option<String>,
    kind: Option<String>,
}

/// Queues one of [`GATEWAY_TASKS`] for a gateway of the system.
pub async fn queue_task(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, device_id)): Path<(u32, i64)>,
    Form(form): Form<TaskForm>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    principal.check_csrf(form.csrf_token.as_deref())?;
    let kind = form.kind.unwrap_or_default();
    let Some((kind, _)) = GATEWAY_TASKS.iter().find(|(k, _)| *k == kind) else {
        return Err(PortalError::BadRequest {
            message: format!(
                "{kind:?} is not a task this page queues; one of: {}",
                GATEWAY_TASKS
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let queued = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.queue_system_task(i64::from(id), device_id, kind, "{}", Some(user), now)?)
    })
    .await?;
    match queued {
        Some(task) => Ok(Redirect::to(&format!(
            "/systems/{id}/devices/{device_id}?queued={task}#tasks"
        ))
        .into_response()),
        None => Err(PortalError::NotFound {
            what: format!("gateway {device_id} of system {id}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::has_french;

    /// Every wording this page and the Events tab compute (`lang.t("…")`, `lang.fill("…")`
    /// and the label tables) has a French entry.
    #[test]
    fn every_computed_wording_has_a_french_entry() {
        let mut wordings: Vec<String> = Vec::new();
        for source in [
            include_str!("devices.rs"),
            include_str!("events.rs"),
            include_str!("diagnostics.rs"),
        ] {
            let code = source.split("#[cfg(test)]").next().unwrap_or(source);
            for marker in [".t(", ".fill(", "fact("] {
                for piece in code.split(marker).skip(1) {
                    let rest = piece.trim_start();
                    let rest = rest.strip_prefix("lang,").unwrap_or(rest).trim_start();
                    if let Some(text) = rest.strip_prefix('"')
                        && let Some(end) = text.find('"')
                    {
                        wordings.push(text[..end].to_owned());
                    }
                }
            }
        }
        for kind in ["gateway", "microinverter", "meter", "battery", "other"] {
            wordings.push(kind_label(kind).to_owned());
        }
        for meter in [
            Some("production"),
            Some("consumption_net"),
            Some("consumption_total"),
            None,
        ] {
            wordings.push(meter_type(meter).to_owned());
        }
        for kind in [
            "production_on",
            "production_off",
            "reboot",
            "provision_devices",
            "meter_mode",
            "grid_profile",
            "check_signal",
            "scan_devices",
            "clear_gfi",
            "reset_dc_resistance",
        ] {
            wordings.push(task_kind_label(kind).to_owned());
        }
        wordings.extend(
            super::super::diagnostics::DIAGNOSTIC_TASKS
                .iter()
                .map(|(_, label)| (*label).to_owned()),
        );
        for state in [
            TaskProgress::Queued,
            TaskProgress::Sent,
            TaskProgress::Started,
            TaskProgress::Succeeded,
            TaskProgress::Failed,
            TaskProgress::Cancelled,
        ] {
            wordings.push(task_state_label(state).to_owned());
        }
        wordings.extend(GATEWAY_TASKS.iter().map(|(_, label)| label.to_string()));
        wordings.extend(MICRO_COLUMNS.iter().map(|(_, heading)| heading.to_string()));
        for name in [
            "energy_j",
            "ac_power_w",
            "dc_voltage_mv",
            "dc_current_ma",
            "ac_voltage_mv",
            "ac_frequency_mhz",
            "temperature_c",
            "status",
            "active_power_w",
            "reactive_power_var",
            "energy_delivered_wh",
            "energy_received_wh",
            "voltage_mv",
            "current_ma",
            "frequency_mhz",
            "power_factor_milli",
            "power_w",
            "soc_permille",
            "unknown",
        ] {
            wordings.push(column_display(name).0.to_owned());
        }
        wordings.extend(
            super::super::events::STATES
                .iter()
                .map(|(_, label)| label.to_string()),
        );
        assert!(wordings.len() > 100, "the scan found the wordings");
        let missing: Vec<&String> = wordings.iter().filter(|w| !has_french(w)).collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }

    #[test]
    fn a_stopped_microinverter_says_why() {
        assert_eq!(
            stopped_by(micro_status::PRODUCING | micro_status::CLIPPING),
            None
        );
        assert_eq!(
            stopped_by(micro_status::GFI_TRIPPED | micro_status::POWER_OFF_BY_COMMAND),
            Some(EventKind::GfiTripped)
        );
        assert_eq!(flag_words(0, Lang::En), "idle");
        assert_eq!(
            flag_words(micro_status::PRODUCING, Lang::Fr),
            "en production"
        );
        assert_eq!(
            model_label("ENV-S-WM-230"),
            "800-00555-r03 (Envoy-S Metered)"
        );
        assert_eq!(model_label(""), "—");
    }
}
