//! The Devices (S4) and Events (S5) tabs end to end, over HTTP through `sunfleet demo`:
//! the Devices tab lists every registered device of a system (checked against SQL), paged
//! and sorted; a device's page carries the summary the View tab loads; provisioning is
//! refused precisely for a bad serial, a serial taken or a foreign gateway, and for people
//! who may not change the system; a provisioned microinverter becomes a real gateway task
//! over QUIC and, once the gateway reports it, a device with readings (beyond what the
//! activation would let in); the gateway's page lists its tasks and queues new ones; the
//! Events tab filters by state and type.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sunfleet_engine::ids::Serial;
use sunfleet_fixtures::world::devices::new_site_micro_serial;

use crate::demo::{SiteRun, enter_site, simulate_site, start_demo_with, system_ids};
use crate::free_tcp_port;
use crate::http::User;

const SITE_GATEWAY: &str = "121990000456";
const SITE_MICROS: u32 = 4;
const WAIT: Duration = Duration::from_secs(240);

fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Links to device pages of `system` in a page, in order: (device id, link text).
fn device_links(page: &str, system: u64) -> Vec<(u64, String)> {
    let marker = format!("href=\"/systems/{system}/devices/");
    page.split(&marker)
        .skip(1)
        .filter_map(|piece| {
            let (id, rest) = piece.split_once("\">")?;
            let id = id.parse().ok()?;
            let text = rest.split('<').next()?.to_owned();
            Some((id, text))
        })
        .collect()
}

fn data_total(page: &str) -> u64 {
    let start = page.find("data-total=\"").expect("a list with its total") + 12;
    page[start..].split('"').next().unwrap().parse().unwrap()
}

/// Every microinverter link of the Devices tab, page after page, in the order shown.
fn micro_pages(user: &mut User, system: u64, sort: &str, dir: &str) -> Vec<(u64, String)> {
    let mut shown = Vec::new();
    let mut page = 1;
    loop {
        let body = user
            .get(&format!(
                "/systems/{system}/devices?sort={sort}&dir={dir}&page={page}"
            ))
            .body;
        let section = body
            .split("id=\"microinverters\"")
            .nth(1)
            .unwrap()
            .split("</section>")
            .next()
            .unwrap();
        shown.extend(device_links(section, system));
        if !section.contains("rel=\"next\"") {
            return shown;
        }
        page += 1;
    }
}

