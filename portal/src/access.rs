//! The one place that decides what a signed-in principal may do. Pages and JSON endpoints
//! call [`authorize`] with what they need before reading or changing anything; the data
//! itself is then read in the principal's [`sunfleet_query::Scope`], so even a page that
//! forgot to ask could not show another company's systems.

use sunfleet_engine::registry::UserRole;

use crate::{PortalError, Principal};

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The fleet pages (dashboard, alerts, systems list) and their JSON.
    FleetPages,
    /// One system's pages and data.
    System(u32),
    /// Changing one system: its settings, tasks for its gateways, service requests
    /// (installers and subcontractors it was granted to; owners only look).
    ManageSystem(u32),
    /// Analyst SQL over the principal's scope.
    Sql,
    /// The company's users list (its members).
    CompanyUsers,
    /// Changing company users and subcontractors; the audit log (company administrators).
    CompanyAdmin,
    /// Creating systems and editing their activation (an installer company's members).
    ActivateSystems,
    /// Moving service requests through their statuses: the manufacturer's team, that is
    /// the platform administrators (installers follow the history).
    AdvanceServiceRequests,
    /// The platform's own pages (the mail outbox): the platform administrator only.
    PlatformAdmin,
}

/// `Ok` when `principal` may have `need`; otherwise why not.
pub fn authorize(principal: &Principal, need: Need) -> Result<(), PortalError> {
    let role = principal.role();
    let allowed = match need {
        Need::FleetPages => role != UserRole::Analyst,
        Need::System(id) => {
            role != UserRole::Analyst && principal.scope.systems().is_none_or(|s| s.contains(id))
        }
        Need::ManageSystem(id) => {
            matches!(
                role,
                UserRole::InstallerAdmin
                    | UserRole::InstallerUser
                    | UserRole::Subcontractor
                    | UserRole::PlatformAdmin
            ) && principal.scope.systems().is_none_or(|s| s.contains(id))
        }
        Need::Sql => role.may_run_sql(),
        Need::CompanyUsers => matches!(
            role,
            UserRole::InstallerAdmin | UserRole::InstallerUser | UserRole::Subcontractor
        ),
        Need::CompanyAdmin => role == UserRole::InstallerAdmin,
        Need::ActivateSystems => {
            matches!(role, UserRole::InstallerAdmin | UserRole::InstallerUser)
        }
        Need::AdvanceServiceRequests | Need::PlatformAdmin => role == UserRole::PlatformAdmin,
    };
    if allowed {
        return Ok(());
    }
    // Another company's system is answered like a missing one: its existence is not told.
    Err(match need {
        Need::System(id) => PortalError::NotFound {
            what: format!("system {id}"),
        },
        Need::ManageSystem(id) if principal.scope.systems().is_some_and(|s| !s.contains(id)) => {
            PortalError::NotFound {
                what: format!("system {id}"),
            }
        }
        Need::ManageSystem(_) => PortalError::Forbidden {
            reason: "only the system's installers change it; owners see it".to_owned(),
        },
        Need::FleetPages => PortalError::Forbidden {
            reason: "analyst accounts use SQL (the Postgres and Flight SQL endpoints, or POST /api/sql); they have no portal pages".to_owned(),
        },
        Need::Sql => PortalError::Forbidden {
            reason: format!("a {} account cannot run SQL", role.as_str()),
        },
        Need::CompanyUsers => PortalError::Forbidden {
            reason: "only company members see the company's users".to_owned(),
        },
        Need::CompanyAdmin => PortalError::Forbidden {
            reason: "only company administrators may do this".to_owned(),
        },
        Need::ActivateSystems => PortalError::Forbidden {
            reason: "only installers add systems and edit activations".to_owned(),
        },
        Need::AdvanceServiceRequests => PortalError::Forbidden {
            reason: "only the manufacturer's team (platform administrators) changes a service request's status".to_owned(),
        },
        Need::PlatformAdmin => PortalError::Forbidden {
            reason: "only the platform administrator sees this page".to_owned(),
        },
    })
}
