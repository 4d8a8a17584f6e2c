//! The owner's details on the settings overview (C2): given and family name, e-mail,
//! phone and the language of their mails, changed by whoever may change the system
//! (`Need::ManageSystem`: its installers, subcontractors it was granted to, the platform
//! administrator; owners look only). Saving updates the registry's owner (their sign-in
//! follows), audits, and e-mails the owner the changed details, at the old and the new
//! address when the e-mail changes; refused input changes and sends nothing.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use sunfleet_engine::registry::{OwnerInfo, OwnerUpdate};

use super::{Entered, manageable, overview_page};
use crate::i18n::Lang;
use crate::mail::compose::owner_change_mail;
use crate::pages::valid_email;
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// The saved details as the form shows them.
pub(super) fn values(owner: &OwnerInfo) -> Entered {
    let mut form = Entered::default();
    form.set("owner_given_name", owner.given_name.clone());
    form.set("owner_family_name", owner.family_name.clone());
    form.set("owner_email", owner.email.clone());
    form.set("owner_phone", owner.phone.clone());
    form.set("owner_language", Lang::from_code(&owner.language).code());
    form
}

/// Checks the owner form; `Err` carries the form with its errors.
pub fn parse_owner(mut form: Entered, lang: Lang) -> Result<OwnerUpdate, Entered> {
    let text = |form: &mut Entered, name: &str, max: usize| {
        let value = form.get(name).to_owned();
        if value.chars().count() > max {
            form.refuse(name, lang.fill("At most {} characters.", &[&max]));
        }
        value
    };
    let given_name = text(&mut form, "owner_given_name", 100);
    let family_name = text(&mut form, "owner_family_name", 100);
    if family_name.is_empty() {
        form.refuse(
            "owner_family_name",
            lang.t("Enter the owner's family name."),
        );
    }
    let email = text(&mut form, "owner_email", 254);
    if !valid_email(&email) {
        form.refuse(
            "owner_email",
            lang.t("Enter the owner's e-mail address (name@example.com)."),
        );
    }
    let phone = text(&mut form, "owner_phone", 40);
    if !phone
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')' | '.' | '/'))
    {
        form.refuse(
            "owner_phone",
            lang.t("A phone number has digits, spaces and + ( ) - . / only."),
        );
    }
    let language = match Lang::ALL
        .into_iter()
        .find(|l| l.code() == form.get("owner_language"))
    {
        Some(language) => language.code().to_owned(),
        None => {
            form.refuse(
                "owner_language",
                lang.t("Choose English or French for the owner's e-mails."),
            );
            String::new()
        }
    };
    if form.has_errors() {
        return Err(form);
    }
    Ok(OwnerUpdate {
        given_name,
        family_name,
        email,
        phone,
        language,
    })
}

