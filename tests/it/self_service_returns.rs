//! Return requests (R1) end to end over HTTP against `sunfleet demo`: an installer finds
//! the system's devices by serial prefix, has a return to a PO box and one naming another
//! system's unit refused with nothing written, files one for two units and finds it on the
//! request's page, the dashboard and the Services page; a subcontractor without a grant and
//! the owner cannot file one, an installer cannot change its status; the platform
//! administrator moves it through its statuses and everyone sees the history; the labour
//! form opens for the returned unit.

use std::collections::BTreeSet;

use crate::demo::start_demo_for;
use crate::free_tcp_port;
use crate::http::{User, hidden_field};

/// The system's devices of `device_type` whose serial starts with `prefix`, as the form's
/// search box finds them.
fn search(user: &mut User, system: u64, device_type: &str, prefix: &str) -> Vec<String> {
    let page = user.get(&format!(
        "/systems/{system}/settings/self-service/return/devices?device_type={device_type}&serial_search={prefix}"
    ));
    assert_eq!(page.status, 200, "{}", page.body);
    attributes(&page.body, "data-serial")
}

/// How many service requests the registry holds (the platform administrator sees all).
fn requests(operator: &mut User) -> u64 {
    operator.sql("SELECT count(*) AS n FROM service_requests")[0]["n"]
        .as_u64()
        .unwrap()
}

/// Every value of `attribute="…"` in `html`, in order.
fn attributes(html: &str, attribute: &str) -> Vec<String> {
    let marker = format!("{attribute}=\"");
    html.split(&marker)
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
        .collect()
}

