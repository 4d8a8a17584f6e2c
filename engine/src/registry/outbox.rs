//! The e-mail outbox (C1, C2): mails to people are queued in the transaction that causes
//! them ([`queue_mail`]), so a change and its notice are committed together or not at
//! all, and a deliverer sends them afterwards.
//!
//! A mail's life: `queued` → claimed by the deliverer ([`Registry::take_due_mail`]:
//! `sending`, one more attempt, a lease until `next_attempt_us`) → `sent`
//! ([`Registry::mark_mail_sent`]), or back to `queued` after a temporary failure with a
//! later `next_attempt_us` ([`Registry::record_mail_failure`], backoff
//! [`mail_backoff_us`]), or `failed` after a permanent failure or [`MAIL_MAX_ATTEMPTS`].
//! A server without SMTP marks queued mails `held` ([`Registry::hold_mails`]) with the
//! reason; a later start with SMTP sends them.
//!
//! Delivery is at least once: the lease outlasts the deliverer's send timeout, so a mail
//! being sent is never claimed twice, and a mail marked sent is never taken again; only a
//! crash between the SMTP server's acceptance and the mark sends it again, once the lease
//! runs out (with the same `Message-ID`, which the receiving side may use to drop it).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{Registry, sql_error};
use crate::Error;

/// How long a claimed mail is left to its deliverer before it is due again (the deliverer
/// gives up on a send well before).
pub const MAIL_LEASE_US: i64 = 5 * 60 * 1_000_000;

/// Attempts after which a mail that keeps failing is given up (about nine hours of
/// retries with [`mail_backoff_us`]).
pub const MAIL_MAX_ATTEMPTS: u32 = 16;

/// What replaces a mail's one-time link in the stored body once the mail is sent or given
/// up: the link is a credential, kept in clear only while it may still be delivered.
pub const REMOVED_SECRET: &str = "[one-time link removed after delivery]";

/// The wait before the next attempt after `failed_attempts` failures: 30 s, doubling, at
/// most an hour.
pub fn mail_backoff_us(failed_attempts: u32) -> i64 {
    let doublings = failed_attempts.saturating_sub(1).min(16);
    (30_000_000i64 << doublings).min(3_600_000_000)
}

/// A mail to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    pub to_address: String,
    pub subject: String,
    pub body_text: String,
    /// `owner_access`, `owner_details_changed`, `owner_operational`.
    pub kind: &'static str,
    /// `en` or `fr`: the language the mail is written in.
    pub language: String,
    pub system_id: Option<i64>,
    /// A credential the body carries (a one-time link), cut out of the stored body once the
    /// mail is sent or given up.
    pub secret: Option<String>,
}

/// A mail the deliverer claimed: send it, then mark it with its `attempt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub id: i64,
    pub created_us: i64,
    pub to_address: String,
    pub subject: String,
    pub body_text: String,
    pub language: String,
    /// This attempt's number (1 for the first); marks name it, so a stale one is ignored.
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailState {
    /// Waiting for its (next) attempt.
    Queued,
    /// Claimed by a deliverer.
    Sending,
    Sent,
    /// Given up: a permanent refusal, or too many attempts.
    Failed,
    /// Not delivered: the server has no SMTP server configured.
    Held,
}

impl MailState {
    pub fn as_str(self) -> &'static str {
        match self {
            MailState::Queued => "queued",
            MailState::Sending => "sending",
            MailState::Sent => "sent",
            MailState::Failed => "failed",
            MailState::Held => "held",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "sending" => MailState::Sending,
            "sent" => MailState::Sent,
            "failed" => MailState::Failed,
            "held" => MailState::Held,
            _ => MailState::Queued,
        }
    }
}

/// A mail of the outbox as the platform administrator's page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    pub id: i64,
    pub created_us: i64,
    pub to_address: String,
    pub subject: String,
    pub body_text: String,
    pub kind: String,
    pub language: String,
    pub system_id: Option<i64>,
    pub state: MailState,
    pub sent_us: Option<i64>,
    pub attempts: u32,
    /// When a queued mail is next tried (or a claimed one's lease ends).
    pub next_attempt_us: i64,
    pub last_error: String,
}

