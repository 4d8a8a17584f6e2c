//! Graph (S2): production, and where metered consumption and net import, and battery
//! discharge, over a chosen range at a granularity that fits it (5 minutes for a day, up
//! to months for years). The page draws with uPlot (`assets/system.js`): range sliders and
//! dragging on the chart zoom in, fetching finer series from `graph.json`; the legend reads
//! out the values at the exact time under the cursor. A table holds the same figures for
//! readers without JavaScript.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use sunfleet_query::series::{Granularity, SeriesRequest};
use sunfleet_query::site::SiteSeries;

use super::{DAY_US, SystemChrome, load, local_date, local_day_bounds};
use crate::access::{Need, authorize};
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// Points a chart draws at most (a wide screen's pixels).
const MAX_POINTS: usize = 1_500;
/// Longest range a graph covers.
const MAX_RANGE_DAYS: i64 = 366 * 10;

#[derive(Debug, Deserialize, Default)]
pub struct GraphQuery {
    from: Option<String>,
    to: Option<String>,
    /// `auto` (or absent), `5m`, `15m`, `hour`, `day` or `month`.
    granularity: Option<String>,
}

/// The chart's data, as the page embeds it and `graph.json` answers.
#[derive(Debug, Serialize)]
pub struct GraphData {
    pub from: String,
    pub to: String,
    pub granularity: &'static str,
    pub time_zone: String,
    /// `W` (average power per bucket, for buckets up to an hour) or `kWh` (energy per day
    /// or month).
    pub unit: &'static str,
    /// Bucket starts, UTC seconds.
    pub x: Vec<i64>,
    /// Bucket starts in the site's time, for the readout and the table.
    pub labels: Vec<String>,
    pub produced: Vec<f64>,
    pub consumed: Option<Vec<Option<f64>>>,
    pub net_import: Option<Vec<Option<f64>>>,
    pub battery: Option<Vec<Option<f64>>>,
    /// The range's energy produced and (where metered) consumed, as the page shows them.
    pub total_produced: String,
    pub total_consumed: Option<String>,
}

pub struct TableRow {
    pub label: String,
    pub produced: String,
    pub consumed: String,
    pub net_import: String,
    pub battery: String,
}

#[derive(Template)]
#[template(path = "system/graph.html")]
struct GraphPage {
    chrome: Chrome,
    system: SystemChrome,
    data_json: String,
    from: String,
    to: String,
    granularity: String,
    granularities: Vec<(&'static str, &'static str)>,
    presets: Vec<(String, &'static str)>,
    unit: &'static str,
    metered: bool,
    has_battery: bool,
    rows: Vec<TableRow>,
    total_produced: String,
    total_consumed: Option<String>,
}

pub const GRANULARITIES: [(&str, &str); 6] = [
    ("auto", "Automatic"),
    ("5m", "5 minutes"),
    ("15m", "15 minutes"),
    ("hour", "Hour"),
    ("day", "Day"),
    ("month", "Month"),
];

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<GraphQuery>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "graph").await?;
    let lang = principal.lang();
    let (site, data) = series(&state, &principal, id, &system.zone, &query).await?;
    let shown = |value: Option<f64>| match value {
        Some(v) if data.unit == "W" => lang.power(v),
        Some(v) => format!("{} kWh", lang.decimal(v, 2)),
        None => String::new(),
    };
    let rows = data
        .labels
        .iter()
        .enumerate()
        .map(|(i, label)| TableRow {
            label: label.replace('T', " "),
            produced: shown(data.produced.get(i).copied()),
            consumed: shown(
                data.consumed
                    .as_ref()
                    .and_then(|c| c.get(i).copied().flatten()),
            ),
            net_import: shown(
                data.net_import
                    .as_ref()
                    .and_then(|c| c.get(i).copied().flatten()),
            ),
            battery: shown(
                data.battery
                    .as_ref()
                    .and_then(|c| c.get(i).copied().flatten()),
            ),
        })
        .collect();
    let today = local_date(&system.zone, sunfleet_engine::time::now_micros());
    let back = |days: i64| {
        local_date(
            &system.zone,
            sunfleet_engine::time::now_micros() - days * DAY_US,
        )
    };
    let presets = vec![
        (format!("from={today}&to={today}"), "Today"),
        (format!("from={}&to={today}", back(6)), "7 days"),
        (format!("from={}&to={today}", back(29)), "30 days"),
        (format!("from={}&to={today}", back(364)), "12 months"),
    ];
    let page = GraphPage {
        data_json: serde_json::to_string(&data).map_err(|e| PortalError::Internal {
            context: format!("encoding the graph data: {e}"),
        })?,
        from: data.from.clone(),
        to: data.to.clone(),
        granularity: query.granularity.unwrap_or_else(|| "auto".to_owned()),
        granularities: GRANULARITIES
            .iter()
            .map(|(code, label)| (*code, lang.t(label)))
            .collect(),
        presets: presets
            .into_iter()
            .map(|(q, label)| (q, lang.t(label)))
            .collect(),
        unit: data.unit,
        metered: site.metered,
        has_battery: site.has_battery,
        rows,
        total_produced: data.total_produced.clone(),
        total_consumed: data.total_consumed.clone(),
        chrome,
        system,
    };
    render("system graph", &page)
}

