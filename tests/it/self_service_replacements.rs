//! Self-service replacements (R2, R3) end to end, over HTTP through `sunfleet demo`, with a
//! site entered in the portal whose gateway a `sunfleet simulate --site` process plays over
//! QUIC in daylight:
//!
//! - Install replacement: refusals (a foreign, unknown or malformed serial, a replacement
//!   serial in use, people who may not change the system) change nothing; a replacement
//!   retires the old microinverter, gives its cell to the new one and queues a provisioning
//!   task that the simulated gateway runs, after which the new serial reports in the old
//!   one's place; the new unit's page and the array view carry the old unit's history.
//! - Gateway replacement: refusals (an unknown or foreign gateway, a serial in use) change
//!   nothing; a replacement waits for the new gateway, which the simulator puts in (the
//!   installer's part), and completes once it reports: the old gateway retires, every
//!   device moves to the new one, and the readings go on without a gap.

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sunfleet_engine::ids::Serial;
use sunfleet_fixtures::world::devices::new_site_micro_serial;

use crate::demo::{PASSWORD, start_demo_for, system_ids};
use crate::http::{Client, Response, hidden_field};
use crate::{Server, free_tcp_port};

const SITE_GATEWAY: &str = "121990000777";
const NEW_GATEWAY: &str = "121990000778";
const SITE_MICROS: u32 = 4;
const WAIT: Duration = Duration::from_secs(240);
const MINUTE_US: i64 = 60_000_000;
const INTERVAL_US: i64 = 5 * MINUTE_US;

/// A signed-in client with the CSRF token its forms and SQL need.
struct User {
    client: Client,
    csrf: String,
}

impl User {
    fn sign_in(portal: &str, email: &str) -> Self {
        let mut client = Client::new(portal);
        assert_eq!(client.sign_in(email, PASSWORD).status, 303, "{email}");
        let csrf = hidden_field(&client.get("/account").body, "csrf_token").unwrap();
        Self { client, csrf }
    }

    fn get(&mut self, path: &str) -> Response {
        self.client.get(path)
    }

    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut with_token = vec![("csrf_token", self.csrf.as_str())];
        with_token.extend_from_slice(fields);
        self.client.post_form(path, &with_token)
    }

    fn sql(&mut self, text: &str) -> Vec<serde_json::Value> {
        let answer = self.client.request(
            "POST",
            "/api/sql?format=json",
            &[("X-CSRF-Token", &self.csrf), ("Content-Type", "text/plain")],
            Some(text),
        );
        assert_eq!(answer.status, 200, "{text}: {}", answer.body);
        serde_json::from_str(&answer.body).unwrap()
    }

    fn number(&mut self, text: &str) -> Option<i64> {
        self.sql(text).first().and_then(|row| row["n"].as_i64())
    }
}

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

/// `YYYY-MM-DDTHH:MM` (UTC) of a Unix time.
fn utc_minute(unix_s: u64) -> String {
    let minute_of_day = (unix_s % 86_400) / 60;
    format!(
        "{}T{:02}:{:02}",
        crate::activation::civil_date((unix_s / 86_400) as i64),
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn utc_date(us: i64) -> String {
    crate::activation::civil_date(us.div_euclid(86_400_000_000))
}

/// An energy as the portal shows it ("1.2 kWh", "830 Wh"), in Wh.
fn energy_wh(text: &str) -> f64 {
    let (number, unit) = text.trim().split_once(' ').expect("a number and a unit");
    let number: f64 = number.replace(',', ".").parse().unwrap();
    match unit {
        "Wh" => number,
        "kWh" => number * 1e3,
        "MWh" => number * 1e6,
        other => panic!("unit {other}"),
    }
}

/// The value of a device page's fact.
fn fact<'a>(page: &'a str, label: &str) -> Option<&'a str> {
    let after = page.split(&format!("<dt>{label}</dt><dd>")).nth(1)?;
    let value = after.split("</dd>").next()?;
    // A linked fact: the link's text.
    Some(match value.split_once("\">") {
        Some((_, text)) => text.trim_end_matches("</a>"),
        None => value,
    })
}

