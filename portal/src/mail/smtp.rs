//! The SMTP side of delivery: the server's address as people write it (`--smtp-url`), and
//! one outbox mail as an RFC 5322 message sent through it.
//!
//! lettre does the protocol (EHLO, STARTTLS, AUTH, dot-stuffing, 8BITMIME or quoted-
//! printable bodies, encoded headers): a hand-written client would have to get each of
//! these right for French bodies and subjects, and TLS too, for no gain. Its TLS is
//! rustls with ring like the rest of the workspace, trusting the system's roots.

use std::fmt;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sunfleet_engine::registry::OutgoingMail;

use super::MailError;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// None (a relay on the same host or network): `smtp://`.
    Plain,
    /// Plain, then STARTTLS, required: `starttls://` or `smtp://…?tls=required`.
    StartTls,
    /// TLS from the first byte: `smtps://`.
    Tls,
}

/// Where and how to send mail, from `--smtp-url`:
/// `smtp://host[:port]` (port 25), `starttls://host[:port]` (587), `smtps://host[:port]`
/// (465), with `user:password@` before the host to sign in (percent-encoded).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// User name and password.
    pub credentials: Option<(String, String)>,
}

impl SmtpSettings {
    pub fn parse(text: &str) -> Result<Self, MailError> {
        let refuse = |reason: &str| MailError::SmtpUrl {
            url: redact(text),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text.trim()).map_err(|e| refuse(&e.to_string()))?;
        let tls_query: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let security = match (url.scheme(), tls_query.as_slice()) {
            ("smtp", []) => SmtpSecurity::Plain,
            ("smtp", [(key, value)]) if key == "tls" && value == "required" => {
                SmtpSecurity::StartTls
            }
            ("starttls" | "smtp+starttls", []) => SmtpSecurity::StartTls,
            ("smtps", []) => SmtpSecurity::Tls,
            ("smtp" | "starttls" | "smtp+starttls" | "smtps", _) => {
                return Err(refuse(
                    "the only option is ?tls=required (STARTTLS) after smtp://",
                ));
            }
            (scheme, _) => {
                return Err(refuse(&format!(
                    "unknown scheme {scheme:?}: use smtp:// (no encryption), starttls:// or smtps://"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| refuse("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err(refuse(
                "nothing may follow the host and port (except ?tls=required)",
            ));
        }
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::Plain => 25,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Tls => 465,
        });
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) if !user.is_empty() => Some((
                percent_decode(user).ok_or_else(|| refuse("the user name is not valid UTF-8"))?,
                percent_decode(password)
                    .ok_or_else(|| refuse("the password is not valid UTF-8"))?,
            )),
            _ => return Err(refuse("give both a user name and a password, or neither")),
        };
        if credentials.is_some() && security == SmtpSecurity::Plain && !is_loopback(&host) {
            return Err(refuse(
                "a password is sent only over TLS (starttls:// or smtps://), or to this machine",
            ));
        }
        Ok(Self {
            host,
            port,
            security,
            credentials,
        })
    }

    /// A transport sending through this server; each delivery opens its own connection.
    pub(super) fn transport(
        &self,
        command_timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
        let failed = |e: lettre::transport::smtp::Error| MailError::Transport {
            server: self.to_string(),
            reason: e.to_string(),
        };
        let builder = match self.security {
            SmtpSecurity::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&self.host).map_err(failed)?
            }
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&self.host).map_err(failed)?
            }
        };
        let mut builder = builder.port(self.port).timeout(Some(command_timeout));
        if let Some((user, password)) = &self.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(builder.build())
    }
}

/// The URL without its password (for logs and pages).
impl fmt::Display for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            SmtpSecurity::Plain => "smtp",
            SmtpSecurity::StartTls => "starttls",
            SmtpSecurity::Tls => "smtps",
        };
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}:***@"),
            None => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{user}{host}:{}", self.port)
    }
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SmtpSettings({self})")
    }
}

/// `text` with the password of a `user:password@` part hidden.
fn redact(text: &str) -> String {
    match url::Url::parse(text.trim()) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        Ok(_) => text.trim().to_owned(),
        // Unparsable: whatever sits between "//" and "@" may be a password.
        Err(_) => match (text.find("//"), text.rfind('@')) {
            (Some(start), Some(end)) if start + 2 <= end => {
                format!("{}***{}", &text[..start + 2], &text[end..])
            }
            _ => text.to_owned(),
        },
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `%XX` sequences decoded; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = |i: usize| {
            bytes
                .get(i)
                .and_then(|b| char::from(*b).to_digit(16))
                .and_then(|d| u8::try_from(d).ok())
        };
        match (bytes[index], hex(index + 1), hex(index + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                index += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Sent,
    /// `permanent`: the server refused for good (5xx), or the mail cannot be sent at all.
    Failed {
        error: String,
        permanent: bool,
    },
}

/// Sends `mail` from `from`. The `Message-ID` is the mail's own (outbox id and creation
/// time), so a mail sent again after a crash is recognisably the same.
pub(super) async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    mail: &OutgoingMail,
    timeout: Duration,
) -> Outcome {
    let message = match message(from, mail) {
        Ok(message) => message,
        Err(error) => {
            return Outcome::Failed {
                error,
                permanent: true,
            };
        }
    };
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Ok(Ok(_)) => Outcome::Sent,
        Ok(Err(error)) => Outcome::Failed {
            permanent: error.is_permanent(),
            error: describe(&error),
        },
        Err(_) => Outcome::Failed {
            error: format!("no answer within {} s", timeout.as_secs()),
            permanent: false,
        },
    }
}

