//! The signed-in user's account: who they are, and a password change. A changed password
//! ends every other session of the user and starts a fresh one here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::registry::MIN_PASSWORD_CHARS;
use sunfleet_query::Scope;

use super::{Chrome, render, role_label};
use crate::access::{Need, authorize};
use crate::i18n::Lang;
use crate::server::AppState;
use crate::session::{blocking, redirect_with_session};
use crate::{PortalError, Principal};

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    chrome: Chrome,
    email: String,
    role: &'static str,
    company: String,
    sees_users: bool,
    min_chars: usize,
    changed: bool,
    languages: Vec<(&'static str, &'static str)>,
    /// Field → message.
    errors: Vec<(&'static str, String)>,
}

impl AccountPage {
    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| self.chrome.t(m))
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct AccountQuery {
    changed: Option<String>,
}

async fn account_page(
    state: &AppState,
    principal: &Principal,
    changed: bool,
    errors: Vec<(&'static str, String)>,
) -> Result<Response, PortalError> {
    let registry = Arc::clone(state.registry());
    let company_id = principal.user.company_id;
    let company = blocking(move || match company_id {
        Some(id) => Ok(registry.company_name(id)?.unwrap_or_default()),
        None => Ok(String::new()),
    })
    .await?;
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut response = render(
        "account",
        &AccountPage {
            chrome: Chrome::new(principal, "Account", "account"),
            email: principal.user.email.clone(),
            role: principal.lang().t(role_label(principal.role())),
            company,
            sees_users: authorize(principal, Need::CompanyUsers).is_ok(),
            min_chars: MIN_PASSWORD_CHARS,
            changed,
            languages: Lang::ALL.iter().map(|l| (l.code(), l.name())).collect(),
            errors,
        },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<AccountQuery>,
) -> Result<Response, PortalError> {
    account_page(&state, &principal, query.changed.is_some(), Vec::new()).await
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf_token: Option<String>,
    current_password: String,
    new_password: String,
    confirm_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    principal: Principal,
    Form(form): Form<PasswordForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    // Checking the current password is a sign-in attempt: the same limits apply.
    let throttle = &state.shared().throttle;
    if let Err(retry_after_s) = throttle.check(&principal.user.email, client.ip(), Instant::now()) {
        return Err(PortalError::TooManyAttempts { retry_after_s });
    }
    let mut errors = Vec::new();
    if form.new_password.chars().count() < MIN_PASSWORD_CHARS {
        errors.push((
            "new_password",
            principal
                .lang()
                .fill("Use at least {} characters.", &[&MIN_PASSWORD_CHARS]),
        ));
    } else if form.new_password != form.confirm_password {
        errors.push((
            "confirm_password",
            "The two new passwords differ.".to_owned(),
        ));
    }
    let email = principal.user.email.clone();
    let current_ok = Scope::sign_in(state.registry(), &email, &form.current_password)
        .await?
        .is_some_and(|user| user.id == principal.user.id);
    if !current_ok {
        throttle.failed(&principal.user.email, client.ip(), Instant::now());
        errors.push((
            "current_password",
            "This is not your current password.".to_owned(),
        ));
    }
    if !errors.is_empty() {
        return account_page(&state, &principal, false, errors).await;
    }
    let registry = Arc::clone(state.registry());
    let (user_id, lifetime) = (principal.user.id, state.shared().config.session_lifetime_us);
    let new_password = form.new_password;
    let session = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        registry.set_password(&email, &new_password)?;
        registry.end_sessions_of(user_id)?;
        registry.audit(
            Some(user_id),
            "password_changed",
            "user",
            Some(user_id),
            "",
            now,
        )?;
        Ok(registry.create_session(user_id, now, lifetime)?)
    })
    .await?;
    Ok(redirect_with_session(
        &state,
        "/account?changed=1",
        &session,
    ))
}

#[derive(Debug, Deserialize)]
pub struct LanguageForm {
    csrf_token: Option<String>,
    language: String,
}

/// Sets the user's interface language (`en` or `fr`).
pub async fn set_language(
    State(state): State<AppState>,
    principal: Principal,
    Form(form): Form<LanguageForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let Some(lang) = Lang::ALL.into_iter().find(|l| l.code() == form.language) else {
        return Err(PortalError::BadRequest {
            message: format!("unknown language {:?}: en or fr", form.language),
        });
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    blocking(move || Ok(registry.set_user_language(user, lang.code())?)).await?;
    Ok(Redirect::to("/account").into_response())
}
