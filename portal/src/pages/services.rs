//! Company services (F5): the performance scorecard and the service requests behind the
//! dashboard's summary, each with its state and history dates.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{Chrome, render};
use crate::access::{Need, authorize};
use crate::fleet::{self, ServiceSummary, service_group};
use crate::server::AppState;
use crate::{PortalError, Principal};

pub struct RequestRow {
    pub id: i64,
    pub kind: String,
    pub system_id: i64,
    pub system_name: String,
    pub state: String,
    pub group: &'static str,
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
        .map(|r| RequestRow {
            group: lang.t(service_group(&r.state)),
            id: r.id,
            kind: r.kind.replace('_', " "),
            system_id: r.system_id,
            system_name: r.system_name,
            state: r.state,
            rma: r.rma_number.unwrap_or_default(),
            reason: r.reason,
            created: lang.time(r.created_us),
            updated: lang.time(r.updated_us),
        })
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
