//! The HTML pages. Each page module reads what it shows through [`crate::fleet`] (in the
//! principal's scope) after [`crate::access::authorize`], and renders an askama template
//! from `portal/templates/` on the shared layout.

pub mod account;
pub mod activations;
pub mod alerts;
pub mod dashboard;
pub mod help;
pub mod privacy;
pub mod services;
pub mod signin;
pub mod systems;
pub mod users;
pub mod welcome;

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use sunfleet_engine::registry::UserRole;

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
    pub title: String,
    pub active: &'static str,
    pub user_email: String,
    pub role_label: &'static str,
    pub csrf_token: String,
    pub is_admin: bool,
}

impl Chrome {
    pub fn new(principal: &Principal, title: impl Into<String>, active: &'static str) -> Self {
        Self {
            title: title.into(),
            active,
            user_email: principal.user.email.clone(),
            role_label: role_label(principal.role()),
            csrf_token: principal.csrf_token.clone(),
            is_admin: principal.role() == UserRole::InstallerAdmin,
        }
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

/// Energy in the largest unit that keeps it readable.
pub fn energy(wh: f64) -> String {
    let abs = wh.abs();
    if abs >= 1e9 {
        format!("{:.2} GWh", wh / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2} MWh", wh / 1e6)
    } else if abs >= 1e3 {
        format!("{:.1} kWh", wh / 1e3)
    } else {
        format!("{wh:.0} Wh")
    }
}

/// A UTC time as `YYYY-MM-DD HH:MM UTC`.
pub fn utc_time(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A duration as the largest whole unit ("3 h", "2 d").
pub fn age(us: i64) -> String {
    let minutes = us / 60_000_000;
    if minutes < 60 {
        format!("{minutes} min")
    } else if minutes < 48 * 60 {
        format!("{} h", minutes / 60)
    } else {
        format!("{} d", minutes / (24 * 60))
    }
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

    #[test]
    fn energy_is_shown_in_a_readable_unit() {
        assert_eq!(energy(950.0), "950 Wh");
        assert_eq!(energy(12_345.0), "12.3 kWh");
        assert_eq!(energy(4_200_000.0), "4.20 MWh");
    }
}
