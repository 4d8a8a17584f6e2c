//! Self-service (R1–R3), a section of a system's settings as in the training guide: request
//! a return, install a replacement, replace a gateway. This module has the section's page
//! and the return request (R1); the other two have their own pages.
//!
//! The return form names a shipment receiver (the system's owner, the installer company,
//! or a name typed in), a shipping address (the site, the installer's office, or one typed
//! in; never a post office box), a device type and the devices. Devices are found by a
//! search box that asks the server (htmx) for the system's devices of the chosen type
//! whose serial starts with what is typed, and adds the chosen ones to the form as checked
//! boxes; without JavaScript the serials are typed in a text field, separated by commas.
//! The registry checks everything again and files the request in one transaction; the
//! installer then lands on the request's page.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::device_models::device_model;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{
    MAX_RETURN_DEVICES, NewReturn, ReturnCandidate, ReturnContacts, ReturnDeviceType,
    ReturnRefusal, service_request_number,
};

use super::{Choice, Entered, SectionLink, form_page, manageable, sections};
use crate::fleet;
use crate::i18n::Lang;
use crate::pages::services::{RequestRow, device_label, request_row};
use crate::pages::system::{SystemChrome, load};
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// The longest receiver name and address kept.
const MAX_RECEIVER_CHARS: usize = 200;
const MAX_ADDRESS_CHARS: usize = 500;
/// How many devices a search shows.
const SEARCH_LIMIT: usize = 20;

// ---------------------------------------------------------------- the section

#[derive(Template)]
#[template(path = "system/settings_self_service.html")]
struct SelfServicePage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    returns: Vec<RequestRow>,
}

pub async fn self_service(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "settings").await?;
    let lang = principal.lang();
    let returns = fleet::service_requests(state.query(), &principal.scope, Some(id))
        .await?
        .into_iter()
        .filter(|r| r.kind == "return")
        .map(|r| request_row(r, lang))
        .collect();
    let page = SelfServicePage {
        sections: sections(lang, id, "self-service"),
        notice: None,
        returns,
        chrome,
        system,
    };
    render("system settings self-service", &page)
}

// ---------------------------------------------------------------- R1 the return form

/// A return as the form says it, once every field is well formed.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnEntry {
    pub receiver: String,
    pub shipping_address: String,
    pub device_type: ReturnDeviceType,
    pub serials: Vec<Serial>,
}

/// Name, e-mail and phone on one line, without the empty ones.
fn contact_line(contact: &(String, String, String)) -> String {
    [&contact.0, &contact.1, &contact.2]
        .into_iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The serial numbers typed in `text` (separated by commas, semicolons or spaces), or
/// the pieces that are not serial numbers.
pub fn typed_serials(text: &str) -> Result<Vec<Serial>, Vec<String>> {
    let mut serials = Vec::new();
    let mut bad = Vec::new();
    for piece in text
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|p| !p.is_empty())
    {
        match piece.parse::<Serial>() {
            Ok(serial) => serials.push(serial),
            Err(_) => bad.push(piece.to_owned()),
        }
    }
    if bad.is_empty() {
        Ok(serials)
    } else {
        Err(bad)
    }
}

