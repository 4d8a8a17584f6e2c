//! Company services (F5): the performance scorecard and the service requests behind the
//! dashboard's summary, each with its status; one request's page (`/services/requests/{id}`)
//! with its status history, its devices, and for a return the labour claims that follow
//! it. The manufacturer's team (platform administrators) moves a request on from its page;
//! everyone who may see the request's system follows it there.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::device_models::device_model;
use sunfleet_engine::registry::{
    RequestState, ReturnDeviceType, ServiceRequestRecord, TransitionRefusal, service_request_number,
};

use super::system::services::{kind_label, state_label};
use super::{Chrome, render};
use crate::access::{Need, authorize};
use crate::fleet::{self, ServiceSummary, service_group};
use crate::i18n::Lang;
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// The longest note a status change keeps.
pub const MAX_NOTE_CHARS: usize = 1_000;

pub struct RequestRow {
    pub id: i64,
    pub number: String,
    pub kind: String,
    pub system_id: i64,
    pub system_name: String,
    pub state: String,
    pub group: &'static str,
    pub group_class: String,
    pub rma: String,
    pub reason: String,
    pub created: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "services.html")]
struct ServicesPage {
    chrome: Chrome,
    summary: ServiceSummary,
    requests: Vec<RequestRow>,
    systems: usize,
    normal_pct: String,
    energy_today: String,
    energy_month: String,
    mttr: String,
}

/// A listed request as the pages show it.
pub fn request_row(r: fleet::ServiceRequestLine, lang: Lang) -> RequestRow {
    RequestRow {
        group: lang.t(service_group(&r.state)),
        group_class: service_group(&r.state).replace(' ', "-"),
        number: service_request_number(r.id),
        id: r.id,
        kind: lang.t(kind_label(&r.kind)).to_owned(),
        system_id: r.system_id,
        system_name: r.system_name,
        state: lang.t(state_label(&r.state)).to_owned(),
        rma: r.rma_number.unwrap_or_default(),
        reason: r.reason,
        created: lang.time(r.created_us),
        updated: lang.time(r.updated_us),
    }
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::FleetPages)?;
    let now = sunfleet_engine::time::now_micros();
    let engine = state.query();
    let systems = fleet::systems_with_figures(engine, &principal.scope, now).await?;
    let card = fleet::scorecard(engine, &principal.scope, &systems, now).await?;
    let summary = fleet::service_summary(engine, &principal.scope).await?;
    let lang = principal.lang();
    let requests = fleet::service_requests(engine, &principal.scope, None)
        .await?
        .into_iter()
        .map(|r| request_row(r, lang))
        .collect();
    render(
        "services",
        &ServicesPage {
            chrome: Chrome::new(&principal, "Services", "services"),
            summary,
            requests,
            systems: card.systems,
            normal_pct: card
                .normal_pct
                .map_or_else(|| "–".to_owned(), |p| lang.percent(p, 0)),
            energy_today: lang.energy(card.energy_today_wh),
            energy_month: lang.energy(card.energy_month_wh),
            mttr: card
                .mean_time_to_resolve_h
                .map_or_else(|| "–".to_owned(), |h| format!("{} h", lang.decimal(h, 1))),
        },
    )
}

// ---------------------------------------------------------------- one request

pub struct HistoryRow {
    pub state: String,
    pub group_class: String,
    pub at: String,
    pub by: String,
    pub note: String,
}

pub struct DeviceRow {
    pub serial: String,
    pub kind: String,
    pub model: String,
    pub retired: bool,
    /// The labour reimbursement form for this unit, following this return.
    pub claim_href: Option<String>,
}

pub struct ClaimRow {
    pub id: i64,
    pub number: String,
    pub state: String,
}

pub struct NextState {
    pub code: &'static str,
    pub label: String,
}

