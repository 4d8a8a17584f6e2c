//! The systems list (F4): every system the principal sees, searchable by name, id or
//! reference, sortable by any column, paged; the columns are chosen per user and
//! remembered; the fleet's energy today; the list as CSV.

use std::cmp::Ordering;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, RawForm, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::dashboard::matches_search;
use super::{Chrome, render};
use crate::access::{Need, authorize};
use crate::fleet::{self, SystemLine, stage_label, status_label};
use crate::i18n::Lang;
use crate::server::AppState;
use crate::session::blocking;
use crate::{PortalError, Principal};

const PAGE_ROWS: usize = 50;
const COLUMNS_SETTING: &str = "systems_columns";

/// A column of the list: its key, heading and how a system fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Status,
    Issues,
    Installer,
    Reference,
    Street,
    City,
    Region,
    Country,
    Stage,
    Kind,
    Connection,
    EnergyToday,
    Energy7Days,
    EnergyMonth,
    EstimatePct,
    LastReport,
}

impl Column {
    pub const ALL: [Column; 16] = [
        Column::Status,
        Column::Issues,
        Column::Installer,
        Column::Reference,
        Column::Street,
        Column::City,
        Column::Region,
        Column::Country,
        Column::Stage,
        Column::Kind,
        Column::Connection,
        Column::EnergyToday,
        Column::Energy7Days,
        Column::EnergyMonth,
        Column::EstimatePct,
        Column::LastReport,
    ];
    const DEFAULT: [Column; 7] = [
        Column::Status,
        Column::Issues,
        Column::City,
        Column::Region,
        Column::Energy7Days,
        Column::EstimatePct,
        Column::LastReport,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Column::Status => "status",
            Column::Issues => "issues",
            Column::Installer => "installer",
            Column::Reference => "reference",
            Column::Street => "street",
            Column::City => "city",
            Column::Region => "region",
            Column::Country => "country",
            Column::Stage => "stage",
            Column::Kind => "kind",
            Column::Connection => "connection",
            Column::EnergyToday => "energy_today",
            Column::Energy7Days => "energy_7d",
            Column::EnergyMonth => "energy_month",
            Column::EstimatePct => "estimate_pct",
            Column::LastReport => "last_report",
        }
    }

    pub fn heading(self) -> &'static str {
        match self {
            Column::Status => "Status",
            Column::Issues => "Issues",
            Column::Installer => "Installer",
            Column::Reference => "My company's reference",
            Column::Street => "Street address",
            Column::City => "City",
            Column::Region => "State / region",
            Column::Country => "Country",
            Column::Stage => "Activation stage",
            Column::Kind => "Type",
            Column::Connection => "Connection",
            Column::EnergyToday => "Energy today",
            Column::Energy7Days => "Past 7 days",
            Column::EnergyMonth => "This month",
            Column::EstimatePct => "% of estimate (lifetime)",
            Column::LastReport => "Last report",
        }
    }

    fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == key)
    }

    /// The value a page shows, in `lang`.
    pub fn cell(self, s: &SystemLine, lang: Lang) -> String {
        match self {
            Column::Status => lang.t(status_label(&s.status)).to_owned(),
            Column::Issues => s.open_events.to_string(),
            Column::Installer => s.installer.clone(),
            Column::Reference => s.installer_reference.clone(),
            Column::Street => s.street_address.clone(),
            Column::City => s.city.clone(),
            Column::Region => s.region.clone(),
            Column::Country => s.country.clone(),
            Column::Stage => lang.t(stage_label(&s.stage)).to_owned(),
            Column::Kind => lang.t(&s.kind).to_owned(),
            Column::Connection => s.internet_connection.clone(),
            Column::EnergyToday => s
                .energy_today_wh
                .map(|e| lang.energy(e))
                .unwrap_or_default(),
            Column::Energy7Days => s
                .energy_past_7_days_wh
                .map(|e| lang.energy(e))
                .unwrap_or_default(),
            Column::EnergyMonth => s
                .energy_month_wh
                .map(|e| lang.energy(e))
                .unwrap_or_default(),
            Column::EstimatePct => s
                .lifetime_estimate_pct
                .map(|p| lang.percent(p, 0))
                .unwrap_or_default(),
            Column::LastReport => s.last_report_us.map(|t| lang.time(t)).unwrap_or_default(),
        }
    }

    /// The CSV value: numbers unformatted, in the unit the header states.
    fn csv_value(self, s: &SystemLine) -> String {
        let number = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_default();
        match self {
            Column::EnergyToday => number(s.energy_today_wh),
            Column::Energy7Days => number(s.energy_past_7_days_wh),
            Column::EnergyMonth => number(s.energy_month_wh),
            Column::EstimatePct => number(s.lifetime_estimate_pct),
            Column::LastReport => s
                .last_report_us
                .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
                .map(|t| t.to_string())
                .unwrap_or_default(),
            Column::Status => s.status.clone(),
            Column::Stage => s.stage.clone(),
            // A CSV is read by programs: English, whoever downloads it.
            other => other.cell(s, Lang::En),
        }
    }

    fn csv_heading(self) -> &'static str {
        match self {
            Column::EnergyToday => "energy_today_wh",
            Column::Energy7Days => "energy_past_7_days_wh",
            Column::EnergyMonth => "energy_month_wh",
            Column::EstimatePct => "lifetime_estimate_pct",
            Column::LastReport => "last_report_utc",
            other => other.key(),
        }
    }

    fn compare(self, a: &SystemLine, b: &SystemLine) -> Ordering {
        let numbers = |x: Option<f64>, y: Option<f64>| {
            x.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&y.unwrap_or(f64::NEG_INFINITY))
        };
        match self {
            Column::Issues => a.open_events.cmp(&b.open_events),
            Column::EnergyToday => numbers(a.energy_today_wh, b.energy_today_wh),
            Column::Energy7Days => numbers(a.energy_past_7_days_wh, b.energy_past_7_days_wh),
            Column::EnergyMonth => numbers(a.energy_month_wh, b.energy_month_wh),
            Column::EstimatePct => numbers(a.lifetime_estimate_pct, b.lifetime_estimate_pct),
            Column::LastReport => a.last_report_us.cmp(&b.last_report_us),
            other => other
                .cell(a, Lang::En)
                .to_lowercase()
                .cmp(&other.cell(b, Lang::En).to_lowercase()),
        }
    }
}

