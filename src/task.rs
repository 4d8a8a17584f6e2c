//! `sunfleet task`: queue a remote task for a gateway and follow it. A running server
//! delivers it within a second (it polls the registry), or when the gateway next connects.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sunfleet_engine::grid_profiles::{GRID_PROFILES, grid_profile};
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::Registry;
use sunfleet_ingest::frame::TaskKind;

use crate::data::{DEFAULT_DATA_DIR, registry_path};

#[derive(Debug, Args)]
pub struct TaskArgs {
    /// Data folder.
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR, env = "SUNFLEET_DATA")]
    data: PathBuf,
    #[command(subcommand)]
    command: TaskCommand,
}

#[derive(Debug, Subcommand)]
enum TaskCommand {
    /// Queue a task: production_on, production_off, reboot, provision_devices, meter_mode,
    /// grid_profile, check_signal, scan_devices, clear_gfi, reset_dc_resistance.
    Queue {
        /// The gateway's serial number.
        #[arg(long)]
        gateway: String,
        #[arg(long)]
        kind: String,
        /// JSON parameters, e.g. '{"mode":"total"}' for meter_mode,
        /// '{"serials":["000000012345"]}' for provision_devices.
        #[arg(long, default_value = "{}")]
        parameters: String,
    },
    /// A gateway's tasks, newest first.
    List {
        #[arg(long)]
        gateway: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

pub fn run(args: TaskArgs) -> anyhow::Result<ExitCode> {
    let registry = Registry::open(registry_path(&args.data))
        .with_context(|| format!("opening the registry in {}", args.data.display()))?;
    let gateway_of = |serial: &str| -> anyhow::Result<_> {
        let serial: Serial = serial.parse()?;
        let info = registry
            .gateway(serial)?
            .with_context(|| format!("gateway {serial} is not registered"))?;
        Ok((serial, info.device))
    };
    match args.command {
        TaskCommand::Queue {
            gateway,
            kind,
            parameters,
        } => {
            let (serial, device) = gateway_of(&gateway)?;
            let kinds: Vec<&str> = TaskKind::ALL.iter().map(|k| k.name()).collect();
            let kind = TaskKind::from_name(&kind).with_context(|| {
                format!("unknown task kind {kind:?}; one of: {}", kinds.join(", "))
            })?;
            let json = serde_json::from_str::<serde_json::Value>(&parameters)
                .with_context(|| format!("--parameters is not JSON: {parameters}"))?;
            if kind == TaskKind::GridProfile {
                let names: Vec<&str> = GRID_PROFILES.iter().map(|p| p.name).collect();
                let profile = json["profile"].as_str().unwrap_or_default();
                anyhow::ensure!(
                    grid_profile(profile).is_some(),
                    "a grid_profile task needs {{\"profile\": NAME}} with one of: {}",
                    names.join(", ")
                );
            }
            let now = sunfleet_engine::time::now_micros();
            let id = registry.queue_task(device, kind.name(), &parameters, None, now)?;
            println!("task {id} queued: {} for gateway {serial}", kind.name());
        }
        TaskCommand::List { gateway, limit } => {
            let (_, device) = gateway_of(&gateway)?;
            println!("id\tkind\tstate\tparameters\tresult");
            for task in registry.tasks_of(device, limit)? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    task.id,
                    task.kind,
                    task.state.as_str(),
                    task.parameters,
                    task.result
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