/// Checks the return form's fields (the registry checks the devices and the address's
/// kind); `picked` are the serials added through the search. `Err` carries the form with
/// its errors.
pub fn parse_return(
    mut form: Entered,
    picked: &[String],
    contacts: &ReturnContacts,
    lang: Lang,
) -> Result<ReturnEntry, Entered> {
    let typed_name = form.get("receiver_name").to_owned();
    let receiver = match form.get("receiver") {
        "owner" => {
            match &contacts.owner {
                Some(owner) => contact_line(owner),
                None => {
                    form.refuse(
                    "receiver",
                    lang.t("This system has no owner entered: choose the installer or type a name."),
                );
                    String::new()
                }
            }
        }
        "installer" => contact_line(&contacts.installer),
        _ if typed_name.is_empty() => {
            form.refuse(
                "receiver",
                lang.t("Choose who receives the shipment, or type their name."),
            );
            String::new()
        }
        _ if typed_name.chars().count() > MAX_RECEIVER_CHARS => {
            form.refuse(
                "receiver",
                lang.fill("At most {} characters.", &[&MAX_RECEIVER_CHARS]),
            );
            String::new()
        }
        _ => typed_name,
    };
    let typed_address = form.get("shipping_address").to_owned();
    let shipping_address = match form.get("address_choice") {
        "site" if !contacts.site_address.is_empty() => contacts.site_address.clone(),
        "installer" if !contacts.installer_address.is_empty() => contacts.installer_address.clone(),
        _ if typed_address.is_empty() => {
            form.refuse(
                "shipping_address",
                lang.t("Enter the address where the replacement is to be shipped."),
            );
            String::new()
        }
        _ if typed_address.chars().count() > MAX_ADDRESS_CHARS => {
            form.refuse(
                "shipping_address",
                lang.fill("At most {} characters.", &[&MAX_ADDRESS_CHARS]),
            );
            String::new()
        }
        _ => typed_address,
    };
    let device_type = ReturnDeviceType::from_code(form.get("device_type"));
    if device_type.is_none() {
        form.refuse("device_type", lang.t("Choose the device type."));
    }
    let mut serials = Vec::new();
    let mut bad = Vec::new();
    for text in picked
        .iter()
        .map(String::as_str)
        .chain([form.get("serials")])
    {
        match typed_serials(text) {
            Ok(found) => serials.extend(found),
            Err(pieces) => bad.extend(pieces),
        }
    }
    for piece in &bad {
        form.refuse(
            "serials",
            lang.fill(
                "“{}” is not a serial number: serial numbers have up to 12 digits.",
                &[piece],
            ),
        );
    }
    if bad.is_empty() && serials.is_empty() {
        form.refuse(
            "serials",
            lang.t("Add at least one device: search for its serial number, or type serial numbers separated by commas."),
        );
    }
    match device_type {
        Some(device_type) if !form.has_errors() => Ok(ReturnEntry {
            receiver,
            shipping_address,
            device_type,
            serials,
        }),
        _ => Err(form),
    }
}

/// A registry refusal in words, with the field it belongs to.
pub fn explain_refusal(refusal: &ReturnRefusal, lang: Lang) -> (&'static str, String) {
    match refusal {
        ReturnRefusal::ReceiverMissing => (
            "receiver",
            lang.t("Choose who receives the shipment, or type their name.")
                .to_owned(),
        ),
        ReturnRefusal::AddressMissing => (
            "shipping_address",
            lang.t("Enter the address where the replacement is to be shipped.")
                .to_owned(),
        ),
        ReturnRefusal::PoBox { found } => (
            "shipping_address",
            lang.fill(
                "We are unable to ship to PO Boxes: “{}” is a post office box. Enter a street address where the shipment can be handed over.",
                &[found],
            ),
        ),
        ReturnRefusal::NoSerial => (
            "serials",
            lang.t("Add at least one device: search for its serial number, or type serial numbers separated by commas.")
                .to_owned(),
        ),
        ReturnRefusal::TooManySerials { given } => (
            "serials",
            lang.fill(
                "At most {} devices per return ({} given): file several returns.",
                &[&MAX_RETURN_DEVICES, given],
            ),
        ),
        ReturnRefusal::UnknownSerial { serial } => (
            "serials",
            lang.fill("{}: no device has this serial number.", &[serial]),
        ),
        ReturnRefusal::ForeignSerial { serial } => (
            "serials",
            lang.fill(
                "{}: this device belongs to another system, not this one.",
                &[serial],
            ),
        ),
        ReturnRefusal::Retired { serial } => (
            "serials",
            lang.fill(
                "{}: this device was retired; only devices in service can be returned.",
                &[serial],
            ),
        ),
        ReturnRefusal::WrongType {
            serial,
            wanted,
            kind,
            model,
            ..
        } => (
            "serials",
            lang.fill(
                "{}: this device is of type {} ({}), not {}: choose its device type, or remove it.",
                &[
                    serial,
                    &lang.t(device_label(kind, model)),
                    &device_model(model).map_or(model.as_str(), |m| m.name),
                    &lang.t(wanted.label()),
                ],
            ),
        ),
        ReturnRefusal::AlreadyReturning { serial, request_id } => (
            "serials",
            lang.fill(
                "{}: this device is already being returned under {}.",
                &[serial, &service_request_number(*request_id)],
            ),
        ),
    }
}

