//! What the fleet pages and their JSON show, read through the query layer in the
//! principal's scope (so nothing outside it can appear).

use std::collections::HashMap;

use serde::Serialize;
use sunfleet_engine::telemetry::EventKind;
use sunfleet_query::overview::SystemFigures;
use sunfleet_query::{QueryEngine, Scope};

use crate::PortalError;

/// One system as the fleet pages list it.
#[derive(Debug, Clone, Serialize)]
pub struct SystemLine {
    pub id: u32,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub status_since_us: Option<i64>,
    pub stage: String,
    pub installer: String,
    pub installer_reference: String,
    pub street_address: String,
    pub city: String,
    pub region: String,
    pub country: String,
    pub internet_connection: String,
    /// Open events (alerts and device events).
    pub open_events: usize,
    pub energy_today_wh: Option<f64>,
    pub energy_past_7_days_wh: Option<f64>,
    pub energy_month_wh: Option<f64>,
    pub lifetime_estimate_pct: Option<f64>,
    pub last_report_us: Option<i64>,
    /// Energy of the past seven site-local days, oldest first (ISO date, Wh).
    pub daily_wh: Vec<(String, f64)>,
}

/// An open event of a system.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub system_id: u32,
    pub system_name: String,
    pub code: String,
    pub label: String,
    pub severity: String,
    pub started_us: i64,
    pub details: String,
    pub city: String,
    pub region: String,
}

/// The company's service requests by state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServiceSummary {
    pub total: usize,
    pub new: usize,
    pub in_progress: usize,
    pub resolved: usize,
}

/// The dashboard's company performance scorecard.
#[derive(Debug, Clone, Serialize)]
pub struct Scorecard {
    pub systems: usize,
    /// Share of monitored systems whose status is normal.
    pub normal_pct: Option<f64>,
    pub energy_today_wh: f64,
    pub energy_past_7_days_wh: f64,
    /// The site-local months so far, summed.
    pub energy_month_wh: f64,
    /// Mean time from an alert's start to its end, over alerts ended in the past 90 days.
    pub mean_time_to_resolve_h: Option<f64>,
    /// The fleet's energy per site-local day, the past seven days, oldest first.
    pub daily_wh: Vec<(String, f64)>,
}

/// A system the checks judge: not deactivated, retired or unmonitored by hand.
pub fn monitored(s: &SystemLine) -> bool {
    !matches!(
        s.status.as_str(),
        "deactivated" | "retired" | "not_monitored"
    )
}

/// A system the Alerts tab lists: monitored and not normal.
pub fn in_alert(s: &SystemLine) -> bool {
    monitored(s) && s.status != "normal"
}

/// A system the Activations tab lists: not through the four stages yet.
pub fn activating(s: &SystemLine) -> bool {
    s.stage != "ready"
}

/// What a status code means to an installer.
pub fn status_label(status: &str) -> &'static str {
    match status {
        "normal" => "Normal",
        "comm" => "Gateway not reporting",
        "production_off" => "Production off by command",
        "micro" => "Microinverters not reporting",
        "power" => "Production issue",
        "meter" => "Meter not reporting",
        "meter_issue" => "Meter issue",
        "battery" => "Battery not reporting",
        "storage_idle" => "Storage idle",
        "deactivated" => "Deactivated",
        "retired" => "Retired",
        "not_monitored" => "Not monitored",
        _ => "Unknown",
    }
}

/// What an event code means to an installer.
pub fn event_label(code: &str) -> String {
    let system_level = match code {
        "gateway_not_reporting" => Some("Gateway not reporting"),
        "production_off" => Some("Power production off by command"),
        "micro_not_reporting" => Some("Microinverters not reporting"),
        "production_issue" => Some("Production issue"),
        "meter_not_reporting" => Some("Meter not reporting"),
        "meter_issue" => Some("Meter issue"),
        "battery_not_reporting" => Some("Battery not reporting"),
        _ => None,
    };
    if let Some(label) = system_level {
        return label.to_owned();
    }
    (1..=64)
        .filter_map(EventKind::from_number)
        .find(|kind| kind.code() == code)
        .map_or_else(|| code.to_owned(), |kind| kind.label().to_owned())
}

/// Stages of activation, in order, with their labels.
pub const STAGES: [(&str, &str); 4] = [
    ("started", "Started"),
    ("connecting", "Connecting"),
    ("verifying", "Verifying"),
    ("ready", "Ready"),
];

pub fn stage_label(stage: &str) -> &'static str {
    STAGES
        .iter()
        .find(|(code, _)| *code == stage)
        .map_or("Unknown", |(_, label)| label)
}

fn text(values: &[Option<String>], i: usize) -> String {
    values.get(i).cloned().flatten().unwrap_or_default()
}

