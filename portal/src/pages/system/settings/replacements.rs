//! Self-service replacements (R2, R3), for the system's installers
//! (`Need::ManageSystem`).
//!
//! - Install replacement (`…/settings/self-service/replacement`): pairs of original and
//!   replacement serials ("Replace another device" adds a pair); the original is picked
//!   among the system's microinverters and AC batteries. All pairs are replaced in one
//!   registry transaction: the old units retire, the new ones take their cells and are
//!   provisioned through their gateway (a task listed with a link to its task list). A
//!   bad or foreign serial re-renders the form with the reason, and nothing changes.
//! - Gateway replacement (`…/settings/self-service/gateway`): the old gateway and the new
//!   serial. The new gateway is registered at once; once its first data is stored the old
//!   one retires and its devices move to it. The page shows pending and done
//!   replacements, what moved, and batteries to provision again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{
    DeviceReplacement, GatewayReplacement, GatewayReplacementRefusal, ReplacementRefusal,
    TaskProgress,
};

use super::{SectionLink, sections};
use crate::access::{Need, authorize};
use crate::i18n::Lang;
use crate::pages::system::devices::{kind_label, task_state_label};
use crate::pages::system::{SystemChrome, load};
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

/// Replacements listed under the form.
const HISTORY: usize = 20;
/// Replacements read to find the ones a submission just made (they are the newest).
const RECENT: u32 = 50;

/// A serial as people type it: exactly the 12 digits on the label (spaces around are
/// forgiven).
pub fn parse_serial(text: &str) -> Option<Serial> {
    let text = text.trim();
    if text.len() != 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn serial_text(serial: u64) -> String {
    format!("{serial:012}")
}

fn device_href(system: u32, device: i64) -> String {
    format!("/systems/{system}/devices/{device}")
}

fn task_class(state: TaskProgress) -> &'static str {
    match state {
        TaskProgress::Succeeded => "normal",
        TaskProgress::Failed | TaskProgress::Cancelled => "issue",
        _ => "waiting",
    }
}

/// Lets the write path resolve the system's new serials at once. The registry holds the
/// change whatever happens here: a failure is logged, and the next start loads them.
async fn load_devices(state: &AppState, id: u32) {
    let query = Arc::clone(state.query());
    let loaded = blocking(move || Ok(query.load_system_devices(i64::from(id))?)).await;
    if let Err(error) = loaded {
        tracing::error!(system_id = id, %error, "the new devices resolve only after a restart");
    }
}

// ------------------------------------------------------------- R2 install replacement

/// One pair of the form, as typed, with its problem.
pub struct PairRow {
    pub original: String,
    pub replacement: String,
    pub error: Option<String>,
}

/// A microinverter or battery the original serial may name.
pub struct Candidate {
    pub serial: String,
    pub label: String,
}

/// A replacement as the page lists it.
pub struct ReplacementLine {
    pub kind: String,
    pub old_serial: String,
    pub old_href: String,
    pub new_serial: String,
    pub new_href: String,
    pub place: String,
    pub gateway: String,
    pub tasks_href: Option<String>,
    pub task: String,
    pub task_state: String,
    pub task_class: &'static str,
    pub task_result: String,
    pub reported: String,
    pub requested: String,
}

#[derive(Template)]
#[template(path = "system/settings_replacement.html")]
struct ReplacementPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    error: Option<String>,
    rows: Vec<PairRow>,
    candidates: Vec<Candidate>,
    done: Vec<ReplacementLine>,
    history: Vec<ReplacementLine>,
}

#[derive(Debug, Deserialize, Default)]
pub struct ReplacementQuery {
    /// Set after a submission: the replacements it made, comma-separated.
    done: Option<String>,
}

