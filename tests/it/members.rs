//! Company users and subcontractors end to end (F7, C4, C5): an administrator invites a
//! user, who sets a password through the one-time link; adds a subcontractor company,
//! grants it one system until tomorrow, then revokes it; bad input changes nothing and
//! non-administrators cannot do any of it.

use std::collections::BTreeSet;

use crate::demo::{PASSWORD, start_demo, system_ids};
use crate::free_tcp_port;
use crate::http::{Client, hidden_field};

fn me(client: &mut Client) -> serde_json::Value {
    let answer = client.get("/api/me");
    assert_eq!(answer.status, 200, "{}", answer.body);
    serde_json::from_str(&answer.body).unwrap()
}

/// The path of the invitation link a users page shows.
fn invitation_path(page: &str) -> String {
    let start = page.find("/welcome?token=").expect("an invitation link");
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_owned()
}

/// Follows an invitation: sets the password, and is signed in.
fn accept(portal: &str, path: &str, password: &str) -> Client {
    let mut client = Client::new(portal);
    let form = client.get(path);
    assert_eq!(form.status, 200, "{}", form.body);
    let token = hidden_field(&form.body, "token").unwrap();
    let form_token = hidden_field(&form.body, "form_token").unwrap();
    // Another site's form (no matching form cookie) sets nothing.
    let forged = Client::new(portal).post_form(
        "/welcome",
        &[
            ("token", &token),
            ("form_token", "forged"),
            ("password", password),
            ("confirm_password", password),
        ],
    );
    assert_eq!(forged.status, 403);
    let short = client.post_form(
        "/welcome",
        &[
            ("token", &token),
            ("form_token", &form_token),
            ("password", "short"),
            ("confirm_password", "short"),
        ],
    );
    assert_eq!(short.status, 400);
    let accepted = client.post_form(
        "/welcome",
        &[
            ("token", &token),
            ("form_token", &form_token),
            ("password", password),
            ("confirm_password", password),
        ],
    );
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(client.get(path).status, 404, "an invitation works once");
    client
}

