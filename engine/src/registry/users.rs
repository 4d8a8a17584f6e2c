//! Users and their passwords. Passwords are stored as argon2id PHC strings and checked
//! here, so the portal and the SQL endpoints sign people in the same way.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{OptionalExtension, params};
use std::sync::OnceLock;

use super::audit::insert_audit;
use super::{Registry, sql_error};
use crate::Error;

/// Shorter passwords are refused.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// What a user may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRole {
    InstallerAdmin,
    InstallerUser,
    Subcontractor,
    Owner,
    /// Reads the company's data with SQL; no portal pages of its own.
    Analyst,
    /// Operates this Sunfleet installation: sees every company's systems; belongs to none.
    PlatformAdmin,
}

impl UserRole {
    pub const ALL: [UserRole; 6] = [
        UserRole::InstallerAdmin,
        UserRole::InstallerUser,
        UserRole::Subcontractor,
        UserRole::Owner,
        UserRole::Analyst,
        UserRole::PlatformAdmin,
    ];

    /// The registry's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::InstallerAdmin => "installer_admin",
            UserRole::InstallerUser => "installer_user",
            UserRole::Subcontractor => "subcontractor",
            UserRole::Owner => "owner",
            UserRole::Analyst => "analyst",
            UserRole::PlatformAdmin => "platform_admin",
        }
    }

    /// Whether the role may run SQL (the portal's SQL API, Postgres wire, Flight SQL):
    /// everyone but owners, who see their systems through the pages.
    pub fn may_run_sql(self) -> bool {
        self != UserRole::Owner
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// A user as sign-in and authorisation see them (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub email: String,
    pub role: UserRole,
    /// Set for company members (installers, subcontractors, analysts).
    pub company_id: Option<i64>,
    /// Set for owners.
    pub owner_id: Option<i64>,
    pub active: bool,
    /// The interface language the user chose: `en` or `fr`.
    pub language: String,
}

/// A password check that outlives its request. It keeps the hash the password was checked
/// against, so a later [`Registry::still_signed_in`] notices a changed password.
#[derive(Clone, Debug)]
pub struct StandingSignIn {
    pub user: UserRecord,
    password_hash: String,
}

/// The hash checked when the e-mail is unknown, so a wrong e-mail takes as long as a wrong
/// password and the answer does not tell which users exist.
fn dummy_hash() -> Result<&'static str, Error> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(hash) = DUMMY.get() {
        return Ok(hash);
    }
    let hash = hash_password("no user has this password")?;
    Ok(DUMMY.get_or_init(|| hash))
}

pub(super) fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| Error::PasswordHash {
            reason: e.to_string(),
        })
}

const USER_COLUMNS: &str = "id, email, role, company_id, owner_id, active, password_hash, language";
/// [`USER_COLUMNS`] of a query where `users` is aliased `u`.
pub(super) const USER_COLUMNS_OF_U: &str =
    "u.id, u.email, u.role, u.company_id, u.owner_id, u.active, u.password_hash, u.language";

pub(super) type UserRow = (
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
    String,
);

pub(super) fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
    ))
}

pub(super) fn user_record(
    (id, email, role, company_id, owner_id, active, hash, language): UserRow,
) -> Result<(UserRecord, Option<String>), Error> {
    let role = UserRole::parse(&role).ok_or_else(|| Error::Registry {
        context: format!("user {email:?} has an unknown role {role:?}"),
        source: rusqlite::Error::InvalidQuery,
    })?;
    let user = UserRecord {
        id,
        email,
        role,
        company_id,
        owner_id,
        active,
        language,
    };
    Ok((user, hash))
}

impl Registry {
    pub fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, Error> {
        Ok(self.user_with_hash(email)?.map(|(user, _)| user))
    }

