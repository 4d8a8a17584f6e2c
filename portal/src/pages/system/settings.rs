//! A system's settings (T1–T5), behind the gear icon: an overview (owner, ids, location,
//! installer; the owner's details are a form, C2), labour reimbursement claims, the
//! installer reference and switches, the production estimate and threshold, the arrays
//! with their builder, and self-service (R1–R3: return requests, replacements, gateway
//! replacement). Each section has its own address. Everyone who may see the system sees
//! them; only its installers (`Need::ManageSystem`) get forms. A save checks the CSRF
//! token, validates every field (the form comes back with the entered values and each
//! field's error, nothing saved), writes one registry transaction with its audit entry,
//! and redirects to the section with a notice.

mod arrays;
mod labor;
mod owner;
mod replacements;
mod self_service;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::registry::{
    CompanyContact, EstimateSettings, EventFilter, EventState, InstallerSettings, KioskContent,
    OwnerDetails, SystemArray, SystemDetails,
};
use sunfleet_engine::time::CivilDate;

pub use arrays::{arrays_page, builder_page, save_builder};
pub use labor::{labor_page, submit_claim};
pub use owner::{parse_owner, save_owner};
pub use replacements::{
    gateway_form, replacement_form, submit_gateway, submit_replacement, submit_reprovision,
};
pub use self_service::{
    pick_return_device, return_form, search_return_devices, self_service, submit_return,
};

use super::{SystemChrome, load};
use crate::access::{Need, authorize};
use crate::i18n::Lang;
use crate::pages::activations::MONTHS;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// The sections: code, label, path after `/systems/{id}/settings`.
pub const SECTIONS: [(&str, &str, &str); 6] = [
    ("overview", "Overview", ""),
    ("labor", "Labor reimbursement", "/labor"),
    ("references", "Installer reference and more", "/references"),
    ("estimate", "Production estimate and threshold", "/estimate"),
    ("arrays", "Array details", "/arrays"),
    ("self-service", "Self-service", "/self-service"),
];

/// How a gateway reaches the internet: code, label.
pub const CONNECTIONS: [(&str, &str); 3] = [
    ("ethernet", "Ethernet"),
    ("wifi", "Wi-Fi"),
    ("cellular", "Cellular"),
];

/// How the microinverters are attached to the modules: code, label (empty: not said).
pub const ATTACHMENT_TYPES: [(&str, &str); 5] = [
    ("", "Not specified"),
    ("rack_rail", "Rack / rail mounted"),
    ("module_frame", "Module frame mounted"),
    ("integrated", "Integrated (AC module)"),
    ("ground_mount", "Ground mount"),
];

/// Where production figures come from: code, label.
pub const PRODUCTION_SOURCES: [(&str, &str); 2] = [
    ("microinverters", "Microinverter measurements"),
    ("meter", "Production meter"),
];

/// The production threshold's choices (DOMAIN.md: 50 % to 95 % in steps of 5).
pub const THRESHOLD_PCTS: [u8; 10] = [50, 55, 60, 65, 70, 75, 80, 85, 90, 95];

/// How long a save waits for the fleet checks to judge the system again, so the page it
/// leads to shows the status that follows; past it the page says the check is under way.
const RECHECK_WAIT: Duration = Duration::from_secs(10);

pub struct SectionLink {
    pub href: String,
    pub label: String,
    pub active: bool,
}

fn sections(lang: Lang, id: u32, active: &str) -> Vec<SectionLink> {
    SECTIONS
        .iter()
        .map(|(code, label, path)| SectionLink {
            href: format!("/systems/{id}/settings{path}"),
            label: lang.t(label).to_owned(),
            active: *code == active,
        })
        .collect()
}

/// A choice in a select or a group of radio buttons.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

fn choices(options: &[(&str, &str)], current: &str, lang: Lang) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: lang.t(label).to_owned(),
            selected: *value == current,
        })
        .collect()
}

/// What a form holds as typed, and its problems by field (already in the user's language).
#[derive(Debug, Clone, Default)]
pub struct Entered {
    values: HashMap<String, String>,
    errors: Vec<(String, String)>,
}

impl Entered {
    /// The posted fields, without the CSRF token (returned apart).
    fn from_fields(fields: Vec<(String, String)>) -> (Self, Option<String>) {
        let mut values: HashMap<String, String> = fields.into_iter().collect();
        let csrf = values.remove("csrf_token");
        (
            Self {
                values,
                errors: Vec::new(),
            },
            csrf,
        )
    }

    fn set(&mut self, name: &str, value: impl Into<String>) {
        self.values.insert(name.to_owned(), value.into());
    }

    pub fn get(&self, name: &str) -> &str {
        self.values.get(name).map_or("", |v| v.trim())
    }

