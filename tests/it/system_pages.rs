//! One system's pages end to end (S1–S3, S6–S8) through `sunfleet demo`: every tab renders
//! with its side panel; the array view has a cell per microinverter; the graph's data and
//! every report agree with SQL over the raw readings; live figures refresh from JSON;
//! service forms refuse bad input and file requests; a kiosk link shows the system signed
//! out until it is revoked; owners look but do not change, and other systems are not found.

use crate::demo::{PASSWORD, start_demo, system_ids};
use crate::free_tcp_port;
use crate::http::{Client, hidden_field};

/// Rows of a JSON SQL answer.
fn sql(client: &mut Client, csrf: &str, text: &str) -> Vec<serde_json::Value> {
    let answer = client.request(
        "POST",
        "/api/sql?format=json",
        &[("X-CSRF-Token", csrf), ("Content-Type", "text/plain")],
        Some(text),
    );
    assert_eq!(answer.status, 200, "{text}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

fn number(value: &serde_json::Value) -> f64 {
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0.0)
}

/// A CSV answer as its header and rows.
fn csv_rows(body: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::Reader::from_reader(body.as_bytes());
    let header = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect();
    (header, rows)
}

/// Energy (Wh) the system's microinverters reported in `(start, end]` (RFC 3339 times).
fn produced_wh(client: &mut Client, csrf: &str, system: u64, start: &str, end: &str) -> f64 {
    let rows = sql(
        client,
        csrf,
        &format!(
            "SELECT CAST(COALESCE(sum(energy_j), 0) AS DOUBLE) / 3600.0 AS wh FROM readings
             WHERE system_id = {system} AND time > to_timestamp('{start}') AND time <= to_timestamp('{end}')"
        ),
    );
    number(&rows[0]["wh"])
}

#[test]
fn an_installer_walks_a_systems_pages_and_their_figures_match_sql() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(&dir.path().join("demo"), free_tcp_port());
    let mut installer = Client::new(&demo.portal);
    assert_eq!(
        installer
            .sign_in(&demo.accounts["installer administrator"], PASSWORD)
            .status,
        303
    );
    let visible = system_ids(&mut installer);
    let dashboard = installer.get("/");
    let csrf = hidden_field(&dashboard.body, "csrf_token").unwrap();
    // A system of this company with a consumption meter, so every report has rows.
    let metered = sql(
        &mut installer,
        &csrf,
        "SELECT DISTINCT CAST(system_id AS BIGINT) AS id FROM meter_readings
          WHERE meter_kind IN (1, 2) ORDER BY id",
    );
    let system = metered
        .iter()
        .filter_map(|row| row["id"].as_u64())
        .find(|id| visible.contains(id))
        .expect("the installer has a system with a consumption meter");

    // Every tab renders with the side panel, and marks itself active.
    for (path, marker) in [
        ("", "array-box"),
        ("/graph", "site-chart"),
        ("/reports", "report-preview"),
        ("/live", "data-live-url"),
        ("/services", "incentive-form"),
        ("/kiosk", "links-head"),
    ] {
        let page = installer.get(&format!("/systems/{system}{path}"));
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(page.body.contains(marker), "{path}");
        assert!(page.body.contains("Energy produced today"), "{path}");
        assert!(page.body.contains("panel-produced-today"), "{path}");
    }

    // View: one cell per microinverter in service.
    let micros = sql(
        &mut installer,
        &csrf,
        &format!(
            "SELECT CAST(count(*) AS BIGINT) AS n FROM devices
              WHERE system_id = {system} AND kind = 'microinverter' AND state <> 'retired'"
        ),
    );
    let view = installer.get(&format!("/systems/{system}?metric=power"));
    assert_eq!(
        view.body.matches("data-serial=").count() as u64,
        micros[0]["n"].as_u64().unwrap()
    );
    let bad_range = installer.get(&format!("/systems/{system}?from=2026-05-01&to=2025-01-01"));
    assert_eq!(bad_range.status, 200);
    assert!(
        bad_range.body.contains("Choose a range"),
        "a bad range is explained"
    );

    // Graph data: five-minute points for a day, hourly for a week; bad ranges refused.
    let graph = installer.get(&format!("/systems/{system}/graph.json"));
    assert_eq!(graph.status, 200, "{}", graph.body);
    let graph: serde_json::Value = serde_json::from_str(&graph.body).unwrap();
    assert_eq!(graph["granularity"], "hour");
    assert!(
        graph["consumed"].is_array(),
        "a metered system has consumption"
    );
    let day = graph["to"].as_str().unwrap().to_owned();
    let zoomed = installer.get(&format!("/systems/{system}/graph.json?from={day}&to={day}"));
    let zoomed: serde_json::Value = serde_json::from_str(&zoomed.body).unwrap();
    assert_eq!(zoomed["granularity"], "5m");
    assert_eq!(zoomed["unit"], "W");
    for bad in [
        "from=yesterday",
        "from=2026-02-01&to=2026-01-01",
        "granularity=weekly",
    ] {
        let answer = installer.get(&format!("/systems/{system}/graph.json?{bad}"));
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
    }

    // Reports: each CSV agrees with SQL over the raw readings.
    let from = graph["from"].as_str().unwrap().to_owned();
    let to = day.clone();
    let report = |client: &mut Client, kind: &str, granularity: &str| {
        let answer = client.get(&format!(
            "/systems/{system}/reports.csv?kind={kind}&from={from}&to={to}&granularity={granularity}"
        ));
        assert_eq!(answer.status, 200, "{kind}: {}", answer.body);
        assert!(
            answer
                .header("content-disposition")
                .is_some_and(|d| d.contains(&format!("system-{system}-{kind}"))),
            "{kind} downloads as a file"
        );
        csv_rows(&answer.body)
    };
    let (header, rows) = report(&mut installer, "production", "day");
    assert_eq!(header[3], "energy_produced_wh");
    assert!(!rows.is_empty());
    let mut produced_total = 0.0;
    for row in &rows {
        let expected = produced_wh(&mut installer, &csrf, system, &row[0], &row[1]);
        let reported: f64 = row[3].parse().unwrap();
        assert!(
            (expected - reported).abs() < 0.01,
            "{row:?}: SQL says {expected}"
        );
        produced_total += reported;
    }
    assert!(produced_total > 0.0, "the demo system produced something");
    let (header, rows) = report(&mut installer, "consumption", "hour");
    assert_eq!(header[3], "energy_consumed_wh");
    let metered_rows = rows.iter().filter(|r| !r[3].is_empty()).count();
    assert!(metered_rows > 0, "hours with consumption");
    for row in rows.iter().filter(|r| !r[3].is_empty()).take(30) {
        let (consumed, produced, net): (f64, f64, f64) = (
            row[3].parse().unwrap(),
            row[4].parse().unwrap(),
            row[5].parse().unwrap(),
        );
        assert!((consumed - produced - net).abs() < 0.01, "{row:?}");
        let expected = produced_wh(&mut installer, &csrf, system, &row[0], &row[1]);
        assert!(
            (expected - produced).abs() < 0.01,
            "{row:?}: SQL says {expected}"
        );
    }
    let (_, rows) = report(&mut installer, "meter-data", "day");
    let first = rows.first().expect("meter readings").clone();
    let last = rows.last().unwrap().clone();
    let counted = sql(
        &mut installer,
        &csrf,
        &format!(
            "SELECT CAST(count(*) AS BIGINT) AS n FROM meter_readings
              WHERE system_id = {system} AND time >= to_timestamp('{}') AND time <= to_timestamp('{}')",
            first[0], last[0]
        ),
    );
    assert_eq!(rows.len() as u64, counted[0]["n"].as_u64().unwrap());
    let (header, rows) = report(&mut installer, "monthly-production", "day");
    assert_eq!(header[3], "energy_produced_wh");
    for row in &rows {
        let expected = produced_wh(&mut installer, &csrf, system, &row[0], &row[1]);
        let reported: f64 = row[3].parse().unwrap();
        assert!(
            (expected - reported).abs() < 0.01,
            "{row:?}: SQL says {expected}"
        );
    }
    let printable = installer.get(&format!(
        "/systems/{system}/reports/print?from={from}&to={to}"
    ));
    assert_eq!(printable.status, 200);
    assert!(printable.body.contains("monthly-report"));
    let preview = installer.get(&format!(
        "/systems/{system}/reports?kind=meter-data&from=2020-01-01&to={to}"
    ));
    assert_eq!(preview.status, 400, "meter data covers up to 93 days");
    assert!(preview.body.contains("up to 93 days"));

    // Live status: the page and its refresh.
    let live = installer.get(&format!("/systems/{system}/live.json"));
    assert_eq!(live.status, 200, "{}", live.body);
    let live: serde_json::Value = serde_json::from_str(&live.body).unwrap();
    assert!(live["production"].as_str().unwrap().ends_with('W'));
    assert!(live["consumption"].is_string(), "metered: {live}");

    // Services: a bad form files nothing; a good one becomes a numbered request.
    let bad = installer.post_form(
        &format!("/systems/{system}/services/permit"),
        &[
            ("csrf_token", &csrf),
            ("authority", ""),
            ("permit_type", "building"),
            ("planned_date", "2027-13-01"),
        ],
    );
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("Required.") && bad.body.contains("A date (YYYY-MM-DD)."));
    let before = sql(
        &mut installer,
        &csrf,
        "SELECT CAST(count(*) AS BIGINT) AS n FROM service_requests",
    )[0]["n"]
        .as_u64()
        .unwrap();
    let filed = installer.post_form(
        &format!("/systems/{system}/services/incentive"),
        &[
            ("csrf_token", &csrf),
            ("programme", "Prime à l'autoconsommation"),
            ("applicant", "Jeanne Martin"),
            ("system_size_kw", "6.3"),
        ],
    );
    assert_eq!(filed.status, 303, "{}", filed.body);
    let after = sql(
        &mut installer,
        &csrf,
        "SELECT CAST(count(*) AS BIGINT) AS n FROM service_requests",
    )[0]["n"]
        .as_u64()
        .unwrap();
    assert_eq!(after, before + 1);
    let services = installer.get(filed.header("location").unwrap());
    assert!(services.body.contains("filed-number"));
    assert!(
        services.body.contains("autoconsommation"),
        "the request is listed"
    );

    // Kiosk: a link shows the system signed out, until revoked.
    let created = installer.post_form(
        &format!("/systems/{system}/kiosk/links"),
        &[("csrf_token", &csrf), ("name", "Town hall screen")],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let start = created.body.find("/kiosk/sfv_").expect("the new link");
    let end = created.body[start..].find('<').unwrap() + start;
    let link = created.body[start..end].to_owned();
    let mut visitor = Client::new(&demo.portal);
    let kiosk = visitor.get(&link);
    assert_eq!(kiosk.status, 200, "{}", kiosk.body);
    assert!(kiosk.body.contains("kiosk-week") && kiosk.body.contains("kiosk-co2"));
    assert!(
        !kiosk.body.contains("csrf_token"),
        "no session on the kiosk"
    );
    assert_eq!(visitor.get("/kiosk/sfv_not-a-link").status, 404);
    let links = installer.get(&format!("/systems/{system}/kiosk"));
    let revoke = links
        .body
        .split("action=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
        .find(|action| action.ends_with("/revoke"))
        .unwrap()
        .to_owned();
    assert_eq!(
        installer
            .post_form(&revoke, &[("csrf_token", &csrf)])
            .status,
        303
    );
    assert_eq!(
        visitor.get(&link).status,
        404,
        "a revoked link shows nothing"
    );

    // An owner sees their system but changes nothing; other systems are not found.
    let mut owner = Client::new(&demo.portal);
    assert_eq!(
        owner
            .sign_in(&demo.accounts["system owner (read-only)"], PASSWORD)
            .status,
        303
    );
    let owned = system_ids(&mut owner);
    let own = *owned.iter().next().unwrap();
    let page = owner.get(&format!("/systems/{own}"));
    assert_eq!(page.status, 200);
    assert!(
        !owner
            .get(&format!("/systems/{own}/services"))
            .body
            .contains("incentive-form")
    );
    let owner_csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let refused = owner.post_form(
        &format!("/systems/{own}/services/incentive"),
        &[
            ("csrf_token", &owner_csrf),
            ("programme", "X"),
            ("applicant", "Y"),
            ("system_size_kw", "3"),
        ],
    );
    assert_eq!(refused.status, 403);
    let other = visible.iter().find(|id| !owned.contains(id)).unwrap();
    for path in [
        "",
        "/graph",
        "/graph.json",
        "/reports.csv",
        "/live.json",
        "/kiosk",
    ] {
        assert_eq!(
            owner.get(&format!("/systems/{other}{path}")).status,
            404,
            "{path}"
        );
    }
}
