//! Reports (S3): site production, site consumption, energy meter data and monthly produced
//! energy over a chosen range and granularity; previewed as a table, downloaded as CSV (the
//! same bytes `query` writes), and the monthly report also as a printable page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sunfleet_query::reports::{ReportKind, ReportRequest};
use sunfleet_query::series::Granularity;

use super::{DAY_US, SystemChrome, load, local_date, local_day_bounds};
use crate::i18n::Lang;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// Rows the preview shows; the download has them all.
const PREVIEW_ROWS: usize = 200;
/// Longest range of the per-reading meter report, and of the others.
const MAX_METER_DAYS: i64 = 93;
const MAX_REPORT_DAYS: i64 = 366 * 10;

/// The reports: code (as `query` names them), label.
pub const REPORTS: [(&str, &str); 4] = [
    ("production", "Site energy production"),
    ("consumption", "Site energy consumption"),
    ("meter-data", "Energy meter data"),
    ("monthly-production", "Monthly produced energy"),
];

pub const GRANULARITIES: [(&str, &str); 5] = [
    ("15m", "15 minutes"),
    ("hour", "Hour"),
    ("day", "Day"),
    ("month", "Month"),
    ("5m", "5 minutes"),
];

#[derive(Debug, Deserialize, Default, Clone)]
pub struct ReportQuery {
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    granularity: Option<String>,
}

/// A report asked for, checked.
struct Chosen {
    kind_code: &'static str,
    label: &'static str,
    from: String,
    to: String,
    granularity_code: &'static str,
    request: ReportRequest,
}

#[derive(Template)]
#[template(path = "system/reports.html")]
struct ReportsPage {
    chrome: Chrome,
    system: SystemChrome,
    reports: Vec<(&'static str, &'static str)>,
    granularities: Vec<(&'static str, &'static str)>,
    kind: &'static str,
    from: String,
    to: String,
    granularity: &'static str,
    error: Option<String>,
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    total_rows: u64,
    query_string: String,
}

#[derive(Template)]
#[template(path = "system/report_print.html")]
struct PrintPage {
    lang: Lang,
    system_name: String,
    system_id: u32,
    address: String,
    installer: String,
    title: String,
    period: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    total: String,
    generated: String,
}

impl PrintPage {
    fn t<'a>(&self, text: &'a str) -> &'a str {
        self.lang.t(text)
    }
}

fn choose(query: &ReportQuery, zone: &jiff::tz::TimeZone, lang: Lang) -> Result<Chosen, String> {
    let now = sunfleet_engine::time::now_micros();
    let (kind_code, label) = match query.kind.as_deref().filter(|k| !k.is_empty()) {
        None => REPORTS[0],
        Some(code) => *REPORTS
            .iter()
            .find(|(c, _)| *c == code)
            .ok_or_else(|| lang.t("Choose one of the reports listed.").to_owned())?,
    };
    let kind = ReportKind::from_name(kind_code)
        .ok_or_else(|| lang.t("Choose one of the reports listed.").to_owned())?;
    let default_from = if kind == ReportKind::MonthlyProduction {
        local_date(zone, now - 364 * DAY_US)
    } else {
        local_date(zone, now - 6 * DAY_US)
    };
    let from = query
        .from
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or(default_from);
    let to = query
        .to
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| local_date(zone, now));
    let limit = if kind == ReportKind::MeterData {
        MAX_METER_DAYS
    } else {
        MAX_REPORT_DAYS
    };
    let range_error = || {
        lang.fill(
            "Choose dates (YYYY-MM-DD) of a range of up to {} days whose end is not before its start.",
            &[&limit],
        )
    };
    let (start_us, _) = local_day_bounds(zone, &from).ok_or_else(range_error)?;
    let (_, end_us) = local_day_bounds(zone, &to).ok_or_else(range_error)?;
    if end_us <= start_us || end_us - start_us > limit * DAY_US + DAY_US / 12 {
        return Err(range_error());
    }
    let granularity_code = match query.granularity.as_deref().filter(|g| !g.is_empty()) {
        None => "day",
        Some(code) => GRANULARITIES
            .iter()
            .map(|(c, _)| *c)
            .find(|c| *c == code)
            .ok_or_else(|| {
                lang.t("The granularity is one of 5m, 15m, hour, day or month.")
                    .to_owned()
            })?,
    };
    let granularity = Granularity::from_name(granularity_code).unwrap_or(Granularity::Day);
    Ok(Chosen {
        kind_code,
        label,
        from,
        to,
        granularity_code,
        request: ReportRequest {
            kind,
            system_id: 0,
            start_us,
            end_us,
            granularity,
        },
    })
}

