//! View (S1): the arrays as the builder laid them out, one cell per microinverter coloured
//! by its energy or peak power for a site-local day (with the past seven days to step or
//! play through) or a custom range; a cell opens the microinverter's details.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use sunfleet_query::array_view::{ArrayPanel, MAX_RANGE_DAYS};

use super::{DAY_US, SystemChrome, load, local_date, local_day_bounds};
use crate::i18n::Lang;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// Colour steps of the heat map (0: nothing produced).
const LEVELS: u32 = 10;

#[derive(Debug, Deserialize, Default)]
pub struct ViewQuery {
    date: Option<String>,
    from: Option<String>,
    to: Option<String>,
    metric: Option<String>,
}

pub struct DayLink {
    pub href: String,
    pub label: String,
    pub active: bool,
}

pub struct Cell {
    pub href: String,
    pub serial: String,
    /// The last six digits, as installers read them off a label.
    pub short_serial: String,
    pub value: String,
    pub level: u32,
}

pub struct Panel {
    pub name: String,
    pub orientation: String,
    /// Row by row; `None` where no microinverter sits.
    pub rows: Vec<Vec<Option<Cell>>>,
}

#[derive(Template)]
#[template(path = "system/view.html")]
struct ViewPage {
    chrome: Chrome,
    system: SystemChrome,
    days: Vec<DayLink>,
    metric: &'static str,
    energy_href: String,
    power_href: String,
    from: String,
    to: String,
    error: Option<String>,
    heading: String,
    total: String,
    legend: String,
    panels: Vec<Panel>,
    levels: Vec<u32>,
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
    Query(query): Query<ViewQuery>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "view").await?;
    let lang = principal.lang();
    let now = sunfleet_engine::time::now_micros();
    let zone = system.zone.clone();
    let today = local_date(&zone, now);
    let metric = if query.metric.as_deref() == Some("power") {
        "power"
    } else {
        "energy"
    };
    let mut error = None;
    // A custom range (both ends inclusive), else one day (today unless chosen).
    let range = match (query.from.as_deref(), query.to.as_deref()) {
        (Some(from), Some(to)) if !from.is_empty() || !to.is_empty() => {
            match (local_day_bounds(&zone, from), local_day_bounds(&zone, to)) {
                (Some((start, _)), Some((_, end)))
                    if start < end && end - start <= MAX_RANGE_DAYS * DAY_US + DAY_US / 12 =>
                {
                    Some((start, end, from.to_owned(), to.to_owned()))
                }
                _ => {
                    error = Some(lang.fill(
                        "Choose a range of up to {} days whose end is not before its start.",
                        &[&MAX_RANGE_DAYS],
                    ));
                    None
                }
            }
        }
        _ => None,
    };
    let (start, end, from, to, heading, day) = match range {
        Some((start, end, from, to)) => {
            let heading = format!("{} – {}", lang.date(&from), lang.date(&to));
            (start, end, from, to, heading, None)
        }
        None => {
            let date = query
                .date
                .filter(|d| local_day_bounds(&zone, d).is_some())
                .unwrap_or_else(|| today.clone());
            let (start, end) =
                local_day_bounds(&zone, &date).ok_or_else(|| PortalError::Internal {
                    context: format!("the bounds of {date} in {}", system.details.time_zone),
                })?;
            (
                start,
                end,
                date.clone(),
                date.clone(),
                lang.date(&date),
                Some(date),
            )
        }
    };
    let arrays = state
        .query()
        .array_view(&principal.scope, id, start, end)
        .await?;
    let days = past_days(&zone, now)
        .into_iter()
        .map(|date| DayLink {
            href: format!("/systems/{id}?date={date}&metric={metric}"),
            label: lang.date(&date),
            active: day.as_deref() == Some(date.as_str()),
        })
        .collect();
    let selection = match &day {
        Some(date) => format!("date={date}"),
        None => format!("from={from}&to={to}"),
    };
    let detail_date = day.clone().unwrap_or_else(|| to.clone());
    let total_wh: f64 = arrays
        .iter()
        .flat_map(|a| &a.cells)
        .map(|c| c.energy_wh)
        .sum();
    let panels = panels(&arrays, metric, lang, |device| {
        format!("/systems/{id}/devices/{device}?date={detail_date}")
    });
    let legend = if metric == "energy" {
        lang.t("cells coloured by energy produced").to_owned()
    } else {
        lang.t("cells coloured by peak power").to_owned()
    };
    let page = ViewPage {
        energy_href: format!("/systems/{id}?{selection}&metric=energy"),
        power_href: format!("/systems/{id}?{selection}&metric=power"),
        chrome,
        system,
        days,
        metric,
        from,
        to,
        error,
        heading,
        total: lang.energy(total_wh),
        legend,
        panels,
        levels: (0..=LEVELS).collect(),
    };
    render("system view", &page)
}