/// `graph.json`: the chart's data for another range (the page's zoom).
pub async fn json(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<GraphQuery>,
) -> Result<Json<GraphData>, PortalError> {
    authorize(&principal, Need::System(id))?;
    let (_, zone) = super::system_record(&state, id)?;
    let (_, data) = series(&state, &principal, id, &zone, &query).await?;
    Ok(Json(data))
}

/// The granularity that keeps a range readable: 5 minutes up to two days, hours up to two
/// weeks, days up to about four months, then months.
fn automatic(days: i64) -> Granularity {
    match days {
        ..=2 => Granularity::FiveMinutes,
        3..=14 => Granularity::Hour,
        15..=124 => Granularity::Day,
        _ => Granularity::Month,
    }
}

fn name_of(granularity: Granularity) -> &'static str {
    match granularity {
        Granularity::FiveMinutes => "5m",
        Granularity::FifteenMinutes => "15m",
        Granularity::Hour => "hour",
        Granularity::Day => "day",
        Granularity::Month => "month",
    }
}

async fn series(
    state: &AppState,
    principal: &Principal,
    id: u32,
    zone: &TimeZone,
    query: &GraphQuery,
) -> Result<(SiteSeries, GraphData), PortalError> {
    let lang = principal.lang();
    let now = sunfleet_engine::time::now_micros();
    let today = local_date(zone, now);
    let from = query
        .from
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| local_date(zone, now - 6 * DAY_US));
    let to = query.to.clone().filter(|d| !d.is_empty()).unwrap_or(today);
    let bad_range = || {
        PortalError::BadRequest {
        message: lang.fill(
            "Choose dates (YYYY-MM-DD) of a range of up to {} days whose end is not before its start.",
            &[&MAX_RANGE_DAYS],
        ),
    }
    };
    let (start, _) = local_day_bounds(zone, &from).ok_or_else(bad_range)?;
    let (_, end) = local_day_bounds(zone, &to).ok_or_else(bad_range)?;
    if end <= start || end - start > MAX_RANGE_DAYS * DAY_US {
        return Err(bad_range());
    }
    let days = (end - start).div_euclid(DAY_US).max(1);
    let granularity = match query.granularity.as_deref() {
        None | Some("") | Some("auto") => automatic(days),
        Some(name) => Granularity::from_name(name).ok_or_else(|| PortalError::BadRequest {
            message: lang
                .t("The granularity is one of auto, 5m, 15m, hour, day or month.")
                .to_owned(),
        })?,
    };
    let mut site = state
        .query()
        .site_series(
            &principal.scope,
            &SeriesRequest {
                system_id: id,
                device_id: None,
                start_us: start,
                end_us: end,
                granularity,
                max_points: MAX_POINTS,
            },
        )
        .await?;
    // Buckets that have not begun yet are not zeros: the chart stops at the present.
    site.points.retain(|p| p.start_us <= now);
    let power = matches!(
        granularity,
        Granularity::FiveMinutes | Granularity::FifteenMinutes | Granularity::Hour
    );
    // Power for short buckets (W over each point's length), energy for days and months.
    let scale = |wh: f64, start_us: i64, end_us: i64| {
        if power {
            wh * 3_600.0 / ((end_us - start_us) as f64 / 1e6)
        } else {
            wh / 1000.0
        }
    };
    let column = |value: fn(&sunfleet_query::site::SitePoint) -> Option<f64>| {
        site.points
            .iter()
            .map(|p| value(p).map(|wh| round(scale(wh, p.start_us, p.end_us))))
            .collect::<Vec<_>>()
    };
    let data = GraphData {
        from,
        to,
        granularity: name_of(granularity),
        time_zone: site.time_zone.clone(),
        unit: if power { "W" } else { "kWh" },
        x: site.points.iter().map(|p| p.start_us / 1_000_000).collect(),
        labels: site.points.iter().map(|p| p.local_start.clone()).collect(),
        produced: site
            .points
            .iter()
            .map(|p| round(scale(p.produced_wh, p.start_us, p.end_us)))
            .collect(),
        consumed: site.metered.then(|| column(|p| p.consumed_wh)),
        net_import: site.metered.then(|| column(|p| p.net_import_wh)),
        battery: site.has_battery.then(|| column(|p| p.battery_wh)),
        total_produced: lang.energy(site.points.iter().map(|p| p.produced_wh).sum()),
        total_consumed: site
            .points
            .iter()
            .filter_map(|p| p.consumed_wh)
            .reduce(|a, b| a + b)
            .map(|wh| lang.energy(wh)),
    };
    Ok((site, data))
}

fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
