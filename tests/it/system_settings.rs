//! A system's settings end to end (T1–T5) over HTTP against `sunfleet demo`: an installer
//! sees every section, saves the installer reference and more and reads it back, has a bad
//! form refused field by field with nothing changed, raises the estimate far above
//! production and sees the system's status become a production issue (and lowers it
//! again), builds an array and sees the View tab draw it, and submits an ineligible and an
//! eligible labour claim; an owner may look but not save, another company's installer
//! does not find the system.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::activation::civil_date;
use crate::demo::{PASSWORD, start_demo_for};
use crate::free_tcp_port;
use crate::http::{Client, Response, hidden_field};

/// Longer than the production check's 30-day window, so the system can be judged.
const HISTORY_DAYS: u32 = 33;
/// Two installer companies.
const SYSTEMS: u32 = 45;

fn today_days() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    (now / 86_400) as i64
}

fn systems(client: &mut Client) -> Vec<serde_json::Value> {
    let answer = client.get("/api/systems");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["systems"].as_array().unwrap().clone()
}

fn system(client: &mut Client, id: u64) -> serde_json::Value {
    systems(client)
        .into_iter()
        .find(|s| s["id"].as_u64() == Some(id))
        .unwrap_or_else(|| panic!("system {id} is listed"))
}

fn csrf(client: &mut Client, path: &str) -> String {
    let page = client.get(path);
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    hidden_field(&page.body, "csrf_token").expect("a CSRF token")
}

fn post(client: &mut Client, path: &str, token: &str, fields: &[(&str, &str)]) -> Response {
    let mut all: Vec<(&str, &str)> = vec![("csrf_token", token)];
    all.extend_from_slice(fields);
    client.post_form(path, &all)
}

/// Every value of `attribute="…"` in `html`, in order.
fn attributes(html: &str, attribute: &str) -> Vec<String> {
    let marker = format!("{attribute}=\"");
    html.split(&marker)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .collect()
}

/// Waits (boundedly: the checks run every few seconds in a demo) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(240);
    while !done() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn estimate_form(kwh: &str, days: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = (1..=12)
        .map(|m| (format!("estimate_{m}"), kwh.to_owned()))
        .collect();
    for (k, v) in [
        ("estimate_level", "system"),
        ("annual_degradation_pct", "0.5"),
        ("threshold_pct", "90"),
        ("threshold_days", days),
    ] {
        fields.push((k.to_owned(), v.to_owned()));
    }
    fields
}

