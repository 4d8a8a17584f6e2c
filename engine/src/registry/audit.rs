//! The audit log: who did what to which record, and when. Company administrators read it.

use rusqlite::{Connection, params};

use super::{Registry, sql_error};
use crate::Error;

/// Appends one entry on `connection` (inside a caller's transaction, or not).
pub(super) fn insert_audit(
    connection: &Connection,
    user_id: Option<i64>,
    action: &str,
    target_kind: &str,
    target_id: Option<i64>,
    details: &str,
    at_us: i64,
) -> Result<(), Error> {
    connection
        .execute(
            "INSERT INTO audit_log (at_us, user_id, action, target_kind, target_id, details)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![at_us, user_id, action, target_kind, target_id, details],
        )
        .map_err(sql_error(format!("recording {action} in the audit log")))?;
    Ok(())
}

impl Registry {
    /// Appends one entry.
    pub fn audit(
        &self,
        user_id: Option<i64>,
        action: &str,
        target_kind: &str,
        target_id: Option<i64>,
        details: &str,
        at_us: i64,
    ) -> Result<(), Error> {
        insert_audit(
            &self.connection(),
            user_id,
            action,
            target_kind,
            target_id,
            details,
            at_us,
        )
    }
}

/// One audit log entry, with who did it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_us: i64,
    pub user_email: Option<String>,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<i64>,
    pub details: String,
}

impl Registry {
    /// Records a sign-in attempt on the account with `email`, if there is one (`action`:
    /// `sign_in_failed`, `sql_sign_in`, …), so its company's administrators see failed,
    /// throttled and SQL sign-ins among their members' entries. Attempts on unknown
    /// addresses are only counted (the portal's metrics): what was typed may be a password.
    pub fn audit_sign_in_attempt(
        &self,
        email: &str,
        action: &str,
        details: &str,
        at_us: i64,
    ) -> Result<(), Error> {
        match self.user_by_email(email)? {
            Some(user) => self.audit(Some(user.id), action, "user", Some(user.id), details, at_us),
            None => Ok(()),
        }
    }

    /// The newest `limit` entries made by members of `company_id`, newest first.
    pub fn company_audit_log(
        &self,
        company_id: i64,
        limit: usize,
    ) -> Result<Vec<AuditEntry>, Error> {
        let context = format!("reading the audit log of company {company_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT a.at_us, u.email, a.action, a.target_kind, a.target_id, a.details
                 FROM audit_log a JOIN users u ON u.id = a.user_id
                 WHERE u.company_id = ?1
                 ORDER BY a.at_us DESC, a.id DESC LIMIT ?2",
            )
            .map_err(sql_error(context.clone()))?;
        let rows = statement
            .query_map(params![company_id, limit as i64], |row| {
                Ok(AuditEntry {
                    at_us: row.get(0)?,
                    user_email: row.get(1)?,
                    action: row.get(2)?,
                    target_kind: row.get(3)?,
                    target_id: row.get(4)?,
                    details: row.get(5)?,
                })
            })
            .map_err(sql_error(context.clone()))?;
        rows.collect::<Result<_, _>>().map_err(sql_error(context))
    }
}