/// A choice of where to ship, with the address it stands for.
pub struct AddressChoice {
    pub value: &'static str,
    pub label: String,
    pub address: String,
    pub selected: bool,
}

/// A device added to the form.
pub struct PickedDevice {
    pub serial: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "system/settings_return.html")]
struct ReturnPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    form: Entered,
    receivers: Vec<Choice>,
    addresses: Vec<AddressChoice>,
    device_types: Vec<Choice>,
    picked: Vec<PickedDevice>,
}

async fn contacts(state: &AppState, id: u32) -> Result<ReturnContacts, PortalError> {
    let registry = Arc::clone(state.registry());
    blocking(move || Ok(registry.return_contacts(i64::from(id))?))
        .await?
        .ok_or_else(|| PortalError::NotFound {
            what: format!("system {id}"),
        })
}

async fn return_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    form: Entered,
    picked: &[String],
) -> Result<ReturnPage, PortalError> {
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let contacts = contacts(state, id).await?;
    let receiver = form.get("receiver");
    let mut receivers = vec![Choice {
        value: String::new(),
        label: lang.t("Select one").to_owned(),
        selected: receiver.is_empty(),
    }];
    if let Some(owner) = &contacts.owner {
        receivers.push(Choice {
            value: "owner".to_owned(),
            label: format!("{}: {}", lang.t("System owner"), contact_line(owner)),
            selected: receiver == "owner",
        });
    }
    receivers.push(Choice {
        value: "installer".to_owned(),
        label: format!(
            "{}: {}",
            lang.t("Installer"),
            contact_line(&contacts.installer)
        ),
        selected: receiver == "installer",
    });
    receivers.push(Choice {
        value: "other".to_owned(),
        label: lang.t("Someone else (type the name below)").to_owned(),
        selected: receiver == "other",
    });
    let chosen = match form.get("address_choice") {
        "" if !contacts.site_address.is_empty() => "site",
        "" => "other",
        other => other,
    };
    let mut addresses = Vec::new();
    for (value, label, address) in [
        ("site", "The system's site", &contacts.site_address),
        (
            "installer",
            "The installer's office",
            &contacts.installer_address,
        ),
    ] {
        if !address.is_empty() {
            addresses.push(AddressChoice {
                value,
                label: lang.t(label).to_owned(),
                address: address.clone(),
                selected: chosen == value,
            });
        }
    }
    addresses.push(AddressChoice {
        value: "other",
        label: lang.t("Another address (type it below)").to_owned(),
        address: String::new(),
        selected: !addresses.iter().any(|a| a.selected),
    });
    let device_type = form.get("device_type");
    let device_types = ReturnDeviceType::ALL
        .iter()
        .map(|t| Choice {
            value: t.code().to_owned(),
            label: lang.t(t.label()).to_owned(),
            selected: t.code() == device_type,
        })
        .collect();
    let picked = picked
        .iter()
        .filter_map(|text| text.parse::<Serial>().ok())
        .map(|serial| PickedDevice {
            serial: serial.to_string(),
            label: serial.to_string(),
        })
        .collect();
    Ok(ReturnPage {
        sections: sections(lang, id, "self-service"),
        notice: None,
        form,
        receivers,
        addresses,
        device_types,
        picked,
        chrome,
        system,
    })
}

pub async fn return_form(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
) -> Result<Response, PortalError> {
    manageable(&state, &principal, id).await?;
    let mut form = Entered::default();
    form.set("device_type", ReturnDeviceType::Microinverter.code());
    let page = return_page(&state, &principal, id, form, &[]).await?;
    render("system settings return", &page)
}

