//! The access sweep (issue #6): every portal route, with every role, in a demo of two
//! installer companies. No page, JSON answer, CSV or SQL result names a system outside
//! the role's scope, and another company's system ids answer 404.

use std::collections::BTreeSet;

use crate::demo::{PASSWORD, start_demo_with};
use crate::free_tcp_port;
use crate::http::{Client, hidden_field};

const PAGES: &[&str] = &[
    "/",
    "/?tab=alerts",
    "/?tab=activations",
    "/?q=1",
    "/alerts",
    "/systems",
    "/systems?sort=name&dir=desc",
    "/systems?page=2",
    "/systems.csv",
    "/activations",
    "/activations?stage=all",
    "/activations?stage=ready",
    "/activations/new",
    "/services",
    "/privacy",
    "/help",
    "/account",
    "/users",
    "/admin/mail",
];

/// JSON answers and the key naming a system in their lists.
const JSON: &[(&str, &str, &str)] = &[
    ("/api/systems", "systems", "id"),
    ("/api/alerts", "alerts", "system_id"),
    ("/api/activations?stage=all", "activations", "system_id"),
];

/// SQL naming systems, per table an analyst may read.
const SQL: &[&str] = &[
    "SELECT id FROM systems",
    "SELECT DISTINCT system_id FROM readings",
    "SELECT DISTINCT system_id FROM rollup_day",
    "SELECT DISTINCT system_id FROM devices",
    "SELECT DISTINCT system_id FROM events",
    "SELECT DISTINCT system_id FROM activation_steps",
    "SELECT DISTINCT system_id FROM subcontractor_grants",
    "SELECT DISTINCT system_id FROM service_requests",
    "SELECT DISTINCT system_id FROM production_estimates",
];

fn json(client: &mut Client, path: &str) -> serde_json::Value {
    let answer = client.get(path);
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

fn ids_in(value: &serde_json::Value, list: &str, key: &str) -> BTreeSet<u64> {
    value[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[key].as_u64().unwrap())
        .collect()
}

fn sql_ids(client: &mut Client, csrf: &str, text: &str) -> Option<BTreeSet<u64>> {
    let answer = client.request(
        "POST",
        "/api/sql?format=json",
        &[("X-CSRF-Token", csrf), ("Content-Type", "text/plain")],
        Some(text),
    );
    if answer.status == 403 {
        return None;
    }
    assert_eq!(answer.status, 200, "{text}: {}", answer.body);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&answer.body).unwrap();
    Some(
        rows.iter()
            .filter_map(|row| row.as_object()?.values().next()?.as_u64())
            .collect(),
    )
}

/// One system's pages (after `/systems/{id}`), each refused for a system out of scope.
const SYSTEM_PAGES: &[&str] = &[
    "",
    "/graph",
    "/graph.json",
    "/live",
    "/live.json",
    "/reports",
    "/reports.csv",
    "/reports/print",
    "/devices",
    "/events",
    "/diagnostics",
    "/kiosk",
    "/services",
    "/settings",
    "/settings/arrays",
    "/settings/arrays/builder",
    "/settings/labor",
    "/settings/self-service",
    "/settings/self-service/return",
    "/settings/self-service/replacement",
];

/// One system's forms (POST after `/systems/{id}`).
const SYSTEM_FORMS: &[&str] = &[
    "/devices/provision",
    "/diagnostics",
    "/kiosk/links",
    "/services/incentive",
    "/services/permit",
    "/settings/arrays/builder",
    "/settings/estimate",
    "/settings/labor",
    "/settings/owner",
    "/settings/references",
    "/settings/self-service/gateway",
    "/settings/self-service/gateway/reprovision",
    "/settings/self-service/replacement",
    "/settings/self-service/return",
];