/// Queues `mail` in the caller's transaction (committed with the change it tells of).
/// Whoever commits wakes the deliverer ([`Registry::mail_signal`]).
pub fn queue_mail(tx: &Transaction<'_>, mail: &NewMail, now_us: i64) -> Result<i64, Error> {
    tx.execute(
        "INSERT INTO email_outbox (created_us, to_address, subject, body_text, kind, language,
                                   system_id, secret, state, next_attempt_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'queued', ?1)",
        params![
            now_us,
            mail.to_address,
            mail.subject,
            mail.body_text,
            mail.kind,
            mail.language,
            mail.system_id,
            mail.secret
        ],
    )
    .map_err(sql_error(format!("queueing a mail to {}", mail.to_address)))?;
    Ok(tx.last_insert_rowid())
}

const MAIL_COLUMNS: &str = "id, created_us, to_address, subject, body_text, kind, language,
    system_id, state, sent_us, attempts, next_attempt_us, last_error";

fn mail_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<MailRecord> {
    Ok(MailRecord {
        id: row.get(0)?,
        created_us: row.get(1)?,
        to_address: row.get(2)?,
        subject: row.get(3)?,
        body_text: row.get(4)?,
        kind: row.get(5)?,
        language: row.get(6)?,
        system_id: row.get(7)?,
        state: MailState::parse(&row.get::<_, String>(8)?),
        sent_us: row.get(9)?,
        attempts: row.get(10)?,
        next_attempt_us: row.get(11)?,
        last_error: row.get(12)?,
    })
}

/// Ends a mail's life as `state` (sent or failed): its one-time link leaves the body.
fn finish(
    connection: &Connection,
    id: i64,
    attempt: u32,
    state: MailState,
    sent_us: Option<i64>,
    error: &str,
) -> Result<bool, Error> {
    let changed = connection
        .execute(
            "UPDATE email_outbox
                SET state = ?1, sent_us = ?2, last_error = ?3,
                    body_text = CASE WHEN secret IS NULL OR secret = '' THEN body_text
                                     ELSE replace(body_text, secret, ?4) END,
                    secret = NULL
              WHERE id = ?5 AND state = 'sending' AND attempts = ?6",
            params![state.as_str(), sent_us, error, REMOVED_SECRET, id, attempt],
        )
        .map_err(sql_error(format!("marking mail {id} {}", state.as_str())))?;
    Ok(changed == 1)
}