/// A user's chosen columns (the default set until they choose).
async fn chosen_columns(state: &AppState, user_id: i64) -> Result<Vec<Column>, PortalError> {
    let registry = Arc::clone(state.registry());
    let saved = blocking(move || Ok(registry.user_setting(user_id, COLUMNS_SETTING)?)).await?;
    Ok(match saved {
        Some(saved) => saved.split(',').filter_map(Column::parse).collect(),
        None => Column::DEFAULT.to_vec(),
    })
}

/// What the list and its CSV start from: the user's columns and every visible system with
/// its figures.
async fn columns_and_systems(
    state: &AppState,
    principal: &Principal,
) -> Result<(Vec<Column>, Vec<SystemLine>), PortalError> {
    authorize(principal, Need::FleetPages)?;
    let now = sunfleet_engine::time::now_micros();
    let columns = chosen_columns(state, principal.user.id).await?;
    let systems = fleet::systems_with_figures(state.query(), &principal.scope, now).await?;
    Ok((columns, systems))
}

#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<usize>,
}

pub struct HeaderCell {
    pub heading: &'static str,
    pub href: String,
    pub marker: &'static str,
}

pub struct Row {
    pub id: u32,
    pub name: String,
    pub status: String,
    pub cells: Vec<String>,
}

pub struct ColumnChoice {
    pub key: &'static str,
    pub heading: &'static str,
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "systems.html")]
struct SystemsPage {
    chrome: Chrome,
    search: String,
    headers: Vec<HeaderCell>,
    name_header: HeaderCell,
    rows: Vec<Row>,
    choices: Vec<ColumnChoice>,
    total: usize,
    first: usize,
    last: usize,
    page: usize,
    pages: usize,
    previous_href: Option<String>,
    next_href: Option<String>,
    fleet_today: String,
    csv_href: String,
}

fn link(search: &str, sort: &str, dir: &str, page: usize) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    if !search.is_empty() {
        query.append_pair("q", search);
    }
    query.append_pair("sort", sort);
    query.append_pair("dir", dir);
    if page > 1 {
        query.append_pair("page", &page.to_string());
    }
    format!("/systems?{}", query.finish())
}

