//! System diagnostics (C7, with the grid profile of C3 and production on/off of C6): one
//! form that queues any remote task for one of the system's gateways — provision devices
//! (comma-separated serials, each checked), power production on or off, the consumption
//! meter's mode (Net or Total), the grid profile, reboot, signal strength, scan for new
//! devices, clearing GFI and DC-resistance-low latches — and, per gateway, what it is known
//! to run now (production, grid profile) and its newest tasks with their state and the
//! gateway's message. The gateway's own page (Devices tab) keeps the full task list.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::grid_profiles::GRID_PROFILES;

use super::devices::{GatewayTasks, gateway_tasks, request_provisioning, system_devices};
use super::{SystemChrome, load};
use crate::access::{Need, authorize};
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// The tasks the diagnostics form queues, in the order of its menu.
pub const DIAGNOSTIC_TASKS: [(&str, &str); 10] = [
    ("provision_devices", "Provision devices"),
    ("production_off", "Disable power production"),
    ("production_on", "Enable power production"),
    ("meter_mode", "Consumption meter state"),
    ("grid_profile", "Grid profile"),
    ("reboot", "Reboot gateway"),
    ("check_signal", "Check signal strength"),
    ("scan_devices", "Scan for new devices"),
    ("clear_gfi", "Clear GFI"),
    ("reset_dc_resistance", "Reset DC-resistance-low sensor"),
];

pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// One gateway in service: what it runs now and its newest tasks.
pub struct GatewaySection {
    pub device_id: i64,
    pub serial: String,
    pub grid_profile: String,
    pub tasks: GatewayTasks,
}

#[derive(Template)]
#[template(path = "system/diagnostics.html")]
struct DiagnosticsPage {
    chrome: Chrome,
    system: SystemChrome,
    gateways: Vec<Choice>,
    tasks: Vec<Choice>,
    profiles: Vec<Choice>,
    serials: String,
    mode: String,
    has_consumption_meter: bool,
    meter_state: String,
    error: Option<String>,
    notice: Option<String>,
    sections: Vec<GatewaySection>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DiagnosticsQuery {
    queued: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DiagnosticsForm {
    csrf_token: Option<String>,
    gateway: Option<String>,
    task: Option<String>,
    serials: Option<String>,
    mode: Option<String>,
    profile: Option<String>,
}

/// What the form asked, to show again with a refusal.
struct Entered {
    gateway: Option<i64>,
    task: String,
    serials: String,
    mode: String,
    profile: String,
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<DiagnosticsQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    let lang = principal.lang();
    let notice = query
        .queued
        .map(|task| lang.fill("Task {} queued: its state follows below.", &[&task]));
    diagnostics_page(&state, &principal, id, None, notice, StatusCode::OK).await
}

/// Queues the chosen task; a refusal shows the form again with the reason (400) and
/// queues nothing.
pub async fn submit(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(form): Form<DiagnosticsForm>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    principal.check_csrf(form.csrf_token.as_deref())?;
    let entered = Entered {
        gateway: form
            .gateway
            .as_deref()
            .and_then(|g| g.trim().parse::<i64>().ok()),
        task: form.task.unwrap_or_default(),
        serials: form.serials.unwrap_or_default().trim().to_owned(),
        mode: form.mode.unwrap_or_default(),
        profile: form.profile.unwrap_or_default(),
    };
    match queue(&state, &principal, id, &entered).await? {
        Ok(task) => Ok(
            Redirect::to(&format!("/systems/{id}/diagnostics?queued={task}#tasks")).into_response(),
        ),
        Err(message) => {
            diagnostics_page(
                &state,
                &principal,
                id,
                Some((entered, message)),
                None,
                StatusCode::BAD_REQUEST,
            )
            .await
        }
    }
}

/// Checks the form and queues its task; `Err` says why not, in the user's language.
async fn queue(
    state: &AppState,
    principal: &Principal,
    id: u32,
    entered: &Entered,
) -> Result<Result<i64, String>, PortalError> {
    let lang = principal.lang();
    let Some((kind, _)) = DIAGNOSTIC_TASKS.iter().find(|(k, _)| *k == entered.task) else {
        return Ok(Err(lang.t("Choose a task.").to_owned()));
    };
    let Some(gateway) = entered.gateway else {
        return Ok(Err(lang
            .t("Choose the gateway that is to run the task.")
            .to_owned()));
    };
    let parameters = match *kind {
        "provision_devices" => {
            return request_provisioning(state, principal, id, &entered.serials, Some(gateway))
                .await;
        }
        "meter_mode" => match entered.mode.as_str() {
            "net" | "total" => {
                if !has_consumption_meter(state, id).await? {
                    return Ok(Err(lang
                        .t("This system has no consumption meter: there is no meter state to change.")
                        .to_owned()));
                }
                serde_json::json!({ "mode": entered.mode }).to_string()
            }
            _ => {
                return Ok(Err(lang
                    .t("Choose the consumption meter state: Net or Total.")
                    .to_owned()));
            }
        },
        "grid_profile" => match GRID_PROFILES.iter().find(|p| p.name == entered.profile) {
            Some(profile) => serde_json::json!({ "profile": profile.name }).to_string(),
            None => {
                return Ok(Err(lang
                    .t("Choose a grid profile from the list.")
                    .to_owned()));
            }
        },
        _ => "{}".to_owned(),
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let queued = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.queue_system_task(
            i64::from(id),
            gateway,
            kind,
            &parameters,
            Some(user),
            now,
        )?)
    })
    .await?;
    Ok(queued.ok_or_else(|| {
        lang.t("The chosen gateway is not one of this system's gateways in service: nothing was queued.")
            .to_owned()
    }))
}

