//! Integration tests of the engine: real files in temporary folders.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod codec;
mod crash;
mod damage;
mod interop;
mod io_errors;
mod manifest;
mod provisioning;
mod registry;
mod replacements;
mod returns;
mod store;
mod store_crash;
mod system_settings;
mod wal;
mod wal_damage;

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

/// This test binary re-run on the ignored test `test` (a child process for the crash and
/// fault tests), with `dir_var` naming its folder and the failpoint `name:hit` armed or none.
pub fn child_process(
    test: &str,
    dir_var: &str,
    dir: &std::path::Path,
    failpoint: Option<String>,
) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", test, "--ignored", "--nocapture"])
        .env(dir_var, dir)
        .env_remove(sunfleet_engine::failpoint::ENV);
    if let Some(failpoint) = failpoint {
        command.env(sunfleet_engine::failpoint::ENV, failpoint);
    }
    command
}
