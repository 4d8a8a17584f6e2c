//! Activations (F3): systems on their way through the four stages, the activation form
//! that creates ("Add new system") or edits one, and its checklist and production
//! estimate. The checklist's later steps complete by themselves as the system's gateway
//! reports (`sunfleet_query::activation`).

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{ACTIVATION_STEPS, Activation, ActivationForm, OwnerDetails};
use sunfleet_engine::time::CivilDate;

use super::{Chrome, render, valid_email};
use crate::access::{Need, authorize};
use crate::fleet::{self, STAGES, stage_label};
use crate::i18n::Lang;
use crate::mail::compose::owner_access_mail;
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

pub const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub fn step_label(step: &str) -> &'static str {
    match step {
        "owner_entered" => "Owner entered",
        "location_entered" => "Location entered",
        "gateways_entered" => "Gateways entered",
        "gateways_reported" => "Gateways reported",
        "good_communication" => "Good communication established",
        "operation_verified" => "System operation verified",
        "arrays_built" => "Arrays built",
        "system_operational" => "System operational",
        "owner_access_granted" => "Access granted to owner",
        _ => "Unknown step",
    }
}

/// Percentage of the checklist done.
pub fn percent_complete(done: usize) -> u32 {
    (done.min(ACTIVATION_STEPS.len()) * 100 / ACTIVATION_STEPS.len()) as u32
}

// ---------------------------------------------------------------- the list

pub struct ActivationRow {
    pub id: u32,
    pub name: String,
    pub stage: &'static str,
    pub stage_code: &'static str,
    pub percent: u32,
    pub city: String,
}

pub struct StageTab {
    pub code: &'static str,
    pub label: &'static str,
    pub count: usize,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "activations.html")]
struct ActivationsPage {
    chrome: Chrome,
    tabs: Vec<StageTab>,
    all_selected: bool,
    in_progress_selected: bool,
    rows: Vec<ActivationRow>,
    can_add: bool,
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    stage: Option<String>,
}

/// Activating systems of the principal's scope; `stage` filters ("all" includes Ready).
pub async fn activation_rows(
    state: &AppState,
    principal: &Principal,
    stage: Option<&str>,
) -> Result<(Vec<ActivationRow>, HashMap<&'static str, usize>), PortalError> {
    let systems = fleet::systems(state.query(), &principal.scope).await?;
    let registry = Arc::clone(state.registry());
    let steps = blocking(move || Ok(registry.activation_step_counts()?)).await?;
    let lang = principal.lang();
    let mut counts = HashMap::new();
    for s in &systems {
        *counts.entry(stage_label_code(&s.stage)).or_insert(0) += 1;
    }
    let rows = systems
        .iter()
        .filter(|s| match stage {
            Some("all") => true,
            Some(stage) => s.stage == stage,
            None => fleet::activating(s),
        })
        .map(|s| ActivationRow {
            id: s.id,
            name: s.name.clone(),
            stage: lang.t(stage_label(&s.stage)),
            stage_code: stage_label_code(&s.stage),
            percent: percent_complete(steps.get(&i64::from(s.id)).copied().unwrap_or(0) as usize),
            city: s.city.clone(),
        })
        .collect();
    Ok((rows, counts))
}

fn stage_label_code(stage: &str) -> &'static str {
    STAGES
        .iter()
        .find(|(code, _)| *code == stage)
        .map_or("started", |(code, _)| code)
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::FleetPages)?;
    let stage = query.stage.as_deref().filter(|s| !s.is_empty());
    if let Some(stage) = stage
        && stage != "all"
        && !STAGES.iter().any(|(code, _)| *code == stage)
    {
        return Err(PortalError::BadRequest {
            message: format!(
                "unknown stage {stage:?}: started, connecting, verifying, ready or all"
            ),
        });
    }
    let (rows, counts) = activation_rows(&state, &principal, stage).await?;
    let tabs = STAGES
        .iter()
        .map(|(code, label)| StageTab {
            code,
            label,
            count: counts.get(code).copied().unwrap_or(0),
            selected: stage == Some(*code),
        })
        .collect();
    render(
        "activations",
        &ActivationsPage {
            chrome: Chrome::new(&principal, "Activations", "activations"),
            tabs,
            all_selected: stage == Some("all"),
            in_progress_selected: stage.is_none(),
            rows,
            can_add: authorize(&principal, Need::ActivateSystems).is_ok(),
        },
    )
}