async fn has_consumption_meter(state: &AppState, id: u32) -> Result<bool, PortalError> {
    let registry = Arc::clone(state.registry());
    let records = blocking(move || Ok(registry.system_devices(i64::from(id))?)).await?;
    Ok(records.iter().any(is_consumption_meter))
}

fn is_consumption_meter(record: &sunfleet_engine::registry::DeviceRecord) -> bool {
    record.kind == "meter"
        && record.state != "retired"
        && matches!(
            record.meter_kind.as_deref(),
            Some("consumption_net" | "consumption_total")
        )
}

async fn diagnostics_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    refused: Option<(Entered, String)>,
    notice: Option<String>,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(state, principal, id, "devices").await?;
    let lang = principal.lang();
    let now = sunfleet_engine::time::now_micros();
    let devices = system_devices(state, principal, id, now).await?;
    let (entered, error) = match refused {
        Some((entered, message)) => (Some(entered), Some(message)),
        None => (None, None),
    };
    let in_service: Vec<_> = devices
        .records
        .iter()
        .filter(|r| r.kind == "gateway" && r.state != "retired")
        .collect();
    let chosen_gateway = entered
        .as_ref()
        .and_then(|e| e.gateway)
        .or_else(|| in_service.first().map(|r| r.id));
    let gateways = in_service
        .iter()
        .map(|r| Choice {
            value: r.id.to_string(),
            label: format!("{} {:012}", lang.t("Gateway"), r.serial),
            selected: Some(r.id) == chosen_gateway,
        })
        .collect();
    let chosen_task = entered.as_ref().map_or("", |e| e.task.as_str());
    let tasks = DIAGNOSTIC_TASKS
        .iter()
        .map(|(kind, label)| Choice {
            value: (*kind).to_owned(),
            label: lang.t(label).to_owned(),
            selected: *kind == chosen_task,
        })
        .collect();
    let chosen_profile = entered.as_ref().map_or("", |e| e.profile.as_str());
    let profiles = GRID_PROFILES
        .iter()
        .map(|p| Choice {
            value: p.name.to_owned(),
            label: format!("{} — {} ({})", p.name, lang.t(p.region), p.grid),
            selected: p.name == chosen_profile,
        })
        .collect();
    let meters: Vec<_> = devices
        .records
        .iter()
        .filter(|r| is_consumption_meter(r))
        .collect();
    let meter_state = match meters.first().and_then(|m| m.meter_kind.as_deref()) {
        Some("consumption_net") => lang.t("Net (load with solar)").to_owned(),
        Some(_) => lang.t("Total (load only)").to_owned(),
        None => String::new(),
    };
    let mut sections = Vec::new();
    for record in &in_service {
        let tasks = gateway_tasks(
            state,
            &system,
            record,
            devices.newest_report_us,
            1,
            lang,
            now,
        )
        .await?;
        sections.push(GatewaySection {
            device_id: record.id,
            serial: format!("{:012}", record.serial),
            grid_profile: record
                .grid_profile
                .clone()
                .unwrap_or_else(|| lang.t("not reported yet").to_owned()),
            tasks,
        });
    }
    let page = DiagnosticsPage {
        chrome,
        system,
        gateways,
        tasks,
        profiles,
        serials: entered
            .as_ref()
            .map(|e| e.serials.clone())
            .unwrap_or_default(),
        mode: entered.as_ref().map(|e| e.mode.clone()).unwrap_or_default(),
        has_consumption_meter: !meters.is_empty(),
        meter_state,
        error,
        notice,
        sections,
    };
    let mut response = render("system/diagnostics.html", &page)?;
    *response.status_mut() = status;
    Ok(response)
}
