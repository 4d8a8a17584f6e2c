//! Integration tests of the engine: real files in temporary folders.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod codec;
mod crash;
mod interop;
mod io_errors;
mod registry;
mod store;
mod store_crash;
mod wal;

use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};

/// Real batches from the fleet generator (a few systems, one June day).
pub fn sample_batches(systems: u32) -> Vec<TelemetryBatch> {
    let fleet = Fleet::new(FleetConfig::new(
        5,
        systems,
        CivilDate::from_ymd(2026, 6, 1).unwrap(),
        1,
    ));
    let mut batches = Vec::new();
    for spec in fleet.systems() {
        stream_system(&fleet, spec, |u| batches.push((*u.batch).clone()));
    }
    batches
}