/// The report as CSV bytes, and its number of data rows.
async fn csv_of(
    state: &AppState,
    principal: &Principal,
    id: u32,
    chosen: &Chosen,
) -> Result<(Vec<u8>, u64), PortalError> {
    let mut bytes = Vec::new();
    let request = ReportRequest {
        system_id: id,
        ..chosen.request.clone()
    };
    let rows = state
        .query()
        .write_report(&principal.scope, &request, &mut bytes)
        .await?;
    Ok((bytes, rows))
}

/// The header and up to `limit` rows of CSV text.
fn parse_csv(bytes: &[u8], limit: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(bytes);
    let header = reader
        .headers()
        .map(|h| h.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let rows = reader
        .records()
        .filter_map(Result::ok)
        .take(limit)
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "reports").await?;
    let lang = principal.lang();
    let (chosen, error) = match choose(&query, &system.zone, lang) {
        Ok(chosen) => (Some(chosen), None),
        Err(message) => (None, Some(message)),
    };
    let (header, rows, total_rows) = match &chosen {
        Some(chosen) => {
            let (bytes, total) = csv_of(&state, &principal, id, chosen).await?;
            let (header, rows) = parse_csv(&bytes, PREVIEW_ROWS);
            (header, rows, total)
        }
        None => (Vec::new(), Vec::new(), 0),
    };
    let page = ReportsPage {
        reports: REPORTS.iter().map(|(c, l)| (*c, lang.t(l))).collect(),
        granularities: GRANULARITIES.iter().map(|(c, l)| (*c, lang.t(l))).collect(),
        kind: chosen.as_ref().map_or("production", |c| c.kind_code),
        from: chosen.as_ref().map_or_else(
            || query.from.clone().unwrap_or_default(),
            |c| c.from.clone(),
        ),
        to: chosen
            .as_ref()
            .map_or_else(|| query.to.clone().unwrap_or_default(), |c| c.to.clone()),
        granularity: chosen.as_ref().map_or("day", |c| c.granularity_code),
        title: chosen
            .as_ref()
            .map(|c| lang.t(c.label).to_owned())
            .unwrap_or_default(),
        query_string: chosen
            .as_ref()
            .map(|c| {
                format!(
                    "kind={}&from={}&to={}&granularity={}",
                    c.kind_code, c.from, c.to, c.granularity_code
                )
            })
            .unwrap_or_default(),
        error,
        header,
        rows,
        total_rows,
        chrome,
        system,
    };
    let status = if page.error.is_some() {
        axum::http::StatusCode::BAD_REQUEST
    } else {
        axum::http::StatusCode::OK
    };
    Ok((status, render("system reports", &page)?).into_response())
}