/// A device of the site as the registry has it.
#[derive(Debug, Clone, PartialEq)]
struct SiteDevice {
    id: u64,
    serial: u64,
    kind: String,
    state: String,
    gateway_id: Option<u64>,
    replaced_by: Option<u64>,
}

fn site_devices(admin: &mut User, site: u64) -> Vec<SiteDevice> {
    admin
        .sql(&format!(
            "SELECT CAST(id AS BIGINT) AS id, CAST(serial AS BIGINT) AS serial, kind, state,
                    CAST(gateway_id AS BIGINT) AS gateway_id, CAST(replaced_by AS BIGINT) AS replaced_by
               FROM devices WHERE system_id = {site} ORDER BY id"
        ))
        .iter()
        .map(|row| SiteDevice {
            id: row["id"].as_u64().unwrap(),
            serial: row["serial"].as_u64().unwrap(),
            kind: row["kind"].as_str().unwrap().to_owned(),
            state: row["state"].as_str().unwrap().to_owned(),
            gateway_id: row["gateway_id"].as_u64(),
            replaced_by: row["replaced_by"].as_u64(),
        })
        .collect()
}

/// What refusals must leave unchanged: the devices and tasks of the fleet.
fn fingerprint(admin: &mut User, site: u64) -> (String, i64) {
    let devices = format!("{:?}", site_devices(admin, site));
    let tasks = admin
        .number(&format!(
            "SELECT count(*) AS n FROM gateway_tasks t JOIN devices d ON d.id = t.gateway_id
              WHERE d.system_id = {site}"
        ))
        .unwrap();
    (devices, tasks)
}

/// Reading times (µs) of a device.
fn reading_times(admin: &mut User, site: u64, device: u64) -> Vec<i64> {
    admin
        .sql(&format!(
            "SELECT CAST(time AS BIGINT) AS t FROM readings
              WHERE system_id = {site} AND device_id = {device} ORDER BY t"
        ))
        .iter()
        .map(|row| row["t"].as_i64().unwrap())
        .collect()
}

