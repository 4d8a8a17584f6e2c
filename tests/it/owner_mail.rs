//! Customer service by mail (C1, C2) end to end: `sunfleet demo` sends through a real SMTP
//! server (aiosmtpd, `tests/interop/smtp_sink.py`), which writes down every message it
//! accepts. An installer sends a system's owner their access (the welcome mail's link sets
//! the owner's password and they see only their system), then updates the owner's details
//! (a bad e-mail is refused field by field and nothing is saved or sent; a good change is
//! saved and the owner is told at the old and the new address). The owner and a
//! subcontractor get no further than their role allows, and nothing is queued for them.
//! Without SMTP, the platform administrator reads the outbox on `/admin/mail`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::demo::{PASSWORD, start_demo_for, start_demo_with_args, system_ids};
use crate::http::{Client, hidden_field};
use crate::{Server, free_tcp_port, interop_script, python};

const FROM: &str = "demo@sunfleet.example";

/// aiosmtpd on a free port, writing each message to `folder` as JSON.
fn smtp_sink(folder: &Path) -> (Server, u16) {
    let port = free_tcp_port();
    let mut child = Command::new(python())
        .arg(interop_script("smtp_sink.py"))
        .arg(port.to_string())
        .arg(folder)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python runs the SMTP sink");
    let stdout = child.stdout.take().unwrap();
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
    (server, port)
}

/// The messages the sink accepted so far, in arrival order.
fn received(folder: &Path) -> Vec<serde_json::Value> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

