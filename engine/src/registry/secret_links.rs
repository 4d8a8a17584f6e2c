//! What API keys and third-party report feeds share: a random token with a recognisable
//! prefix, handed over once and never stored (only its BLAKE2b digest is), listed by the
//! name people gave it and its first characters, and revocable.

use rusqlite::{Connection, params};

use super::sessions::{digest, random_token};
use super::sql_error;
use crate::Error;

/// Characters of a token shown in lists, to tell tokens apart.
const SHOWN_CHARS: usize = 12;

/// A secret just made: `secret` is shown once and not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret {
    pub id: i64,
    pub secret: String,
}

/// A secret as its list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSummary {
    pub id: i64,
    /// What people called it (a script, a third party).
    pub name: String,
    /// The secret's first characters.
    pub prefix: String,
    pub created_us: i64,
    pub last_used_us: Option<i64>,
    pub revoked_us: Option<i64>,
}

/// A fresh secret starting with `kind_prefix`: `(secret, shown prefix, digest)`.
pub(super) fn new_secret(kind_prefix: &str) -> (String, String, String) {
    let secret = format!("{kind_prefix}{}", random_token());
    let shown = secret.chars().take(SHOWN_CHARS).collect();
    let secret_digest = digest(&secret);
    (secret, shown, secret_digest)
}

/// The rows of `sql`, which selects `id, name, prefix, created_us, last_used_us,
/// revoked_us` with one parameter, `owner`.
pub(super) fn list_secrets(
    connection: &Connection,
    sql: &str,
    owner: i64,
    context: &str,
) -> Result<Vec<SecretSummary>, Error> {
    let mut statement = connection.prepare(sql).map_err(sql_error(context))?;
    let rows = statement
        .query_map(params![owner], |row| {
            Ok(SecretSummary {
                id: row.get(0)?,
                name: row.get(1)?,
                prefix: row.get(2)?,
                created_us: row.get(3)?,
                last_used_us: row.get(4)?,
                revoked_us: row.get(5)?,
            })
        })
        .map_err(sql_error(context))?;
    rows.collect::<Result<_, _>>().map_err(sql_error(context))
}
