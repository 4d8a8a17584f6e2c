//! The HTML pages. Each page module reads what it shows through [`crate::fleet`] (in the
//! principal's scope) after [`crate::access::authorize`], and renders an askama template
//! from `portal/templates/` on the shared layout.

pub mod account;
pub mod activations;
pub mod admin_mail;
pub mod alerts;
pub mod dashboard;
pub mod help;
pub mod privacy;
pub mod services;
pub mod signin;
pub mod system;
pub mod systems;
pub mod users;
pub mod welcome;

#[cfg(test)]
pub(crate) mod form_fuzz;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use sunfleet_engine::registry::UserRole;

use crate::i18n::Lang;
use crate::server::AppState;
use crate::{PortalError, Principal};

/// The browser assets, embedded in the binary: name, content type, body. The vendored
/// libraries are listed in `portal/assets/vendor/README.md`.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/charts.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../assets/favicon.svg"),
    ),
    (
        "system.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/system.js"),
    ),
    (
        "array-builder.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/array-builder.js"),
    ),
    (
        "htmx-2.0.11.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/htmx-2.0.11.min.js"),
    ),
    (
        "uPlot-1.6.32.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/vendor/uPlot-1.6.32.iife.min.js"),
    ),
    (
        "uPlot-1.6.32.min.css",
        "text/css; charset=utf-8",
        include_str!("../assets/vendor/uPlot-1.6.32.min.css"),
    ),
];

pub async fn asset(Path(name): Path<String>) -> Result<Response, PortalError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(asset, _, _)| *asset == name)
        .ok_or_else(|| PortalError::NotFound {
            what: format!("asset {name}"),
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        *body,
    )
        .into_response())
}

/// What the shared layout needs: the page title, the active section, who is signed in.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub lang: Lang,
    pub title: String,
    pub active: &'static str,
    pub user_email: String,
    pub role_label: &'static str,
    pub csrf_token: String,
    pub is_admin: bool,
    /// The platform administrator: their own pages (the mail outbox) in the navigation.
    pub is_platform_admin: bool,
}

impl Chrome {
    pub fn new(principal: &Principal, title: impl Into<String>, active: &'static str) -> Self {
        let lang = principal.lang();
        Self {
            lang,
            title: lang.t(&title.into()).to_owned(),
            active,
            user_email: principal.user.email.clone(),
            role_label: lang.t(role_label(principal.role())),
            csrf_token: principal.csrf_token.clone(),
            is_admin: principal.role() == UserRole::InstallerAdmin,
            is_platform_admin: principal.role() == UserRole::PlatformAdmin,
        }
    }

    /// `text` in the user's language.
    pub fn t<'a>(&self, text: &'a str) -> &'a str {
        self.lang.t(text)
    }

    /// `class="active"` on the navigation item of this page.
    pub fn nav_class(&self, section: &str) -> &'static str {
        if self.active == section { "active" } else { "" }
    }
}

pub fn role_label(role: UserRole) -> &'static str {
    match role {
        UserRole::InstallerAdmin => "Installer administrator",
        UserRole::InstallerUser => "Installer",
        UserRole::Subcontractor => "Subcontractor",
        UserRole::Owner => "System owner",
        UserRole::Analyst => "Analyst",
        UserRole::PlatformAdmin => "Platform administrator",
    }
}

/// Renders a template into a page.
pub fn render(
    page: &'static str,
    template: &impl askama::Template,
) -> Result<Response, PortalError> {
    template
        .render()
        .map(|html| Html(html).into_response())
        .map_err(|source| PortalError::Render { page, source })
}

/// The portal's own address for links people receive (invitations, feeds): the configured
/// public URL, or else the address the browser reached.
pub fn link_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.shared().config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| state.shared().config.listen.to_string());
    let scheme = if state.shared().config.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

/// Whether `email` looks like an address mail could reach (one `@`, a dotted domain, no
/// spaces or angle brackets); the invitation or welcome e-mail proves the rest.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>')
}

/// A local path to return to after sign-in; anything else (another site) becomes `/`.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/systems?page=2")), "/systems?page=2");
        assert_eq!(local_path(Some("//evil.test/")), "/");
        assert_eq!(local_path(Some("https://evil.test/")), "/");
        assert_eq!(local_path(Some("/\\evil.test")), "/");
        assert_eq!(local_path(None), "/");
    }
}
