//! Live status (S6): production, consumption, import or export and the battery's charge or
//! discharge from each device's freshest reading, refreshed every few seconds by polling
//! `live.json` (`assets/system.js`).

use std::collections::BTreeMap;

use askama::Template;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use sunfleet_query::live::LiveStatus;

use super::{SystemChrome, load};
use crate::access::{Need, authorize};
use crate::i18n::Lang;
use crate::pages::{Chrome, render};
use crate::server::AppState;
use crate::{PortalError, Principal};

/// Seconds between refreshes.
const REFRESH_S: u32 = 5;

#[derive(Template)]
#[template(path = "system/live.html")]
struct LivePage {
    chrome: Chrome,
    system: SystemChrome,
    figures: BTreeMap<&'static str, String>,
    metered: bool,
    has_battery: bool,
    refresh_s: u32,
}

impl LivePage {
    fn figure(&self, key: &str) -> &str {
        self.figures.get(key).map_or("", String::as_str)
    }
}

/// The figures as the page shows them, by the name of their slot.
fn figures(
    live: &LiveStatus,
    lang: Lang,
    zone: &jiff::tz::TimeZone,
    now: i64,
) -> BTreeMap<&'static str, String> {
    let mut shown = BTreeMap::new();
    shown.insert("production", lang.power(live.production_w));
    shown.insert("microinverters", live.microinverters_reporting.to_string());
    shown.insert(
        "as_of",
        match live.as_of_us {
            Some(t) => format!("{} ({})", lang.local_time(t, zone), lang.age(now - t)),
            None => lang.t("no reading in the past 30 minutes").to_owned(),
        },
    );
    if let Some(w) = live.consumption_w {
        shown.insert("consumption", lang.power(w));
    }
    if let Some(w) = live.net_import_w {
        let text = if w >= 0.0 {
            lang.fill("Importing {}", &[&lang.power(w)])
        } else {
            lang.fill("Exporting {}", &[&lang.power(-w)])
        };
        shown.insert("grid", text);
    }
    if let Some(w) = live.battery_w {
        let text = if w > 0.0 {
            lang.fill("Discharging {}", &[&lang.power(w)])
        } else if w < 0.0 {
            lang.fill("Charging {}", &[&lang.power(-w)])
        } else {
            lang.t("Idle").to_owned()
        };
        shown.insert("battery", text);
    }
    if let Some(soc) = live.battery_soc_pct {
        shown.insert("soc", lang.percent(soc, 0));
    }
    shown
}

pub async fn page(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
) -> Result<Response, PortalError> {
    let (chrome, system) = load(&state, &principal, id, "live").await?;
    let now = sunfleet_engine::time::now_micros();
    let live = state.query().live_status(&principal.scope, id, now).await?;
    let page = LivePage {
        figures: figures(&live, principal.lang(), &system.zone, now),
        metered: live.consumption_w.is_some() || system.panel.meters > 0,
        has_battery: live.battery_w.is_some() || system.panel.batteries > 0,
        refresh_s: REFRESH_S,
        chrome,
        system,
    };
    render("live status", &page)
}

/// `live.json`: the same figures, for the page's refresh.
pub async fn json(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<u32>,
) -> Result<Json<BTreeMap<&'static str, String>>, PortalError> {
    authorize(&principal, Need::System(id))?;
    let (_, zone) = super::system_record(&state, id)?;
    let now = sunfleet_engine::time::now_micros();
    let live = state.query().live_status(&principal.scope, id, now).await?;
    Ok(Json(figures(&live, principal.lang(), &zone, now)))
}