    pub fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    /// Whether a field was posted at all (an unchecked box is not).
    fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    fn refuse(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push((field.into(), message.into()));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The messages of `field`, joined.
    pub fn error(&self, field: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .errors
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .collect();
        (!messages.is_empty()).then(|| messages.join(" "))
    }

    /// A decimal number (a comma is a decimal point too) within `range`, or an error on
    /// `field`.
    fn number(
        &mut self,
        field: &str,
        range: std::ops::RangeInclusive<f64>,
        message: &str,
    ) -> Option<f64> {
        match self.get(field).replace(',', ".").parse::<f64>() {
            Ok(x) if x.is_finite() && range.contains(&x) => Some(x),
            _ => {
                self.refuse(field, message);
                None
            }
        }
    }

    /// Twelve monthly kWh from `name(1)` … `name(12)`: all or none.
    fn months(
        &mut self,
        name: impl Fn(usize) -> String,
        field: &str,
        lang: Lang,
    ) -> Option<Option<[f64; 12]>> {
        let mut months = [0.0; 12];
        let mut given = 0;
        let mut fine = true;
        for (index, slot) in months.iter_mut().enumerate() {
            let raw = self.get(&name(index + 1)).replace(',', ".");
            if raw.is_empty() {
                continue;
            }
            given += 1;
            match raw.parse::<f64>() {
                Ok(kwh) if kwh.is_finite() && (0.0..=MAX_MONTH_KWH).contains(&kwh) => *slot = kwh,
                _ => {
                    fine = false;
                    self.refuse(
                        field,
                        lang.fill("{}: kWh from 0 to 10000000.", &[&lang.t(MONTHS[index])]),
                    );
                }
            }
        }
        if given != 0 && given != 12 {
            self.refuse(field, lang.t("Enter all twelve months, or none."));
            return None;
        }
        fine.then_some((given == 12).then_some(months))
    }
}

/// The largest monthly estimate accepted (a large commercial site).
const MAX_MONTH_KWH: f64 = 10_000_000.0;

/// The form again, with 400 when it has errors.
fn form_page(response: Response, entered: &Entered) -> Response {
    let mut response = response;
    if entered.has_errors() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

/// The system as a principal allowed to change it sees it: another company's system is
/// "not found", an owner is refused.
async fn manageable(
    state: &AppState,
    principal: &Principal,
    id: u32,
) -> Result<SystemDetails, PortalError> {
    authorize(principal, Need::ManageSystem(id))?;
    let registry = Arc::clone(state.registry());
    blocking(move || Ok(registry.system_details(i64::from(id))?))
        .await?
        .ok_or_else(|| PortalError::NotFound {
            what: format!("system {id}"),
        })
}

/// The site-local date today.
fn today(system: &SystemChrome) -> Result<jiff::civil::Date, PortalError> {
    local_civil_date(&system.zone, sunfleet_engine::time::now_micros())
}

fn local_civil_date(zone: &jiff::tz::TimeZone, us: i64) -> Result<jiff::civil::Date, PortalError> {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| zone.to_datetime(t).date())
        .map_err(|e| PortalError::Internal {
            context: format!("a date out of range: {e}"),
        })
}

fn civil(date: jiff::civil::Date) -> Result<CivilDate, PortalError> {
    CivilDate::from_ymd(
        i32::from(date.year()),
        date.month().unsigned_abs().into(),
        date.day().unsigned_abs().into(),
    )
    .ok_or_else(|| PortalError::Internal {
        context: format!("date {date} out of range"),
    })
}

#[derive(Debug, Deserialize, Default)]
pub struct SavedQuery {
    saved: Option<String>,
}

/// The notice after a save.
fn saved_notice(lang: Lang, saved: Option<&str>) -> Option<String> {
    let text = match saved? {
        "checked" => "Saved. The production check ran again: the status shown is current.",
        "pending" => {
            "Saved. The production check runs again in a moment; reload to see the status follow."
        }
        _ => "Saved.",
    };
    Some(lang.t(text).to_owned())
}

// ---------------------------------------------------------------- T1 overview

#[derive(Template)]
#[template(path = "system/settings_overview.html")]
struct OverviewPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    /// `None` when there is none or the principal may not see it.
    owner: Option<OwnerDetails>,
    owner_hidden: bool,
    /// The owner's details as a form (C2), for those who may change the system.
    owner_form: Option<Entered>,
    languages: Vec<Choice>,
    installer: CompanyContact,
    coordinates: String,
    address: Vec<String>,
    /// The activation form, for the installer's own people.
    edit_href: Option<String>,
}

/// The notice after the owner's details were saved (C2).
fn owner_notice(lang: Lang, saved: Option<&str>) -> Option<String> {
    let text = match saved? {
        "owner" => "Saved. The owner was e-mailed the changed details.",
        "owner_moved" => {
            "Saved. The owner was e-mailed the changed details, at the new and at the previous address."
        }
        "unchanged" => "Nothing changed, so no e-mail was sent.",
        _ => "Saved.",
    };
    Some(lang.t(text).to_owned())
}

