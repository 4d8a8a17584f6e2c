//! Kiosk links (S8): a system's read-only kiosk page, reached without signing in through a
//! link the installer shares and can revoke. Tokens are kept as digests only, like API keys
//! and feeds ([`super::secret_links`]).

use rusqlite::{OptionalExtension, params};

use super::audit::insert_audit;
use super::secret_links::{NewSecret, SecretSummary, list_secrets, new_secret};
use super::sessions::digest;
use super::{Registry, sql_error};
use crate::Error;

/// Every kiosk token starts with this.
pub const KIOSK_TOKEN_PREFIX: &str = "sfv_";

impl Registry {
    /// A new kiosk link for `system_id`; its token is in the answer only.
    pub fn create_kiosk_link(
        &self,
        system_id: i64,
        name: &str,
        by_user: i64,
        now_us: i64,
    ) -> Result<NewSecret, Error> {
        let (token, prefix, token_digest) = new_secret(KIOSK_TOKEN_PREFIX);
        self.transaction("creating a kiosk link", |tx| {
            tx.execute(
                "INSERT INTO kiosk_links (system_id, name, prefix, token_digest, created_by, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![system_id, name, prefix, token_digest, by_user, now_us],
            )
            .map_err(sql_error("creating a kiosk link"))?;
            let id = tx.last_insert_rowid();
            insert_audit(tx, Some(by_user), "kiosk_link_created", "system", Some(system_id), name, now_us)?;
            Ok(NewSecret { id, secret: token.clone() })
        })
    }

    /// A system's kiosk links, newest first.
    pub fn kiosk_links_of(&self, system_id: i64) -> Result<Vec<SecretSummary>, Error> {
        list_secrets(
            &self.connection(),
            "SELECT id, name, prefix, created_us, last_used_us, revoked_us FROM kiosk_links
             WHERE system_id = ?1 ORDER BY created_us DESC, id DESC",
            system_id,
            "listing kiosk links",
        )
    }

    /// Revokes one of the system's live kiosk links; `false` when it has no such link.
    pub fn revoke_kiosk_link(
        &self,
        system_id: i64,
        link_id: i64,
        by_user: i64,
        now_us: i64,
    ) -> Result<bool, Error> {
        self.transaction("revoking a kiosk link", |tx| {
            let changed = tx
                .execute(
                    "UPDATE kiosk_links SET revoked_us = ?1
                     WHERE id = ?2 AND system_id = ?3 AND revoked_us IS NULL",
                    params![now_us, link_id, system_id],
                )
                .map_err(sql_error("revoking a kiosk link"))?;
            if changed > 0 {
                insert_audit(
                    tx,
                    Some(by_user),
                    "kiosk_link_revoked",
                    "system",
                    Some(system_id),
                    "",
                    now_us,
                )?;
            }
            Ok(changed > 0)
        })
    }

    /// The system a live kiosk token shows (and notes its use).
    pub fn kiosk_system(&self, token: &str, now_us: i64) -> Result<Option<i64>, Error> {
        if !token.starts_with(KIOSK_TOKEN_PREFIX) {
            return Ok(None);
        }
        let token_digest = digest(token);
        let connection = self.connection();
        let system = connection
            .query_row(
                "SELECT system_id FROM kiosk_links WHERE token_digest = ?1 AND revoked_us IS NULL",
                params![token_digest],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error("looking up a kiosk link"))?;
        if system.is_some() {
            connection
                .execute(
                    "UPDATE kiosk_links SET last_used_us = ?1 WHERE token_digest = ?2",
                    params![now_us, token_digest],
                )
                .map_err(sql_error("noting a kiosk link's use"))?;
        }
        Ok(system)
    }
}
