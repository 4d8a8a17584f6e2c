//! Provisioning a microinverter (S4): the request is refused when the gateway or the serial
//! does not fit; once a gateway of the system reports the requested serial it joins the
//! system, even a Ready one, while unrequested newcomers of a Ready system stay out.

use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{
    DeviceDetails, NewDevice, ProvisionRefusal, Registry, TaskProgress, TaskReport, insert_company,
    insert_device, insert_system,
};

use crate::registry::{company, system};

fn serial(value: u64) -> Serial {
    Serial::new(value).unwrap()
}

fn gateway(system_id: i64, value: u64) -> NewDevice {
    NewDevice {
        serial: serial(value),
        system_id,
        model: "ENV-S-WM-230".into(),
        firmware: "D8.2.4345".into(),
        details: DeviceDetails::Gateway {
            cell_modem_sku: None,
            cell_plan_end: None,
            low_bandwidth: false,
            grid_profile: None,
        },
        state: "active",
        provisioned_us: 0,
    }
}

#[test]
fn a_requested_microinverter_joins_a_ready_system_once_reported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path().join("r.sqlite3")).unwrap();
    let installer = registry
        .transaction("test", |tx| insert_company(tx, &company()))
        .unwrap();
    // Two Ready systems, one gateway each, and a microinverter on the second.
    let (ours, theirs) = registry
        .transaction("test", |tx| {
            Ok((
                insert_system(tx, &system(installer))?,
                insert_system(tx, &system(installer))?,
            ))
        })
        .unwrap();
    let (our_gateway, their_gateway) = registry
        .transaction("test", |tx| {
            let ours = insert_device(tx, &gateway(ours, 121_000_000_001))?;
            let theirs = insert_device(tx, &gateway(theirs, 121_000_000_002))?;
            insert_device(
                tx,
                &NewDevice {
                    serial: serial(122_000_000_500),
                    system_id: theirs,
                    model: "CT-200-SPLIT".into(),
                    firmware: String::new(),
                    details: DeviceDetails::Meter {
                        meter_kind: "production",
                    },
                    state: "active",
                    provisioned_us: 0,
                },
            )?;
            Ok((ours, theirs))
        })
        .unwrap();

    // Refusals queue nothing.
    let tasks_before = registry.count("gateway_tasks").unwrap();
    assert_eq!(
        registry
            .request_provisioning(ours, their_gateway, &[serial(122_000_000_900)], None, 1)
            .unwrap(),
        Err(ProvisionRefusal::NotThisSystemsGateway)
    );
    assert_eq!(
        registry
            .request_provisioning(
                ours,
                our_gateway,
                &[serial(122_000_000_901), serial(122_000_000_500)],
                None,
                1
            )
            .unwrap(),
        Err(ProvisionRefusal::SerialRegistered {
            serial: serial(122_000_000_500),
            kind: "meter".into(),
            in_this_system: false
        })
    );
    assert_eq!(
        registry
            .request_provisioning(ours, our_gateway, &[serial(121_000_000_001)], None, 1)
            .unwrap(),
        Err(ProvisionRefusal::SerialRegistered {
            serial: serial(121_000_000_001),
            kind: "gateway".into(),
            in_this_system: true
        })
    );
    assert_eq!(
        registry
            .request_provisioning(
                ours,
                our_gateway,
                &[serial(122_000_000_902), serial(122_000_000_902)],
                None,
                1
            )
            .unwrap(),
        Err(ProvisionRefusal::SerialRepeated {
            serial: serial(122_000_000_902)
        })
    );
    assert_eq!(
        registry
            .request_provisioning(ours, our_gateway, &[], None, 1)
            .unwrap(),
        Err(ProvisionRefusal::NoSerials)
    );
    assert_eq!(registry.count("gateway_tasks").unwrap(), tasks_before);

    // A request: a task in the simulator's format, listed as pending, and a second request
    // for the same serial (from any system) is refused while it stands.
    let new_micro = serial(122_000_000_900);
    let task_id = registry
        .request_provisioning(ours, our_gateway, &[new_micro], None, 10)
        .unwrap()
        .unwrap();
    let task = registry.task(task_id).unwrap().unwrap();
    assert_eq!(task.kind, "provision_devices");
    assert_eq!(task.parameters, r#"{"serials":["122000000900"]}"#);
    assert_eq!(
        registry
            .request_provisioning(theirs, their_gateway, &[new_micro], None, 11)
            .unwrap(),
        Err(ProvisionRefusal::SerialBeingProvisioned {
            serial: new_micro,
            task_id,
            in_this_system: false
        })
    );
    let pending = registry.provisioning_requests(ours).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (
            pending[0].serial,
            pending[0].gateway_serial,
            pending[0].task.id
        ),
        (new_micro.value(), 121_000_000_001, task_id)
    );
    assert!(registry.provisioning_requests(theirs).unwrap().is_empty());

    // The gateway runs it and reports the new unit along with a stranger: only the
    // requested serial joins the Ready system.
    let gateway_device = registry
        .gateway(serial(121_000_000_001))
        .unwrap()
        .unwrap()
        .device;
    registry
        .take_tasks_to_send(gateway_device, false, 20)
        .unwrap();
    assert!(
        registry
            .record_task_progress(gateway_device, task_id, TaskReport::Succeeded, "ok", 30)
            .unwrap()
    );
    assert_eq!(
        registry.task(task_id).unwrap().unwrap().state,
        TaskProgress::Succeeded
    );
    let stranger = serial(122_000_000_901);
    assert_eq!(
        registry
            .register_reported_micros(serial(121_000_000_001), &[stranger, new_micro], 40)
            .unwrap(),
        Some(ours)
    );
    let devices = registry.system_devices(ours).unwrap();
    let serials: Vec<(u64, &str)> = devices
        .iter()
        .map(|d| (d.serial, d.kind.as_str()))
        .collect();
    assert_eq!(
        serials,
        [
            (121_000_000_001, "gateway"),
            (new_micro.value(), "microinverter")
        ]
    );
    let micro = &devices[1];
    assert_eq!(
        (micro.state.as_str(), micro.first_report_us),
        ("active", Some(40))
    );
    assert_eq!(
        registry.system_device(ours, micro.id).unwrap().as_ref(),
        Some(micro)
    );
    assert_eq!(registry.system_device(theirs, micro.id).unwrap(), None);
    assert!(registry.provisioning_requests(ours).unwrap().is_empty());
    // Reported again (or by another system's gateway): nothing more happens.
    assert_eq!(
        registry
            .register_reported_micros(serial(121_000_000_002), &[new_micro, stranger], 50)
            .unwrap(),
        None
    );

    // The gateway's task list, newest first.
    let (lines, total) = registry.gateway_task_page(our_gateway, 10, 0).unwrap();
    assert_eq!(total, 1);
    assert_eq!(lines[0].task.id, task_id);
    assert_eq!(lines[0].created_by, None);
    assert_eq!(
        registry
            .queue_system_task(theirs, our_gateway, "reboot", "{}", None, 60)
            .unwrap(),
        None,
        "a gateway of another system"
    );
    let reboot = registry
        .queue_system_task(ours, our_gateway, "reboot", "{}", None, 60)
        .unwrap()
        .unwrap();
    let (lines, total) = registry.gateway_task_page(our_gateway, 1, 0).unwrap();
    assert_eq!((total, lines[0].task.id), (2, reboot));
}