pub async fn overview(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SavedQuery>,
) -> Result<Response, PortalError> {
    let notice = owner_notice(principal.lang(), query.saved.as_deref());
    overview_page(&state, &principal, id, None, notice).await
}

/// The overview; `entered` is the owner form as posted (with its errors), or `None` for
/// the saved details.
async fn overview_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    entered: Option<Entered>,
    notice: Option<String>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let details = &system.details;
    let registry = Arc::clone(state.registry());
    let installer_id = details.installer_id;
    let system_id = i64::from(id);
    let (installer, owner_info) = blocking(move || {
        Ok((
            registry.company_contact(installer_id)?,
            registry.system_owner(system_id)?,
        ))
    })
    .await?;
    let installer = installer.unwrap_or_default();
    // The owner's contact details are for the installer's own people, the owner, and
    // whoever may change the system (they get the owner's details as a form: C2).
    let installer_member = principal.user.company_id == Some(details.installer_id);
    let can_edit_owner = system.can_manage && owner_info.is_some();
    let owner_may_see = installer_member || principal.user.owner_id.is_some() || can_edit_owner;
    let owner = details.owner.clone().filter(|_| owner_may_see);
    let owner_form = match (can_edit_owner, entered, owner_info) {
        (false, _, _) => None,
        (true, Some(entered), _) => Some(entered),
        (true, None, Some(info)) => Some(owner::values(&info)),
        (true, None, None) => None,
    };
    let coordinates = match (details.latitude, details.longitude) {
        (Some(latitude), Some(longitude)) => format!(
            "{}, {}",
            lang.decimal(latitude, 5),
            lang.decimal(longitude, 5)
        ),
        _ => String::new(),
    };
    let address = [
        details.street_address.clone(),
        [details.postal_code.as_str(), details.city.as_str()]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        details.region.clone(),
        details.country.clone(),
    ]
    .into_iter()
    .filter(|line| !line.is_empty())
    .collect();
    let languages = Lang::ALL
        .iter()
        .map(|l| Choice {
            value: l.code().to_owned(),
            label: l.name().to_owned(),
            selected: owner_form
                .as_ref()
                .is_some_and(|form| form.get("owner_language") == l.code()),
        })
        .collect();
    let page = OverviewPage {
        sections: sections(lang, id, "overview"),
        notice,
        owner_hidden: details.owner.is_some() && !owner_may_see,
        owner,
        owner_form,
        languages,
        installer,
        coordinates,
        address,
        edit_href: (installer_member && authorize(principal, Need::ActivateSystems).is_ok())
            .then(|| format!("/activations/{id}")),
        chrome,
        system,
    };
    let response = render("system settings overview", &page)?;
    Ok(match &page.owner_form {
        Some(form) => form_page(response, form),
        None => response,
    })
}

// ---------------------------------------------------------------- T3 references and more

#[derive(Template)]
#[template(path = "system/settings_references.html")]
struct ReferencesPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    form: Entered,
    connections: Vec<Choice>,
    attachments: Vec<Choice>,
    sources: Vec<Choice>,
    has_meter: bool,
}

impl ReferencesPage {
    fn new(
        chrome: Chrome,
        system: SystemChrome,
        form: Entered,
        notice: Option<String>,
        has_meter: bool,
        lang: Lang,
    ) -> Self {
        let id = system.id;
        Self {
            sections: sections(lang, id, "references"),
            connections: choices(&CONNECTIONS, form.get("internet_connection"), lang),
            attachments: choices(&ATTACHMENT_TYPES, form.get("attachment_type"), lang),
            sources: choices(&PRODUCTION_SOURCES, form.get("production_source"), lang),
            has_meter,
            notice,
            form,
            chrome,
            system,
        }
    }
}

/// The saved values as the form shows them.
fn references_values(details: &SystemDetails) -> Entered {
    let mut form = Entered::default();
    form.set("installer_reference", details.installer_reference.clone());
    form.set("other_references", details.other_references.clone());
    form.set("internet_connection", details.internet_connection.clone());
    form.set("attachment_type", details.attachment_type.clone());
    match &details.operational_date {
        Some(date) => {
            form.set("permission", "operational");
            form.set("operational_date", date.clone());
        }
        None => form.set("permission", "not_operational"),
    }
    if details.weather_enabled {
        form.set("weather_enabled", "on");
    }
    form.set("production_source", details.production_source.clone());
    let kiosk = details.kiosk_content;
    for (name, on) in [
        ("kiosk_past_7_days", kiosk.past_7_days),
        ("kiosk_daily_graph", kiosk.daily_graph),
        ("kiosk_benefits", kiosk.benefits),
        ("kiosk_description", kiosk.description),
    ] {
        if on {
            form.set(name, "on");
        }
    }
    form
}