fn replacement_line(r: &DeviceReplacement, system: &SystemChrome, lang: Lang) -> ReplacementLine {
    let zone = &system.zone;
    let (task, task_state, task_class_name, task_result) = match &r.task {
        Some(task) => (
            format!("#{}", task.id),
            lang.t(task_state_label(task.state)).to_owned(),
            task_class(task.state),
            task.result.clone(),
        ),
        None => ("—".to_owned(), "—".to_owned(), "waiting", String::new()),
    };
    ReplacementLine {
        kind: lang.t(kind_label(&r.kind)).to_owned(),
        old_serial: serial_text(r.old_serial),
        old_href: device_href(system.id, r.old_device_id),
        new_serial: serial_text(r.new_serial),
        new_href: device_href(system.id, r.new_device_id),
        place: r.place.as_ref().map_or_else(
            || "—".to_owned(),
            |(array, row, column)| {
                lang.fill("{}, row {}, column {}", &[array, &(row + 1), &(column + 1)])
            },
        ),
        gateway: r.gateway_serial.map_or_else(|| "—".to_owned(), serial_text),
        tasks_href: r
            .gateway_id
            .map(|g| format!("{}#tasks", device_href(system.id, g))),
        task,
        task_state,
        task_class: task_class_name,
        task_result,
        reported: r.new_first_report_us.map_or_else(
            || lang.t("not yet").to_owned(),
            |t| lang.local_time(t, zone),
        ),
        requested: lang.local_time(r.requested_us, zone),
    }
}

