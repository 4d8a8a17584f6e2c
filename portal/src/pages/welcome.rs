//! The invitation link (`/welcome?token=…`): an invited user chooses their password and is
//! signed in. The token is the only credential; it works once and for a week.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use sunfleet_engine::registry::MIN_PASSWORD_CHARS;

use super::render;
use crate::PortalError;
use crate::i18n::Lang;
use crate::server::AppState;
use crate::session::{
    add_cookie, blocking, cookie, random_token, redirect_with_session, set_cookie,
};

const WELCOME_COOKIE: &str = "sunfleet_welcome";

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage {
    lang: Lang,
    token: String,
    /// Matches the form cookie: another site cannot post this form (and so cannot sign a
    /// browser into an account of its choosing).
    form_token: String,
    email: String,
    min_chars: usize,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct WelcomeQuery {
    token: Option<String>,
}

fn invalid() -> PortalError {
    PortalError::NotFound {
        what: "this invitation link (unknown, used or expired: ask for a new one)".to_owned(),
    }
}

pub async fn form(
    State(state): State<AppState>,
    Query(query): Query<WelcomeQuery>,
) -> Result<Response, PortalError> {
    let token = query.token.unwrap_or_default();
    let registry = Arc::clone(state.registry());
    let lookup = token.clone();
    let user = blocking(move || {
        Ok(registry.invitation_user(&lookup, sunfleet_engine::time::now_micros())?)
    })
    .await?
    .ok_or_else(invalid)?;
    let form_token = random_token();
    let mut response = render(
        "welcome",
        &WelcomePage {
            lang: Lang::from_code(&user.language),
            token,
            form_token: form_token.clone(),
            email: user.email,
            min_chars: MIN_PASSWORD_CHARS,
            error: None,
        },
    )?;
    add_cookie(
        response.headers_mut(),
        set_cookie(
            WELCOME_COOKIE,
            &form_token,
            3600,
            state.shared().config.secure_cookies,
        ),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct WelcomeForm {
    token: String,
    form_token: Option<String>,
    password: String,
    confirm_password: String,
}

pub async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<WelcomeForm>,
) -> Result<Response, PortalError> {
    let expected = cookie(&headers, WELCOME_COOKIE);
    if expected.is_none() || expected != form.form_token.as_deref() {
        return Err(PortalError::CsrfMismatch);
    }
    let registry = Arc::clone(state.registry());
    let token = form.token.clone();
    let user =
        blocking(
            move || Ok(registry.invitation_user(&token, sunfleet_engine::time::now_micros())?),
        )
        .await?
        .ok_or_else(invalid)?;
    let problem = if form.password.chars().count() < MIN_PASSWORD_CHARS {
        Some(
            Lang::from_code(&user.language)
                .fill("Use at least {} characters.", &[&MIN_PASSWORD_CHARS]),
        )
    } else if form.password != form.confirm_password {
        Some("The two passwords differ.".to_owned())
    } else {
        None
    };
    if let Some(error) = problem {
        let mut page = render(
            "welcome",
            &WelcomePage {
                lang: Lang::from_code(&user.language),
                token: form.token,
                form_token: form.form_token.clone().unwrap_or_default(),
                email: user.email,
                min_chars: MIN_PASSWORD_CHARS,
                error: Some(error),
            },
        )?;
        *page.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(page);
    }
    let registry = Arc::clone(state.registry());
    let lifetime = state.shared().config.session_lifetime_us;
    let session = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        let user = registry.accept_invitation(&form.token, &form.password, now)?;
        Ok(registry.create_session(user.id, now, lifetime)?)
    })
    .await?;
    Ok(redirect_with_session(&state, "/", &session))
}