/// Checks the "Installer reference and more" form; `Err` carries the form with its errors.
pub fn parse_references(
    mut form: Entered,
    has_meter: bool,
    today: jiff::civil::Date,
    lang: Lang,
) -> Result<InstallerSettings, Entered> {
    let text = |form: &mut Entered, name: &str, max: usize| {
        let value = form.get(name).to_owned();
        if value.chars().count() > max {
            form.refuse(name, lang.fill("At most {} characters.", &[&max]));
        }
        value
    };
    let installer_reference = text(&mut form, "installer_reference", 100);
    let other_references = text(&mut form, "other_references", 500);
    let internet_connection = match CONNECTIONS
        .iter()
        .find(|(code, _)| *code == form.get("internet_connection"))
    {
        Some((code, _)) => *code,
        None => {
            form.refuse(
                "internet_connection",
                lang.t("Choose Ethernet, Wi-Fi or cellular."),
            );
            "ethernet"
        }
    };
    let attachment_type = match ATTACHMENT_TYPES
        .iter()
        .find(|(code, _)| *code == form.get("attachment_type"))
    {
        Some((code, _)) => (*code).to_owned(),
        None => {
            form.refuse(
                "attachment_type",
                lang.t("Choose one of the attachment types listed."),
            );
            String::new()
        }
    };
    let operational_date = match form.get("permission") {
        "operational" => {
            let latest = today
                .checked_add(jiff::Span::new().years(1))
                .unwrap_or(today);
            match form.get("operational_date").parse::<jiff::civil::Date>() {
                Ok(date) if date > latest => {
                    form.refuse(
                        "operational_date",
                        lang.t("The date is more than a year ahead."),
                    );
                    None
                }
                Ok(date) if date.year() < 1990 => {
                    form.refuse("operational_date", lang.t("The date is before 1990."));
                    None
                }
                Ok(date) => civil(date).ok(),
                Err(_) => {
                    form.refuse(
                        "operational_date",
                        lang.t("Enter the date the system became operational (YYYY-MM-DD)."),
                    );
                    None
                }
            }
        }
        "not_operational" => None,
        _ => {
            form.refuse(
                "permission",
                lang.t("Say whether the system has permission to operate."),
            );
            None
        }
    };
    let production_source = match PRODUCTION_SOURCES
        .iter()
        .find(|(code, _)| *code == form.get("production_source"))
    {
        Some((code, _)) if *code == "meter" && !has_meter => {
            form.refuse(
                "production_source",
                lang.t(
                    "This system has no production meter: production can only come from the microinverters.",
                ),
            );
            "microinverters"
        }
        Some((code, _)) => *code,
        None => {
            form.refuse(
                "production_source",
                lang.t("Choose microinverter measurements or the production meter."),
            );
            "microinverters"
        }
    };
    if form.has_errors() {
        return Err(form);
    }
    Ok(InstallerSettings {
        installer_reference,
        other_references,
        internet_connection,
        attachment_type,
        operational_date,
        weather_enabled: form.checked("weather_enabled"),
        production_source,
        kiosk_content: KioskContent {
            past_7_days: form.checked("kiosk_past_7_days"),
            daily_graph: form.checked("kiosk_daily_graph"),
            benefits: form.checked("kiosk_benefits"),
            description: form.checked("kiosk_description"),
        },
    })
}

pub async fn references(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SavedQuery>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "settings").await?;
    let lang = principal.lang();
    let form = references_values(&system.details);
    let notice = saved_notice(lang, query.saved.as_deref());
    let has_meter = has_production_meter(&state, id).await?;
    render(
        "system settings references",
        &ReferencesPage::new(chrome, system, form, notice, has_meter, lang),
    )
}

async fn has_production_meter(state: &AppState, id: u32) -> Result<bool, PortalError> {
    let registry = Arc::clone(state.registry());
    blocking(move || Ok(registry.has_production_meter(i64::from(id))?)).await
}

pub async fn save_references(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (form, csrf) = Entered::from_fields(fields);
    principal.check_csrf(csrf.as_deref())?;
    manageable(&state, &principal, id).await?;
    let (chrome, system) = load(&state, &principal, id, "settings").await?;
    let lang = principal.lang();
    let has_meter = has_production_meter(&state, id).await?;
    let settings = match parse_references(form, has_meter, today(&system)?, lang) {
        Ok(settings) => settings,
        Err(form) => {
            let page = ReferencesPage::new(chrome, system, form, None, has_meter, lang);
            return Ok(form_page(
                render("system settings references", &page)?,
                &page.form,
            ));
        }
    };
    let operational_changed =
        settings.operational_date.map(|d| d.to_string()) != system.details.operational_date;
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.save_installer_settings(i64::from(id), &settings, user, now)?)
    })
    .await?;
    if operational_changed {
        // The production check counts from the operational date; the next round judges
        // the system again. Nothing waits for it: the status is not on this section.
        state.query().rechecks().request(id);
    }
    Ok(Redirect::to(&format!("/systems/{id}/settings/references?saved=1")).into_response())
}

