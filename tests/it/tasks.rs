//! Every gateway task, end to end in process: queued in the registry, delivered over QUIC
//! by the ingest server to a simulated gateway, run there, reported back, and visible in
//! what the gateway reports afterwards.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{
    Int32Type, TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use sunfleet::simulator::{Control, Simulator, SimulatorConfig, demo_fleet};
use sunfleet_engine::directory::{DeviceDirectory, DeviceRef};
use sunfleet_engine::ids::{DeviceId, Serial};
use sunfleet_engine::registry::{Registry, TaskProgress};
use sunfleet_engine::store::{ReadRequest, Store, StoreConfig};
use sunfleet_engine::tables::Table;
use sunfleet_engine::telemetry::{ConsumptionMeterMode, EventKind, micro_status};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::world::SystemSpec;
use sunfleet_ingest::server::{IngestConfig, IngestServer};
use sunfleet_ingest::tls::{FleetCa, ServerIdentity};

const WAIT: Duration = Duration::from_secs(60);

struct Stack {
    _dir: tempfile::TempDir,
    registry: Arc<Registry>,
    directory: DeviceDirectory,
    store: Arc<Store>,
    server: IngestServer,
    simulator: Simulator,
    spec: SystemSpec,
    gateway: DeviceId,
}

async fn wait_until<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn day() -> CivilDate {
    CivilDate::from_ymd(2026, 6, 1).unwrap()
}

