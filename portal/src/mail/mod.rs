//! Mail to people (C1, C2): what the portal writes ([`compose`]) and the deliverer that
//! sends the registry's outbox over SMTP ([`MailDeliverer`]).
//!
//! The deliverer lives in the portal, not in the binary: the portal writes the mails and
//! shows the outbox to the platform administrator, so the states it records (and their
//! wordings) are the portal's; it needs only the registry and tokio, and SMTP (lettre,
//! rustls with ring) brings neither quinn nor DataFusion, so the crate walls hold. The
//! binary starts it beside the portal (`serve`, `demo`) and stops it after everything
//! that queues mail.
//!
//! The deliverer waits on the registry's signal (a mail was queued) or, at the latest,
//! until the next mail falls due (a retry's backoff) or a poll interval passes (mail
//! queued by another process). With SMTP it claims due mails one at a time, sends each,
//! and marks it sent, or records the failure (a 5xx refusal ends it, anything else is
//! retried with backoff). Without SMTP it marks queued mails held, "not delivered: no
//! SMTP server configured", and the platform administrator's page shows them.

pub mod compose;
mod smtp;

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use sunfleet_engine::registry::{OutgoingMail, Registry};
use tokio::sync::watch;

pub use smtp::{SmtpSecurity, SmtpSettings};

use crate::session::blocking;
use smtp::Outcome;

/// Why a mail stays in the outbox on a server without SMTP.
pub const NO_SMTP: &str = "not delivered: no SMTP server configured";

/// The sender when none is configured.
pub const DEFAULT_FROM: &str = "Sunfleet <sunfleet@localhost>";

/// A mail delivery configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("--smtp-url {url}: {reason}")]
    SmtpUrl { url: String, reason: String },
    #[error("--mail-from {from:?}: {reason}")]
    From { from: String, reason: String },
    #[error("SMTP through {server}: {reason}")]
    Transport { server: String, reason: String },
}

/// How mail leaves.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `None`: mail stays in the outbox (held).
    pub smtp: Option<SmtpSettings>,
    /// The sender: `Name <address>` or an address.
    pub from: String,
    /// Longest one delivery may take (well below the registry's claim lease).
    pub send_timeout: Duration,
    /// Longest wait between two looks at the outbox.
    pub poll: Duration,
}

impl MailConfig {
    pub fn new(smtp: Option<SmtpSettings>, from: Option<String>) -> Self {
        Self {
            smtp,
            from: from.unwrap_or_else(|| DEFAULT_FROM.to_owned()),
            send_timeout: Duration::from_secs(60),
            poll: Duration::from_secs(30),
        }
    }

    /// The sender as a mailbox, or why it is not one.
    pub fn sender(&self) -> Result<Mailbox, MailError> {
        self.from.parse().map_err(|e| MailError::From {
            from: self.from.clone(),
            reason: format!("{e}: write an address, or Name <address>"),
        })
    }

    /// Where mail goes, in words (the platform administrator's page), without a password.
    pub fn describe(&self) -> Option<String> {
        self.smtp
            .as_ref()
            .map(|smtp| format!("{smtp}, from {}", self.from))
    }
}

/// The running deliverer.
pub struct MailDeliverer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MailDeliverer {
    /// Checks the sender and the SMTP settings, then delivers until [`Self::shutdown`].
    pub fn start(registry: Arc<Registry>, config: MailConfig) -> Result<Self, MailError> {
        let from = config.sender()?;
        let smtp = match &config.smtp {
            Some(settings) => {
                // Each attempt's commands get a share of the whole send's time.
                let transport = settings.transport(config.send_timeout / 2)?;
                Some(Smtp { transport, from })
            }
            None => None,
        };
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(deliver(registry, smtp, config, stopped));
        Ok(Self { stop, task })
    }