fn as_refs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn installers_change_a_systems_settings_and_the_portal_follows() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo_for(
        &dir.path().join("demo"),
        free_tcp_port(),
        SYSTEMS,
        HISTORY_DAYS,
    );
    let mut installer = Client::new(&demo.portal);
    assert_eq!(
        installer
            .sign_in(&demo.accounts["installer"], PASSWORD)
            .status,
        303
    );
    let mut operator = Client::new(&demo.portal);
    operator.sign_in(&demo.accounts["platform administrator"], PASSWORD);

    // A producing system of the installer's company whose status is normal: raising its
    // estimate is then the only thing that can make it a production issue.
    let company = systems(&mut installer);
    let target = company
        .iter()
        .filter(|s| s["stage"] == "ready" && s["status"] == "normal")
        .filter(|s| s["energy_past_7_days_wh"].as_f64().unwrap_or(0.0) > 0.0)
        .map(|s| s["id"].as_u64().unwrap())
        .next()
        .expect("a ready, normal, producing system");
    let base = format!("/systems/{target}/settings");

    // Every section shows, with its forms, to an installer.
    for (path, marker) in [
        (base.clone(), "id=\"system-id\""),
        (format!("{base}/labor"), "id=\"labor-claims\""),
        (format!("{base}/references"), "name=\"installer_reference\""),
        (format!("{base}/estimate"), "id=\"production-check\""),
        (format!("{base}/arrays"), "id=\"array-list\""),
        (format!("{base}/arrays/builder"), "id=\"placements\""),
    ] {
        let page = installer.get(&path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(page.body.contains(marker), "{path} lacks {marker}");
        assert!(page.body.contains("class=\"settings-nav\""), "{path}");
        if !path.ends_with("/settings") && !path.ends_with("/arrays") {
            assert!(
                page.body
                    .contains(&format!("<form method=\"post\" action=\"{path}\"")),
                "{path} has no form for an installer"
            );
        }
    }
    let overview = installer.get(&base);
    assert!(
        overview
            .body
            .contains(&format!("id=\"system-id\">{target}<"))
    );

    // T3: saved, then read back.
    let references = format!("{base}/references");
    let token = csrf(&mut installer, &references);
    let operational = civil_date(today_days() - 400);
    let saved = post(
        &mut installer,
        &references,
        &token,
        &[
            ("installer_reference", "IT-REF-42"),
            ("other_references", "Utility 7781"),
            ("internet_connection", "cellular"),
            ("attachment_type", "rack_rail"),
            ("permission", "operational"),
            ("operational_date", &operational),
            ("production_source", "microinverters"),
            ("kiosk_past_7_days", "on"),
            ("kiosk_description", "on"),
        ],
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.header("location"),
        Some(format!("{references}?saved=1").as_str())
    );
    let page = installer.get(&format!("{references}?saved=1"));
    assert!(page.body.contains("id=\"settings-notice\""));
    for expected in [
        "value=\"IT-REF-42\"",
        "value=\"Utility 7781\"",
        "value=\"cellular\" selected",
        "value=\"rack_rail\" selected",
        &format!("value=\"{operational}\""),
        "name=\"kiosk_past_7_days\" checked",
        "name=\"kiosk_description\" checked",
    ] {
        assert!(page.body.contains(expected), "{expected} not read back");
    }
    assert!(!page.body.contains("name=\"weather_enabled\" checked"));
    assert!(!page.body.contains("name=\"kiosk_benefits\" checked"));
    let listed = system(&mut installer, target);
    assert_eq!(listed["installer_reference"], "IT-REF-42");
    assert_eq!(listed["internet_connection"], "cellular");

    // A bad form comes back with each field's error and the values typed; nothing saved.
    let refused = post(
        &mut installer,
        &references,
        &token,
        &[
            ("installer_reference", "CHANGED"),
            ("internet_connection", "pigeon"),
            ("permission", "operational"),
            ("operational_date", "2026-13-45"),
            ("production_source", "microinverters"),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("data-field=\"internet_connection\""));
    assert!(refused.body.contains("data-field=\"operational_date\""));
    assert!(refused.body.contains("value=\"CHANGED\""));
    let after = installer.get(&references);
    assert!(after.body.contains("value=\"IT-REF-42\""));
    assert!(after.body.contains("value=\"cellular\" selected"));
    // Without the CSRF token nothing is saved either.
    let forged = installer.post_form(&references, &[("installer_reference", "FORGED")]);
    assert_eq!(forged.status, 403);

    // T4: an estimate far above production makes a production issue; a low one clears it.
    let estimate = format!("{base}/estimate");
    let token = csrf(&mut installer, &estimate);
    let bad = post(
        &mut installer,
        &estimate,
        &token,
        &as_refs(&{
            let mut fields = estimate_form("100", "30");
            fields.retain(|(k, _)| k != "threshold_pct" && k != "estimate_7");
            fields.push(("threshold_pct".into(), "92".into()));
            fields
        }),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("data-field=\"threshold_pct\""));
    assert!(bad.body.contains("data-field=\"estimate\""));
    let high = post(
        &mut installer,
        &estimate,
        &token,
        &as_refs(&estimate_form("1000000", "30")),
    );
    assert_eq!(high.status, 303, "{}", high.body);
    assert!(
        high.header("location")
            .is_some_and(|l| l.starts_with(&format!("{estimate}?saved="))),
        "{:?}",
        high.header("location")
    );
    eventually("the production issue", || {
        system(&mut installer, target)["status"] == "power"
    });
    let page = installer.get(&estimate);
    assert!(
        page.body.contains("id=\"production-issue\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-status=\"power\""));
    assert!(page.body.contains("name=\"estimate_1\" value=\"1000000\""));
    assert!(page.body.contains("value=\"30\" checked"));
    let low = post(
        &mut installer,
        &estimate,
        &token,
        &as_refs(&estimate_form("0.1", "30")),
    );
    assert_eq!(low.status, 303, "{}", low.body);
    eventually("the production issue to clear", || {
        system(&mut installer, target)["status"] != "power"
    });
    assert!(
        installer
            .get(&estimate)
            .body
            .contains("id=\"no-production-issue\"")
    );

    // T5: a new array with every microinverter on one row, in reverse order; the old
    // arrays deleted. An overlap is refused first, and changes nothing.
    let builder = format!("{base}/arrays/builder");
    let page = installer.get(&builder);
    let token = hidden_field(&page.body, "csrf_token").unwrap();
    // (device id, serial) of each microinverter row of the placements table.
    let micros: Vec<(String, String)> = page
        .body
        .split("<tr data-micro=\"")
        .skip(1)
        .map(|row| {
            let tag = &row[..row.find('>').unwrap()];
            (
                tag[..tag.find('"').unwrap()].to_owned(),
                attributes(tag, "data-serial").remove(0),
            )
        })
        .collect();
    assert!(!micros.is_empty(), "the system has microinverters");
    let columns = micros.len().min(50);
    let rows = micros.len().div_ceil(columns);
    let old_arrays: Vec<String> = attributes(&page.body, "data-slot")
        .into_iter()
        .filter(|k| k.starts_with('a'))
        .collect();
    let mut fields: Vec<(String, String)> = vec![
        ("n1_name".into(), "IT roof".into()),
        ("n1_azimuth".into(), "135".into()),
        ("n1_tilt".into(), "25".into()),
        ("n1_rows".into(), rows.to_string()),
        ("n1_columns".into(), columns.to_string()),
    ];
    for key in &old_arrays {
        fields.push((format!("{key}_delete"), "on".into()));
    }
    for (index, (id, _)) in micros.iter().rev().enumerate() {
        fields.push((format!("m{id}_array"), "n1".into()));
        fields.push((format!("m{id}_row"), (index / columns + 1).to_string()));
        fields.push((format!("m{id}_column"), (index % columns + 1).to_string()));
    }
    if micros.len() > 1 {
        let mut overlapping = fields.clone();
        let (first, second) = (&micros[0].0, &micros[1].0);
        let cell_of = |fields: &[(String, String)], id: &str, part: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == format!("m{id}_{part}"))
                .unwrap()
                .1
                .clone()
        };
        let (row, column) = (
            cell_of(&fields, first, "row"),
            cell_of(&fields, first, "column"),
        );
        for (k, v) in overlapping.iter_mut() {
            if *k == format!("m{second}_row") {
                *v = row.clone();
            } else if *k == format!("m{second}_column") {
                *v = column.clone();
            }
        }
        let refused = post(&mut installer, &builder, &token, &as_refs(&overlapping));
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert!(
            refused.body.contains("one cell holds one microinverter"),
            "{}",
            refused.body
        );
        assert!(
            !installer
                .get(&format!("{base}/arrays"))
                .body
                .contains("IT roof")
        );
    }
    let saved = post(&mut installer, &builder, &token, &as_refs(&fields));
    assert_eq!(saved.status, 303, "{}", saved.body);
    let list = installer.get(&format!("{base}/arrays"));
    assert!(
        list.body.contains(&format!(
            "<td>IT roof</td><td>{}</td><td>135</td>",
            micros.len()
        )),
        "{}",
        list.body
    );
    let view = installer.get(&format!("/systems/{target}"));
    assert_eq!(view.status, 200);
    let panel = view
        .body
        .split("aria-label=\"IT roof\"")
        .nth(1)
        .expect("the View tab draws the new array");
    let panel = &panel[..panel.find("</section>").unwrap()];
    let drawn = attributes(panel, "data-serial");
    let expected: Vec<String> = micros.iter().rev().map(|(_, s)| s.clone()).collect();
    assert_eq!(drawn, expected, "the View tab's grid follows the builder");
    assert!(
        !view.body.contains("Not placed in an array"),
        "every microinverter is placed"
    );

    // T2: an ineligible claim is refused rule by rule; an eligible one is submitted.
    let labor = format!("{base}/labor");
    let token = csrf(&mut installer, &labor);
    let long_ago = civil_date(today_days() - 200);
    let refused = post(
        &mut installer,
        &labor,
        &token,
        &[
            ("serial", &micros[0].1),
            ("defect_date", &long_ago),
            ("labor_hours", "2"),
            ("description", "Dead unit"),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("id=\"claim-refusals\""));
    assert!(refused.body.contains("Too late"), "{}", refused.body);
    assert!(refused.body.contains("Not monitored at the time"));
    let stranger = post(
        &mut installer,
        &labor,
        &token,
        &[
            ("serial", "000000000001"),
            ("defect_date", &civil_date(today_days() - 2)),
            ("labor_hours", "2"),
            ("description", "Not ours"),
        ],
    );
    assert_eq!(stranger.status, 400);
    assert!(stranger.body.contains("Not an eligible product"));
    assert!(!installer.get(&labor).body.contains("class=\"refusal\""));

    // An eligible unit: one installed within two years (recently activated systems have
    // them), with a defect found two days ago while it reported.
    let recent = civil_date(today_days() - 700);
    let (claim_system, serial) = company
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .find_map(|id| {
            let page = installer.get(&format!("/systems/{id}/settings/labor"));
            let serials = attributes(&page.body, "option value");
            let installed = attributes(&page.body, "data-installed");
            serials
                .into_iter()
                .filter(|s| !s.is_empty())
                .zip(installed)
                .find(|(_, date)| *date >= recent)
                .map(|(serial, _)| (id, serial))
        })
        .expect("a unit installed within two years");
    let labor = format!("/systems/{claim_system}/settings/labor");
    let token = csrf(&mut installer, &labor);
    let submitted = post(
        &mut installer,
        &labor,
        &token,
        &[
            ("serial", &serial),
            ("defect_date", &civil_date(today_days() - 2)),
            ("labor_hours", "1.5"),
            ("return_done", "on"),
            ("description", "Replaced a unit that stopped producing"),
        ],
    );
    assert_eq!(submitted.status, 303, "{}", submitted.body);
    let location = submitted.header("location").unwrap().to_owned();
    let claim: u64 = location.rsplit_once("claim=").unwrap().1.parse().unwrap();
    let page = installer.get(&location);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!(
            "<a href=\"/services/requests/{claim}\">SR-{claim:06}</a></td><td>New</td>"
        )),
        "{}",
        page.body
    );
    let services = installer.get("/services");
    assert!(services.body.contains(&format!(
        "<a href=\"/services/requests/{claim}\">SR-{claim:06}</a></td><td>Labor reimbursement</td>"
    )));
    let dashboard: serde_json::Value =
        serde_json::from_str(&installer.get("/api/dashboard").body).unwrap();
    assert!(dashboard["service_requests"]["new"].as_u64().unwrap() >= 1);

    // Every save is in the company's audit log.
    let mut admin = Client::new(&demo.portal);
    admin.sign_in(&demo.accounts["installer administrator"], PASSWORD);
    let audit = admin.get("/users");
    for action in [
        "system settings saved",
        "production estimate saved",
        "arrays saved",
        "labor claim submitted",
    ] {
        assert!(audit.body.contains(action), "{action} not audited");
    }

    // The owner looks but cannot save.
    let mut owner = Client::new(&demo.portal);
    owner.sign_in(&demo.accounts["system owner (read-only)"], PASSWORD);
    let own = systems(&mut owner)[0]["id"].as_u64().unwrap();
    let own_base = format!("/systems/{own}/settings");
    for section in ["", "/references", "/estimate", "/labor", "/arrays/builder"] {
        let page = owner.get(&format!("{own_base}{section}"));
        assert_eq!(page.status, 200, "{section}: {}", page.body);
        assert!(page.body.contains("id=\"read-only\""), "{section}");
        assert!(
            !page
                .body
                .contains("<form method=\"post\" action=\"/systems/"),
            "{section}"
        );
    }
    let token = hidden_field(&owner.get("/account").body, "csrf_token").unwrap();
    for section in ["/references", "/estimate", "/labor", "/arrays/builder"] {
        let answer = post(
            &mut owner,
            &format!("{own_base}{section}"),
            &token,
            &[("installer_reference", "OWNER")],
        );
        assert_eq!(answer.status, 403, "{section}: {}", answer.body);
    }

    // Another company's system is not found by this installer, to look at or to change.
    let visible: Vec<u64> = company.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    let other = systems(&mut operator)
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .find(|id| !visible.contains(id))
        .expect("a second company");
    let token = csrf(&mut installer, &references);
    assert_eq!(
        installer.get(&format!("/systems/{other}/settings")).status,
        404
    );
    let answer = post(
        &mut installer,
        &format!("/systems/{other}/settings/estimate"),
        &token,
        &as_refs(&estimate_form("1", "90")),
    );
    assert_eq!(answer.status, 404, "{}", answer.body);
}
