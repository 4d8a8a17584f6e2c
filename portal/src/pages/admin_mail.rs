//! The platform administrator's mail page (`/admin/mail`): the registry's outbox newest
//! first, page by page, each mail's state (waiting, retrying with its last error, sent,
//! given up, not delivered for want of SMTP), and one mail's body on its own page. Nobody
//! else may see it: the bodies hold owners' details and, until delivered, their one-time
//! links.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use sunfleet_engine::registry::{MailRecord, MailState};

use super::{Chrome, render};
use crate::access::{Need, authorize};
use crate::i18n::Lang;
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// Mails per page.
pub const PAGE_SIZE: u32 = 50;

/// What a mail is, by its kind: code, label.
pub const KINDS: [(&str, &str); 3] = [
    ("owner_access", "Owner's access (welcome)"),
    ("owner_details_changed", "Owner's details changed"),
    ("owner_operational", "System operational"),
];

/// The state wordings (the ones [`state_text`] fills have a `{}`).
pub const STATE_WORDINGS: [&str; 5] = [
    "Waiting to be sent",
    "Being sent",
    "Sent {}",
    "{} failed attempt(s); next try {}",
    "Given up after {} attempt(s)",
];

/// Held mail's state (it also explains itself on the page).
pub const NOT_DELIVERED: &str = "Not delivered: no SMTP server configured";

fn kind_label(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(code, _)| *code == kind)
        .map_or(kind, |(_, label)| label)
}

/// A mail's state in words, and the class the page marks it with.
pub fn state_text(mail: &MailRecord, lang: Lang) -> (&'static str, String) {
    match mail.state {
        MailState::Queued if mail.attempts == 0 => ("queued", lang.t(STATE_WORDINGS[0]).into()),
        MailState::Queued => (
            "retrying",
            lang.fill(
                STATE_WORDINGS[3],
                &[&mail.attempts, &lang.time(mail.next_attempt_us)],
            ),
        ),
        MailState::Sending => ("sending", lang.t(STATE_WORDINGS[1]).into()),
        MailState::Sent => (
            "sent",
            lang.fill(STATE_WORDINGS[2], &[&lang.time(mail.sent_us.unwrap_or(0))]),
        ),
        MailState::Failed => ("failed", lang.fill(STATE_WORDINGS[4], &[&mail.attempts])),
        MailState::Held => ("held", lang.t(NOT_DELIVERED).into()),
    }
}

pub struct MailRow {
    pub id: i64,
    pub created: String,
    pub to_address: String,
    pub subject: String,
    pub kind: String,
    pub state_class: &'static str,
    pub state: String,
    /// The last failure, when the state does not say it already.
    pub last_error: String,
}

fn row(mail: &MailRecord, lang: Lang) -> MailRow {
    let (state_class, state) = state_text(mail, lang);
    MailRow {
        id: mail.id,
        created: lang.time(mail.created_us),
        to_address: mail.to_address.clone(),
        subject: mail.subject.clone(),
        kind: lang.t(kind_label(&mail.kind)).to_owned(),
        state_class,
        state,
        last_error: if mail.state == MailState::Held {
            String::new()
        } else {
            mail.last_error.clone()
        },
    }
}

#[derive(Template)]
#[template(path = "admin_mail.html")]
struct MailListPage {
    chrome: Chrome,
    /// Where mail goes; `None`: no SMTP server.
    delivery: Option<String>,
    mails: Vec<MailRow>,
    total: u64,
    page: u64,
    pages: u64,
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    page: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::PlatformAdmin)?;
    let page = match query.page.as_deref().map(str::trim) {
        None | Some("") => 1,
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| PortalError::BadRequest {
                message: format!("page {text:?}: a page number from 1"),
            })?,
    };
    let registry = Arc::clone(state.registry());
    let offset = (page - 1).saturating_mul(u64::from(PAGE_SIZE));
    let (mails, total) = blocking(move || Ok(registry.outbox_page(PAGE_SIZE, offset)?)).await?;
    let lang = principal.lang();
    render(
        "admin mail",
        &MailListPage {
            chrome: Chrome::new(&principal, "Mail", "mail"),
            delivery: state.shared().config.mail_delivery.clone(),
            mails: mails.iter().map(|m| row(m, lang)).collect(),
            total,
            page,
            pages: total.div_ceil(u64::from(PAGE_SIZE)).max(1),
        },
    )
}

#[derive(Template)]
#[template(path = "admin_mail_message.html")]
struct MailPage {
    chrome: Chrome,
    mail: MailRow,
    language: &'static str,
    system_id: Option<i64>,
    attempts: u32,
    body: String,
}

pub async fn message(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::PlatformAdmin)?;
    let registry = Arc::clone(state.registry());
    let mail = blocking(move || Ok(registry.outbox_mail(id)?))
        .await?
        .ok_or_else(|| PortalError::NotFound {
            what: format!("mail {id}"),
        })?;
    let lang = principal.lang();
    let mut chrome = Chrome::new(&principal, "Mail", "mail");
    // A subject is data, not a wording to translate.
    chrome.title = mail.subject.clone();
    render(
        "admin mail message",
        &MailPage {
            chrome,
            language: Lang::from_code(&mail.language).name(),
            system_id: mail.system_id,
            attempts: mail.attempts,
            body: mail.body_text.clone(),
            mail: row(&mail, lang),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_kind_has_french() {
        let mut labels: Vec<&str> = STATE_WORDINGS.to_vec();
        labels.push(NOT_DELIVERED);
        labels.extend(KINDS.iter().map(|(_, label)| *label));
        let missing: Vec<_> = labels
            .into_iter()
            .filter(|l| !crate::i18n::has_french(l))
            .collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }

    #[test]
    fn states_read_as_what_happened() {
        let mail = MailRecord {
            id: 1,
            created_us: 0,
            to_address: "a@example.org".into(),
            subject: "s".into(),
            body_text: "b".into(),
            kind: "owner_access".into(),
            language: "en".into(),
            system_id: None,
            state: MailState::Queued,
            sent_us: None,
            attempts: 2,
            next_attempt_us: 1_795_939_320_000_000,
            last_error: "451 busy".into(),
        };
        assert_eq!(
            state_text(&mail, Lang::En),
            (
                "retrying",
                "2 failed attempt(s); next try 2026-11-29 08:02 UTC".to_owned()
            )
        );
        let held = MailRecord {
            state: MailState::Held,
            attempts: 0,
            ..mail.clone()
        };
        assert_eq!(state_text(&held, Lang::En).1, NOT_DELIVERED);
        assert_eq!(row(&held, Lang::En).last_error, "");
        let sent = MailRecord {
            state: MailState::Sent,
            sent_us: Some(1_795_939_320_000_000),
            ..mail
        };
        assert_eq!(
            state_text(&sent, Lang::Fr).1,
            "Envoyé le 29/11/2026 08:02 UTC"
        );
    }
}
