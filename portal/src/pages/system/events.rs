//! Events (S5): a system's conditions, current and cleared, newest first: impact, the
//! device (linking to its page), the event's name, when it started and cleared (site-local
//! time); filtered by state and by event type, a page at a time.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use sunfleet_engine::registry::{EventFilter, EventState};

use super::devices::kind_label;
use super::{SystemChrome, load};
use crate::fleet::event_label;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

const EVENTS_PER_PAGE: u32 = 20;

/// The state filter: query value, label.
pub(crate) const STATES: [(&str, &str); 3] = [
    ("current", "Current"),
    ("cleared", "Cleared"),
    ("all", "All"),
];

#[derive(Debug, Deserialize, Default)]
pub struct EventsQuery {
    state: Option<String>,
    code: Option<String>,
    page: Option<u32>,
}

pub struct FilterLink {
    pub href: String,
    pub label: String,
    pub active: bool,
}

pub struct CodeChoice {
    pub code: String,
    pub label: String,
    pub selected: bool,
}

pub struct EventRow {
    pub status: String,
    pub current: bool,
    pub severity: String,
    pub impact: String,
    /// The device's page and what to call it; `None` for the system as a whole.
    pub device: Option<(String, String)>,
    pub name: String,
    pub started: String,
    pub cleared: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "system/events.html")]
struct EventsPage {
    chrome: Chrome,
    system: SystemChrome,
    states: Vec<FilterLink>,
    state: &'static str,
    codes: Vec<CodeChoice>,
    rows: Vec<EventRow>,
    total: u64,
    first: u64,
    last: u64,
    page: u32,
    pages: u32,
    previous_href: Option<String>,
    next_href: Option<String>,
}

fn link(id: u32, state: &str, code: Option<&str>, page: u32) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("state", state);
    if let Some(code) = code {
        query.append_pair("code", code);
    }
    if page > 1 {
        query.append_pair("page", &page.to_string());
    }
    format!("/systems/{id}/events?{}", query.finish())
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<EventsQuery>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "events").await?;
    let lang = principal.lang();
    let zone = system.zone.clone();
    let (state_key, filter_state) = match query.state.as_deref() {
        Some("cleared") => ("cleared", EventState::Cleared),
        Some("all") => ("all", EventState::Any),
        _ => ("current", EventState::Current),
    };
    let code = query.code.filter(|c| !c.is_empty());
    let registry = Arc::clone(state.registry());
    let system_id = i64::from(id);
    let wanted_page = query.page.unwrap_or(1).max(1);
    let filter_code = code.clone();
    let (events, total, codes, gateways) = blocking(move || {
        let filter = |page: u32| EventFilter {
            state: filter_state,
            code: filter_code.clone(),
            device_id: None,
            limit: EVENTS_PER_PAGE,
            offset: (page - 1).saturating_mul(EVENTS_PER_PAGE),
        };
        let (mut events, total) = registry.system_events(system_id, &filter(wanted_page))?;
        let last_page = u32::try_from(total.div_ceil(u64::from(EVENTS_PER_PAGE)))
            .unwrap_or(u32::MAX)
            .max(1);
        // A page past the end (the list shrank since the link was made) shows the last.
        if wanted_page > last_page {
            events = registry.system_events(system_id, &filter(last_page))?.0;
        }
        let codes = registry.system_event_codes(system_id)?;
        let gateways: Vec<(i64, u64)> = registry
            .system_devices(system_id)?
            .into_iter()
            .filter(|d| d.kind == "gateway" && d.state != "retired")
            .map(|d| (d.id, d.serial))
            .collect();
        Ok((events, total, codes, gateways))
    })
    .await?;
    let pages = u32::try_from(total.div_ceil(u64::from(EVENTS_PER_PAGE)))
        .unwrap_or(u32::MAX)
        .max(1);
    let page = wanted_page.min(pages);
    let rows = events
        .iter()
        .map(|event| {
            let device = match (event.device_id, &event.device) {
                (Some(device), Some((serial, kind))) => Some((
                    format!("/systems/{id}/devices/{device}"),
                    format!("{} {serial:012}", lang.t(kind_label(kind))),
                )),
                // Whether the gateway reports is found for the system; with one gateway,
                // it is that gateway's event.
                _ if event.code == "gateway_not_reporting" && gateways.len() == 1 => {
                    gateways.first().map(|(device, serial)| {
                        (
                            format!("/systems/{id}/devices/{device}"),
                            format!("{} {serial:012}", lang.t("Gateway")),
                        )
                    })
                }
                _ => None,
            };
            EventRow {
                status: lang
                    .t(if event.ended_us.is_none() {
                        "Current"
                    } else {
                        "Cleared"
                    })
                    .to_owned(),
                current: event.ended_us.is_none(),
                severity: event.severity.clone(),
                impact: lang.t(&event.severity).to_owned(),
                device,
                name: lang.t(&event_label(&event.code)).to_owned(),
                started: lang.local_time(event.started_us, &zone),
                cleared: event
                    .ended_us
                    .map(|t| lang.local_time(t, &zone))
                    .unwrap_or_default(),
                details: event.details.clone(),
            }
        })
        .collect::<Vec<_>>();
    let first = if total == 0 {
        0
    } else {
        u64::from(page - 1) * u64::from(EVENTS_PER_PAGE) + 1
    };
    let last = if total == 0 {
        0
    } else {
        first + rows.len() as u64 - 1
    };
    let code_ref = code.as_deref();
    let page_view = EventsPage {
        states: STATES
            .iter()
            .map(|(key, label)| FilterLink {
                href: link(id, key, code_ref, 1),
                label: lang.t(label).to_owned(),
                active: *key == state_key,
            })
            .collect(),
        state: state_key,
        codes: codes
            .into_iter()
            .map(|c| CodeChoice {
                label: lang.t(&event_label(&c)).to_owned(),
                selected: code_ref == Some(c.as_str()),
                code: c,
            })
            .collect(),
        rows,
        total,
        first,
        last,
        page,
        pages,
        previous_href: (page > 1).then(|| link(id, state_key, code_ref, page - 1)),
        next_href: (page < pages).then(|| link(id, state_key, code_ref, page + 1)),
        chrome,
        system,
    };
    render("system events", &page_view)
}