impl Registry {
    /// Woken (one permit kept) whenever a mail is queued through the registry's own
    /// methods; the deliverer also polls, for mails queued by other processes.
    pub fn mail_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.mail_queued)
    }

    /// Tells the deliverer a mail was committed.
    pub(crate) fn wake_mail(&self) {
        self.mail_queued.notify_one();
    }

    /// Queues one mail on its own (its own transaction) and wakes the deliverer.
    pub fn queue_mail(&self, mail: &NewMail, now_us: i64) -> Result<i64, Error> {
        let id = self.transaction("queueing a mail", |tx| queue_mail(tx, mail, now_us))?;
        self.wake_mail();
        Ok(id)
    }

    /// Claims the mail due soonest (queued or held whose time has come, or claimed by a
    /// deliverer whose lease ran out): `sending`, one more attempt, leased for
    /// [`MAIL_LEASE_US`]. `None` when nothing is due.
    pub fn take_due_mail(&self, now_us: i64) -> Result<Option<OutgoingMail>, Error> {
        self.transaction("taking a due mail", |tx| {
            let due: Option<(i64, i64, String, String, String, String, u32)> = tx
                .query_row(
                    "SELECT id, created_us, to_address, subject, body_text, language, attempts
                       FROM email_outbox
                      WHERE state IN ('queued', 'held', 'sending') AND next_attempt_us <= ?1
                      ORDER BY next_attempt_us, id LIMIT 1",
                    params![now_us],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql_error("finding a due mail"))?;
            let Some((id, created_us, to_address, subject, body_text, language, attempts)) = due
            else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE email_outbox SET state = 'sending', attempts = attempts + 1,
                        next_attempt_us = ?1
                  WHERE id = ?2",
                params![now_us + MAIL_LEASE_US, id],
            )
            .map_err(sql_error(format!("claiming mail {id}")))?;
            Ok(Some(OutgoingMail {
                id,
                created_us,
                to_address,
                subject,
                body_text,
                language,
                attempt: attempts + 1,
            }))
        })
    }

    /// Marks attempt `attempt` of mail `id` sent (its one-time link leaves the stored
    /// body). `false` when that attempt is no longer the mail's claim (nothing changes).
    pub fn mark_mail_sent(&self, id: i64, attempt: u32, now_us: i64) -> Result<bool, Error> {
        finish(
            &self.connection(),
            id,
            attempt,
            MailState::Sent,
            Some(now_us),
            "",
        )
    }

    /// Records why attempt `attempt` of mail `id` failed: a `permanent` refusal, or the
    /// last allowed attempt, ends it `failed`; otherwise it is queued again after
    /// [`mail_backoff_us`]. Returns the mail's state, `None` when that attempt is no longer
    /// the mail's claim (nothing changes).
    pub fn record_mail_failure(
        &self,
        id: i64,
        attempt: u32,
        error: &str,
        permanent: bool,
        now_us: i64,
    ) -> Result<Option<MailState>, Error> {
        let connection = self.connection();
        if permanent || attempt >= MAIL_MAX_ATTEMPTS {
            let ended = finish(&connection, id, attempt, MailState::Failed, None, error)?;
            return Ok(ended.then_some(MailState::Failed));
        }
        let changed = connection
            .execute(
                "UPDATE email_outbox SET state = 'queued', last_error = ?1, next_attempt_us = ?2
                  WHERE id = ?3 AND state = 'sending' AND attempts = ?4",
                params![error, now_us + mail_backoff_us(attempt), id, attempt],
            )
            .map_err(sql_error(format!("recording a failure of mail {id}")))?;
        Ok((changed == 1).then_some(MailState::Queued))
    }

    /// Marks every mail waiting for delivery (queued, or claimed by a deliverer that is
    /// gone) `held` with `reason`: nothing delivers mail on this server. Returns how many.
    pub fn hold_mails(&self, reason: &str, now_us: i64) -> Result<usize, Error> {
        self.connection()
            .execute(
                "UPDATE email_outbox SET state = 'held', last_error = ?1
                  WHERE state = 'queued'
                     OR (state = 'sending' AND next_attempt_us <= ?2)",
                params![reason, now_us],
            )
            .map_err(sql_error("holding undeliverable mail"))
    }

    /// When the next mail falls due (now or past when one is already due); `None` when
    /// nothing waits.
    pub fn next_mail_due_us(&self) -> Result<Option<i64>, Error> {
        self.connection()
            .query_row(
                "SELECT min(next_attempt_us) FROM email_outbox
                  WHERE state IN ('queued', 'held', 'sending')",
                [],
                |row| row.get(0),
            )
            .map_err(sql_error("finding the next due mail"))
    }

    /// The outbox newest first, `limit` from `offset`, and how many mails it holds.
    pub fn outbox_page(&self, limit: u32, offset: u64) -> Result<(Vec<MailRecord>, u64), Error> {
        let context = "listing the outbox";
        let connection = self.connection();
        let total: i64 = connection
            .query_row("SELECT count(*) FROM email_outbox", [], |row| row.get(0))
            .map_err(sql_error(context))?;
        let mut statement = connection
            .prepare(&format!(
                "SELECT {MAIL_COLUMNS} FROM email_outbox
                  ORDER BY created_us DESC, id DESC LIMIT ?1 OFFSET ?2"
            ))
            .map_err(sql_error(context))?;
        let rows = statement
            .query_map(
                params![limit, i64::try_from(offset).unwrap_or(i64::MAX)],
                mail_row,
            )
            .map_err(sql_error(context))?;
        let mails = rows.collect::<Result<_, _>>().map_err(sql_error(context))?;
        Ok((mails, u64::try_from(total).unwrap_or(0)))
    }

    /// One mail of the outbox.
    pub fn outbox_mail(&self, id: i64) -> Result<Option<MailRecord>, Error> {
        self.connection()
            .query_row(
                &format!("SELECT {MAIL_COLUMNS} FROM email_outbox WHERE id = ?1"),
                params![id],
                mail_row,
            )
            .optional()
            .map_err(sql_error(format!("reading mail {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path().join("registry.sqlite3")).unwrap();
        (dir, registry)
    }

    fn mail(to: &str) -> NewMail {
        NewMail {
            to_address: to.to_owned(),
            subject: "Your access".to_owned(),
            body_text: "Set your password: https://portal.example/welcome?token=sf_secret\n"
                .to_owned(),
            kind: "owner_access",
            language: "fr".to_owned(),
            system_id: None,
            secret: Some("https://portal.example/welcome?token=sf_secret".to_owned()),
        }
    }

    #[test]
    fn the_backoff_doubles_up_to_an_hour() {
        assert_eq!(mail_backoff_us(1), 30_000_000);
        assert_eq!(mail_backoff_us(2), 60_000_000);
        assert_eq!(mail_backoff_us(4), 240_000_000);
        assert_eq!(mail_backoff_us(9), 3_600_000_000);
        assert_eq!(mail_backoff_us(200), 3_600_000_000);
    }

    #[test]
    fn a_queued_mail_wakes_the_deliverer_and_is_taken_once() {
        let (_dir, registry) = registry();
        let signal = registry.mail_signal();
        let id = registry.queue_mail(&mail("a@example.org"), 1_000).unwrap();
        // The permit waits for the deliverer even though nobody listened yet.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), signal.notified())
                .await
                .expect("woken");
        });
        assert_eq!(registry.next_mail_due_us().unwrap(), Some(1_000));
        assert_eq!(registry.take_due_mail(999).unwrap(), None, "not yet due");
        let taken = registry.take_due_mail(2_000).unwrap().unwrap();
        assert_eq!((taken.id, taken.attempt), (id, 1));
        assert_eq!(taken.language, "fr");
        // Claimed: nobody else takes it while the lease runs.
        assert_eq!(registry.take_due_mail(3_000).unwrap(), None);
        assert!(registry.mark_mail_sent(id, 1, 4_000).unwrap());
        // Marked once; a sent mail is never taken again, even long after.
        assert!(!registry.mark_mail_sent(id, 1, 5_000).unwrap());
        assert_eq!(registry.take_due_mail(i64::MAX / 2).unwrap(), None);
        assert_eq!(registry.next_mail_due_us().unwrap(), None);
        let sent = registry.outbox_mail(id).unwrap().unwrap();
        assert_eq!(sent.state, MailState::Sent);
        assert_eq!(sent.sent_us, Some(4_000));
        assert_eq!(sent.attempts, 1);
        // The link left the stored body once delivered.
        assert!(!sent.body_text.contains("sf_secret"), "{}", sent.body_text);
        assert!(sent.body_text.contains(REMOVED_SECRET));
    }

    #[test]
    fn failures_back_off_then_give_up_and_stale_attempts_change_nothing() {
        let (_dir, registry) = registry();
        let id = registry.queue_mail(&mail("b@example.org"), 0).unwrap();
        let first = registry.take_due_mail(10).unwrap().unwrap();
        assert_eq!(
            registry
                .record_mail_failure(id, 1, "451 try later", false, 100)
                .unwrap(),
            Some(MailState::Queued)
        );
        // A second report of the same attempt is stale.
        assert_eq!(
            registry
                .record_mail_failure(id, first.attempt, "again", false, 200)
                .unwrap(),
            None
        );
        let waiting = registry.outbox_mail(id).unwrap().unwrap();
        assert_eq!(waiting.state, MailState::Queued);
        assert_eq!(waiting.attempts, 1);
        assert_eq!(waiting.last_error, "451 try later");
        assert_eq!(waiting.next_attempt_us, 100 + mail_backoff_us(1));
        assert!(waiting.body_text.contains("sf_secret"), "still deliverable");
        assert_eq!(registry.take_due_mail(100).unwrap(), None, "backing off");
        let second = registry
            .take_due_mail(100 + mail_backoff_us(1))
            .unwrap()
            .unwrap();
        assert_eq!(second.attempt, 2);
        // A permanent refusal ends it, and the link leaves the body.
        assert_eq!(
            registry
                .record_mail_failure(id, 2, "550 no such user", true, 1_000_000_000)
                .unwrap(),
            Some(MailState::Failed)
        );
        let failed = registry.outbox_mail(id).unwrap().unwrap();
        assert_eq!(failed.state, MailState::Failed);
        assert_eq!(failed.last_error, "550 no such user");
        assert!(!failed.body_text.contains("sf_secret"));
        assert_eq!(registry.take_due_mail(i64::MAX / 2).unwrap(), None);

        // Temporary failures end it too once the attempts run out.
        let id = registry.queue_mail(&mail("c@example.org"), 0).unwrap();
        let mut now = 0;
        for attempt in 1..=MAIL_MAX_ATTEMPTS {
            let taken = registry.take_due_mail(now).unwrap().unwrap();
            assert_eq!((taken.id, taken.attempt), (id, attempt));
            let state = registry
                .record_mail_failure(id, attempt, "connection refused", false, now)
                .unwrap();
            let expected = if attempt == MAIL_MAX_ATTEMPTS {
                MailState::Failed
            } else {
                MailState::Queued
            };
            assert_eq!(state, Some(expected));
            now += mail_backoff_us(attempt);
        }
        assert_eq!(registry.take_due_mail(i64::MAX / 2).unwrap(), None);
    }

    #[test]
    fn a_lapsed_claim_is_taken_again_and_the_old_attempt_cannot_mark_it() {
        let (_dir, registry) = registry();
        let id = registry.queue_mail(&mail("d@example.org"), 0).unwrap();
        registry.take_due_mail(0).unwrap().unwrap();
        // The deliverer died with the mail claimed: after the lease it is due again.
        assert_eq!(registry.take_due_mail(MAIL_LEASE_US - 1).unwrap(), None);
        let again = registry.take_due_mail(MAIL_LEASE_US).unwrap().unwrap();
        assert_eq!(again.attempt, 2);
        assert!(!registry.mark_mail_sent(id, 1, MAIL_LEASE_US).unwrap());
        assert!(registry.mark_mail_sent(id, 2, MAIL_LEASE_US).unwrap());
    }

    #[test]
    fn without_smtp_mails_are_held_and_sent_once_a_server_is_configured() {
        let (_dir, registry) = registry();
        let id = registry.queue_mail(&mail("e@example.org"), 0).unwrap();
        let reason = "not delivered: no SMTP server configured";
        assert_eq!(registry.hold_mails(reason, 10).unwrap(), 1);
        assert_eq!(registry.hold_mails(reason, 20).unwrap(), 0, "held once");
        let held = registry.outbox_mail(id).unwrap().unwrap();
        assert_eq!(held.state, MailState::Held);
        assert_eq!(held.last_error, reason);
        assert_eq!(held.attempts, 0);
        assert!(held.body_text.contains("sf_secret"), "the demo shows it");
        let taken = registry.take_due_mail(30).unwrap().unwrap();
        assert_eq!((taken.id, taken.attempt), (id, 1));
        assert!(registry.mark_mail_sent(id, 1, 40).unwrap());
    }

    #[test]
    fn the_outbox_lists_newest_first_by_page() {
        let (_dir, registry) = registry();
        let ids: Vec<i64> = (0..5)
            .map(|i| {
                registry
                    .queue_mail(&mail(&format!("p{i}@example.org")), i * 10)
                    .unwrap()
            })
            .collect();
        let (first, total) = registry.outbox_page(2, 0).unwrap();
        assert_eq!(total, 5);
        assert_eq!(
            first.iter().map(|m| m.id).collect::<Vec<_>>(),
            [ids[4], ids[3]]
        );
        let (last, _) = registry.outbox_page(2, 4).unwrap();
        assert_eq!(last.iter().map(|m| m.id).collect::<Vec<_>>(), [ids[0]]);
        assert_eq!(last[0].to_address, "p0@example.org");
        assert_eq!(last[0].kind, "owner_access");
        assert!(registry.outbox_mail(9_999).unwrap().is_none());
    }
}
