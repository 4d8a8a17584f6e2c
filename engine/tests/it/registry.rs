//! The registry: migrations, constraints, lookups.

use rusqlite::params;
use sunfleet_engine::Error;
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::TaskProgress;
use sunfleet_engine::registry::{
    DeviceDetails, NewCompany, NewDevice, NewSystem, NewUser, Registry, UserRole, insert_company,
    insert_device, insert_system, insert_user,
};

pub fn company() -> NewCompany {
    NewCompany {
        name: "Soleil Pro".into(),
        kind: "installer",
        city: "Lyon".into(),
        region: "ARA".into(),
        country: "FR".into(),
        phone: String::new(),
        email: "contact@soleil.example".into(),
        created_us: 0,
    }
}

pub fn system(installer_id: i64) -> NewSystem {
    NewSystem {
        id: None,
        name: "Maison Dupont".into(),
        kind: "residential",
        installer_id,
        owner_id: None,
        installer_reference: "SP-1".into(),
        third_party_owned: false,
        street_address: "1 rue de la Paix".into(),
        city: "Lyon".into(),
        region: "ARA".into(),
        postal_code: "69001".into(),
        country: "FR".into(),
        latitude: 45.76,
        longitude: 4.83,
        elevation_m: 170.0,
        time_zone: "Europe/Paris".into(),
        stage: "ready",
        internet_connection: "wifi",
        install_date: None,
        operational_date: None,
        annual_degradation_pct: 0.5,
        threshold_pct: 90,
        threshold_days: 90,
        created_us: 0,
    }
}

#[test]
fn migrations_apply_once_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite3");
    let registry = Registry::open(&path).unwrap();
    assert_eq!(registry.schema_version().unwrap(), 10);
    registry
        .transaction("test", |tx| insert_company(tx, &company()).map(drop))
        .unwrap();
    drop(registry);
    let registry = Registry::open(&path).unwrap();
    assert_eq!(registry.schema_version().unwrap(), 10);
    assert_eq!(registry.count("companies").unwrap(), 1);
}

#[test]
fn upgrading_from_the_first_schema_keeps_gateway_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite3");
    let mut connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(include_str!(
            "../../src/registry/migrations/0001_initial.sql"
        ))
        .unwrap();
    connection.pragma_update(None, "user_version", 1).unwrap();
    let tx = connection.transaction().unwrap();
    let installer = insert_company(&tx, &company()).unwrap();
    let system_id = insert_system(&tx, &system(installer)).unwrap();
    tx.execute(
        "INSERT INTO devices (id, serial, kind, system_id, provisioned_us)
         VALUES (1, 1, 'gateway', ?1, 0)",
        [system_id],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO gateway_tasks (id, gateway_id, kind, state, created_us, sent_us)
         VALUES (7, 1, 'reboot', 'sent', 10, 20)",
        [],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO users (id, email, given_name, family_name, role, company_id, created_us)
         VALUES (5, 'a@example.com', 'A', 'B', 'installer_admin', ?1, 0)",
        [installer],
    )
    .unwrap();
    tx.execute(
        "INSERT INTO audit_log (at_us, user_id, action) VALUES (1, 5, 'signed_in')",
        [],
    )
    .unwrap();
    tx.commit().unwrap();
    drop(connection);
    let registry = Registry::open(&path).unwrap();
    assert_eq!(registry.schema_version().unwrap(), 10);
    // The users table was rebuilt (migration 4): its rows and the references to them stay,
    // and foreign keys are enforced again afterwards.
    let user = registry.user_by_email("A@example.com").unwrap().unwrap();
    assert_eq!((user.id, user.role), (5, UserRole::InstallerAdmin));
    let dangling = registry.transaction("test", |tx| {
        tx.execute(
            "INSERT INTO audit_log (at_us, user_id, action) VALUES (2, 999, 'x')",
            [],
        )
        .map_err(|source| Error::Registry {
            context: "dangling".into(),
            source,
        })
    });
    assert!(dangling.is_err(), "foreign keys are on after migrating");
    let task = registry.task(7).unwrap().unwrap();
    assert_eq!(
        (
            task.kind.as_str(),
            task.state,
            task.sent_us,
            task.started_us
        ),
        ("reboot", TaskProgress::Sent, Some(20), None)
    );
}

#[test]
fn a_registry_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite3");
    drop(Registry::open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 99).unwrap();
    drop(connection);
    let error = Registry::open(&path).err().unwrap();
    assert!(
        matches!(error, Error::RegistryTooNew { version: 99, .. }),
        "{error}"
    );
}

