//! Data & privacy (F5): API access, third-party reporting and grid profiles.
//! - API keys: every user may create keys for scripts; a key acts as its user (same role,
//!   same systems) on the JSON API and `POST /api/sql`, is shown once, and can be revoked.
//! - Third-party reporting: company administrators give a third party (a utility, an
//!   incentive programme) a feed link to the company's monthly production, and revoke it.
//! - Grid profiles: the profiles gateways can apply, and how many of the company's
//!   gateways use each.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::grid_profiles::GRID_PROFILES;
use sunfleet_query::Scope;

use super::{Chrome, link_base, render};
use crate::access::{Need, authorize};
use crate::fleet;
use crate::server::AppState;
use crate::session::{bearer_token, blocking};
use crate::{PortalError, Principal};

/// Live keys a user may hold at once.
const MAX_LIVE_KEYS: usize = 20;
/// Months a feed covers, the current one included.
const FEED_MONTHS: u32 = 13;

/// A key or a feed link as the lists show them.
pub struct SecretRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

pub struct ProfileRow {
    pub name: &'static str,
    pub region: &'static str,
    pub grid: &'static str,
    pub gateways: i64,
}

/// What the page says after a change.
#[derive(Debug, Default)]
pub struct Feedback {
    /// The key or feed link just created, shown once.
    pub new_key: Option<String>,
    pub new_feed: Option<String>,
    pub key_error: Option<String>,
    pub feed_error: Option<String>,
    pub key_name: String,
    pub feed_name: String,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    chrome: Chrome,
    keys: Vec<SecretRow>,
    /// `None` for people who do not manage the company's feeds.
    feeds: Option<Vec<SecretRow>>,
    profiles: Vec<ProfileRow>,
    unknown_profile_gateways: i64,
    feedback: Feedback,
}

async fn privacy_page(
    state: &AppState,
    principal: &Principal,
    feedback: Feedback,
) -> Result<Response, PortalError> {
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let feeds_of = principal
        .user
        .company_id
        .filter(|_| authorize(principal, Need::CompanyAdmin).is_ok());
    let (keys, feeds) = blocking(move || {
        let keys = registry.api_keys_of(user)?;
        let feeds = match feeds_of {
            Some(company) => Some(registry.report_feeds_of(company)?),
            None => None,
        };
        Ok((keys, feeds))
    })
    .await?;
    let row = |id, name, prefix, created_us, last_used_us: Option<i64>, revoked_us: Option<i64>| {
        SecretRow {
            id,
            name,
            prefix,
            created: lang.time(created_us),
            last_used: last_used_us
                .map(|t| lang.time(t))
                .unwrap_or_else(|| lang.t("never").to_owned()),
            revoked: revoked_us.map(|t| lang.time(t)),
        }
    };
    let keys = keys
        .into_iter()
        .map(|k| {
            row(
                k.id,
                k.name,
                k.prefix,
                k.created_us,
                k.last_used_us,
                k.revoked_us,
            )
        })
        .collect();
    let feeds = feeds.map(|feeds| {
        feeds
            .into_iter()
            .map(|f| {
                row(
                    f.id,
                    f.name,
                    f.prefix,
                    f.created_us,
                    f.last_used_us,
                    f.revoked_us,
                )
            })
            .collect()
    });
    let (profiles, unknown_profile_gateways) = if authorize(principal, Need::FleetPages).is_ok() {
        let counts = fleet::grid_profile_counts(state.query(), &principal.scope).await?;
        let profiles = GRID_PROFILES
            .iter()
            .map(|p| ProfileRow {
                name: p.name,
                region: p.region,
                grid: p.grid,
                gateways: counts.get(p.name).copied().unwrap_or(0),
            })
            .collect();
        let known: i64 = GRID_PROFILES
            .iter()
            .filter_map(|p| counts.get(p.name))
            .sum();
        (profiles, counts.values().sum::<i64>() - known)
    } else {
        (Vec::new(), 0)
    };
    let status = if feedback.key_error.is_some() || feedback.feed_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = render(
        "privacy",
        &PrivacyPage {
            chrome: Chrome::new(principal, "Data & privacy", "privacy"),
            keys,
            feeds,
            profiles,
            unknown_profile_gateways,
            feedback,
        },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, PortalError> {
    privacy_page(&state, &principal, Feedback::default()).await
}

#[derive(Debug, Deserialize)]
pub struct NameForm {
    csrf_token: Option<String>,
    name: String,
}

/// A name for a key or a feed: 1 to 100 characters, no control characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
}

pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    Form(form): Form<NameForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let lang = principal.lang();
    let name = form.name.trim().to_owned();
    if !valid_name(&name) {
        let feedback = Feedback {
            key_error: Some(
                lang.t("Name the key (1 to 100 characters), e.g. after the script using it.")
                    .to_owned(),
            ),
            key_name: name,
            ..Feedback::default()
        };
        return privacy_page(&state, &principal, feedback).await;
    }
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let key_name = name.clone();
    let created = blocking(move || {
        let live = registry
            .api_keys_of(user)?
            .iter()
            .filter(|k| k.revoked_us.is_none())
            .count();
        if live >= MAX_LIVE_KEYS {
            return Ok(None);
        }
        let now = sunfleet_engine::time::now_micros();
        Ok(Some(registry.create_api_key(user, &key_name, now)?))
    })
    .await?;
    let feedback = match created {
        Some(key) => Feedback {
            new_key: Some(key.secret),
            ..Feedback::default()
        },
        None => Feedback {
            key_error: Some(lang.fill(
                "You have {} live keys: revoke one first.",
                &[&MAX_LIVE_KEYS],
            )),
            key_name: name,
            ..Feedback::default()
        },
    };
    privacy_page(&state, &principal, feedback).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf_token: Option<String>,
}