pub async fn submit_return(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    // The devices added through the search come as repeated `serial` fields.
    type Fields = Vec<(String, String)>;
    let (picked, fields): (Fields, Fields) =
        fields.into_iter().partition(|(name, _)| name == "serial");
    let picked: Vec<String> = picked
        .into_iter()
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .collect();
    let (form, csrf) = Entered::from_fields(fields);
    principal.check_csrf(csrf.as_deref())?;
    let details = manageable(&state, &principal, id).await?;
    let lang = principal.lang();
    let contacts = contacts(&state, id).await?;
    let refused = |form: Entered| async {
        let page = return_page(&state, &principal, id, form, &picked).await?;
        Ok::<_, PortalError>(form_page(
            render("system settings return", &page)?,
            &page.form,
        ))
    };
    let entry = match parse_return(form.clone(), &picked, &contacts, lang) {
        Ok(entry) => entry,
        Err(form) => return refused(form).await,
    };
    let request = NewReturn {
        system_id: i64::from(id),
        company_id: Some(principal.user.company_id.unwrap_or(details.installer_id)),
        created_by: principal.user.id,
        receiver: entry.receiver,
        shipping_address: entry.shipping_address,
        device_type: entry.device_type,
        serials: entry.serials,
        at_us: sunfleet_engine::time::now_micros(),
    };
    let registry = Arc::clone(state.registry());
    let outcome = blocking(move || Ok(registry.request_return(&request)?)).await?;
    match outcome {
        Ok(request_id) => {
            Ok(Redirect::to(&format!("/services/requests/{request_id}?filed=1")).into_response())
        }
        Err(refusals) => {
            let mut form = form;
            for refusal in &refusals {
                let (field, message) = explain_refusal(refusal, lang);
                form.refuse(field, message);
            }
            refused(form).await
        }
    }
}

// ---------------------------------------------------------------- the device search (htmx)

#[derive(Debug, Deserialize, Default)]
pub struct SearchQuery {
    device_type: Option<String>,
    serial_search: Option<String>,
    serial: Option<String>,
}

pub struct FoundDevice {
    pub serial: String,
    pub label: String,
    pub pick_href: String,
}

#[derive(Template)]
#[template(path = "system/return_matches.html")]
struct MatchesFragment {
    lang: Lang,
    devices: Vec<FoundDevice>,
}

#[derive(Template)]
#[template(path = "system/return_picked.html")]
struct PickedFragment {
    device: PickedDevice,
}

fn device_type_of(query: &SearchQuery, lang: Lang) -> Result<ReturnDeviceType, PortalError> {
    let code = query.device_type.as_deref().unwrap_or_default();
    ReturnDeviceType::from_code(code).ok_or_else(|| PortalError::BadRequest {
        message: lang.t("Choose the device type.").to_owned(),
    })
}

fn describe(device: &ReturnCandidate, lang: Lang) -> String {
    let model = device_model(&device.model).map_or(device.model.as_str(), |m| m.name);
    let kind = lang.t(device_label(&device.kind, &device.model));
    if model.is_empty() {
        format!("{:012} · {kind}", device.serial)
    } else {
        format!("{:012} · {kind} · {model}", device.serial)
    }
}

