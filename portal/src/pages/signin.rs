//! Sign-in and sign-out. The sign-in form carries a token that must match a cookie set with
//! the form (so another site cannot sign a browser into an account of its choosing); a
//! successful sign-in starts a fresh session (the cookie is replaced), and failures count
//! toward [`sunfleet_query::throttle`]'s limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_query::Scope;

use super::{local_path, render};
use crate::PortalError;
use crate::i18n::Lang;
use crate::server::AppState;
use crate::session::{
    SESSION_COOKIE, add_cookie, blocking, cookie, principal_of_token, random_token,
    redirect_with_session, set_cookie,
};

const SIGN_IN_COOKIE: &str = "sunfleet_signin";

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    lang: Lang,
    next: String,
    email: String,
    form_token: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

pub async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SignInQuery>,
) -> Response {
    page(
        &state,
        &headers,
        local_path(query.next.as_deref()),
        String::new(),
        None,
        axum::http::StatusCode::OK,
    )
}

/// Before sign-in the browser's language decides.
fn browser_lang(headers: &HeaderMap) -> Lang {
    Lang::from_accept_language(
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    )
}

fn page(
    state: &AppState,
    headers: &HeaderMap,
    next: String,
    email: String,
    error: Option<String>,
    status: axum::http::StatusCode,
) -> Response {
    let form_token = random_token();
    let page = SignInPage {
        lang: browser_lang(headers),
        next,
        email,
        form_token: form_token.clone(),
        error,
    };
    let mut response = match render("sign-in", &page) {
        Ok(response) => response,
        Err(error) => return error.into_response(),
    };
    *response.status_mut() = status;
    add_cookie(
        response.headers_mut(),
        set_cookie(
            SIGN_IN_COOKIE,
            &form_token,
            3600,
            state.shared().config.secure_cookies,
        ),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    next: Option<String>,
    form_token: Option<String>,
}

pub async fn submit(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = local_path(form.next.as_deref());
    let email = form.email.trim().to_owned();
    let expected = cookie(&headers, SIGN_IN_COOKIE);
    if expected.is_none() || expected != form.form_token.as_deref() {
        return page(
            &state,
            &headers,
            next,
            email,
            Some(PortalError::CsrfMismatch.to_string()),
            axum::http::StatusCode::FORBIDDEN,
        );
    }
    let shared = state.shared();
    let now = Instant::now();
    if let Err(retry_after_s) = shared.throttle.check(&email, client.ip(), now) {
        shared
            .metrics
            .failed_sign_ins
            .fetch_add(1, Ordering::Relaxed);
        audit_attempt(&state, &email, "sign_in_throttled", client).await;
        let mut response = page(
            &state,
            &headers,
            next,
            email,
            Some(PortalError::TooManyAttempts { retry_after_s }.to_string()),
            axum::http::StatusCode::TOO_MANY_REQUESTS,
        );
        if let Ok(value) = axum::http::HeaderValue::from_str(&retry_after_s.to_string()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    if email.is_empty() || form.password.is_empty() {
        return page(
            &state,
            &headers,
            next,
            email,
            Some("Enter your e-mail address and password.".to_owned()),
            axum::http::StatusCode::BAD_REQUEST,
        );
    }
    let user = match Scope::sign_in(state.registry(), &email, &form.password).await {
        Ok(user) => user,
        Err(error) => return PortalError::from(error).into_response(),
    };
    let Some(user) = user else {
        shared.throttle.failed(&email, client.ip(), now);
        audit_attempt(&state, &email, "sign_in_failed", client).await;
        shared
            .metrics
            .failed_sign_ins
            .fetch_add(1, Ordering::Relaxed);
        return page(
            &state,
            &headers,
            next,
            email,
            Some(
                "The e-mail address or the password is wrong, or the account is not active."
                    .to_owned(),
            ),
            axum::http::StatusCode::UNAUTHORIZED,
        );
    };
    shared.throttle.succeeded(&email);
    shared.metrics.sign_ins.fetch_add(1, Ordering::Relaxed);
    let registry = Arc::clone(state.registry());
    let lifetime = shared.config.session_lifetime_us;
    let user_id = user.id;
    let old = cookie(&headers, SESSION_COOKIE).map(str::to_owned);
    let session = blocking(move || {
        // A session token the browser had before is never reused (fixation).
        if let Some(old) = old {
            registry.end_session(&old)?;
        }
        let now = sunfleet_engine::time::now_micros();
        registry.audit(Some(user_id), "sign_in", "user", Some(user_id), "", now)?;
        Ok(registry.create_session(user_id, now, lifetime)?)
    })
    .await;
    let session = match session {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let mut response = redirect_with_session(&state, &next, &session);
    add_cookie(
        response.headers_mut(),
        set_cookie(SIGN_IN_COOKIE, "", 0, shared.config.secure_cookies),
    );
    response
}

#[derive(Debug, Deserialize)]
pub struct SignOutForm {
    csrf_token: Option<String>,
}

pub async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Response {
    let Some(token) = cookie(&headers, SESSION_COOKIE).map(str::to_owned) else {
        return Redirect::to("/signin").into_response();
    };
    let registry = Arc::clone(state.registry());
    let csrf = form.csrf_token;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        let Some(principal) = principal_of_token(&registry, &token, now)? else {
            return Ok(());
        };
        principal.check_csrf(csrf.as_deref())?;
        registry.end_session(&token)?;
        registry.audit(
            Some(principal.user.id),
            "sign_out",
            "user",
            Some(principal.user.id),
            "",
            now,
        )?;
        Ok(())
    })
    .await;
    if let Err(error) = outcome {
        return error.into_response();
    }
    let mut response = Redirect::to("/signin").into_response();
    add_cookie(
        response.headers_mut(),
        set_cookie(SESSION_COOKIE, "", 0, state.shared().config.secure_cookies),
    );
    response
}

/// A failed or throttled sign-in, in the audit log of the account it names (if any).
async fn audit_attempt(state: &AppState, email: &str, action: &'static str, client: SocketAddr) {
    let (registry, email) = (Arc::clone(state.registry()), email.to_owned());
    let details = format!("portal, from {}", client.ip());
    let audited = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.audit_sign_in_attempt(&email, action, &details, now)?)
    })
    .await;
    if audited.is_err() {
        tracing::warn!(action, "a sign-in attempt could not be audited");
    }
}