// ---------------------------------------------------------------- the form

/// The form's fields as typed (shown again with errors).
#[derive(Debug, Clone, Default)]
pub struct FormValues(HashMap<String, String>);

impl FormValues {
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |v| v.trim())
    }

    pub fn checked(&self, name: &str) -> bool {
        !self.get(name).is_empty()
    }

    pub fn month(&self, index: &usize) -> &str {
        self.get(&format!("estimate_{}", index + 1))
    }

    fn from_activation(a: &Activation) -> Self {
        let f = &a.form;
        let mut v = HashMap::new();
        let mut set = |k: &str, value: String| {
            v.insert(k.to_owned(), value);
        };
        set("name", f.name.clone());
        set("kind", f.kind.to_owned());
        set("installer_reference", f.installer_reference.clone());
        if f.third_party_owned {
            set("third_party_owned", "on".into());
        }
        if let Some(owner) = &f.owner {
            set("owner_given_name", owner.given_name.clone());
            set("owner_family_name", owner.family_name.clone());
            set("owner_email", owner.email.clone());
            set("owner_phone", owner.phone.clone());
        }
        set("street_address", f.street_address.clone());
        set("city", f.city.clone());
        set("region", f.region.clone());
        set("postal_code", f.postal_code.clone());
        set("country", f.country.clone());
        set(
            "latitude",
            f.latitude.map(|x| x.to_string()).unwrap_or_default(),
        );
        set(
            "longitude",
            f.longitude.map(|x| x.to_string()).unwrap_or_default(),
        );
        set("time_zone", f.time_zone.clone());
        set(
            "gateway_serials",
            f.gateway_serials
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        );
        set(
            "expected_microinverters",
            f.expected_microinverters
                .map(|n| n.to_string())
                .unwrap_or_default(),
        );
        set(
            "operational_date",
            f.operational_date
                .map(|d| d.to_string())
                .unwrap_or_default(),
        );
        set(
            "annual_degradation_pct",
            f.annual_degradation_pct.to_string(),
        );
        if let Some(estimate) = &f.monthly_estimate_kwh {
            for (i, kwh) in estimate.iter().enumerate() {
                set(&format!("estimate_{}", i + 1), kwh.to_string());
            }
        }
        Self(v)
    }
}