impl Stack {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fleet = demo_fleet(3, 40);
        // A healthy system reporting every five minutes with a consumption meter, a battery
        // and at least three microinverters.
        let faulty: std::collections::HashSet<_> = sunfleet_fixtures::faults::ground_truth(&fleet)
            .into_iter()
            .map(|fault| fault.system)
            .collect();
        let spec = fleet
            .systems()
            .find(|s| {
                s.consumption_meter.is_some()
                    && !s.batteries.is_empty()
                    && s.micros.len() >= 3
                    && !s.gateway.low_bandwidth
                    && !faulty.contains(&s.id)
            })
            .expect("the demo fleet has a healthy system with a consumption meter and a battery");
        let registry = Arc::new(Registry::open(dir.path().join("registry.sqlite3")).unwrap());
        sunfleet_fixtures::seed::seed_registry(&registry, &fleet).unwrap();
        let directory = DeviceDirectory::new();
        registry.load_directory(&directory).unwrap();
        let store = Arc::new(
            Store::open(StoreConfig::for_tests(dir.path()), directory.clone())
                .await
                .unwrap(),
        );
        let ca = Arc::new(FleetCa::generate("test CA").unwrap());
        let identity = ServerIdentity {
            ca_pem: ca.cert_pem().to_owned(),
            server: ca.issue_server(&["localhost".into()]).unwrap(),
        };
        let mut config = IngestConfig::new("127.0.0.1:0".parse().unwrap());
        config.task_poll_interval = Duration::from_millis(100);
        let server =
            IngestServer::start(config, &identity, Arc::clone(&store), Arc::clone(&registry))
                .await
                .unwrap();
        // Start at the site's late morning, ten simulated minutes per wall-clock second.
        let solar_noon_h = 12.0 - spec.longitude / 15.0;
        let mut sim = SimulatorConfig::new(Arc::new(fleet), server.local_addr().unwrap(), ca);
        sim.speed = 600.0;
        sim.tick = Duration::from_millis(50);
        sim.reboot_pause = Duration::from_millis(200);
        sim.start_us = day().start_micros() + ((solar_noon_h - 2.0) * 3.6e9) as i64;
        let simulator = Simulator::start(sim).await.unwrap();
        let gateway = registry
            .gateway(spec.gateway.serial)
            .unwrap()
            .unwrap()
            .device;
        Self {
            _dir: dir,
            registry,
            directory,
            store,
            server,
            simulator,
            spec,
            gateway,
        }
    }

    async fn rows(&self, table: Table) -> RecordBatch {
        let mut request = ReadRequest::days(table, day(), day().add_days(1));
        let mut systems = roaring::RoaringBitmap::new();
        systems.insert(self.spec.id.0);
        request.systems = Some(systems);
        self.store.read(&request).await.unwrap()
    }

    /// The rows of `table` for this system and the index of `serial`'s newest row after
    /// `after_us`.
    async fn newest_row(
        &self,
        table: Table,
        serial: Serial,
        after_us: i64,
    ) -> Option<(RecordBatch, usize)> {
        let rows = self.rows(table).await;
        let serials = rows
            .column_by_name("serial")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let times = rows
            .column_by_name("time")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>();
        let newest = (0..rows.num_rows())
            .filter(|&i| serials.value(i) == serial.value() && times.value(i) > after_us)
            .max_by_key(|&i| times.value(i))?;
        Some((rows, newest))
    }

    /// The newest microinverter reading of `serial` after `after_us`: (energy_j, status).
    async fn reading_after(&self, serial: Serial, after_us: i64) -> Option<(u32, u16)> {
        let (rows, i) = self.newest_row(Table::Readings, serial, after_us).await?;
        let energy = rows
            .column_by_name("energy_j")
            .unwrap()
            .as_primitive::<UInt32Type>();
        let status = rows
            .column_by_name("status")
            .unwrap()
            .as_primitive::<UInt16Type>();
        Some((energy.value(i), status.value(i)))
    }

    /// The newest battery reading of `serial` after `after_us`: its power (W).
    async fn battery_power_after(&self, serial: Serial, after_us: i64) -> Option<i32> {
        let (rows, i) = self
            .newest_row(Table::BatteryReadings, serial, after_us)
            .await?;
        let power = rows
            .column_by_name("power_w")
            .unwrap()
            .as_primitive::<Int32Type>();
        Some(power.value(i))
    }

    /// The newest meter reading's `meter_kind` after `after_us`.
    async fn meter_kind_after(&self, serial: Serial, after_us: i64) -> Option<u8> {
        let (rows, i) = self
            .newest_row(Table::MeterReadings, serial, after_us)
            .await?;
        let kinds = rows
            .column_by_name("meter_kind")
            .unwrap()
            .as_primitive::<UInt8Type>();
        Some(kinds.value(i))
    }

    /// Whether a cleared event of `kind` was stored for `serial`.
    async fn cleared_event(&self, serial: Serial, kind: EventKind) -> bool {
        let rows = self.rows(Table::DeviceEvents).await;
        let serials = rows
            .column_by_name("serial")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let numbers = rows
            .column_by_name("event_number")
            .unwrap()
            .as_primitive::<UInt16Type>();
        let raised = rows.column_by_name("raised").unwrap().as_boolean();
        (0..rows.num_rows()).any(|i| {
            serials.value(i) == serial.value()
                && numbers.value(i) == kind.number()
                && !raised.value(i)
        })
    }

    /// Queues a task, waits for its success; returns its result and the simulated time by
    /// which it had certainly run.
    async fn run(&self, kind: &str, parameters: &str) -> (String, i64) {
        let id = self
            .registry
            .queue_task(self.gateway, kind, parameters, None, 1)
            .unwrap();
        self.server.notify_tasks();
        let task = wait_until(&format!("task {kind}"), async || {
            let task = self.registry.task(id).unwrap().unwrap();
            task.state.is_finished().then_some(task)
        })
        .await;
        assert_eq!(
            task.state,
            TaskProgress::Succeeded,
            "{kind}: {}",
            task.result
        );
        assert!(task.sent_us.is_some() && task.started_us.is_some() && task.finished_us.is_some());
        (task.result, self.simulator.progress().sim_now_us)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_goes_round_trip_and_changes_what_the_gateway_reports() {
    let stack = Stack::start().await;
    let spec = stack.spec.clone();
    let (gfi_micro, dc_micro, other_micro) = (
        spec.micros[0].serial,
        spec.micros[1].serial,
        spec.micros[2].serial,
    );
    let gateway_serial = spec.gateway.serial;
    stack
        .simulator
        .control(
            gateway_serial,
            Control::Latch {
                micro: gfi_micro,
                status: micro_status::GFI_TRIPPED,
            },
        )
        .await
        .unwrap();
    stack
        .simulator
        .control(
            gateway_serial,
            Control::Latch {
                micro: dc_micro,
                status: micro_status::DC_RESISTANCE_LOW,
            },
        )
        .await
        .unwrap();
    let now = stack.simulator.progress().sim_now_us;
    let (energy, status) = wait_until("a reading of the tripped microinverter", async || {
        stack.reading_after(gfi_micro, now).await
    })
    .await;
    assert_eq!((energy, status), (0, micro_status::GFI_TRIPPED));

    // Production off: every microinverter reports zero, stopped by command.
    let (_, done) = stack.run("production_off", "{}").await;
    let (energy, status) = wait_until("a reading after production off", async || {
        stack.reading_after(other_micro, done).await
    })
    .await;
    assert_eq!(energy, 0);
    assert_ne!(
        status & micro_status::POWER_OFF_BY_COMMAND,
        0,
        "{status:#x}"
    );
    // ... and the battery neither charges nor discharges.
    let battery = spec.batteries[0].serial;
    let power = wait_until("a battery reading after production off", async || {
        stack.battery_power_after(battery, done).await
    })
    .await;
    assert_eq!(power, 0);

    // Production on: it produces again.
    let (_, done) = stack.run("production_on", "{}").await;
    let (energy, status) = wait_until("a reading after production on", async || {
        stack.reading_after(other_micro, done).await
    })
    .await;
    assert!(
        energy > 0 && status & micro_status::PRODUCING != 0,
        "{energy} {status:#x}"
    );

    // Clear GFI and reset the DC-resistance sensor: the condition ends and production resumes.
    for (kind, micro, event) in [
        ("clear_gfi", gfi_micro, EventKind::GfiTripped),
        ("reset_dc_resistance", dc_micro, EventKind::DcResistanceLow),
    ] {
        let (result, done) = stack.run(kind, "{}").await;
        assert!(result.contains("on 1 microinverter"), "{kind}: {result}");
        let (energy, status) = wait_until(&format!("a reading after {kind}"), async || {
            stack.reading_after(micro, done).await
        })
        .await;
        assert!(
            energy > 0 && status & micro_status::PRODUCING != 0,
            "{kind}: {status:#x}"
        );
        wait_until(&format!("the cleared {event:?} event"), async || {
            stack.cleared_event(micro, event).await.then_some(())
        })
        .await;
    }

    // Consumption meter mode: the meter reports in the other mode.
    let (meter, mode) = spec.consumption_meter.clone().unwrap();
    let (target, number) = match mode {
        ConsumptionMeterMode::Net => ("total", 2),
        ConsumptionMeterMode::Total => ("net", 1),
    };
    let (_, done) = stack
        .run("meter_mode", &format!(r#"{{"mode":"{target}"}}"#))
        .await;
    let kind = wait_until("a meter reading after the mode change", async || {
        stack.meter_kind_after(meter.serial, done).await
    })
    .await;
    assert_eq!(kind, number);
    let registered = stack
        .registry
        .system_devices(i64::from(spec.id.0))
        .unwrap()
        .into_iter()
        .find(|d| d.serial == meter.serial.value())
        .unwrap();
    assert_eq!(
        registered.meter_kind.as_deref(),
        Some(format!("consumption_{target}").as_str()),
        "the registry keeps the mode the meter now measures in"
    );

    // Provision a new microinverter (registered as the portal would): it starts reporting.
    let new_serial = Serial::new(spec.micros[0].serial.value() + 900_000).unwrap();
    let new_device = DeviceId(4_000_000);
    stack.directory.insert(
        new_serial,
        DeviceRef {
            system: spec.id,
            device: new_device,
        },
    );
    let (result, done) = stack
        .run(
            "provision_devices",
            &format!(r#"{{"serials":["{new_serial}"]}}"#),
        )
        .await;
    assert!(result.contains(&new_serial.to_string()), "{result}");
    let (energy, _) = wait_until("a reading of the provisioned microinverter", async || {
        stack.reading_after(new_serial, done).await
    })
    .await;
    assert!(energy > 0);

    // Reboot: the gateway drops its connection and comes back.
    let before = stack.server.stats().accepted_connections;
    stack.run("reboot", "{}").await;
    wait_until("the gateway to reconnect after its reboot", async || {
        (stack.server.stats().accepted_connections > before
            && stack.simulator.progress().connected == stack.simulator.progress().gateways)
            .then_some(())
    })
    .await;
    let after_reboot = stack.simulator.progress().sim_now_us;
    wait_until("readings after the reboot", async || {
        stack.reading_after(other_micro, after_reboot).await
    })
    .await;
    // The gateway back from its reboot reports the power-on reset, which records it.
    wait_until("the gateway's power-on reset event", async || {
        stack
            .cleared_event(gateway_serial, EventKind::PowerOnReset)
            .await
            .then_some(())
    })
    .await;

    // Tasks whose report is the answer itself.
    let (result, _) = stack
        .run("grid_profile", r#"{"profile":"IEEE 1547-2018"}"#)
        .await;
    assert!(result.contains("IEEE 1547-2018"), "{result}");
    assert_eq!(
        stack
            .registry
            .gateway_grid_profile(stack.gateway.0 as i64)
            .unwrap()
            .as_deref(),
        Some("IEEE 1547-2018"),
        "the registry keeps the profile the gateway applied"
    );
    let (result, _) = stack.run("check_signal", "{}").await;
    assert!(result.contains("dBm"), "{result}");
    let (result, _) = stack.run("scan_devices", "{}").await;
    assert!(
        result.contains(&format!("{} microinverter", spec.micros.len() + 1)),
        "{result}"
    );

    // A task the gateway cannot run fails with its reason.
    let id = stack
        .registry
        .queue_task(
            stack.gateway,
            "meter_mode",
            r#"{"mode":"sideways"}"#,
            None,
            1,
        )
        .unwrap();
    stack.server.notify_tasks();
    let failed = wait_until("the bad task to fail", async || {
        let task = stack.registry.task(id).unwrap().unwrap();
        task.state.is_finished().then_some(task)
    })
    .await;
    assert_eq!(failed.state, TaskProgress::Failed);
    assert!(failed.result.contains("sideways"), "{}", failed.result);

    // Revoked (a stolen unit): its open connection closes, it is refused from then on, and
    // a task still queued for it is cancelled.
    let queued = stack
        .registry
        .queue_task(stack.gateway, "check_signal", "{}", None, 1)
        .unwrap();
    let refused_before = stack.simulator.progress().refused;
    stack
        .registry
        .revoke_gateway(
            spec.gateway.serial,
            None,
            sunfleet_engine::time::now_micros(),
        )
        .unwrap();
    wait_until("the revoked gateway to be refused", async || {
        (stack.simulator.progress().refused > refused_before).then_some(())
    })
    .await;
    let task = stack.registry.task(queued).unwrap().unwrap();
    assert!(
        matches!(
            task.state,
            TaskProgress::Cancelled | TaskProgress::Succeeded
        ),
        "{task:?}"
    );
    assert!(
        stack
            .registry
            .revoke_gateway(spec.gateway.serial, None, 2)
            .is_err(),
        "a revoked gateway cannot be revoked again"
    );

    let totals = stack.simulator.stop(Duration::from_secs(20)).await;
    stack.server.shutdown().await.unwrap();
    assert!(totals.refused >= 1, "{totals:?}");
}
