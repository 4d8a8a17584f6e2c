//! The dashboard (F1): the systems box with its All / Alerts / Activations tabs and search,
//! the service requests summary with the latest requests, quick links and the company
//! performance scorecard.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::services::{RequestRow, request_row};
use super::{Chrome, render};
use crate::access::{Need, authorize};
use crate::fleet::{
    self, ServiceSummary, SystemLine, activating, in_alert, stage_label, status_label,
};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// Systems shown in the box; the systems list has the rest.
const BOX_ROWS: usize = 25;

/// Service requests listed under the summary; the Services page has the rest.
const RECENT_REQUESTS: usize = 5;

pub struct BoxRow {
    pub id: u32,
    pub name: String,
    pub status: String,
    pub status_label: &'static str,
    pub stage: &'static str,
    pub city: String,
    pub region: String,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    tab: String,
    search: String,
    rows: Vec<BoxRow>,
    shown: usize,
    matching: usize,
    all_count: usize,
    alert_count: usize,
    activation_count: usize,
    can_add_system: bool,
    services: ServiceSummary,
    /// The most recently changed service requests, with their status.
    recent_requests: Vec<RequestRow>,
    scorecard_systems: usize,
    normal_pct: String,
    energy_today: String,
    energy_week: String,
    energy_month: String,
    mttr: String,
    /// The fleet's daily energy for the chart (JSON for charts.js) and its table.
    chart_json: String,
    chart_rows: Vec<(String, String)>,
}

#[derive(Debug, Deserialize, Default)]
pub struct DashboardQuery {
    tab: Option<String>,
    q: Option<String>,
}

/// Name or id search, as the systems box and the systems list do it.
pub fn matches_search(s: &SystemLine, search: &str) -> bool {
    let search = search.trim().to_lowercase();
    search.is_empty()
        || s.id.to_string() == search
        || s.name.to_lowercase().contains(&search)
        || s.installer_reference.to_lowercase().contains(&search)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::FleetPages)?;
    let now = sunfleet_engine::time::now_micros();
    let engine = state.query();
    let systems = fleet::systems_with_figures(engine, &principal.scope, now).await?;
    let services = fleet::service_summary(engine, &principal.scope).await?;
    let recent_requests = fleet::service_requests(engine, &principal.scope, None)
        .await?
        .into_iter()
        .take(RECENT_REQUESTS)
        .map(|r| request_row(r, principal.lang()))
        .collect();
    let card = fleet::scorecard(engine, &principal.scope, &systems, now).await?;
    let tab = match query.tab.as_deref() {
        Some("alerts") => "alerts",
        Some("activations") => "activations",
        _ => "all",
    };
    let search = query.q.unwrap_or_default();
    let matching: Vec<&SystemLine> = systems
        .iter()
        .filter(|s| match tab {
            "alerts" => in_alert(s),
            "activations" => activating(s),
            _ => true,
        })
        .filter(|s| matches_search(s, &search))
        .collect();
    let lang = principal.lang();
    let rows: Vec<BoxRow> = matching
        .iter()
        .take(BOX_ROWS)
        .map(|s| BoxRow {
            id: s.id,
            name: s.name.clone(),
            status: s.status.clone(),
            status_label: lang.t(status_label(&s.status)),
            stage: lang.t(stage_label(&s.stage)),
            city: s.city.clone(),
            region: s.region.clone(),
        })
        .collect();
    let page = DashboardPage {
        chrome: Chrome::new(&principal, "Dashboard", "dashboard"),
        can_add_system: authorize(&principal, Need::ActivateSystems).is_ok(),
        tab: tab.to_owned(),
        shown: rows.len(),
        matching: matching.len(),
        rows,
        search,
        all_count: systems.len(),
        alert_count: systems.iter().filter(|s| in_alert(s)).count(),
        activation_count: systems.iter().filter(|s| activating(s)).count(),
        services,
        recent_requests,
        scorecard_systems: card.systems,
        normal_pct: card
            .normal_pct
            .map_or_else(|| "–".to_owned(), |p| lang.percent(p, 0)),
        energy_today: lang.energy(card.energy_today_wh),
        energy_week: lang.energy(card.energy_past_7_days_wh),
        energy_month: lang.energy(card.energy_month_wh),
        chart_json: serde_json::json!({
            "labels": card.daily_wh.iter().map(|(d, _)| d).collect::<Vec<_>>(),
            "values": card.daily_wh.iter().map(|(_, wh)| (wh / 100.0).round() / 10.0).collect::<Vec<_>>(),
            "unit": "kWh",
        })
        .to_string(),
        chart_rows: card
            .daily_wh
            .iter()
            .map(|(d, wh)| (d.clone(), lang.energy(*wh)))
            .collect(),
        mttr: card
            .mean_time_to_resolve_h
            .map_or_else(|| "–".to_owned(), |h| format!("{} h", lang.decimal(h, 1))),
    };
    render("dashboard", &page)
}