/// Field → message.
pub type FieldErrors = Vec<(&'static str, String)>;

/// Checks the form and builds what the registry saves; every problem is reported with
/// its field, nothing is saved unless there are none.
pub fn parse_form(values: &FormValues, lang: Lang) -> Result<ActivationForm, FieldErrors> {
    let mut errors: FieldErrors = Vec::new();
    let text = |name: &str, max: usize, errors: &mut FieldErrors, field: &'static str| {
        let value = values.get(name);
        if value.chars().count() > max {
            errors.push((field, lang.fill("At most {} characters.", &[&max])));
        }
        value.to_owned()
    };
    let name = text("name", 200, &mut errors, "name");
    if name.is_empty() {
        errors.push(("name", "Enter the system's name.".into()));
    }
    let kind = match values.get("kind") {
        "" | "residential" => "residential",
        "commercial" => "commercial",
        _ => {
            errors.push(("kind", "Choose residential or commercial.".into()));
            "residential"
        }
    };
    let installer_reference = text(
        "installer_reference",
        100,
        &mut errors,
        "installer_reference",
    );
    let owner_given_name = text("owner_given_name", 100, &mut errors, "owner_given_name");
    let owner_family_name = text("owner_family_name", 100, &mut errors, "owner_family_name");
    let owner_email = text("owner_email", 254, &mut errors, "owner_email");
    let owner_phone = text("owner_phone", 40, &mut errors, "owner_phone");
    let owner =
        if owner_email.is_empty() && owner_given_name.is_empty() && owner_family_name.is_empty() {
            None
        } else {
            if !valid_email(&owner_email) {
                errors.push((
                    "owner_email",
                    "Enter the owner's e-mail address (name@example.com).".into(),
                ));
            }
            if owner_family_name.is_empty() {
                errors.push(("owner_family_name", "Enter the owner's family name.".into()));
            }
            Some(OwnerDetails {
                given_name: owner_given_name,
                family_name: owner_family_name,
                email: owner_email,
                phone: owner_phone,
            })
        };
    let coordinate = |name: &'static str, limit: f64, errors: &mut FieldErrors| -> Option<f64> {
        let raw = values.get(name);
        if raw.is_empty() {
            return None;
        }
        match raw.replace(',', ".").parse::<f64>() {
            Ok(x) if x.is_finite() && x.abs() <= limit => Some(x),
            _ => {
                errors.push((
                    name,
                    lang.fill("A number from -{} to {}.", &[&limit, &limit]),
                ));
                None
            }
        }
    };
    let latitude = coordinate("latitude", 90.0, &mut errors);
    let longitude = coordinate("longitude", 180.0, &mut errors);
    if latitude.is_some() != longitude.is_some() {
        errors.push(("longitude", "Enter both coordinates, or neither.".into()));
    }
    let time_zone = match values.get("time_zone") {
        "" => "UTC".to_owned(),
        zone if jiff::tz::TimeZone::get(zone).is_ok() => zone.to_owned(),
        zone => {
            errors.push((
                "time_zone",
                lang.fill(
                    "{} is not a time zone; use a name such as Europe/Paris.",
                    &[&format!("{zone:?}")],
                ),
            ));
            String::new()
        }
    };
    let mut gateway_serials: Vec<Serial> = Vec::new();
    for word in values
        .get("gateway_serials")
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
    {
        match word.parse::<Serial>() {
            Ok(serial) if gateway_serials.contains(&serial) => {
                errors.push((
                    "gateway_serials",
                    lang.fill("{} is listed twice.", &[&word]),
                ));
            }
            Ok(serial) => gateway_serials.push(serial),
            Err(_) => errors.push((
                "gateway_serials",
                lang.fill(
                    "{} is not a serial number (1 to 12 digits).",
                    &[&format!("{word:?}")],
                ),
            )),
        }
    }
    if gateway_serials.len() > 10 {
        errors.push(("gateway_serials", "At most 10 gateways per system.".into()));
    }
    let expected_microinverters = match values.get("expected_microinverters") {
        "" => None,
        raw => match raw.parse::<u32>() {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => {
                errors.push((
                    "expected_microinverters",
                    "A whole number from 1 to 10000.".into(),
                ));
                None
            }
        },
    };
    let operational_date = match values.get("operational_date") {
        "" => None,
        raw => match raw.parse::<CivilDate>() {
            Ok(date) => Some(date),
            Err(_) => {
                errors.push(("operational_date", "A date as YYYY-MM-DD.".into()));
                None
            }
        },
    };
    let annual_degradation_pct = match values.get("annual_degradation_pct") {
        "" => 0.5,
        raw => match raw.replace(',', ".").parse::<f64>() {
            Ok(x) if (0.0..=5.0).contains(&x) => x,
            _ => {
                errors.push(("annual_degradation_pct", "A percentage from 0 to 5.".into()));
                0.5
            }
        },
    };
    let mut estimate = [0.0; 12];
    let mut months_given = 0;
    for (i, slot) in estimate.iter_mut().enumerate() {
        let raw = values.get(&format!("estimate_{}", i + 1));
        if raw.is_empty() {
            continue;
        }
        match raw.replace(',', ".").parse::<f64>() {
            Ok(x) if x.is_finite() && (0.0..=10_000_000.0).contains(&x) => {
                *slot = x;
                months_given += 1;
            }
            _ => {
                errors.push((
                    "estimate",
                    lang.fill("{}: kWh from 0 to 10000000.", &[&lang.t(MONTHS[i])]),
                ));
            }
        }
    }
    if months_given != 0 && months_given != 12 {
        errors.push(("estimate", "Enter all twelve months, or none.".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ActivationForm {
        name,
        kind,
        installer_reference,
        third_party_owned: values.checked("third_party_owned"),
        owner,
        street_address: values.get("street_address").to_owned(),
        city: values.get("city").to_owned(),
        region: values.get("region").to_owned(),
        postal_code: values.get("postal_code").to_owned(),
        country: values.get("country").to_owned(),
        latitude,
        longitude,
        time_zone,
        gateway_serials,
        expected_microinverters,
        operational_date,
        annual_degradation_pct,
        monthly_estimate_kwh: (months_given == 12).then_some(estimate),
    })
}

pub struct StepRow {
    pub label: &'static str,
    pub stage: &'static str,
    pub done_at: Option<String>,
}

pub struct EstimateRow {
    pub month: &'static str,
    pub kwh: String,
    pub degraded_kwh: String,
}

#[derive(Template)]
#[template(path = "activation.html")]
struct ActivationPage {
    chrome: Chrome,
    /// `None`: the "Add new system" form.
    system_id: Option<i64>,
    stage: &'static str,
    percent: u32,
    steps: Vec<StepRow>,
    microinverters: u32,
    estimate: Vec<EstimateRow>,
    estimate_year: String,
    values: FormValues,
    errors: FieldErrors,
    editable: bool,
    saved: bool,
    months: [&'static str; 12],
    /// Where the owner's access was just e-mailed.
    owner_access_sent: Option<String>,
}

impl ActivationPage {
    fn error(&self, field: &str) -> Option<String> {
        let messages: Vec<&str> = self
            .errors
            .iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, m)| self.chrome.t(m))
            .collect();
        (!messages.is_empty()).then(|| messages.join(" "))
    }
}