// ---------------------------------------------------------------- T4 estimate and threshold

pub struct MonthInput {
    pub name: String,
    pub label: String,
    pub value: String,
}

pub struct ArrayEstimate {
    pub name: String,
    pub field: String,
    pub months: Vec<MonthInput>,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "system/settings_estimate.html")]
struct EstimatePage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    form: Entered,
    system_months: Vec<MonthInput>,
    arrays: Vec<ArrayEstimate>,
    thresholds: Vec<Choice>,
    /// The open production issue's explanation, if the check found one.
    production_issue: Option<String>,
    /// The system is not judged yet (no estimate, no permission-to-operate date, or too
    /// little history), in words.
    not_judged: Option<String>,
}

fn month_name(index: usize) -> String {
    format!("estimate_{index}")
}

fn array_month_name(array_id: i64) -> impl Fn(usize) -> String {
    move |index| format!("array_{array_id}_estimate_{index}")
}

fn month_inputs(form: &Entered, name: impl Fn(usize) -> String, lang: Lang) -> Vec<MonthInput> {
    (1..=12)
        .map(|index| {
            let field = name(index);
            MonthInput {
                label: lang.t(MONTHS[index - 1]).to_owned(),
                value: form.get(&field).to_owned(),
                name: field,
            }
        })
        .collect()
}

/// The saved values as the form shows them.
fn estimate_values(
    details: &SystemDetails,
    estimates: &std::collections::BTreeMap<i64, [f64; 12]>,
) -> Entered {
    let mut form = Entered::default();
    form.set("estimate_level", details.estimate_level.clone());
    form.set(
        "annual_degradation_pct",
        details.annual_degradation_pct.to_string(),
    );
    form.set("threshold_pct", details.threshold_pct.to_string());
    form.set("threshold_days", details.threshold_days.to_string());
    for (array_id, months) in estimates {
        let name: Box<dyn Fn(usize) -> String> = if *array_id == 0 {
            Box::new(month_name)
        } else {
            Box::new(array_month_name(*array_id))
        };
        for (index, kwh) in months.iter().enumerate() {
            form.set(&name(index + 1), kwh.to_string());
        }
    }
    form
}

/// Checks the estimate and threshold form against the system's arrays; `Err` carries the
/// form with its errors.
pub fn parse_estimate(
    mut form: Entered,
    arrays: &[SystemArray],
    lang: Lang,
) -> Result<EstimateSettings, Entered> {
    let level = match form.get("estimate_level") {
        "system" => "system",
        "array" => "array",
        _ => {
            form.refuse(
                "estimate_level",
                lang.t("Choose a system-level or an array-level estimate."),
            );
            "system"
        }
    };
    let system_monthly_kwh = form.months(month_name, "estimate", lang);
    let mut array_monthly_kwh = Vec::new();
    for array in arrays {
        let field = format!("array_{}_estimate", array.id);
        if let Some(months) = form.months(array_month_name(array.id), &field, lang) {
            array_monthly_kwh.push((array.id, months));
        }
    }
    if level == "array" {
        if arrays.is_empty() {
            form.refuse(
                "estimate_level",
                lang.t("This system has no arrays yet: build them first, or enter a system-level estimate."),
            );
        } else if !form.has_errors() && array_monthly_kwh.iter().all(|(_, m)| m.is_none()) {
            form.refuse(
                "estimate_level",
                lang.t("Enter the estimate of at least one array, or choose the system-level estimate."),
            );
        }
    }
    let annual_degradation_pct = form.number(
        "annual_degradation_pct",
        0.0..=5.0,
        lang.t("A percentage from 0 to 5 (decimals allowed)."),
    );
    let threshold_pct = match form.get("threshold_pct").parse::<u8>() {
        Ok(pct) if THRESHOLD_PCTS.contains(&pct) => Some(pct),
        _ => {
            form.refuse(
                "threshold_pct",
                lang.t("Choose a threshold from 50 % to 95 % in steps of 5."),
            );
            None
        }
    };
    let threshold_days = match form.get("threshold_days") {
        "30" => Some(30),
        "90" => Some(90),
        _ => {
            form.refuse(
                "threshold_days",
                lang.t("Choose a period of 30 or 90 days."),
            );
            None
        }
    };
    match (
        system_monthly_kwh,
        annual_degradation_pct,
        threshold_pct,
        threshold_days,
    ) {
        (
            Some(system_monthly_kwh),
            Some(annual_degradation_pct),
            Some(threshold_pct),
            Some(threshold_days),
        ) if !form.has_errors() => Ok(EstimateSettings {
            level,
            system_monthly_kwh,
            array_monthly_kwh,
            annual_degradation_pct,
            threshold_pct,
            threshold_days,
        }),
        _ => Err(form),
    }
}

