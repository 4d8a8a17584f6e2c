//! Kiosk (S8): a read-only page of one system (energy of the past seven days, the daily
//! energy graph, the environmental benefit, the system's description, as its settings
//! choose) for a screen in a lobby or the owner's family. Signed-in users see it under the
//! kiosk icon, with the links that show it without signing in (`/kiosk/{token}`), which
//! the system's installers create and revoke.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::registry::{KioskContent, SystemDetails};
use sunfleet_query::Scope;
use sunfleet_query::overview::EmissionFactors;

use super::{SystemChrome, load, system_record};
use crate::access::{Need, authorize};
use crate::i18n::Lang;
use crate::pages::{Chrome, link_base, render};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// What the kiosk shows, ready to print.
pub struct KioskView {
    pub lang: Lang,
    pub content: KioskContent,
    pub name: String,
    pub place: String,
    pub description: Vec<(String, String)>,
    pub past_7_days: String,
    pub lifetime: String,
    /// `data-bars` JSON for `charts.js`.
    pub chart_json: String,
    pub chart_rows: Vec<(String, String)>,
    pub co2_avoided: String,
    pub trees: String,
    pub car_km: String,
    pub updated: String,
}

impl KioskView {
    pub fn t<'a>(&self, text: &'a str) -> &'a str {
        self.lang.t(text)
    }
}

#[derive(Template)]
#[template(path = "system/kiosk_public.html")]
struct PublicKiosk {
    kiosk: KioskView,
}

pub struct LinkRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "system/kiosk.html")]
struct KioskPage {
    chrome: Chrome,
    system: SystemChrome,
    kiosk: KioskView,
    links: Vec<LinkRow>,
    new_link: Option<String>,
    error: Option<String>,
}

async fn kiosk_view(
    state: &AppState,
    scope: &Scope,
    details: &SystemDetails,
    lang: Lang,
) -> Result<KioskView, PortalError> {
    let id = u32::try_from(details.id).map_err(|_| PortalError::NotFound {
        what: format!("system {}", details.id),
    })?;
    let now = sunfleet_engine::time::now_micros();
    let figures = state.query().one_system_figures(scope, id, now).await?;
    let counts = state.registry().device_counts(details.id)?;
    let benefit = EmissionFactors::default().benefit(figures.lifetime_energy_wh);
    let labels: Vec<String> = figures
        .daily_wh
        .iter()
        .map(|(d, _)| d.to_string())
        .collect();
    let values: Vec<f64> = figures
        .daily_wh
        .iter()
        .map(|(_, wh)| (wh / 10.0).round() / 100.0)
        .collect();
    let chart_json =
        serde_json::json!({ "labels": labels, "values": values, "unit": "kWh" }).to_string();
    let place = [
        details.city.as_str(),
        details.region.as_str(),
        details.country.as_str(),
    ]
    .into_iter()
    .filter(|p| !p.is_empty())
    .collect::<Vec<_>>()
    .join(", ");
    let mut description = vec![
        (
            lang.t("Microinverters").to_owned(),
            counts.microinverters.to_string(),
        ),
        (
            lang.t("Installer").to_owned(),
            details.installer_name.clone(),
        ),
    ];
    if counts.batteries > 0 {
        description.push((lang.t("Batteries").to_owned(), counts.batteries.to_string()));
    }
    if let Some(date) = &details.operational_date {
        description.push((lang.t("In operation since").to_owned(), lang.date(date)));
    }
    Ok(KioskView {
        lang,
        content: details.kiosk_content,
        name: details.name.clone(),
        place,
        description,
        past_7_days: lang.energy(figures.energy_past_7_days_wh),
        lifetime: lang.energy(figures.lifetime_energy_wh),
        chart_rows: figures
            .daily_wh
            .iter()
            .map(|(d, wh)| (lang.date(&d.to_string()), lang.energy(*wh)))
            .collect(),
        chart_json,
        co2_avoided: format!("{} kg", lang.decimal(benefit.co2_avoided_kg, 0)),
        trees: lang.decimal(benefit.tree_years, 1),
        car_km: format!("{} km", lang.decimal(benefit.car_km, 0)),
        updated: lang.local_time(
            now,
            &jiff::tz::TimeZone::get(&details.time_zone).unwrap_or(jiff::tz::TimeZone::UTC),
        ),
    })
}

