//! A company's people and partners (F7, C4, C5): inviting users (a one-time link sets
//! their password), the subcontractor companies an installer works with, and the systems
//! it grants them. Every change is audited.

use rusqlite::{OptionalExtension, Transaction, params};

use super::audit::insert_audit;
use super::records::{NewCompany, insert_company};
use super::sessions::{digest, random_token};
use super::users::{USER_COLUMNS_OF_U, hash_password, user_record, user_row};
use super::{MIN_PASSWORD_CHARS, Registry, UserRecord, UserRole, sql_error};
use crate::Error;
use crate::time::CivilDate;

/// How long an invitation link works.
pub const INVITATION_LIFETIME_US: i64 = 7 * 24 * 3_600_000_000;

/// Someone to add to a company.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMember {
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub role: UserRole,
}

/// An invitation just made: `token` goes into the link, and is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub user_id: i64,
    pub email: String,
    pub token: String,
}

/// A subcontractor company an installer works with, and what it was granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subcontractor {
    pub company_id: i64,
    pub name: String,
    pub email: String,
    pub grants: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub system_id: i64,
    pub system_name: String,
    pub granted_us: i64,
    /// When access ends (or ended); `None`: until revoked.
    pub ends_us: Option<i64>,
}

impl Registry {
    /// Adds `member` to `company_id` without a password and returns the invitation whose
    /// link sets it (valid [`INVITATION_LIFETIME_US`]). A member invited before who never
    /// set a password gets a new link.
    pub fn invite_user(
        &self,
        company_id: i64,
        member: &NewMember,
        by_user: i64,
        now_us: i64,
    ) -> Result<Invitation, Error> {
        self.transaction("inviting a user", |tx| {
            invite(tx, company_id, member, by_user, now_us)
        })
    }