#[derive(Template)]
#[template(path = "service_request.html")]
struct RequestPage {
    chrome: Chrome,
    notice: Option<String>,
    id: i64,
    number: String,
    kind: String,
    is_return: bool,
    system_id: i64,
    system_name: String,
    state: String,
    group_class: String,
    rma: String,
    reason: String,
    opened: String,
    updated: String,
    receiver: String,
    shipping_address: String,
    device_type: String,
    devices: Vec<DeviceRow>,
    history: Vec<HistoryRow>,
    claims: Vec<ClaimRow>,
    /// The statuses the principal may move the request to (platform administrators only).
    next: Vec<NextState>,
}

#[derive(Debug, Deserialize, Default)]
pub struct RequestQuery {
    filed: Option<String>,
    changed: Option<String>,
}

/// Request `id` as `principal` may see it: one of another company's systems is "not
/// found", as the system itself would be.
async fn visible_request(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<ServiceRequestRecord, PortalError> {
    let registry = Arc::clone(state.registry());
    let record = blocking(move || Ok(registry.service_request(id)?)).await?;
    let not_found = || PortalError::NotFound {
        what: format!("service request {}", service_request_number(id)),
    };
    let record = record.ok_or_else(not_found)?;
    let system = u32::try_from(record.system_id).map_err(|_| not_found())?;
    authorize(principal, Need::System(system)).map_err(|_| not_found())?;
    Ok(record)
}

/// A device kind and SKU in words: "Microinverter", "IQ Battery", …; gateways and meters
/// by their kind.
pub fn device_label(kind: &str, model: &str) -> &'static str {
    match ReturnDeviceType::of(kind, model) {
        Some(t) => t.label(),
        None => match kind {
            "gateway" => "Gateway",
            "meter" => "Meter",
            _ => "Device",
        },
    }
}

pub async fn request_page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(query): Query<RequestQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::FleetPages)?;
    let record = visible_request(&state, &principal, id).await?;
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let claims = blocking(move || Ok(registry.labor_claims_for_return(id)?)).await?;
    let system = u32::try_from(record.system_id).unwrap_or(0);
    let can_claim = authorize(&principal, Need::ManageSystem(system)).is_ok();
    let is_return = record.kind == "return";
    let text = |key: &str| {
        record
            .details
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let notice = if query.filed.is_some() {
        Some(
            lang.fill(
                "Request {} filed: the manufacturer's team follows it up; its status shows here, on the dashboard and on the Services page.",
                &[&service_request_number(id)],
            ),
        )
    } else {
        query
            .changed
            .as_deref()
            .and_then(RequestState::from_code)
            .map(|s| lang.fill("Status changed to {}.", &[&lang.t(state_label(s.code()))]))
    };
    let next = if authorize(&principal, Need::AdvanceServiceRequests).is_ok() {
        record
            .state
            .next(&record.kind)
            .iter()
            .map(|s| NextState {
                code: s.code(),
                label: lang.t(state_label(s.code())).to_owned(),
            })
            .collect()
    } else {
        Vec::new()
    };
    let page = RequestPage {
        chrome: Chrome::new(&principal, "Service request", "services"),
        notice,
        id,
        number: service_request_number(id),
        kind: lang.t(kind_label(&record.kind)).to_owned(),
        is_return,
        system_id: record.system_id,
        system_name: record.system_name.clone(),
        state: lang.t(state_label(record.state.code())).to_owned(),
        group_class: service_group(record.state.code()).replace(' ', "-"),
        rma: record.rma_number.clone().unwrap_or_default(),
        reason: record.reason.clone(),
        opened: lang.time(record.created_us),
        updated: lang.time(record.updated_us),
        receiver: text("receiver"),
        shipping_address: text("shipping_address"),
        device_type: ReturnDeviceType::from_code(&text("device_type"))
            .map(|t| lang.t(t.label()).to_owned())
            .unwrap_or_default(),
        devices: record
            .devices
            .iter()
            .map(|d| DeviceRow {
                serial: format!("{:012}", d.serial),
                kind: lang.t(device_label(&d.kind, &d.model)).to_owned(),
                model: device_model(&d.model)
                    .map_or_else(|| d.model.clone(), |m| format!("{} ({})", m.name, m.sku)),
                retired: d.state == "retired",
                claim_href: (is_return
                    && can_claim
                    && matches!(d.kind.as_str(), "microinverter" | "battery")
                    && record.state != RequestState::Rejected)
                    .then(|| {
                        format!(
                            "/systems/{}/settings/labor?return={id}&serial={:012}",
                            record.system_id, d.serial
                        )
                    }),
            })
            .collect(),
        history: record
            .history
            .iter()
            .map(|h| HistoryRow {
                state: lang.t(state_label(h.state.code())).to_owned(),
                group_class: service_group(h.state.code()).replace(' ', "-"),
                at: lang.time(h.at_us),
                by: h.by_name.clone(),
                note: h.note.clone(),
            })
            .collect(),
        claims: claims
            .into_iter()
            .map(|(claim, s)| ClaimRow {
                id: claim,
                number: service_request_number(claim),
                state: lang.t(state_label(s.code())).to_owned(),
            })
            .collect(),
        next,
    };
    render("service request", &page)
}

