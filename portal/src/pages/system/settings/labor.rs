//! Labour reimbursement (T2): an installer who replaced a defective microinverter or
//! battery claims the labour. A claim is eligible when the unit is a microinverter or a
//! battery of the system, its defect was found while it was monitored here, it was
//! installed within two years of the claim, it was returned if a return was asked for, and
//! the claim comes within three months of the defect. Each rule that fails is explained on
//! its own; an eligible claim becomes a new service request. A claim may follow a return
//! request (R1): its page links here with the return and the unit chosen, and the claim
//! then names the return (which must be this system's and list the unit).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use jiff::civil::Date;
use serde::Deserialize;
use sunfleet_engine::registry::{
    LaborClaim, RequestState, ReturnRequest, ServiceRequestRecord, SystemDevice,
    service_request_number,
};

use super::{
    Entered, SectionLink, civil, form_page, local_civil_date, manageable, sections, today,
};
use crate::i18n::Lang;
use crate::pages::system::services::state_label;
use crate::pages::system::{SystemChrome, load};
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// What the rules need to know about the claimed unit.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimFacts {
    /// The unit is a microinverter or a battery of this system.
    pub eligible_product: bool,
    /// The site-local day the unit's first data arrived here, if it ever reported.
    pub monitored_since: Option<Date>,
    /// When the unit was installed (provisioned), site-local.
    pub installed: Option<Date>,
    /// A return (RMA) was asked for this unit: its RMA number, if one was given, and
    /// whether the unit was received back already.
    pub return_requested: Option<(Option<String>, bool)>,
}

/// What the installer says about the defect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimDates {
    pub defect: Date,
    pub claim: Date,
    /// The installer says the unit was sent back.
    pub return_done: bool,
}

/// Why a claim is not eligible; one per failed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotEligibleProduct,
    NeverMonitored,
    DefectBeforeMonitoring { since: Date },
    InstalledTooLongAgo { installed: Date, limit: Date },
    ReturnNotDone { rma: Option<String> },
    ClaimTooLate { deadline: Date },
}

impl Refusal {
    /// The refusal in words.
    pub fn explain(&self, lang: Lang) -> String {
        match self {
            Refusal::NotEligibleProduct => lang
                .t("Not an eligible product: only the system's microinverters and batteries are reimbursed.")
                .to_owned(),
            Refusal::NeverMonitored => lang
                .t("Not monitored: this unit never reported to Sunfleet, so no defect was detected while it was monitored.")
                .to_owned(),
            Refusal::DefectBeforeMonitoring { since } => lang.fill(
                "Not monitored at the time: the defect date is before the unit first reported ({}).",
                &[&lang.date(&since.to_string())],
            ),
            Refusal::InstalledTooLongAgo { installed, limit } => lang.fill(
                "Installed too long ago: the unit was installed on {}, more than two years before the claim (claims were possible until {}).",
                &[&lang.date(&installed.to_string()), &lang.date(&limit.to_string())],
            ),
            Refusal::ReturnNotDone { rma } => match rma {
                Some(rma) => lang.fill(
                    "Return not done: the unit was to be returned under RMA {}; send it back first.",
                    &[rma],
                ),
                None => lang
                    .t("Return not done: the unit was to be returned; send it back first.")
                    .to_owned(),
            },
            Refusal::ClaimTooLate { deadline } => lang.fill(
                "Too late: claims must come within three months of the defect (by {}).",
                &[&lang.date(&deadline.to_string())],
            ),
        }
    }
}