/// Every system of the scope, by id, with open-event counts (no energy figures).
pub async fn systems(query: &QueryEngine, scope: &Scope) -> Result<Vec<SystemLine>, PortalError> {
    let answer = query
        .sql(
            scope,
            "SELECT s.id, s.name, s.kind, s.status, s.status_since_us, s.stage, c.name,
                    s.installer_reference, s.street_address, s.city, s.region, s.country,
                    s.internet_connection, CAST(count(e.id) AS BIGINT)
             FROM systems s
             LEFT JOIN companies c ON c.id = s.installer_id
             LEFT JOIN events e ON e.system_id = s.id AND e.ended_us IS NULL
             GROUP BY s.id, s.name, s.kind, s.status, s.status_since_us, s.stage, c.name,
                      s.installer_reference, s.street_address, s.city, s.region, s.country,
                      s.internet_connection
             ORDER BY s.id",
        )
        .await?;
    let ids = answer.i64s(0);
    let columns: Vec<Vec<Option<String>>> = [1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12]
        .into_iter()
        .map(|c| answer.strings(c))
        .collect();
    let since = answer.i64s(4);
    let open = answer.i64s(13);
    let mut lines = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let Some(Ok(id)) = id.map(u32::try_from) else {
            continue;
        };
        lines.push(SystemLine {
            id,
            name: text(&columns[0], i),
            kind: text(&columns[1], i),
            status: text(&columns[2], i),
            status_since_us: since[i],
            stage: text(&columns[3], i),
            installer: text(&columns[4], i),
            installer_reference: text(&columns[5], i),
            street_address: text(&columns[6], i),
            city: text(&columns[7], i),
            region: text(&columns[8], i),
            country: text(&columns[9], i),
            internet_connection: text(&columns[10], i),
            open_events: open[i].unwrap_or(0).max(0) as usize,
            energy_today_wh: None,
            energy_past_7_days_wh: None,
            energy_month_wh: None,
            lifetime_estimate_pct: None,
            last_report_us: None,
            daily_wh: Vec::new(),
        });
    }
    Ok(lines)
}

/// [`systems`] with each system's energy figures at `now_us`.
pub async fn systems_with_figures(
    query: &QueryEngine,
    scope: &Scope,
    now_us: i64,
) -> Result<Vec<SystemLine>, PortalError> {
    let mut lines = systems(query, scope).await?;
    let figures: HashMap<u32, SystemFigures> = query
        .system_figures(scope, now_us)
        .await?
        .into_iter()
        .map(|f| (f.system_id, f))
        .collect();
    for line in &mut lines {
        if let Some(f) = figures.get(&line.id) {
            line.energy_today_wh = Some(f.energy_today_wh);
            line.energy_past_7_days_wh = Some(f.energy_past_7_days_wh);
            line.energy_month_wh = Some(f.energy_month_wh);
            line.lifetime_estimate_pct = f.lifetime_estimate_pct;
            line.last_report_us = f.last_report_us;
            line.daily_wh = f
                .daily_wh
                .iter()
                .map(|(date, wh)| (date.to_string(), *wh))
                .collect();
        }
    }
    Ok(lines)
}

/// Open events of the scope's systems, newest first.
pub async fn open_alerts(query: &QueryEngine, scope: &Scope) -> Result<Vec<Alert>, PortalError> {
    let answer = query
        .sql(
            scope,
            "SELECT e.system_id, s.name, e.code, e.severity, e.started_us, e.details, s.city, s.region
             FROM events e JOIN systems s ON s.id = e.system_id
             WHERE e.ended_us IS NULL
             ORDER BY e.started_us DESC, e.system_id",
        )
        .await?;
    let (ids, names, codes, severities, starts, details, cities, regions) = (
        answer.i64s(0),
        answer.strings(1),
        answer.strings(2),
        answer.strings(3),
        answer.i64s(4),
        answer.strings(5),
        answer.strings(6),
        answer.strings(7),
    );
    let mut alerts = Vec::with_capacity(ids.len());
    for i in 0..ids.len() {
        let Some(Ok(system_id)) = ids[i].map(u32::try_from) else {
            continue;
        };
        let code = text(&codes, i);
        alerts.push(Alert {
            system_id,
            system_name: text(&names, i),
            label: event_label(&code),
            code,
            severity: text(&severities, i),
            started_us: starts[i].unwrap_or(0),
            details: text(&details, i),
            city: text(&cities, i),
            region: text(&regions, i),
        });
    }
    Ok(alerts)
}

/// The scope's service requests by state.
pub async fn service_summary(
    query: &QueryEngine,
    scope: &Scope,
) -> Result<ServiceSummary, PortalError> {
    let answer = query
        .sql(
            scope,
            "SELECT state, CAST(count(*) AS BIGINT) FROM service_requests GROUP BY state",
        )
        .await?;
    let mut summary = ServiceSummary::default();
    for (state, count) in answer.strings(0).into_iter().zip(answer.i64s(1)) {
        let count = count.unwrap_or(0).max(0) as usize;
        summary.total += count;
        match service_group(state.as_deref().unwrap_or_default()) {
            "new" => summary.new += count,
            "in progress" => summary.in_progress += count,
            _ => summary.resolved += count,
        }
    }
    Ok(summary)
}