/// The system's devices of the chosen type whose serial starts with what was typed.
pub async fn search_return_devices(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PortalError> {
    manageable(&state, &principal, id).await?;
    let lang = principal.lang();
    let device_type = device_type_of(&query, lang)?;
    let prefix = query.serial_search.unwrap_or_default();
    let registry = Arc::clone(state.registry());
    let found = blocking(move || {
        Ok(registry.return_candidates(i64::from(id), device_type, &prefix, SEARCH_LIMIT)?)
    })
    .await?;
    let devices = found
        .iter()
        .map(|device| FoundDevice {
            serial: format!("{:012}", device.serial),
            label: describe(device, lang),
            pick_href: format!(
                "/systems/{id}/settings/self-service/return/pick?device_type={}&serial={:012}",
                device_type.code(),
                device.serial
            ),
        })
        .collect();
    render("return device search", &MatchesFragment { lang, devices })
}

/// One found device as a checked box for the form.
pub async fn pick_return_device(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SearchQuery>,
) -> Result<Response, PortalError> {
    manageable(&state, &principal, id).await?;
    let lang = principal.lang();
    let device_type = device_type_of(&query, lang)?;
    let text = query.serial.unwrap_or_default();
    let serial = text
        .parse::<Serial>()
        .map_err(|_| PortalError::BadRequest {
            message: lang.fill(
                "“{}” is not a serial number: serial numbers have up to 12 digits.",
                &[&text],
            ),
        })?;
    let registry = Arc::clone(state.registry());
    let prefix = serial.to_string();
    let found =
        blocking(move || Ok(registry.return_candidates(i64::from(id), device_type, &prefix, 1)?))
            .await?;
    let device = found
        .first()
        .filter(|d| d.serial == serial.value())
        .ok_or_else(|| PortalError::NotFound {
            what: format!("{} device {serial} of system {id}", device_type.label()),
        })?;
    render(
        "return device picked",
        &PickedFragment {
            device: PickedDevice {
                serial: serial.to_string(),
                label: describe(device, lang),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn form(fields: &[(&str, &str)]) -> Entered {
        Entered::from_fields(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .0
    }

    fn contacts() -> ReturnContacts {
        ReturnContacts {
            owner: Some((
                "Jeanne Martin".into(),
                "jeanne@example.com".into(),
                String::new(),
            )),
            installer: (
                "Soleil Pro".into(),
                String::new(),
                "+33 4 00 00 00 00".into(),
            ),
            site_address: "1 rue de la Paix, 69001, Lyon, FR".into(),
            installer_address: String::new(),
        }
    }

    #[test]
    fn a_complete_return_form_is_read_with_its_chosen_contacts() {
        let entry = parse_return(
            form(&[
                ("receiver", "owner"),
                ("address_choice", "site"),
                ("device_type", "microinverter"),
                ("serials", "121700000001, 121700000002;121700000003"),
            ]),
            &["121700000004".to_owned()],
            &contacts(),
            Lang::En,
        )
        .unwrap();
        assert_eq!(entry.receiver, "Jeanne Martin · jeanne@example.com");
        assert_eq!(entry.shipping_address, "1 rue de la Paix, 69001, Lyon, FR");
        assert_eq!(entry.device_type, ReturnDeviceType::Microinverter);
        let serials: Vec<u64> = entry.serials.iter().map(|s| s.value()).collect();
        assert_eq!(
            serials,
            [121700000004, 121700000001, 121700000002, 121700000003]
        );
        // A name and an address typed in.
        let entry = parse_return(
            form(&[
                ("receiver", "other"),
                ("receiver_name", "Paul Durand"),
                ("address_choice", "other"),
                ("shipping_address", "3 quai Perrache, Lyon"),
                ("device_type", "battery"),
                ("serials", "900"),
            ]),
            &[],
            &contacts(),
            Lang::En,
        )
        .unwrap();
        assert_eq!(entry.receiver, "Paul Durand");
        assert_eq!(entry.shipping_address, "3 quai Perrache, Lyon");
        assert_eq!(entry.serials[0].value(), 900);
    }

    #[test]
    fn each_missing_or_malformed_field_gets_its_own_error() {
        let refused = parse_return(
            form(&[
                ("receiver", ""),
                ("address_choice", "installer"),
                ("device_type", "gateway"),
                ("serials", "12345, abc, 1234567890123"),
            ]),
            &[],
            &contacts(),
            Lang::En,
        )
        .unwrap_err();
        for field in ["receiver", "shipping_address", "device_type", "serials"] {
            assert!(refused.error(field).is_some(), "{field}");
        }
        let serials = refused.error("serials").unwrap();
        assert!(serials.contains("“abc”"), "{serials}");
        assert!(serials.contains("“1234567890123”"), "{serials}");
        assert!(!serials.contains("12345”"), "{serials}");
        let empty = parse_return(
            form(&[
                ("receiver", "installer"),
                ("address_choice", "site"),
                ("device_type", "microinverter"),
            ]),
            &[],
            &contacts(),
            Lang::Fr,
        )
        .unwrap_err();
        assert_eq!(
            empty.error("serials").as_deref(),
            Some(Lang::Fr.t("Add at least one device: search for its serial number, or type serial numbers separated by commas."))
        );
        // The owner cannot receive it when the system has none.
        let no_owner = ReturnContacts {
            owner: None,
            ..contacts()
        };
        let refused = parse_return(
            form(&[
                ("receiver", "owner"),
                ("address_choice", "site"),
                ("device_type", "microinverter"),
                ("serials", "1"),
            ]),
            &[],
            &no_owner,
            Lang::En,
        )
        .unwrap_err();
        assert!(refused.error("receiver").unwrap().contains("no owner"));
    }

    #[test]
    fn every_registry_refusal_is_explained_on_its_field_naming_the_serial() {
        let serial = Serial::new(121_700_000_042).unwrap();
        let refusals = [
            ReturnRefusal::ReceiverMissing,
            ReturnRefusal::AddressMissing,
            ReturnRefusal::PoBox {
                found: "BP 42".into(),
            },
            ReturnRefusal::NoSerial,
            ReturnRefusal::TooManySerials { given: 60 },
            ReturnRefusal::UnknownSerial { serial },
            ReturnRefusal::ForeignSerial { serial },
            ReturnRefusal::Retired { serial },
            ReturnRefusal::WrongType {
                serial,
                wanted: ReturnDeviceType::Battery,
                is: Some(ReturnDeviceType::Microinverter),
                kind: "microinverter".into(),
                model: "IQ7PLUS-72-2-US".into(),
            },
            ReturnRefusal::AlreadyReturning {
                serial,
                request_id: 7,
            },
        ];
        for lang in Lang::ALL {
            let mut texts = std::collections::BTreeSet::new();
            for refusal in &refusals {
                let (field, text) = explain_refusal(refusal, lang);
                assert!(!text.contains("{}"), "{text}");
                if field == "serials"
                    && !matches!(
                        refusal,
                        ReturnRefusal::NoSerial | ReturnRefusal::TooManySerials { .. }
                    )
                {
                    assert!(text.contains("121700000042"), "{text}");
                }
                texts.insert(text);
            }
            assert_eq!(texts.len(), refusals.len());
        }
        let (field, text) = explain_refusal(&refusals[2], Lang::En);
        assert_eq!(field, "shipping_address");
        assert!(
            text.contains("PO Boxes") && text.contains("“BP 42”"),
            "{text}"
        );
        let (_, text) = explain_refusal(&refusals[8], Lang::En);
        assert_eq!(
            text,
            "121700000042: this device is of type Microinverter (IQ7+), not IQ Battery: choose its device type, or remove it."
        );
        let (_, text) = explain_refusal(&refusals[9], Lang::En);
        assert!(text.contains("SR-000007"), "{text}");
    }

    fn return_fields() -> Vec<(String, String)> {
        form_fuzz::owned(&[
            ("receiver", "owner"),
            ("receiver_name", ""),
            ("address_choice", "site"),
            ("shipping_address", ""),
            ("device_type", "microinverter"),
            ("serials", "121700000001, 121700000002;121700000003"),
        ])
    }

    fn return_names() -> Vec<String> {
        return_fields().into_iter().map(|(name, _)| name).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any return form (with any devices picked, for a system with or without its
        /// contacts entered) becomes a return, or every problem is reported on its field.
        #[test]
        fn any_return_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(return_fields(), return_names()),
            picked in prop::collection::vec(form_fuzz::text(), 0..3),
            contacts_entered in any::<bool>(),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let contacts = if contacts_entered {
                contacts()
            } else {
                ReturnContacts::default()
            };
            match parse_return(Entered::from_fields(fields).0, &picked, &contacts, lang) {
                Ok(entry) => {
                    prop_assert!(!entry.serials.is_empty());
                    prop_assert!(entry.receiver.chars().count() <= MAX_RECEIVER_CHARS);
                    prop_assert!(!entry.shipping_address.is_empty());
                }
                Err(form) => form_fuzz::explained(&form.errors)?,
            }
        }

        /// Typed serials are serials, or the pieces that are not are named as typed.
        #[test]
        fn typed_serials_are_serials_or_the_pieces_that_are_not(text in form_fuzz::text()) {
            match typed_serials(&text) {
                Ok(serials) => {
                    prop_assert!(serials.iter().all(|s| s.value() <= Serial::MAX));
                }
                Err(pieces) => {
                    prop_assert!(!pieces.is_empty());
                    for piece in &pieces {
                        prop_assert!(!piece.is_empty() && text.contains(piece.as_str()));
                    }
                }
            }
        }
    }
}