/// Every eligibility rule the claim fails, in the order the rules are listed.
pub fn refusals(facts: &ClaimFacts, dates: ClaimDates) -> Vec<Refusal> {
    let mut refused = Vec::new();
    if !facts.eligible_product {
        refused.push(Refusal::NotEligibleProduct);
    } else {
        match facts.monitored_since {
            None => refused.push(Refusal::NeverMonitored),
            Some(since) if dates.defect < since => {
                refused.push(Refusal::DefectBeforeMonitoring { since });
            }
            Some(_) => {}
        }
        if let Some(installed) = facts.installed {
            let limit = installed
                .checked_add(jiff::Span::new().years(2))
                .unwrap_or(installed);
            if dates.claim > limit {
                refused.push(Refusal::InstalledTooLongAgo { installed, limit });
            }
        }
        if let Some((rma, received)) = &facts.return_requested
            && !received
            && !dates.return_done
        {
            refused.push(Refusal::ReturnNotDone { rma: rma.clone() });
        }
    }
    let deadline = dates
        .defect
        .checked_add(jiff::Span::new().months(3))
        .unwrap_or(dates.defect);
    if dates.claim > deadline {
        refused.push(Refusal::ClaimTooLate { deadline });
    }
    refused
}

/// What the form says, once every field is well formed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimEntry {
    pub serial: u64,
    pub defect: Date,
    pub return_done: bool,
    pub labor_hours: f64,
    pub description: String,
}

/// Checks the claim form's fields (not yet the rules); `Err` carries the form with its
/// errors.
pub fn parse_claim(mut form: Entered, today: Date, lang: Lang) -> Result<ClaimEntry, Entered> {
    let serial = match form.get("serial").parse::<u64>() {
        Ok(serial) if serial <= 999_999_999_999 => Some(serial),
        _ => {
            form.refuse(
                "serial",
                lang.t("Choose the microinverter or battery the claim is for."),
            );
            None
        }
    };
    let defect = match form.get("defect_date").parse::<Date>() {
        Ok(date) if date > today => {
            form.refuse("defect_date", lang.t("The defect date is in the future."));
            None
        }
        Ok(date) => Some(date),
        Err(_) => {
            form.refuse(
                "defect_date",
                lang.t("Enter the date the defect was found (YYYY-MM-DD)."),
            );
            None
        }
    };
    let labor_hours = form.number(
        "labor_hours",
        0.25..=24.0,
        lang.t("Labour hours: a number from 0.25 to 24."),
    );
    let description = form.get("description").to_owned();
    if description.is_empty() {
        form.refuse(
            "description",
            lang.t("Describe the defect and the work done."),
        );
    } else if description.chars().count() > 2000 {
        form.refuse("description", lang.fill("At most {} characters.", &[&2000]));
    }
    match (serial, defect, labor_hours) {
        (Some(serial), Some(defect), Some(labor_hours)) if !form.has_errors() => Ok(ClaimEntry {
            serial,
            defect,
            return_done: form.checked("return_done"),
            labor_hours,
            description,
        }),
        _ => Err(form),
    }
}

pub struct DeviceOption {
    pub serial: String,
    pub label: String,
    pub installed: String,
    pub selected: bool,
}

pub struct ClaimLine {
    pub id: i64,
    pub number: String,
    pub state: String,
    pub reason: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "system/settings_labor.html")]
struct LaborPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    form: Entered,
    devices: Vec<DeviceOption>,
    refusals: Vec<String>,
    claims: Vec<ClaimLine>,
    today: String,
    /// The return request the claim follows: id and number.
    return_request: Option<(i64, String)>,
}

#[derive(Debug, Deserialize, Default)]
pub struct LaborQuery {
    claim: Option<i64>,
    /// A return request to claim the labour of, and the unit.
    #[serde(rename = "return")]
    return_request: Option<i64>,
    serial: Option<String>,
}

/// Return request `id` when it is a return of system `system_id` that was not rejected.
async fn return_of_system(
    state: &AppState,
    system_id: u32,
    id: i64,
) -> Result<Option<ServiceRequestRecord>, PortalError> {
    let registry = Arc::clone(state.registry());
    let record = blocking(move || Ok(registry.service_request(id)?)).await?;
    Ok(record.filter(|r| {
        r.system_id == i64::from(system_id)
            && r.kind == "return"
            && r.state != RequestState::Rejected
    }))
}

