//! Data & privacy (F5): API access. Every user may create keys for scripts; a key acts as
//! its user (same role, same systems) on the JSON API and `POST /api/sql`, is shown once,
//! and can be revoked here at any time. Also what data Sunfleet keeps and who sees it.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// Live keys a user may hold at once.
const MAX_LIVE_KEYS: usize = 20;

pub struct KeyRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: Option<String>,
}

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage {
    chrome: Chrome,
    keys: Vec<KeyRow>,
    /// The key just created, shown once.
    new_key: Option<String>,
    name_error: Option<String>,
    name: String,
}

async fn privacy_page(
    state: &AppState,
    principal: &Principal,
    new_key: Option<String>,
    name_error: Option<String>,
    name: String,
) -> Result<Response, PortalError> {
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let keys = blocking(move || Ok(registry.api_keys_of(user)?)).await?;
    let lang = principal.lang();
    let keys = keys
        .into_iter()
        .map(|k| KeyRow {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            created: lang.time(k.created_us),
            last_used: k
                .last_used_us
                .map(|t| lang.time(t))
                .unwrap_or_else(|| lang.t("never").to_owned()),
            revoked: k.revoked_us.map(|t| lang.time(t)),
        })
        .collect();
    let status = if name_error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let mut response = render(
        "privacy",
        &PrivacyPage {
            chrome: Chrome::new(principal, "Data & privacy", "privacy"),
            keys,
            new_key,
            name_error,
            name,
        },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, PortalError> {
    privacy_page(&state, &principal, None, None, String::new()).await
}

#[derive(Debug, Deserialize)]
pub struct NewKeyForm {
    csrf_token: Option<String>,
    name: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    Form(form): Form<NewKeyForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let name = form.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 {
        let error = "Name the key (1 to 100 characters), e.g. after the script using it.";
        return privacy_page(&state, &principal, None, Some(error.into()), name).await;
    }
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
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
        Ok(Some(registry.create_api_key(user, &name, now)?))
    })
    .await?;
    match created {
        Some(key) => privacy_page(&state, &principal, Some(key.key), None, String::new()).await,
        None => {
            let error = principal.lang().fill(
                "You have {} live keys: revoke one first.",
                &[&MAX_LIVE_KEYS],
            );
            privacy_page(&state, &principal, None, Some(error), form.name).await
        }
    }
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
