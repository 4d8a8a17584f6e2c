//! Return requests (R1) and service request statuses in the registry: every refusal names
//! what is wrong and writes nothing; a return lists its devices; statuses move only along
//! the allowed steps, each with its history entry; an older registry's requests keep a
//! history when the schema is upgraded.

use rusqlite::params;
use sunfleet_engine::Error;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{
    DeviceDetails, LaborClaim, NewArray, NewDevice, NewOwner, NewReturn, NewServiceRequest,
    NewUser, Registry, RequestState, ReturnDeviceType, ReturnRefusal, TransitionRefusal,
    insert_array, insert_company, insert_device, insert_owner, insert_system, insert_user,
};

use crate::registry::{company, system};

struct Site {
    registry: Registry,
    _dir: tempfile::TempDir,
    system_id: i64,
    other_system: i64,
    installer: i64,
    operator: i64,
    micros: Vec<i64>,
}

const MICRO_SERIALS: [u64; 3] = [121_700_000_001, 121_700_000_002, 121_700_000_003];
const RETIRED_SERIAL: u64 = 121_700_000_009;
const BATTERY_SERIAL: u64 = 300_000_000_001;
const GATEWAY_SERIAL: u64 = 122_100_000_001;
const FOREIGN_SERIAL: u64 = 121_799_000_001;

fn serial(value: u64) -> Serial {
    Serial::new(value).unwrap()
}

/// A system with an owner, three microinverters in service and one retired, an IQ
/// Battery and a gateway; a second system with one microinverter; an installer and the
/// platform's operator.
fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("registry.sqlite3")).unwrap();
    let (system_id, other_system, installer, operator, micros) = registry
        .transaction("site", |tx| {
            let company_id = insert_company(tx, &company())?;
            let owner = insert_owner(
                tx,
                &NewOwner {
                    given_name: "Jeanne".into(),
                    family_name: "Martin".into(),
                    email: "jeanne@example.com".into(),
                    phone: String::new(),
                    language: "fr".into(),
                    created_us: 0,
                },
            )?;
            let mut own = system(company_id);
            own.owner_id = Some(owner);
            let system_id = insert_system(tx, &own)?;
            let other_system = insert_system(tx, &system(company_id))?;
            let user = |email: &str, role: &'static str, company: Option<i64>| NewUser {
                email: email.into(),
                given_name: "Demo".into(),
                family_name: role.into(),
                phone: String::new(),
                language: "en".into(),
                role,
                company_id: company,
                owner_id: None,
                password_hash: None,
                created_us: 0,
            };
            let installer = insert_user(
                tx,
                &user("installer@example.com", "installer_user", Some(company_id)),
            )?;
            let operator = insert_user(tx, &user("operator@example.com", "platform_admin", None))?;
            let device = |value: u64, system: i64, model: &str, details: DeviceDetails| NewDevice {
                serial: serial(value),
                system_id: system,
                model: model.into(),
                firmware: String::new(),
                details,
                state: "active",
                provisioned_us: 0,
            };
            let array_id = insert_array(
                tx,
                &NewArray {
                    system_id,
                    name: "Sud".into(),
                    tilt_deg: 30.0,
                    azimuth_deg: 180.0,
                    grid_rows: 1,
                    grid_columns: 6,
                    position: 0,
                },
            )?;
            let micro = |column: u16| DeviceDetails::Microinverter {
                phase: 'A',
                array_id,
                grid_row: 0,
                grid_column: column,
                module_stc_w: 400.0,
            };
            let mut micros = Vec::new();
            for (column, value) in (0..).zip(MICRO_SERIALS.iter().chain([&RETIRED_SERIAL])) {
                micros.push(insert_device(
                    tx,
                    &device(*value, system_id, "IQ7PLUS-72-2-INT", micro(column)),
                )?);
            }
            insert_device(
                tx,
                &device(FOREIGN_SERIAL, other_system, "IQ7PLUS-72-2-INT", micro(5)),
            )?;
            insert_device(
                tx,
                &device(
                    BATTERY_SERIAL,
                    system_id,
                    "IQBATTERY-3T-1P-NA",
                    DeviceDetails::Battery {
                        capacity_wh: 3360.0,
                    },
                ),
            )?;
            insert_device(
                tx,
                &device(
                    GATEWAY_SERIAL,
                    system_id,
                    "ENV-IQ-AM1-240",
                    DeviceDetails::Gateway {
                        cell_modem_sku: None,
                        cell_plan_end: None,
                        low_bandwidth: false,
                        grid_profile: None,
                    },
                ),
            )?;
            tx.execute(
                "UPDATE devices SET state = 'retired' WHERE serial = ?1",
                params![RETIRED_SERIAL as i64],
            )
            .unwrap();
            Ok((system_id, other_system, installer, operator, micros))
        })
        .unwrap();
    Site {
        registry,
        _dir: dir,
        system_id,
        other_system,
        installer,
        operator,
        micros,
    }
}