/// The systems matching the list's search, sorted as asked.
fn select(mut systems: Vec<SystemLine>, query: &ListQuery) -> (Vec<SystemLine>, String, bool) {
    let search = query.q.clone().unwrap_or_default();
    systems.retain(|s| matches_search(s, &search));
    let sort = query.sort.clone().unwrap_or_else(|| "name".to_owned());
    let descending = query.dir.as_deref() == Some("desc");
    match Column::parse(&sort) {
        Some(column) => systems.sort_by(|a, b| column.compare(a, b).then(a.id.cmp(&b.id))),
        None if sort == "id" => systems.sort_by_key(|s| s.id),
        None => systems.sort_by(|a, b| {
            a.name
                .to_lowercase()
                .cmp(&b.name.to_lowercase())
                .then(a.id.cmp(&b.id))
        }),
    }
    if descending {
        systems.reverse();
    }
    (systems, sort, descending)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Response, PortalError> {
    let (columns, all) = columns_and_systems(&state, &principal).await?;
    let fleet_today: f64 = all.iter().filter_map(|s| s.energy_today_wh).sum();
    let (systems, sort, descending) = select(all, &query);
    let search = query.q.clone().unwrap_or_default();
    let total = systems.len();
    let pages = total.div_ceil(PAGE_ROWS).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let lang = principal.lang();
    let header = |key: &str, heading: &'static str| {
        let current = sort == key;
        HeaderCell {
            heading: lang.t(heading),
            href: link(
                &search,
                key,
                if current && !descending {
                    "desc"
                } else {
                    "asc"
                },
                1,
            ),
            marker: match (current, descending) {
                (true, false) => " ▲",
                (true, true) => " ▼",
                _ => "",
            },
        }
    };
    let dir = if descending { "desc" } else { "asc" };
    let rows = systems
        .iter()
        .skip((page - 1) * PAGE_ROWS)
        .take(PAGE_ROWS)
        .map(|s| Row {
            id: s.id,
            name: s.name.clone(),
            status: s.status.clone(),
            cells: columns.iter().map(|c| c.cell(s, lang)).collect(),
        })
        .collect::<Vec<_>>();
    let first = if total == 0 {
        0
    } else {
        (page - 1) * PAGE_ROWS + 1
    };
    let csv_href = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("q", &search);
        query.append_pair("sort", &sort);
        query.append_pair("dir", dir);
        format!("/systems.csv?{}", query.finish())
    };
    let page = SystemsPage {
        chrome: Chrome::new(&principal, "Systems", "systems"),
        headers: columns
            .iter()
            .map(|c| header(c.key(), c.heading()))
            .collect(),
        name_header: header("name", "Name / ID"),
        choices: Column::ALL
            .iter()
            .map(|c| ColumnChoice {
                key: c.key(),
                heading: lang.t(c.heading()),
                checked: columns.contains(c),
            })
            .collect(),
        first,
        last: first + rows.len().saturating_sub(1),
        rows,
        total,
        page,
        pages,
        previous_href: (page > 1).then(|| link(&search, &sort, dir, page - 1)),
        next_href: (page < pages).then(|| link(&search, &sort, dir, page + 1)),
        fleet_today: lang.energy(fleet_today),
        csv_href,
        search,
    };
    render("systems", &page)
}

/// The list as CSV: the same search and order, every matching system, the chosen columns
/// with units in the header.
pub async fn csv(
    State(state): State<AppState>,
    principal: Principal,
    Query(query): Query<ListQuery>,
) -> Result<Response, PortalError> {
    let (columns, all) = columns_and_systems(&state, &principal).await?;
    let (systems, _, _) = select(all, &query);
    let mut out = csv::Writer::from_writer(Vec::new());
    let csv_error = |e: csv::Error| PortalError::Internal {
        context: format!("writing the systems CSV: {e}"),
    };
    let mut header = vec!["id", "name"];
    header.extend(columns.iter().map(|c| c.csv_heading()));
    out.write_record(&header).map_err(csv_error)?;
    for s in &systems {
        let mut record = vec![s.id.to_string(), s.name.clone()];
        record.extend(columns.iter().map(|c| c.csv_value(s)));
        out.write_record(&record).map_err(csv_error)?;
    }
    let body = out.into_inner().map_err(|e| PortalError::Internal {
        context: format!("writing the systems CSV: {e}"),
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"systems.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Saves the columns chosen in the list's column chooser.
pub async fn save_columns(
    State(state): State<AppState>,
    principal: Principal,
    RawForm(body): RawForm,
) -> Result<Response, PortalError> {
    authorize(&principal, Need::FleetPages)?;
    let mut csrf = None;
    let mut chosen = Vec::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        match key.as_ref() {
            "csrf_token" => csrf = Some(value.into_owned()),
            "col" => match Column::parse(&value) {
                Some(column) if !chosen.contains(&column) => chosen.push(column),
                Some(_) => {}
                None => {
                    return Err(PortalError::BadRequest {
                        message: format!("no column is called {value:?}"),
                    });
                }
            },
            _ => {}
        }
    }
    principal.check_csrf(csrf.as_deref())?;
    // Keep the catalogue's order, whatever order the form sent.
    let value = Column::ALL
        .iter()
        .filter(|c| chosen.contains(c))
        .map(|c| c.key())
        .collect::<Vec<_>>()
        .join(",");
    let registry = Arc::clone(state.registry());
    let user_id = principal.user.id;
    blocking(move || Ok(registry.set_user_setting(user_id, COLUMNS_SETTING, &value)?)).await?;
    Ok(Redirect::to("/systems").into_response())
}