/// `/systems/{id}/kiosk`: the kiosk as it shows, and its links.
pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
) -> Result<Response, PortalError> {
    show(&state, &principal, id, None, None).await
}

async fn show(
    state: &AppState,
    principal: &Principal,
    id: u32,
    new_link: Option<String>,
    error: Option<String>,
) -> Result<Response, PortalError> {
    authorize(principal, Need::System(id))?;
    let lang = principal.lang();
    // The side panel and the kiosk's figures are independent reads: side by side.
    let (details, _) = system_record(state, id)?;
    let ((chrome, system), kiosk) = tokio::try_join!(
        load(state, principal, id, "kiosk"),
        kiosk_view(state, &principal.scope, &details, lang)
    )?;
    let links = if system.can_manage {
        state
            .registry()
            .kiosk_links_of(i64::from(id))?
            .into_iter()
            .map(|l| LinkRow {
                id: l.id,
                name: l.name,
                prefix: l.prefix,
                created: lang.time(l.created_us),
                last_used: l.last_used_us.map(|t| lang.time(t)).unwrap_or_default(),
                revoked: l.revoked_us.map(|t| lang.time(t)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = if error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    let page = KioskPage {
        chrome,
        system,
        kiosk,
        links,
        new_link,
        error,
    };
    Ok((status, render("kiosk settings", &page)?).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewLinkForm {
    csrf_token: Option<String>,
    name: Option<String>,
}

pub async fn create_link(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    headers: HeaderMap,
    Form(form): Form<NewLinkForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    authorize(&principal, Need::ManageSystem(id))?;
    let name = form.name.unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        let message = principal
            .lang()
            .t("Name the link (up to 100 characters): where it will show.")
            .to_owned();
        return show(&state, &principal, id, None, Some(message)).await;
    }
    let link = state.registry().create_kiosk_link(
        i64::from(id),
        &name,
        principal.user.id,
        sunfleet_engine::time::now_micros(),
    )?;
    let url = format!("{}/kiosk/{}", link_base(&state, &headers), link.secret);
    show(&state, &principal, id, Some(url), None).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf_token: Option<String>,
}

pub async fn revoke_link(
    State(state): State<AppState>,
    principal: Principal,
    Path((id, link)): Path<(u32, i64)>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    authorize(&principal, Need::ManageSystem(id))?;
    let revoked = state.registry().revoke_kiosk_link(
        i64::from(id),
        link,
        principal.user.id,
        sunfleet_engine::time::now_micros(),
    )?;
    if !revoked {
        return Err(PortalError::NotFound {
            what: format!("live kiosk link {link} of system {id}"),
        });
    }
    Ok(Redirect::to(&format!("/systems/{id}/kiosk")).into_response())
}

/// `/kiosk/{token}`: the kiosk without signing in, in the browser's language.
pub async fn public(
    State(state): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PortalError> {
    let now = sunfleet_engine::time::now_micros();
    let system = state
        .registry()
        .kiosk_system(&token, now)?
        .ok_or(PortalError::InvalidKioskLink)?;
    let details = state
        .registry()
        .system_details(system)?
        .ok_or(PortalError::InvalidKioskLink)?;
    let id = u32::try_from(system).map_err(|_| PortalError::InvalidKioskLink)?;
    let lang = Lang::from_accept_language(
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let kiosk = kiosk_view(&state, &Scope::kiosk(id), &details, lang).await?;
    let mut response = render("kiosk", &PublicKiosk { kiosk })?;
    // The link is the credential: keep it out of other sites' logs.
    response.headers_mut().insert(
        axum::http::header::REFERRER_POLICY,
        axum::http::HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}