/// The page with `rows` in the form (at least one) and what the query asks to show.
async fn replacement_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    rows: Vec<PairRow>,
    error: Option<String>,
    done: &[i64],
) -> Result<Response, PortalError> {
    authorize(principal, Need::ManageSystem(id))?;
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let registry = Arc::clone(state.registry());
    let (devices, replacements) = blocking(move || {
        let system_id = i64::from(id);
        Ok((
            registry.micros_and_batteries(system_id)?,
            registry.device_replacements(system_id, RECENT)?,
        ))
    })
    .await?;
    let candidates = devices
        .iter()
        .filter(|d| d.state != "retired")
        .map(|d| {
            let kind = lang.t(kind_label(&d.kind));
            let place = d.place.map_or_else(String::new, |(_, row, column)| {
                format!(
                    " · {}",
                    lang.fill("row {}, column {}", &[&(row + 1), &(column + 1)])
                )
            });
            Candidate {
                serial: serial_text(d.serial),
                label: format!("{kind}{place}"),
            }
        })
        .collect();
    let done_lines = done
        .iter()
        .filter_map(|d| replacements.iter().find(|r| r.id == *d))
        .map(|r| replacement_line(r, &system, lang))
        .collect::<Vec<_>>();
    let history = replacements
        .iter()
        .take(HISTORY)
        .map(|r| replacement_line(r, &system, lang))
        .collect();
    let notice = (!done_lines.is_empty()).then(|| {
        lang.t(
            "Replacement recorded: the original units are retired, the new ones took their places, and each gateway was asked to provision them. Their history continues the originals'.",
        )
        .to_owned()
    });
    let rows = if rows.is_empty() {
        vec![PairRow {
            original: String::new(),
            replacement: String::new(),
            error: None,
        }]
    } else {
        rows
    };
    let refused = error.is_some() || rows.iter().any(|r| r.error.is_some());
    let page = ReplacementPage {
        sections: sections(lang, id, "self-service"),
        notice,
        error,
        rows,
        candidates,
        done: done_lines,
        history,
        chrome,
        system,
    };
    let mut response = render("system settings replacement", &page)?;
    if refused {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

pub async fn replacement_form(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<ReplacementQuery>,
) -> Result<Response, PortalError> {
    let done: Vec<i64> = query
        .done
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect();
    replacement_page(&state, &principal, id, Vec::new(), None, &done).await
}

/// The pairs of a posted form, in order, and whether it asks for one more pair.
fn posted_pairs(fields: &[(String, String)]) -> (Vec<PairRow>, bool) {
    let values = |name: &str| -> Vec<String> {
        fields
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    };
    let originals = values("original");
    let replacements = values("replacement");
    let count = originals.len().max(replacements.len());
    let rows = (0..count)
        .map(|i| PairRow {
            original: originals.get(i).cloned().unwrap_or_default(),
            replacement: replacements.get(i).cloned().unwrap_or_default(),
            error: None,
        })
        .collect();
    let add = fields.iter().any(|(n, v)| n == "action" && v == "add");
    (rows, add)
}

/// Checks the pairs' form (not yet the registry's rules): each row's error set; the
/// well-formed pairs with the index of their row.
pub fn check_pairs(rows: &mut [PairRow], lang: Lang) -> Vec<(usize, Serial, Serial)> {
    let mut pairs = Vec::new();
    let mut originals = HashSet::new();
    let mut replacements = HashSet::new();
    for (index, row) in rows.iter_mut().enumerate() {
        if row.original.is_empty() && row.replacement.is_empty() {
            continue;
        }
        let not_serial = |text: &str| {
            lang.fill(
                "{} is not a serial number: enter the 12 digits on the unit's label.",
                &[&format!("{text:?}")],
            )
        };
        let original = match parse_serial(&row.original) {
            _ if row.original.is_empty() => {
                row.error = Some(
                    lang.t("Enter the original device's serial number.")
                        .to_owned(),
                );
                continue;
            }
            Some(serial) => serial,
            None => {
                row.error = Some(not_serial(&row.original));
                continue;
            }
        };
        let replacement = match parse_serial(&row.replacement) {
            _ if row.replacement.is_empty() => {
                row.error = Some(
                    lang.t("Enter the replacement's serial number (on its label).")
                        .to_owned(),
                );
                continue;
            }
            Some(serial) => serial,
            None => {
                row.error = Some(not_serial(&row.replacement));
                continue;
            }
        };
        if original == replacement {
            row.error = Some(
                lang.t("The replacement's serial number is the original's: enter the new unit's.")
                    .to_owned(),
            );
            continue;
        }
        if !originals.insert(original) {
            row.error = Some(lang.fill("{} is listed twice as an original device.", &[&original]));
            continue;
        }
        if !replacements.insert(replacement) {
            row.error = Some(lang.fill("{} is listed twice as a replacement.", &[&replacement]));
            continue;
        }
        pairs.push((index, original, replacement));
    }
    pairs
}

/// Why the registry refused a pair, in words.
pub fn explain_refusal(
    refusal: &ReplacementRefusal,
    original: Serial,
    replacement: Serial,
    lang: Lang,
) -> String {
    match refusal {
        ReplacementRefusal::OriginalUnknown => lang.fill(
            "No device has serial number {}: check the original unit's label.",
            &[&original],
        ),
        ReplacementRefusal::OriginalElsewhere => lang.fill(
            "Serial number {} is not a device of this system: only this system's microinverters and AC batteries are replaced here.",
            &[&original],
        ),
        ReplacementRefusal::OriginalNotReplaceable { kind } => lang.fill(
            "{} is a {}: only microinverters and AC batteries are replaced here (a gateway has its own replacement page).",
            &[&original, &lang.t(kind_label(kind)).to_lowercase()],
        ),
        ReplacementRefusal::OriginalRetired {
            replaced_by: Some(by),
        } => lang.fill(
            "{} was retired already: it was replaced by {}.",
            &[&original, &serial_text(*by)],
        ),
        ReplacementRefusal::OriginalRetired { replaced_by: None } => {
            lang.fill("{} was retired already.", &[&original])
        }
        ReplacementRefusal::SameSerial => lang
            .t("The replacement's serial number is the original's: enter the new unit's.")
            .to_owned(),
        ReplacementRefusal::ReplacementRegistered {
            kind,
            in_this_system: true,
        } => lang.fill(
            "Replacement serial number {} is already registered to this system (a {}).",
            &[&replacement, &lang.t(kind_label(kind)).to_lowercase()],
        ),
        ReplacementRefusal::ReplacementRegistered {
            in_this_system: false,
            ..
        } => lang.fill(
            "Replacement serial number {} is already registered to another system: a device belongs to one system only.",
            &[&replacement],
        ),
        ReplacementRefusal::ReplacementBeingProvisioned {
            task_id,
            in_this_system: true,
        } => lang.fill(
            "Replacement serial number {} is already being provisioned on this system (task {}).",
            &[&replacement, task_id],
        ),
        ReplacementRefusal::ReplacementBeingProvisioned {
            in_this_system: false,
            ..
        } => lang.fill(
            "Replacement serial number {} is already being provisioned on another system.",
            &[&replacement],
        ),
        ReplacementRefusal::NoGateway => lang
            .t("This system has no gateway in service to provision the replacement.")
            .to_owned(),
    }
}

/// Installs the replacements the form lists, all or none.
pub async fn submit_replacement(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    let csrf = fields
        .iter()
        .find(|(name, _)| name == "csrf_token")
        .map(|(_, value)| value.as_str());
    principal.check_csrf(csrf)?;
    let lang = principal.lang();
    let (mut rows, add) = posted_pairs(&fields);
    if add {
        // Another pair to fill in: nothing is checked or saved yet.
        rows.push(PairRow {
            original: String::new(),
            replacement: String::new(),
            error: None,
        });
        let mut page = replacement_page(&state, &principal, id, rows, None, &[]).await?;
        *page.status_mut() = StatusCode::OK;
        return Ok(page);
    }
    let pairs = check_pairs(&mut rows, lang);
    let nothing_changed = lang.t("Nothing was changed.");
    if rows.iter().any(|r| r.error.is_some()) {
        let error = format!(
            "{} {nothing_changed}",
            lang.t("Please correct the pairs marked below.")
        );
        return replacement_page(&state, &principal, id, rows, Some(error), &[]).await;
    }
    if pairs.is_empty() {
        let error = lang
            .t("Enter the original device's serial number and the replacement's.")
            .to_owned();
        return replacement_page(&state, &principal, id, rows, Some(error), &[]).await;
    }
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let serials: Vec<(Serial, Serial)> = pairs.iter().map(|(_, o, r)| (*o, *r)).collect();
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.install_replacements(i64::from(id), &serials, Some(user), now)?)
    })
    .await?;
    match outcome {
        Ok(ids) => {
            load_devices(&state, id).await;
            let done = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            Ok(Redirect::to(&format!(
                "/systems/{id}/settings/self-service/replacement?done={done}#done"
            ))
            .into_response())
        }
        Err((index, refusal)) => {
            let (row, original, replacement) = pairs[index];
            if let Some(r) = rows.get_mut(row) {
                r.error = Some(explain_refusal(&refusal, original, replacement, lang));
            }
            let error = format!(
                "{} {nothing_changed}",
                lang.t("A pair was refused (marked below).")
            );
            replacement_page(&state, &principal, id, rows, Some(error), &[]).await
        }
    }
}