impl Site {
    fn request(&self, address: &str, device_type: ReturnDeviceType, serials: &[u64]) -> NewReturn {
        NewReturn {
            system_id: self.system_id,
            company_id: None,
            created_by: self.installer,
            receiver: "Jeanne Martin".into(),
            shipping_address: address.into(),
            device_type,
            serials: serials.iter().map(|s| serial(*s)).collect(),
            at_us: 1_000,
        }
    }

    fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.registry.count("service_requests").unwrap(),
            self.registry.count("service_request_history").unwrap(),
            self.registry.count("service_request_devices").unwrap(),
            self.registry.count("audit_log").unwrap(),
        )
    }
}

/// The audit log: (action, target id), oldest first.
fn audit(registry: &Registry) -> Vec<(String, Option<i64>)> {
    registry
        .read(|c| {
            let mut statement = c
                .prepare("SELECT action, target_id FROM audit_log ORDER BY id")
                .unwrap();
            let rows = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            Ok(rows)
        })
        .unwrap()
}

const STREET: &str = "1 rue de la Paix, 69001 Lyon";

#[test]
fn a_return_of_two_devices_is_filed_with_its_history_and_audit() {
    let site = site();
    let id = site
        .registry
        .request_return(&site.request(
            STREET,
            ReturnDeviceType::Microinverter,
            // A serial given twice counts once.
            &[MICRO_SERIALS[1], MICRO_SERIALS[0], MICRO_SERIALS[1]],
        ))
        .unwrap()
        .unwrap();
    assert_eq!(site.counts(), (1, 1, 2, 1));
    let record = site.registry.service_request(id).unwrap().unwrap();
    assert_eq!(record.kind, "return");
    assert_eq!(record.state, RequestState::New);
    assert_eq!(record.system_id, site.system_id);
    assert_eq!(record.details["receiver"], "Jeanne Martin");
    assert_eq!(record.details["shipping_address"], STREET);
    assert_eq!(record.details["device_type"], "microinverter");
    assert_eq!(
        record.details["serials"],
        serde_json::json!(["121700000002", "121700000001"])
    );
    let serials: Vec<u64> = record.devices.iter().map(|d| d.serial).collect();
    assert_eq!(serials, [MICRO_SERIALS[0], MICRO_SERIALS[1]]);
    assert_eq!(record.history.len(), 1);
    assert_eq!(record.history[0].state, RequestState::New);
    assert_eq!(record.history[0].by_user, Some(site.installer));
    assert_eq!(record.history[0].by_name, "Demo installer_user");
    let audit = audit(&site.registry);
    assert_eq!(audit, vec![("return_submitted".to_owned(), Some(id))]);
    // The labour rules see both units as to be returned.
    let returns = site.registry.return_requests(site.system_id).unwrap();
    assert_eq!(
        returns.iter().map(|r| r.device_id).collect::<Vec<_>>(),
        [site.micros[0], site.micros[1]]
    );
    // A unit under an open return cannot be returned again.
    let again = site
        .registry
        .request_return(&site.request(
            STREET,
            ReturnDeviceType::Microinverter,
            &[MICRO_SERIALS[0], MICRO_SERIALS[2]],
        ))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        again,
        vec![ReturnRefusal::AlreadyReturning {
            serial: serial(MICRO_SERIALS[0]),
            request_id: id,
        }]
    );
    assert_eq!(site.counts(), (1, 1, 2, 1));
}

