//! The mails the portal writes to owners, in the owner's language: the welcome mail with
//! the link that sets their password (C1) and the notice of changed details (C2). Bodies
//! are text templates (`templates/mail/`), so their wordings are checked for French like
//! the pages'. The registry calls these inside the transaction that makes the change.

use askama::Template;
use sunfleet_engine::registry::{CompanyContact, NewMail, OwnerAccess, OwnerChange};

use crate::i18n::Lang;

/// The welcome mail's subject (the system's name fills it).
pub const ACCESS_SUBJECT: &str = "Your access to your solar system {}";
/// The notice's subject.
pub const CHANGE_SUBJECT: &str = "Your owner details for {} were updated";

/// The owner's fields as the notice names them.
pub const FIELD_LABELS: [(&str, &str); 5] = [
    ("given_name", "Given name"),
    ("family_name", "Family name"),
    ("email", "E-mail"),
    ("phone", "Phone"),
    ("language", "Language"),
];

#[derive(Template)]
#[template(path = "mail/owner_access.txt")]
struct AccessText<'a> {
    lang: Lang,
    /// `:` as the language writes it before a value.
    colon: &'static str,
    system_name: &'a str,
    link: &'a str,
    email: &'a str,
    sign_in: String,
    installer: String,
}

#[derive(Template)]
#[template(path = "mail/owner_changed.txt")]
struct ChangeText<'a> {
    lang: Lang,
    colon: &'static str,
    system_name: &'a str,
    given_name: &'a str,
    family_name: &'a str,
    email: &'a str,
    phone: &'a str,
    language: &'a str,
    changed: String,
    moved: bool,
    /// This copy goes to the address the owner had before.
    to_previous: bool,
    previous_email: &'a str,
    installer: String,
}

/// French puts a (non-breaking) space before a colon.
fn colon(lang: Lang) -> &'static str {
    match lang {
        Lang::En => ":",
        Lang::Fr => "\u{a0}:",
    }
}

/// The installer on one line: name, city, phone, e-mail (those known).
fn contact_line(installer: &CompanyContact) -> String {
    [
        installer.name.as_str(),
        installer.city.as_str(),
        installer.phone.as_str(),
        installer.email.as_str(),
    ]
    .into_iter()
    .filter(|part| !part.is_empty())
    .collect::<Vec<_>>()
    .join(" · ")
}

/// The welcome mail (C1): the one-time link at `base` (the portal's public address), to
/// the owner, in their language. The link is the mail's secret.
pub fn owner_access_mail(
    access: &OwnerAccess<'_>,
    base: &str,
    installer: &CompanyContact,
) -> Result<NewMail, String> {
    let lang = Lang::from_code(&access.owner.language);
    let link = format!("{base}/welcome?token={}", access.token);
    let body_text = AccessText {
        lang,
        colon: colon(lang),
        system_name: access.system_name,
        link: &link,
        email: &access.owner.email,
        sign_in: format!("{base}/signin"),
        installer: contact_line(installer),
    }
    .render()
    .map_err(|e| format!("the welcome mail: {e}"))?;
    Ok(NewMail {
        to_address: access.owner.email.clone(),
        subject: lang.fill(ACCESS_SUBJECT, &[&access.system_name]),
        body_text,
        kind: "owner_access",
        language: lang.code().to_owned(),
        system_id: Some(access.system_id),
        secret: Some(link),
    })
}

