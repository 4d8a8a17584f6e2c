//! `sunfleet demo` end to end: it seeds, backfills and serves; every demo account signs in
//! to the portal and sees exactly what its role allows; bad input is refused; a second
//! start reuses the folder.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::http::{Client, hidden_field};
use crate::{Server, free_tcp_port, free_udp_port, interrupt};

pub const PASSWORD: &str = "sunfleet-demo";

pub struct Demo {
    pub server: Server,
    pub portal: String,
    /// The QUIC address gateways connect to.
    pub quic: String,
    /// Role label → e-mail, as the demo prints them.
    pub accounts: BTreeMap<String, String>,
    /// The SQL endpoints' ports: Postgres wire, Flight SQL.
    pub sql_ports: (u16, u16),
}

pub fn start_demo(data: &std::path::Path, portal_port: u16) -> Demo {
    start_demo_with(data, portal_port, 12)
}

/// A demo of `systems` systems (41 or more make two installer companies).
pub fn start_demo_with(data: &std::path::Path, portal_port: u16, systems: u32) -> Demo {
    start_demo_for(data, portal_port, systems, 1)
}

/// A demo of `systems` systems with `history_days` days of history backfilled.
pub fn start_demo_for(
    data: &std::path::Path,
    portal_port: u16,
    systems: u32,
    history_days: u32,
) -> Demo {
    start_demo_with_args(data, portal_port, systems, history_days, &[])
}

