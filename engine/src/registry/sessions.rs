//! Portal sessions: a random token in the browser's cookie, its digest here. A session is
//! valid while unexpired and its user is active, so deactivating a user signs them out
//! everywhere at once.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use blake2::{Blake2b, Digest, digest::consts::U32};
use rusqlite::{OptionalExtension, params};

use super::users::{USER_COLUMNS_OF_U, user_record, user_row};
use super::{Registry, UserRecord, sql_error};
use crate::Error;

/// A session just created: the token goes into the cookie, the CSRF token into forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

/// A valid session's user and CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    pub user: UserRecord,
    pub csrf_token: String,
}

/// 32 random bytes from the OS, URL-safe base64: session, CSRF and form tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(super) fn digest(token: &str) -> String {
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(token.as_bytes());
    URL_SAFE_NO_PAD.encode(hasher.finalize())
}

impl Registry {
    /// Starts a session for `user_id` that lasts `lifetime_us`. Expired sessions of
    /// everyone are swept on the way.
    pub fn create_session(
        &self,
        user_id: i64,
        now_us: i64,
        lifetime_us: i64,
    ) -> Result<NewSession, Error> {
        let session = NewSession {
            token: random_token(),
            csrf_token: random_token(),
        };
        let connection = self.connection();
        connection
            .execute(
                "DELETE FROM portal_sessions WHERE expires_us <= ?1",
                params![now_us],
            )
            .map_err(sql_error("sweeping expired sessions"))?;
        connection
            .execute(
                "INSERT INTO portal_sessions (token_digest, user_id, csrf_token, created_us, expires_us)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    digest(&session.token),
                    user_id,
                    session.csrf_token,
                    now_us,
                    now_us + lifetime_us
                ],
            )
            .map_err(sql_error(format!("starting a session for user {user_id}")))?;
        Ok(session)
    }

    /// The active user of an unexpired session, or `None`.
    pub fn session_user(&self, token: &str, now_us: i64) -> Result<Option<SessionUser>, Error> {
        let found = self
            .connection()
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS_OF_U}, s.csrf_token
                     FROM portal_sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_digest = ?1 AND s.expires_us > ?2 AND u.active = 1"
                ),
                params![digest(token), now_us],
                |row| Ok((user_row(row)?, row.get::<_, String>(8)?)),
            )
            .optional()
            .map_err(sql_error("looking up a session"))?;
        found
            .map(|(row, csrf_token)| {
                let (user, _) = user_record(row)?;
                Ok(SessionUser { user, csrf_token })
            })
            .transpose()
    }

    /// Ends one session (sign-out).
    pub fn end_session(&self, token: &str) -> Result<(), Error> {
        self.connection()
            .execute(
                "DELETE FROM portal_sessions WHERE token_digest = ?1",
                params![digest(token)],
            )
            .map_err(sql_error("ending a session"))?;
        Ok(())
    }

    /// Ends every session of a user; returns how many there were.
    pub fn end_sessions_of(&self, user_id: i64) -> Result<usize, Error> {
        self.connection()
            .execute(
                "DELETE FROM portal_sessions WHERE user_id = ?1",
                params![user_id],
            )
            .map_err(sql_error(format!("ending the sessions of user {user_id}")))
    }
}
