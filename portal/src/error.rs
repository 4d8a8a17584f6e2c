//! Every failure the portal answers, with its status code. Pages get an HTML page, the API
//! JSON; a server-side failure is logged in full and shown only as "internal error".

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// No valid session (or API key). Pages redirect to the sign-in page.
    #[error("sign in first")]
    SignInRequired { api: bool, next: String },
    #[error("the API key is unknown, revoked, or its user is deactivated")]
    InvalidApiKey,
    #[error("the feed link is unknown or revoked")]
    InvalidFeed,
    #[error("this kiosk link is unknown or was revoked: ask the installer for a new one")]
    InvalidKioskLink,
    #[error("{reason}")]
    Forbidden { reason: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{message}")]
    BadRequest { message: String },
    /// A request axum could not take apart (query string, path, body), with axum's status.
    #[error("{message}")]
    Malformed { status: StatusCode, message: String },
    #[error("the form's security token is missing or stale: reload the page and try again")]
    CsrfMismatch,
    #[error("too many failed sign-ins; try again in {retry_after_s} seconds")]
    TooManyAttempts { retry_after_s: u64 },
    #[error(transparent)]
    Query(#[from] sunfleet_query::QueryError),
    #[error(transparent)]
    Engine(#[from] sunfleet_engine::Error),
    #[error("rendering {page}: {source}")]
    Render {
        page: &'static str,
        source: askama::Error,
    },
    #[error("{context}")]
    Internal { context: String },
}

impl PortalError {
    pub fn status(&self) -> StatusCode {
        match self {
            PortalError::SignInRequired { .. }
            | PortalError::InvalidApiKey
            | PortalError::InvalidFeed => StatusCode::UNAUTHORIZED,
            PortalError::Forbidden { .. } => StatusCode::FORBIDDEN,
            PortalError::NotFound { .. } | PortalError::InvalidKioskLink => StatusCode::NOT_FOUND,
            PortalError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            PortalError::Malformed { status, .. } => *status,
            PortalError::CsrfMismatch => StatusCode::FORBIDDEN,
            PortalError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            PortalError::Query(error) => match error {
                sunfleet_query::QueryError::BadRequest { .. }
                | sunfleet_query::QueryError::Refused { .. }
                | sunfleet_query::QueryError::Sql { .. } => StatusCode::BAD_REQUEST,
                sunfleet_query::QueryError::NotFound { .. } => StatusCode::NOT_FOUND,
                sunfleet_query::QueryError::ResultTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                sunfleet_query::QueryError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
                sunfleet_query::QueryError::OutOfMemory { .. } => StatusCode::INSUFFICIENT_STORAGE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            PortalError::Engine(_) | PortalError::Render { .. } | PortalError::Internal { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// What the user is told: the error itself, or nothing internal for a 5xx.
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() {
            "internal error: the server log has the details".to_owned()
        } else {
            self.to_string()
        }
    }

    fn log(&self) {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "portal request failed");
        }
    }

    /// The JSON answer: `{"error": "..."}` with the status code.
    pub fn into_json_response(self) -> Response {
        self.log();
        let status = self.status();
        let mut response = (
            status,
            axum::Json(serde_json::json!({ "error": self.public_message() })),
        )
            .into_response();
        if let PortalError::TooManyAttempts { retry_after_s } = self {
            add_retry_after(&mut response, retry_after_s);
        }
        response
    }
}

fn add_retry_after(response: &mut Response, seconds: u64) {
    if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        match self {
            PortalError::SignInRequired { api: false, next } => {
                let target = format!(
                    "/signin?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                axum::response::Redirect::to(&target).into_response()
            }
            PortalError::SignInRequired { api: true, .. } => self.into_json_response(),
            other => {
                other.log();
                let status = other.status();
                let message = html_escape(&other.public_message());
                let mut response = (
                    status,
                    Html(format!(
                        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                         <title>{code} · Sunfleet</title><link rel=\"icon\" href=\"/assets/favicon.svg\" type=\"image/svg+xml\"><link rel=\"stylesheet\" href=\"/assets/style.css\"></head>\
                         <body><main class=\"narrow\"><h1>{code} {reason}</h1><p class=\"error\">{message}</p>\
                         <p><a href=\"/\">Dashboard</a></p></main></body></html>",
                        code = status.as_u16(),
                        reason = status.canonical_reason().unwrap_or("error"),
                    )),
                )
                    .into_response();
                if let PortalError::TooManyAttempts { retry_after_s } = other {
                    add_retry_after(&mut response, retry_after_s);
                }
                response
            }
        }
    }
}

pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