async fn labor(
    state: &AppState,
    principal: &Principal,
    id: u32,
    form: Entered,
    refusals: Vec<String>,
    notice: Option<String>,
) -> Result<LaborPage, PortalError> {
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let devices = blocking(move || Ok(registry.micros_and_batteries(i64::from(id))?)).await?;
    let selected = form.get("serial").parse::<u64>().ok();
    let devices = devices
        .iter()
        .map(|device| {
            let installed = local_civil_date(&system.zone, device.provisioned_us)
                .map(|d| d.to_string())
                .unwrap_or_default();
            let kind = if device.kind == "battery" {
                lang.t("Battery")
            } else {
                lang.t("Microinverter")
            };
            let retired = if device.state == "retired" {
                format!(", {}", lang.t("retired"))
            } else {
                String::new()
            };
            DeviceOption {
                serial: format!("{:012}", device.serial),
                label: format!(
                    "{:012} · {kind}{retired} · {} {}",
                    device.serial,
                    lang.t("installed"),
                    lang.date(&installed)
                ),
                installed,
                selected: selected == Some(device.serial),
            }
        })
        .collect();
    let answer = state
        .query()
        .sql(
            &principal.scope,
            &format!(
                "SELECT id, state, reason, created_us FROM service_requests
                  WHERE system_id = {id} AND kind = 'labor_claim'
                  ORDER BY id DESC LIMIT 50"
            ),
        )
        .await?;
    let (ids, states, reasons, created) = (
        answer.i64s(0),
        answer.strings(1),
        answer.strings(2),
        answer.i64s(3),
    );
    let claims = (0..answer.rows())
        .map(|i| ClaimLine {
            id: ids[i].unwrap_or(0),
            number: service_request_number(ids[i].unwrap_or(0)),
            state: lang
                .t(state_label(states[i].as_deref().unwrap_or_default()))
                .to_owned(),
            reason: reasons[i].clone().unwrap_or_default(),
            created: created[i].map(|t| lang.time(t)).unwrap_or_default(),
        })
        .collect();
    let return_request = form
        .get("return_request")
        .parse::<i64>()
        .ok()
        .map(|r| (r, service_request_number(r)));
    Ok(LaborPage {
        return_request,
        sections: sections(lang, id, "labor"),
        today: today(&system)?.to_string(),
        notice,
        form,
        devices,
        refusals,
        claims,
        chrome,
        system,
    })
}

pub async fn labor_page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<LaborQuery>,
) -> Result<Response, PortalError> {
    let lang = principal.lang();
    let notice = query.claim.map(|claim| {
        lang.fill(
            "Claim #{} submitted: it is listed with the service requests.",
            &[&claim],
        )
    });
    let mut form = Entered::default();
    if let Some(return_id) = query.return_request {
        // Another system's return, or one that does not exist, is not offered.
        let record = return_of_system(&state, id, return_id)
            .await?
            .ok_or_else(|| PortalError::NotFound {
                what: format!(
                    "return request {} of system {id}",
                    service_request_number(return_id)
                ),
            })?;
        form.set("return_request", return_id.to_string());
        let chosen = query.serial.as_deref().and_then(|s| s.parse::<u64>().ok());
        let serial = chosen
            .filter(|s| record.devices.iter().any(|d| d.serial == *s))
            .or_else(|| (record.devices.len() == 1).then(|| record.devices[0].serial));
        if let Some(serial) = serial {
            form.set("serial", format!("{serial:012}"));
        }
        form.set("return_done", "on");
    }
    let page = labor(&state, &principal, id, form, Vec::new(), notice).await?;
    render("system settings labor", &page)
}

/// The first site-local day `device` reported data here.
async fn monitored_since(
    state: &AppState,
    principal: &Principal,
    system: &SystemChrome,
    device: &SystemDevice,
) -> Result<Option<Date>, PortalError> {
    let table = if device.kind == "battery" {
        "battery_readings"
    } else {
        "readings"
    };
    let answer = state
        .query()
        .sql(
            &principal.scope,
            &format!(
                "SELECT CAST(min(time) AS BIGINT) FROM {table}
                  WHERE system_id = {} AND device_id = {}",
                system.id, device.id
            ),
        )
        .await?;
    match answer.i64s(0).first().copied().flatten() {
        Some(us) => Ok(Some(local_civil_date(&system.zone, us)?)),
        None => Ok(None),
    }
}