#[test]
fn every_bad_field_and_serial_is_refused_by_name_and_nothing_is_written() {
    let site = site();
    let before = site.counts();
    let mut request = site.request(
        "BP 42, 69001 Lyon",
        ReturnDeviceType::Microinverter,
        &[
            MICRO_SERIALS[0],
            FOREIGN_SERIAL,
            555,
            RETIRED_SERIAL,
            BATTERY_SERIAL,
            GATEWAY_SERIAL,
        ],
    );
    request.receiver = "  ".into();
    let refused = site.registry.request_return(&request).unwrap().unwrap_err();
    assert_eq!(
        refused,
        vec![
            ReturnRefusal::ReceiverMissing,
            ReturnRefusal::PoBox {
                found: "BP 42".into()
            },
            ReturnRefusal::ForeignSerial {
                serial: serial(FOREIGN_SERIAL)
            },
            ReturnRefusal::UnknownSerial {
                serial: serial(555)
            },
            ReturnRefusal::Retired {
                serial: serial(RETIRED_SERIAL)
            },
            ReturnRefusal::WrongType {
                serial: serial(BATTERY_SERIAL),
                wanted: ReturnDeviceType::Microinverter,
                is: Some(ReturnDeviceType::Battery),
                kind: "battery".into(),
                model: "IQBATTERY-3T-1P-NA".into(),
            },
            ReturnRefusal::WrongType {
                serial: serial(GATEWAY_SERIAL),
                wanted: ReturnDeviceType::Microinverter,
                is: None,
                kind: "gateway".into(),
                model: "ENV-IQ-AM1-240".into(),
            },
        ]
    );
    assert_eq!(site.counts(), before);
    // No address, no serial.
    let empty = site
        .registry
        .request_return(&site.request(" ", ReturnDeviceType::Battery, &[]))
        .unwrap()
        .unwrap_err();
    assert_eq!(
        empty,
        vec![ReturnRefusal::AddressMissing, ReturnRefusal::NoSerial]
    );
    // Too many serials.
    let many: Vec<u64> = (1..=51).collect();
    let too_many = site
        .registry
        .request_return(&site.request(STREET, ReturnDeviceType::Battery, &many))
        .unwrap()
        .unwrap_err();
    assert_eq!(too_many[0], ReturnRefusal::TooManySerials { given: 51 });
    // Another system's return of its own unit is fine; this system's is not.
    let mut foreign = site.request(STREET, ReturnDeviceType::Microinverter, &[FOREIGN_SERIAL]);
    foreign.system_id = site.other_system;
    assert!(site.registry.request_return(&foreign).unwrap().is_ok());
    // No system controller is registered; an AC Battery is not an IQ Battery; a PCU goes
    // back under its IQ Battery's serial.
    for (device_type, ok) in [
        (ReturnDeviceType::SystemController, false),
        (ReturnDeviceType::AcBattery, false),
        (ReturnDeviceType::BatteryPcu, true),
    ] {
        let outcome = site
            .registry
            .request_return(&site.request(STREET, device_type, &[BATTERY_SERIAL]))
            .unwrap();
        assert_eq!(outcome.is_ok(), ok, "{device_type:?}: {outcome:?}");
    }
}

#[test]
fn the_search_finds_the_systems_devices_of_the_type_by_serial_prefix() {
    let site = site();
    let found = |device_type, prefix: &str| -> Vec<u64> {
        site.registry
            .return_candidates(site.system_id, device_type, prefix, 10)
            .unwrap()
            .iter()
            .map(|d| d.serial)
            .collect()
    };
    // Retired units and other systems' are not offered.
    assert_eq!(
        found(ReturnDeviceType::Microinverter, "1217"),
        MICRO_SERIALS.to_vec()
    );
    assert_eq!(
        found(ReturnDeviceType::Microinverter, "121700000002"),
        [MICRO_SERIALS[1]]
    );
    assert!(found(ReturnDeviceType::Microinverter, "3").is_empty());
    assert_eq!(found(ReturnDeviceType::Battery, ""), [BATTERY_SERIAL]);
    assert_eq!(
        found(ReturnDeviceType::BatteryPcu, "3000"),
        [BATTERY_SERIAL]
    );
    assert!(found(ReturnDeviceType::AcBattery, "").is_empty());
    assert!(found(ReturnDeviceType::SystemController, "").is_empty());
    let limited = site
        .registry
        .return_candidates(site.system_id, ReturnDeviceType::Microinverter, "", 2)
        .unwrap();
    assert_eq!(limited.len(), 2);
    let contacts = site
        .registry
        .return_contacts(site.system_id)
        .unwrap()
        .unwrap();
    assert_eq!(
        contacts.owner,
        Some((
            "Jeanne Martin".into(),
            "jeanne@example.com".into(),
            String::new()
        ))
    );
    assert_eq!(contacts.installer.0, "Soleil Pro");
    assert_eq!(
        contacts.site_address,
        "1 rue de la Paix, 69001, Lyon, ARA, FR"
    );
    assert!(site.registry.return_contacts(999).unwrap().is_none());
}

