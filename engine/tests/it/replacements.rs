//! Replacements (R2, R3) in the registry: a microinverter or AC battery swapped for a new
//! unit takes over its cell and gateway and is provisioned by a task; a gateway replacement
//! waits for the new gateway's first acknowledged batch, then retires the old gateway,
//! moves its devices, flags batteries and cancels its unfinished tasks. Every refusal
//! changes nothing.

use sunfleet_engine::ids::{DeviceId, Serial};
use sunfleet_engine::registry::{
    DeviceDetails, GatewayReplacementRefusal, GatewaySession, MovedDevices, NewArray, NewDevice,
    Registry, ReplacementRefusal, TaskProgress, TaskReport, insert_array, insert_company,
    insert_device, insert_system, set_reporting_gateway,
};

use crate::registry::{company, system};

fn serial(value: u64) -> Serial {
    Serial::new(value).unwrap()
}

const OUR_GATEWAY: u64 = 121_000_000_001;
const THEIR_GATEWAY: u64 = 121_000_000_002;
const MICRO_1: u64 = 482_000_000_001;
const MICRO_2: u64 = 482_000_000_002;
const THEIR_MICRO: u64 = 482_000_000_009;
const BATTERY: u64 = 122_300_000_001;
const METER: u64 = 121_800_000_001;
const SPARE_1: u64 = 482_000_000_512;
const SPARE_2: u64 = 482_000_000_513;
const NEW_GATEWAY: u64 = 121_050_000_001;

struct Fleet {
    _dir: tempfile::TempDir,
    registry: Registry,
    ours: i64,
    theirs: i64,
    our_gateway: i64,
    their_gateway: i64,
    array: i64,
}

fn gateway(system_id: i64, value: u64, profile: Option<&'static str>) -> NewDevice {
    NewDevice {
        serial: serial(value),
        system_id,
        model: "ENV-S-WM-230".into(),
        firmware: "D8.2.4345".into(),
        details: DeviceDetails::Gateway {
            cell_modem_sku: Some("CELLMODEM-M1-06-SP-05".into()),
            cell_plan_end: None,
            low_bandwidth: true,
            grid_profile: profile,
        },
        state: "active",
        provisioned_us: 0,
    }
}

fn micro(system_id: i64, value: u64, array_id: i64, column: u16) -> NewDevice {
    NewDevice {
        serial: serial(value),
        system_id,
        model: "IQ8PLUS-72-2-US".into(),
        firmware: "520-00082-r01".into(),
        details: DeviceDetails::Microinverter {
            phase: 'B',
            array_id,
            grid_row: 0,
            grid_column: column,
            module_stc_w: 400.0,
        },
        state: "active",
        provisioned_us: 0,
    }
}

/// Two Ready systems: ours with a gateway, two microinverters in an array, a battery and a
/// meter; theirs with a gateway and a microinverter.
fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("r.sqlite3")).unwrap();
    let (ours, theirs, our_gateway, their_gateway, array) = registry
        .transaction("test", |tx| {
            let installer = insert_company(tx, &company())?;
            let ours = insert_system(tx, &system(installer))?;
            let theirs = insert_system(tx, &system(installer))?;
            let our_gateway =
                insert_device(tx, &gateway(ours, OUR_GATEWAY, Some("IEEE 1547:2018")))?;
            let their_gateway = insert_device(tx, &gateway(theirs, THEIR_GATEWAY, None))?;
            let array = |system_id| NewArray {
                system_id,
                name: "South roof".into(),
                tilt_deg: 30.0,
                azimuth_deg: 180.0,
                grid_rows: 1,
                grid_columns: 4,
                position: 0,
            };
            let our_array = insert_array(tx, &array(ours))?;
            let their_array = insert_array(tx, &array(theirs))?;
            insert_device(tx, &micro(ours, MICRO_1, our_array, 0))?;
            insert_device(tx, &micro(ours, MICRO_2, our_array, 1))?;
            insert_device(tx, &micro(theirs, THEIR_MICRO, their_array, 0))?;
            insert_device(
                tx,
                &NewDevice {
                    serial: serial(BATTERY),
                    system_id: ours,
                    model: "B03-A01-US00-1-3".into(),
                    firmware: String::new(),
                    details: DeviceDetails::Battery {
                        capacity_wh: 3360.0,
                    },
                    state: "active",
                    provisioned_us: 0,
                },
            )?;
            insert_device(
                tx,
                &NewDevice {
                    serial: serial(METER),
                    system_id: ours,
                    model: "CT-200-SPLIT".into(),
                    firmware: String::new(),
                    details: DeviceDetails::Meter {
                        meter_kind: "production",
                    },
                    state: "active",
                    provisioned_us: 0,
                },
            )?;
            set_reporting_gateway(tx, ours, our_gateway)?;
            set_reporting_gateway(tx, theirs, their_gateway)?;
            Ok((ours, theirs, our_gateway, their_gateway, our_array))
        })
        .unwrap();
    Fleet {
        _dir: dir,
        registry,
        ours,
        theirs,
        our_gateway,
        their_gateway,
        array,
    }
}