/// The messages to any of `to`, once there are `count` of them (a hang guard: delivery is
/// immediate). Other mail (a demo system becoming operational tells its owner) is left out.
fn wait_for(folder: &Path, to: &[&str], count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mails: Vec<serde_json::Value> = received(folder)
            .into_iter()
            .filter(|m| to.iter().any(|t| m["rcpt_tos"][0] == *t))
            .collect();
        if mails.len() >= count {
            assert_eq!(mails.len(), count, "more mail than expected: {mails:#?}");
            return mails;
        }
        assert!(
            Instant::now() < deadline,
            "{count} mails to {to:?} expected, {} arrived: {mails:#?}",
            mails.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The outbox's mails to `email` on the platform administrator's first page (ids, newest
/// first).
pub fn outbox_to(operator: &mut Client, email: &str) -> Vec<u64> {
    let page = operator.get("/admin/mail");
    assert_eq!(page.status, 200, "{}", page.body);
    let cell = format!("<td>{email}</td><td><a href=\"/admin/mail/");
    page.body
        .match_indices(&cell)
        .map(|(at, _)| {
            let start = at + cell.len();
            page.body[start..start + page.body[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        })
        .collect()
}

/// The one-time link of the newest mail to `email`, read by the platform administrator
/// from the outbox (a demo without SMTP keeps it there).
pub fn held_link(operator: &mut Client, email: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let list = operator.get("/admin/mail");
        assert_eq!(list.status, 200, "{}", list.body);
        // The deliverer marks it once woken; the list shows the state it recorded.
        if list
            .body
            .contains("Not delivered: no SMTP server configured")
        {
            break list;
        }
        assert!(Instant::now() < deadline, "{}", list.body);
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(list);
    let id = outbox_to(operator, email)[0];
    let mail = operator.get(&format!("/admin/mail/{id}"));
    assert_eq!(mail.status, 200, "{}", mail.body);
    link_in(&mail.body)
}

/// The `/welcome?token=…` link in a text.
fn link_in(text: &str) -> String {
    let at = text.find("/welcome?token=").expect("a welcome link");
    let start = text[..at].rfind("http").unwrap();
    let end = at
        + text[at..]
            .find(|c: char| c.is_whitespace() || c == '<')
            .unwrap();
    text[start..end].to_owned()
}

/// Follows a welcome link and sets `password`: the browser is then signed in.
pub fn set_password(client: &mut Client, link: &str, password: &str) {
    let path = &link[link.find("/welcome").unwrap()..];
    let welcome = client.get(path);
    assert_eq!(welcome.status, 200, "{}", welcome.body);
    let token = hidden_field(&welcome.body, "token").unwrap();
    let form_token = hidden_field(&welcome.body, "form_token").unwrap();
    let set = client.post_form(
        "/welcome",
        &[
            ("token", &token),
            ("form_token", &form_token),
            ("password", password),
            ("confirm_password", password),
        ],
    );
    assert_eq!(set.status, 303, "{}", set.body);
}

fn csrf(client: &mut Client, path: &str) -> String {
    let page = client.get(path);
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    hidden_field(&page.body, "csrf_token").unwrap()
}

fn ready(client: &mut Client, system: u64) -> bool {
    let answer = client.get(&format!("/api/activations/{system}"));
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["stage"] == "ready"
}

fn owner_of(client: &mut Client, system: u64) -> serde_json::Value {
    let answer = client.get(&format!("/api/activations/{system}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    json["owner"].clone()
}

#[test]
fn owners_get_their_access_and_changed_details_by_smtp() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = dir.path().join("inbox");
    let (_sink, smtp_port) = smtp_sink(&inbox);
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}");
    let from = format!("Sunfleet Demo <{FROM}>");
    let demo = start_demo_with_args(
        &dir.path().join("demo"),
        free_tcp_port(),
        12,
        1,
        &["--smtp-url", &smtp_url, "--mail-from", &from],
    );
    let mut installer = Client::new(&demo.portal);
    installer.sign_in(&demo.accounts["installer"], PASSWORD);
    let mut operator = Client::new(&demo.portal);
    operator.sign_in(&demo.accounts["platform administrator"], PASSWORD);
    let mut subcontractor = Client::new(&demo.portal);
    subcontractor.sign_in(&demo.accounts["subcontractor"], PASSWORD);
    let mut demo_owner = Client::new(&demo.portal);
    demo_owner.sign_in(&demo.accounts["system owner (read-only)"], PASSWORD);

    // A system of the installer's, neither the demo owner's nor granted to the
    // subcontractor, whose owner has never signed in.
    // (A ready one: no checklist step is left to mail its owner meanwhile.)
    let granted = system_ids(&mut subcontractor);
    let avoided: BTreeSet<u64> = granted
        .union(&system_ids(&mut demo_owner))
        .copied()
        .collect();
    let system = *system_ids(&mut installer)
        .difference(&avoided)
        .find(|id| ready(&mut installer, **id))
        .expect("a system for the test");
    let owner = owner_of(&mut installer, system);
    let owner_email = owner["email"].as_str().unwrap().to_owned();
    assert!(outbox_to(&mut operator, &owner_email).is_empty());

    // C1: the button sends the welcome mail; the page names the address, not the link.
    let activation = format!("/activations/{system}");
    let token = csrf(&mut installer, &activation);
    let sent = installer.post_form(
        &format!("{activation}/owner-access"),
        &[("csrf_token", &token)],
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body
            .contains(&format!("System access sent to {owner_email}.")),
        "{}",
        sent.body
    );
    assert!(
        !sent.body.contains("welcome?token="),
        "the link is the owner's"
    );
    let welcome = &wait_for(&inbox, &[&owner_email], 1)[0];
    assert_eq!(welcome["rcpt_tos"], serde_json::json!([owner_email]));
    assert_eq!(welcome["mail_from"], FROM);
    assert!(welcome["from"].as_str().unwrap().contains("Sunfleet Demo"));
    assert_eq!(welcome["content_type"], "text/plain");
    assert_eq!(welcome["charset"], "utf-8");
    assert!(
        welcome["message_id"]
            .as_str()
            .unwrap()
            .starts_with("<outbox-"),
        "{welcome}"
    );
    let subject = welcome["subject"].as_str().unwrap();
    match welcome["content_language"].as_str().unwrap() {
        "fr" => assert!(
            subject.starts_with("Votre accès à votre installation solaire "),
            "{subject}"
        ),
        "en" => assert!(
            subject.starts_with("Your access to your solar system "),
            "{subject}"
        ),
        other => panic!("language {other}"),
    }
    let body = welcome["body"].as_str().unwrap();
    let link = link_in(body);
    assert!(
        link.starts_with(&format!("http://{}/welcome?token=", demo.portal)),
        "{link}"
    );
    assert!(
        body.contains(&format!("http://{}/signin", demo.portal)),
        "{body}"
    );
    // Marked sent; the link left the outbox's copy.
    let queued = outbox_to(&mut operator, &owner_email);
    assert_eq!(queued.len(), 1);
    let stored = operator.get(&format!("/admin/mail/{}", queued[0]));
    assert!(
        stored.body.contains("data-state=\"sent\""),
        "{}",
        stored.body
    );
    assert!(!stored.body.contains("welcome?token="), "{}", stored.body);
    assert!(
        stored
            .body
            .contains("[one-time link removed after delivery]")
    );

    // The owner follows the link, sets a password, and sees their system only.
    let mut owner_client = Client::new(&demo.portal);
    set_password(&mut owner_client, &link, "the owner's own password");
    assert_eq!(system_ids(&mut owner_client), BTreeSet::from([system]));
    let mut again = Client::new(&demo.portal);
    assert_eq!(
        again
            .sign_in(&owner_email, "the owner's own password")
            .status,
        303
    );

    // C2: the settings overview has the owner's details as a form.
    let settings = format!("/systems/{system}/settings");
    let overview = installer.get(&settings);
    assert_eq!(overview.status, 200, "{}", overview.body);
    assert!(
        overview.body.contains("id=\"owner-form\""),
        "{}",
        overview.body
    );
    assert!(overview.body.contains(&format!("value=\"{owner_email}\"")));
    let token = hidden_field(&overview.body, "csrf_token").unwrap();
    let save = format!("{settings}/owner");
    let family = owner["family_name"].as_str().unwrap().to_owned();
    let given = owner["given_name"].as_str().unwrap().to_owned();
    let new_email = format!("new.owner.{system}@example.org");
    let form = |email: &str, phone: &str, family: &str| -> Vec<(String, String)> {
        vec![
            ("csrf_token".into(), token.clone()),
            ("owner_given_name".into(), given.clone()),
            ("owner_family_name".into(), family.to_owned()),
            ("owner_email".into(), email.to_owned()),
            ("owner_phone".into(), phone.to_owned()),
            ("owner_language".into(), "fr".into()),
        ]
    };
    let post = |client: &mut Client, fields: &[(String, String)]| {
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        client.post_form(&save, &pairs)
    };
    // Bad input: each field's error, nothing saved, nothing sent.
    let refused = post(&mut installer, &form("not-an-address", "call me", ""));
    assert_eq!(refused.status, 400, "{}", refused.body);
    for field in ["owner_email", "owner_phone", "owner_family_name"] {
        assert!(
            refused
                .body
                .contains(&format!("class=\"field-error\" data-field=\"{field}\"")),
            "{field}: {}",
            refused.body
        );
    }
    assert!(
        refused.body.contains("value=\"not-an-address\""),
        "kept as typed"
    );
    // An address another account signs in with.
    let taken = post(
        &mut installer,
        &form(&demo.accounts["installer"], "", &family),
    );
    assert_eq!(taken.status, 400, "{}", taken.body);
    assert!(
        taken
            .body
            .contains("already signs in to another Sunfleet account"),
        "{}",
        taken.body
    );
    assert_eq!(
        owner_of(&mut installer, system)["email"],
        owner_email.as_str()
    );
    assert_eq!(outbox_to(&mut operator, &owner_email).len(), 1, "no notice");
    assert!(outbox_to(&mut operator, "not-an-address").is_empty());
    assert!(outbox_to(&mut operator, &demo.accounts["installer"]).is_empty());

    // A good change: saved, the sign-in follows, the owner is told at both addresses.
    let saved = post(
        &mut installer,
        &form(&new_email, "+33 6 11 22 33 44", &family),
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert_eq!(
        saved.header("location"),
        Some(format!("{settings}?saved=owner_moved").as_str())
    );
    let after = owner_of(&mut installer, system);
    assert_eq!(after["email"], new_email.as_str());
    assert_eq!(after["phone"], "+33 6 11 22 33 44");
    let notice = installer.get(&format!("{settings}?saved=owner_moved"));
    assert!(
        notice
            .body
            .contains("at the new and at the previous address"),
        "{}",
        notice.body
    );
    let mails = wait_for(&inbox, &[&owner_email, &new_email], 3);
    let to = |mail: &serde_json::Value| mail["rcpt_tos"][0].as_str().unwrap().to_owned();
    let notices: Vec<&serde_json::Value> = mails[1..].iter().collect();
    let recipients: BTreeSet<String> = notices.iter().map(|m| to(m)).collect();
    assert_eq!(
        recipients,
        BTreeSet::from([new_email.clone(), owner_email.clone()])
    );
    for mail in &notices {
        assert_eq!(mail["content_language"], "fr");
        assert!(
            mail["subject"]
                .as_str()
                .unwrap()
                .starts_with("Vos coordonnées de propriétaire pour "),
            "{mail}"
        );
        let body = mail["body"].as_str().unwrap();
        assert!(body.contains(&new_email), "{body}");
        assert!(body.contains("+33 6 11 22 33 44"), "{body}");
        if to(mail) == owner_email {
            assert!(
                body.contains("Sunfleet écrit désormais à la nouvelle adresse"),
                "{body}"
            );
        } else {
            assert!(body.contains(&owner_email), "{body}");
        }
    }
    let mut moved = Client::new(&demo.portal);
    assert_eq!(
        moved.sign_in(&new_email, "the owner's own password").status,
        303
    );
    let mut old = Client::new(&demo.portal);
    assert_ne!(
        old.sign_in(&owner_email, "the owner's own password").status,
        303
    );

    // The owner looks but changes nothing; nor may they send themselves access.
    let owner_token = csrf(&mut owner_client, &settings);
    let owner_page = owner_client.get(&settings);
    assert!(!owner_page.body.contains("id=\"owner-form\""));
    let mut owner_fields = form("owner.hijack@example.org", "", &family);
    owner_fields[0].1 = owner_token.clone();
    assert_eq!(post(&mut owner_client, &owner_fields).status, 403);
    assert_eq!(
        owner_client
            .post_form(
                &format!("{activation}/owner-access"),
                &[("csrf_token", &owner_token)]
            )
            .status,
        403
    );
    // A subcontractor not granted the system does not see it at all: its existence is
    // not told (404, as for another company's system) ...
    let sub_token = csrf(&mut subcontractor, "/privacy");
    let mut sub_fields = form("sub.hijack@example.org", "", &family);
    sub_fields[0].1 = sub_token.clone();
    assert_eq!(post(&mut subcontractor, &sub_fields).status, 404);
    // ... and on a system it was granted, owner access stays the installer's (403).
    let granted_system = *granted.iter().next().expect("the subcontractor's grant");
    let granted_page = format!("/systems/{granted_system}/settings");
    let page = subcontractor.get(&granted_page);
    assert!(page.body.contains("id=\"owner-form\""), "{}", page.body);
    let field = |name: &str| {
        let marker = format!("name=\"{name}\" value=\"");
        let start = page.body.find(&marker).unwrap() + marker.len();
        page.body[start..start + page.body[start..].find('"').unwrap()].to_owned()
    };
    let granted_email = field("owner_email");
    let granted_before = outbox_to(&mut operator, &granted_email).len();
    assert_eq!(
        subcontractor
            .post_form(
                &format!("/activations/{granted_system}/owner-access"),
                &[("csrf_token", &sub_token)]
            )
            .status,
        403
    );
    // Nothing changed, nothing was queued or sent.
    assert_eq!(
        owner_of(&mut installer, system)["email"],
        new_email.as_str()
    );
    assert_eq!(outbox_to(&mut operator, &new_email).len(), 1);
    assert_eq!(outbox_to(&mut operator, &owner_email).len(), 2);
    assert_eq!(
        outbox_to(&mut operator, &granted_email).len(),
        granted_before
    );
    for email in ["owner.hijack@example.org", "sub.hijack@example.org"] {
        assert!(outbox_to(&mut operator, email).is_empty(), "{email}");
    }

    // Following Need::ManageSystem, the subcontractor corrects the granted system's owner.
    let fixed = subcontractor.post_form(
        &format!("{granted_page}/owner"),
        &[
            ("csrf_token", &sub_token),
            ("owner_given_name", &field("owner_given_name")),
            ("owner_family_name", &field("owner_family_name")),
            ("owner_email", &granted_email),
            ("owner_phone", "04 72 00 00 00"),
            ("owner_language", "en"),
        ],
    );
    assert_eq!(fixed.status, 303, "{}", fixed.body);
    assert_eq!(
        outbox_to(&mut operator, &granted_email).len(),
        granted_before + 1
    );
    let told = wait_for(&inbox, &[&granted_email], granted_before + 1);
    let last = told.last().unwrap();
    assert_eq!(last["content_language"], "en");
    assert!(last["body"].as_str().unwrap().contains("04 72 00 00 00"));
    // The refused attempts wrote to nobody.
    let everyone: BTreeSet<String> = received(&inbox).iter().map(to).collect();
    assert!(
        everyone.iter().all(|e| !e.contains("hijack")),
        "{everyone:?}"
    );
}

#[test]
fn without_smtp_the_platform_administrator_reads_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo_for(&dir.path().join("demo"), free_tcp_port(), 12, 1);
    let mut installer = Client::new(&demo.portal);
    installer.sign_in(&demo.accounts["installer"], PASSWORD);
    let mut operator = Client::new(&demo.portal);
    operator.sign_in(&demo.accounts["platform administrator"], PASSWORD);
    let mut demo_owner = Client::new(&demo.portal);
    demo_owner.sign_in(&demo.accounts["system owner (read-only)"], PASSWORD);

    let system = *system_ids(&mut installer)
        .difference(&system_ids(&mut demo_owner))
        .next()
        .unwrap();
    let owner_email = owner_of(&mut installer, system)["email"]
        .as_str()
        .unwrap()
        .to_owned();
    let activation = format!("/activations/{system}");
    let token = csrf(&mut installer, &activation);
    let sent = installer.post_form(
        &format!("{activation}/owner-access"),
        &[("csrf_token", &token)],
    );
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(
        sent.body
            .contains(&format!("System access sent to {owner_email}."))
    );

    // The platform administrator's navigation leads to the outbox; it says why mail stays.
    let home = operator.get("/");
    assert!(home.body.contains("href=\"/admin/mail\""), "{}", home.body);
    let link = held_link(&mut operator, &owner_email);
    let page = operator.get("/admin/mail");
    assert!(page.body.contains("id=\"mail-delivery\""));
    assert!(
        page.body.contains("No SMTP server is configured"),
        "{}",
        page.body
    );
    assert!(page.body.contains("data-state=\"held\""), "{}", page.body);
    // Newest first.
    let ids: Vec<u64> = page
        .body
        .match_indices("<a href=\"/admin/mail/")
        .map(|(at, found)| {
            let start = at + found.len();
            page.body[start..start + page.body[start..].find('"').unwrap()]
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        !ids.is_empty() && ids.windows(2).all(|w| w[0] > w[1]),
        "{ids:?}"
    );
    let id = outbox_to(&mut operator, &owner_email)[0];
    let mail = operator.get(&format!("/admin/mail/{id}"));
    assert!(mail.body.contains("data-state=\"held\""), "{}", mail.body);
    assert!(
        mail.body
            .contains(&format!("id=\"mail-to\">{owner_email}<"))
    );
    assert_eq!(operator.get("/admin/mail?page=0").status, 400);
    assert_eq!(operator.get("/admin/mail?page=x").status, 400);
    assert_eq!(operator.get("/admin/mail?page=99").status, 200);
    assert_eq!(operator.get("/admin/mail/999999").status, 404);

    // The held link works: the owner sets their password from it.
    let mut owner = Client::new(&demo.portal);
    set_password(&mut owner, &link, "a password from the outbox");
    assert_eq!(system_ids(&mut owner), BTreeSet::from([system]));

    // Nobody else reads the outbox, nor sees the way there.
    for client in [&mut installer, &mut owner, &mut demo_owner] {
        assert_eq!(client.get("/admin/mail").status, 403);
        assert_eq!(client.get(&format!("/admin/mail/{id}")).status, 403);
        assert!(!client.get("/").body.contains("href=\"/admin/mail\""));
    }
    let mut anonymous = Client::new(&demo.portal);
    assert_eq!(anonymous.get("/admin/mail").status, 303);
}