fn blank_page(principal: &Principal, values: FormValues, errors: FieldErrors) -> ActivationPage {
    ActivationPage {
        chrome: Chrome::new(principal, "Add new system", "activations"),
        system_id: None,
        stage: principal.lang().t("Started"),
        percent: 0,
        steps: Vec::new(),
        microinverters: 0,
        estimate: Vec::new(),
        estimate_year: String::new(),
        values,
        errors,
        editable: true,
        saved: false,
        months: MONTHS,
        owner_access_sent: None,
    }
}

fn with_status(mut response: Response, errors: &FieldErrors) -> Response {
    if !errors.is_empty() {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

pub async fn new_form(principal: Principal) -> Result<Response, PortalError> {
    authorize(&principal, Need::ActivateSystems)?;
    let mut values = FormValues::default();
    values
        .0
        .insert("annual_degradation_pct".into(), "0.5".into());
    values.0.insert("time_zone".into(), "Europe/Paris".into());
    render("activation", &blank_page(&principal, values, Vec::new()))
}

fn installer_of(principal: &Principal) -> Result<i64, PortalError> {
    principal
        .user
        .company_id
        .ok_or_else(|| PortalError::Forbidden {
            reason: "only an installer company's members activate systems".to_owned(),
        })
}

/// The form's fields and its CSRF token.
fn form_values(fields: Vec<(String, String)>) -> (FormValues, Option<String>) {
    let mut map: HashMap<String, String> = fields.into_iter().collect();
    let csrf = map.remove("csrf_token");
    (FormValues(map), csrf)
}

/// A registry refusal that belongs to a field (a serial taken) becomes its error.
fn field_error(error: PortalError, lang: Lang) -> Result<FieldErrors, PortalError> {
    match error {
        PortalError::Engine(sunfleet_engine::Error::SerialTaken { serial, .. }) => Ok(vec![(
            "gateway_serials",
            lang.fill("{} is already registered to a system.", &[&serial]),
        )]),
        other => Err(other),
    }
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (values, csrf) = form_values(fields);
    principal.check_csrf(csrf.as_deref())?;
    authorize(&principal, Need::ActivateSystems)?;
    let installer = installer_of(&principal)?;
    let form = match parse_form(&values, principal.lang()) {
        Ok(form) => form,
        Err(errors) => {
            return form_page(&blank_page(&principal, values, errors));
        }
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let created = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.create_activation(installer, &form, user, now)?)
    })
    .await;
    match created {
        Ok(id) => Ok(saved_page(&state, id).await),
        Err(error) => {
            let errors = field_error(error, principal.lang())?;
            form_page(&blank_page(&principal, values, errors))
        }
    }
}

/// The form again with its field errors (400 when there are any).
fn form_page(page: &ActivationPage) -> Result<Response, PortalError> {
    Ok(with_status(render("activation", page)?, &page.errors))
}