/// Everything a refusal must leave as it was.
fn snapshot(registry: &Registry) -> String {
    registry
        .read(|c| {
            let mut out = String::new();
            for table in ["devices", "gateway_tasks", "replacements", "audit_log"] {
                let mut statement = c
                    .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                    .unwrap();
                let columns = statement.column_count();
                let mut rows = statement.query([]).unwrap();
                while let Some(row) = rows.next().unwrap() {
                    for i in 0..columns {
                        let value: rusqlite::types::Value = row.get(i).unwrap();
                        out.push_str(&format!("{value:?},"));
                    }
                    out.push('\n');
                }
            }
            Ok(out)
        })
        .unwrap()
}

fn device_by_serial(
    registry: &Registry,
    system_id: i64,
    value: u64,
) -> sunfleet_engine::registry::DeviceRecord {
    registry
        .system_devices(system_id)
        .unwrap()
        .into_iter()
        .find(|d| d.serial == value)
        .unwrap()
}

#[test]
fn a_replacement_takes_the_old_units_place_and_is_provisioned() {
    let f = fleet();
    let registry = &f.registry;
    let micro_1 = device_by_serial(registry, f.ours, MICRO_1);
    assert_eq!(micro_1.gateway_id, Some(f.our_gateway));

    let ids = registry
        .install_replacements(
            f.ours,
            &[
                (serial(MICRO_1), serial(SPARE_1)),
                (serial(BATTERY), serial(SPARE_2)),
            ],
            None,
            1_000,
        )
        .unwrap()
        .unwrap();
    assert_eq!(ids.len(), 2);

    // The old unit is retired, replaced by the new one, and gave up its cell.
    let old = device_by_serial(registry, f.ours, MICRO_1);
    let new = device_by_serial(registry, f.ours, SPARE_1);
    assert_eq!(old.state, "retired");
    assert_eq!(old.retired_us, Some(1_000));
    assert_eq!(old.replaced_by, Some(new.id));
    assert_eq!(old.array_name, None);
    // The new one has its kind, model, phase, cell and gateway; it is to be provisioned.
    assert_eq!(new.kind, "microinverter");
    assert_eq!(new.model, "IQ8PLUS-72-2-US");
    assert_eq!(new.phase.as_deref(), Some("B"));
    assert_eq!(new.array_name.as_deref(), Some("South roof"));
    assert_eq!(new.state, "provisioned");
    assert_eq!(new.gateway_id, Some(f.our_gateway));
    let place: (i64, i64, i64) = registry
        .read(|c| {
            Ok(c.query_row(
                "SELECT array_id, grid_row, grid_column FROM devices WHERE id = ?1",
                [new.id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap())
        })
        .unwrap();
    assert_eq!(place, (f.array, 0, 0));
    let battery = device_by_serial(registry, f.ours, SPARE_2);
    assert_eq!(battery.kind, "battery");
    assert_eq!(battery.capacity_wh, Some(3360.0));
    assert_eq!(
        device_by_serial(registry, f.ours, BATTERY).replaced_by,
        Some(battery.id)
    );

    // Each is a provisioning task for the gateway, naming the unit it replaces.
    let listed = registry.device_replacements(f.ours, 10).unwrap();
    assert_eq!(listed.len(), 2);
    let first = listed.iter().find(|r| r.new_serial == SPARE_1).unwrap();
    assert_eq!(
        (first.old_serial, first.kind.as_str(), first.gateway_serial),
        (MICRO_1, "microinverter", Some(OUR_GATEWAY))
    );
    assert_eq!(first.place, Some(("South roof".to_owned(), 0, 0)));
    let task = first.task.as_ref().unwrap();
    assert_eq!(task.kind, "provision_devices");
    assert_eq!(task.state, TaskProgress::Queued);
    assert_eq!(i64::from(task.gateway.0), f.our_gateway);
    assert_eq!(
        task.parameters,
        format!(r#"{{"replaces":"{MICRO_1:012}","serials":["{SPARE_1:012}"]}}"#)
    );
    // Not a pending provisioning request: the unit is registered already.
    assert!(registry.provisioning_requests(f.ours).unwrap().is_empty());
    let audit = registry
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'device_replaced'",
                [],
                |row| row.get::<_, i64>(0),
            )
            .unwrap())
        })
        .unwrap();
    assert_eq!(audit, 2);

    // The new unit can be replaced in its turn; the retired one cannot.
    assert_eq!(
        registry
            .install_replacement(
                f.ours,
                serial(MICRO_1),
                serial(482_000_000_600),
                None,
                2_000
            )
            .unwrap(),
        Err(ReplacementRefusal::OriginalRetired {
            replaced_by: Some(SPARE_1)
        })
    );
    registry
        .install_replacement(
            f.ours,
            serial(SPARE_1),
            serial(482_000_000_600),
            None,
            2_000,
        )
        .unwrap()
        .unwrap();
    let newest = device_by_serial(registry, f.ours, 482_000_000_600);
    assert_eq!(
        device_by_serial(registry, f.ours, SPARE_1).replaced_by,
        Some(newest.id)
    );
    assert_eq!(newest.array_name.as_deref(), Some("South roof"));
}