pub async fn save_owner(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (form, csrf) = Entered::from_fields(fields);
    principal.check_csrf(csrf.as_deref())?;
    let details = manageable(&state, &principal, id).await?;
    let lang = principal.lang();
    let update = match parse_owner(form.clone(), lang) {
        Ok(update) => update,
        Err(form) => return overview_page(&state, &principal, id, Some(form), None).await,
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let installer_id = details.installer_id;
    let saved = blocking(move || {
        let contact = registry.company_contact(installer_id)?.unwrap_or_default();
        let now = sunfleet_engine::time::now_micros();
        Ok(
            registry.update_owner(i64::from(id), &update, user, now, |change, to| {
                owner_change_mail(change, to, &contact)
            })?,
        )
    })
    .await;
    let refusal = match saved {
        Ok(None) => {
            return Ok(
                Redirect::to(&format!("/systems/{id}/settings?saved=unchanged")).into_response(),
            );
        }
        Ok(Some(change)) => {
            let saved = if change.email_changed() {
                "owner_moved"
            } else {
                "owner"
            };
            return Ok(
                Redirect::to(&format!("/systems/{id}/settings?saved={saved}")).into_response(),
            );
        }
        Err(PortalError::Engine(sunfleet_engine::Error::EmailTaken { email })) => lang.fill(
            "{} already signs in to another Sunfleet account: enter another address.",
            &[&email],
        ),
        Err(PortalError::Engine(sunfleet_engine::Error::OwnerEmailTaken { email })) => lang.fill(
            "{} is the e-mail of another owner: to make them this system's owner, use the activation form.",
            &[&email],
        ),
        Err(PortalError::Engine(error @ sunfleet_engine::Error::NoOwner { .. })) => {
            return Err(PortalError::BadRequest {
                message: error.to_string(),
            });
        }
        Err(error) => return Err(error),
    };
    let mut form = form;
    form.refuse("owner_email", refusal);
    overview_page(&state, &principal, id, Some(form), None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn form(pairs: &[(&str, &str)]) -> Entered {
        let mut form = Entered::default();
        for (name, value) in pairs {
            form.set(name, *value);
        }
        form
    }

    #[test]
    fn good_details_become_an_update() {
        let update = parse_owner(
            form(&[
                ("owner_given_name", " Camille "),
                ("owner_family_name", "Martin"),
                ("owner_email", "camille@example.org"),
                ("owner_phone", "+33 (0)6 12-34.56/78"),
                ("owner_language", "fr"),
            ]),
            Lang::En,
        )
        .unwrap();
        assert_eq!(
            update,
            OwnerUpdate {
                given_name: "Camille".into(),
                family_name: "Martin".into(),
                email: "camille@example.org".into(),
                phone: "+33 (0)6 12-34.56/78".into(),
                language: "fr".into(),
            }
        );
    }

    #[test]
    fn each_bad_field_is_reported_in_the_users_language() {
        let refused = parse_owner(
            form(&[
                ("owner_given_name", &"x".repeat(101)),
                ("owner_family_name", ""),
                ("owner_email", "camille at example"),
                ("owner_phone", "call me"),
                ("owner_language", "de"),
            ]),
            Lang::Fr,
        )
        .unwrap_err();
        for field in [
            "owner_given_name",
            "owner_family_name",
            "owner_email",
            "owner_phone",
            "owner_language",
        ] {
            let message = refused.error(field).unwrap_or_else(|| panic!("{field}"));
            assert!(!message.is_empty());
        }
        assert!(
            refused
                .error("owner_language")
                .unwrap()
                .contains("français"),
            "{:?}",
            refused.error("owner_language")
        );
    }

    #[test]
    fn every_wording_here_has_french() {
        for text in [
            "{} already signs in to another Sunfleet account: enter another address.",
            "{} is the e-mail of another owner: to make them this system's owner, use the activation form.",
            "A phone number has digits, spaces and + ( ) - . / only.",
            "Choose English or French for the owner's e-mails.",
            "Enter the owner's family name.",
            "Enter the owner's e-mail address (name@example.com).",
            "Saved. The owner was e-mailed the changed details.",
            "Saved. The owner was e-mailed the changed details, at the new and at the previous address.",
            "Nothing changed, so no e-mail was sent.",
        ] {
            assert!(crate::i18n::has_french(text), "{text}");
        }
    }

    fn owner_fields() -> Vec<(String, String)> {
        form_fuzz::owned(&[
            ("owner_given_name", "Camille"),
            ("owner_family_name", "Martin"),
            ("owner_email", "camille@example.org"),
            ("owner_phone", "+33 (0)6 12-34.56/78"),
            ("owner_language", "fr"),
        ])
    }

    fn owner_names() -> Vec<String> {
        owner_fields().into_iter().map(|(name, _)| name).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any owner form becomes an update within the form's limits, or every problem is
        /// reported on its field.
        #[test]
        fn any_owner_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(owner_fields(), owner_names()),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            match parse_owner(Entered::from_fields(fields).0, lang) {
                Ok(update) => {
                    prop_assert!(update.given_name.chars().count() <= 100);
                    prop_assert!(
                        !update.family_name.is_empty() && update.family_name.chars().count() <= 100
                    );
                    prop_assert!(valid_email(&update.email) && update.email.chars().count() <= 254);
                    prop_assert!(update.phone.chars().count() <= 40);
                    prop_assert!(Lang::ALL.iter().any(|l| l.code() == update.language));
                }
                Err(form) => form_fuzz::explained(&form.errors)?,
            }
        }
    }
}
