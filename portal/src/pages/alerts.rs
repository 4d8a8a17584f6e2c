//! Alerts (F2): the systems affected now and by what, filterable by alert type.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::{Chrome, render};
use crate::access::{Need, authorize};
use crate::fleet::{self, event_label};
use crate::server::AppState;
use crate::{PortalError, Principal};

pub struct AlertRow {
    pub system_id: u32,
    pub system_name: String,
    pub label: String,
    pub severity: String,
    pub severity_label: String,
    pub since: String,
    pub for_how_long: String,
    pub details: String,
    pub city: String,
    pub region: String,
}

pub struct TypeCount {
    pub code: String,
    pub label: String,
    pub count: usize,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    types: Vec<TypeCount>,
    rows: Vec<AlertRow>,
    total: usize,
    systems_affected: usize,
}

#[derive(Debug, Deserialize, Default)]
pub struct AlertsQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AlertsQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::FleetPages)?;
    let now = sunfleet_engine::time::now_micros();
    let alerts = fleet::open_alerts(state.query(), &principal.scope).await?;
    let selected = query.kind.filter(|k| !k.is_empty());
    let lang = principal.lang();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for alert in &alerts {
        *counts.entry(alert.code.clone()).or_default() += 1;
    }
    let types = counts
        .into_iter()
        .map(|(code, count)| TypeCount {
            label: lang.t(&event_label(&code)).to_owned(),
            selected: selected.as_deref() == Some(code.as_str()),
            code,
            count,
        })
        .collect();
    let rows: Vec<AlertRow> = alerts
        .iter()
        .filter(|a| selected.as_deref().is_none_or(|k| a.code == k))
        .map(|a| AlertRow {
            system_id: a.system_id,
            system_name: a.system_name.clone(),
            label: lang.t(&a.label).to_owned(),
            severity: a.severity.clone(),
            severity_label: lang.t(&a.severity).to_owned(),
            since: lang.time(a.started_us),
            for_how_long: lang.age(now - a.started_us),
            details: a.details.clone(),
            city: a.city.clone(),
            region: a.region.clone(),
        })
        .collect();
    let systems_affected = rows
        .iter()
        .map(|r| r.system_id)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let page = AlertsPage {
        chrome: Chrome::new(&principal, "Alerts", "alerts"),
        types,
        total: rows.len(),
        systems_affected,
        rows,
    };
    render("alerts", &page)
}