#[test]
fn a_refused_replacement_changes_nothing() {
    let f = fleet();
    let registry = &f.registry;
    // A provisioning request stands for one serial.
    let standing = registry
        .request_provisioning(f.ours, f.our_gateway, &[serial(482_000_000_700)], None, 5)
        .unwrap()
        .unwrap();
    let before = snapshot(registry);
    let refused = |original: u64, replacement: u64| {
        registry
            .install_replacement(f.ours, serial(original), serial(replacement), Some(1), 10)
            .unwrap()
            .unwrap_err()
    };
    assert_eq!(
        refused(482_999_999_999, SPARE_1),
        ReplacementRefusal::OriginalUnknown
    );
    assert_eq!(
        refused(THEIR_MICRO, SPARE_1),
        ReplacementRefusal::OriginalElsewhere
    );
    assert_eq!(
        refused(OUR_GATEWAY, SPARE_1),
        ReplacementRefusal::OriginalNotReplaceable {
            kind: "gateway".into()
        }
    );
    assert_eq!(
        refused(METER, SPARE_1),
        ReplacementRefusal::OriginalNotReplaceable {
            kind: "meter".into()
        }
    );
    assert_eq!(refused(MICRO_1, MICRO_1), ReplacementRefusal::SameSerial);
    assert_eq!(
        refused(MICRO_1, MICRO_2),
        ReplacementRefusal::ReplacementRegistered {
            kind: "microinverter".into(),
            in_this_system: true
        }
    );
    assert_eq!(
        refused(MICRO_1, THEIR_MICRO),
        ReplacementRefusal::ReplacementRegistered {
            kind: "microinverter".into(),
            in_this_system: false
        }
    );
    assert_eq!(
        refused(MICRO_1, 482_000_000_700),
        ReplacementRefusal::ReplacementBeingProvisioned {
            task_id: standing,
            in_this_system: true
        }
    );
    // Several pairs: the second is refused, so the first is not made either.
    assert_eq!(
        registry
            .install_replacements(
                f.ours,
                &[
                    (serial(MICRO_1), serial(SPARE_1)),
                    (serial(MICRO_2), serial(SPARE_1)),
                ],
                None,
                10,
            )
            .unwrap(),
        Err((
            1,
            ReplacementRefusal::ReplacementRegistered {
                kind: "microinverter".into(),
                in_this_system: true
            }
        ))
    );
    assert_eq!(snapshot(registry), before, "nothing changed");

    // With its gateway retired and no other in service, there is no one to provision it.
    registry
        .transaction("test", |tx| {
            tx.execute(
                "UPDATE devices SET state = 'retired' WHERE id = ?1",
                [f.our_gateway],
            )
            .unwrap();
            Ok(())
        })
        .unwrap();
    assert_eq!(refused(MICRO_1, SPARE_1), ReplacementRefusal::NoGateway);
}

