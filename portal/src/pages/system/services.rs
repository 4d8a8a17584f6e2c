//! Site services (S7): an incentive application and a permit request for the system, each
//! filed as a service request that the dashboard and the Services page then track.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::registry::{NewServiceRequest, service_request_number};

use super::{SystemChrome, load};
use crate::access::{Need, authorize};
use crate::fleet::{self, service_group};
use crate::i18n::Lang;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// Permit types a request may name: code, label.
pub const PERMIT_TYPES: [(&str, &str); 4] = [
    ("building", "Building permit"),
    ("electrical", "Electrical permit"),
    ("interconnection", "Interconnection agreement"),
    ("other", "Other"),
];

/// Longest text a field keeps.
const MAX_FIELD_CHARS: usize = 2_000;

pub struct RequestRow {
    pub id: i64,
    pub number: String,
    pub kind: String,
    pub state: String,
    pub group: String,
    pub reason: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "system/services.html")]
struct ServicesPage {
    chrome: Chrome,
    system: SystemChrome,
    /// Which form was sent with errors (`incentive` or `permit`), to show them beside it.
    failed: &'static str,
    values: HashMap<String, String>,
    errors: Vec<(&'static str, String)>,
    permit_types: Vec<(&'static str, &'static str)>,
    filed: Option<String>,
    requests: Vec<RequestRow>,
}

impl ServicesPage {
    fn value(&self, form: &str, field: &str) -> &str {
        if self.failed == form {
            self.values.get(field).map_or("", String::as_str)
        } else {
            ""
        }
    }