/// After a save: the system's devices resolve at once, and the browser goes to its page.
async fn saved_page(state: &AppState, id: i64) -> Response {
    load_devices(state, id).await;
    Redirect::to(&format!("/activations/{id}?saved=1")).into_response()
}

/// Lets the write path resolve the system's devices at once. The system is saved whatever
/// happens here: a failure is logged, and the next restart loads the directory anyway.
async fn load_devices(state: &AppState, system_id: i64) {
    let query = Arc::clone(state.query());
    let loaded = blocking(move || Ok(query.load_system_devices(system_id)?)).await;
    if let Err(error) = loaded {
        tracing::error!(system_id, %error, "the new devices resolve only after a restart");
    }
}

pub(crate) async fn load(
    state: &AppState,
    principal: &Principal,
    id: i64,
) -> Result<Activation, PortalError> {
    let system = u32::try_from(id).map_err(|_| PortalError::NotFound {
        what: format!("system {id}"),
    })?;
    authorize(principal, Need::System(system))?;
    let registry = Arc::clone(state.registry());
    let mut activation = blocking(move || Ok(registry.activation(id)?))
        .await?
        .ok_or_else(|| PortalError::NotFound {
            what: format!("system {id}"),
        })?;
    // The owner's contact details are for the installer's people (and the owner), not for
    // subcontractors or the platform's operator.
    if !is_installer_of(principal, &activation) && principal.user.owner_id.is_none() {
        activation.form.owner = None;
    }
    Ok(activation)
}

fn is_installer_of(principal: &Principal, activation: &Activation) -> bool {
    principal.user.company_id == Some(activation.installer_id)
        && authorize(principal, Need::ActivateSystems).is_ok()
}

