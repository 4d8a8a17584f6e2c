//! A system's owner as customer service changes them (C1, C2): sending the owner their
//! access again (a one-time link that sets their password, e-mailed), and updating their
//! details (the owner is e-mailed the change, at the old and the new address when the
//! e-mail changes). Each is one transaction with its audit entry and its mails, so a
//! change is never saved without its notice, nor a notice queued for a change refused.
//!
//! An owner is a person: one owner owning several systems has one row, so their details
//! change on all their systems. Changing the e-mail here keeps the owner (and their
//! sign-in, whose e-mail follows); the activation form's different e-mail is a different
//! owner.

use rusqlite::{OptionalExtension, Transaction, params};

use super::activation::ensure_owner_user;
use super::audit::insert_audit;
use super::members::issue_password_token;
use super::outbox::{NewMail, queue_mail};
use super::{Registry, sql_error};
use crate::Error;

/// A system's owner, as their details are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerInfo {
    pub id: i64,
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: String,
    /// `en` or `fr`: the language of their mails (and of their sign-in, once made).
    pub language: String,
}

/// The owner's details as entered (the portal checks them).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerUpdate {
    pub given_name: String,
    pub family_name: String,
    pub email: String,
    pub phone: String,
    pub language: String,
}

/// What the welcome mail is made of (C1).
#[derive(Debug, Clone, Copy)]
pub struct OwnerAccess<'a> {
    pub system_id: i64,
    pub system_name: &'a str,
    pub owner: &'a OwnerInfo,
    /// The one-time token of the link; only its digest is kept.
    pub token: &'a str,
}

/// A saved change of an owner's details (C2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerChange {
    pub system_id: i64,
    pub system_name: String,
    pub before: OwnerInfo,
    pub after: OwnerInfo,
    /// The fields that changed: `given_name`, `family_name`, `email`, `phone`, `language`.
    pub changed: Vec<&'static str>,
    /// Who is told: the owner's address, and the previous one when the e-mail changed.
    pub notified: Vec<String>,
}

impl OwnerChange {
    /// The e-mail changed (not only its letter case).
    pub fn email_changed(&self) -> bool {
        !self.before.email.eq_ignore_ascii_case(&self.after.email)
    }
}