/// [`start_demo_for`] with more arguments for `sunfleet demo` (`--smtp-url …`).
pub fn start_demo_with_args(
    data: &std::path::Path,
    portal_port: u16,
    systems: u32,
    history_days: u32,
    extra: &[&str],
) -> Demo {
    let portal = format!("127.0.0.1:{portal_port}");
    let quic = format!("127.0.0.1:{}", free_udp_port());
    let sql_ports = (free_tcp_port(), free_tcp_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sunfleet"))
        .args(["demo", "--data"])
        .arg(data)
        .args([
            "--systems",
            &systems.to_string(),
            "--history-days",
            &history_days.to_string(),
            "--portal",
            &portal,
        ])
        .args(["--quic", &quic])
        .args(["--postgres", &format!("127.0.0.1:{}", sql_ports.0)])
        .args(["--flight", &format!("127.0.0.1:{}", sql_ports.1)])
        .args(extra)
        .env("SUNFLEET_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Backfilling history takes longer the more days there are (a hang guard, not a speed
    // requirement).
    let deadline = Instant::now() + Duration::from_secs(240 + 10 * u64::from(history_days));
    let mut accounts = BTreeMap::new();
    let mut in_welcome = false;
    loop {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the demo prints its accounts");
        if line.starts_with("sunfleet demo:") {
            assert!(line.contains(&format!("http://{portal}")), "{line}");
            in_welcome = true;
        } else if in_welcome && line.trim_start().starts_with("SQL:") {
            break;
        } else if in_welcome {
            let (role, email) = line.trim().rsplit_once(' ').expect("role and e-mail");
            accounts.insert(role.trim().to_owned(), email.to_owned());
        }
    }
    Demo {
        server,
        portal,
        quic,
        accounts,
        sql_ports,
    }
}

pub fn system_ids(client: &mut Client) -> BTreeSet<u64> {
    let answer = client.get("/api/systems");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn demo_serves_the_portal_to_every_role_and_reuses_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let port = free_tcp_port();
    let demo = start_demo(&data, port);
    for role in [
        "installer administrator",
        "installer",
        "subcontractor",
        "system owner (read-only)",
        "analyst (SQL only)",
        "platform administrator",
    ] {
        assert!(
            demo.accounts.contains_key(role),
            "{role}: {:?}",
            demo.accounts
        );
    }
    let account = |role: &str| demo.accounts[role].clone();

    // Not signed in: pages send to the sign-in page, the API answers 401.
    let mut anonymous = Client::new(&demo.portal);
    let page = anonymous.get("/systems");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/signin?next=%2Fsystems"));
    assert_eq!(anonymous.get("/api/systems").status, 401);
    assert_eq!(anonymous.get("/healthz").status, 200);
    assert!(
        anonymous
            .get("/metrics")
            .body
            .contains("sunfleet_portal_requests_total")
    );

    // The administrator signs in before someone tries to guess the password.
    let admin_email = account("installer administrator");
    let mut admin = Client::new(&demo.portal);
    assert_eq!(admin.sign_in(&admin_email, PASSWORD).status, 303);

    // A wrong password is refused with the same answer as an unknown e-mail, and after
    // five failures the account is locked for a while, even with the right password.
    let mut guesser = Client::new(&demo.portal);
    for _ in 0..5 {
        let answer = guesser.sign_in(&admin_email, "not the password");
        assert_eq!(answer.status, 401);
        assert!(answer.body.contains("wrong"), "{}", answer.body);
    }
    let locked = guesser.sign_in(&admin_email, PASSWORD);
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.header("retry-after").is_some());
    assert!(!guesser.cookies.contains_key("sunfleet_session"));
    let unknown = Client::new(&demo.portal).sign_in("nobody@example.com", PASSWORD);
    assert_eq!(unknown.status, 401);
    // A sign-in form posted without its token (from another site) is refused.
    let forged = Client::new(&demo.portal).post_form(
        "/signin",
        &[("email", "x@example.com"), ("password", PASSWORD)],
    );
    assert_eq!(forged.status, 403);

    // The installer (the administrator is locked out for now) sees the company's systems.
    let mut installer = Client::new(&demo.portal);
    let signed_in = installer.sign_in(&account("installer"), PASSWORD);
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert!(installer.cookies.contains_key("sunfleet_session"));
    let company = system_ids(&mut installer);
    assert!(!company.is_empty());
    for path in [
        "/",
        "/?tab=alerts",
        "/?tab=activations",
        "/alerts",
        "/systems",
        "/help",
        "/activations",
        "/activations?stage=all",
        "/activations/new",
        "/services",
        "/privacy",
    ] {
        let page = installer.get(path);
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(page.body.contains("Sign out"), "{path}");
    }
    let list = installer.get("/systems?sort=name&dir=desc");
    let first = *company.iter().next().unwrap();
    assert!(list.body.contains(&format!("#{first}")) || company.len() > 50);
    let csv = installer.get("/systems.csv");
    assert_eq!(csv.status, 200);
    assert_eq!(csv.body.lines().count(), company.len() + 1, "{}", csv.body);

    // The column chooser: saved per user, refused without the CSRF token.
    let page = installer.get("/systems");
    let csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let refused = installer.post_form("/systems/columns", &[("col", "country")]);
    assert_eq!(refused.status, 403);
    let bad = installer.post_form(
        "/systems/columns",
        &[("csrf_token", &csrf), ("col", "password_hash")],
    );
    assert_eq!(bad.status, 400);
    let saved = installer.post_form(
        "/systems/columns",
        &[
            ("csrf_token", &csrf),
            ("col", "country"),
            ("col", "installer"),
        ],
    );
    assert_eq!(saved.status, 303);
    let csv = installer.get("/systems.csv");
    assert!(
        csv.body.starts_with("id,name,installer,country\n"),
        "{}",
        csv.body.lines().next().unwrap_or("")
    );

    // The analyst: SQL in the company's scope, no pages; SQL needs the CSRF token and
    // cannot touch files.
    let mut analyst = Client::new(&demo.portal);
    assert_eq!(
        analyst
            .sign_in(&account("analyst (SQL only)"), PASSWORD)
            .status,
        303
    );
    assert_eq!(analyst.get("/").status, 403);
    let me = analyst.get("/api/me");
    let me: serde_json::Value = serde_json::from_str(&me.body).unwrap();
    let sql = |client: &mut Client, csrf: Option<&str>, text: &str| {
        let mut headers = vec![("Content-Type", "text/plain")];
        if let Some(csrf) = csrf {
            headers.push(("X-CSRF-Token", csrf));
        }
        client.request("POST", "/api/sql?format=json", &headers, Some(text))
    };
    assert_eq!(
        sql(&mut analyst, None, "SELECT id FROM systems").status,
        403,
        "SQL without the CSRF token"
    );
    // The analyst's CSRF token comes from the session: read it from a page it may see.
    // The platform administrator sees every company's systems and runs SQL over them,
    // but is no company's administrator.
    let mut operator = Client::new(&demo.portal);
    operator.sign_in(&account("platform administrator"), PASSWORD);
    let everything = system_ids(&mut operator);
    assert!(everything.is_superset(&company), "{everything:?}");
    assert_eq!(operator.get("/").status, 200);
    assert_eq!(operator.get("/users").status, 403);
    assert_eq!(operator.get("/activations/new").status, 403);
    let help = analyst.get("/help");
    let analyst_csrf = hidden_field(&help.body, "csrf_token").unwrap();
    let answer = sql(
        &mut analyst,
        Some(&analyst_csrf),
        "SELECT id FROM systems ORDER BY id",
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&answer.body).unwrap();
    let analyst_systems: BTreeSet<u64> = rows.iter().map(|r| r["id"].as_u64().unwrap()).collect();
    assert_eq!(analyst_systems, company, "same company, same systems");
    assert_eq!(me["systems_visible"].as_u64(), Some(company.len() as u64));
    let refused = sql(
        &mut analyst,
        Some(&analyst_csrf),
        "COPY (SELECT 1) TO '/tmp/sunfleet-demo-test.csv'",
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    let bad = sql(&mut analyst, Some(&analyst_csrf), "SELEC nonsense");
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("error"), "{}", bad.body);

    // The subcontractor sees only systems granted to it; the owner only their own.
    let mut subcontractor = Client::new(&demo.portal);
    assert_eq!(
        subcontractor
            .sign_in(&account("subcontractor"), PASSWORD)
            .status,
        303
    );
    let granted = system_ids(&mut subcontractor);
    assert!(!granted.is_empty());
    let mut owner = Client::new(&demo.portal);
    assert_eq!(
        owner
            .sign_in(&account("system owner (read-only)"), PASSWORD)
            .status,
        303
    );
    let own = system_ids(&mut owner);
    assert_eq!(own.len(), 1, "{own:?}");
    assert!(company.is_superset(&own));
    let help = owner.get("/help");
    let owner_csrf = hidden_field(&help.body, "csrf_token").unwrap();
    assert_eq!(
        sql(&mut owner, Some(&owner_csrf), "SELECT 1").status,
        403,
        "owners have no SQL"
    );
    // No page or list of the owner or subcontractor names a system outside their scope.
    for (client, visible) in [(&mut owner, &own), (&mut subcontractor, &granted)] {
        for path in [
            "/",
            "/alerts",
            "/systems",
            "/systems.csv",
            "/api/alerts",
            "/activations?stage=all",
            "/services",
        ] {
            let page = client.get(path);
            assert_eq!(page.status, 200, "{path}");
            for other in company
                .iter()
                .chain(&granted)
                .filter(|id| !visible.contains(id))
            {
                assert!(
                    !page.body.contains(&format!("#{other}<")),
                    "{path} shows system {other}"
                );
            }
        }
        let answer = client.get("/api/activations?stage=all");
        let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        for line in json["activations"].as_array().unwrap() {
            let id = line["system_id"].as_u64().unwrap();
            assert!(visible.contains(&id), "/api/activations shows system {id}");
        }
        for other in company.iter().filter(|id| !visible.contains(id)) {
            for path in [
                format!("/activations/{other}"),
                format!("/api/activations/{other}"),
            ] {
                assert_eq!(client.get(&path).status, 404, "{path}");
            }
        }
    }

    // Users: the administrator deactivates the installer (signed out at once, cannot sign
    // in), then reactivates them; the installer sees the list but cannot change it; the
    // audit log records it all; another company's user is "not found".
    let installer_id = {
        let me = installer.get("/api/me");
        serde_json::from_str::<serde_json::Value>(&me.body).unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let users = installer.get("/users");
    assert_eq!(users.status, 200);
    assert!(users.body.contains(&account("installer")));
    assert!(
        !users.body.contains("Deactivate"),
        "installers do not manage users"
    );
    let installer_csrf = hidden_field(&users.body, "csrf_token").unwrap();
    let path = format!("/users/{installer_id}/active");
    assert_eq!(
        installer
            .post_form(&path, &[("csrf_token", &installer_csrf), ("active", "0")])
            .status,
        403
    );
    let users = admin.get("/users");
    assert!(users.body.contains("Deactivate") && users.body.contains("Audit log"));
    let admin_csrf = hidden_field(&users.body, "csrf_token").unwrap();
    assert_eq!(
        admin.post_form(&path, &[("active", "0")]).status,
        403,
        "no CSRF token"
    );
    assert_eq!(
        admin
            .post_form(&path, &[("csrf_token", &admin_csrf), ("active", "maybe")])
            .status,
        400
    );
    assert_eq!(
        admin
            .post_form(&path, &[("csrf_token", &admin_csrf), ("active", "0")])
            .status,
        303
    );
    assert_eq!(
        installer.get("/api/me").status,
        401,
        "signed out everywhere"
    );
    assert_eq!(
        Client::new(&demo.portal)
            .sign_in(&account("installer"), PASSWORD)
            .status,
        401
    );
    assert_eq!(
        admin
            .post_form(
                "/users/999999/active",
                &[("csrf_token", &admin_csrf), ("active", "0")]
            )
            .status,
        404
    );
    assert_eq!(
        admin
            .post_form(&path, &[("csrf_token", &admin_csrf), ("active", "1")])
            .status,
        303
    );
    let log = admin.get("/users");
    assert!(
        log.body.contains("user deactivated") && log.body.contains("user reactivated"),
        "the audit log"
    );
    assert_eq!(
        installer.sign_in(&account("installer"), PASSWORD).status,
        303
    );

    // Password change: field errors change nothing; a change signs out other sessions.
    let mut elsewhere = Client::new(&demo.portal);
    assert_eq!(
        elsewhere
            .sign_in(&account("subcontractor"), PASSWORD)
            .status,
        303
    );
    let account_page = subcontractor.get("/account");
    let csrf = hidden_field(&account_page.body, "csrf_token").unwrap();
    let wrong = subcontractor.post_form(
        "/account/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", "not it at all"),
            ("new_password", "a new long password"),
            ("confirm_password", "a new long password"),
        ],
    );
    assert_eq!(wrong.status, 400);
    assert!(
        wrong.body.contains("not your current password"),
        "{}",
        wrong.body
    );
    let short = subcontractor.post_form(
        "/account/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", PASSWORD),
            ("new_password", "short"),
            ("confirm_password", "short"),
        ],
    );
    assert_eq!(short.status, 400);
    assert!(
        short.body.contains("at least 10 characters"),
        "{}",
        short.body
    );
    assert_eq!(elsewhere.get("/api/me").status, 200, "nothing changed yet");
    let changed = subcontractor.post_form(
        "/account/password",
        &[
            ("csrf_token", &csrf),
            ("current_password", PASSWORD),
            ("new_password", "a new long password"),
            ("confirm_password", "a new long password"),
        ],
    );
    assert_eq!(changed.status, 303);
    assert_eq!(
        subcontractor.get("/api/me").status,
        200,
        "this session goes on"
    );
    assert_eq!(
        elsewhere.get("/api/me").status,
        401,
        "others are signed out"
    );
    assert_eq!(
        Client::new(&demo.portal)
            .sign_in(&account("subcontractor"), "a new long password")
            .status,
        303
    );

    // Sign-out ends the session: the cookie no longer signs anyone in.
    let page = owner.get("/help");
    let csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let session = owner.cookies["sunfleet_session"].clone();
    assert_eq!(
        owner.post_form("/signout", &[("csrf_token", &csrf)]).status,
        303
    );
    let mut replay = Client::new(&demo.portal);
    replay.cookies.insert("sunfleet_session".into(), session);
    assert_eq!(replay.get("/api/me").status, 401);

    // A second start reuses the folder: same accounts, history not backfilled again.
    let plan_before = std::fs::read_to_string(data.join("demo.json")).unwrap();
    assert!(
        plan_before.contains("\"history_done\": true"),
        "{plan_before}"
    );
    interrupt(&demo.server.0);
    let Demo { mut server, .. } = demo;
    assert!(server.0.wait().unwrap().success());
    let again = start_demo(&data, free_tcp_port());
    assert_eq!(again.accounts, {
        let mut accounts = BTreeMap::new();
        for (role, email) in [
            ("installer administrator", admin_email.as_str()),
            ("installer", account("installer").as_str()),
            ("subcontractor", account("subcontractor").as_str()),
            (
                "system owner (read-only)",
                account("system owner (read-only)").as_str(),
            ),
            ("analyst (SQL only)", account("analyst (SQL only)").as_str()),
            (
                "platform administrator",
                account("platform administrator").as_str(),
            ),
        ] {
            accounts.insert(role.to_owned(), email.to_owned());
        }
        accounts
    });
    assert_eq!(
        std::fs::read_to_string(data.join("demo.json")).unwrap(),
        plan_before
    );
    let mut installer = Client::new(&again.portal);
    assert_eq!(
        installer.sign_in(&account("installer"), PASSWORD).status,
        303
    );
    assert_eq!(system_ids(&mut installer), company);
    interrupt(&again.server.0);
}