async fn estimate_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    form: Option<Entered>,
    notice: Option<String>,
) -> Result<EstimatePage, PortalError> {
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let (arrays, estimates, issue) = blocking(move || {
        let system_id = i64::from(id);
        let (issue, _) = registry.system_events(
            system_id,
            &EventFilter {
                state: EventState::Current,
                code: Some("production_issue".to_owned()),
                device_id: None,
                limit: 1,
                offset: 0,
            },
        )?;
        Ok((
            registry.system_arrays(system_id)?,
            registry.system_estimates(system_id)?,
            issue,
        ))
    })
    .await?;
    let form = form.unwrap_or_else(|| estimate_values(&system.details, &estimates));
    let details = &system.details;
    let has_estimate = if details.estimate_level == "array" {
        estimates.keys().any(|array| *array != 0)
    } else {
        estimates.contains_key(&0)
    };
    let not_judged = if !has_estimate {
        Some(lang.t("The production check is off: the system has no estimate at the level chosen."))
    } else if details.operational_date.is_none() {
        Some(lang.t("The production check waits for the permission-to-operate date (Installer reference and more)."))
    } else {
        None
    }
    .map(str::to_owned);
    let current: u8 = form.get("threshold_pct").parse().unwrap_or(90);
    let page = EstimatePage {
        sections: sections(lang, id, "estimate"),
        notice,
        system_months: month_inputs(&form, month_name, lang),
        arrays: arrays
            .iter()
            .map(|array| {
                let field = format!("array_{}_estimate", array.id);
                ArrayEstimate {
                    name: array.name.clone(),
                    months: month_inputs(&form, array_month_name(array.id), lang),
                    error: form.error(&field),
                    field,
                }
            })
            .collect(),
        thresholds: THRESHOLD_PCTS
            .iter()
            .map(|pct| Choice {
                value: pct.to_string(),
                label: format!("{pct} %"),
                selected: *pct == current,
            })
            .collect(),
        production_issue: issue.first().map(|event| {
            format!(
                "{} ({} {})",
                event.details,
                lang.t("since"),
                lang.time(event.started_us)
            )
        }),
        not_judged,
        form,
        chrome,
        system,
    };
    Ok(page)
}

pub async fn estimate(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<SavedQuery>,
) -> Result<Response, PortalError> {
    let notice = saved_notice(principal.lang(), query.saved.as_deref());
    let page = estimate_page(&state, &principal, id, None, notice).await?;
    render("system settings estimate", &page)
}

