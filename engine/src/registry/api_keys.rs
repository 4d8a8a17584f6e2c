//! API keys (F5 "API access"): a script sends `Authorization: Bearer <key>` instead of
//! signing in. A key acts as its user (same role, same scope) while the user is active and
//! the key is not revoked. Only a BLAKE2b digest of the key is kept; the key is shown once.

use rusqlite::{OptionalExtension, params};

use super::audit::insert_audit;
use super::secret_links::{NewSecret, SecretSummary, list_secrets, new_secret};
use super::sessions::digest;
use super::users::{USER_COLUMNS_OF_U, user_record, user_row};
use super::{Registry, UserRecord, sql_error};
use crate::Error;

/// Every key starts with this, so a leaked key is recognisable (secret scanners).
pub const API_KEY_PREFIX: &str = "sfk_";
/// A key just created: `secret` is the key, shown once.
pub type NewApiKey = NewSecret;
/// A key as its owner's list shows it.
pub type ApiKeySummary = SecretSummary;

impl Registry {
    pub fn create_api_key(
        &self,
        user_id: i64,
        name: &str,
        now_us: i64,
    ) -> Result<NewApiKey, Error> {
        let (key, prefix, key_digest) = new_secret(API_KEY_PREFIX);
        self.transaction("creating an API key", |tx| {
            tx.execute(
                "INSERT INTO api_keys (user_id, name, prefix, key_digest, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![user_id, name, prefix, key_digest, now_us],
            )
            .map_err(sql_error("creating an API key"))?;
            let id = tx.last_insert_rowid();
            insert_audit(
                tx,
                Some(user_id),
                "api_key_created",
                "api_key",
                Some(id),
                name,
                now_us,
            )?;
            Ok(NewSecret {
                id,
                secret: key.clone(),
            })
        })
    }

    /// A user's keys, newest first.
    pub fn api_keys_of(&self, user_id: i64) -> Result<Vec<ApiKeySummary>, Error> {
        list_secrets(
            &self.connection(),
            "SELECT id, name, prefix, created_us, last_used_us, revoked_us FROM api_keys
             WHERE user_id = ?1 ORDER BY created_us DESC, id DESC",
            user_id,
            "listing API keys",
        )
    }

    /// Revokes one of the user's keys; `false` when the user has no such live key.
    pub fn revoke_api_key(&self, user_id: i64, key_id: i64, now_us: i64) -> Result<bool, Error> {
        self.transaction("revoking an API key", |tx| {
            let changed = tx
                .execute(
                    "UPDATE api_keys SET revoked_us = ?1
                     WHERE id = ?2 AND user_id = ?3 AND revoked_us IS NULL",
                    params![now_us, key_id, user_id],
                )
                .map_err(sql_error("revoking an API key"))?;
            if changed > 0 {
                insert_audit(
                    tx,
                    Some(user_id),
                    "api_key_revoked",
                    "api_key",
                    Some(key_id),
                    "",
                    now_us,
                )?;
            }
            Ok(changed > 0)
        })
    }

    /// The active user a live key belongs to (and notes its use).
    pub fn api_key_user(&self, key: &str, now_us: i64) -> Result<Option<UserRecord>, Error> {
        if !key.starts_with(API_KEY_PREFIX) {
            return Ok(None);
        }
        let key_digest = digest(key);
        let connection = self.connection();
        let row = connection
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS_OF_U} FROM api_keys k JOIN users u ON u.id = k.user_id
                      WHERE k.key_digest = ?1 AND k.revoked_us IS NULL AND u.active = 1"
                ),
                params![key_digest],
                user_row,
            )
            .optional()
            .map_err(sql_error("looking up an API key"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        // A minute's precision is enough, and spares a write per request.
        connection
            .execute(
                "UPDATE api_keys SET last_used_us = ?1
                 WHERE key_digest = ?2 AND (last_used_us IS NULL OR last_used_us < ?1 - 60000000)",
                params![now_us, key_digest],
            )
            .map_err(sql_error("noting an API key's use"))?;
        user_record(row).map(|(user, _)| Some(user))
    }
}