/// Why a status change is refused, in words.
pub fn explain_transition(refusal: &TransitionRefusal, number: &str, lang: Lang) -> String {
    match refusal {
        TransitionRefusal::UnknownRequest => lang.fill("No service request {} exists.", &[&number]),
        TransitionRefusal::NotAllowed { from, to, allowed } => {
            let allowed = if allowed.is_empty() {
                lang.t("none: its history is complete").to_owned()
            } else {
                allowed
                    .iter()
                    .map(|s| lang.t(state_label(s.code())))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            lang.fill(
                "{} is {}; it cannot become {} (possible next statuses: {}). Nothing was changed.",
                &[
                    &number,
                    &lang.t(state_label(from.code())),
                    &lang.t(state_label(to.code())),
                    &allowed,
                ],
            )
        }
    }
}

pub async fn advance(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    principal.check_csrf(field("csrf_token").as_deref())?;
    authorize(&principal, Need::AdvanceServiceRequests)?;
    visible_request(&state, &principal, id).await?;
    let lang = principal.lang();
    let code = field("state").unwrap_or_default();
    let to = RequestState::from_code(&code).ok_or_else(|| PortalError::BadRequest {
        message: lang.fill(
            "Unknown status {}: choose one of the statuses offered.",
            &[&format!("{code:?}")],
        ),
    })?;
    let note = field("note").unwrap_or_default();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(PortalError::BadRequest {
            message: lang.fill("The note has at most {} characters.", &[&MAX_NOTE_CHARS]),
        });
    }
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.advance_service_request(id, to, &note, user, now)?)
    })
    .await?;
    match outcome {
        Ok(_) => Ok(
            Redirect::to(&format!("/services/requests/{id}?changed={}", to.code())).into_response(),
        ),
        Err(refusal) => Err(PortalError::BadRequest {
            message: explain_transition(&refusal, &service_request_number(id), lang),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_status_change_says_what_could_follow() {
        let refusal = TransitionRefusal::NotAllowed {
            from: RequestState::New,
            to: RequestState::Shipped,
            allowed: RequestState::New.next("return").to_vec(),
        };
        let text = explain_transition(&refusal, "SR-000007", Lang::En);
        assert_eq!(
            text,
            "SR-000007 is New; it cannot become Shipped (possible next statuses: In progress, Rejected). Nothing was changed."
        );
        let done = TransitionRefusal::NotAllowed {
            from: RequestState::Resolved,
            to: RequestState::New,
            allowed: Vec::new(),
        };
        assert!(explain_transition(&done, "SR-000007", Lang::Fr).contains("SR-000007"));
        assert!(crate::i18n::has_french("none: its history is complete"));
    }

    #[test]
    fn every_state_and_device_label_has_a_french_entry() {
        for state in RequestState::ALL {
            assert!(
                crate::i18n::has_french(state_label(state.code())),
                "{state:?}"
            );
        }
        for t in ReturnDeviceType::ALL {
            assert!(crate::i18n::has_french(t.label()), "{t:?}");
        }
        for kind in ["gateway", "meter", "other"] {
            assert!(crate::i18n::has_french(device_label(kind, "")), "{kind}");
        }
    }
}