    fn user_with_hash(&self, email: &str) -> Result<Option<(UserRecord, Option<String>)>, Error> {
        let row = self
            .connection()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = ?1"),
                params![email.trim()],
                user_row,
            )
            .optional()
            .map_err(sql_error(format!("looking up user {email:?}")))?;
        row.map(user_record).transpose()
    }

    /// A company's users, by e-mail.
    pub fn users_of_company(&self, company_id: i64) -> Result<Vec<UserRecord>, Error> {
        let connection = self.connection();
        let mut statement = connection
            .prepare(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE company_id = ?1 ORDER BY email"
            ))
            .map_err(sql_error("listing users"))?;
        let rows = statement
            .query_map(params![company_id], user_row)
            .map_err(sql_error("listing users"))?;
        rows.map(|row| {
            let row = row.map_err(sql_error("reading a user"))?;
            user_record(row).map(|(user, _)| user)
        })
        .collect()
    }

    /// Sets a user's password (argon2id with a fresh salt).
    pub fn set_password(&self, email: &str, password: &str) -> Result<(), Error> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Error::WeakPassword {
                min_chars: MIN_PASSWORD_CHARS,
            });
        }
        let hash = hash_password(password)?;
        let changed = self
            .connection()
            .execute(
                "UPDATE users SET password_hash = ?1 WHERE email = ?2",
                params![hash, email.trim()],
            )
            .map_err(sql_error(format!("setting the password of {email:?}")))?;
        if changed == 0 {
            return Err(Error::UnknownUser {
                email: email.to_owned(),
            });
        }
        Ok(())
    }

    /// The active user with this e-mail and password, or `None` (unknown e-mail, wrong
    /// password, no password set or deactivated: one answer for all). Takes tens of
    /// milliseconds on purpose (argon2); call it off the async threads.
    pub fn authenticate(&self, email: &str, password: &str) -> Result<Option<UserRecord>, Error> {
        Ok(self
            .authenticate_standing(email, password)?
            .map(|signed_in| signed_in.user))
    }

    /// [`Registry::authenticate`] for a sign-in that outlives its request (a Postgres
    /// connection, a Flight SQL token): [`Registry::still_signed_in`] re-checks it later.
    pub fn authenticate_standing(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<StandingSignIn>, Error> {
        let found = self.user_with_hash(email)?;
        let hash = match found.as_ref().and_then(|(_, hash)| hash.as_deref()) {
            Some(hash) => hash,
            None => dummy_hash()?,
        };
        let parsed = PasswordHash::new(hash).map_err(|e| Error::PasswordHash {
            reason: e.to_string(),
        })?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        match found {
            Some((user, Some(password_hash))) if matches && user.active => {
                self.connection()
                    .execute(
                        "UPDATE users SET last_login_us = ?1 WHERE id = ?2",
                        params![crate::time::now_micros(), user.id],
                    )
                    .map_err(sql_error(format!("recording the sign-in of {email:?}")))?;
                Ok(Some(StandingSignIn {
                    user,
                    password_hash,
                }))
            }
            _ => Ok(None),
        }
    }

    /// The user of a standing sign-in as stored now (role and company may have changed),
    /// or `None` once it no longer holds: the user is gone or deactivated, or the password
    /// was changed (or reset) since.
    pub fn still_signed_in(&self, signed_in: &StandingSignIn) -> Result<Option<UserRecord>, Error> {
        let row = self
            .connection()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                params![signed_in.user.id],
                user_row,
            )
            .optional()
            .map_err(sql_error(format!(
                "re-checking the sign-in of user {}",
                signed_in.user.id
            )))?;
        Ok(match row.map(user_record).transpose()? {
            Some((user, Some(hash))) if user.active && hash == signed_in.password_hash => {
                Some(user)
            }
            _ => None,
        })
    }
}

impl Registry {
    /// Sets the user's interface language (`en` or `fr`; the portal checks which).
    pub fn set_user_language(&self, user_id: i64, language: &str) -> Result<(), Error> {
        self.connection()
            .execute(
                "UPDATE users SET language = ?1 WHERE id = ?2",
                params![language, user_id],
            )
            .map_err(sql_error(format!("setting the language of user {user_id}")))?;
        Ok(())
    }