#[test]
fn devices_are_listed_provisioned_and_tasked_and_events_filter() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let demo = start_demo_with(&data, free_tcp_port(), 45);
    let mut admin = User::sign_in(&demo.portal, &demo.accounts["installer administrator"]);
    let mut operator = User::sign_in(&demo.portal, &demo.accounts["platform administrator"]);
    let mut owner = User::sign_in(&demo.portal, &demo.accounts["system owner (read-only)"]);
    let mine = system_ids(&mut admin.client);
    let all = system_ids(&mut operator.client);
    let other_company = *all.difference(&mine).next().expect("a second company");

    // --- The Devices tab lists every registered device, paged and sorted. ---
    let system = admin.sql(
        "SELECT CAST(system_id AS BIGINT) AS id, count(*) AS n FROM devices
         WHERE kind = 'microinverter' GROUP BY system_id ORDER BY n DESC, id LIMIT 1",
    )[0]["id"]
        .as_u64()
        .unwrap();
    let registered: BTreeMap<u64, (u64, String)> = admin
        .sql(&format!(
            "SELECT CAST(id AS BIGINT) AS id, CAST(serial AS BIGINT) AS serial, kind
             FROM devices WHERE system_id = {system}"
        ))
        .iter()
        .map(|row| {
            (
                row["id"].as_u64().unwrap(),
                (
                    row["serial"].as_u64().unwrap(),
                    row["kind"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect();
    let micros: Vec<(u64, u64)> = registered
        .iter()
        .filter(|(_, (_, kind))| kind == "microinverter")
        .map(|(id, (serial, _))| (*id, *serial))
        .collect();
    let first_page = admin.get(&format!("/systems/{system}/devices"));
    assert_eq!(first_page.status, 200, "{}", first_page.body);
    assert_eq!(data_total(&first_page.body), micros.len() as u64);
    // Gateways, meters and batteries are on the first page; microinverters on theirs.
    let others_shown: BTreeSet<u64> = device_links(&first_page.body, system)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for (id, (serial, kind)) in &registered {
        if kind != "microinverter" {
            assert!(others_shown.contains(id), "{kind} {serial} is listed");
            assert!(first_page.body.contains(&format!("{serial:012}")));
        }
    }
    let ascending = micro_pages(&mut admin, system, "serial", "asc");
    let mut by_serial = micros.clone();
    by_serial.sort_by_key(|(_, serial)| *serial);
    assert_eq!(
        ascending,
        by_serial
            .iter()
            .map(|(id, serial)| (*id, format!("{serial:012}")))
            .collect::<Vec<_>>(),
        "every microinverter once, in serial order, over the pages"
    );
    let mut descending = micro_pages(&mut admin, system, "serial", "desc");
    descending.reverse();
    assert_eq!(descending, ascending);
    for sort in [
        "part",
        "firmware",
        "phase",
        "power",
        "energy",
        "sku",
        "last_report",
        "status",
    ] {
        let shown: BTreeSet<(u64, String)> = micro_pages(&mut admin, system, sort, "desc")
            .into_iter()
            .collect();
        assert_eq!(shown.len(), micros.len(), "sorted by {sort}");
    }

    // A device's page: the summary the View tab loads, a power curve for a chosen day.
    let (micro_id, micro_serial) = micros[0];
    let today = crate::activation::civil_date(
        (SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400) as i64,
    );
    let page = admin.get(&format!(
        "/systems/{system}/devices/{micro_id}?date={today}"
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"device-summary\""));
    assert!(page.body.contains("data-line="));
    assert!(page.body.contains(&format!("{micro_serial:012}")));
    assert!(page.body.contains("Recent readings"));
    let gateway = registered
        .iter()
        .find(|(_, (_, kind))| kind == "gateway")
        .map(|(id, _)| *id)
        .unwrap();
    let gateway_page = admin.get(&format!("/systems/{system}/devices/{gateway}"));
    assert!(gateway_page.body.contains("id=\"tasks\""));
    assert!(gateway_page.body.contains("Reboot gateway"));
    // Another system's device under this system's address is not found.
    let foreign_gateway = admin.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id FROM devices
         WHERE kind = 'gateway' AND system_id <> {system} LIMIT 1"
    ))[0]["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        admin
            .get(&format!("/systems/{system}/devices/{foreign_gateway}"))
            .status,
        404
    );

    // --- Provisioning refusals: precise, and nothing is queued. ---
    let tasks_before = admin.sql_count("SELECT count(*) AS n FROM gateway_tasks");
    let foreign_serial = operator.sql(&format!(
        "SELECT CAST(serial AS BIGINT) AS serial FROM devices
         WHERE system_id = {other_company} AND kind = 'microinverter' LIMIT 1"
    ))[0]["serial"]
        .as_u64()
        .unwrap();
    let provision = format!("/systems/{system}/devices/provision");
    let gateway_field = gateway.to_string();
    for (serial, gateway, expected) in [
        (
            "12ab",
            gateway_field.clone(),
            "is not a microinverter serial number",
        ),
        (
            "12345",
            gateway_field.clone(),
            "is not a microinverter serial number",
        ),
        (
            &format!("{micro_serial:012}"),
            gateway_field.clone(),
            "is already registered to this system",
        ),
        (
            &format!("{foreign_serial:012}"),
            gateway_field.clone(),
            "is already registered to another system",
        ),
        (
            "999999999901",
            foreign_gateway.to_string(),
            "is not one of this system",
        ),
    ] {
        let answer = admin.post(&provision, &[("gateway", &gateway), ("serial", serial)]);
        assert_eq!(answer.status, 400, "{serial}: {}", answer.body);
        assert!(answer.body.contains(expected), "{serial}: {expected}");
    }
    let forged = admin.client.post_form(
        &provision,
        &[("gateway", &gateway_field), ("serial", "999999999902")],
    );
    assert_eq!(forged.status, 403, "no CSRF token");
    // The owner looks but does not change; another company's installer does not see it.
    let owned = *system_ids(&mut owner.client).iter().next().unwrap();
    let owner_page = owner.get(&format!("/systems/{owned}/devices"));
    assert_eq!(owner_page.status, 200);
    assert!(!owner_page.body.contains("/devices/provision"));
    let refused = owner.post(
        &format!("/systems/{owned}/devices/provision"),
        &[("gateway", "1"), ("serial", "999999999903")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let owned_gateway = admin.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id FROM devices WHERE kind = 'gateway' AND system_id = {owned}"
    ))[0]["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        owner
            .post(
                &format!("/systems/{owned}/devices/{owned_gateway}/tasks"),
                &[("kind", "reboot")]
            )
            .status,
        403
    );
    for path in [
        format!("/systems/{other_company}/devices"),
        format!("/systems/{other_company}/events"),
    ] {
        assert_eq!(admin.get(&path).status, 404, "{path}");
    }
    let hidden = admin.post(
        &format!("/systems/{other_company}/devices/provision"),
        &[("gateway", "1"), ("serial", "999999999904")],
    );
    assert_eq!(hidden.status, 404);
    assert_eq!(
        admin.sql_count("SELECT count(*) AS n FROM gateway_tasks"),
        tasks_before,
        "no refused request queued a task"
    );

    // --- Provisioning for real: a site whose gateway reports, in daylight. ---
    let site = enter_site(
        &mut admin,
        "Provisioning Test Site",
        SITE_GATEWAY,
        SITE_MICROS,
    );
    let _simulator = simulate_site(
        &demo,
        &data,
        &SiteRun::in_the_sun(SITE_GATEWAY, SITE_MICROS),
    );
    let micro_count = format!(
        "SELECT count(*) AS n FROM devices WHERE system_id = {site} AND kind = 'microinverter'"
    );
    wait_until("the site's microinverters to register", || {
        (admin.sql_count(&micro_count) == u64::from(SITE_MICROS)).then_some(())
    });
    let site_gateway = admin.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id FROM devices WHERE system_id = {site} AND kind = 'gateway'"
    ))[0]["id"]
        .as_u64()
        .unwrap();
    let new_serial = new_site_micro_serial(SITE_GATEWAY.parse::<Serial>().unwrap(), 20).to_string();
    let requested = admin.post(
        &format!("/systems/{site}/devices/provision"),
        &[
            ("gateway", &site_gateway.to_string()),
            ("serial", &new_serial),
        ],
    );
    assert_eq!(requested.status, 303, "{}", requested.body);
    let location = requested.header("location").unwrap().to_owned();
    let task: u64 = location
        .split("requested=")
        .nth(1)
        .and_then(|rest| rest.split('#').next())
        .unwrap()
        .parse()
        .unwrap();
    let pending = admin.get(&location);
    assert!(pending.body.contains("Microinverters being provisioned"));
    assert!(pending.body.contains(&new_serial));
    let again = admin.post(
        &format!("/systems/{site}/devices/provision"),
        &[
            ("gateway", &site_gateway.to_string()),
            ("serial", &new_serial),
        ],
    );
    assert_eq!(again.status, 400);
    assert!(
        again
            .body
            .contains("is already being provisioned on this system")
    );
    let task_state = |admin: &mut User, task: u64| {
        admin.sql(&format!(
            "SELECT state, kind, parameters FROM gateway_tasks WHERE id = {task}"
        ))[0]
            .clone()
    };
    let done = wait_until("the provisioning task to finish", || {
        let row = task_state(&mut admin, task);
        matches!(row["state"].as_str(), Some("succeeded" | "failed")).then_some(row)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["kind"], "provision_devices");
    assert_eq!(
        done["parameters"],
        format!("{{\"serials\":[\"{new_serial}\"]}}")
    );
    // The gateway reports the new unit; it joins the system (one more than the activation
    // expects) and its readings are its own.
    let new_device = wait_until("the provisioned microinverter to register", || {
        admin
            .sql(&format!(
                "SELECT CAST(id AS BIGINT) AS id FROM devices WHERE serial = {}",
                new_serial.parse::<u64>().unwrap()
            ))
            .first()
            .map(|row| row["id"].as_u64().unwrap())
    });
    wait_until("readings of the provisioned microinverter", || {
        (admin.sql_count(&format!(
            "SELECT count(*) AS n FROM readings WHERE system_id = {site} AND device_id = {new_device}"
        )) > 0)
            .then_some(())
    });
    assert_eq!(
        admin.sql_count(&micro_count),
        u64::from(SITE_MICROS) + 1,
        "the requested unit joined beyond the expected count"
    );
    assert_eq!(
        admin.sql_count(&format!(
            "SELECT count(*) AS n FROM events WHERE device_id = {new_device}"
        )),
        0,
        "a unit that just joined is not reported missing"
    );
    let listed = admin.get(&format!("/systems/{site}/devices"));
    assert!(
        device_links(&listed.body, site)
            .iter()
            .any(|(id, text)| *id == new_device && *text == new_serial),
        "the new microinverter is listed"
    );
    assert!(!listed.body.contains("pending-device"), "no longer pending");
    let device_page = admin.get(&format!("/systems/{site}/devices/{new_device}"));
    assert!(device_page.body.contains("id=\"device-summary\""));
    let readings = device_page
        .body
        .split("id=\"readings-heading\"")
        .nth(1)
        .unwrap();
    assert!(
        !readings.contains("No reading yet."),
        "its readings are shown"
    );

    // The gateway's page lists the task; a button queues another, run over QUIC too.
    let gateway_path = format!("/systems/{site}/devices/{site_gateway}");
    let tasks = admin.get(&gateway_path).body;
    assert!(tasks.contains("Provision devices") && tasks.contains(&new_serial));
    let queued = admin.post(
        &format!("{gateway_path}/tasks"),
        &[("kind", "check_signal")],
    );
    assert_eq!(queued.status, 303, "{}", queued.body);
    let check: u64 = queued
        .header("location")
        .unwrap()
        .split("queued=")
        .nth(1)
        .and_then(|rest| rest.split('#').next())
        .unwrap()
        .parse()
        .unwrap();
    wait_until("the signal check to succeed", || {
        (task_state(&mut admin, check)["state"] == "succeeded").then_some(())
    });
    let tasks = admin.get(&gateway_path).body;
    let newest = tasks.split("<tbody>").last().unwrap();
    assert!(
        newest.find("Check signal strength") < newest.find("Provision devices"),
        "newest first"
    );
    assert!(tasks.contains("dBm"), "its result");
    let bad_kind = admin.post(&format!("{gateway_path}/tasks"), &[("kind", "format_disk")]);
    assert_eq!(bad_kind.status, 400);

    // --- The Events tab: by state and type, counted as the registry counts. ---
    // The demo's first hours hold few events: add a cleared one about a microinverter and
    // a current one about the whole system, as the checks record them. (The next round of
    // checks may end the current one: the counts below are read around each page.)
    let registry = rusqlite::Connection::open(data.join("registry.sqlite3")).unwrap();
    registry.busy_timeout(Duration::from_secs(30)).unwrap();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    registry
        .execute(
            "INSERT INTO events (system_id, device_id, code, severity, started_us, ended_us, details)
             VALUES (?1, ?2, 'GFITRIP', 'high', ?3, ?4, 'tripped, then cleared by a task')",
            rusqlite::params![system as i64, micro_id as i64, now_us - 7_200_000_000, now_us - 3_600_000_000],
        )
        .unwrap();
    registry
        .execute(
            "INSERT INTO events (system_id, code, severity, started_us, details)
             VALUES (?1, 'ACVOOR', 'medium', ?2, 'grid voltage out of range')",
            rusqlite::params![system as i64, now_us - 600_000_000],
        )
        .unwrap();
    drop(registry);
    let codes: Vec<String> = admin
        .sql(&format!(
            "SELECT DISTINCT code FROM events WHERE system_id = {system}"
        ))
        .iter()
        .map(|row| row["code"].as_str().unwrap().to_owned())
        .collect();
    let mut filters: Vec<(String, String)> = [
        ("current", "ended_us IS NULL"),
        ("cleared", "ended_us IS NOT NULL"),
        ("all", "true"),
    ]
    .iter()
    .map(|(state, sql)| (format!("state={state}"), sql.to_string()))
    .collect();
    for code in &codes {
        filters.push((format!("state=all&code={code}"), format!("code = '{code}'")));
        filters.push((
            format!("state=cleared&code={code}"),
            format!("code = '{code}' AND ended_us IS NOT NULL"),
        ));
    }
    for (query, condition) in &filters {
        let count =
            format!("SELECT count(*) AS n FROM events WHERE system_id = {system} AND {condition}");
        wait_until(&format!("a steady count of events {query}"), || {
            let before = admin.sql_count(&count);
            let page = admin.get(&format!("/systems/{system}/events?{query}"));
            assert_eq!(page.status, 200, "{query}");
            let after = admin.sql_count(&count);
            (before == after).then(|| {
                assert_eq!(data_total(&page.body), before, "{query}");
                let rows = page.body.split("<tbody>").nth(1).unwrap();
                if let Some(code) = query.split("code=").nth(1) {
                    let label = sunfleet_portal::fleet::event_label(code);
                    assert!(before == 0 || rows.contains(&label), "{query}: {label}");
                }
                if query.starts_with("state=current") {
                    assert!(!rows.contains("<td>Cleared</td>"), "{query}");
                }
                if query.starts_with("state=cleared") {
                    assert!(!rows.contains("<td>Current</td>"), "{query}");
                }
            })
        });
    }
    // The cleared event names its microinverter and links to its page.
    let cleared = admin.get(&format!(
        "/systems/{system}/events?state=cleared&code=GFITRIP"
    ));
    assert!(cleared.body.contains("GFI Tripped"));
    assert!(cleared.body.contains("tripped, then cleared by a task"));
    assert!(
        device_links(&cleared.body, system)
            .iter()
            .any(|(id, text)| *id == micro_id && text.contains(&format!("{micro_serial:012}"))),
        "the event links to its microinverter"
    );
    // The microinverter's own page lists it too.
    let micro_page = admin.get(&format!("/systems/{system}/devices/{micro_id}"));
    let summary = micro_page
        .body
        .split("id=\"device-summary\"")
        .nth(1)
        .unwrap();
    assert!(summary.contains("GFI Tripped"));
}