fn details_page(
    principal: &Principal,
    activation: &Activation,
    values: FormValues,
    errors: FieldErrors,
    saved: bool,
) -> ActivationPage {
    let lang = principal.lang();
    let steps: Vec<StepRow> = ACTIVATION_STEPS
        .iter()
        .map(|(step, stage)| StepRow {
            label: lang.t(step_label(step)),
            stage: lang.t(stage_label(stage)),
            done_at: activation.steps.get(*step).map(|t| lang.time(*t)),
        })
        .collect();
    let done = steps.iter().filter(|s| s.done_at.is_some()).count();
    let today = CivilDate::of_timestamp(sunfleet_engine::time::now_micros());
    let years = activation
        .form
        .operational_date
        .map(|d| ((today.days_since_epoch() - d.days_since_epoch()).max(0) / 365) as i32)
        .unwrap_or(0);
    let factor = (1.0 - activation.form.annual_degradation_pct / 100.0).powi(years);
    let estimate = activation
        .form
        .monthly_estimate_kwh
        .map(|months| {
            months
                .iter()
                .zip(MONTHS)
                .map(|(kwh, month)| EstimateRow {
                    month: lang.t(month),
                    kwh: lang.decimal(*kwh, 0),
                    degraded_kwh: lang.decimal(kwh * factor, 0),
                })
                .collect()
        })
        .unwrap_or_default();
    let editable = is_installer_of(principal, activation);
    let mut chrome = Chrome::new(principal, "Activations", "activations");
    // A system's name is data, not a wording to translate.
    chrome.title = activation.form.name.clone();
    ActivationPage {
        chrome,
        system_id: Some(activation.system_id),
        stage: lang.t(stage_label(&activation.stage)),
        percent: percent_complete(done),
        steps,
        microinverters: activation.microinverters,
        estimate,
        estimate_year: match lang {
            Lang::En => format!(
                "year {} of operation: {} annual degradation applied {years} time(s)",
                years + 1,
                lang.percent(activation.form.annual_degradation_pct, 1)
            ),
            Lang::Fr => format!(
                "année {} d’exploitation : dégradation annuelle de {} appliquée {years} fois",
                years + 1,
                lang.percent(activation.form.annual_degradation_pct, 1)
            ),
        },
        values,
        errors,
        editable,
        saved,
        months: MONTHS,
        owner_access_sent: None,
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DetailsQuery {
    saved: Option<String>,
}

pub async fn details(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Query(query): Query<DetailsQuery>,
) -> Result<Response, PortalError> {
    let activation = load(&state, &principal, id).await?;
    let values = FormValues::from_activation(&activation);
    render(
        "activation",
        &details_page(
            &principal,
            &activation,
            values,
            Vec::new(),
            query.saved.is_some(),
        ),
    )
}

#[derive(Debug, Deserialize)]
pub struct OwnerAccessForm {
    csrf_token: Option<String>,
}

/// "Send system access to owner" (C1): the owner's sign-in is made if needed, and a welcome
/// mail with a one-time link that sets their password is queued for them, in their
/// language. The link is a credential for the owner's account: it goes only into the mail
/// (and, until delivered, the outbox the platform administrator reads), never onto this
/// page; the page says where it was sent.
pub async fn send_owner_access(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Form(form): Form<OwnerAccessForm>,
) -> Result<Response, PortalError> {
    principal.check_csrf(form.csrf_token.as_deref())?;
    let activation = load(&state, &principal, id).await?;
    if !is_installer_of(&principal, &activation) {
        return Err(PortalError::Forbidden {
            reason: "only the installer of a system gives its owner access".to_owned(),
        });
    }
    let installer = activation.installer_id;
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let base = state.public_base();
    let sent = blocking(move || {
        let contact = registry.company_contact(installer)?.unwrap_or_default();
        let now = sunfleet_engine::time::now_micros();
        Ok(
            registry.send_owner_access(installer, id, user, now, |access| {
                owner_access_mail(access, &base, &contact)
            })?,
        )
    })
    .await;
    let mut errors = Vec::new();
    let sent_to = match sent {
        Ok(owner) => Some(owner.email),
        Err(PortalError::Engine(sunfleet_engine::Error::NoOwnerSignIn { .. })) => {
            errors.push((
                "owner_email",
                principal
                    .lang()
                    .t("This owner cannot get a sign-in: enter an owner, with an e-mail address no other account uses.")
                    .to_owned(),
            ));
            None
        }
        Err(error) => return Err(error),
    };
    let values = FormValues::from_activation(&activation);
    let mut page = details_page(&principal, &activation, values, errors, false);
    page.owner_access_sent = sent_to;
    form_page(&page)
}

pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<i64>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    let (values, csrf) = form_values(fields);
    principal.check_csrf(csrf.as_deref())?;
    authorize(&principal, Need::ActivateSystems)?;
    let activation = load(&state, &principal, id).await?;
    let installer = installer_of(&principal)?;
    if activation.installer_id != installer {
        return Err(PortalError::Forbidden {
            reason: "only the installer of a system edits its activation".to_owned(),
        });
    }
    let form = match parse_form(&values, principal.lang()) {
        Ok(form) => form,
        Err(errors) => {
            return form_page(&details_page(
                &principal,
                &activation,
                values,
                errors,
                false,
            ));
        }
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let saved = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.update_activation(installer, id, &form, user, now)?)
    })
    .await;
    match saved {
        Ok(()) => Ok(saved_page(&state, id).await),
        Err(error) => {
            let errors = field_error(error, principal.lang())?;
            form_page(&details_page(
                &principal,
                &activation,
                values,
                errors,
                false,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn values(pairs: &[(&str, &str)]) -> FormValues {
        FormValues(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_complete_form_becomes_an_activation() {
        let mut pairs = vec![
            ("name", "Dupont Residence"),
            ("kind", "residential"),
            ("owner_given_name", "Marie"),
            ("owner_family_name", "Dupont"),
            ("owner_email", "marie@example.fr"),
            ("street_address", "3 rue des Lilas"),
            ("city", "Lyon"),
            ("latitude", "45,76"),
            ("longitude", "4.84"),
            ("time_zone", "Europe/Paris"),
            ("gateway_serials", "121999000001, 121999000002"),
            ("expected_microinverters", "12"),
            ("operational_date", "2026-06-01"),
        ];
        let months: Vec<String> = (1..=12).map(|m| format!("estimate_{m}")).collect();
        for m in &months {
            pairs.push((m.as_str(), "400"));
        }
        let form = parse_form(&values(&pairs), Lang::En).unwrap();
        assert_eq!(form.gateway_serials.len(), 2);
        assert_eq!(form.latitude, Some(45.76));
        assert_eq!(form.expected_microinverters, Some(12));
        assert_eq!(form.monthly_estimate_kwh, Some([400.0; 12]));
        assert_eq!(form.owner.unwrap().email, "marie@example.fr");
    }

    #[test]
    fn bad_fields_are_each_reported() {
        let errors = parse_form(
            &values(&[
                ("name", ""),
                ("owner_email", "not-an-address"),
                ("owner_family_name", "X"),
                ("latitude", "91"),
                ("longitude", "2"),
                ("time_zone", "Mars/Olympus"),
                ("gateway_serials", "12x 1234567890123"),
                ("estimate_1", "100"),
            ]),
            Lang::En,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        for field in [
            "name",
            "owner_email",
            "latitude",
            "time_zone",
            "gateway_serials",
            "estimate",
        ] {
            assert!(fields.contains(&field), "{field} missing from {errors:?}");
        }
        assert_eq!(
            errors
                .iter()
                .filter(|(f, _)| *f == "gateway_serials")
                .count(),
            2,
            "both bad serials are named"
        );
    }

    /// Every field of the form, filled in well.
    fn complete() -> Vec<(String, String)> {
        let mut fields = form_fuzz::owned(&[
            ("name", "Dupont Residence"),
            ("kind", "residential"),
            ("installer_reference", "SP-42"),
            ("third_party_owned", "on"),
            ("owner_given_name", "Marie"),
            ("owner_family_name", "Dupont"),
            ("owner_email", "marie@example.fr"),
            ("owner_phone", "+33 6 12 34 56 78"),
            ("street_address", "3 rue des Lilas"),
            ("city", "Lyon"),
            ("region", "Rhône"),
            ("postal_code", "69001"),
            ("country", "FR"),
            ("latitude", "45,76"),
            ("longitude", "4.84"),
            ("time_zone", "Europe/Paris"),
            ("gateway_serials", "121999000001, 121999000002"),
            ("expected_microinverters", "12"),
            ("operational_date", "2026-06-01"),
            ("annual_degradation_pct", "0.5"),
        ]);
        fields.extend((1..=12).map(|m| (format!("estimate_{m}"), "400".to_owned())));
        fields
    }

    fn field_names() -> Vec<String> {
        complete().into_iter().map(|(name, _)| name).collect()
    }

    #[test]
    fn the_complete_form_is_accepted() {
        let values = FormValues(complete().into_iter().collect());
        assert!(parse_form(&values, Lang::En).is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any posted form becomes an activation within the form's limits, or every
        /// problem is reported on its field.
        #[test]
        fn any_activation_form_is_read_or_refused_with_messages(
            fields in form_fuzz::form(complete(), field_names()),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let values = FormValues(fields.into_iter().collect());
            match parse_form(&values, lang) {
                Ok(form) => {
                    prop_assert!(!form.name.is_empty() && form.name.chars().count() <= 200);
                    prop_assert!(form.gateway_serials.len() <= 10);
                    let mut serials = form.gateway_serials.clone();
                    serials.sort();
                    serials.dedup();
                    prop_assert_eq!(serials.len(), form.gateway_serials.len());
                    prop_assert_eq!(form.latitude.is_some(), form.longitude.is_some());
                    prop_assert!(form.latitude.is_none_or(|x| x.is_finite() && x.abs() <= 90.0));
                    prop_assert!(form.longitude.is_none_or(|x| x.is_finite() && x.abs() <= 180.0));
                    prop_assert!((0.0..=5.0).contains(&form.annual_degradation_pct));
                    prop_assert!(jiff::tz::TimeZone::get(&form.time_zone).is_ok());
                    prop_assert!(
                        form.expected_microinverters.is_none_or(|n| (1..=10_000).contains(&n))
                    );
                    if let Some(months) = form.monthly_estimate_kwh {
                        prop_assert!(months.iter().all(|kwh| (0.0..=10_000_000.0).contains(kwh)));
                    }
                    if let Some(owner) = &form.owner {
                        prop_assert!(valid_email(&owner.email));
                        prop_assert!(!owner.family_name.is_empty());
                    }
                }
                Err(errors) => form_fuzz::explained(&errors)?,
            }
        }
    }
}
