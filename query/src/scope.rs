//! Who is asking, as far as data goes: the systems a principal may see. Every table a
//! session offers is filtered by it (see [`crate::catalog`]), whatever the SQL.

use std::sync::Arc;

use roaring::RoaringBitmap;
use sunfleet_engine::registry::{Registry, UserRecord, UserRole};

use crate::QueryError;

/// The rows a principal may see.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Everything: platform administrators and the operator's own command line.
    Fleet,
    /// A company's members: the systems it installed or was granted, its own users, and
    /// the companies behind those systems.
    Company {
        company_id: i64,
        systems: Arc<RoaringBitmap>,
        /// This company and the installers of systems it was granted.
        companies: Arc<Vec<i64>>,
    },
    /// A system owner: their systems, nothing about other people.
    Owner {
        owner_id: i64,
        systems: Arc<RoaringBitmap>,
    },
}

impl Scope {
    /// The scope of a company's members at `now_us` (grants expire).
    pub fn of_company(
        registry: &Registry,
        company_id: i64,
        now_us: i64,
    ) -> Result<Self, QueryError> {
        Ok(Scope::Company {
            company_id,
            systems: Arc::new(registry.systems_of_company(company_id, now_us)?),
            companies: Arc::new(registry.companies_visible_to(company_id, now_us)?),
        })
    }

    pub fn of_owner(registry: &Registry, owner_id: i64) -> Result<Self, QueryError> {
        Ok(Scope::Owner {
            owner_id,
            systems: Arc::new(registry.systems_of_owner(owner_id)?),
        })
    }

    /// What a kiosk link shows: one system's data and nobody's details (owner id 0 is no
    /// owner: registry ids start at 1).
    pub fn kiosk(system_id: u32) -> Self {
        Scope::Owner {
            owner_id: 0,
            systems: Arc::new(RoaringBitmap::from_iter([system_id])),
        }
    }

    /// What a signed-in user may see now: a company member their company's scope, an
    /// owner their systems, the platform administrator the whole fleet.
    pub fn of_user(
        registry: &Registry,
        user: &UserRecord,
        now_us: i64,
    ) -> Result<Self, QueryError> {
        match (user.company_id, user.owner_id) {
            _ if user.role == UserRole::PlatformAdmin => Ok(Scope::Fleet),
            (_, Some(owner_id)) if user.role == UserRole::Owner => {
                Self::of_owner(registry, owner_id)
            }
            (Some(company_id), _) if user.role != UserRole::Owner => {
                Self::of_company(registry, company_id, now_us)
            }
            _ => Err(QueryError::BadRequest {
                message: format!(
                    "user {} ({}) belongs to no company and owns no system",
                    user.email,
                    user.role.as_str()
                ),
            }),
        }
    }

    /// Checks an e-mail and password against the registry's users on a blocking thread
    /// (argon2 takes tens of milliseconds on purpose). `None`: refused, for any reason.
    pub async fn sign_in(
        registry: &Arc<Registry>,
        email: &str,
        password: &str,
    ) -> Result<Option<UserRecord>, QueryError> {
        let (registry, email, password) =
            (Arc::clone(registry), email.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || registry.authenticate(&email, &password))
            .await
            .map_err(|e| QueryError::Runtime {
                message: format!("signing in: {e}"),
            })?
            .map_err(QueryError::from)
    }

    /// [`Scope::systems`], shared.
    pub fn systems_shared(&self) -> Option<Arc<RoaringBitmap>> {
        match self {
            Scope::Fleet => None,
            Scope::Company { systems, .. } | Scope::Owner { systems, .. } => {
                Some(Arc::clone(systems))
            }
        }
    }

    /// The systems this scope is limited to (`None`: all of them).
    pub fn systems(&self) -> Option<&RoaringBitmap> {
        match self {
            Scope::Fleet => None,
            Scope::Company { systems, .. } | Scope::Owner { systems, .. } => Some(systems),
        }
    }
}