    /// A user's saved portal preference, if any.
    pub fn user_setting(&self, user_id: i64, name: &str) -> Result<Option<String>, Error> {
        self.connection()
            .query_row(
                "SELECT value FROM user_settings WHERE user_id = ?1 AND name = ?2",
                params![user_id, name],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql_error(format!(
                "reading setting {name:?} of user {user_id}"
            )))
    }

    pub fn set_user_setting(&self, user_id: i64, name: &str, value: &str) -> Result<(), Error> {
        self.connection()
            .execute(
                "INSERT INTO user_settings (user_id, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id, name) DO UPDATE SET value = excluded.value",
                params![user_id, name, value],
            )
            .map_err(sql_error(format!(
                "saving setting {name:?} of user {user_id}"
            )))?;
        Ok(())
    }
}

/// A company member as the users page lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub id: i64,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub role: UserRole,
    pub active: bool,
    pub last_login_us: Option<i64>,
}

impl Registry {
    /// A company's members, by family and given name.
    pub fn company_users(&self, company_id: i64) -> Result<Vec<UserSummary>, Error> {
        let context = format!("listing the users of company {company_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT id, email, given_name, family_name, role, active, last_login_us
                 FROM users WHERE company_id = ?1
                 ORDER BY family_name COLLATE NOCASE, given_name COLLATE NOCASE, id",
            )
            .map_err(sql_error(context.clone()))?;
        let rows = statement
            .query_map(params![company_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, bool>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                ))
            })
            .map_err(sql_error(context.clone()))?;
        let mut users = Vec::new();
        for row in rows {
            let (id, email, given_name, family_name, role, active, last_login_us) =
                row.map_err(sql_error(context.clone()))?;
            let role = UserRole::parse(&role).ok_or_else(|| Error::Registry {
                context: format!("user {email:?} has an unknown role {role:?}"),
                source: rusqlite::Error::InvalidQuery,
            })?;
            users.push(UserSummary {
                id,
                email,
                given_name,
                family_name,
                role,
                active,
                last_login_us,
            });
        }
        Ok(users)
    }

    /// Deactivates or reactivates a member of `company_id` (one transaction, audited by
    /// `by_user`). Deactivation ends the user's sessions; the company's last active
    /// administrator cannot be deactivated.
    pub fn set_user_active(
        &self,
        company_id: i64,
        user_id: i64,
        active: bool,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("changing whether a user is active", |tx| {
            let member: Option<(String, String, bool)> = tx
                .query_row(
                    "SELECT email, role, active FROM users WHERE id = ?1 AND company_id = ?2",
                    params![user_id, company_id],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql_error("finding the user"))?;
            let Some((email, role, was_active)) = member else {
                return Err(Error::NotInCompany {
                    user_id,
                    company_id,
                });
            };
            if was_active == active {
                return Ok(());
            }
            if !active && role == UserRole::InstallerAdmin.as_str() {
                let other_admins: i64 = tx
                    .query_row(
                        "SELECT count(*) FROM users
                         WHERE company_id = ?1 AND role = 'installer_admin' AND active = 1 AND id <> ?2",
                        params![company_id, user_id],
                        |row| row.get(0),
                    )
                    .map_err(sql_error("counting administrators"))?;
                if other_admins == 0 {
                    return Err(Error::LastAdmin { email });
                }
            }
            tx.execute(
                "UPDATE users SET active = ?1 WHERE id = ?2",
                params![active, user_id],
            )
            .map_err(sql_error("changing whether a user is active"))?;
            if !active {
                tx.execute(
                    "DELETE FROM portal_sessions WHERE user_id = ?1",
                    params![user_id],
                )
                .map_err(sql_error("ending the user's sessions"))?;
            }
            insert_audit(
                tx,
                Some(by_user),
                if active {
                    "user_reactivated"
                } else {
                    "user_deactivated"
                },
                "user",
                Some(user_id),
                &email,
                now_us,
            )?;
            Ok(())
        })
    }
}
