//! Activation end to end (F3): an installer adds a system in the portal (bad input is
//! refused field by field and saves nothing), then its gateway connects (`sunfleet
//! simulate --site`) and the system moves through the stages by itself.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::demo::{PASSWORD, SiteRun, simulate_site, start_demo, utc_minute};
use crate::free_tcp_port;
use crate::http::{Client, hidden_field};
use crate::owner_mail::{held_link, set_password};

const GATEWAY: &str = "121990000123";
const MICROS: u32 = 6;

fn activation(client: &mut Client, id: &str) -> serde_json::Value {
    let answer = client.get(&format!("/api/activations/{id}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

fn all_activations(client: &mut Client) -> Vec<serde_json::Value> {
    let answer = client.get("/api/activations?stage=all");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["activations"].as_array().unwrap().clone()
}

fn completed(activation: &serde_json::Value) -> Vec<String> {
    activation["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["completed_us"].is_null())
        .map(|s| s["step"].as_str().unwrap().to_owned())
        .collect()
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
pub fn civil_date(days: i64) -> String {
    sunfleet_engine::time::CivilDate::from_days_since_epoch(days as i32).to_string()
}

#[test]
fn a_system_added_in_the_portal_activates_once_its_gateway_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let demo = start_demo(&data, free_tcp_port());
    let mut admin = Client::new(&demo.portal);
    let admin_email = &demo.accounts["installer administrator"];
    assert_eq!(admin.sign_in(admin_email, PASSWORD).status, 303);
    let before = all_activations(&mut admin).len();

    let form = admin.get("/activations/new");
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("Add new system"));
    let csrf = hidden_field(&form.body, "csrf_token").unwrap();

    // Bad input: every bad field is named, nothing is created.
    let bad = admin.post_form(
        "/activations",
        &[
            ("csrf_token", &csrf),
            ("name", ""),
            ("latitude", "123"),
            ("longitude", "2"),
            ("time_zone", "Mars/Olympus"),
            ("gateway_serials", "12ab"),
            ("owner_email", "nobody"),
            ("owner_family_name", "Martin"),
        ],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    for message in [
        "nothing was saved",
        "A number from -90 to 90.",
        "is not a time zone",
        "is not a serial number",
        "Enter the owner",
    ] {
        assert!(bad.body.contains(message), "{message} missing");
    }
    assert_eq!(all_activations(&mut admin).len(), before);
    // Without the form's token nothing happens either.
    let forged = admin.post_form("/activations", &[("name", "Forged")]);
    assert_eq!(forged.status, 403);

    // The permission-to-operate date three days back: operational once verified.
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let pto = &utc_minute(now_s - 3 * 86_400)[..10];
    let mut fields = vec![
        ("csrf_token", csrf.as_str()),
        ("name", "Activation Test Residence"),
        ("kind", "residential"),
        ("installer_reference", "AT-1"),
        ("owner_given_name", "Camille"),
        ("owner_family_name", "Martin"),
        ("owner_email", "camille.martin@example.org"),
        ("street_address", "1 avenue du Soleil"),
        ("city", "Quito"),
        ("latitude", "0.0"),
        ("longitude", "-78.5"),
        ("time_zone", "UTC"),
        ("gateway_serials", GATEWAY),
        ("expected_microinverters", "6"),
        ("operational_date", pto),
        ("annual_degradation_pct", "0.5"),
    ];
    let months: Vec<String> = (1..=12).map(|m| format!("estimate_{m}")).collect();
    for month in &months {
        fields.push((month.as_str(), "150"));
    }
    let created = admin.post_form("/activations", &fields);
    assert_eq!(created.status, 303, "{}", created.body);
    let location = created.header("location").unwrap().to_owned();
    let id = location
        .trim_start_matches("/activations/")
        .trim_end_matches("?saved=1")
        .to_owned();
    let page = admin.get(&location);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Activation Test Residence") && page.body.contains("Saved."));
    let started = activation(&mut admin, &id);
    assert_eq!(started["stage"], "started");
    assert_eq!(
        completed(&started),
        ["owner_entered", "location_entered", "gateways_entered"]
    );
    assert_eq!(started["percent_complete"], 33);
    assert_eq!(started["monthly_estimate_kwh"][6], 150.0);

    // The installer sends the owner their access; without SMTP the mail stays in the
    // outbox, where the platform administrator reads the link; it sets the owner's
    // password, and they see the system.
    let page = admin.get(&format!("/activations/{id}"));
    let csrf_again = hidden_field(&page.body, "csrf_token").unwrap();
    let sent = admin.post_form(
        &format!("/activations/{id}/owner-access"),
        &[("csrf_token", &csrf_again)],
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body
            .contains("System access sent to camille.martin@example.org."),
        "{}",
        sent.body
    );
    assert!(
        !sent.body.contains("/welcome?token="),
        "the link is the owner's"
    );
    let mut operator = Client::new(&demo.portal);
    operator.sign_in(&demo.accounts["platform administrator"], PASSWORD);
    let link = held_link(&mut operator, "camille.martin@example.org");
    let mut owner = Client::new(&demo.portal);
    set_password(&mut owner, &link, "the owner's password");
    let mine = owner.get("/api/systems");
    assert!(
        mine.body.contains("Activation Test Residence"),
        "{}",
        mine.body
    );
    assert!(
        !owner.get("/api/alerts").body.contains("\"system_id\":1,"),
        "only the owner's system"
    );

    // The same gateway cannot go to a second system.
    let mut again = fields.clone();
    again[1] = ("name", "Second");
    let duplicate = admin.post_form("/activations", &again);
    assert_eq!(duplicate.status, 400);
    assert!(duplicate.body.contains("already registered"));
    assert_eq!(all_activations(&mut admin).len(), before + 1);

    // Another installer's member sees it; the subcontractor and the owner do not.
    let mut installer = Client::new(&demo.portal);
    installer.sign_in(&demo.accounts["installer"], PASSWORD);
    assert_eq!(installer.get(&location).status, 200);
    // The installer's people see the owner's contact details; nobody else does.
    assert!(
        installer
            .get(&format!("/api/activations/{id}"))
            .body
            .contains("camille.martin@example.org")
    );
    let seen = operator.get(&format!("/api/activations/{id}"));
    assert_eq!(seen.status, 200);
    assert!(!seen.body.contains("camille.martin"), "{}", seen.body);
    for role in ["subcontractor", "system owner (read-only)"] {
        let mut other = Client::new(&demo.portal);
        other.sign_in(&demo.accounts[role], PASSWORD);
        assert_eq!(
            other.get(&format!("/activations/{id}")).status,
            404,
            "{role}"
        );
        assert_eq!(other.get("/activations/new").status, 403, "{role}");
    }

    // The gateway connects. Simulated time starts 50 minutes back (its readings fall in
    // the past hour) at 30× speed, at a longitude where the sun is high then.
    let _simulator = simulate_site(
        &demo,
        &data,
        &SiteRun {
            gateway: GATEWAY,
            micros: MICROS,
            lead_s: 50 * 60,
            speed: 30,
            duration_s: 150,
            noon_after_h: 0.5,
        },
    );

    let deadline = Instant::now() + Duration::from_secs(150);
    let verified = loop {
        let now = activation(&mut admin, &id);
        if matches!(now["stage"].as_str(), Some("verifying" | "ready")) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the system did not reach Verifying: {now:#}"
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    let steps = completed(&verified);
    for step in [
        "gateways_reported",
        "good_communication",
        "operation_verified",
        "arrays_built",
    ] {
        assert!(steps.contains(&step.to_owned()), "{step}: {steps:?}");
    }
    assert_eq!(verified["microinverters"], MICROS);
    let page = admin.get(&format!("/activations/{id}"));
    assert!(
        page.body.contains("✓"),
        "the checklist shows completed steps"
    );
    let list = admin.get("/activations?stage=all");
    assert!(list.body.contains("Activation Test Residence"));
}