#[test]
fn devices_and_gateways_are_replaced_through_the_portal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    // 45 systems make two installer companies.
    let demo = start_demo_for(&data, free_tcp_port(), 45, 1);
    let mut admin = User::sign_in(&demo.portal, &demo.accounts["installer administrator"]);
    let mut operator = User::sign_in(&demo.portal, &demo.accounts["platform administrator"]);
    let mut owner = User::sign_in(&demo.portal, &demo.accounts["system owner (read-only)"]);
    let mut subcontractor = User::sign_in(&demo.portal, &demo.accounts["subcontractor"]);
    let mine = system_ids(&mut admin.client);
    let all = system_ids(&mut operator.client);
    let other_company = *all.difference(&mine).next().expect("a second company");

    // --- A site entered in the portal, its gateway reporting in daylight. ---
    let form = admin.get("/activations/new");
    let activation_csrf = hidden_field(&form.body, "csrf_token").unwrap();
    let created = admin.client.post_form(
        "/activations",
        &[
            ("csrf_token", &activation_csrf),
            ("name", "Replacement Test Site"),
            ("kind", "residential"),
            ("street_address", "3 rue du Soleil"),
            ("city", "Quito"),
            ("latitude", "0.0"),
            ("longitude", "-78.5"),
            ("time_zone", "UTC"),
            ("gateway_serials", SITE_GATEWAY),
            ("expected_microinverters", &SITE_MICROS.to_string()),
            ("annual_degradation_pct", "0.5"),
        ],
    );
    assert_eq!(created.status, 303, "{}", created.body);
    let site: u64 = created
        .header("location")
        .unwrap()
        .trim_start_matches("/activations/")
        .trim_end_matches("?saved=1")
        .parse()
        .unwrap();
    // Simulated time starts ten minutes back at 20× speed, at the site's late morning.
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start_s = now_s - 10 * 60;
    let hour = (start_s % 86_400) as f64 / 3_600.0 + 1.0;
    let longitude = ((12.0 - hour) * 15.0 + 540.0).rem_euclid(360.0) - 180.0;
    let mut simulator = Command::new(env!("CARGO_BIN_EXE_sunfleet"))
        .args([
            "simulate",
            "--site",
            SITE_GATEWAY,
            "--micros",
            &SITE_MICROS.to_string(),
            "--commands",
        ])
        .args(["--latitude", "0", "--longitude", &format!("{longitude:.2}")])
        .args([
            "--speed",
            "20",
            "--at",
            &utc_minute(start_s),
            "--duration",
            "1500",
        ])
        .args(["--progress-every", "60"])
        .args(["--addr", &demo.quic, "--data"])
        .arg(&data)
        .env("SUNFLEET_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut commands = simulator.stdin.take().unwrap();
    let _simulator = Server(simulator);
    let micro_count = format!(
        "SELECT count(*) AS n FROM devices WHERE system_id = {site} AND kind = 'microinverter'"
    );
    wait_until("the site's microinverters to register", || {
        (admin.number(&micro_count) == Some(i64::from(SITE_MICROS))).then_some(())
    });
    let devices = site_devices(&mut admin, site);
    let gateway = devices
        .iter()
        .find(|d| d.kind == "gateway")
        .map(|d| d.id)
        .unwrap();
    for d in devices.iter().filter(|d| d.kind == "microinverter") {
        assert_eq!(
            d.gateway_id,
            Some(gateway),
            "a reported unit reports through its gateway"
        );
    }
    let gateway_serial: Serial = SITE_GATEWAY.parse().unwrap();
    let original = new_site_micro_serial(gateway_serial, 0).value();
    let replacement = new_site_micro_serial(gateway_serial, 40).value();
    let old_id = devices.iter().find(|d| d.serial == original).unwrap().id;
    let old_cell = admin.sql(&format!(
        "SELECT CAST(array_id AS BIGINT) AS a, CAST(grid_row AS BIGINT) AS r,
                CAST(grid_column AS BIGINT) AS c FROM devices WHERE id = {old_id}"
    ))[0]
        .clone();
    wait_until("readings of the original microinverter", || {
        (reading_times(&mut admin, site, old_id).len() >= 3).then_some(())
    });

    // --- Install replacement: refusals change nothing. ---
    let replace_path = format!("/systems/{site}/settings/self-service/replacement");
    let page = admin.get(&replace_path);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Install replacement"));
    assert!(
        page.body
            .contains(&format!("<option value=\"{original:012}\">")),
        "the original is offered among the system's units"
    );
    let foreign_micro = operator.sql(&format!(
        "SELECT CAST(serial AS BIGINT) AS serial FROM devices
          WHERE system_id = {other_company} AND kind = 'microinverter' LIMIT 1"
    ))[0]["serial"]
        .as_u64()
        .unwrap();
    let sibling = new_site_micro_serial(gateway_serial, 1).value();
    let before = fingerprint(&mut admin, site);
    for (original_field, replacement_field, expected) in [
        (
            format!("{foreign_micro:012}"),
            format!("{replacement:012}"),
            "is not a device of this system",
        ),
        (
            "999999999977".to_owned(),
            format!("{replacement:012}"),
            "No device has serial number 999999999977",
        ),
        (
            "12ab".to_owned(),
            format!("{replacement:012}"),
            "is not a serial number",
        ),
        (
            format!("{original:012}"),
            "12345".to_owned(),
            "is not a serial number",
        ),
        (
            format!("{original:012}"),
            format!("{sibling:012}"),
            "is already registered to this system",
        ),
        (
            format!("{original:012}"),
            format!("{foreign_micro:012}"),
            "is already registered to another system",
        ),
        (
            format!("{original:012}"),
            String::new(),
            "Enter the replacement",
        ),
        (
            SITE_GATEWAY.to_owned(),
            format!("{replacement:012}"),
            "only microinverters and AC batteries are replaced here",
        ),
    ] {
        let answer = admin.post(
            &replace_path,
            &[
                ("original", &original_field),
                ("replacement", &replacement_field),
                ("action", "submit"),
            ],
        );
        assert_eq!(answer.status, 400, "{original_field}: {}", answer.body);
        assert!(
            answer.body.contains(expected),
            "{original_field} / {replacement_field}: {expected}"
        );
        assert!(answer.body.contains("Nothing was changed."));
    }
    // Two pairs, the second refused: the first is not made either.
    let answer = admin.post(
        &replace_path,
        &[
            ("original", &format!("{original:012}")),
            ("replacement", &format!("{replacement:012}")),
            ("original", &format!("{sibling:012}")),
            ("replacement", &format!("{foreign_micro:012}")),
            ("action", "submit"),
        ],
    );
    assert_eq!(answer.status, 400);
    assert!(answer.body.contains("A pair was refused"));
    // "Replace another device" adds a pair and saves nothing.
    let more = admin.post(
        &replace_path,
        &[
            ("original", &format!("{original:012}")),
            ("replacement", ""),
            ("action", "add"),
        ],
    );
    assert_eq!(more.status, 200);
    assert_eq!(more.body.matches("name=\"original\"").count(), 2);
    assert!(more.body.contains(&format!("value=\"{original:012}\"")));
    // Without the token, as the owner, or as a company that cannot see the site.
    let forged = admin.client.post_form(
        &replace_path,
        &[
            ("original", &format!("{original:012}")),
            ("replacement", &format!("{replacement:012}")),
        ],
    );
    assert_eq!(forged.status, 403);
    let owned = *system_ids(&mut owner.client).iter().next().unwrap();
    let owner_path = format!("/systems/{owned}/settings/self-service/replacement");
    assert_eq!(owner.get(&owner_path).status, 403);
    let refused = owner.post(
        &owner_path,
        &[
            ("original", &format!("{original:012}")),
            ("replacement", &format!("{replacement:012}")),
        ],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    let hidden = subcontractor.post(
        &replace_path,
        &[
            ("original", &format!("{original:012}")),
            ("replacement", &format!("{replacement:012}")),
        ],
    );
    assert_eq!(
        hidden.status, 404,
        "the site is not granted to the subcontractor"
    );
    assert_eq!(subcontractor.get(&replace_path).status, 404);
    assert_eq!(
        fingerprint(&mut admin, site),
        before,
        "no refusal changed anything"
    );

    // --- Install replacement for real. ---
    let answer = admin.post(
        &replace_path,
        &[
            ("original", &format!("{original:012}")),
            ("replacement", &format!("{replacement:012}")),
            ("action", "submit"),
        ],
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    assert!(location.contains("done="), "{location}");
    let result = admin.get(&location);
    assert_eq!(result.status, 200);
    assert!(result.body.contains("Recorded now"));
    assert!(
        result
            .body
            .contains(&format!("data-new-serial=\"{replacement:012}\""))
    );
    assert!(
        result
            .body
            .contains(&format!("href=\"/systems/{site}/devices/{gateway}#tasks\"")),
        "a link to the gateway's task list"
    );
    // The registry: the old unit retired and replaced, the new one in its cell.
    let devices = site_devices(&mut admin, site);
    let new_id = devices.iter().find(|d| d.serial == replacement).unwrap().id;
    let old = devices.iter().find(|d| d.id == old_id).unwrap();
    assert_eq!(old.state, "retired");
    assert_eq!(old.replaced_by, Some(new_id));
    let new_cell = admin.sql(&format!(
        "SELECT CAST(array_id AS BIGINT) AS a, CAST(grid_row AS BIGINT) AS r,
                CAST(grid_column AS BIGINT) AS c, CAST(gateway_id AS BIGINT) AS g, state
           FROM devices WHERE id = {new_id}"
    ))[0]
        .clone();
    assert_eq!(
        (&new_cell["a"], &new_cell["r"], &new_cell["c"]),
        (&old_cell["a"], &old_cell["r"], &old_cell["c"]),
        "the new unit took the old one's cell"
    );
    assert_eq!(new_cell["g"].as_u64(), Some(gateway));
    assert!(
        admin.sql(&format!("SELECT array_id FROM devices WHERE id = {old_id}"))[0]["array_id"]
            .is_null()
    );
    // The task's round trip over QUIC: the simulated gateway puts the new unit in.
    let task = admin.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id, parameters FROM gateway_tasks
          WHERE gateway_id = {gateway} AND kind = 'provision_devices' ORDER BY id DESC LIMIT 1"
    ))[0]
        .clone();
    assert_eq!(
        task["parameters"],
        format!("{{\"replaces\":\"{original:012}\",\"serials\":[\"{replacement:012}\"]}}")
    );
    let task_id = task["id"].as_u64().unwrap();
    let done = wait_until("the provisioning task to finish", || {
        let row = admin.sql(&format!(
            "SELECT state, result FROM gateway_tasks WHERE id = {task_id}"
        ))[0]
            .clone();
        matches!(row["state"].as_str(), Some("succeeded" | "failed")).then_some(row)
    });
    assert_eq!(done["state"], "succeeded", "{done}");
    assert!(
        done["result"]
            .as_str()
            .unwrap()
            .contains("reports in its place")
    );
    // The new serial reports in the old one's place; the old one falls silent.
    let new_times = wait_until("readings of the replacement", || {
        let times = reading_times(&mut admin, site, new_id);
        (times.len() >= 3).then_some(times)
    });
    let old_times = reading_times(&mut admin, site, old_id);
    assert!(!old_times.is_empty());
    assert!(
        old_times.last().unwrap() <= &(new_times[0] + 2 * INTERVAL_US),
        "the old unit stopped reporting when the new one started"
    );
    assert_eq!(
        operator.number(&format!(
            "SELECT count(*) AS n FROM readings WHERE system_id = 0 AND serial = {replacement}"
        )),
        Some(0),
        "none of its readings went unresolved"
    );
    let listed = admin.get(&replace_path).body;
    assert!(listed.contains(&format!("{replacement:012}")));

    // The new unit's page: it replaces the old one, whose readings its history carries.
    let old_energy_wh = admin.sql(&format!(
        "SELECT CAST(sum(energy_j) AS DOUBLE) / 3600.0 AS wh FROM readings
              WHERE system_id = {site} AND device_id = {old_id}"
    ))[0]["wh"]
        .as_f64()
        .unwrap();
    assert!(old_energy_wh > 0.0);
    let old_last = *old_times.last().unwrap();
    let curve_date = utc_date(old_last - 1);
    let new_page = admin.get(&format!(
        "/systems/{site}/devices/{new_id}?date={curve_date}"
    ));
    assert_eq!(new_page.status, 200);
    assert_eq!(
        fact(&new_page.body, "Replaces"),
        Some(format!("{original:012}").as_str())
    );
    let lifetime = energy_wh(fact(&new_page.body, "Lifetime energy").unwrap());
    assert!(
        lifetime + 50.0 >= old_energy_wh,
        "lifetime {lifetime} Wh includes the old unit's {old_energy_wh} Wh"
    );
    // Its power curve shows production before its own first reading.
    let curve = new_page
        .body
        .split("data-line=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&quot;", "\"")
        .replace("&#34;", "\"");
    let curve: serde_json::Value = serde_json::from_str(&curve).unwrap();
    // The bucket of its first reading, or past the day's end when that is the next day.
    let first_own = if utc_date(new_times[0] - 1) == curve_date {
        let minutes = (new_times[0] - 1).rem_euclid(86_400_000_000) / MINUTE_US;
        format!("{:02}:{:02}", minutes / 60, minutes % 60 / 5 * 5)
    } else {
        "24:00".to_owned()
    };
    let labels = curve["labels"].as_array().unwrap();
    let values = curve["values"].as_array().unwrap();
    assert!(
        labels
            .iter()
            .zip(values)
            .any(
                |(label, value)| label.as_str().unwrap() < first_own.as_str()
                    && value.as_f64().unwrap() > 0.0
            ),
        "the curve carries the old unit's power before {first_own}: {curve}"
    );
    let old_page = admin.get(&format!("/systems/{site}/devices/{old_id}"));
    assert_eq!(
        fact(&old_page.body, "Replaced by"),
        Some(format!("{replacement:012}").as_str())
    );
    // The array view: the cell shows the new serial, with the old unit's energy in range.
    let from = utc_date(old_times[0] - 1);
    let to = utc_date(*new_times.last().unwrap());
    let view = admin.get(&format!("/systems/{site}?from={from}&to={to}"));
    assert_eq!(view.status, 200);
    assert!(
        !view
            .body
            .contains(&format!("data-serial=\"{original:012}\""))
    );
    let cell_title = view
        .body
        .split(&format!("title=\"{replacement:012}: "))
        .nth(1)
        .expect("the cell shows the new serial")
        .split('"')
        .next()
        .unwrap();
    assert!(
        energy_wh(cell_title) + 50.0 >= old_energy_wh,
        "the cell's {cell_title} includes the old unit's {old_energy_wh} Wh"
    );

    // --- Gateway replacement: refusals change nothing. ---
    let gateway_path = format!("/systems/{site}/settings/self-service/gateway");
    let page = admin.get(&gateway_path);
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!(
        "<option value=\"{gateway}\" selected>{SITE_GATEWAY}"
    )));
    let foreign_gateway = operator.sql(&format!(
        "SELECT CAST(id AS BIGINT) AS id FROM devices
          WHERE system_id = {other_company} AND kind = 'gateway' LIMIT 1"
    ))[0]["id"]
        .as_u64()
        .unwrap();
    let before = fingerprint(&mut admin, site);
    for (old_gateway, new_serial, expected) in [
        (
            "999999".to_owned(),
            NEW_GATEWAY.to_owned(),
            "is not one of this system",
        ),
        (
            foreign_gateway.to_string(),
            NEW_GATEWAY.to_owned(),
            "is not one of this system",
        ),
        (
            gateway.to_string(),
            "1219900007".to_owned(),
            "is not a gateway serial number",
        ),
        (
            gateway.to_string(),
            format!("{sibling:012}"),
            "is already registered to this system",
        ),
        (
            gateway.to_string(),
            SITE_GATEWAY.to_owned(),
            "is the old one",
        ),
        (
            String::new(),
            NEW_GATEWAY.to_owned(),
            "Choose the old gateway",
        ),
    ] {
        let answer = admin.post(
            &gateway_path,
            &[("old_gateway", &old_gateway), ("new_serial", &new_serial)],
        );
        assert_eq!(
            answer.status, 400,
            "{old_gateway} {new_serial}: {}",
            answer.body
        );
        assert!(
            answer.body.contains(expected),
            "{old_gateway} {new_serial}: {expected}"
        );
        assert!(answer.body.contains("Nothing was changed."));
    }
    let owner_gateway = format!("/systems/{owned}/settings/self-service/gateway");
    assert_eq!(owner.get(&owner_gateway).status, 403);
    assert_eq!(
        owner
            .post(
                &owner_gateway,
                &[("old_gateway", "1"), ("new_serial", NEW_GATEWAY)]
            )
            .status,
        403
    );
    assert_eq!(
        subcontractor
            .post(
                &gateway_path,
                &[
                    ("old_gateway", &gateway.to_string()),
                    ("new_serial", NEW_GATEWAY)
                ]
            )
            .status,
        404
    );
    assert_eq!(
        admin
            .client
            .post_form(
                &gateway_path,
                &[
                    ("old_gateway", &gateway.to_string()),
                    ("new_serial", NEW_GATEWAY)
                ]
            )
            .status,
        403,
        "no CSRF token"
    );
    assert_eq!(
        fingerprint(&mut admin, site),
        before,
        "no refusal changed anything"
    );

    // --- Gateway replacement for real: requested in the portal, then the installer swaps
    // the hardware. ---
    let answer = admin.post(
        &gateway_path,
        &[
            ("old_gateway", &gateway.to_string()),
            ("new_serial", NEW_GATEWAY),
        ],
    );
    assert_eq!(answer.status, 303, "{}", answer.body);
    let pending = admin.get(answer.header("location").unwrap());
    assert!(pending.body.contains("pending-replacement"));
    assert!(
        pending
            .body
            .contains(&format!("Waiting for gateway {NEW_GATEWAY} to report"))
    );
    let new_gateway = site_devices(&mut admin, site)
        .iter()
        .find(|d| d.serial == NEW_GATEWAY.parse::<u64>().unwrap())
        .map(|d| (d.id, d.state.clone()))
        .unwrap();
    assert_eq!(new_gateway.1, "provisioned");
    let new_gateway = new_gateway.0;
    let current_micros: Vec<u64> = site_devices(&mut admin, site)
        .iter()
        .filter(|d| d.kind == "microinverter" && d.state != "retired")
        .map(|d| d.id)
        .collect();
    let current_serials: Vec<u64> = site_devices(&mut admin, site)
        .iter()
        .filter(|d| d.kind == "microinverter" && d.state != "retired")
        .map(|d| d.serial)
        .collect();
    assert_eq!(current_micros.len(), SITE_MICROS as usize);
    let newest = |admin: &mut User| {
        admin
            .number(&format!(
                "SELECT CAST(max(time) AS BIGINT) AS n FROM readings WHERE system_id = {site}"
            ))
            .unwrap()
    };
    let before_swap = newest(&mut admin);
    writeln!(commands, "replace-gateway {SITE_GATEWAY} {NEW_GATEWAY}").unwrap();
    commands.flush().unwrap();
    wait_until("the old gateway to retire", || {
        let devices = site_devices(&mut admin, site);
        let old = devices.iter().find(|d| d.id == gateway).unwrap();
        (old.state == "retired").then_some(())
    });
    let after_swap = newest(&mut admin);
    let devices = site_devices(&mut admin, site);
    let old = devices.iter().find(|d| d.id == gateway).unwrap();
    assert_eq!(
        old.replaced_by,
        Some(new_gateway),
        "replaced by the new gateway"
    );
    assert_eq!(
        devices.iter().find(|d| d.id == new_gateway).unwrap().state,
        "active"
    );
    for d in devices
        .iter()
        .filter(|d| d.kind != "gateway" && d.state != "retired")
    {
        assert_eq!(d.gateway_id, Some(new_gateway), "device {} moved", d.serial);
    }
    let done = admin.get(&gateway_path);
    assert!(done.body.contains("done-replacement"));
    assert!(
        done.body
            .contains("4 microinverter(s), 0 meter(s) and 0 battery(ies) moved to the new gateway")
    );
    let old_gateway_page = admin.get(&format!("/systems/{site}/devices/{gateway}"));
    assert_eq!(
        fact(&old_gateway_page.body, "Replaced by"),
        Some(NEW_GATEWAY)
    );
    let new_page = admin.get(&format!("/systems/{site}/devices/{new_id}"));
    assert_eq!(
        fact(&new_page.body, "Reports through gateway"),
        Some(NEW_GATEWAY)
    );

    // The readings go on through the new gateway, under the same devices, with no gap.
    let until = after_swap + 6 * INTERVAL_US;
    wait_until("readings through the new gateway", || {
        current_micros
            .iter()
            .all(|d| {
                reading_times(&mut admin, site, *d)
                    .last()
                    .is_some_and(|t| *t >= until)
            })
            .then_some(())
    });
    let from = (before_swap - 6 * INTERVAL_US).max(new_times[0]);
    for device in &current_micros {
        let times: BTreeSet<i64> = reading_times(&mut admin, site, *device)
            .into_iter()
            .filter(|t| (from..=until).contains(t))
            .collect();
        let expected: BTreeSet<i64> = (0..)
            .map(|k| from.div_euclid(INTERVAL_US) * INTERVAL_US + k * INTERVAL_US)
            .skip_while(|t| *t < from)
            .take_while(|t| *t <= until)
            .collect();
        let missing: Vec<&i64> = expected.difference(&times).collect();
        assert!(
            missing.is_empty(),
            "device {device}: no reading at {missing:?} around the swap ({before_swap}..{after_swap})"
        );
    }
    assert_eq!(
        operator.number(&format!(
            "SELECT count(*) AS n FROM readings WHERE system_id = 0
              AND time > to_timestamp_micros({before_swap}) AND serial IN ({})",
            current_serials
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Some(0),
        "nothing went unresolved"
    );
}