    /// Lets the mail being sent finish (bounded by the send timeout), then stops. Mail
    /// still queued waits in the outbox for the next start.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// How long to wait after a registry error before trying again.
const AFTER_ERROR: Duration = Duration::from_secs(5);

async fn deliver(
    registry: Arc<Registry>,
    smtp: Option<Smtp>,
    config: MailConfig,
    mut stop: watch::Receiver<bool>,
) {
    let signal = registry.mail_signal();
    match &config.smtp {
        Some(settings) => {
            tracing::info!(server = %settings, from = %config.from, "mail delivery by SMTP")
        }
        None => tracing::info!("no SMTP server configured: mail stays in the outbox"),
    }
    loop {
        let wait = match &smtp {
            Some(smtp) => send_due(&registry, smtp, &config, &stop).await,
            None => hold(&registry, config.poll).await,
        };
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = signal.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// No SMTP: every waiting mail is marked held.
async fn hold(registry: &Arc<Registry>, poll: Duration) -> Duration {
    let registry = Arc::clone(registry);
    let held =
        blocking(move || Ok(registry.hold_mails(NO_SMTP, sunfleet_engine::time::now_micros())?))
            .await;
    match held {
        Ok(0) => poll,
        Ok(count) => {
            tracing::info!(count, "{NO_SMTP}");
            poll
        }
        Err(error) => {
            tracing::error!(%error, "the outbox could not be read");
            AFTER_ERROR
        }
    }
}

/// Sends every due mail, one at a time; returns how long to wait for the next.
async fn send_due(
    registry: &Arc<Registry>,
    smtp: &Smtp,
    config: &MailConfig,
    stop: &watch::Receiver<bool>,
) -> Duration {
    while !*stop.borrow() {
        let taking = Arc::clone(registry);
        let taken =
            blocking(move || Ok(taking.take_due_mail(sunfleet_engine::time::now_micros())?)).await;
        let mail = match taken {
            Ok(Some(mail)) => mail,
            Ok(None) => break,
            Err(error) => {
                tracing::error!(%error, "the outbox could not be read");
                return AFTER_ERROR;
            }
        };
        let outcome = smtp::send(&smtp.transport, &smtp.from, &mail, config.send_timeout).await;
        if let Err(error) = record(registry, &mail, outcome).await {
            // The mail stays claimed; it is due again once its lease runs out.
            tracing::error!(mail = mail.id, %error, "the outcome of a mail could not be saved");
            return AFTER_ERROR;
        }
    }
    let reading = Arc::clone(registry);
    match blocking(move || Ok(reading.next_mail_due_us()?)).await {
        Ok(Some(due)) => {
            let wait_us = (due - sunfleet_engine::time::now_micros()).max(0);
            Duration::from_micros(wait_us.unsigned_abs()).min(config.poll)
        }
        Ok(None) => config.poll,
        Err(error) => {
            tracing::error!(%error, "the outbox could not be read");
            AFTER_ERROR
        }
    }
}

async fn record(
    registry: &Arc<Registry>,
    mail: &OutgoingMail,
    outcome: Outcome,
) -> Result<(), crate::PortalError> {
    let registry = Arc::clone(registry);
    let (id, attempt, to) = (mail.id, mail.attempt, mail.to_address.clone());
    blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        match outcome {
            Outcome::Sent => {
                if registry.mark_mail_sent(id, attempt, now)? {
                    tracing::info!(mail = id, %to, attempt, "mail sent");
                }
            }
            Outcome::Failed { error, permanent } => {
                let state = registry.record_mail_failure(id, attempt, &error, permanent, now)?;
                tracing::warn!(mail = id, %to, attempt, permanent, ?state, %error, "mail not sent");
            }
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use sunfleet_engine::registry::{MailState, NewMail};
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// A scripted SMTP server: answers `rcpt` to RCPT TO and keeps each message accepted.
    struct FakeSmtp {
        port: u16,
        received: Arc<Mutex<Vec<String>>>,
    }

    async fn fake_smtp(rcpt: &'static str) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&received);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let keep = Arc::clone(&keep);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read).lines();
                    write.write_all(b"220 fake ESMTP\r\n").await.unwrap();
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(message) = data.as_mut() {
                            if line == "." {
                                keep.lock().unwrap().push(data.take().unwrap());
                                write.write_all(b"250 queued\r\n").await.unwrap();
                            } else {
                                message.push_str(&line);
                                message.push('\n');
                            }
                            continue;
                        }
                        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                        let answer = match verb.as_str() {
                            "EHLO" | "HELO" => "250 fake\r\n",
                            "MAIL" => "250 ok\r\n",
                            "RCPT" => rcpt,
                            "DATA" => {
                                data = Some(String::new());
                                "354 go on\r\n"
                            }
                            "QUIT" => {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => "250 ok\r\n",
                        };
                        if write.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        FakeSmtp { port, received }
    }

    fn registry() -> (tempfile::TempDir, Arc<Registry>) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::open(dir.path().join("registry.sqlite3")).unwrap();
        (dir, Arc::new(registry))
    }

    fn mail(to: &str) -> NewMail {
        NewMail {
            to_address: to.to_owned(),
            subject: "Vos coordonnées ont été mises à jour".to_owned(),
            body_text: "Bonjour,\nvoici le lien : http://x/welcome?token=sfi_1\n".to_owned(),
            kind: "owner_access",
            language: "fr".to_owned(),
            system_id: None,
            secret: Some("http://x/welcome?token=sfi_1".to_owned()),
        }
    }

    fn config(port: Option<u16>) -> MailConfig {
        let mut config = MailConfig::new(
            port.map(|port| SmtpSettings::parse(&format!("smtp://127.0.0.1:{port}")).unwrap()),
            Some("Sunfleet <no-reply@sunfleet.example>".to_owned()),
        );
        config.send_timeout = Duration::from_secs(10);
        // Long: the tests prove the deliverer is woken, not that it polls.
        config.poll = Duration::from_secs(3600);
        config
    }

    /// Waits until mail `id` is in `state`.
    async fn until(
        registry: &Registry,
        id: i64,
        state: MailState,
    ) -> sunfleet_engine::registry::MailRecord {
        for _ in 0..200 {
            let mail = registry.outbox_mail(id).unwrap().unwrap();
            if mail.state == state {
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("mail {id} never became {state:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_mail_is_sent_at_once_and_marked() {
        let server = fake_smtp("250 ok\r\n").await;
        let (_dir, registry) = registry();
        let deliverer =
            MailDeliverer::start(Arc::clone(&registry), config(Some(server.port))).unwrap();
        let id = registry
            .queue_mail(
                &mail("camille@example.org"),
                sunfleet_engine::time::now_micros(),
            )
            .unwrap();
        let sent = until(&registry, id, MailState::Sent).await;
        assert_eq!(sent.attempts, 1);
        assert!(
            !sent.body_text.contains("sfi_1"),
            "the link leaves the stored body"
        );
        let received = server.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        assert!(
            received[0].contains("To: camille@example.org"),
            "{}",
            received[0]
        );
        assert!(
            received[0].contains(&format!("Message-ID: <outbox-{id}-")),
            "{}",
            received[0]
        );
        deliverer.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn refusals_are_retried_or_given_up_and_nothing_is_sent_twice() {
        let (_dir, registry) = registry();
        // A temporary refusal: queued again with its error, later.
        let busy = fake_smtp("451 try again later\r\n").await;
        let deliverer =
            MailDeliverer::start(Arc::clone(&registry), config(Some(busy.port))).unwrap();
        let now = sunfleet_engine::time::now_micros();
        let id = registry.queue_mail(&mail("busy@example.org"), now).unwrap();
        let mut retried = None;
        for _ in 0..200 {
            let record = registry.outbox_mail(id).unwrap().unwrap();
            if record.attempts == 1 && record.state == MailState::Queued {
                retried = Some(record);
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let retried = retried.expect("the failure is recorded");
        assert!(retried.last_error.contains("451"), "{}", retried.last_error);
        assert!(retried.next_attempt_us >= now + 30_000_000);
        assert!(busy.received.lock().unwrap().is_empty());
        deliverer.shutdown().await;

        // A permanent refusal: failed, not retried.
        let refusing = fake_smtp("550 no such mailbox\r\n").await;
        let deliverer =
            MailDeliverer::start(Arc::clone(&registry), config(Some(refusing.port))).unwrap();
        let id = registry
            .queue_mail(&mail("nobody@example.org"), now)
            .unwrap();
        let failed = until(&registry, id, MailState::Failed).await;
        assert_eq!(failed.attempts, 1);
        assert!(failed.last_error.contains("550"), "{}", failed.last_error);
        deliverer.shutdown().await;

        // Nothing listening: a connection failure is temporary.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let deliverer = MailDeliverer::start(Arc::clone(&registry), config(Some(port))).unwrap();
        let id = registry.queue_mail(&mail("down@example.org"), now).unwrap();
        for _ in 0..200 {
            if registry.outbox_mail(id).unwrap().unwrap().attempts == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let waiting = until(&registry, id, MailState::Queued).await;
        assert_eq!(waiting.attempts, 1);
        assert!(!waiting.last_error.is_empty());
        deliverer.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_smtp_mail_is_held_then_sent_by_a_server_with_smtp() {
        let (_dir, registry) = registry();
        let deliverer = MailDeliverer::start(Arc::clone(&registry), config(None)).unwrap();
        let id = registry
            .queue_mail(
                &mail("held@example.org"),
                sunfleet_engine::time::now_micros(),
            )
            .unwrap();
        let held = until(&registry, id, MailState::Held).await;
        assert_eq!(held.last_error, NO_SMTP);
        assert_eq!(held.attempts, 0);
        deliverer.shutdown().await;

        let server = fake_smtp("250 ok\r\n").await;
        let deliverer =
            MailDeliverer::start(Arc::clone(&registry), config(Some(server.port))).unwrap();
        until(&registry, id, MailState::Sent).await;
        assert_eq!(server.received.lock().unwrap().len(), 1);
        deliverer.shutdown().await;
    }

    #[test]
    fn a_bad_sender_is_refused_at_start() {
        let config = MailConfig::new(None, Some("not an address".to_owned()));
        let error = config.sender().unwrap_err().to_string();
        assert!(error.contains("--mail-from"), "{error}");
        assert_eq!(MailConfig::new(None, None).describe(), None);
        let smtp = SmtpSettings::parse("smtp://127.0.0.1:2525").ok();
        assert_eq!(
            MailConfig::new(smtp, None).describe().as_deref(),
            Some("smtp://127.0.0.1:2525, from Sunfleet <sunfleet@localhost>")
        );
    }
}