    fn error(&self, form: &str, field: &str) -> Option<&str> {
        (self.failed == form)
            .then(|| {
                self.errors
                    .iter()
                    .find(|(f, _)| *f == field)
                    .map(|(_, e)| e.as_str())
            })
            .flatten()
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct ServicesQuery {
    filed: Option<i64>,
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<ServicesQuery>,
) -> Result<Response, PortalError> {
    show(
        &state,
        &principal,
        id,
        "",
        HashMap::new(),
        Vec::new(),
        query.filed,
    )
    .await
}

async fn show(
    state: &AppState,
    principal: &Principal,
    id: u32,
    failed: &'static str,
    values: HashMap<String, String>,
    errors: Vec<(&'static str, String)>,
    filed: Option<i64>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(state, principal, id, "services").await?;
    let lang = principal.lang();
    let requests = fleet::service_requests(state.query(), &principal.scope, Some(id))
        .await?
        .into_iter()
        .map(|r| RequestRow {
            id: r.id,
            number: service_request_number(r.id),
            kind: lang.t(kind_label(&r.kind)).to_owned(),
            group: service_group(&r.state).replace(' ', "-"),
            state: lang.t(state_label(&r.state)).to_owned(),
            reason: r.reason,
            created: lang.time(r.created_us),
        })
        .collect();
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let page = ServicesPage {
        chrome,
        system,
        failed,
        values,
        errors,
        permit_types: PERMIT_TYPES
            .iter()
            .map(|(code, label)| (*code, lang.t(label)))
            .collect(),
        filed: filed.map(service_request_number),
        requests,
    };
    Ok((status, render("system services", &page)?).into_response())
}

pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "return" => "Return",
        "replacement" => "Replacement",
        "permit" => "Permit request",
        "incentive" => "Incentive application",
        "labor_claim" => "Labor reimbursement",
        _ => "Other",
    }
}

/// A service request's status (`RequestState::code`) in words.
pub fn state_label(state: &str) -> &'static str {
    match state {
        "new" => "New",
        "in_progress" => "In progress",
        "approved" => "Approved",
        "shipped" => "Shipped",
        "resolved" => "Resolved",
        "rejected" => "Rejected",
        _ => "Unknown",
    }
}

/// The form's fields, trimmed.
fn fields(pairs: Vec<(String, String)>) -> (HashMap<String, String>, Option<String>) {
    let mut values = HashMap::new();
    let mut csrf = None;
    for (name, value) in pairs {
        if name == "csrf_token" {
            csrf = Some(value);
        } else {
            values.insert(name, value.trim().to_owned());
        }
    }
    (values, csrf)
}

/// A field that must be filled (and not too long).
fn required(
    values: &HashMap<String, String>,
    field: &'static str,
    lang: Lang,
    errors: &mut Vec<(&'static str, String)>,
) -> String {
    let value = optional(values, field, lang, errors);
    if value.is_empty() {
        errors.push((field, lang.t("Required.").to_owned()));
    }
    value
}

/// A field that may be empty (but not too long).
fn optional(
    values: &HashMap<String, String>,
    field: &'static str,
    lang: Lang,
    errors: &mut Vec<(&'static str, String)>,
) -> String {
    let value = values.get(field).cloned().unwrap_or_default();
    if value.chars().count() > MAX_FIELD_CHARS {
        errors.push((
            field,
            lang.fill("At most {} characters.", &[&MAX_FIELD_CHARS]),
        ));
    }
    value
}

/// An incentive application: the programme, the applicant, the system's size and the
/// amount asked for.
pub fn check_incentive(
    values: &HashMap<String, String>,
    lang: Lang,
) -> Result<(String, serde_json::Value), Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let programme = required(values, "programme", lang, &mut errors);
    let applicant = required(values, "applicant", lang, &mut errors);
    let size = required(values, "system_size_kw", lang, &mut errors);
    let size_kw = size.replace(',', ".").parse::<f64>().ok();
    if !size.is_empty() && !size_kw.is_some_and(|kw| kw > 0.0 && kw < 100_000.0) {
        errors.push((
            "system_size_kw",
            lang.t("A size in kW greater than 0.").to_owned(),
        ));
    }
    let amount = optional(values, "amount", lang, &mut errors);
    let amount_value = amount.replace(',', ".").parse::<f64>().ok();
    // Finite: "inf" parses, and would be saved as null.
    if !amount.is_empty() && !amount_value.is_some_and(|a| a.is_finite() && a >= 0.0) {
        errors.push(("amount", lang.t("An amount of 0 or more.").to_owned()));
    }
    let notes = optional(values, "notes", lang, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((
        format!("Incentive application: {programme}"),
        serde_json::json!({
            "programme": programme,
            "applicant": applicant,
            "system_size_kw": size_kw,
            "amount_requested": amount_value,
            "notes": notes,
        }),
    ))
}

/// A permit request: the authority, the permit's type and the planned installation date.
pub fn check_permit(
    values: &HashMap<String, String>,
    lang: Lang,
) -> Result<(String, serde_json::Value), Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let authority = required(values, "authority", lang, &mut errors);
    let permit_type = values.get("permit_type").cloned().unwrap_or_default();
    if !PERMIT_TYPES.iter().any(|(code, _)| *code == permit_type) {
        errors.push((
            "permit_type",
            lang.t("Choose one of the permit types.").to_owned(),
        ));
    }
    let date = required(values, "planned_date", lang, &mut errors);
    if !date.is_empty() && date.parse::<jiff::civil::Date>().is_err() {
        errors.push(("planned_date", lang.t("A date (YYYY-MM-DD).").to_owned()));
    }
    let notes = optional(values, "notes", lang, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok((
        format!("Permit request ({permit_type}): {authority}"),
        serde_json::json!({
            "authority": authority,
            "permit_type": permit_type,
            "planned_installation_date": date,
            "notes": notes,
        }),
    ))
}

pub async fn incentive(
    state: State<AppState>,
    principal: Principal,
    path: Path<u32>,
    form: Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    file(state, principal, path, form, "incentive").await
}

pub async fn permit(
    state: State<AppState>,
    principal: Principal,
    path: Path<u32>,
    form: Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    file(state, principal, path, form, "permit").await
}

async fn file(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(pairs): Form<Vec<(String, String)>>,
    kind: &'static str,
) -> Result<Response, PortalError> {
    let (values, csrf) = fields(pairs);
    principal.check_csrf(csrf.as_deref())?;
    authorize(&principal, Need::ManageSystem(id))?;
    let lang = principal.lang();
    let checked = if kind == "incentive" {
        check_incentive(&values, lang)
    } else {
        check_permit(&values, lang)
    };
    let (reason, details) = match checked {
        Ok(filed) => filed,
        Err(errors) => return show(&state, &principal, id, kind, values, errors, None).await,
    };
    let number = state
        .registry()
        .create_service_request(&NewServiceRequest {
            kind,
            system_id: i64::from(id),
            device_id: None,
            company_id: None,
            created_by: principal.user.id,
            reason,
            details,
            at_us: sunfleet_engine::time::now_micros(),
        })?;
    Ok(Redirect::to(&format!("/systems/{id}/services?filed={number}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_incentive_application_needs_its_programme_applicant_and_size() {
        let errors = check_incentive(&values(&[("system_size_kw", "-3")]), Lang::En).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["programme", "applicant", "system_size_kw"]);
        let (reason, details) = check_incentive(
            &values(&[
                ("programme", "Prime à l'autoconsommation"),
                ("applicant", "Jeanne Martin"),
                ("system_size_kw", "6,3"),
                ("amount", "1200"),
            ]),
            Lang::Fr,
        )
        .unwrap();
        assert!(reason.contains("Prime"));
        assert_eq!(details["system_size_kw"], 6.3);
        assert_eq!(details["amount_requested"], 1200.0);
    }

    #[test]
    fn a_permit_request_needs_a_known_type_and_a_real_date() {
        let errors = check_permit(
            &values(&[
                ("authority", "Mairie"),
                ("permit_type", "demolition"),
                ("planned_date", "2026-02-30"),
            ]),
            Lang::En,
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["permit_type", "planned_date"]);
        assert!(
            check_permit(
                &values(&[
                    ("authority", "Mairie"),
                    ("permit_type", "building"),
                    ("planned_date", "2027-03-01"),
                ]),
                Lang::En,
            )
            .is_ok()
        );
    }

    fn request_fields() -> Vec<(String, String)> {
        form_fuzz::owned(&[
            ("programme", "Prime à l'autoconsommation"),
            ("applicant", "Jeanne Martin"),
            ("system_size_kw", "6,3"),
            ("amount", "1200"),
            ("notes", ""),
            ("authority", "Mairie"),
            ("permit_type", "building"),
            ("planned_date", "2027-03-01"),
        ])
    }

    fn request_names() -> Vec<String> {
        request_fields().into_iter().map(|(name, _)| name).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any incentive or permit form becomes a request whose details hold what was
        /// checked (finite sizes and amounts, a known permit type, a real date), or every
        /// problem is reported on its field.
        #[test]
        fn any_incentive_or_permit_form_is_read_or_refused_with_messages(
            posted in form_fuzz::form(request_fields(), request_names()),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let (values, _) = fields(posted);
            match check_incentive(&values, lang) {
                Ok((reason, details)) => {
                    prop_assert!(!reason.is_empty());
                    let size = details["system_size_kw"].as_f64();
                    prop_assert!(size.is_some_and(|kw| kw > 0.0 && kw < 100_000.0));
                    let amount = &details["amount_requested"];
                    if values.get("amount").is_none_or(|a| a.is_empty()) {
                        prop_assert!(amount.is_null());
                    } else {
                        prop_assert!(
                            amount.as_f64().is_some_and(|a| a.is_finite() && a >= 0.0),
                            "amount {:?} saved as {}",
                            values.get("amount"),
                            amount
                        );
                    }
                }
                Err(errors) => form_fuzz::explained(&errors)?,
            }
            match check_permit(&values, lang) {
                Ok((reason, details)) => {
                    prop_assert!(!reason.is_empty());
                    let permit_type = &details["permit_type"];
                    prop_assert!(PERMIT_TYPES.iter().any(|(code, _)| permit_type == code));
                    let date = details["planned_installation_date"].as_str().unwrap_or("");
                    prop_assert!(date.parse::<jiff::civil::Date>().is_ok());
                }
                Err(errors) => form_fuzz::explained(&errors)?,
            }
        }
    }
}
