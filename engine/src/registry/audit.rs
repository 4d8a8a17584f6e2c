//! The audit log: who did what to which record, and when. Company administrators read it.

use rusqlite::params;

use super::{Registry, sql_error};
use crate::Error;

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
        self.connection()
            .execute(
                "INSERT INTO audit_log (at_us, user_id, action, target_kind, target_id, details)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![at_us, user_id, action, target_kind, target_id, details],
            )
            .map_err(sql_error(format!("recording {action} in the audit log")))?;
        Ok(())
    }
}
