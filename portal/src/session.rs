//! Who is asking. A browser signs in once and then carries a session cookie (`HttpOnly`,
//! `SameSite=Lax`, `Secure` when the portal is served over HTTPS); the registry keeps the
//! session and ends it at sign-out, expiry or the user's deactivation. State-changing
//! requests also carry the session's CSRF token (a form field, or the `X-CSRF-Token`
//! header for the API), so another site cannot make a signed-in browser act.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use sunfleet_engine::registry::{NewSession, Registry, SessionUser, UserRecord, UserRole};
use sunfleet_query::Scope;

use crate::PortalError;
use crate::server::AppState;

pub const SESSION_COOKIE: &str = "sunfleet_session";
/// Header that carries the CSRF token of API requests made with a session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A signed-in user, with the data they may see.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserRecord,
    pub scope: Scope,
    /// The session's CSRF token (empty for an API key).
    pub csrf_token: String,
    /// Signed in with an API key (`Authorization: Bearer`), not a session cookie.
    pub via_api_key: bool,
}

impl Principal {
    /// Checks a state-changing request's CSRF token. A request with an API key needs none:
    /// a browser never adds that header on its own, so another site cannot forge it.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), PortalError> {
        if self.via_api_key {
            return Ok(());
        }
        match sent {
            Some(sent) if constant_time_eq(sent.as_bytes(), self.csrf_token.as_bytes()) => Ok(()),
            _ => Err(PortalError::CsrfMismatch),
        }
    }

    pub fn role(&self) -> UserRole {
        self.user.role
    }

    /// The interface language the user chose.
    pub fn lang(&self) -> crate::i18n::Lang {
        crate::i18n::Lang::from_code(&self.user.language)
    }
}

/// 32 random bytes, URL-safe.
pub fn random_token() -> String {
    sunfleet_engine::registry::random_token()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value; an empty value with `max_age_s = 0` removes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

pub fn add_cookie(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(SET_COOKIE, value);
}

/// The credential of an `Authorization: Bearer …` header (the scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A redirect to `to` that carries a new session's cookie (sign-in, a changed password,
/// an accepted invitation).
pub fn redirect_with_session(state: &AppState, to: &str, session: &NewSession) -> Response {
    let config = &state.shared().config;
    let mut response = axum::response::Redirect::to(to).into_response();
    add_cookie(
        response.headers_mut(),
        set_cookie(
            SESSION_COOKIE,
            &session.token,
            config.session_lifetime_us / 1_000_000,
            config.secure_cookies,
        ),
    );
    response
}

/// The principal of a session token, if the session is valid (blocking: SQLite).
pub(crate) fn principal_of_token(
    registry: &Registry,
    token: &str,
    now_us: i64,
) -> Result<Option<Principal>, PortalError> {
    let Some(SessionUser { user, csrf_token }) = registry.session_user(token, now_us)? else {
        return Ok(None);
    };
    let scope = Scope::of_user(registry, &user, now_us)?;
    Ok(Some(Principal {
        user,
        scope,
        csrf_token,
        via_api_key: false,
    }))
}

/// The principal of an API key, if the key is live (blocking: SQLite).
fn principal_of_api_key(
    registry: &Registry,
    key: &str,
    now_us: i64,
) -> Result<Option<Principal>, PortalError> {
    let Some(user) = registry.api_key_user(key, now_us)? else {
        return Ok(None);
    };
    let scope = Scope::of_user(registry, &user, now_us)?;
    Ok(Some(Principal {
        user,
        scope,
        csrf_token: String::new(),
        via_api_key: true,
    }))
}

pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, PortalError> + Send + 'static,
) -> Result<T, PortalError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| PortalError::Internal {
            context: format!("a registry task failed: {e}"),
        })?
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = PortalError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PortalError> {
        let api = parts.uri.path().starts_with("/api/");
        let sign_in = || PortalError::SignInRequired {
            api,
            next: parts
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        };
        let registry: Arc<Registry> = Arc::clone(state.registry());
        let now = sunfleet_engine::time::now_micros();
        // Scripts use the JSON API with a key; pages need a session.
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .map(str::to_owned);
        if let Some(key) = bearer.filter(|_| api) {
            return match blocking(move || principal_of_api_key(&registry, &key, now)).await? {
                Some(principal) => Ok(principal),
                None => Err(PortalError::InvalidApiKey),
            };
        }
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned) else {
            return Err(sign_in());
        };
        match blocking(move || principal_of_token(&registry, &token, now)).await? {
            Some(principal) => Ok(principal),
            None => Err(sign_in()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookies_are_http_only_same_site_and_secure_over_https() {
        let plain = set_cookie("sunfleet_session", "abc", 60, false);
        let plain = plain.to_str().unwrap();
        assert!(
            plain.contains("HttpOnly") && plain.contains("SameSite=Lax"),
            "{plain}"
        );
        assert!(!plain.contains("Secure"), "{plain}");
        let secure = set_cookie("sunfleet_session", "abc", 60, true);
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