#[test]
fn administrators_invite_users_and_grant_subcontractors_chosen_systems() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(&dir.path().join("demo"), free_tcp_port());
    let mut admin = Client::new(&demo.portal);
    assert_eq!(
        admin
            .sign_in(&demo.accounts["installer administrator"], PASSWORD)
            .status,
        303
    );
    let page = admin.get("/users");
    assert_eq!(page.status, 200);
    let csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let members_before = page.body.matches("/active\"").count();

    // Bad input: field errors, nobody added.
    let bad = admin.post_form(
        "/users/invite",
        &[
            ("csrf_token", &csrf),
            ("email", "not an address"),
            ("given_name", "Léa"),
            ("family_name", ""),
            ("role", "owner"),
        ],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    for message in [
        "Enter an e-mail address",
        "Enter the family name",
        "Choose administrator",
    ] {
        assert!(bad.body.contains(message), "{message}");
    }
    let forged = admin.post_form(
        "/users/invite",
        &[
            ("email", "x@example.com"),
            ("given_name", "X"),
            ("family_name", "Y"),
            ("role", "analyst"),
        ],
    );
    assert_eq!(forged.status, 403, "no CSRF token, no change");

    let invited = admin.post_form(
        "/users/invite",
        &[
            ("csrf_token", &csrf),
            ("email", "lea.moreau@example.org"),
            ("given_name", "Léa"),
            ("family_name", "Moreau"),
            ("role", "installer_user"),
        ],
    );
    assert_eq!(invited.status, 200, "{}", invited.body);
    assert!(
        invited
            .body
            .contains("Invitation sent to lea.moreau@example.org")
    );
    let link = invitation_path(&invited.body);
    let again = admin.post_form(
        "/users/invite",
        &[
            ("csrf_token", &csrf),
            ("email", "LEA.MOREAU@example.org"),
            ("given_name", "Léa"),
            ("family_name", "Moreau"),
            ("role", "installer_user"),
        ],
    );
    // Invited again before signing up (a lost link): a new link, the old one stops working.
    assert_eq!(again.status, 200, "{}", again.body);
    let old_link = link;
    let link = invitation_path(&again.body);
    assert_ne!(link, old_link);
    assert_eq!(Client::new(&demo.portal).get(&old_link).status, 404);
    // Someone who already signs in cannot be invited.
    let taken = admin.post_form(
        "/users/invite",
        &[
            ("csrf_token", &csrf),
            ("email", &demo.accounts["installer"]),
            ("given_name", "X"),
            ("family_name", "Y"),
            ("role", "installer_user"),
        ],
    );
    assert_eq!(taken.status, 400);
    assert!(taken.body.contains("already has an account"));
    assert_eq!(
        admin.get("/users").body.matches("/active\"").count(),
        members_before + 1,
        "one user added, once"
    );

    let mut anonymous = Client::new(&demo.portal);
    assert_eq!(anonymous.get("/welcome?token=forged").status, 404);
    let mut lea = accept(&demo.portal, &link, "a long new password");
    let lea_me = me(&mut lea);
    assert_eq!(lea_me["email"], "lea.moreau@example.org");
    assert_eq!(lea_me["role"], "installer_user");
    let admin_systems = system_ids(&mut admin);
    assert_eq!(
        system_ids(&mut lea),
        admin_systems,
        "same company, same systems"
    );
    // An installer who is not an administrator changes nothing here.
    let lea_csrf = hidden_field(&lea.get("/users").body, "csrf_token").unwrap();
    let refused = lea.post_form(
        "/users/subcontractors",
        &[
            ("csrf_token", &lea_csrf),
            ("company_name", "Sneaky"),
            ("email", "s@example.org"),
            ("given_name", "S"),
            ("family_name", "S"),
        ],
    );
    assert_eq!(refused.status, 403);

    // A subcontractor company, its first user invited with it.
    let added = admin.post_form(
        "/users/subcontractors",
        &[
            ("csrf_token", &csrf),
            ("company_name", "Toitures Durand"),
            ("email", "paul.durand@example.org"),
            ("given_name", "Paul"),
            ("family_name", "Durand"),
        ],
    );
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(added.body.contains("Toitures Durand"));
    let mut paul = accept(
        &demo.portal,
        &invitation_path(&added.body),
        "another long password",
    );
    let paul_me = me(&mut paul);
    assert_eq!(paul_me["role"], "subcontractor");
    let company = paul_me["company_id"].as_i64().unwrap().to_string();
    assert!(system_ids(&mut paul).is_empty(), "nothing granted yet");

    // A system that is not the installer's cannot be granted; nothing is.
    let granted_system = *admin_systems.iter().next().unwrap();
    let other_system = *admin_systems.iter().nth(1).unwrap();
    let foreign = 999_999;
    let mixed = admin.post_form(
        "/users/grants",
        &[
            ("csrf_token", &csrf),
            ("company_id", &company),
            ("systems", &format!("{granted_system}, {foreign}")),
        ],
    );
    assert_eq!(mixed.status, 400, "{}", mixed.body);
    assert!(
        mixed
            .body
            .contains(&format!("Your company has no system {foreign}"))
    );
    assert!(system_ids(&mut paul).is_empty());
    let past = admin.post_form(
        "/users/grants",
        &[
            ("csrf_token", &csrf),
            ("company_id", &company),
            ("systems", &granted_system.to_string()),
            ("until", "2001-01-01"),
        ],
    );
    assert_eq!(past.status, 400);

    let tomorrow = {
        let days = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 86_400
            + 1;
        crate::activation::civil_date(days as i64)
    };
    let granted = admin.post_form(
        "/users/grants",
        &[
            ("csrf_token", &csrf),
            ("company_id", &company),
            ("systems", &granted_system.to_string()),
            ("until", &tomorrow),
        ],
    );
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert!(granted.body.contains("Access granted to 1 system(s)."));
    assert_eq!(system_ids(&mut paul), BTreeSet::from([granted_system]));
    assert_eq!(
        paul.get(&format!("/api/activations/{other_system}")).status,
        404,
        "other systems stay invisible"
    );

    let revoked = admin.post_form(
        "/users/grants/revoke",
        &[
            ("csrf_token", &csrf),
            ("company_id", &company),
            ("system_id", &granted_system.to_string()),
        ],
    );
    assert_eq!(revoked.status, 303);
    assert!(system_ids(&mut paul).is_empty(), "revoked at once");
    let audit = admin.get("/users").body;
    for action in [
        "user invited",
        "subcontractor added",
        "system granted",
        "grant revoked",
        "invitation accepted",
    ] {
        assert!(audit.contains(action), "{action} is in the audit log");
    }
}

