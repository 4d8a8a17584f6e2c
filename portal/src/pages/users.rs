//! Company users (F7, C4): the members of the principal's company with their role and
//! whether they are active; administrators deactivate and reactivate them (never the last
//! active administrator) and read the company's audit log.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Chrome, render, role_label, utc_time};
use crate::access::{Need, authorize};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// Audit entries shown on the page.
const AUDIT_ROWS: usize = 100;

pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub role: &'static str,
    pub active: bool,
    pub last_login: String,
    pub is_me: bool,
}

pub struct AuditRow {
    pub at: String,
    pub who: String,
    pub action: String,
    pub target: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    company: String,
    rows: Vec<UserRow>,
    can_manage: bool,
    audit: Vec<AuditRow>,
    error: Option<String>,
}

fn company_of(principal: &Principal) -> Result<i64, PortalError> {
    principal
        .user
        .company_id
        .ok_or_else(|| PortalError::Forbidden {
            reason: "only members of a company have company users".to_owned(),
        })
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, PortalError> {
    users_page(&state, &principal, None).await
}

async fn users_page(
    state: &AppState,
    principal: &Principal,
    error: Option<String>,
) -> Result<Response, PortalError> {
    authorize(principal, Need::CompanyUsers)?;
    let company_id = company_of(principal)?;
    let can_manage = authorize(principal, Need::CompanyAdmin).is_ok();
    let registry = Arc::clone(state.registry());
    let (users, company, audit) = blocking(move || {
        let users = registry.company_users(company_id)?;
        let company = registry.company_name(company_id)?.unwrap_or_default();
        let audit = if can_manage {
            registry.company_audit_log(company_id, AUDIT_ROWS)?
        } else {
            Vec::new()
        };
        Ok((users, company, audit))
    })
    .await?;
    let rows = users
        .into_iter()
        .map(|u| UserRow {
            is_me: u.id == principal.user.id,
            id: u.id,
            name: format!("{} {}", u.given_name, u.family_name),
            email: u.email,
            role: role_label(u.role),
            active: u.active,
            last_login: u
                .last_login_us
                .map(utc_time)
                .unwrap_or_else(|| "never".to_owned()),
        })
        .collect();
    let audit = audit
        .into_iter()
        .map(|a| AuditRow {
            at: utc_time(a.at_us),
            who: a.user_email.unwrap_or_default(),
            action: a.action.replace('_', " "),
            target: match a.target_id {
                Some(id) => format!("{} {id}", a.target_kind),
                None => a.target_kind,
            },
            details: a.details,
        })
        .collect();
    let status = if error.is_some() {
        axum::http::StatusCode::CONFLICT
    } else {
        axum::http::StatusCode::OK
    };
    let mut response = render(
        "users",
        &UsersPage {
            chrome: Chrome::new(principal, "Users", "admin"),
            company,
            rows,
            can_manage,
            audit,
            error,
        },
    )?;
    *response.status_mut() = status;
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct ActiveForm {
    csrf_token: Option<String>,
    active: String,
}

/// Deactivates (`active=0`) or reactivates (`active=1`) a member of the principal's company.
pub async fn set_active(
    State(state): State<AppState>,
    principal: Principal,
    Path(user_id): Path<i64>,
    Form(form): Form<ActiveForm>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::CompanyAdmin)?;
    principal.check_csrf(form.csrf_token.as_deref())?;
    let active = match form.active.as_str() {
        "1" => true,
        "0" => false,
        other => {
            return Err(PortalError::BadRequest {
                message: format!("active must be 0 or 1, not {other:?}"),
            });
        }
    };
    let company_id = company_of(&principal)?;
    let registry = Arc::clone(state.registry());
    let by = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.set_user_active(company_id, user_id, active, by, now)?)
    })
    .await;
    match outcome {
        Ok(()) => Ok(Redirect::to("/users").into_response()),
        // Shown on the page, nothing changed.
        Err(PortalError::Engine(error @ sunfleet_engine::Error::LastAdmin { .. })) => {
            users_page(&state, &principal, Some(error.to_string())).await
        }
        // Another company's user is answered like a missing one.
        Err(PortalError::Engine(sunfleet_engine::Error::NotInCompany { .. })) => {
            Err(PortalError::NotFound {
                what: format!("user {user_id}"),
            })
        }
        Err(error) => Err(error),
    }
}