/// A service request as the services page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceRequestLine {
    pub id: i64,
    pub kind: String,
    pub system_id: i64,
    pub system_name: String,
    pub state: String,
    pub rma_number: Option<String>,
    pub reason: String,
    pub created_us: i64,
    pub updated_us: i64,
}

/// Where a request's state puts it in the dashboard summary: filed and not yet looked at,
/// being handled (in progress, approved, shipped), or ended (resolved or rejected).
pub fn service_group(state: &str) -> &'static str {
    match state {
        "new" => "new",
        "in_progress" | "approved" | "shipped" => "in progress",
        _ => "resolved",
    }
}

/// The scope's service requests (or one system's), most recently changed first (at most
/// 500).
pub async fn service_requests(
    query: &QueryEngine,
    scope: &Scope,
    system: Option<u32>,
) -> Result<Vec<ServiceRequestLine>, PortalError> {
    let only = system.map_or(String::new(), |id| format!("WHERE r.system_id = {id}"));
    let answer = query
        .sql(
            scope,
            &format!(
                "SELECT r.id, r.kind, r.system_id, s.name, r.state, r.rma_number, r.reason,
                        r.created_us, r.updated_us
                   FROM service_requests r JOIN systems s ON s.id = r.system_id
                  {only}
                  ORDER BY r.updated_us DESC, r.id DESC LIMIT 500"
            ),
        )
        .await?;
    let ids = answer.i64s(0);
    let kinds = answer.strings(1);
    let systems = answer.i64s(2);
    let names = answer.strings(3);
    let states = answer.strings(4);
    let rmas = answer.strings(5);
    let reasons = answer.strings(6);
    let created = answer.i64s(7);
    let updated = answer.i64s(8);
    Ok((0..answer.rows())
        .map(|i| ServiceRequestLine {
            id: ids[i].unwrap_or(0),
            kind: kinds[i].clone().unwrap_or_default(),
            system_id: systems[i].unwrap_or(0),
            system_name: names[i].clone().unwrap_or_default(),
            state: states[i].clone().unwrap_or_default(),
            rma_number: rmas[i].clone(),
            reason: reasons[i].clone().unwrap_or_default(),
            created_us: created[i].unwrap_or(0),
            updated_us: updated[i].unwrap_or(0),
        })
        .collect())
}

/// The scope's gateways (not retired) per grid profile name (`""`: not known).
pub async fn grid_profile_counts(
    query: &QueryEngine,
    scope: &Scope,
) -> Result<HashMap<String, i64>, PortalError> {
    let answer = query
        .sql(
            scope,
            "SELECT COALESCE(grid_profile, ''), CAST(count(*) AS BIGINT) FROM devices
              WHERE kind = 'gateway' AND state <> 'retired' GROUP BY 1",
        )
        .await?;
    Ok(answer
        .strings(0)
        .into_iter()
        .zip(answer.i64s(1))
        .map(|(name, count)| (name.unwrap_or_default(), count.unwrap_or(0)))
        .collect())
}

/// The company performance scorecard from the systems (with figures) and ended events.
pub async fn scorecard(
    query: &QueryEngine,
    scope: &Scope,
    systems: &[SystemLine],
    now_us: i64,
) -> Result<Scorecard, PortalError> {
    let judged: Vec<&SystemLine> = systems.iter().filter(|s| monitored(s)).collect();
    let normal = judged.iter().filter(|s| s.status == "normal").count();
    let since = now_us - 90 * 86_400_000_000;
    let answer = query
        .sql(
            scope,
            &format!(
                "SELECT CAST(avg(ended_us - started_us) AS DOUBLE) FROM events
                 WHERE ended_us IS NOT NULL AND ended_us > {since}"
            ),
        )
        .await?;
    Ok(Scorecard {
        systems: systems.len(),
        normal_pct: (!judged.is_empty()).then(|| normal as f64 / judged.len() as f64 * 100.0),
        energy_today_wh: systems.iter().filter_map(|s| s.energy_today_wh).sum(),
        energy_past_7_days_wh: systems.iter().filter_map(|s| s.energy_past_7_days_wh).sum(),
        energy_month_wh: systems.iter().filter_map(|s| s.energy_month_wh).sum(),
        daily_wh: {
            let mut days: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
            for (date, wh) in systems.iter().flat_map(|s| &s.daily_wh) {
                *days.entry(date.as_str()).or_default() += wh;
            }
            days.into_iter().map(|(d, wh)| (d.to_owned(), wh)).collect()
        },
        mean_time_to_resolve_h: answer
            .f64s(0)
            .first()
            .copied()
            .flatten()
            .map(|us| us / 3_600_000_000.0),
    })
}