/// The seven site-local days that end today, oldest first.
fn past_days(zone: &jiff::tz::TimeZone, now: i64) -> Vec<String> {
    (0..7)
        .rev()
        .map(|back| local_date(zone, now - back * DAY_US))
        .collect()
}

/// The arrays as grids of cells, each coloured against the brightest cell of the view.
fn panels(
    arrays: &[ArrayPanel],
    metric: &str,
    lang: Lang,
    href: impl Fn(u32) -> String,
) -> Vec<Panel> {
    let value_of = |cell: &sunfleet_query::array_view::ArrayCell| {
        if metric == "power" {
            f64::from(cell.peak_power_w)
        } else {
            cell.energy_wh
        }
    };
    let brightest = arrays
        .iter()
        .flat_map(|a| &a.cells)
        .map(value_of)
        .fold(0.0, f64::max);
    arrays
        .iter()
        .map(|array| {
            // Unplaced microinverters (array 0) have no grid: one row of them.
            let (rows, columns) = if array.array_id == 0 {
                (1, array.cells.len().max(1))
            } else {
                (
                    usize::try_from(array.rows).unwrap_or(0),
                    usize::try_from(array.columns).unwrap_or(0),
                )
            };
            let mut grid: Vec<Vec<Option<Cell>>> = (0..rows)
                .map(|_| (0..columns).map(|_| None).collect())
                .collect();
            for (index, cell) in array.cells.iter().enumerate() {
                let (row, column) = if array.array_id == 0 {
                    (0, index)
                } else {
                    (
                        usize::try_from(cell.row).unwrap_or(usize::MAX),
                        usize::try_from(cell.column).unwrap_or(usize::MAX),
                    )
                };
                let value = value_of(cell);
                let level = if brightest > 0.0 && value > 0.0 {
                    ((value / brightest * f64::from(LEVELS)).ceil() as u32).clamp(1, LEVELS)
                } else {
                    0
                };
                let shown = if metric == "power" {
                    lang.power(value)
                } else {
                    lang.energy(value)
                };
                if let Some(slot) = grid.get_mut(row).and_then(|r| r.get_mut(column)) {
                    *slot = Some(Cell {
                        href: href(cell.device_id),
                        short_serial: cell.serial[cell.serial.len().saturating_sub(6)..].to_owned(),
                        serial: cell.serial.clone(),
                        value: shown,
                        level,
                    });
                }
            }
            Panel {
                name: if array.array_id == 0 {
                    lang.t("Not placed in an array").to_owned()
                } else {
                    array.name.clone()
                },
                orientation: if array.array_id == 0 {
                    String::new()
                } else {
                    lang.fill(
                        "azimuth {}°, tilt {}°",
                        &[
                            &lang.decimal(array.azimuth_deg, 0),
                            &lang.decimal(array.tilt_deg, 0),
                        ],
                    )
                },
                rows: grid,
            }
        })
        .collect()
}