pub async fn revoke_key(
    State(state): State<AppState>,
    principal: Principal,
    Path(key_id): Path<i64>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let revoked = blocking(move || {
        Ok(registry.revoke_api_key(user, key_id, sunfleet_engine::time::now_micros())?)
    })
    .await?;
    if revoked {
        Ok(Redirect::to("/privacy").into_response())
    } else {
        Err(PortalError::NotFound {
            what: format!("live API key {key_id}"),
        })
    }
}

fn company_admin_of(principal: &Principal) -> Result<i64, PortalError> {
    authorize(principal, Need::CompanyAdmin)?;
    principal
        .user
        .company_id
        .ok_or_else(|| PortalError::Forbidden {
            reason: "only a company's administrators manage its feeds".to_owned(),
        })
}

pub async fn create_feed(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Form(form): Form<NameForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let company = company_admin_of(&principal)?;
    let name = form.name.trim().to_owned();
    if !valid_name(&name) {
        let feedback = Feedback {
            feed_error: Some(
                principal
                    .lang()
                    .t("Name the third party (1 to 100 characters).")
                    .to_owned(),
            ),
            feed_name: name,
            ..Feedback::default()
        };
        return privacy_page(&state, &principal, feedback).await;
    }
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let feed = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.create_report_feed(company, &name, user, now)?)
    })
    .await?;
    let link = format!(
        "{}/feeds/monthly-production.csv?token={}",
        link_base(&state, &headers),
        feed.secret
    );
    let feedback = Feedback {
        new_feed: Some(link),
        ..Feedback::default()
    };
    privacy_page(&state, &principal, feedback).await
}

pub async fn revoke_feed(
    State(state): State<AppState>,
    principal: Principal,
    Path(feed_id): Path<i64>,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let company = company_admin_of(&principal)?;
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let revoked = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.revoke_report_feed(company, feed_id, user, now)?)
    })
    .await?;
    if revoked {
        Ok(Redirect::to("/privacy#feeds").into_response())
    } else {
        Err(PortalError::NotFound {
            what: format!("live feed {feed_id}"),
        })
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct FeedQuery {
    token: Option<String>,
}

/// The feed a third party fetches: the company's monthly production as CSV
/// (`system_id,system_name,month,energy_kwh`), with the token in the query string or in
/// `Authorization: Bearer`.
pub async fn monthly_production_feed(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> Result<Response, PortalError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned)
        .or(query.token)
        .unwrap_or_default();
    let registry = Arc::clone(state.registry());
    let now = sunfleet_engine::time::now_micros();
    let scope = blocking(move || {
        Ok(match registry.report_feed_company(token.trim(), now)? {
            Some(company) => Some(Scope::of_company(&registry, company, now)?),
            None => None,
        })
    })
    .await?
    .ok_or(PortalError::InvalidFeed)?;
    let names: HashMap<u32, String> = fleet::systems(state.query(), &scope)
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect();
    let monthly = state
        .query()
        .monthly_production(&scope, FEED_MONTHS, now)
        .await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let mut write = |record: [&str; 4]| {
        out.write_record(record).map_err(|e| PortalError::Internal {
            context: format!("writing a feed: {e}"),
        })
    };
    write(["system_id", "system_name", "month", "energy_kwh"])?;
    for (system, month, wh) in &monthly {
        let name = names.get(system).map(String::as_str).unwrap_or_default();
        write([
            &system.to_string(),
            name,
            month,
            &format!("{:.3}", wh / 1000.0),
        ])?;
    }
    let body = out.into_inner().map_err(|e| PortalError::Internal {
        context: format!("writing a feed: {e}"),
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}