#[test]
fn every_route_with_every_role_shows_only_that_roles_systems() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo_with(&dir.path().join("demo"), free_tcp_port(), 45);
    let mut operator = Client::new(&demo.portal);
    operator.sign_in(&demo.accounts["platform administrator"], PASSWORD);
    let all = ids_in(&json(&mut operator, "/api/systems"), "systems", "id");
    assert_eq!(
        all.len(),
        45,
        "the platform administrator sees the whole fleet"
    );
    // Every page below exists: in scope, it answers (so a 404 out of scope means refused).
    let first = all.iter().next().unwrap();
    for page in SYSTEM_PAGES {
        let path = format!("/systems/{first}{page}");
        assert_eq!(operator.get(&path).status, 200, "{path}");
    }

    for (role, email) in &demo.accounts {
        let mut client = Client::new(&demo.portal);
        assert_eq!(client.sign_in(email, PASSWORD).status, 303, "{role}");
        let csrf = hidden_field(&client.get("/privacy").body, "csrf_token").unwrap();
        let analyst = role.starts_with("analyst");
        let visible: BTreeSet<u64> = if analyst {
            sql_ids(&mut client, &csrf, "SELECT id FROM systems").unwrap()
        } else {
            ids_in(&json(&mut client, "/api/systems"), "systems", "id")
        };
        assert!(!visible.is_empty(), "{role} sees nothing");
        let others: Vec<u64> = all.difference(&visible).copied().collect();
        if role.starts_with("installer") || analyst {
            assert!(!others.is_empty(), "{role}: the demo has a second company");
        }

        for path in PAGES {
            let page = client.get(path);
            assert!(
                matches!(page.status, 200 | 403),
                "{role} {path}: {}",
                page.status
            );
            for other in &others {
                assert!(
                    !page.body.contains(&format!("#{other}<")),
                    "{role} {path} names system {other}"
                );
            }
            if *path == "/systems.csv" && page.status == 200 {
                for line in page.body.lines().skip(1) {
                    let id: u64 = line.split(',').next().unwrap().parse().unwrap();
                    assert!(visible.contains(&id), "{role}: the CSV lists system {id}");
                }
            }
        }
        for (path, list, key) in JSON {
            let answer = client.get(path);
            if analyst {
                assert_eq!(answer.status, 403, "{role} {path}");
                continue;
            }
            let value: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
            let shown = ids_in(&value, list, key);
            assert!(
                shown.is_subset(&visible),
                "{role} {path} shows {:?}",
                shown.difference(&visible).collect::<Vec<_>>()
            );
        }
        for other in others.iter().take(8) {
            let activations = [
                format!("/activations/{other}"),
                format!("/api/activations/{other}"),
            ];
            let system_pages = SYSTEM_PAGES.iter().map(|p| format!("/systems/{other}{p}"));
            for path in activations.into_iter().chain(system_pages) {
                let status = client.get(&path).status;
                assert!(
                    status == 404 || (analyst && status == 403),
                    "{role} {path}: {status}"
                );
            }
        }
        // Changing another company's system, with a valid CSRF token: refused, before
        // anything is read from the form.
        if let Some(other) = others.first() {
            for path in SYSTEM_FORMS {
                let path = format!("/systems/{other}{path}");
                let status = client.post_form(&path, &[("csrf_token", &csrf)]).status;
                assert!(matches!(status, 403 | 404), "{role} POST {path}: {status}");
            }
        }
        for text in SQL {
            if let Some(ids) = sql_ids(&mut client, &csrf, text) {
                assert!(
                    ids.is_subset(&visible),
                    "{role}: {text} names {:?}",
                    ids.difference(&visible).collect::<Vec<_>>()
                );
            }
        }
    }
}

#[test]
fn every_answer_carries_the_security_headers_and_sessions_are_http_only_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo_with(&dir.path().join("demo"), free_tcp_port(), 12);
    let mut client = Client::new(&demo.portal);
    let signed_in = client.sign_in(&demo.accounts["installer administrator"], PASSWORD);
    assert_eq!(signed_in.status, 303);
    let session = signed_in
        .headers
        .iter()
        .find(|(name, value)| {
            name.eq_ignore_ascii_case("set-cookie") && value.starts_with("sunfleet_session=")
        })
        .map(|(_, value)| value.clone())
        .expect("a session cookie");
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    // Served over plain HTTP (no https:// public URL): no Secure flag, no HSTS.
    assert!(!session.contains("Secure"), "{session}");

    // A page, a JSON answer, a refusal, a missing page, the sign-in form.
    let mut anonymous = Client::new(&demo.portal);
    for answer in [
        client.get("/systems"),
        client.get("/api/me"),
        anonymous.get("/api/me"),
        client.get("/no-such-page"),
        anonymous.get("/signin"),
    ] {
        let csp = answer.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp:?}");
        }
        // No inline script may run: no 'unsafe-inline' anywhere.
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(answer.header("x-frame-options"), Some("DENY"));
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(answer.header("referrer-policy"), Some("same-origin"));
        assert_eq!(answer.header("strict-transport-security"), None);
    }
}