// ------------------------------------------------------------- R3 gateway replacement

pub struct GatewayOption {
    pub id: i64,
    pub label: String,
    pub selected: bool,
}

pub struct GatewayReplacementLine {
    pub old_serial: String,
    pub old_href: String,
    pub new_serial: String,
    pub new_href: String,
    pub requested: String,
    pub pending: bool,
    pub state: String,
    pub moved: String,
}

/// A battery to provision again on its new gateway.
pub struct ReprovisionLine {
    pub serial: String,
    pub href: String,
    pub gateway_id: i64,
    pub gateway: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "system/settings_gateway_replacement.html")]
struct GatewayPage {
    chrome: Chrome,
    system: SystemChrome,
    sections: Vec<SectionLink>,
    notice: Option<String>,
    error: Option<String>,
    gateways: Vec<GatewayOption>,
    new_serial: String,
    replacements: Vec<GatewayReplacementLine>,
    reprovision: Vec<ReprovisionLine>,
    /// The gateways with batteries to provision again.
    reprovision_gateways: Vec<(i64, String)>,
}

#[derive(Debug, Deserialize, Default)]
pub struct GatewayQuery {
    /// Set after a request: the replacement.
    requested: Option<i64>,
    /// Set after queueing re-provisioning: the task.
    reprovision: Option<i64>,
}

fn moved_text(r: &GatewayReplacement, lang: Lang) -> String {
    lang.fill(
        "{} microinverter(s), {} meter(s) and {} battery(ies) moved to the new gateway; {} unfinished task(s) of the old gateway cancelled.",
        &[
            &r.moved.microinverters,
            &r.moved.meters,
            &r.moved.batteries,
            &r.moved.cancelled_tasks,
        ],
    )
}