#[test]
fn statuses_move_only_along_the_allowed_steps_each_recorded() {
    let site = site();
    let id = site
        .registry
        .request_return(&site.request(STREET, ReturnDeviceType::Microinverter, &[MICRO_SERIALS[0]]))
        .unwrap()
        .unwrap();
    let advance = |to, at| {
        site.registry
            .advance_service_request(id, to, "", site.operator, at)
            .unwrap()
    };
    // Skipping steps is refused and changes nothing.
    let before = site.counts();
    assert_eq!(
        advance(RequestState::Shipped, 2_000),
        Err(TransitionRefusal::NotAllowed {
            from: RequestState::New,
            to: RequestState::Shipped,
            allowed: vec![RequestState::InProgress, RequestState::Rejected],
        })
    );
    assert_eq!(site.counts(), before);
    assert_eq!(
        advance(RequestState::InProgress, 2_000),
        Ok(RequestState::New)
    );
    assert_eq!(
        advance(RequestState::Approved, 3_000),
        Ok(RequestState::InProgress)
    );
    let approved = site.registry.service_request(id).unwrap().unwrap();
    assert_eq!(
        approved.rma_number.as_deref(),
        Some(format!("RMA-{id:06}").as_str())
    );
    // A return is shipped before it is resolved.
    assert!(matches!(
        advance(RequestState::Resolved, 3_500),
        Err(TransitionRefusal::NotAllowed { .. })
    ));
    site.registry
        .advance_service_request(id, RequestState::Shipped, "UPS 1Z999", site.operator, 4_000)
        .unwrap()
        .unwrap();
    assert_eq!(
        advance(RequestState::Resolved, 5_000),
        Ok(RequestState::Shipped)
    );
    // Resolved is the end.
    assert_eq!(
        advance(RequestState::InProgress, 6_000),
        Err(TransitionRefusal::NotAllowed {
            from: RequestState::Resolved,
            to: RequestState::InProgress,
            allowed: Vec::new(),
        })
    );
    let record = site.registry.service_request(id).unwrap().unwrap();
    assert_eq!(record.state, RequestState::Resolved);
    assert_eq!(record.updated_us, 5_000);
    let steps: Vec<(RequestState, i64, &str)> = record
        .history
        .iter()
        .map(|h| (h.state, h.at_us, h.note.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (RequestState::New, 1_000, ""),
            (RequestState::InProgress, 2_000, ""),
            (RequestState::Approved, 3_000, ""),
            (RequestState::Shipped, 4_000, "UPS 1Z999"),
            (RequestState::Resolved, 5_000, ""),
        ]
    );
    assert!(
        record.history[1..]
            .iter()
            .all(|h| h.by_user == Some(site.operator))
    );
    let audit = audit(&site.registry);
    assert_eq!(
        audit.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        [
            "return_submitted",
            "service_request_in_progress",
            "service_request_approved",
            "service_request_shipped",
            "service_request_resolved",
        ]
    );
    // Once resolved, the unit may be returned again, and the labour rules see it returned.
    let returns = site.registry.return_requests(site.system_id).unwrap();
    assert_eq!(returns[0].state, "resolved");
    assert!(
        site.registry
            .request_return(&site.request(
                STREET,
                ReturnDeviceType::Microinverter,
                &[MICRO_SERIALS[0]]
            ))
            .unwrap()
            .is_ok()
    );
    // An unknown request.
    assert_eq!(
        site.registry
            .advance_service_request(999, RequestState::InProgress, "", site.operator, 1)
            .unwrap(),
        Err(TransitionRefusal::UnknownRequest)
    );
}

#[test]
fn other_kinds_skip_shipped_and_may_be_rejected() {
    let site = site();
    let file = |kind| {
        site.registry
            .create_service_request(&NewServiceRequest {
                kind,
                system_id: site.system_id,
                device_id: None,
                company_id: None,
                created_by: site.installer,
                reason: "test".into(),
                details: serde_json::json!({}),
                at_us: 10,
            })
            .unwrap()
    };
    let permit = file("permit");
    for to in [
        RequestState::InProgress,
        RequestState::Approved,
        RequestState::Resolved,
    ] {
        site.registry
            .advance_service_request(permit, to, "", site.operator, 20)
            .unwrap()
            .unwrap();
    }
    let incentive = file("incentive");
    site.registry
        .advance_service_request(
            incentive,
            RequestState::Rejected,
            "not eligible",
            site.operator,
            20,
        )
        .unwrap()
        .unwrap();
    assert!(matches!(
        site.registry
            .advance_service_request(incentive, RequestState::InProgress, "", site.operator, 30)
            .unwrap(),
        Err(TransitionRefusal::NotAllowed { .. })
    ));
    let record = site.registry.service_request(incentive).unwrap().unwrap();
    assert_eq!(record.history.last().unwrap().note, "not eligible");
}

