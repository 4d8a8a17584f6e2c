//! System diagnostics (C7), the grid profile (C3) and production on/off (C6) end to end,
//! over HTTP through `sunfleet demo`: each task is queued from the portal's form, delivered
//! over QUIC to the simulated gateway, run there and reported back; the registry then
//! knows what the gateway applied (grid profile, meter state), a system with production off
//! says so in its status (and has no production issue), a reboot is recorded by the
//! gateway's power-on reset. Bad serials, unknown tasks, parameters and gateways, and people
//! who may not change the system are refused and queue nothing. On a site simulated in full
//! sun, production off leaves every microinverter reading flagged and without energy until
//! production is switched on again.

use std::time::{Duration, Instant};

use sunfleet_engine::telemetry::micro_status;

use crate::demo::{SiteRun, enter_site, simulate_site, start_demo_with, system_ids};
use crate::free_tcp_port;
use crate::http::User;

const WAIT: Duration = Duration::from_secs(240);
/// A site entered by hand and simulated in daylight, for production off while the sun shines.
const SITE_GATEWAY: &str = "121990000654";
const SITE_MICROS: u32 = 3;

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

/// The task id a successful form post redirects to.
fn queued_task(response: &crate::http::Response) -> i64 {
    assert_eq!(response.status, 303, "{}", response.body);
    let location = response.header("location").unwrap();
    location
        .split("queued=")
        .nth(1)
        .and_then(|rest| rest.split('#').next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("a queued task in {location}"))
}

/// Waits for a task to finish; its state and the gateway's message.
fn finished(user: &mut User, task: i64) -> (String, String) {
    wait_until(&format!("task {task} to finish"), || {
        let rows = user.sql(&format!(
            "SELECT state, result FROM gateway_tasks WHERE id = {task}"
        ));
        let state = rows[0]["state"].as_str()?.to_owned();
        matches!(state.as_str(), "succeeded" | "failed")
            .then(|| (state, rows[0]["result"].as_str().unwrap_or("").to_owned()))
    })
}