    /// The user an unexpired invitation token belongs to.
    pub fn invitation_user(&self, token: &str, now_us: i64) -> Result<Option<UserRecord>, Error> {
        let row = self
            .connection()
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS_OF_U} FROM password_tokens t
                       JOIN users u ON u.id = t.user_id
                      WHERE t.token_digest = ?1 AND t.expires_us > ?2 AND u.active = 1"
                ),
                params![digest(token), now_us],
                user_row,
            )
            .optional()
            .map_err(sql_error("looking up an invitation"))?;
        row.map(|row| user_record(row).map(|(user, _)| user))
            .transpose()
    }

    /// Sets the invited user's password and uses the token up (every invitation of the
    /// user ends). The token is consumed in the same transaction that sets the password, so
    /// two submissions of one link cannot both succeed.
    pub fn accept_invitation(
        &self,
        token: &str,
        password: &str,
        now_us: i64,
    ) -> Result<UserRecord, Error> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Error::WeakPassword {
                min_chars: MIN_PASSWORD_CHARS,
            });
        }
        let user = self
            .invitation_user(token, now_us)?
            .ok_or(Error::InvitationInvalid)?;
        let hash = hash_password(password)?;
        self.transaction("accepting an invitation", |tx| {
            let consumed = tx
                .execute(
                    "DELETE FROM password_tokens
                     WHERE token_digest = ?1 AND user_id = ?2 AND expires_us > ?3",
                    params![digest(token), user.id, now_us],
                )
                .map_err(sql_error("using the invitation up"))?;
            if consumed == 0 {
                return Err(Error::InvitationInvalid);
            }
            tx.execute(
                "DELETE FROM password_tokens WHERE user_id = ?1",
                params![user.id],
            )
            .map_err(sql_error("ending the user's other invitations"))?;
            tx.execute(
                "UPDATE users SET password_hash = ?1 WHERE id = ?2",
                params![hash, user.id],
            )
            .map_err(sql_error("setting the password"))?;
            insert_audit(
                tx,
                Some(user.id),
                "invitation_accepted",
                "user",
                Some(user.id),
                "",
                now_us,
            )
        })?;
        Ok(user)
    }

    /// The subcontractor companies `installer_id` works with and its grants to them.
    pub fn subcontractors_of(&self, installer_id: i64) -> Result<Vec<Subcontractor>, Error> {
        let context = format!("listing the subcontractors of company {installer_id}");
        let connection = self.connection();
        let mut statement = connection
            .prepare(
                "SELECT c.id, c.name, c.email FROM authorized_subcontractors a
                   JOIN companies c ON c.id = a.company_id
                  WHERE a.installer_id = ?1 ORDER BY c.name COLLATE NOCASE, c.id",
            )
            .map_err(sql_error(context.clone()))?;
        let companies: Vec<(i64, String, String)> = statement
            .query_map(params![installer_id], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(sql_error(context.clone()))?
            .collect::<Result<_, _>>()
            .map_err(sql_error(context.clone()))?;
        let mut grants = connection
            .prepare(
                "SELECT g.system_id, s.name, g.granted_us, g.revoked_us
                   FROM subcontractor_grants g JOIN systems s ON s.id = g.system_id
                  WHERE g.company_id = ?1 AND s.installer_id = ?2
                  ORDER BY s.name COLLATE NOCASE, s.id",
            )
            .map_err(sql_error(context.clone()))?;
        let mut out = Vec::new();
        for (company_id, name, email) in companies {
            let rows = grants
                .query_map(params![company_id, installer_id], |row| {
                    Ok(Grant {
                        system_id: row.get(0)?,
                        system_name: row.get(1)?,
                        granted_us: row.get(2)?,
                        ends_us: row.get(3)?,
                    })
                })
                .map_err(sql_error(context.clone()))?
                .collect::<Result<_, _>>()
                .map_err(sql_error(context.clone()))?;
            out.push(Subcontractor {
                company_id,
                name,
                email,
                grants: rows,
            });
        }
        Ok(out)
    }

    /// Registers a subcontractor company for `installer_id` and invites its first user
    /// (`contact`, role subcontractor).
    pub fn add_subcontractor(
        &self,
        installer_id: i64,
        company_name: &str,
        contact: &NewMember,
        by_user: i64,
        now_us: i64,
    ) -> Result<(i64, Invitation), Error> {
        self.transaction("adding a subcontractor", |tx| {
            let company_id = insert_company(
                tx,
                &NewCompany {
                    name: company_name.to_owned(),
                    kind: "subcontractor",
                    city: String::new(),
                    region: String::new(),
                    country: String::new(),
                    phone: String::new(),
                    email: contact.email.clone(),
                    created_us: now_us,
                },
            )?;
            tx.execute(
                "INSERT INTO authorized_subcontractors (installer_id, company_id, added_by, added_us)
                 VALUES (?1, ?2, ?3, ?4)",
                params![installer_id, company_id, by_user, now_us],
            )
            .map_err(sql_error("authorising the subcontractor"))?;
            insert_audit(
                tx,
                Some(by_user),
                "subcontractor_added",
                "company",
                Some(company_id),
                company_name,
                now_us,
            )?;
            let member = NewMember {
                role: UserRole::Subcontractor,
                ..contact.clone()
            };
            let invitation = invite(tx, company_id, &member, by_user, now_us)?;
            Ok((company_id, invitation))
        })
    }

    /// Grants `company_id` (a subcontractor of `installer_id`) access to `systems` (the
    /// installer's) until `ends_us` (`None`: until revoked); a revoked or expired grant
    /// is renewed. All or nothing.
    pub fn grant_systems(
        &self,
        installer_id: i64,
        company_id: i64,
        systems: &[i64],
        ends_us: Option<i64>,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("granting systems", |tx| {
            authorized(tx, installer_id, company_id)?;
            for system_id in systems {
                let owned: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM systems WHERE id = ?1 AND installer_id = ?2)",
                        params![system_id, installer_id],
                        |row| row.get(0),
                    )
                    .map_err(sql_error("checking the system"))?;
                if !owned {
                    return Err(Error::UnknownSystem {
                        system_id: *system_id,
                    });
                }
                tx.execute(
                    "INSERT INTO subcontractor_grants (system_id, company_id, granted_by, granted_us, revoked_us)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (system_id, company_id) DO UPDATE SET
                         granted_by = excluded.granted_by, granted_us = excluded.granted_us,
                         revoked_us = excluded.revoked_us",
                    params![system_id, company_id, by_user, now_us, ends_us],
                )
                .map_err(sql_error("granting a system"))?;
                insert_audit(
                    tx,
                    Some(by_user),
                    "system_granted",
                    "system",
                    Some(*system_id),
                    &format!(
                        "to company {company_id}{}",
                        ends_us
                            .map(|end| format!(" through {}", CivilDate::of_timestamp(end - 1)))
                            .unwrap_or_default()
                    ),
                    now_us,
                )?;
            }
            Ok(())
        })
    }

    /// Ends `company_id`'s access to one of `installer_id`'s systems now.
    pub fn revoke_grant(
        &self,
        installer_id: i64,
        company_id: i64,
        system_id: i64,
        by_user: i64,
        now_us: i64,
    ) -> Result<(), Error> {
        self.transaction("revoking a grant", |tx| {
            authorized(tx, installer_id, company_id)?;
            let changed = tx
                .execute(
                    "UPDATE subcontractor_grants SET revoked_us = ?1
                      WHERE company_id = ?2 AND system_id = ?3
                        AND system_id IN (SELECT id FROM systems WHERE installer_id = ?4)
                        AND (revoked_us IS NULL OR revoked_us > ?1)",
                    params![now_us, company_id, system_id, installer_id],
                )
                .map_err(sql_error("revoking a grant"))?;
            if changed == 0 {
                return Err(Error::UnknownSystem { system_id });
            }
            insert_audit(
                tx,
                Some(by_user),
                "grant_revoked",
                "system",
                Some(system_id),
                &format!("from company {company_id}"),
                now_us,
            )
        })
    }
}