/// The notice of changed details (C2) for the address `to`, in the owner's (new)
/// language.
pub fn owner_change_mail(
    change: &OwnerChange,
    to: &str,
    installer: &CompanyContact,
) -> Result<NewMail, String> {
    let after = &change.after;
    let lang = Lang::from_code(&after.language);
    let changed = FIELD_LABELS
        .iter()
        .filter(|(field, _)| change.changed.contains(field))
        .map(|(_, label)| lang.t(label))
        .collect::<Vec<_>>()
        .join(", ");
    let body_text = ChangeText {
        lang,
        colon: colon(lang),
        system_name: &change.system_name,
        given_name: &after.given_name,
        family_name: &after.family_name,
        email: &after.email,
        phone: &after.phone,
        language: lang.name(),
        changed,
        moved: change.email_changed(),
        to_previous: change.email_changed() && to.eq_ignore_ascii_case(&change.before.email),
        previous_email: &change.before.email,
        installer: contact_line(installer),
    }
    .render()
    .map_err(|e| format!("the notice of changed details: {e}"))?;
    Ok(NewMail {
        to_address: to.to_owned(),
        subject: lang.fill(CHANGE_SUBJECT, &[&change.system_name]),
        body_text,
        kind: "owner_details_changed",
        language: lang.code().to_owned(),
        system_id: Some(change.system_id),
        secret: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sunfleet_engine::registry::OwnerInfo;

    fn owner(language: &str, email: &str) -> OwnerInfo {
        OwnerInfo {
            id: 1,
            given_name: "Camille".into(),
            family_name: "Martin".into(),
            email: email.into(),
            phone: "01 02 03 04 05".into(),
            language: language.into(),
        }
    }

    fn installer() -> CompanyContact {
        CompanyContact {
            name: "Soleil SARL".into(),
            city: "Lyon".into(),
            country: "FR".into(),
            phone: String::new(),
            email: "contact@soleil.example".into(),
        }
    }

    #[test]
    fn the_welcome_mail_is_written_in_the_owners_language_with_the_link() {
        let french = owner("fr", "camille@example.org");
        let access = OwnerAccess {
            system_id: 4,
            system_name: "Maison Martin",
            owner: &french,
            token: "sfi_abc",
        };
        let mail = owner_access_mail(&access, "https://portal.example", &installer()).unwrap();
        assert_eq!(
            mail.subject,
            "Votre accès à votre installation solaire Maison Martin"
        );
        assert_eq!(mail.language, "fr");
        assert_eq!(
            mail.secret.as_deref(),
            Some("https://portal.example/welcome?token=sfi_abc")
        );
        assert!(mail.body_text.contains("Bonjour,"), "{}", mail.body_text);
        assert!(
            mail.body_text
                .contains("    https://portal.example/welcome?token=sfi_abc\n")
        );
        assert!(mail.body_text.contains("https://portal.example/signin"));
        assert!(
            mail.body_text
                .contains("Soleil SARL · Lyon · contact@soleil.example")
        );
        let english = owner("en", "camille@example.org");
        let access = OwnerAccess {
            owner: &english,
            ..access
        };
        let mail = owner_access_mail(&access, "http://127.0.0.1:8080", &installer()).unwrap();
        assert_eq!(
            mail.subject,
            "Your access to your solar system Maison Martin"
        );
        assert!(mail.body_text.starts_with("Hello,\n"), "{}", mail.body_text);
    }

    #[test]
    fn the_notice_tells_both_addresses_what_changed() {
        let change = OwnerChange {
            system_id: 4,
            system_name: "Maison Martin".into(),
            before: owner("en", "camille@example.org"),
            after: OwnerInfo {
                phone: "06 00 00 00 00".into(),
                ..owner("fr", "camille.durand@example.org")
            },
            changed: vec!["email", "phone", "language"],
            notified: vec![
                "camille.durand@example.org".into(),
                "camille@example.org".into(),
            ],
        };
        let new = owner_change_mail(&change, "camille.durand@example.org", &installer()).unwrap();
        assert_eq!(new.to_address, "camille.durand@example.org");
        assert_eq!(
            new.subject,
            "Vos coordonnées de propriétaire pour Maison Martin ont été mises à jour"
        );
        assert!(
            new.body_text.contains("06 00 00 00 00"),
            "{}",
            new.body_text
        );
        assert!(new.body_text.contains("Français"), "{}", new.body_text);
        assert!(
            new.body_text.contains("camille@example.org"),
            "{}",
            new.body_text
        );
        let old = owner_change_mail(&change, "camille@example.org", &installer()).unwrap();
        assert!(old.body_text.contains("camille.durand@example.org"));
        assert_ne!(old.body_text, new.body_text);
        // Only the phone: no word about addresses.
        let phone_only = OwnerChange {
            before: owner("fr", "camille.durand@example.org"),
            changed: vec!["phone"],
            notified: vec!["camille.durand@example.org".into()],
            ..change
        };
        let mail =
            owner_change_mail(&phone_only, "camille.durand@example.org", &installer()).unwrap();
        assert!(
            !mail.body_text.contains("camille@example.org"),
            "{}",
            mail.body_text
        );
    }

    #[test]
    fn every_wording_the_mails_compute_has_a_french_entry() {
        let mut labels = vec![ACCESS_SUBJECT, CHANGE_SUBJECT];
        labels.extend(FIELD_LABELS.iter().map(|(_, label)| *label));
        let missing: Vec<_> = labels
            .into_iter()
            .filter(|l| !crate::i18n::has_french(l))
            .collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }
}