/// `YYYY-MM-DDTHH:MM` (UTC) of a Unix time, as `simulate --at` takes it.
pub fn utc_minute(unix_s: u64) -> String {
    let minute_of_day = (unix_s % 86_400) / 60;
    format!(
        "{}T{:02}:{:02}",
        crate::activation::civil_date((unix_s / 86_400) as i64),
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// How a hand-entered site's gateway is simulated against a demo.
pub struct SiteRun<'a> {
    pub gateway: &'a str,
    pub micros: u32,
    /// Simulated time starts this long before now...
    pub lead_s: u64,
    /// ...runs this many times faster than the wall clock...
    pub speed: u32,
    /// ...for this long (wall clock)...
    pub duration_s: u32,
    /// ...at a longitude where the sun is highest this many hours after the start.
    pub noon_after_h: f64,
}

impl<'a> SiteRun<'a> {
    /// Ten minutes back at 20× speed for ten minutes, the sun highest an hour after the
    /// start: readings with energy within the first minute.
    pub fn in_the_sun(gateway: &'a str, micros: u32) -> Self {
        Self {
            gateway,
            micros,
            lead_s: 10 * 60,
            speed: 20,
            duration_s: 600,
            noon_after_h: 1.0,
        }
    }
}

/// `sunfleet simulate --site` for a site entered in `demo`'s portal (`data`: the demo's
/// folder, for the fleet CA), in daylight whatever the time of day; stopped when dropped.
pub fn simulate_site(demo: &Demo, data: &std::path::Path, run: &SiteRun) -> Server {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start_s = now_s - run.lead_s;
    let hour = (start_s % 86_400) as f64 / 3_600.0 + run.noon_after_h;
    let longitude = ((12.0 - hour) * 15.0 + 540.0).rem_euclid(360.0) - 180.0;
    let child = Command::new(env!("CARGO_BIN_EXE_sunfleet"))
        .args(["simulate", "--site", run.gateway])
        .args(["--micros", &run.micros.to_string()])
        // West of Greenwich the longitude is negative: the CLI takes it as a value.
        .args(["--latitude", "0", "--longitude", &format!("{longitude:.2}")])
        .args(["--speed", &run.speed.to_string()])
        .args(["--at", &utc_minute(start_s)])
        .args(["--duration", &run.duration_s.to_string()])
        .args(["--progress-every", "60"])
        .args(["--addr", &demo.quic, "--data"])
        .arg(data)
        .env("SUNFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Server(child)
}

/// Enters a site through the portal's activation form as `user`: at the equator, on UTC,
/// with one gateway and the microinverters it is expected to find. Its id.
pub fn enter_site(user: &mut crate::http::User, name: &str, gateway: &str, micros: u32) -> u64 {
    let form = user.get("/activations/new");
    let csrf = hidden_field(&form.body, "csrf_token").unwrap();
    let created = user.client.post_form(
        "/activations",
        &[
            ("csrf_token", &csrf),
            ("name", name),
            ("kind", "residential"),
            ("street_address", "2 rue du Soleil"),
            ("city", "Quito"),
            ("latitude", "0.0"),
            ("longitude", "-78.5"),
            ("time_zone", "UTC"),
            ("gateway_serials", gateway),
            ("expected_microinverters", &micros.to_string()),
            ("annual_degradation_pct", "0.5"),
        ],
    );
    assert_eq!(created.status, 303, "{}", created.body);
    created
        .header("location")
        .unwrap()
        .trim_start_matches("/activations/")
        .trim_end_matches("?saved=1")
        .parse()
        .unwrap()
}