fn owner_of_system(tx: &Transaction<'_>, system_id: i64) -> Result<(String, OwnerInfo), Error> {
    let row: Option<(String, Option<i64>)> = tx
        .query_row(
            "SELECT name, owner_id FROM systems WHERE id = ?1",
            params![system_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(sql_error("finding the system"))?;
    let (system_name, owner_id) = row.ok_or(Error::UnknownSystem { system_id })?;
    let owner_id = owner_id.ok_or(Error::NoOwner { system_id })?;
    let owner = tx
        .query_row(
            "SELECT id, given_name, family_name, email, phone, language FROM owners WHERE id = ?1",
            params![owner_id],
            owner_row,
        )
        .map_err(sql_error(format!("reading owner {owner_id}")))?;
    Ok((system_name, owner))
}

fn owner_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<OwnerInfo> {
    Ok(OwnerInfo {
        id: row.get(0)?,
        given_name: row.get(1)?,
        family_name: row.get(2)?,
        email: row.get(3)?,
        phone: row.get(4)?,
        language: row.get(5)?,
    })
}

impl Registry {
    /// The owner of system `system_id`, if it has one.
    pub fn system_owner(&self, system_id: i64) -> Result<Option<OwnerInfo>, Error> {
        self.connection()
            .query_row(
                "SELECT o.id, o.given_name, o.family_name, o.email, o.phone, o.language
                   FROM systems s JOIN owners o ON o.id = s.owner_id WHERE s.id = ?1",
                params![system_id],
                owner_row,
            )
            .optional()
            .map_err(sql_error(format!(
                "reading the owner of system {system_id}"
            )))
    }

    /// Sends the owner of one of `installer_id`'s systems their access (C1): their sign-in
    /// is made if needed, a one-time link replaces any earlier one, and the welcome mail
    /// `compose` writes with it is queued; audited. `compose` runs inside the transaction
    /// (it must not use the registry); the mail's `secret` (the link; the bare token when
    /// `None`) leaves the stored body once delivered. Returns the owner.
    pub fn send_owner_access(
        &self,
        installer_id: i64,
        system_id: i64,
        by_user: i64,
        now_us: i64,
        compose: impl FnOnce(&OwnerAccess<'_>) -> Result<NewMail, String>,
    ) -> Result<OwnerInfo, Error> {
        let owner = self.transaction("sending the owner their access", |tx| {
            let ours: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM systems WHERE id = ?1 AND installer_id = ?2)",
                    params![system_id, installer_id],
                    |row| row.get(0),
                )
                .map_err(sql_error("finding the system"))?;
            if !ours {
                return Err(Error::UnknownSystem { system_id });
            }
            let (user_id, email, _) = ensure_owner_user(tx, system_id, now_us)?
                .ok_or(Error::NoOwnerSignIn { system_id })?;
            let (system_name, owner) = owner_of_system(tx, system_id)?;
            let invitation = issue_password_token(tx, user_id, &email, now_us)?;
            let mut mail = compose(&OwnerAccess {
                system_id,
                system_name: &system_name,
                owner: &owner,
                token: &invitation.token,
            })
            .map_err(|reason| Error::MailComposition { reason })?;
            mail.system_id = Some(system_id);
            if mail.secret.is_none() {
                mail.secret = Some(invitation.token.clone());
            }
            queue_mail(tx, &mail, now_us)?;
            insert_audit(
                tx,
                Some(by_user),
                "owner_access_sent",
                "system",
                Some(system_id),
                &email,
                now_us,
            )?;
            Ok(owner)
        })?;
        self.wake_mail();
        Ok(owner)
    }

    /// Updates the owner of system `system_id` (C2): their details, and their sign-in's
    /// e-mail and names when they have one (a changed e-mail also ends the one-time links
    /// sent to the old address); audited; `compose` writes the notice for each address
    /// told (the owner's, and the previous one when the e-mail changed), queued in the
    /// same transaction. `compose` must not use the registry. An e-mail another account
    /// or another owner has is refused and nothing changes. `None`: nothing differed, so
    /// nothing was written or sent.
    pub fn update_owner(
        &self,
        system_id: i64,
        update: &OwnerUpdate,
        by_user: i64,
        now_us: i64,
        mut compose: impl FnMut(&OwnerChange, &str) -> Result<NewMail, String>,
    ) -> Result<Option<OwnerChange>, Error> {
        let change = self.transaction("updating the owner", |tx| {
            let (system_name, before) = owner_of_system(tx, system_id)?;
            let after = OwnerInfo {
                id: before.id,
                given_name: update.given_name.clone(),
                family_name: update.family_name.clone(),
                email: update.email.clone(),
                phone: update.phone.clone(),
                language: update.language.clone(),
            };
            let changed: Vec<&'static str> = [
                ("given_name", before.given_name == after.given_name),
                ("family_name", before.family_name == after.family_name),
                ("email", before.email == after.email),
                ("phone", before.phone == after.phone),
                ("language", before.language == after.language),
            ]
            .into_iter()
            .filter(|(_, same)| !same)
            .map(|(field, _)| field)
            .collect();
            if changed.is_empty() {
                return Ok(None);
            }
            let user: Option<i64> = tx
                .query_row(
                    "SELECT id FROM users WHERE owner_id = ?1 ORDER BY id LIMIT 1",
                    params![before.id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql_error("finding the owner's sign-in"))?;
            let moved = !before.email.eq_ignore_ascii_case(&after.email);
            if moved {
                let account: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM users WHERE email = ?1 AND id IS NOT ?2",
                        params![after.email, user],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sql_error("looking up the new e-mail"))?;
                if account.is_some() {
                    return Err(Error::EmailTaken {
                        email: after.email.clone(),
                    });
                }
                let owner: Option<i64> = tx
                    .query_row(
                        "SELECT id FROM owners WHERE email = ?1 COLLATE NOCASE AND id <> ?2",
                        params![after.email, before.id],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(sql_error("looking up the new e-mail"))?;
                if owner.is_some() {
                    return Err(Error::OwnerEmailTaken {
                        email: after.email.clone(),
                    });
                }
            }
            tx.execute(
                "UPDATE owners SET given_name = ?1, family_name = ?2, email = ?3, phone = ?4,
                        language = ?5
                  WHERE id = ?6",
                params![
                    after.given_name,
                    after.family_name,
                    after.email,
                    after.phone,
                    after.language,
                    after.id
                ],
            )
            .map_err(sql_error(format!("updating owner {}", after.id)))?;
            if let Some(user_id) = user {
                tx.execute(
                    "UPDATE users SET email = ?1, given_name = ?2, family_name = ?3, phone = ?4
                      WHERE id = ?5",
                    params![
                        after.email,
                        after.given_name,
                        after.family_name,
                        after.phone,
                        user_id
                    ],
                )
                .map_err(sql_error("updating the owner's sign-in"))?;
                // The sign-in's own language is the owner's to choose (Account page); a
                // language the installer changes here is theirs too.
                if changed.contains(&"language") {
                    tx.execute(
                        "UPDATE users SET language = ?1 WHERE id = ?2",
                        params![after.language, user_id],
                    )
                    .map_err(sql_error("updating the owner's language"))?;
                }
                if moved {
                    tx.execute(
                        "DELETE FROM password_tokens WHERE user_id = ?1",
                        params![user_id],
                    )
                    .map_err(sql_error("ending links sent to the old address"))?;
                }
            }
            let mut details = format!("changed {}", changed.join(", "));
            if moved {
                details.push_str(&format!("; e-mail {} -> {}", before.email, after.email));
            }
            insert_audit(
                tx,
                Some(by_user),
                "owner_updated",
                "system",
                Some(system_id),
                &details,
                now_us,
            )?;
            let mut notified = vec![after.email.clone()];
            if moved {
                notified.push(before.email.clone());
            }
            let change = OwnerChange {
                system_id,
                system_name,
                before,
                after,
                changed,
                notified,
            };
            for address in &change.notified {
                let mut mail = compose(&change, address)
                    .map_err(|reason| Error::MailComposition { reason })?;
                mail.to_address = address.clone();
                mail.system_id = Some(system_id);
                queue_mail(tx, &mail, now_us)?;
            }
            Ok(Some(change))
        })?;
        if change.is_some() {
            self.wake_mail();
        }
        Ok(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::records::{NewCompany, NewOwner, NewSystem, insert_company, insert_owner};
    use crate::registry::{MailState, NewUser, insert_user};

    struct World {
        _dir: tempfile::TempDir,
        registry: Registry,
        installer: i64,
        system: i64,
        installer_user: i64,
    }

    fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path().join("registry.sqlite3")).unwrap();
        let (installer, system, installer_user) = registry
            .transaction("test world", |tx| {
                let installer = insert_company(
                    tx,
                    &NewCompany {
                        name: "Soleil SARL".into(),
                        kind: "installer",
                        city: "Lyon".into(),
                        region: String::new(),
                        country: "FR".into(),
                        phone: String::new(),
                        email: "contact@soleil.example".into(),
                        created_us: 0,
                    },
                )?;
                let owner = insert_owner(
                    tx,
                    &NewOwner {
                        given_name: "Camille".into(),
                        family_name: "Martin".into(),
                        email: "camille@example.org".into(),
                        phone: "0102030405".into(),
                        language: "fr".into(),
                        created_us: 0,
                    },
                )?;
                insert_owner(
                    tx,
                    &NewOwner {
                        given_name: "Other".into(),
                        family_name: "Owner".into(),
                        email: "other.owner@example.org".into(),
                        phone: String::new(),
                        language: "en".into(),
                        created_us: 0,
                    },
                )?;
                let system = crate::registry::records::insert_system(
                    tx,
                    &NewSystem {
                        id: None,
                        name: "Maison Martin".into(),
                        kind: "residential",
                        installer_id: installer,
                        owner_id: Some(owner),
                        installer_reference: String::new(),
                        third_party_owned: false,
                        street_address: String::new(),
                        city: String::new(),
                        region: String::new(),
                        postal_code: String::new(),
                        country: "FR".into(),
                        latitude: 45.0,
                        longitude: 5.0,
                        elevation_m: 0.0,
                        time_zone: "Europe/Paris".into(),
                        stage: "ready",
                        internet_connection: "ethernet",
                        install_date: None,
                        operational_date: None,
                        annual_degradation_pct: 0.5,
                        threshold_pct: 90,
                        threshold_days: 90,
                        created_us: 0,
                    },
                )?;
                let installer_user = insert_user(
                    tx,
                    &NewUser {
                        email: "tech@soleil.example".into(),
                        given_name: "Tech".into(),
                        family_name: "Nicien".into(),
                        phone: String::new(),
                        language: "fr".into(),
                        role: "installer_user",
                        company_id: Some(installer),
                        owner_id: None,
                        password_hash: None,
                        created_us: 0,
                    },
                )?;
                Ok((installer, system, installer_user))
            })
            .unwrap();
        World {
            _dir: dir,
            registry,
            installer,
            system,
            installer_user,
        }
    }

    fn access_mail(access: &OwnerAccess<'_>) -> Result<NewMail, String> {
        let link = format!("http://127.0.0.1:8080/welcome?token={}", access.token);
        Ok(NewMail {
            to_address: access.owner.email.clone(),
            subject: format!("Accès à {}", access.system_name),
            body_text: format!("Bonjour {},\n{link}\n", access.owner.given_name),
            kind: "owner_access",
            language: access.owner.language.clone(),
            system_id: None,
            secret: Some(link),
        })
    }

    fn notice(change: &OwnerChange, to: &str) -> Result<NewMail, String> {
        Ok(NewMail {
            to_address: to.to_owned(),
            subject: format!("Details of {} changed", change.system_name),
            body_text: format!("changed: {:?}\n", change.changed),
            kind: "owner_details_changed",
            language: change.after.language.clone(),
            system_id: None,
            secret: None,
        })
    }

    fn outbox(registry: &Registry) -> Vec<crate::registry::MailRecord> {
        registry.outbox_page(100, 0).unwrap().0
    }

    #[test]
    fn access_is_sent_to_the_owner_with_a_link_that_sets_their_password() {
        let w = world();
        let owner = w
            .registry
            .send_owner_access(w.installer, w.system, w.installer_user, 1_000, access_mail)
            .unwrap();
        assert_eq!(owner.email, "camille@example.org");
        let mails = outbox(&w.registry);
        assert_eq!(mails.len(), 1);
        let mail = &mails[0];
        assert_eq!(mail.to_address, "camille@example.org");
        assert_eq!(
            (mail.kind.as_str(), mail.language.as_str()),
            ("owner_access", "fr")
        );
        assert_eq!(mail.system_id, Some(w.system));
        assert_eq!(mail.state, MailState::Queued);
        let token = mail.body_text.split("token=").nth(1).unwrap().trim();
        // The owner's sign-in exists, speaks their language, and the link sets its password.
        let user = w.registry.invitation_user(token, 2_000).unwrap().unwrap();
        assert_eq!(user.email, "camille@example.org");
        assert_eq!(user.language, "fr");
        w.registry
            .accept_invitation(token, "a long enough password", 3_000)
            .unwrap();
        assert!(
            w.registry
                .authenticate("camille@example.org", "a long enough password")
                .unwrap()
                .is_some()
        );
        // Another installer's system is unknown to this one, and nothing is queued.
        let refused = w.registry.send_owner_access(
            w.installer + 100,
            w.system,
            w.installer_user,
            4_000,
            access_mail,
        );
        assert!(matches!(refused, Err(Error::UnknownSystem { .. })));
        assert_eq!(outbox(&w.registry).len(), 1);
        // Sending again replaces the link: the first one no longer works.
        w.registry
            .send_owner_access(w.installer, w.system, w.installer_user, 5_000, access_mail)
            .unwrap();
        let mails = outbox(&w.registry);
        assert_eq!(mails.len(), 2);
        let newest = mails[0].body_text.split("token=").nth(1).unwrap().trim();
        assert_ne!(newest, token);
        assert!(w.registry.invitation_user(newest, 6_000).unwrap().is_some());
        // The audit log says who sent it.
        let audit = w.registry.company_audit_log(w.installer, 10).unwrap();
        assert!(audit.iter().any(|e| e.action == "owner_access_sent"));
    }

    #[test]
    fn a_failing_composition_changes_nothing() {
        let w = world();
        let refused =
            w.registry
                .send_owner_access(w.installer, w.system, w.installer_user, 1_000, |_| {
                    Err("no template".to_owned())
                });
        assert!(matches!(refused, Err(Error::MailComposition { .. })));
        assert!(outbox(&w.registry).is_empty());
        assert_eq!(w.registry.count("password_tokens").unwrap(), 0);
        assert!(
            w.registry
                .user_by_email("camille@example.org")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn an_owner_update_is_saved_audited_and_told_at_the_old_and_new_address() {
        let w = world();
        // The owner has a sign-in and an unused link.
        w.registry
            .send_owner_access(w.installer, w.system, w.installer_user, 1_000, access_mail)
            .unwrap();
        let update = OwnerUpdate {
            given_name: "Camille".into(),
            family_name: "Martin-Durand".into(),
            email: "camille.durand@example.org".into(),
            phone: "0102030405".into(),
            language: "en".into(),
        };
        let change = w
            .registry
            .update_owner(w.system, &update, w.installer_user, 2_000, notice)
            .unwrap()
            .unwrap();
        assert_eq!(change.changed, ["family_name", "email", "language"]);
        assert!(change.email_changed());
        assert_eq!(
            change.notified,
            ["camille.durand@example.org", "camille@example.org"]
        );
        let owner = w.registry.system_owner(w.system).unwrap().unwrap();
        assert_eq!(owner.email, "camille.durand@example.org");
        assert_eq!(owner.family_name, "Martin-Durand");
        assert_eq!(owner.language, "en");
        // The sign-in follows; the link sent to the old address stopped working.
        let user = w
            .registry
            .user_by_email("camille.durand@example.org")
            .unwrap()
            .unwrap();
        assert_eq!(user.language, "en");
        assert!(
            w.registry
                .user_by_email("camille@example.org")
                .unwrap()
                .is_none()
        );
        assert_eq!(w.registry.count("password_tokens").unwrap(), 0);
        let mails = outbox(&w.registry);
        let notices: Vec<&str> = mails
            .iter()
            .filter(|m| m.kind == "owner_details_changed")
            .map(|m| m.to_address.as_str())
            .collect();
        assert_eq!(notices.len(), 2);
        assert!(notices.contains(&"camille.durand@example.org"));
        assert!(notices.contains(&"camille@example.org"));
        let audit = w.registry.company_audit_log(w.installer, 10).unwrap();
        let entry = audit.iter().find(|e| e.action == "owner_updated").unwrap();
        assert!(
            entry
                .details
                .contains("camille@example.org -> camille.durand@example.org"),
            "{}",
            entry.details
        );

        // Saving the same details again changes and sends nothing.
        let before = mails.len();
        assert_eq!(
            w.registry
                .update_owner(w.system, &update, w.installer_user, 3_000, notice)
                .unwrap(),
            None
        );
        assert_eq!(outbox(&w.registry).len(), before);

        // Only the phone: one notice, to the owner's address.
        let phone = OwnerUpdate {
            phone: "+33 6 00 00 00 00".into(),
            ..update.clone()
        };
        let change = w
            .registry
            .update_owner(w.system, &phone, w.installer_user, 4_000, notice)
            .unwrap()
            .unwrap();
        assert_eq!(change.notified, ["camille.durand@example.org"]);
        assert_eq!(outbox(&w.registry).len(), before + 1);
    }

    #[test]
    fn an_e_mail_someone_else_has_is_refused_and_nothing_changes() {
        let w = world();
        let before_owner = w.registry.system_owner(w.system).unwrap().unwrap();
        for (email, expected) in [
            ("TECH@soleil.example", "account"),
            ("other.owner@example.org", "owner"),
        ] {
            let update = OwnerUpdate {
                given_name: "Camille".into(),
                family_name: "Martin".into(),
                email: email.into(),
                phone: String::new(),
                language: "fr".into(),
            };
            let refused =
                w.registry
                    .update_owner(w.system, &update, w.installer_user, 1_000, notice);
            match (expected, refused) {
                ("account", Err(Error::EmailTaken { .. })) => {}
                ("owner", Err(Error::OwnerEmailTaken { .. })) => {}
                (_, other) => panic!("{email}: {other:?}"),
            }
        }
        assert_eq!(
            w.registry.system_owner(w.system).unwrap().unwrap(),
            before_owner
        );
        assert!(outbox(&w.registry).is_empty());
        assert!(
            w.registry
                .company_audit_log(w.installer, 10)
                .unwrap()
                .is_empty()
        );
    }
}
