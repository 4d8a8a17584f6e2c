//! Sign-in for the SQL endpoints (Postgres wire, Flight SQL), whose sign-ins outlive a
//! request: the password is checked off the async threads, attempts are limited per e-mail
//! and client address (the portal's [`SignInThrottle`], shared), roles without SQL are
//! refused, and every statement re-checks the sign-in so that deactivating a user,
//! changing their password or taking SQL away stops an open connection or token at once.
//! Every attempt, whatever its outcome, goes to the audit log of the account it names.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use sunfleet_engine::registry::{Registry, StandingSignIn};
use sunfleet_engine::time::now_micros;

use crate::throttle::SignInThrottle;
use crate::{QueryError, Scope};

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignInRefused {
    #[error("password authentication failed for user \"{email}\"")]
    WrongCredentials { email: String },
    #[error("too many failed sign-ins; try again in {retry_after_s} seconds")]
    Throttled { retry_after_s: u64 },
    #[error("user {email} ({role}) has no SQL access")]
    NoSqlAccess { email: String, role: &'static str },
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// The SQL endpoints' sign-in, shared by both.
pub struct SqlSignIn {
    registry: Arc<Registry>,
    throttle: Arc<SignInThrottle>,
}

impl SqlSignIn {
    pub fn new(registry: Arc<Registry>, throttle: Arc<SignInThrottle>) -> Self {
        Self { registry, throttle }
    }

    /// Checks an e-mail and password from `client` on `endpoint` (`Postgres`, `Flight SQL`);
    /// the attempt goes to the audit log whatever its outcome.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
        endpoint: &str,
    ) -> Result<StandingSignIn, SignInRefused> {
        let outcome = self.check(email, password, client).await;
        let action = match &outcome {
            Ok(_) => "sql_sign_in",
            Err(SignInRefused::WrongCredentials { .. }) => "sql_sign_in_failed",
            Err(SignInRefused::Throttled { .. }) => "sql_sign_in_throttled",
            Err(SignInRefused::NoSqlAccess { .. }) => "sql_sign_in_refused",
            Err(SignInRefused::Query(_)) => return outcome,
        };
        let (registry, email, details) = (
            Arc::clone(&self.registry),
            email.to_owned(),
            format!("{endpoint}, from {client}"),
        );
        let audited = tokio::task::spawn_blocking(move || {
            registry.audit_sign_in_attempt(&email, action, &details, now_micros())
        })
        .await;
        if !matches!(audited, Ok(Ok(()))) {
            tracing::warn!(action, "a SQL sign-in attempt could not be audited");
        }
        outcome
    }

    async fn check(
        &self,
        email: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<StandingSignIn, SignInRefused> {
        self.throttle
            .check(email, client, Instant::now())
            .map_err(|retry_after_s| SignInRefused::Throttled { retry_after_s })?;
        let (registry, checked_email, password) = (
            Arc::clone(&self.registry),
            email.to_owned(),
            password.to_owned(),
        );
        // argon2 takes tens of milliseconds on purpose.
        let found = tokio::task::spawn_blocking(move || {
            registry.authenticate_standing(&checked_email, &password)
        })
        .await
        .map_err(|e| QueryError::Runtime {
            message: format!("signing in: {e}"),
        })?
        .map_err(QueryError::from)?;
        let Some(signed_in) = found else {
            self.throttle.failed(email, client, Instant::now());
            return Err(SignInRefused::WrongCredentials {
                email: email.to_owned(),
            });
        };
        self.throttle.succeeded(email);
        if !signed_in.user.role.may_run_sql() {
            return Err(SignInRefused::NoSqlAccess {
                email: signed_in.user.email,
                role: signed_in.user.role.as_str(),
            });
        }
        Ok(signed_in)
    }

    /// The scope the next statement of a standing sign-in runs in, from the registry as it
    /// is now; [`QueryError::SignInLapsed`] once the sign-in no longer holds.
    pub fn scope(&self, signed_in: &StandingSignIn) -> Result<Scope, QueryError> {
        let user = self
            .registry
            .still_signed_in(signed_in)?
            .filter(|user| user.role.may_run_sql())
            .ok_or(QueryError::SignInLapsed)?;
        Scope::of_user(&self.registry, &user, now_micros())
    }
}
