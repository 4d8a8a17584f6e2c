//! What arrived since someone last asked: each device's newest reading time, and which
//! systems got rows (with the earliest reading time among them). The fleet checks take it
//! each round ([`crate::store::Store::take_changes`]) to re-judge only what new data can
//! change, instead of scanning the fleet's recent readings every time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::directory::{DeviceRef, UNKNOWN_DEVICE};
use crate::ids::{DeviceId, Serial, SystemId};
use crate::telemetry::TelemetryBatch;

/// A device's newest reading time, with its system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLatest {
    pub system: SystemId,
    pub time_us: i64,
}

/// What a system received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemChange {
    /// The earliest reading or event time among the new rows: late data shows here.
    pub earliest_us: i64,
    pub readings: bool,
    pub meter_readings: bool,
    pub battery_readings: bool,
    pub device_events: bool,
}

/// Devices a gateway reported that the directory does not know yet: a new site's
/// microinverters, or a unit added since. Activation registers them under the gateway's
/// system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnregisteredDevices {
    pub micros: BTreeSet<Serial>,
    pub meters: BTreeSet<Serial>,
    pub batteries: BTreeSet<Serial>,
}

impl UnregisteredDevices {
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty() && self.meters.is_empty() && self.batteries.is_empty()
    }
}

/// What rows applied to the write buffer brought, since the store last handed it over.
/// Serials the directory does not know belong to no system: they are listed under the
/// gateway that sent them, in `unregistered`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Newest microinverter reading time per device.
    pub micro: HashMap<DeviceId, DeviceLatest>,
    pub meters: HashMap<DeviceId, DeviceLatest>,
    pub batteries: HashMap<DeviceId, DeviceLatest>,
    pub systems: HashMap<SystemId, SystemChange>,
    /// Gateway serial → the unknown devices it reported.
    pub unregistered: BTreeMap<Serial, UnregisteredDevices>,
}

#[derive(Clone, Copy)]
enum Kind {
    Micro,
    Meter,
    Battery,
    Event,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty() && self.unregistered.is_empty()
    }

    /// Notes one batch; `devices` resolves serials as the write buffer did.
    pub fn observe(&mut self, batch: &TelemetryBatch, devices: &HashMap<Serial, DeviceRef>) {
        // A gateway's batch repeats the same few serials: resolve each run once.
        let mut last: Option<(Serial, DeviceRef)> = None;
        let mut resolve = |serial: Serial| match last {
            Some((known, device)) if known == serial => device,
            _ => {
                let device = devices.get(&serial).copied().unwrap_or(UNKNOWN_DEVICE);
                last = Some((serial, device));
                device
            }
        };
        let micro = &batch.micro;
        let gateway = batch.gateway;
        for (serial, time_us) in micro.serial.iter().zip(&micro.time_us) {
            let device = resolve(*serial);
            self.note(gateway, Kind::Micro, *serial, device, *time_us);
        }
        for reading in &batch.meters {
            let device = resolve(reading.serial);
            self.note(
                gateway,
                Kind::Meter,
                reading.serial,
                device,
                reading.time_us,
            );
        }
        for reading in &batch.batteries {
            let device = resolve(reading.serial);
            self.note(
                gateway,
                Kind::Battery,
                reading.serial,
                device,
                reading.time_us,
            );
        }
        for event in &batch.events {
            let device = resolve(event.serial);
            self.note(gateway, Kind::Event, event.serial, device, event.time_us);
        }
    }

    fn note(
        &mut self,
        gateway: Serial,
        kind: Kind,
        serial: Serial,
        device: DeviceRef,
        time_us: i64,
    ) {
        if device == UNKNOWN_DEVICE {
            let unregistered = self.unregistered.entry(gateway).or_default();
            match kind {
                Kind::Micro => unregistered.micros.insert(serial),
                Kind::Meter => unregistered.meters.insert(serial),
                Kind::Battery => unregistered.batteries.insert(serial),
                // An event names a device that also reports readings.
                Kind::Event => false,
            };
            return;
        }
        let latest = match kind {
            Kind::Micro => Some(&mut self.micro),
            Kind::Meter => Some(&mut self.meters),
            Kind::Battery => Some(&mut self.batteries),
            Kind::Event => None,
        };
        if let Some(latest) = latest {
            latest
                .entry(device.device)
                .and_modify(|l| l.time_us = l.time_us.max(time_us))
                .or_insert(DeviceLatest {
                    system: device.system,
                    time_us,
                });
        }
        let change = self.systems.entry(device.system).or_insert(SystemChange {
            earliest_us: time_us,
            readings: false,
            meter_readings: false,
            battery_readings: false,
            device_events: false,
        });
        change.earliest_us = change.earliest_us.min(time_us);
        match kind {
            Kind::Micro => change.readings = true,
            Kind::Meter => change.meter_readings = true,
            Kind::Battery => change.battery_readings = true,
            Kind::Event => change.device_events = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::BatchSeq;
    use crate::telemetry::{DeviceEvent, EventKind, EventState, MicroReading};

    fn serial(n: u64) -> Serial {
        Serial::new(n).unwrap()
    }

    #[test]
    fn newest_time_per_device_and_earliest_per_system() {
        let devices: HashMap<Serial, DeviceRef> = [
            (
                serial(11),
                DeviceRef {
                    system: SystemId(1),
                    device: DeviceId(101),
                },
            ),
            (
                serial(12),
                DeviceRef {
                    system: SystemId(1),
                    device: DeviceId(102),
                },
            ),
        ]
        .into();
        let mut batch = TelemetryBatch::new(serial(1), BatchSeq(1), 0);
        for (s, t) in [(11, 300), (11, 100), (12, 200), (99, 50)] {
            batch.micro.push(MicroReading {
                serial: serial(s),
                time_us: t,
                interval_s: 300,
                energy_j: 0,
                ac_power_w: 0,
                dc_voltage_mv: 0,
                dc_current_ma: 0,
                ac_voltage_mv: 0,
                ac_frequency_mhz: 0,
                temperature_c: 0,
                status: 0,
            });
        }
        batch.events.push(DeviceEvent {
            serial: serial(12),
            time_us: 80,
            kind: EventKind::GfiTripped,
            state: EventState::Raised,
        });
        let mut changes = Changes::default();
        changes.observe(&batch, &devices);
        assert_eq!(changes.micro[&DeviceId(101)].time_us, 300);
        assert_eq!(changes.micro[&DeviceId(102)].time_us, 200);
        assert_eq!(
            changes.micro.len(),
            2,
            "the unknown serial belongs to no system"
        );
        let system = changes.systems[&SystemId(1)];
        assert_eq!(system.earliest_us, 80);
        assert!(system.readings && system.device_events && !system.meter_readings);
        assert_eq!(changes.systems.len(), 1);
        let unregistered = &changes.unregistered[&serial(1)];
        assert_eq!(
            unregistered.micros.iter().copied().collect::<Vec<_>>(),
            vec![serial(99)],
            "the unknown serial is listed under the gateway that sent it"
        );
        assert!(unregistered.meters.is_empty() && unregistered.batteries.is_empty());
    }
}