#[test]
fn constraints_reject_bad_rows_and_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("r.sqlite3")).unwrap();
    let installer = registry
        .transaction("test", |tx| insert_company(tx, &company()))
        .unwrap();
    // A threshold outside 50–95 % in 5 % steps.
    let bad = NewSystem {
        threshold_pct: 52,
        ..system(installer)
    };
    let error = registry
        .transaction("test", |tx| insert_system(tx, &bad))
        .err()
        .unwrap();
    assert!(error.to_string().contains("CHECK"), "{error}");
    // An unknown installer (foreign key).
    assert!(
        registry
            .transaction("test", |tx| insert_system(tx, &system(installer + 100)))
            .is_err()
    );
    let system_id = registry
        .transaction("test", |tx| insert_system(tx, &system(installer)))
        .unwrap();
    let gateway = |serial: u64| NewDevice {
        serial: Serial::new(serial).unwrap(),
        system_id,
        model: "GW".into(),
        firmware: "1".into(),
        details: DeviceDetails::Gateway {
            cell_modem_sku: None,
            cell_plan_end: None,
            low_bandwidth: false,
            grid_profile: Some("VFR 2019"),
        },
        state: "active",
        provisioned_us: 0,
    };
    // A failed transaction leaves nothing behind: the first insert is rolled back too.
    let result = registry.transaction("test", |tx| {
        insert_device(tx, &gateway(1))?;
        insert_device(tx, &gateway(1))
    });
    assert!(result.is_err(), "duplicate serial");
    assert_eq!(registry.count("devices").unwrap(), 0);
    registry
        .transaction("test", |tx| insert_device(tx, &gateway(121_000_000_001)))
        .unwrap();
    let info = registry
        .gateway(Serial::new(121_000_000_001).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(info.system.0 as i64, system_id);
    assert!(!info.retired);
    assert_eq!(info.acked_seq, 0);
    assert!(registry.gateway(Serial::new(5).unwrap()).unwrap().is_none());
    let directory = DeviceDirectory::new();
    assert_eq!(registry.load_directory(&directory).unwrap(), 1);
    registry
        .read(|c| {
            c.execute("UPDATE devices SET state = 'retired'", params![])
                .map_err(|source| Error::Registry {
                    context: "test".into(),
                    source,
                })
        })
        .unwrap();
    assert!(
        registry
            .gateway(Serial::new(121_000_000_001).unwrap())
            .unwrap()
            .unwrap()
            .retired
    );
    assert!(registry.count("devices; DROP TABLE x").is_err());
}

#[test]
fn passwords_are_hashed_checked_and_refused_alike_for_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("r.sqlite3")).unwrap();
    let company_id = registry
        .transaction("company", |tx| insert_company(tx, &company()))
        .unwrap();
    let user = |email: &str| NewUser {
        email: email.into(),
        given_name: "Ana".into(),
        family_name: "Lyst".into(),
        phone: String::new(),
        language: "fr".into(),
        role: "analyst",
        company_id: Some(company_id),
        owner_id: None,
        password_hash: None,
        created_us: 0,
    };
    registry
        .transaction("users", |tx| {
            insert_user(tx, &user("ana@soleil.example"))?;
            insert_user(tx, &user("gone@soleil.example"))
        })
        .unwrap();

    // No password yet: nobody signs in, not even with an empty one.
    assert_eq!(
        registry.authenticate("ana@soleil.example", "").unwrap(),
        None
    );
    assert!(matches!(
        registry.set_password("ana@soleil.example", "short"),
        Err(Error::WeakPassword { min_chars: 10 })
    ));
    assert!(matches!(
        registry.set_password("nobody@soleil.example", "long enough password"),
        Err(Error::UnknownUser { .. })
    ));
    registry
        .set_password("ana@soleil.example", "long enough password")
        .unwrap();
    registry
        .set_password("gone@soleil.example", "long enough password")
        .unwrap();

    // Stored as an argon2id PHC string, never as the password.
    let stored: String = registry
        .read(|c| {
            Ok(c.query_row(
                "SELECT password_hash FROM users WHERE email = 'ana@soleil.example'",
                [],
                |row| row.get(0),
            )
            .unwrap())
        })
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("long enough password"));

    // E-mails match without regard to case; the record says who signed in.
    let signed_in = registry
        .authenticate("ANA@soleil.example", "long enough password")
        .unwrap()
        .unwrap();
    assert_eq!(signed_in.role, UserRole::Analyst);
    assert_eq!(signed_in.company_id, Some(company_id));
    let last_login: Option<i64> = registry
        .read(|c| {
            Ok(c.query_row(
                "SELECT last_login_us FROM users WHERE email = 'ana@soleil.example'",
                [],
                |row| row.get(0),
            )
            .unwrap())
        })
        .unwrap();
    assert!(last_login.is_some());

    // Wrong password, unknown user and deactivated user get the same answer.
    registry
        .read(|c| {
            c.execute(
                "UPDATE users SET active = 0 WHERE email = 'gone@soleil.example'",
                [],
            )
            .unwrap();
            Ok(())
        })
        .unwrap();
    for (email, password) in [
        ("ana@soleil.example", "long enough passworD"),
        ("nobody@soleil.example", "long enough password"),
        ("gone@soleil.example", "long enough password"),
    ] {
        assert_eq!(
            registry.authenticate(email, password).unwrap(),
            None,
            "{email}"
        );
    }
}