/// The error with its causes (lettre's own message says little: "Connection error").
fn describe(error: &lettre::transport::smtp::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(super) fn message(from: &Mailbox, mail: &OutgoingMail) -> Result<Message, String> {
    let to: Mailbox = mail
        .to_address
        .parse()
        .map_err(|e| format!("the address {:?} cannot receive mail: {e}", mail.to_address))?;
    let domain = from.email.domain().to_owned();
    let language = HeaderValue::new(
        HeaderName::new_from_ascii_str("Content-Language"),
        if mail.language == "fr" { "fr" } else { "en" }.to_owned(),
    );
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .message_id(Some(format!(
            "<outbox-{}-{}@{domain}>",
            mail.id, mail.created_us
        )))
        .header(ContentType::TEXT_PLAIN)
        .raw_header(language)
        .body(mail.body_text.clone())
        .map_err(|e| format!("the message cannot be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_read_with_their_defaults() {
        let plain = SmtpSettings::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.security),
            ("127.0.0.1", 2525, SmtpSecurity::Plain)
        );
        assert_eq!(plain.credentials, None);
        assert_eq!(SmtpSettings::parse("smtp://relay.lan").unwrap().port, 25);
        let starttls = SmtpSettings::parse("starttls://mail.example.com").unwrap();
        assert_eq!(
            (starttls.port, starttls.security),
            (587, SmtpSecurity::StartTls)
        );
        assert_eq!(
            SmtpSettings::parse("smtp://mail.example.com:2587?tls=required")
                .unwrap()
                .security,
            SmtpSecurity::StartTls
        );
        let tls =
            SmtpSettings::parse("smtps://bot%40example.com:p%C3%A4ss%3Aword@mail.example.com")
                .unwrap();
        assert_eq!((tls.port, tls.security), (465, SmtpSecurity::Tls));
        assert_eq!(
            tls.credentials,
            Some(("bot@example.com".to_owned(), "päss:word".to_owned()))
        );
        // Shown without the password.
        assert_eq!(
            tls.to_string(),
            "smtps://bot@example.com:***@mail.example.com:465"
        );
        assert!(!format!("{tls:?}").contains("word"));
        assert_eq!(
            SmtpSettings::parse("smtp://[::1]:2525")
                .unwrap()
                .to_string(),
            "smtp://[::1]:2525"
        );
    }

    #[test]
    fn bad_smtp_urls_say_why_without_the_password() {
        for (url, expected) in [
            ("http://mail.example.com", "unknown scheme"),
            ("smtp://", "no host"),
            ("smtp://mail.example.com?tls=maybe", "?tls=required"),
            ("smtp://mail.example.com/path", "nothing may follow"),
            (
                "smtps://user@mail.example.com",
                "both a user name and a password",
            ),
            (
                "smtp://user:secret@mail.example.com",
                "a password is sent only over TLS",
            ),
            ("not a url", "relative URL"),
        ] {
            let error = SmtpSettings::parse(url).unwrap_err().to_string();
            assert!(error.contains(expected), "{url}: {error}");
            assert!(!error.contains("secret"), "{url}: {error}");
        }
        // A password to this machine without TLS is fine (a local relay).
        assert!(SmtpSettings::parse("smtp://user:secret@localhost:2525").is_ok());
    }

    #[test]
    fn a_mail_becomes_a_message_with_its_own_id_and_language() {
        let from: Mailbox = "Sunfleet <no-reply@sunfleet.example>".parse().unwrap();
        let mail = OutgoingMail {
            id: 7,
            created_us: 1_700_000_000_000_000,
            to_address: "camille@example.org".into(),
            subject: "Votre accès à « Maison Martin »".into(),
            body_text: "Bonjour Camille,\nvoici votre lien.\n".into(),
            language: "fr".into(),
            attempt: 1,
        };
        let text = String::from_utf8(message(&from, &mail).unwrap().formatted()).unwrap();
        assert!(
            text.contains("Message-ID: <outbox-7-1700000000000000@sunfleet.example>"),
            "{text}"
        );
        assert!(text.contains("Content-Language: fr"), "{text}");
        assert!(text.contains("To: camille@example.org"), "{text}");
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8"),
            "{text}"
        );
        let bad = OutgoingMail {
            to_address: "not an address".into(),
            ..mail
        };
        assert!(
            message(&from, &bad)
                .unwrap_err()
                .contains("cannot receive mail")
        );
    }
}
