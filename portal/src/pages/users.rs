//! Company users (F7, C4, C5): the members of the principal's company with their role and
//! whether they are active. Administrators invite users (a one-time link sets the
//! password), deactivate and reactivate them (never the last active administrator), add
//! subcontractor companies and grant or revoke their access to chosen systems (with an
//! optional end date), and read the company's audit log.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::registry::{Invitation, NewMember, UserRole};
use sunfleet_engine::time::CivilDate;

use super::{Chrome, link_base, render, role_label, valid_email};
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

pub struct GrantRow {
    pub system_id: i64,
    pub system_name: String,
    pub granted: String,
    pub ends: String,
    pub active: bool,
}

pub struct SubcontractorRow {
    pub company_id: i64,
    pub name: String,
    pub email: String,
    pub grants: Vec<GrantRow>,
}

/// What the page says after a change: a refusal, field errors, or an invitation's link.
#[derive(Debug, Default)]
pub struct Feedback {
    pub error: Option<String>,
    /// Field → message (the invite, subcontractor and grant forms' fields).
    pub errors: Vec<(&'static str, String)>,
    /// The form values to show again.
    pub values: Vec<(&'static str, String)>,
    /// E-mail and link of the invitation just made (shown once).
    pub invited: Option<(String, String)>,
    pub notice: Option<String>,
}

impl Feedback {
    /// A form refused: its field errors, and what was typed to show again.
    fn refused(errors: Vec<(&'static str, String)>, values: Vec<(&'static str, String)>) -> Self {
        Self {
            errors,
            values,
            ..Self::default()
        }
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    company: String,
    rows: Vec<UserRow>,
    can_manage: bool,
    audit: Vec<AuditRow>,
    subcontractors: Vec<SubcontractorRow>,
    feedback: Feedback,
}

impl UsersPage {
    fn error(&self, field: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .feedback
            .errors
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| self.chrome.t(m))
            .collect();
        (!messages.is_empty()).then(|| messages.join(" "))
    }

    fn value(&self, field: &str) -> &str {
        self.feedback
            .values
            .iter()
            .find(|(f, _)| *f == field)
            .map_or("", |(_, v)| v.as_str())
    }
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
    users_page(&state, &principal, Feedback::default()).await
}

async fn users_page(
    state: &AppState,
    principal: &Principal,
    feedback: Feedback,
) -> Result<Response, PortalError> {
    authorize(principal, Need::CompanyUsers)?;
    let company_id = company_of(principal)?;
    let can_manage = authorize(principal, Need::CompanyAdmin).is_ok();
    let registry = Arc::clone(state.registry());
    let (users, company, audit, subcontractors) = blocking(move || {
        let users = registry.company_users(company_id)?;
        let company = registry.company_name(company_id)?.unwrap_or_default();
        let (audit, subcontractors) = if can_manage {
            (
                registry.company_audit_log(company_id, AUDIT_ROWS)?,
                registry.subcontractors_of(company_id)?,
            )
        } else {
            (Vec::new(), Vec::new())
        };
        Ok((users, company, audit, subcontractors))
    })
    .await?;
    let now = sunfleet_engine::time::now_micros();
    let lang = principal.lang();
    let subcontractors = subcontractors
        .into_iter()
        .map(|c| SubcontractorRow {
            company_id: c.company_id,
            name: c.name,
            email: c.email,
            grants: c
                .grants
                .into_iter()
                .map(|g| GrantRow {
                    system_id: g.system_id,
                    system_name: g.system_name,
                    granted: lang.time(g.granted_us),
                    ends: g
                        .ends_us
                        .map(|t| lang.time(t))
                        .unwrap_or_else(|| lang.t("until revoked").to_owned()),
                    active: g.ends_us.is_none_or(|end| end > now),
                })
                .collect(),
        })
        .collect();
    let rows = users
        .into_iter()
        .map(|u| UserRow {
            is_me: u.id == principal.user.id,
            id: u.id,
            name: format!("{} {}", u.given_name, u.family_name),
            email: u.email,
            role: lang.t(role_label(u.role)),
            active: u.active,
            last_login: u
                .last_login_us
                .map(|t| lang.time(t))
                .unwrap_or_else(|| lang.t("never").to_owned()),
        })
        .collect();
    let audit = audit
        .into_iter()
        .map(|a| AuditRow {
            at: lang.time(a.at_us),
            who: a.user_email.unwrap_or_default(),
            action: lang.t(&a.action.replace('_', " ")).to_owned(),
            target: match a.target_id {
                Some(id) => format!("{} {id}", a.target_kind),
                None => a.target_kind,
            },
            details: a.details,
        })
        .collect();
    let status = if feedback.error.is_some() {
        axum::http::StatusCode::CONFLICT
    } else if !feedback.errors.is_empty() {
        axum::http::StatusCode::BAD_REQUEST
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
            subcontractors,
            feedback,
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
            let feedback = Feedback {
                error: Some(error.to_string()),
                ..Feedback::default()
            };
            users_page(&state, &principal, feedback).await
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

fn invitation_link(base: &str, token: &str) -> String {
    format!("{base}/welcome?token={token}")
}

/// Checks a person's fields; `prefix` names the form's fields.
fn check_person(
    email: &str,
    family_name: &str,
    errors: &mut Vec<(&'static str, String)>,
    email_field: &'static str,
    family_field: &'static str,
) {
    if !valid_email(email) {
        errors.push((
            email_field,
            "Enter an e-mail address (name@example.com).".into(),
        ));
    }
    if family_name.trim().is_empty() {
        errors.push((family_field, "Enter the family name.".into()));
    }
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    csrf_token: Option<String>,
    email: String,
    given_name: String,
    family_name: String,
    role: String,
}

/// Invites a member to the administrator's company (installer administrator, installer or
/// analyst); the page shows the link that sets their password.
pub async fn invite(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Form(form): Form<InviteForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    authorize(&principal, Need::CompanyAdmin)?;
    let company_id = company_of(&principal)?;
    let email = form.email.trim().to_owned();
    let mut errors = Vec::new();
    check_person(
        &email,
        &form.family_name,
        &mut errors,
        "invite_email",
        "invite_family_name",
    );
    let role = match UserRole::parse(&form.role) {
        Some(role @ (UserRole::InstallerAdmin | UserRole::InstallerUser | UserRole::Analyst)) => {
            role
        }
        _ => {
            errors.push((
                "invite_role",
                "Choose administrator, installer or analyst.".into(),
            ));
            UserRole::InstallerUser
        }
    };
    let values = vec![
        ("invite_email", email.clone()),
        ("invite_given_name", form.given_name.trim().to_owned()),
        ("invite_family_name", form.family_name.trim().to_owned()),
    ];
    if !errors.is_empty() {
        return users_page(&state, &principal, Feedback::refused(errors, values)).await;
    }
    let base = link_base(&state, &headers);
    let member = NewMember {
        email,
        given_name: form.given_name.trim().to_owned(),
        family_name: form.family_name.trim().to_owned(),
        role,
    };
    let registry = Arc::clone(state.registry());
    let by = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.invite_user(company_id, &member, by, now)?)
    })
    .await;
    invitation_page(&state, &principal, outcome, &base, "invite_email", values).await
}

#[derive(Debug, Deserialize)]
pub struct SubcontractorForm {
    csrf_token: Option<String>,
    company_name: String,
    email: String,
    given_name: String,
    family_name: String,
}

/// Adds a subcontractor company and invites its first user.
pub async fn add_subcontractor(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    Form(form): Form<SubcontractorForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    authorize(&principal, Need::CompanyAdmin)?;
    let installer = company_of(&principal)?;
    let email = form.email.trim().to_owned();
    let company_name = form.company_name.trim().to_owned();
    let mut errors = Vec::new();
    if company_name.is_empty() || company_name.chars().count() > 200 {
        errors.push((
            "sub_company_name",
            "Enter the company's name (at most 200 characters).".into(),
        ));
    }
    check_person(
        &email,
        &form.family_name,
        &mut errors,
        "sub_email",
        "sub_family_name",
    );
    let values = vec![
        ("sub_company_name", company_name.clone()),
        ("sub_email", email.clone()),
        ("sub_given_name", form.given_name.trim().to_owned()),
        ("sub_family_name", form.family_name.trim().to_owned()),
    ];
    if !errors.is_empty() {
        return users_page(&state, &principal, Feedback::refused(errors, values)).await;
    }
    let base = link_base(&state, &headers);
    let contact = NewMember {
        email,
        given_name: form.given_name.trim().to_owned(),
        family_name: form.family_name.trim().to_owned(),
        role: UserRole::Subcontractor,
    };
    let registry = Arc::clone(state.registry());
    let by = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.add_subcontractor(installer, &company_name, &contact, by, now)?)
    })
    .await;
    let outcome = outcome.map(|(_, invitation)| invitation);
    invitation_page(&state, &principal, outcome, &base, "sub_email", values).await
}