pub async fn submit_claim(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (form, csrf) = Entered::from_fields(fields);
    principal.check_csrf(csrf.as_deref())?;
    let details = manageable(&state, &principal, id).await?;
    let (_, system) = load(&state, &principal, id, "settings").await?;
    let lang = principal.lang();
    let claim_date = today(&system)?;
    let mut checked = form.clone();
    // The return request the claim follows, if any: this system's, listing the unit.
    let return_text = checked.get("return_request").to_owned();
    let return_request = if return_text.is_empty() {
        None
    } else {
        let record = match return_text.parse::<i64>() {
            Ok(return_id) => return_of_system(&state, id, return_id).await?,
            Err(_) => None,
        };
        let serial = checked.get("serial").parse::<u64>().ok();
        match record {
            Some(r) if r.devices.iter().any(|d| Some(d.serial) == serial) => Some(r.id),
            Some(r) => {
                checked.refuse(
                    "return_request",
                    lang.fill(
                        "Return request {} does not list this unit: choose one of its devices.",
                        &[&service_request_number(r.id)],
                    ),
                );
                None
            }
            None => {
                checked.refuse(
                    "return_request",
                    lang.t("This return request is not one of this system's (or it was rejected)."),
                );
                None
            }
        }
    };
    let entry = match parse_claim(checked, claim_date, lang) {
        Ok(entry) => entry,
        Err(form) => {
            let page = labor(&state, &principal, id, form, Vec::new(), None).await?;
            return Ok(form_page(
                render("system settings labor", &page)?,
                &page.form,
            ));
        }
    };
    let registry = Arc::clone(state.registry());
    let (devices, returns) = blocking(move || {
        let system_id = i64::from(id);
        Ok((
            registry.micros_and_batteries(system_id)?,
            registry.return_requests(system_id)?,
        ))
    })
    .await?;
    let device = devices.iter().find(|d| d.serial == entry.serial);
    let facts = match device {
        Some(device) => {
            let returned: Option<&ReturnRequest> =
                returns.iter().rev().find(|r| r.device_id == device.id);
            ClaimFacts {
                eligible_product: true,
                monitored_since: monitored_since(&state, &principal, &system, device).await?,
                installed: Some(local_civil_date(&system.zone, device.provisioned_us)?),
                return_requested: returned.map(|r| {
                    (
                        r.rma_number.clone(),
                        r.state == RequestState::Resolved.code(),
                    )
                }),
            }
        }
        None => ClaimFacts {
            eligible_product: false,
            monitored_since: None,
            installed: None,
            return_requested: None,
        },
    };
    let refused = refusals(
        &facts,
        ClaimDates {
            defect: entry.defect,
            claim: claim_date,
            return_done: entry.return_done,
        },
    );
    let Some(device) = device.filter(|_| refused.is_empty()) else {
        let explained = refused.iter().map(|r| r.explain(lang)).collect();
        let mut form = form;
        // Not a field's fault: the page lists the rules it fails; the status says so.
        form.refuse(
            "eligibility",
            lang.t("This claim is not eligible; nothing was submitted."),
        );
        let page = labor(&state, &principal, id, form, explained, None).await?;
        return Ok(form_page(
            render("system settings labor", &page)?,
            &page.form,
        ));
    };
    let claim = LaborClaim {
        device_id: device.id,
        serial: device.serial,
        defect_date: civil(entry.defect)?,
        claim_date: civil(claim_date)?,
        labor_hours: entry.labor_hours,
        return_done: entry.return_done,
        description: entry.description,
        return_request,
    };
    let company = principal.user.company_id.unwrap_or(details.installer_id);
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let request = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.submit_labor_claim(i64::from(id), company, &claim, user, now)?)
    })
    .await?;
    Ok(Redirect::to(&format!("/systems/{id}/settings/labor?claim={request}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn eligible() -> ClaimFacts {
        ClaimFacts {
            eligible_product: true,
            monitored_since: Some(date(2025, 3, 1)),
            installed: Some(date(2025, 2, 20)),
            return_requested: None,
        }
    }

    fn dates() -> ClaimDates {
        ClaimDates {
            defect: date(2026, 1, 15),
            claim: date(2026, 2, 1),
            return_done: false,
        }
    }

    #[test]
    fn an_eligible_claim_passes_every_rule() {
        assert_eq!(refusals(&eligible(), dates()), vec![]);
    }

    #[test]
    fn only_a_microinverter_or_battery_of_the_system_is_eligible() {
        let facts = ClaimFacts {
            eligible_product: false,
            ..eligible()
        };
        assert_eq!(refusals(&facts, dates()), vec![Refusal::NotEligibleProduct]);
    }

    #[test]
    fn the_defect_must_be_found_while_the_unit_was_monitored() {
        let never = ClaimFacts {
            monitored_since: None,
            ..eligible()
        };
        assert_eq!(refusals(&never, dates()), vec![Refusal::NeverMonitored]);
        let later = ClaimFacts {
            monitored_since: Some(date(2026, 1, 16)),
            ..eligible()
        };
        assert_eq!(
            refusals(&later, dates()),
            vec![Refusal::DefectBeforeMonitoring {
                since: date(2026, 1, 16)
            }]
        );
        // The first day of monitoring counts.
        let same_day = ClaimFacts {
            monitored_since: Some(date(2026, 1, 15)),
            ..eligible()
        };
        assert_eq!(refusals(&same_day, dates()), vec![]);
    }

    #[test]
    fn the_unit_must_be_installed_within_two_years_of_the_claim() {
        let facts = ClaimFacts {
            installed: Some(date(2024, 1, 31)),
            ..eligible()
        };
        assert_eq!(
            refusals(&facts, dates()),
            vec![Refusal::InstalledTooLongAgo {
                installed: date(2024, 1, 31),
                limit: date(2026, 1, 31)
            }]
        );
        // Two years to the day is still in time.
        let in_time = ClaimFacts {
            installed: Some(date(2024, 2, 1)),
            ..eligible()
        };
        assert_eq!(refusals(&in_time, dates()), vec![]);
    }

    #[test]
    fn a_unit_to_be_returned_must_have_been_returned() {
        let asked = ClaimFacts {
            return_requested: Some((Some("RMA-77".to_owned()), false)),
            ..eligible()
        };
        assert_eq!(
            refusals(&asked, dates()),
            vec![Refusal::ReturnNotDone {
                rma: Some("RMA-77".to_owned())
            }]
        );
        let sent = ClaimDates {
            return_done: true,
            ..dates()
        };
        assert_eq!(refusals(&asked, sent), vec![]);
        let received = ClaimFacts {
            return_requested: Some((None, true)),
            ..eligible()
        };
        assert_eq!(refusals(&received, dates()), vec![]);
    }

    #[test]
    fn no_claim_older_than_three_months_after_the_defect() {
        let late = ClaimDates {
            claim: date(2026, 4, 16),
            ..dates()
        };
        assert_eq!(
            refusals(&eligible(), late),
            vec![Refusal::ClaimTooLate {
                deadline: date(2026, 4, 15)
            }]
        );
        let last_day = ClaimDates {
            claim: date(2026, 4, 15),
            ..dates()
        };
        assert_eq!(refusals(&eligible(), last_day), vec![]);
    }

    #[test]
    fn every_failed_rule_is_explained_separately() {
        let facts = ClaimFacts {
            eligible_product: true,
            monitored_since: None,
            installed: Some(date(2020, 1, 1)),
            return_requested: Some((None, false)),
        };
        let refused = refusals(
            &facts,
            ClaimDates {
                defect: date(2025, 6, 1),
                claim: date(2026, 2, 1),
                return_done: false,
            },
        );
        assert_eq!(refused.len(), 4, "{refused:?}");
        for lang in Lang::ALL {
            let texts: Vec<String> = refused.iter().map(|r| r.explain(lang)).collect();
            let unique: std::collections::BTreeSet<&String> = texts.iter().collect();
            assert_eq!(unique.len(), 4, "{texts:?}");
        }
        assert!(
            Refusal::ClaimTooLate {
                deadline: date(2025, 9, 1)
            }
            .explain(Lang::Fr)
            .contains("01/09/2025")
        );
    }

    #[test]
    fn claim_fields_are_checked_one_by_one() {
        let form = |fields: &[(&str, &str)]| {
            Entered::from_fields(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
            .0
        };
        let today = date(2026, 2, 1);
        let entry = parse_claim(
            form(&[
                ("serial", "000123456789"),
                ("defect_date", "2026-01-20"),
                ("labor_hours", "1,5"),
                ("return_done", "on"),
                ("description", "Unit dead, replaced"),
            ]),
            today,
            Lang::En,
        )
        .unwrap();
        assert_eq!(entry.serial, 123_456_789);
        assert_eq!(entry.labor_hours, 1.5);
        assert!(entry.return_done);
        let refused = parse_claim(
            form(&[
                ("serial", "gateway"),
                ("defect_date", "2026-02-02"),
                ("labor_hours", "30"),
                ("description", ""),
            ]),
            today,
            Lang::En,
        )
        .unwrap_err();
        for field in ["serial", "defect_date", "labor_hours", "description"] {
            assert!(refused.error(field).is_some(), "{field}");
        }
    }

    fn claim_fields() -> Vec<(String, String)> {
        form_fuzz::owned(&[
            ("serial", "000123456789"),
            ("defect_date", "2026-01-20"),
            ("labor_hours", "1,5"),
            ("return_done", "on"),
            ("description", "Unit dead, replaced"),
        ])
    }

    fn claim_names() -> Vec<String> {
        claim_fields().into_iter().map(|(name, _)| name).collect()
    }

    /// Any date jiff has, from year -9999 to 9999.
    fn any_date() -> impl Strategy<Value = Date> {
        (-9999i16..=9999, 1i8..=12, 1i8..=28).prop_map(|(y, m, d)| date(y, m, d))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any claim form is read within its limits, or every problem is reported on its
        /// field.
        #[test]
        fn any_claim_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(claim_fields(), claim_names()),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let today = date(2026, 2, 1);
            match parse_claim(Entered::from_fields(fields).0, today, lang) {
                Ok(claim) => {
                    prop_assert!(claim.serial <= 999_999_999_999);
                    prop_assert!(claim.defect <= today);
                    prop_assert!((0.25..=24.0).contains(&claim.labor_hours));
                    prop_assert!(
                        !claim.description.is_empty()
                            && claim.description.chars().count() <= 2000
                    );
                }
                Err(form) => form_fuzz::explained(&form.errors)?,
            }
        }

        /// The rules hold at the ends of the calendar (date arithmetic that cannot go
        /// further stops there).
        #[test]
        fn the_rules_hold_at_the_ends_of_the_calendar(
            defect in any_date(),
            claim in any_date(),
            monitored_since in prop::option::of(any_date()),
            installed in prop::option::of(any_date()),
            eligible_product in any::<bool>(),
            return_done in any::<bool>(),
        ) {
            let facts = ClaimFacts {
                eligible_product,
                monitored_since,
                installed,
                return_requested: Some((None, false)),
            };
            let refused = refusals(&facts, ClaimDates { defect, claim, return_done });
            prop_assert_eq!(refused.contains(&Refusal::NotEligibleProduct), !eligible_product);
            let late = refused.iter().any(|r| matches!(r, Refusal::ClaimTooLate { .. }));
            prop_assert!(!late || claim > defect, "a claim by the defect's day is late");
        }
    }
}