#[test]
fn diagnostics_tasks_go_round_trip_and_change_what_the_portal_shows() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo_with(dir.path(), free_tcp_port(), 12);
    let account = |role: &str| demo.accounts[role].clone();
    let mut admin = User::sign_in(&demo.portal, &account("installer administrator"));

    // A system of the company with a consumption meter (for the meter state).
    let rows = admin.sql(
        "SELECT d.system_id AS system, g.id AS gateway, d.meter_kind AS kind
           FROM devices d JOIN devices g ON g.system_id = d.system_id AND g.kind = 'gateway'
           JOIN systems s ON s.id = d.system_id
          WHERE d.kind = 'meter' AND d.meter_kind LIKE 'consumption%' AND s.stage <> 'started'
          ORDER BY 1 LIMIT 1",
    );
    let system = rows[0]["system"]
        .as_u64()
        .expect("a system with a consumption meter");
    let gateway = rows[0]["gateway"].as_u64().unwrap().to_string();
    let meter_kind = rows[0]["kind"].as_str().unwrap().to_owned();
    let page_path = format!("/systems/{system}/diagnostics");
    let count_tasks = |user: &mut User| {
        user.sql_count(&format!(
            "SELECT count(*) AS n FROM gateway_tasks t JOIN devices g ON g.id = t.gateway_id
              WHERE g.system_id = {system}"
        ))
    };

    let page = admin.get(&page_path);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("System diagnostics"));
    assert!(page.body.contains(&format!("value=\"{gateway}\"")));
    let devices_tab = admin.get(&format!("/systems/{system}/devices"));
    assert!(
        devices_tab.body.contains(&page_path),
        "the Devices tab links to it"
    );

    // Refusals: precise, 400, nothing queued.
    let before = count_tasks(&mut admin);
    for (fields, expected) in [
        (
            vec![
                ("task", "provision_devices"),
                ("serials", "122000000901, 12345"),
            ],
            "&#34;12345&#34; is not a microinverter serial number",
        ),
        (
            vec![
                ("task", "provision_devices"),
                ("serials", "122000000901,122000000901"),
            ],
            "Serial number 122000000901 is entered twice",
        ),
        (
            vec![("task", "meter_mode"), ("mode", "sideways")],
            "Net or Total",
        ),
        (
            vec![("task", "grid_profile"), ("profile", "Atlantis 2030")],
            "Choose a grid profile from the list.",
        ),
        (vec![("task", "self_destruct")], "Choose a task."),
    ] {
        let mut with_gateway = vec![("gateway", gateway.as_str())];
        with_gateway.extend(fields);
        let answer = admin.post(&page_path, &with_gateway);
        assert_eq!(answer.status, 400, "{with_gateway:?}: {}", answer.body);
        assert!(
            answer.body.contains(expected),
            "{expected}: {}",
            answer.body
        );
    }
    // A serial a device already has (this system's own gateway).
    let gateway_serial = admin.sql(&format!(
        "SELECT CAST(serial AS VARCHAR) AS s FROM devices WHERE id = {gateway}"
    ))[0]["s"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = admin.post(
        &page_path,
        &[
            ("gateway", &gateway),
            ("task", "provision_devices"),
            ("serials", &format!("122000000901, {gateway_serial:0>12}")),
        ],
    );
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("already registered to this system"),
        "{}",
        answer.body
    );
    // Another system's gateway.
    let foreign_gateway = admin.sql(&format!(
        "SELECT id FROM devices WHERE kind = 'gateway' AND system_id <> {system} LIMIT 1"
    ))[0]["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let answer = admin.post(
        &page_path,
        &[("gateway", &foreign_gateway), ("task", "reboot")],
    );
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("is not one of this system"),
        "{}",
        answer.body
    );
    assert_eq!(count_tasks(&mut admin), before, "refusals queue nothing");

    // People who may not change the system.
    let mut owner = User::sign_in(&demo.portal, &account("system owner (read-only)"));
    let owners_system = *system_ids(&mut owner.client).iter().next().unwrap();
    assert_eq!(
        owner
            .get(&format!("/systems/{owners_system}/diagnostics"))
            .status,
        403
    );
    let answer = owner.post(
        &format!("/systems/{owners_system}/diagnostics"),
        &[("gateway", &gateway), ("task", "reboot")],
    );
    assert_eq!(answer.status, 403);
    let mut subcontractor = User::sign_in(&demo.portal, &account("subcontractor"));
    if !system_ids(&mut subcontractor.client).contains(&system) {
        let answer = subcontractor.post(&page_path, &[("gateway", &gateway), ("task", "reboot")]);
        assert!(matches!(answer.status, 403 | 404), "{}", answer.status);
    }
    assert_eq!(
        count_tasks(&mut admin),
        before,
        "nothing queued by them either"
    );

    // Provision two microinverters in one task.
    let task = queued_task(&admin.post(
        &page_path,
        &[
            ("gateway", &gateway),
            ("task", "provision_devices"),
            ("serials", "122000000901, 122000000902"),
        ],
    ));
    let (state, message) = finished(&mut admin, task);
    assert_eq!(state, "succeeded", "{message}");
    assert!(
        message.contains("122000000901") && message.contains("122000000902"),
        "{message}"
    );

    // Grid profile: the registry keeps what the gateway applied.
    let task = queued_task(&admin.post(
        &page_path,
        &[
            ("gateway", &gateway),
            ("task", "grid_profile"),
            ("profile", "VFR 2019"),
        ],
    ));
    assert_eq!(finished(&mut admin, task).0, "succeeded");
    let applied = admin.sql(&format!(
        "SELECT grid_profile FROM devices WHERE id = {gateway}"
    ));
    assert_eq!(applied[0]["grid_profile"], "VFR 2019");
    assert!(
        admin
            .get(&page_path)
            .body
            .contains("Grid profile: VFR 2019")
    );

    // Consumption meter state: the other one, kept by the registry once applied.
    let (mode, expected_kind) = if meter_kind == "consumption_net" {
        ("total", "consumption_total")
    } else {
        ("net", "consumption_net")
    };
    let task = queued_task(&admin.post(
        &page_path,
        &[
            ("gateway", &gateway),
            ("task", "meter_mode"),
            ("mode", mode),
        ],
    ));
    assert_eq!(finished(&mut admin, task).0, "succeeded");
    let kinds = admin.sql(&format!(
        "SELECT meter_kind FROM devices WHERE system_id = {system} AND kind = 'meter'
            AND meter_kind LIKE 'consumption%'"
    ));
    assert_eq!(kinds[0]["meter_kind"], expected_kind);

    // Production off: the system's status says why it produces nothing, and no production
    // issue is raised; the side panel shows it.
    let task = queued_task(&admin.post(
        &page_path,
        &[("gateway", &gateway), ("task", "production_off")],
    ));
    assert_eq!(finished(&mut admin, task).0, "succeeded");
    let status_of = |user: &mut User| {
        user.sql(&format!("SELECT status FROM systems WHERE id = {system}"))[0]["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    wait_until("the production-off status", || {
        (status_of(&mut admin) == "production_off").then_some(())
    });
    let view = admin.get(&format!("/systems/{system}"));
    assert!(
        view.body.contains("Production off by command"),
        "side panel status"
    );
    assert!(
        admin
            .get(&page_path)
            .body
            .contains("Power production is disabled")
    );
    assert_eq!(
        admin.sql_count(&format!(
            "SELECT count(*) AS n FROM events WHERE system_id = {system}
                AND code = 'production_issue' AND ended_us IS NULL"
        )),
        0
    );
    // On again: the status leaves production off.
    let task = queued_task(&admin.post(
        &page_path,
        &[("gateway", &gateway), ("task", "production_on")],
    ));
    assert_eq!(finished(&mut admin, task).0, "succeeded");
    let deadline = Instant::now() + WAIT;
    while status_of(&mut admin) == "production_off" {
        assert!(
            Instant::now() < deadline,
            "the status stays production off: tasks {:?}, events {:?}",
            admin.sql(&format!(
                "SELECT t.id, t.kind, t.state, t.finished_us FROM gateway_tasks t
                   JOIN devices g ON g.id = t.gateway_id WHERE g.system_id = {system}"
            )),
            admin.sql(&format!(
                "SELECT code, started_us, ended_us FROM events WHERE system_id = {system}"
            ))
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Reboot: the connection drops and returns, and the gateway's power-on reset is
    // recorded among its events.
    let task = queued_task(&admin.post(&page_path, &[("gateway", &gateway), ("task", "reboot")]));
    assert_eq!(finished(&mut admin, task).0, "succeeded");
    wait_until("the gateway's power-on reset on its page", || {
        admin
            .get(&format!("/systems/{system}/devices/{gateway}"))
            .body
            .contains("Power On Reset")
            .then_some(())
    });

    // Signal strength: the answer is the gateway's message, shown in the task list.
    let task = queued_task(&admin.post(
        &page_path,
        &[("gateway", &gateway), ("task", "check_signal")],
    ));
    let (state, message) = finished(&mut admin, task);
    assert_eq!(state, "succeeded");
    assert!(message.contains("dBm"), "{message}");
    assert!(admin.get(&page_path).body.contains(&message));

    production_off_stops_a_sunlit_site(&mut admin, &demo, dir.path());
}

/// Readings of `site`'s microinverters: (all, flagged off by command, flagged and producing,
/// producing without the flag).
fn production_counts(user: &mut User, site: u64) -> (u64, u64, u64, u64) {
    let off_flag = micro_status::POWER_OFF_BY_COMMAND;
    let rows = user.sql(&format!(
        "SELECT count(*) AS readings,
                sum(CASE WHEN off THEN 1 ELSE 0 END) AS off,
                sum(CASE WHEN off AND energy_j > 0 THEN 1 ELSE 0 END) AS off_producing,
                sum(CASE WHEN NOT off AND energy_j > 0 THEN 1 ELSE 0 END) AS producing
           FROM (SELECT energy_j, (CAST(status AS BIGINT) & {off_flag}) <> 0 AS off FROM readings
                  WHERE system_id = {site}) r"
    ));
    let count = |name: &str| rows[0][name].as_u64().unwrap_or(0);
    (
        count("readings"),
        count("off"),
        count("off_producing"),
        count("producing"),
    )
}

/// Production off on a site in full sun: every microinverter reading after the switch says
/// "off by command" and carries no energy, the microinverter's page says why it stopped, and
/// production resumes once it is switched on again.
fn production_off_stops_a_sunlit_site(
    admin: &mut User,
    demo: &crate::demo::Demo,
    data: &std::path::Path,
) {
    let site = enter_site(admin, "Production Switch Site", SITE_GATEWAY, SITE_MICROS);
    let _simulator = simulate_site(demo, data, &SiteRun::in_the_sun(SITE_GATEWAY, SITE_MICROS));
    wait_until("the sunlit site to produce", || {
        (production_counts(admin, site).3 > 0).then_some(())
    });
    let site_gateway = admin.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id FROM devices WHERE system_id = {site} AND kind = 'gateway'"
    ))[0]["id"]
        .as_u64()
        .unwrap()
        .to_string();
    let page_path = format!("/systems/{site}/diagnostics");

    let task = queued_task(&admin.post(
        &page_path,
        &[("gateway", &site_gateway), ("task", "production_off")],
    ));
    assert_eq!(finished(admin, task).0, "succeeded");
    // Several readings per microinverter after the switch.
    let (_, off, off_producing, _) = wait_until("readings while production is off", || {
        let counts = production_counts(admin, site);
        (counts.1 >= 2 * u64::from(SITE_MICROS)).then_some(counts)
    });
    assert_eq!(
        off_producing, 0,
        "{off} readings off by command, some with energy"
    );
    let micro = admin.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id FROM devices WHERE system_id = {site}
            AND kind = 'microinverter' ORDER BY id LIMIT 1"
    ))[0]["id"]
        .as_u64()
        .unwrap();
    let micro_page = admin.get(&format!("/systems/{site}/devices/{micro}"));
    assert!(
        micro_page.body.contains("Power Generation Off By Command"),
        "the microinverter's page says why it stopped"
    );

    // On again: readings with energy and without the flag follow.
    let producing_before = production_counts(admin, site).3;
    let task = queued_task(&admin.post(
        &page_path,
        &[("gateway", &site_gateway), ("task", "production_on")],
    ));
    assert_eq!(finished(admin, task).0, "succeeded");
    wait_until("production after it is switched on", || {
        (production_counts(admin, site).3 >= producing_before + u64::from(SITE_MICROS))
            .then_some(())
    });
    assert_eq!(
        production_counts(admin, site).2,
        0,
        "nothing off by command produced"
    );
}