fn session(gateway: i64, acked_seq: u64) -> GatewaySession {
    GatewaySession {
        gateway: DeviceId(u32::try_from(gateway).unwrap()),
        acked_seq,
        firmware: "D8.3".into(),
        software_version: "8.3.5".into(),
        last_connected_us: 100,
    }
}

#[test]
fn a_gateway_replacement_completes_when_the_new_gateway_reports() {
    let f = fleet();
    let registry = &f.registry;

    // Refusals change nothing.
    let before = snapshot(registry);
    let refused = |gateway: i64, new: u64| {
        registry
            .request_gateway_replacement(f.ours, gateway, serial(new), None, 10)
            .unwrap()
            .unwrap_err()
    };
    assert_eq!(
        refused(999_999, NEW_GATEWAY),
        GatewayReplacementRefusal::NotThisSystemsGateway,
        "an unknown gateway"
    );
    assert_eq!(
        refused(f.their_gateway, NEW_GATEWAY),
        GatewayReplacementRefusal::NotThisSystemsGateway,
        "another system's gateway"
    );
    let micro_2 = device_by_serial(registry, f.ours, MICRO_2).id;
    assert_eq!(
        refused(micro_2, NEW_GATEWAY),
        GatewayReplacementRefusal::NotThisSystemsGateway,
        "not a gateway"
    );
    assert_eq!(
        refused(f.our_gateway, OUR_GATEWAY),
        GatewayReplacementRefusal::SameSerial
    );
    assert_eq!(
        refused(f.our_gateway, THEIR_MICRO),
        GatewayReplacementRefusal::SerialRegistered {
            kind: "microinverter".into(),
            in_this_system: false
        }
    );
    assert_eq!(snapshot(registry), before);

    // A task queued for the old gateway that it will never run.
    let reboot = registry
        .queue_system_task(f.ours, f.our_gateway, "reboot", "{}", None, 15)
        .unwrap()
        .unwrap();
    let replacement = registry
        .request_gateway_replacement(f.ours, f.our_gateway, serial(NEW_GATEWAY), None, 20)
        .unwrap()
        .unwrap();
    assert_eq!(replacement.completed_us, None);
    assert_eq!(
        registry
            .request_gateway_replacement(f.ours, f.our_gateway, serial(121_050_000_002), None, 21)
            .unwrap(),
        Err(GatewayReplacementRefusal::AlreadyPending {
            new_serial: NEW_GATEWAY
        })
    );
    // The new gateway is registered (ingest admits it) with the old one's settings, and is
    // asked to apply the old one's grid profile.
    let info = registry.gateway(serial(NEW_GATEWAY)).unwrap().unwrap();
    assert_eq!(info.system.0 as i64, f.ours);
    assert!(!info.retired);
    let new_gateway = device_by_serial(registry, f.ours, NEW_GATEWAY);
    assert_eq!(new_gateway.id, replacement.new_gateway_id);
    assert_eq!(
        (
            new_gateway.state.as_str(),
            new_gateway.low_bandwidth,
            new_gateway.cell_modem_sku.as_deref(),
            new_gateway.model.as_str()
        ),
        (
            "provisioned",
            true,
            Some("CELLMODEM-M1-06-SP-05"),
            "ENV-S-WM-230"
        )
    );
    let tasks = registry
        .tasks_of(DeviceId(u32::try_from(new_gateway.id).unwrap()), 10)
        .unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(
        (tasks[0].kind.as_str(), tasks[0].parameters.as_str()),
        ("grid_profile", r#"{"profile":"IEEE 1547:2018"}"#)
    );

    // Connecting is not reporting: a session without a batch completes nothing.
    assert!(
        registry
            .save_gateway_sessions_at(&[session(new_gateway.id, 0)], 30)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        registry.gateway_replacements(f.ours).unwrap()[0].completed_us,
        None
    );
    // Its first acknowledged batch does.
    let completed = registry
        .save_gateway_sessions_at(
            &[session(f.our_gateway, 40), session(new_gateway.id, 3)],
            50,
        )
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].completed_us, Some(50));
    assert_eq!(
        completed[0].moved,
        MovedDevices {
            microinverters: 2,
            meters: 1,
            batteries: 1,
            cancelled_tasks: 1
        }
    );
    let old = device_by_serial(registry, f.ours, OUR_GATEWAY);
    assert_eq!(
        (old.state.as_str(), old.retired_us, old.replaced_by),
        ("retired", Some(50), Some(new_gateway.id))
    );
    assert!(
        registry
            .gateway(serial(OUR_GATEWAY))
            .unwrap()
            .unwrap()
            .retired
    );
    let new_gateway = device_by_serial(registry, f.ours, NEW_GATEWAY);
    assert_eq!(
        (new_gateway.state.as_str(), new_gateway.first_report_us),
        ("active", Some(50))
    );
    for record in registry.system_devices(f.ours).unwrap() {
        if record.kind != "gateway" {
            assert_eq!(record.gateway_id, Some(new_gateway.id), "{}", record.serial);
            assert_eq!(
                record.reprovision_since_us,
                (record.kind == "battery").then_some(50),
                "{}",
                record.serial
            );
        }
    }
    assert_eq!(
        device_by_serial(registry, f.theirs, THEIR_MICRO).gateway_id,
        Some(f.their_gateway),
        "another system's devices stay"
    );
    let cancelled = registry.task(reboot).unwrap().unwrap();
    assert_eq!(cancelled.state, TaskProgress::Cancelled);
    assert!(cancelled.result.contains(&format!("{NEW_GATEWAY:012}")));
    // Saved again: already done.
    assert!(
        registry
            .save_gateway_sessions_at(&[session(new_gateway.id, 9)], 60)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        registry
            .request_gateway_replacement(f.ours, f.our_gateway, serial(121_050_000_002), None, 61)
            .unwrap(),
        Err(GatewayReplacementRefusal::GatewayRetired)
    );

    // A replacement of a microinverter now goes through the new gateway.
    registry
        .install_replacement(f.ours, serial(MICRO_2), serial(SPARE_1), None, 70)
        .unwrap()
        .unwrap();
    assert_eq!(
        device_by_serial(registry, f.ours, SPARE_1).gateway_id,
        Some(new_gateway.id)
    );

    // The battery is provisioned again through the new gateway; once that task succeeds
    // its flag clears.
    assert_eq!(
        registry
            .queue_reprovisioning(f.ours, f.our_gateway, None, 80)
            .unwrap(),
        None,
        "the old gateway is retired"
    );
    let (task, serials) = registry
        .queue_reprovisioning(f.ours, new_gateway.id, None, 80)
        .unwrap()
        .unwrap();
    assert_eq!(serials, vec![BATTERY]);
    let gateway_device = DeviceId(u32::try_from(new_gateway.id).unwrap());
    assert!(
        registry
            .record_task_progress(gateway_device, task, TaskReport::Succeeded, "ok", 90)
            .unwrap()
    );
    assert_eq!(
        device_by_serial(registry, f.ours, BATTERY).reprovision_since_us,
        None
    );
    assert_eq!(
        registry
            .queue_reprovisioning(f.ours, new_gateway.id, None, 95)
            .unwrap(),
        None
    );
}

#[test]
fn upgrading_records_the_gateway_of_systems_with_one() {
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
    let single = insert_system(&tx, &system(installer)).unwrap();
    let double = insert_system(&tx, &system(installer)).unwrap();
    for (id, serial, kind, system_id) in [
        (1, 1, "gateway", single),
        (2, 2, "microinverter", single),
        (3, 3, "gateway", double),
        (4, 4, "gateway", double),
        (5, 5, "microinverter", double),
    ] {
        tx.execute(
            "INSERT INTO devices (id, serial, kind, system_id, provisioned_us)
             VALUES (?1, ?2, ?3, ?4, 0)",
            rusqlite::params![id, serial, kind, system_id],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(connection);
    let registry = Registry::open(&path).unwrap();
    let gateway_of = |id: i64| {
        registry
            .read(|c| {
                Ok(c.query_row(
                    "SELECT gateway_id FROM devices WHERE id = ?1",
                    [id],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .unwrap())
            })
            .unwrap()
    };
    assert_eq!(gateway_of(2), Some(1));
    assert_eq!(gateway_of(5), None, "two gateways: not known which");
    assert_eq!(gateway_of(1), None, "a gateway reports through none");
}