/// The users page after an invitation: its link (shown once), or the e-mail field's error.
async fn invitation_page(
    state: &AppState,
    principal: &Principal,
    outcome: Result<Invitation, PortalError>,
    base: &str,
    email_field: &'static str,
    values: Vec<(&'static str, String)>,
) -> Result<Response, PortalError> {
    let feedback = match outcome {
        Ok(invitation) => Feedback {
            invited: Some((invitation.email, invitation_link(base, &invitation.token))),
            ..Feedback::default()
        },
        Err(PortalError::Engine(sunfleet_engine::Error::EmailTaken { email })) => Feedback {
            errors: vec![(
                email_field,
                principal
                    .lang()
                    .fill("{} already has an account", &[&email]),
            )],
            values,
            ..Feedback::default()
        },
        Err(error) => return Err(error),
    };
    users_page(state, principal, feedback).await
}

#[derive(Debug, Deserialize)]
pub struct GrantForm {
    csrf_token: Option<String>,
    company_id: String,
    systems: String,
    until: Option<String>,
}

/// Grants a subcontractor access to systems of the installer, until an optional date.
pub async fn grant(
    State(state): State<AppState>,
    principal: Principal,
    Form(form): Form<GrantForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    authorize(&principal, Need::CompanyAdmin)?;
    let installer = company_of(&principal)?;
    let now = sunfleet_engine::time::now_micros();
    let mut errors = Vec::new();
    let company_id = form.company_id.trim().parse::<i64>().unwrap_or_else(|_| {
        errors.push(("grant_company", "Choose a subcontractor.".into()));
        0
    });
    let mut systems = Vec::new();
    for word in form
        .systems
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word.trim_start_matches('#').parse::<u32>() {
            Ok(id) => systems.push(i64::from(id)),
            Err(_) => errors.push((
                "grant_systems",
                principal
                    .lang()
                    .fill("{} is not a system ID.", &[&format!("{word:?}")]),
            )),
        }
    }
    if systems.is_empty() && errors.iter().all(|(f, _)| *f != "grant_systems") {
        errors.push(("grant_systems", "Enter one or more system IDs.".into()));
    }
    let until = match form
        .until
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        None => None,
        Some(text) => match text.parse::<CivilDate>() {
            // Access lasts through the chosen day.
            Ok(day) if day.add_days(1).start_micros() > now => Some(day.add_days(1).start_micros()),
            Ok(_) => {
                errors.push(("grant_until", "Choose a day from today on.".into()));
                None
            }
            Err(_) => {
                errors.push(("grant_until", "A date as YYYY-MM-DD.".into()));
                None
            }
        },
    };
    let values = vec![
        ("grant_systems", form.systems.trim().to_owned()),
        ("grant_until", form.until.clone().unwrap_or_default()),
    ];
    if !errors.is_empty() {
        return users_page(&state, &principal, Feedback::refused(errors, values)).await;
    }
    let registry = Arc::clone(state.registry());
    let by = principal.user.id;
    let count = systems.len();
    let outcome = blocking(move || {
        Ok(registry.grant_systems(installer, company_id, &systems, until, by, now)?)
    })
    .await;
    let feedback = match outcome {
        Ok(()) => Feedback {
            notice: Some(
                principal
                    .lang()
                    .fill("Access granted to {} system(s).", &[&count]),
            ),
            ..Feedback::default()
        },
        Err(PortalError::Engine(sunfleet_engine::Error::UnknownSystem { system_id })) => Feedback {
            errors: vec![(
                "grant_systems",
                principal.lang().fill(
                    "Your company has no system {}; nothing was granted.",
                    &[&system_id],
                ),
            )],
            values,
            ..Feedback::default()
        },
        Err(PortalError::Engine(sunfleet_engine::Error::NotASubcontractor { .. })) => Feedback {
            errors: vec![("grant_company", "Choose one of your subcontractors.".into())],
            values,
            ..Feedback::default()
        },
        Err(error) => return Err(error),
    };
    users_page(&state, &principal, feedback).await
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf_token: Option<String>,
    company_id: i64,
    system_id: i64,
}

/// Ends a subcontractor's access to one system now.
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    Form(form): Form<RevokeForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    authorize(&principal, Need::CompanyAdmin)?;
    let installer = company_of(&principal)?;
    let registry = Arc::clone(state.registry());
    let by = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.revoke_grant(installer, form.company_id, form.system_id, by, now)?)
    })
    .await;
    match outcome {
        Ok(()) => Ok(Redirect::to("/users").into_response()),
        Err(PortalError::Engine(
            sunfleet_engine::Error::UnknownSystem { .. }
            | sunfleet_engine::Error::NotASubcontractor { .. },
        )) => Err(PortalError::NotFound {
            what: format!("an active grant of system {}", form.system_id),
        }),
        Err(error) => Err(error),
    }
}