fn authorized(tx: &Transaction<'_>, installer_id: i64, company_id: i64) -> Result<(), Error> {
    let known: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM authorized_subcontractors
                             WHERE installer_id = ?1 AND company_id = ?2)",
            params![installer_id, company_id],
            |row| row.get(0),
        )
        .map_err(sql_error("checking the subcontractor"))?;
    if known {
        Ok(())
    } else {
        Err(Error::NotASubcontractor {
            company_id,
            installer_id,
        })
    }
}

fn invite(
    tx: &Transaction<'_>,
    company_id: i64,
    member: &NewMember,
    by_user: i64,
    now_us: i64,
) -> Result<Invitation, Error> {
    let existing: Option<(i64, Option<i64>, bool)> = tx
        .query_row(
            "SELECT id, company_id, password_hash IS NOT NULL FROM users WHERE email = ?1",
            params![member.email],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()
        .map_err(sql_error("looking up the e-mail"))?;
    let user_id = match existing {
        // Invited before and never signed up (the link expired or got lost): a new link.
        Some((id, Some(company), false)) if company == company_id => id,
        Some(_) => {
            return Err(Error::EmailTaken {
                email: member.email.clone(),
            });
        }
        None => {
            tx.execute(
                "INSERT INTO users (email, given_name, family_name, role, company_id, created_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    member.email,
                    member.given_name,
                    member.family_name,
                    member.role.as_str(),
                    company_id,
                    now_us
                ],
            )
            .map_err(sql_error(format!("adding user {:?}", member.email)))?;
            tx.last_insert_rowid()
        }
    };
    let invitation = issue_password_token(tx, user_id, &member.email, now_us)?;
    insert_audit(
        tx,
        Some(by_user),
        "user_invited",
        "user",
        Some(user_id),
        &format!("{} ({})", member.email, member.role.as_str()),
        now_us,
    )?;
    Ok(invitation)
}

/// A new one-time link for `user_id` (earlier ones stop working). The token is returned to
/// be handed over once; only its digest is stored, and nothing else keeps the link: the
/// portal shows it to the person who asked for it (and e-mail delivery, when it comes,
/// must send it without storing it).
pub(super) fn issue_password_token(
    tx: &Transaction<'_>,
    user_id: i64,
    email: &str,
    now_us: i64,
) -> Result<Invitation, Error> {
    tx.execute(
        "DELETE FROM password_tokens WHERE user_id = ?1",
        params![user_id],
    )
    .map_err(sql_error("replacing an invitation"))?;
    let token = random_token();
    tx.execute(
        "INSERT INTO password_tokens (token_digest, user_id, created_us, expires_us)
         VALUES (?1, ?2, ?3, ?4)",
        params![
            digest(&token),
            user_id,
            now_us,
            now_us + INVITATION_LIFETIME_US
        ],
    )
    .map_err(sql_error("creating the invitation"))?;
    Ok(Invitation {
        user_id,
        email: email.to_owned(),
        token,
    })
}