pub async fn save_estimate(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (form, csrf) = Entered::from_fields(fields);
    principal.check_csrf(csrf.as_deref())?;
    manageable(&state, &principal, id).await?;
    let registry = Arc::clone(state.registry());
    let arrays = blocking(move || Ok(registry.system_arrays(i64::from(id))?)).await?;
    let settings = match parse_estimate(form, &arrays, principal.lang()) {
        Ok(settings) => settings,
        Err(form) => {
            let page = estimate_page(&state, &principal, id, Some(form), None).await?;
            return Ok(form_page(
                render("system settings estimate", &page)?,
                &page.form,
            ));
        }
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.save_estimate_settings(i64::from(id), &settings, user, now)?)
    })
    .await?;
    // The status follows the new estimate at once: the running checks judge this system
    // again now rather than at their next scheduled round, and the page waits for it.
    let rechecks = state.query().rechecks();
    let ticket = rechecks.request(id);
    let saved = if rechecks.recorded(ticket, RECHECK_WAIT).await {
        "checked"
    } else {
        "pending"
    };
    Ok(Redirect::to(&format!("/systems/{id}/settings/estimate?saved={saved}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn entered(fields: &[(&str, &str)]) -> Entered {
        Entered::from_fields(
            fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
        .0
    }

    fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 5, 10)
    }

    const REFERENCES: &[(&str, &str)] = &[
        ("installer_reference", "SP-42"),
        ("other_references", "Utility 7781"),
        ("internet_connection", "wifi"),
        ("attachment_type", "rack_rail"),
        ("permission", "operational"),
        ("operational_date", "2025-06-01"),
        ("weather_enabled", "on"),
        ("production_source", "microinverters"),
        ("kiosk_past_7_days", "on"),
        ("kiosk_benefits", "on"),
    ];

    #[test]
    fn a_complete_references_form_is_read_whole() {
        let settings = parse_references(entered(REFERENCES), false, today(), Lang::En).unwrap();
        assert_eq!(settings.installer_reference, "SP-42");
        assert_eq!(settings.internet_connection, "wifi");
        assert_eq!(settings.attachment_type, "rack_rail");
        assert_eq!(
            settings.operational_date.map(|d| d.to_string()),
            Some("2025-06-01".to_owned())
        );
        assert!(settings.weather_enabled);
        assert_eq!(
            settings.kiosk_content,
            KioskContent {
                past_7_days: true,
                daily_graph: false,
                benefits: true,
                description: false,
            }
        );
        let not_yet = parse_references(
            entered(&[
                ("internet_connection", "ethernet"),
                ("permission", "not_operational"),
                ("operational_date", "garbage is ignored"),
                ("production_source", "microinverters"),
            ]),
            false,
            today(),
            Lang::En,
        )
        .unwrap();
        assert_eq!(not_yet.operational_date, None);
        assert!(!not_yet.weather_enabled);
    }

    #[test]
    fn each_bad_references_field_gets_its_own_error() {
        let mut fields = REFERENCES.to_vec();
        let long = "x".repeat(101);
        fields.retain(|(k, _)| {
            !matches!(
                *k,
                "installer_reference"
                    | "internet_connection"
                    | "operational_date"
                    | "production_source"
            )
        });
        fields.extend([
            ("installer_reference", long.as_str()),
            ("internet_connection", "pigeon"),
            ("operational_date", "2026-13-01"),
            ("production_source", "meter"),
        ]);
        let form = parse_references(entered(&fields), false, today(), Lang::En).unwrap_err();
        for field in [
            "installer_reference",
            "internet_connection",
            "operational_date",
            "production_source",
        ] {
            assert!(form.error(field).is_some(), "{field}: {:?}", form.errors);
        }
        assert!(form.error("attachment_type").is_none());
        // The entered values come back as typed.
        assert_eq!(form.get("internet_connection"), "pigeon");
        // A meter makes the meter a valid source; a date too far ahead is not.
        let mut fields = REFERENCES.to_vec();
        fields.retain(|(k, _)| !matches!(*k, "production_source" | "operational_date"));
        fields.extend([
            ("production_source", "meter"),
            ("operational_date", "2027-06-01"),
        ]);
        let form = parse_references(entered(&fields), true, today(), Lang::Fr).unwrap_err();
        assert!(form.error("production_source").is_none());
        assert_eq!(
            form.error("operational_date").as_deref(),
            Some(Lang::Fr.t("The date is more than a year ahead."))
        );
        let form = parse_references(
            entered(&[
                ("internet_connection", "wifi"),
                ("production_source", "meter"),
            ]),
            true,
            today(),
            Lang::En,
        )
        .unwrap_err();
        assert!(form.error("permission").is_some());
    }

    fn arrays() -> Vec<SystemArray> {
        [(11, "South roof"), (12, "Garage")]
            .into_iter()
            .map(|(id, name)| SystemArray {
                id,
                name: name.to_owned(),
                tilt_deg: 30.0,
                azimuth_deg: 180.0,
                grid_rows: 2,
                grid_columns: 5,
                modules: 10,
            })
            .collect()
    }

    fn estimate_fields(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = (1..=12)
            .map(|m| (format!("estimate_{m}"), format!("{}", 100 + m)))
            .collect();
        fields.extend(
            [
                ("estimate_level", "system"),
                ("annual_degradation_pct", "0,75"),
                ("threshold_pct", "85"),
                ("threshold_days", "30"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        for (k, v) in extra {
            fields.retain(|(name, _)| name != k);
            fields.push(((*k).to_owned(), (*v).to_owned()));
        }
        fields
    }

    fn parse(fields: Vec<(String, String)>) -> Result<EstimateSettings, Entered> {
        parse_estimate(Entered::from_fields(fields).0, &arrays(), Lang::En)
    }

    #[test]
    fn a_system_level_estimate_with_its_threshold_is_read() {
        let settings = parse(estimate_fields(&[])).unwrap();
        assert_eq!(settings.level, "system");
        assert_eq!(settings.system_monthly_kwh.map(|m| m[11]), Some(112.0));
        assert_eq!(settings.annual_degradation_pct, 0.75);
        assert_eq!((settings.threshold_pct, settings.threshold_days), (85, 30));
        // Arrays without an estimate keep none.
        assert_eq!(settings.array_monthly_kwh, vec![(11, None), (12, None)]);
    }

    #[test]
    fn array_level_estimates_need_an_array_with_twelve_months() {
        let form = parse(estimate_fields(&[("estimate_level", "array")])).unwrap_err();
        assert!(form.error("estimate_level").is_some());
        let mut extra: Vec<(String, String)> = (1..=12)
            .map(|m| (format!("array_12_estimate_{m}"), "40".to_owned()))
            .collect();
        extra.push(("estimate_level".into(), "array".into()));
        let extra: Vec<(&str, &str)> = extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let settings = parse(estimate_fields(&extra)).unwrap();
        assert_eq!(settings.level, "array");
        assert_eq!(settings.array_monthly_kwh[1], (12, Some([40.0; 12])));
        let no_arrays = parse_estimate(
            Entered::from_fields(estimate_fields(&[("estimate_level", "array")])).0,
            &[],
            Lang::En,
        )
        .unwrap_err();
        assert!(
            no_arrays
                .error("estimate_level")
                .unwrap()
                .contains("no arrays")
        );
    }

    #[test]
    fn bad_estimate_fields_are_each_refused() {
        for (field, value, error_on) in [
            ("estimate_3", "", "estimate"),
            ("estimate_4", "-5", "estimate"),
            ("estimate_5", "lots", "estimate"),
            ("annual_degradation_pct", "5.5", "annual_degradation_pct"),
            ("annual_degradation_pct", "", "annual_degradation_pct"),
            ("threshold_pct", "92", "threshold_pct"),
            ("threshold_pct", "100", "threshold_pct"),
            ("threshold_pct", "45", "threshold_pct"),
            ("threshold_days", "60", "threshold_days"),
            ("estimate_level", "fleet", "estimate_level"),
            ("array_11_estimate_1", "10", "array_11_estimate"),
        ] {
            let form = parse(estimate_fields(&[(field, value)])).unwrap_err();
            assert!(
                form.error(error_on).is_some(),
                "{field}={value:?}: {:?}",
                form.errors
            );
        }
        // No estimate at all is allowed: the production check is then off.
        let blank: Vec<(String, String)> = estimate_fields(&[])
            .into_iter()
            .filter(|(k, _)| !k.starts_with("estimate_") || k == "estimate_level")
            .collect();
        assert_eq!(parse(blank).unwrap().system_monthly_kwh, None);
    }

    fn references_names() -> Vec<String> {
        REFERENCES
            .iter()
            .map(|(name, _)| name)
            .chain(&["kiosk_daily_graph", "kiosk_description"])
            .map(|name| (*name).to_owned())
            .collect()
    }

    fn estimate_names() -> Vec<String> {
        let mut names: Vec<String> = estimate_fields(&[]).into_iter().map(|(n, _)| n).collect();
        for array in [11, 12, 99] {
            names.extend((1..=12).map(array_month_name(array)));
        }
        names
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any "Installer reference and more" form is read within its limits, or every
        /// problem is reported on its field.
        #[test]
        fn any_references_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(form_fuzz::owned(REFERENCES), references_names()),
            has_meter in any::<bool>(),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            match parse_references(Entered::from_fields(fields).0, has_meter, today(), lang) {
                Ok(settings) => {
                    prop_assert!(settings.installer_reference.chars().count() <= 100);
                    prop_assert!(settings.other_references.chars().count() <= 500);
                    prop_assert!(
                        CONNECTIONS.iter().any(|(code, _)| *code == settings.internet_connection)
                    );
                    prop_assert!(
                        ATTACHMENT_TYPES.iter().any(|(code, _)| *code == settings.attachment_type)
                    );
                    prop_assert!(has_meter || settings.production_source != "meter");
                    if let Some(date) = settings.operational_date {
                        prop_assert!(date >= CivilDate::from_ymd(1990, 1, 1).unwrap());
                        prop_assert!(date <= CivilDate::from_ymd(2027, 5, 10).unwrap());
                    }
                }
                Err(form) => form_fuzz::explained(&form.errors)?,
            }
        }

        /// Any estimate and threshold form is read within its limits, or every problem is
        /// reported on its field.
        #[test]
        fn any_estimate_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(estimate_fields(&[]), estimate_names()),
            with_arrays in any::<bool>(),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let arrays = if with_arrays { arrays() } else { Vec::new() };
            match parse_estimate(Entered::from_fields(fields).0, &arrays, lang) {
                Ok(settings) => {
                    prop_assert!(settings.level == "system" || !arrays.is_empty());
                    prop_assert!(THRESHOLD_PCTS.contains(&settings.threshold_pct));
                    prop_assert!([30, 90].contains(&settings.threshold_days));
                    prop_assert!((0.0..=5.0).contains(&settings.annual_degradation_pct));
                    let estimates = settings
                        .system_monthly_kwh
                        .into_iter()
                        .chain(settings.array_monthly_kwh.iter().filter_map(|(_, m)| *m));
                    for kwh in estimates.flatten() {
                        prop_assert!((0.0..=MAX_MONTH_KWH).contains(&kwh));
                    }
                }
                Err(form) => form_fuzz::explained(&form.errors)?,
            }
        }
    }
}