/// The text between `start` and the next `end` in `page`.
fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page.find(start).expect(start) + start.len();
    let to = page[from..].find(end).unwrap() + from;
    &page[from..to]
}

#[test]
fn a_script_uses_an_api_key_as_its_user_until_it_is_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(&dir.path().join("demo"), free_tcp_port());
    let mut owner = Client::new(&demo.portal);
    owner.sign_in(&demo.accounts["system owner (read-only)"], PASSWORD);
    let owner_systems = system_ids(&mut owner);
    let page = owner.get("/privacy");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let unnamed = owner.post_form("/privacy/keys", &[("csrf_token", &csrf), ("name", " ")]);
    assert_eq!(unnamed.status, 400);
    assert!(unnamed.body.contains("No key yet."), "nothing created");
    let created = owner.post_form(
        "/privacy/keys",
        &[("csrf_token", &csrf), ("name", "home automation")],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let key = between(&created.body, "<code id=\"new-key\">", "</code>").to_owned();
    assert!(key.starts_with("sfk_") && key.len() > 40, "{key}");
    let key_id = between(&created.body, "/privacy/keys/", "/revoke").to_owned();

    // A script: no cookie, the key in the header.
    let mut script = Client::new(&demo.portal);
    let bearer = format!("Bearer {key}");
    let with_key = [("Authorization", bearer.as_str())];
    let answer = script.request("GET", "/api/systems", &with_key, None);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    let seen: BTreeSet<u64> = json["systems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(seen, owner_systems, "a key sees what its user sees");
    let me = script.request("GET", "/api/me", &with_key, None);
    assert!(me.body.contains("\"role\":\"owner\""), "{}", me.body);
    // The owner's role has no SQL, with or without a key.
    let sql = script.request("POST", "/api/sql", &with_key, Some("SELECT 1"));
    assert_eq!(sql.status, 403, "{}", sql.body);
    // Pages want a session, not a key.
    assert_eq!(script.request("GET", "/", &with_key, None).status, 303);
    let forged = script.request(
        "GET",
        "/api/systems",
        &[("Authorization", "Bearer sfk_not-a-key")],
        None,
    );
    assert_eq!(forged.status, 401);
    assert!(
        forged.body.contains("API key is unknown"),
        "{}",
        forged.body
    );
    assert!(
        !owner.get("/privacy").body.contains("<td>never</td>"),
        "the key's last use is shown"
    );

    let revoked = owner.post_form(
        &format!("/privacy/keys/{key_id}/revoke"),
        &[("csrf_token", &csrf)],
    );
    assert_eq!(revoked.status, 303);
    assert_eq!(
        script
            .request("GET", "/api/systems", &with_key, None)
            .status,
        401,
        "revoked at once"
    );

    // An analyst's key runs SQL without a CSRF token: a browser never sends the header.
    let mut analyst = Client::new(&demo.portal);
    analyst.sign_in(&demo.accounts["analyst (SQL only)"], PASSWORD);
    let csrf = hidden_field(&analyst.get("/privacy").body, "csrf_token").unwrap();
    let created = analyst.post_form(
        "/privacy/keys",
        &[("csrf_token", &csrf), ("name", "notebook")],
    );
    let key = between(&created.body, "<code id=\"new-key\">", "</code>").to_owned();
    let bearer = format!("Bearer {key}");
    let answer = Client::new(&demo.portal).request(
        "POST",
        "/api/sql?format=csv",
        &[("Authorization", bearer.as_str())],
        Some("SELECT count(*) AS systems FROM systems"),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.starts_with("systems\n"), "{}", answer.body);
}

#[test]
fn a_feed_link_gives_a_third_party_the_monthly_production_until_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(&dir.path().join("demo"), free_tcp_port());
    let mut admin = Client::new(&demo.portal);
    admin.sign_in(&demo.accounts["installer administrator"], PASSWORD);
    let company = system_ids(&mut admin);
    let page = admin.get("/privacy");
    assert!(page.body.contains("Third-party reporting") && page.body.contains("Grid profiles"));
    let csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let unnamed = admin.post_form("/privacy/feeds", &[("csrf_token", &csrf), ("name", "")]);
    assert_eq!(unnamed.status, 400);
    assert!(unnamed.body.contains("No feed yet."));
    let created = admin.post_form(
        "/privacy/feeds",
        &[
            ("csrf_token", &csrf),
            ("name", "Regional incentive programme"),
        ],
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let link = between(&created.body, "<code id=\"new-feed\">", "</code>").to_owned();
    let path = &link[link.find("/feeds/").unwrap()..];

    // The third party: no account, only the link.
    let mut third_party = Client::new(&demo.portal);
    let feed = third_party.get(path);
    assert_eq!(feed.status, 200, "{}", feed.body);
    let mut lines = feed.body.lines();
    assert_eq!(lines.next(), Some("system_id,system_name,month,energy_kwh"));
    let rows: Vec<&str> = lines.collect();
    assert!(
        !rows.is_empty(),
        "a day of history makes a month of production"
    );
    for row in &rows {
        let fields: Vec<&str> = row.split(',').collect();
        let id: u64 = fields[0].parse().unwrap();
        assert!(company.contains(&id), "the feed lists system {id}");
        let month = fields[fields.len() - 2];
        assert!(month.len() == 7 && month.as_bytes()[4] == b'-', "{month}");
        assert!(fields[fields.len() - 1].parse::<f64>().unwrap() >= 0.0);
    }
    let token = &path[path.find("token=").unwrap() + 6..];
    let bearer = format!("Bearer {token}");
    let by_header = third_party.request(
        "GET",
        "/feeds/monthly-production.csv",
        &[("Authorization", bearer.as_str())],
        None,
    );
    assert_eq!(by_header.status, 200);
    assert_eq!(
        third_party
            .get("/feeds/monthly-production.csv?token=sff_forged")
            .status,
        401
    );

    // Only administrators manage feeds.
    let mut installer = Client::new(&demo.portal);
    installer.sign_in(&demo.accounts["installer"], PASSWORD);
    let page = installer.get("/privacy");
    assert!(!page.body.contains("Third-party reporting"));
    let installer_csrf = hidden_field(&page.body, "csrf_token").unwrap();
    let refused = installer.post_form(
        "/privacy/feeds",
        &[("csrf_token", &installer_csrf), ("name", "Sneaky")],
    );
    assert_eq!(refused.status, 403);

    let feed_id = between(&created.body, "/privacy/feeds/", "/revoke").to_owned();
    let revoked = admin.post_form(
        &format!("/privacy/feeds/{feed_id}/revoke"),
        &[("csrf_token", &csrf)],
    );
    assert_eq!(revoked.status, 303);
    assert_eq!(third_party.get(path).status, 401, "revoked at once");

    // Every seeded gateway has its country's grid profile, and the page counts them.
    let page = admin.get("/privacy").body;
    let counted: u64 = page
        .split("<tr><td>")
        .skip(1)
        .filter(|row| row.contains(" Hz</td>"))
        .filter_map(|row| {
            let cells: Vec<&str> = row.split("</td><td>").collect();
            cells.last()?.split("</td>").next()?.parse::<u64>().ok()
        })
        .sum();
    assert_eq!(
        counted,
        company.len() as u64,
        "one gateway per system, each with a profile"
    );
}
