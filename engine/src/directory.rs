//! Serial number → (system, device) lookups for the write path, and each system's time
//! zone for site-local rollups, held in memory.
//!
//! The registry is the source of truth; it fills this directory at start and on every
//! change, so ingest and the write buffer resolve a serial without touching SQLite.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use jiff::tz::TimeZone;

use crate::Error;
use crate::ids::{DeviceId, Serial, SystemId};

/// Where a device belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRef {
    pub system: SystemId,
    pub device: DeviceId,
}

/// Readings from a serial the directory does not know are still stored (nothing is
/// dropped), under this placeholder, with their serial.
pub const UNKNOWN_DEVICE: DeviceRef = DeviceRef {
    system: SystemId(0),
    device: DeviceId(0),
};

/// Shared, cheaply cloned handle to the serial → device map and the systems' time zones.
#[derive(Debug, Clone, Default)]
pub struct DeviceDirectory {
    map: Arc<RwLock<HashMap<Serial, DeviceRef>>>,
    zones: Arc<RwLock<HashMap<SystemId, TimeZone>>>,
}

impl DeviceDirectory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, serial: Serial, device: DeviceRef) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(serial, device);
    }

    pub fn remove(&self, serial: Serial) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&serial);
    }

    pub fn get(&self, serial: Serial) -> Option<DeviceRef> {
        self.read(|map| map.get(&serial).copied())
    }

    pub fn len(&self) -> usize {
        self.read(HashMap::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets a system's time zone from its IANA name ("Europe/Paris").
    pub fn set_time_zone(&self, system: SystemId, name: &str) -> Result<(), Error> {
        let zone = TimeZone::get(name).map_err(|e| Error::UnknownTimeZone {
            name: name.to_owned(),
            reason: e.to_string(),
        })?;
        self.zones
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(system, zone);
        Ok(())
    }

    /// Whether the registry has this system (every registered system has a time zone).
    pub fn knows_system(&self, system: SystemId) -> bool {
        self.zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&system)
    }

    /// A system's time zone; UTC when none is known.
    pub fn time_zone(&self, system: SystemId) -> TimeZone {
        self.zones
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&system)
            .cloned()
            .unwrap_or(TimeZone::UTC)
    }

    /// Runs `f` under one read lock (for resolving a whole batch at once).
    pub fn read<T>(&self, f: impl FnOnce(&HashMap<Serial, DeviceRef>) -> T) -> T {
        f(&self.map.read().unwrap_or_else(PoisonError::into_inner))
    }
}