async fn gateway_page(
    state: &AppState,
    principal: &Principal,
    id: u32,
    chosen: Option<i64>,
    new_serial: String,
    error: Option<String>,
    notice: Option<String>,
) -> Result<Response, PortalError> {
    authorize(principal, Need::ManageSystem(id))?;
    let (chrome, system) = load(state, principal, id, "settings").await?;
    let lang = principal.lang();
    let zone = system.zone.clone();
    let registry = Arc::clone(state.registry());
    let (records, replacements) = blocking(move || {
        let system_id = i64::from(id);
        Ok((
            registry.system_devices(system_id)?,
            registry.gateway_replacements(system_id)?,
        ))
    })
    .await?;
    let serials: HashMap<i64, u64> = records.iter().map(|r| (r.id, r.serial)).collect();
    let pending_old: HashSet<i64> = replacements
        .iter()
        .filter(|r| r.completed_us.is_none())
        .map(|r| r.old_gateway_id)
        .collect();
    let replacing: HashSet<i64> = replacements
        .iter()
        .filter(|r| r.completed_us.is_none())
        .map(|r| r.new_gateway_id)
        .collect();
    let in_service: Vec<_> = records
        .iter()
        .filter(|r| r.kind == "gateway" && r.state != "retired" && !replacing.contains(&r.id))
        .collect();
    let gateways = in_service
        .iter()
        .enumerate()
        .map(|(i, r)| GatewayOption {
            id: r.id,
            label: if pending_old.contains(&r.id) {
                format!(
                    "{} ({})",
                    serial_text(r.serial),
                    lang.t("replacement pending")
                )
            } else {
                serial_text(r.serial)
            },
            selected: chosen.map_or(i == 0, |c| c == r.id),
        })
        .collect();
    let lines = replacements
        .iter()
        .map(|r| GatewayReplacementLine {
            old_serial: serial_text(r.old_serial),
            old_href: device_href(id, r.old_gateway_id),
            new_serial: serial_text(r.new_serial),
            new_href: device_href(id, r.new_gateway_id),
            requested: lang.local_time(r.requested_us, &zone),
            pending: r.completed_us.is_none(),
            state: match r.completed_us {
                None => lang.fill(
                    "Waiting for gateway {} to report. Once its first data is stored, gateway {} is retired and its devices move to it.",
                    &[&serial_text(r.new_serial), &serial_text(r.old_serial)],
                ),
                Some(done) => lang.fill(
                    "Done {}: gateway {} is retired.",
                    &[&lang.local_time(done, &zone), &serial_text(r.old_serial)],
                ),
            },
            moved: if r.completed_us.is_some() {
                moved_text(r, lang)
            } else {
                String::new()
            },
        })
        .collect();
    let reprovision: Vec<ReprovisionLine> = records
        .iter()
        .filter(|r| r.state != "retired")
        .filter_map(|r| {
            let since = r.reprovision_since_us?;
            let gateway_id = r.gateway_id?;
            Some(ReprovisionLine {
                serial: serial_text(r.serial),
                href: device_href(id, r.id),
                gateway_id,
                gateway: serials
                    .get(&gateway_id)
                    .map_or_else(String::new, |s| serial_text(*s)),
                since: lang.local_time(since, &zone),
            })
        })
        .collect();
    let mut reprovision_gateways: Vec<(i64, String)> = reprovision
        .iter()
        .map(|r| (r.gateway_id, r.gateway.clone()))
        .collect();
    reprovision_gateways.sort();
    reprovision_gateways.dedup();
    let refused = error.is_some();
    let page = GatewayPage {
        sections: sections(lang, id, "self-service"),
        notice,
        error,
        gateways,
        new_serial,
        replacements: lines,
        reprovision,
        reprovision_gateways,
        chrome,
        system,
    };
    let mut response = render("system settings gateway replacement", &page)?;
    if refused {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    Ok(response)
}

pub async fn gateway_form(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<GatewayQuery>,
) -> Result<Response, PortalError> {
    let lang = principal.lang();
    let notice = match (query.requested, query.reprovision) {
        (Some(_), _) => Some(
            lang.t("Gateway replacement recorded: it completes by itself once the new gateway has reported (see below).")
                .to_owned(),
        ),
        (None, Some(task)) => Some(lang.fill(
            "Task {} queued: the new gateway provisions the batteries when it runs it.",
            &[&task],
        )),
        (None, None) => None,
    };
    gateway_page(&state, &principal, id, None, String::new(), None, notice).await
}

#[derive(Debug, Deserialize)]
pub struct GatewayForm {
    csrf_token: Option<String>,
    old_gateway: Option<String>,
    new_serial: Option<String>,
}

/// Why the registry refused a gateway replacement, in words.
pub fn explain_gateway_refusal(
    refusal: &GatewayReplacementRefusal,
    new_serial: Serial,
    lang: Lang,
) -> String {
    match refusal {
        GatewayReplacementRefusal::NotThisSystemsGateway => lang
            .t("The chosen gateway is not one of this system's gateways.")
            .to_owned(),
        GatewayReplacementRefusal::GatewayRetired => lang
            .t("The chosen gateway is retired already.")
            .to_owned(),
        GatewayReplacementRefusal::AlreadyPending { new_serial } => lang.fill(
            "This gateway is already being replaced by {}: the replacement completes once that gateway reports.",
            &[&serial_text(*new_serial)],
        ),
        GatewayReplacementRefusal::SameSerial => lang
            .t("The new gateway's serial number is the old one's: enter the new gateway's.")
            .to_owned(),
        GatewayReplacementRefusal::SerialRegistered {
            kind,
            in_this_system: true,
        } => lang.fill(
            "Serial number {} is already registered to this system (a {}).",
            &[&new_serial, &lang.t(kind_label(kind)).to_lowercase()],
        ),
        GatewayReplacementRefusal::SerialRegistered {
            in_this_system: false,
            ..
        } => lang.fill(
            "Serial number {} is already registered to another system: a device belongs to one system only.",
            &[&new_serial],
        ),
        GatewayReplacementRefusal::SerialBeingProvisioned { task_id, .. } => lang.fill(
            "Serial number {} is being provisioned as a microinverter (task {}).",
            &[&new_serial, task_id],
        ),
    }
}

/// Registers the new gateway and the pending replacement.
pub async fn submit_gateway(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(form): Form<GatewayForm>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    principal.check_csrf(form.csrf_token.as_deref())?;
    let lang = principal.lang();
    let serial_typed = form.new_serial.unwrap_or_default().trim().to_owned();
    let chosen = form
        .old_gateway
        .as_deref()
        .and_then(|g| g.trim().parse::<i64>().ok());
    let nothing_changed = lang.t("Nothing was changed.");
    let refuse = |message: String| format!("{message} {nothing_changed}");
    let Some(old_gateway) = chosen else {
        let error = refuse(lang.t("Choose the old gateway.").to_owned());
        return gateway_page(
            &state,
            &principal,
            id,
            None,
            serial_typed,
            Some(error),
            None,
        )
        .await;
    };
    let Some(new_serial) = parse_serial(&serial_typed) else {
        let error = refuse(lang.fill(
            "{} is not a gateway serial number: enter the 12 digits on the new gateway's label.",
            &[&format!("{serial_typed:?}")],
        ));
        return gateway_page(
            &state,
            &principal,
            id,
            Some(old_gateway),
            serial_typed,
            Some(error),
            None,
        )
        .await;
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let outcome = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.request_gateway_replacement(
            i64::from(id),
            old_gateway,
            new_serial,
            Some(user),
            now,
        )?)
    })
    .await?;
    match outcome {
        Ok(replacement) => {
            load_devices(&state, id).await;
            Ok(Redirect::to(&format!(
                "/systems/{id}/settings/self-service/gateway?requested={}#replacements",
                replacement.id
            ))
            .into_response())
        }
        Err(refusal) => {
            let error = refuse(explain_gateway_refusal(&refusal, new_serial, lang));
            gateway_page(
                &state,
                &principal,
                id,
                Some(old_gateway),
                serial_typed,
                Some(error),
                None,
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ReprovisionForm {
    csrf_token: Option<String>,
    gateway: Option<String>,
}

/// Queues the provisioning of the batteries a gateway replacement moved to `gateway`.
pub async fn submit_reprovision(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Form(form): Form<ReprovisionForm>,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::ManageSystem(id))?;
    principal.check_csrf(form.csrf_token.as_deref())?;
    let Some(gateway) = form
        .gateway
        .as_deref()
        .and_then(|g| g.trim().parse::<i64>().ok())
    else {
        return Err(PortalError::BadRequest {
            message: "choose the gateway whose batteries are to be provisioned".to_owned(),
        });
    };
    let registry = Arc::clone(state.registry());
    let user = principal.user.id;
    let queued = blocking(move || {
        let now = sunfleet_engine::time::now_micros();
        Ok(registry.queue_reprovisioning(i64::from(id), gateway, Some(user), now)?)
    })
    .await?;
    match queued {
        Some((task, _)) => Ok(Redirect::to(&format!(
            "/systems/{id}/settings/self-service/gateway?reprovision={task}#reprovision"
        ))
        .into_response()),
        None => Err(PortalError::BadRequest {
            message: format!("gateway {gateway} of system {id} has no battery to provision again"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::i18n::has_french;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    fn row(original: &str, replacement: &str) -> PairRow {
        PairRow {
            original: original.to_owned(),
            replacement: replacement.to_owned(),
            error: None,
        }
    }

    #[test]
    fn only_twelve_digits_make_a_serial() {
        assert_eq!(
            parse_serial(" 482100000512 ").map(Serial::value),
            Some(482_100_000_512)
        );
        for bad in ["", "12345", "4821000005120", "48210000051a", "-48210000051"] {
            assert_eq!(parse_serial(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_pairs_are_checked_before_the_registry_is_asked() {
        let mut rows = vec![
            row("482100000001", "482100000512"),
            row("", ""),
            row("12ab", "482100000513"),
            row("482100000002", ""),
            row("482100000003", "482100000003"),
            row("482100000001", "482100000514"),
            row("482100000004", "482100000512"),
            row("482100000005", "482100000515"),
        ];
        let pairs = check_pairs(&mut rows, Lang::En);
        let indices: Vec<usize> = pairs.iter().map(|(i, _, _)| *i).collect();
        assert_eq!(indices, vec![0, 7]);
        assert!(rows[1].error.is_none(), "an empty pair is skipped");
        assert!(
            rows[2]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("\"12ab\" is not a serial number"))
        );
        assert!(
            rows[3]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("replacement"))
        );
        assert!(
            rows[4]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("original's"))
        );
        assert!(
            rows[5]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("twice"))
        );
        assert!(
            rows[6]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("twice"))
        );
    }

    /// Every wording this module computes has a French entry.
    #[test]
    fn every_computed_wording_has_a_french_entry() {
        let source = include_str!("replacements.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        let mut wordings: Vec<String> = Vec::new();
        for marker in [".t(", ".fill("] {
            for piece in code.split(marker).skip(1) {
                let rest = piece.trim_start();
                if let Some(text) = rest.strip_prefix('"')
                    && let Some(end) = text.find('"')
                {
                    wordings.push(text[..end].to_owned());
                }
            }
        }
        assert!(wordings.len() > 30, "the scan found the wordings");
        let missing: Vec<&String> = wordings.iter().filter(|w| !has_french(w)).collect();
        assert!(missing.is_empty(), "no French for {missing:?}");
    }

    const PAIR_FIELDS: &[&str] = &["original", "replacement", "action"];
    const PAIR_VALUES: &[&str] = &[
        "121999000001",
        "121999000002",
        " 121999000003 ",
        "121999000004",
        "",
        "add",
    ];

    /// A posted field of the pairs' form: a serial, a near-serial or anything.
    fn pair_field() -> impl Strategy<Value = (String, String)> {
        (
            prop::sample::select(PAIR_FIELDS).prop_map(str::to_owned),
            prop_oneof![
                2 => prop::sample::select(PAIR_VALUES).prop_map(str::to_owned),
                1 => form_fuzz::text(),
            ],
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever is typed, a serial is exactly twelve digits (spaces around forgiven).
        #[test]
        fn only_twelve_digits_make_a_serial_whatever_is_typed(text in form_fuzz::text()) {
            let trimmed = text.trim();
            let twelve_digits =
                trimmed.len() == 12 && trimmed.bytes().all(|b| b.is_ascii_digit());
            prop_assert_eq!(
                parse_serial(&text).map(Serial::value),
                twelve_digits.then(|| trimmed.parse::<u64>().unwrap())
            );
        }

        /// Any posted pairs: each row is skipped (blank), paired, or given its error; pairs
        /// name each unit once and never a unit as its own replacement.
        #[test]
        fn any_posted_pairs_are_checked_row_by_row(
            fields in prop::collection::vec(pair_field(), 0..12),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let (mut rows, _) = posted_pairs(&fields);
            let count = |name: &str| fields.iter().filter(|(n, _)| n == name).count();
            prop_assert_eq!(rows.len(), count("original").max(count("replacement")));
            let pairs = check_pairs(&mut rows, lang);
            let mut originals = HashSet::new();
            let mut replacements = HashSet::new();
            for (index, original, replacement) in &pairs {
                prop_assert!(rows[*index].error.is_none());
                prop_assert_ne!(original, replacement);
                prop_assert!(originals.insert(*original), "{} twice as an original", original);
                prop_assert!(
                    replacements.insert(*replacement),
                    "{} twice as a replacement",
                    replacement
                );
            }
            for (index, row) in rows.iter().enumerate() {
                let blank = row.original.is_empty() && row.replacement.is_empty();
                let paired = pairs.iter().any(|(i, _, _)| *i == index);
                let explained = row.error.as_deref().is_some_and(|e| !e.trim().is_empty());
                prop_assert!(
                    blank || paired || explained,
                    "row {} ({:?}, {:?}) is neither paired nor explained",
                    index,
                    row.original,
                    row.replacement
                );
            }
        }
    }
}