#[test]
fn a_labour_claim_may_follow_a_return_naming_its_unit() {
    let site = site();
    let id = site
        .registry
        .request_return(&site.request(STREET, ReturnDeviceType::Microinverter, &[MICRO_SERIALS[0]]))
        .unwrap()
        .unwrap();
    let company: i64 = site
        .registry
        .read(|c| {
            c.query_row(
                "SELECT installer_id FROM systems WHERE id = ?1",
                [site.system_id],
                |r| r.get(0),
            )
            .map_err(|source| Error::Registry {
                context: "installer".into(),
                source,
            })
        })
        .unwrap();
    let claim = |device_id, serial, return_request| LaborClaim {
        device_id,
        serial,
        defect_date: "2026-01-10".parse().unwrap(),
        claim_date: "2026-01-20".parse().unwrap(),
        labor_hours: 1.0,
        return_done: true,
        description: "Replaced".into(),
        return_request,
    };
    // The return does not list the second unit.
    assert!(matches!(
        site.registry.submit_labor_claim(
            site.system_id,
            company,
            &claim(site.micros[1], MICRO_SERIALS[1], Some(id)),
            site.installer,
            20,
        ),
        Err(Error::NotOfSystem { .. })
    ));
    let claimed = site
        .registry
        .submit_labor_claim(
            site.system_id,
            company,
            &claim(site.micros[0], MICRO_SERIALS[0], Some(id)),
            site.installer,
            20,
        )
        .unwrap();
    assert_eq!(
        site.registry.labor_claims_for_return(id).unwrap(),
        [(claimed, RequestState::New)]
    );
    let record = site.registry.service_request(claimed).unwrap().unwrap();
    assert_eq!(record.details["return_request"], id);
    assert!(
        record.reason.contains(&format!("SR-{id:06}")),
        "{}",
        record.reason
    );
}

#[test]
fn upgrading_keeps_old_requests_with_a_history_in_the_new_states() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.sqlite3");
    let mut connection = rusqlite::Connection::open(&path).unwrap();
    for sql in [
        include_str!("../../src/registry/migrations/0001_initial.sql"),
        include_str!("../../src/registry/migrations/0002_gateway_tasks.sql"),
        include_str!("../../src/registry/migrations/0003_portal_sessions.sql"),
        include_str!("../../src/registry/migrations/0004_activation_invitations_keys.sql"),
        include_str!("../../src/registry/migrations/0005_kiosk_links.sql"),
    ] {
        connection.execute_batch(sql).unwrap();
    }
    connection.pragma_update(None, "user_version", 5).unwrap();
    let tx = connection.transaction().unwrap();
    let installer = insert_company(&tx, &company()).unwrap();
    let system_id = insert_system(&tx, &system(installer)).unwrap();
    tx.execute(
        "INSERT INTO devices (id, serial, kind, system_id, provisioned_us)
         VALUES (1, 1, 'microinverter', ?1, 0)",
        [system_id],
    )
    .unwrap();
    for (id, kind, state, device) in [
        (1, "labor_claim", "submitted", None),
        (2, "return", "received", Some(1)),
        (3, "permit", "cancelled", None),
        (4, "return", "approved", Some(1)),
    ] {
        tx.execute(
            "INSERT INTO service_requests
                (id, kind, system_id, device_id, company_id, state, created_us, updated_us)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 100, 200)",
            params![id, kind, system_id, device, installer, state],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(connection);
    let registry = Registry::open(&path).unwrap();
    let states: Vec<(RequestState, usize)> = (1..=4)
        .map(|id| {
            let r = registry.service_request(id).unwrap().unwrap();
            (r.state, r.history.len())
        })
        .collect();
    assert_eq!(
        states,
        [
            (RequestState::New, 1),
            (RequestState::Resolved, 2),
            (RequestState::Rejected, 2),
            (RequestState::Approved, 2),
        ]
    );
    let received = registry.service_request(2).unwrap().unwrap();
    assert_eq!(received.history[0].at_us, 100);
    assert_eq!(received.history[1].at_us, 200);
    assert!(
        received.history[1].note.contains("received"),
        "{:?}",
        received.history
    );
    assert_eq!(received.devices.len(), 1);
    // The returns' units are listed; the old states are refused from now on.
    assert_eq!(registry.count("service_request_devices").unwrap(), 2);
    let old_state = registry.transaction("test", |tx| {
        tx.execute(
            "UPDATE service_requests SET state = 'closed' WHERE id = 1",
            [],
        )
        .map_err(|source| Error::Registry {
            context: "old state".into(),
            source,
        })
    });
    assert!(old_state.is_err());
}