/// The whole report as a CSV download.
pub async fn csv(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, PortalError> {
    crate::access::authorize(&principal, crate::access::Need::System(id))?;
    let (_, zone) = super::system_record(&state, id)?;
    let chosen = choose(&query, &zone, principal.lang())
        .map_err(|message| PortalError::BadRequest { message })?;
    let (bytes, _) = csv_of(&state, &principal, id, &chosen).await?;
    let file = format!(
        "attachment; filename=\"system-{id}-{}-{}-to-{}.csv\"",
        chosen.kind_code, chosen.from, chosen.to
    );
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&file).map_err(|e| PortalError::Internal {
                    context: format!("the report's file name: {e}"),
                })?,
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The monthly produced energy report as a page to print (no navigation).
pub async fn print(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, PortalError> {
    crate::access::authorize(&principal, crate::access::Need::System(id))?;
    let lang = principal.lang();
    let (details, zone) = super::system_record(&state, id)?;
    let chosen = choose(
        &ReportQuery {
            kind: Some("monthly-production".to_owned()),
            ..query
        },
        &zone,
        lang,
    )
    .map_err(|message| PortalError::BadRequest { message })?;
    let (bytes, _) = csv_of(&state, &principal, id, &chosen).await?;
    let (_, rows) = parse_csv(&bytes, usize::MAX);
    // Columns: period start, end, zone, energy (Wh), average power; the page shows the
    // month and its energy in kWh.
    let mut total_wh = 0.0;
    let rows = rows
        .into_iter()
        .map(|row| {
            let wh: f64 = row.get(3).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            total_wh += wh;
            vec![
                row.first()
                    .map(|start| start.get(..7).unwrap_or(start).to_owned())
                    .unwrap_or_default(),
                lang.energy(wh),
            ]
        })
        .collect();
    let page = PrintPage {
        lang,
        system_name: details.name.clone(),
        system_id: id,
        address: [
            details.street_address.as_str(),
            details.city.as_str(),
            details.region.as_str(),
            details.country.as_str(),
        ]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", "),
        installer: details.installer_name.clone(),
        title: lang.t("Monthly produced energy").to_owned(),
        period: format!("{} – {}", lang.date(&chosen.from), lang.date(&chosen.to)),
        header: vec![lang.t("Month").to_owned(), lang.t("Energy").to_owned()],
        rows,
        total: lang.energy(total_wh),
        generated: lang.time(sunfleet_engine::time::now_micros()),
    };
    render("monthly report", &page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::form_fuzz;
    use proptest::prelude::*;

    /// Report codes, granularities and dates (in Paris's clock changes, at the ends of the
    /// calendar, ranges too long).
    const WORDS: &[&str] = &[
        "production",
        "consumption",
        "meter-data",
        "monthly-production",
        "5m",
        "15m",
        "hour",
        "day",
        "month",
        "2016-05-10",
        "2026-02-01",
        "2026-03-29",
        "2026-05-10",
        "2026-10-25",
        "-009999-01-01",
        "9999-12-31",
    ];

    fn parameter() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop_oneof![
            3 => prop::sample::select(WORDS).prop_map(str::to_owned),
            1 => form_fuzz::text(),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any query string chooses a report over a range within its limits, or is refused
        /// with a message.
        #[test]
        fn any_report_query_is_chosen_or_refused_with_a_message(
            kind in parameter(),
            from in parameter(),
            to in parameter(),
            granularity in parameter(),
            paris in any::<bool>(),
            lang in prop::sample::select(Lang::ALL.to_vec()),
        ) {
            let zone = if paris {
                jiff::tz::TimeZone::get("Europe/Paris").unwrap()
            } else {
                jiff::tz::TimeZone::UTC
            };
            let query = ReportQuery {
                kind,
                from,
                to,
                granularity,
            };
            match choose(&query, &zone, lang) {
                Ok(chosen) => {
                    let request = &chosen.request;
                    let limit = if request.kind == ReportKind::MeterData {
                        MAX_METER_DAYS
                    } else {
                        MAX_REPORT_DAYS
                    };
                    prop_assert!(request.start_us < request.end_us);
                    prop_assert!(request.end_us - request.start_us <= limit * DAY_US + DAY_US / 12);
                }
                Err(message) => prop_assert!(!message.trim().is_empty()),
            }
        }
    }
}