/// The text of the element with `id`, up to its first tag.
fn text_of(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[start..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    rest[..rest.find('<').unwrap()].to_owned()
}

#[test]
fn installers_request_returns_and_the_manufacturer_follows_them_up() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo_for(&dir.path().join("demo"), free_tcp_port(), 12, 1);
    let mut installer = User::sign_in(&demo.portal, &demo.accounts["installer"]);
    let mut operator = User::sign_in(&demo.portal, &demo.accounts["platform administrator"]);
    let mut owner = User::sign_in(&demo.portal, &demo.accounts["system owner (read-only)"]);
    let mut subcontractor = User::sign_in(&demo.portal, &demo.accounts["subcontractor"]);
    let before = requests(&mut operator);

    // The owner's system, which its installer manages.
    let company = crate::demo::system_ids(&mut installer.client);
    let target = *crate::demo::system_ids(&mut owner.client)
        .first()
        .expect("the owner has a system");
    assert!(company.contains(&target));
    let settings = format!("/systems/{target}/settings");

    // The self-service section, in the settings' navigation, offers the three entries.
    let section = installer.get(&format!("{settings}/self-service"));
    assert_eq!(section.status, 200, "{}", section.body);
    for expected in [
        format!("href=\"{settings}/self-service\" class=\"active\""),
        format!("href=\"{settings}/self-service/return\""),
        format!("href=\"{settings}/self-service/replacement\""),
        format!("href=\"{settings}/self-service/gateway\""),
    ] {
        assert!(section.body.contains(&expected), "{expected}");
    }
    assert!(
        installer
            .get(&settings)
            .body
            .contains(&format!("href=\"{settings}/self-service\""))
    );

    // The search finds the system's devices of the chosen type by serial prefix.
    let micros = search(&mut installer, target, "microinverter", "");
    assert!(micros.len() >= 3, "{micros:?}");
    let prefix = &micros[1][..10];
    let found = search(&mut installer, target, "microinverter", prefix);
    assert!(found.contains(&micros[1]), "{found:?}");
    assert!(found.iter().all(|s| s.starts_with(prefix)), "{found:?}");
    let batteries = search(&mut installer, target, "battery", "");
    assert!(batteries.iter().all(|s| !micros.contains(s)));
    assert_eq!(
        installer
            .get(&format!(
                "{settings}/self-service/return/devices?device_type=toaster"
            ))
            .status,
        400
    );
    let picked = installer.get(&format!(
        "{settings}/self-service/return/pick?device_type=microinverter&serial={}",
        micros[0]
    ));
    assert_eq!(picked.status, 200);
    assert!(
        picked
            .body
            .contains(&format!("name=\"serial\" value=\"{}\" checked", micros[0]))
    );
    // Another system's unit is not offered.
    let other = *company.iter().find(|id| **id != target).unwrap();
    let foreign = search(&mut installer, other, "microinverter", "")[0].clone();
    assert_eq!(
        installer
            .get(&format!(
                "{settings}/self-service/return/pick?device_type=microinverter&serial={foreign}"
            ))
            .status,
        404
    );

    let form = installer.get(&format!("{settings}/self-service/return"));
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("We are unable to ship to PO Boxes"));
    assert!(form.body.contains("name=\"receiver\""));
    assert!(
        form.body.contains("value=\"owner\""),
        "the owner is a choice"
    );
    let submit = format!("{settings}/self-service/return");

    // A PO box is refused with the address's own words; nothing is written.
    let refused = installer.post(
        &submit,
        &[
            ("receiver", "owner"),
            ("address_choice", "other"),
            ("shipping_address", "P.O. Box 42, Springfield"),
            ("device_type", "microinverter"),
            ("serial", &micros[0]),
            ("serials", &micros[1]),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("data-field=\"shipping_address\""));
    assert!(refused.body.contains("“P.O. Box 42”"), "{}", refused.body);
    // The form comes back as typed, the picked unit still in it.
    assert!(
        refused
            .body
            .contains(&format!("name=\"serial\" value=\"{}\" checked", micros[0]))
    );
    assert_eq!(requests(&mut operator), before);

    // Another system's serial and an unknown one are refused by name.
    let refused = installer.post(
        &submit,
        &[
            ("receiver", "other"),
            ("receiver_name", "Paul Durand"),
            ("address_choice", "site"),
            ("device_type", "microinverter"),
            (
                "serials",
                &format!("{}, {foreign}, 999999999999", micros[0]),
            ),
        ],
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused
            .body
            .contains(&format!("{foreign}: this device belongs to another system")),
        "{}",
        refused.body
    );
    assert!(
        refused
            .body
            .contains("999999999999: no device has this serial number")
    );
    assert_eq!(requests(&mut operator), before);

    // Two units of the system: the request is filed and its page shows it.
    let filed = installer.post(
        &submit,
        &[
            ("receiver", "owner"),
            ("address_choice", "other"),
            ("shipping_address", "3 quai Perrache, 69002 Lyon"),
            ("device_type", "microinverter"),
            ("serial", &micros[0]),
            ("serials", &micros[1]),
        ],
    );
    assert_eq!(filed.status, 303, "{}", filed.body);
    let location = filed.header("location").unwrap().to_owned();
    let id: u64 = location
        .strip_prefix("/services/requests/")
        .and_then(|rest| rest.strip_suffix("?filed=1"))
        .unwrap()
        .parse()
        .unwrap();
    let number = format!("SR-{id:06}");
    assert_eq!(requests(&mut operator), before + 1);
    let page = installer.get(&location);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(text_of(&page.body, "request-number"), number);
    assert!(text_of(&page.body, "request-notice").contains(&number));
    assert_eq!(text_of(&page.body, "request-status"), "New");
    assert_eq!(
        text_of(&page.body, "request-address"),
        "3 quai Perrache, 69002 Lyon"
    );
    let listed: BTreeSet<String> = attributes(&page.body, "data-serial").into_iter().collect();
    assert_eq!(
        listed,
        BTreeSet::from([micros[0].clone(), micros[1].clone()])
    );
    assert_eq!(page.body.matches("class=\"history-step\"").count(), 1);
    assert!(
        !page.body.contains("id=\"advance-form\""),
        "installers only look"
    );
    let link = format!("href=\"/services/requests/{id}\">{number}</a>");
    for path in [
        "/".to_owned(),
        "/services".to_owned(),
        format!("/systems/{target}/services"),
        format!("{settings}/self-service"),
    ] {
        let listing = installer.get(&path);
        assert!(
            listing.body.contains(&link),
            "{path} does not list {number}"
        );
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&installer.get("/api/dashboard").body).unwrap();
    assert!(dashboard["service_requests"]["new"].as_u64().unwrap() >= 1);
    // A unit under an open return is not returned twice.
    let twice = installer.post(
        &submit,
        &[
            ("receiver", "installer"),
            ("address_choice", "site"),
            ("device_type", "microinverter"),
            ("serials", &micros[1]),
        ],
    );
    assert_eq!(twice.status, 400);
    assert!(
        twice
            .body
            .contains(&format!("already being returned under {number}"))
    );

    // A subcontractor without a grant does not find the system; the owner may look but
    // not file; nothing is written.
    let granted = crate::demo::system_ids(&mut subcontractor.client);
    let ungranted = *company
        .iter()
        .find(|id| !granted.contains(id))
        .expect("a system not granted to the subcontractor");
    let fields = [
        ("receiver", "installer"),
        ("address_choice", "site"),
        ("device_type", "microinverter"),
        ("serials", micros[2].as_str()),
    ];
    let answer = subcontractor.post(
        &format!("/systems/{ungranted}/settings/self-service/return"),
        &fields,
    );
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(owner.post(&submit, &fields).status, 403);
    assert_eq!(owner.get(&submit).status, 403);
    assert_eq!(requests(&mut operator), before + 1);
    let seen = owner.get(&location);
    assert_eq!(seen.status, 200);
    assert!(!seen.body.contains("labor-claim-link"));
    assert!(!seen.body.contains("id=\"advance-form\""));
    assert_eq!(
        subcontractor
            .get(&format!("/services/requests/{id}"))
            .status,
        if granted.contains(&target) { 200 } else { 404 }
    );
    // Installers follow the status; they do not change it.
    let status = format!("/services/requests/{id}/status");
    assert_eq!(
        installer.post(&status, &[("state", "in_progress")]).status,
        403
    );

    // The manufacturer's team moves it on, step by step.
    let operator_page = operator.get(&location);
    assert!(operator_page.body.contains("id=\"advance-form\""));
    assert!(operator_page.body.contains("value=\"in_progress\""));
    let skipped = operator.post(&status, &[("state", "resolved")]);
    assert_eq!(skipped.status, 400);
    assert!(
        skipped.body.contains("cannot become Resolved"),
        "{}",
        skipped.body
    );
    for (state, label, note) in [
        ("in_progress", "In progress", ""),
        ("approved", "Approved", "Both units under warranty"),
        ("shipped", "Shipped", "Tracking 1Z999AA1"),
        ("resolved", "Resolved", ""),
    ] {
        let moved = operator.post(&status, &[("state", state), ("note", note)]);
        assert_eq!(moved.status, 303, "{state}: {}", moved.body);
        assert_eq!(
            moved.header("location"),
            Some(format!("/services/requests/{id}?changed={state}").as_str())
        );
        let page = installer.get(&format!("/services/requests/{id}"));
        assert_eq!(text_of(&page.body, "request-status"), label);
    }
    assert_eq!(
        operator.post(&status, &[("state", "in_progress")]).status,
        400
    );
    let page = installer.get(&location);
    assert_eq!(page.body.matches("class=\"history-step\"").count(), 5);
    let history = &page.body[page.body.find("id=\"request-history\"").unwrap()..];
    let order: Vec<usize> = ["New", "In progress", "Approved", "Shipped", "Resolved"]
        .iter()
        .map(|label| history.find(&format!(">{label}</span>")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert!(history.contains("Tracking 1Z999AA1"));
    assert!(history.contains("Both units under warranty"));
    assert_eq!(text_of(&page.body, "request-rma"), format!("RMA-{id:06}"));
    let services = installer.get("/services");
    let row = &services.body[services.body.find(&link).unwrap()..];
    assert!(row[..row.find("</tr>").unwrap()].contains("Resolved"));

    // The labour reimbursement form opens for a returned unit, naming the return.
    let claim = attributes(&page.body, "href")
        .into_iter()
        .find(|href| href.contains("/settings/labor?return="))
        .expect("a labour claim link")
        .replace("&#38;", "&");
    assert!(claim.starts_with(&format!("{settings}/labor?return={id}&serial=")));
    let labor = installer.get(&claim);
    assert_eq!(labor.status, 200, "{}", labor.body);
    assert!(
        labor
            .body
            .contains(&format!("name=\"return_request\" value=\"{id}\""))
    );
    assert!(labor.body.contains("id=\"claim-return\""));
    let chosen = claim.rsplit_once("serial=").unwrap().1;
    assert!(labor.body.contains(&format!("<option value=\"{chosen}\"")));
    let option = &labor.body[labor
        .body
        .find(&format!("<option value=\"{chosen}\""))
        .unwrap()..];
    assert!(
        option[..option.find('>').unwrap()].ends_with(" selected"),
        "the unit is chosen"
    );
    // A unit the return does not list is refused for it.
    let token = hidden_field(&labor.body, "csrf_token").unwrap();
    let wrong = installer.client.post_form(
        &format!("{settings}/labor"),
        &[
            ("csrf_token", token.as_str()),
            ("return_request", &id.to_string()),
            ("serial", &micros[2]),
            ("defect_date", "2020-01-01"),
            ("labor_hours", "1"),
            ("description", "Replaced"),
        ],
    );
    assert_eq!(wrong.status, 400);
    assert!(
        wrong
            .body
            .contains(&format!("Return request {number} does not list this unit"))
    );
    // Another system's return is not offered on this system's form.
    assert_eq!(
        installer
            .get(&format!("/systems/{other}/settings/labor?return={id}"))
            .status,
        404
    );
    assert_eq!(requests(&mut operator), before + 1);
}