#[test]
fn sessions_end_at_sign_out_expiry_and_deactivation() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("r.sqlite3")).unwrap();
    let company_id = registry
        .transaction("company", |tx| insert_company(tx, &company()))
        .unwrap();
    let user_id = registry
        .transaction("user", |tx| {
            insert_user(
                tx,
                &NewUser {
                    email: "ines@soleil.example".into(),
                    given_name: "Inès".into(),
                    family_name: "Tall".into(),
                    phone: String::new(),
                    language: "fr".into(),
                    role: "installer_user",
                    company_id: Some(company_id),
                    owner_id: None,
                    password_hash: None,
                    created_us: 0,
                },
            )
        })
        .unwrap();
    let hour = 3_600_000_000;
    let first = registry.create_session(user_id, 0, hour).unwrap();
    let second = registry.create_session(user_id, 0, hour).unwrap();
    assert_ne!(first.token, second.token);
    assert_ne!(first.token, first.csrf_token);
    let found = registry.session_user(&first.token, 10).unwrap().unwrap();
    assert_eq!(found.user.id, user_id);
    assert_eq!(found.csrf_token, first.csrf_token);
    // Only a digest is stored: the token itself is nowhere in the database.
    let stored: String = registry
        .read(|c| {
            Ok(c.query_row(
                "SELECT group_concat(token_digest) FROM portal_sessions",
                [],
                |row| row.get(0),
            )
            .unwrap())
        })
        .unwrap();
    assert!(!stored.contains(&first.token));
    assert_eq!(registry.session_user("not a token", 10).unwrap(), None);
    // Expired.
    assert_eq!(registry.session_user(&first.token, hour).unwrap(), None);
    // Signed out.
    registry.end_session(&first.token).unwrap();
    assert_eq!(registry.session_user(&first.token, 10).unwrap(), None);
    assert!(registry.session_user(&second.token, 10).unwrap().is_some());
    // Deactivated: every session stops at once; reactivated, they work again until ended.
    registry
        .read(|c| {
            c.execute("UPDATE users SET active = 0 WHERE id = ?1", [user_id])
                .unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(registry.session_user(&second.token, 10).unwrap(), None);
    registry
        .read(|c| {
            c.execute("UPDATE users SET active = 1 WHERE id = ?1", [user_id])
                .unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(registry.end_sessions_of(user_id).unwrap(), 1);
    assert_eq!(registry.session_user(&second.token, 10).unwrap(), None);
    // Preferences are per user and replaced in place.
    assert_eq!(registry.user_setting(user_id, "columns").unwrap(), None);
    registry
        .set_user_setting(user_id, "columns", "a,b")
        .unwrap();
    registry.set_user_setting(user_id, "columns", "c").unwrap();
    assert_eq!(
        registry
            .user_setting(user_id, "columns")
            .unwrap()
            .as_deref(),
        Some("c")
    );
}

#[test]
fn the_last_active_administrator_stays_and_changes_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("r.sqlite3")).unwrap();
    let (company_id, other_company) = registry
        .transaction("companies", |tx| {
            Ok((
                insert_company(tx, &company())?,
                insert_company(tx, &company())?,
            ))
        })
        .unwrap();
    let member = |email: &str, role: &'static str, company_id: i64| NewUser {
        email: email.into(),
        given_name: "A".into(),
        family_name: "B".into(),
        phone: String::new(),
        language: "en".into(),
        role,
        company_id: Some(company_id),
        owner_id: None,
        password_hash: None,
        created_us: 0,
    };
    let (admin, second_admin, installer, stranger) = registry
        .transaction("users", |tx| {
            Ok((
                insert_user(tx, &member("a1@x.example", "installer_admin", company_id))?,
                insert_user(tx, &member("a2@x.example", "installer_admin", company_id))?,
                insert_user(tx, &member("i@x.example", "installer_user", company_id))?,
                insert_user(tx, &member("s@y.example", "installer_user", other_company))?,
            ))
        })
        .unwrap();
    let session = registry.create_session(installer, 0, 1_000_000).unwrap();
    registry
        .set_user_active(company_id, installer, false, admin, 10)
        .unwrap();
    assert_eq!(registry.session_user(&session.token, 20).unwrap(), None);
    assert!(matches!(
        registry.set_user_active(company_id, stranger, false, admin, 11),
        Err(Error::NotInCompany { .. })
    ));
    registry
        .set_user_active(company_id, second_admin, false, admin, 12)
        .unwrap();
    let refused = registry.set_user_active(company_id, admin, false, admin, 13);
    assert!(
        matches!(refused, Err(Error::LastAdmin { .. })),
        "{refused:?}"
    );
    registry
        .set_user_active(company_id, installer, true, admin, 14)
        .unwrap();
    let users = registry.company_users(company_id).unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users.iter().filter(|u| u.active).count(), 2, "{users:?}");
    let log = registry.company_audit_log(company_id, 10).unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["user_reactivated", "user_deactivated", "user_deactivated"]
    );
    assert_eq!(log[0].target_id, Some(installer));
    assert!(
        registry
            .company_audit_log(other_company, 10)
            .unwrap()
            .is_empty()
    );
}
