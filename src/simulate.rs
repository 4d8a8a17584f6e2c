//! `sunfleet simulate`: the fixtures fleet, counted and checksummed (`--dry-run`), or
//! streamed to a server over QUIC.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::faults::{Fault, ground_truth};
use sunfleet_fixtures::{Fleet, FleetConfig, dry_run};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of systems (sites) in the fleet.
    #[arg(long, default_value_t = 100, env = "SUNFLEET_SYSTEMS")]
    systems: u32,
    /// Days of telemetry to generate (dry run).
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Seed of the generated world and telemetry.
    #[arg(long, default_value_t = 1, env = "SUNFLEET_SEED")]
    seed: u64,
    /// First UTC day of the window (dry run), YYYY-MM-DD.
    #[arg(long, default_value = "2026-06-01")]
    start: String,
    /// Time acceleration for the live simulator (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// QUIC address of the server to stream to.
    #[arg(long, default_value = "127.0.0.1:4433")]
    addr: String,
    /// Generate the stream without sending it; print its counts and checksum.
    #[arg(long)]
    dry_run: bool,
    /// Print the ground truth: which systems carry which injected faults (with --dry-run).
    #[arg(long)]
    list_faults: bool,
}

/// The generator's limit on fleet size (serial number blocks).
const MAX_SYSTEMS: u32 = 10_000_000;

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    if !args.dry_run {
        eprintln!(
            "sunfleet simulate: streaming to a server over QUIC ({}, speed {}) is not built yet \
             (tracked in issue #4); nothing was sent. Use --dry-run to generate the stream locally.",
            args.addr, args.speed
        );
        return Ok(ExitCode::from(crate::EXIT_NOT_BUILT));
    }
    anyhow::ensure!(
        (1..=MAX_SYSTEMS).contains(&args.systems),
        "--systems must be between 1 and {MAX_SYSTEMS}, got {}",
        args.systems
    );
    anyhow::ensure!(
        (1..=3_660).contains(&args.days),
        "--days must be between 1 and 3660, got {}",
        args.days
    );
    let start: CivilDate = args
        .start
        .parse()
        .with_context(|| format!("--start {:?}", args.start))?;
    let fleet = Fleet::new(FleetConfig::new(args.seed, args.systems, start, args.days));

    let mut out = std::io::stdout().lock();
    if args.list_faults {
        writeln!(out, "system\tfault\tdetail")?;
        for truth in ground_truth(&fleet) {
            writeln!(
                out,
                "{}\t{}\t{}",
                truth.system.0,
                truth.fault.name(),
                describe(&truth.fault)
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }

    let began = Instant::now();
    let stats = dry_run(&fleet);
    let elapsed = began.elapsed();
    let end = start.add_days(args.days as i32);
    writeln!(
        out,
        "fleet: seed {} · {} systems · {} day(s) from {start} to {end} (UTC)",
        args.seed, args.systems, args.days
    )?;
    let rows: [(&str, u64); 15] = [
        ("systems", stats.systems),
        ("reporting systems", stats.reporting_systems),
        ("microinverters", stats.microinverters),
        ("meters", stats.meters),
        ("batteries", stats.batteries),
        ("injected faults", stats.faults),
        ("uploads", stats.uploads),
        ("  live", stats.live_uploads),
        ("  backfill", stats.backfill_uploads),
        ("  duplicate", stats.duplicate_uploads),
        ("  out of order", stats.out_of_order_uploads),
        ("microinverter readings", stats.micro_readings),
        ("meter readings", stats.meter_readings),
        ("battery readings", stats.battery_readings),
        ("device events", stats.events),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<24}{value:>14}")?;
    }
    writeln!(
        out,
        "{:<24}{:>14}",
        "checksum",
        format!("{:016x}", stats.checksum)
    )?;
    // Timing varies from run to run, so it goes to stderr and the stdout stays comparable.
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "generated {} readings in {secs:.2} s ({:.0} readings/s on {} threads)",
        stats.readings(),
        stats.readings() as f64 / secs.max(1e-9),
        rayon::current_num_threads()
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(fault: &Fault) -> String {
    let time = |us: i64| format_time(us);
    match fault {
        Fault::MicroNotReporting { micros, from_us } => format!(
            "{} microinverter(s) silent from {}: {}",
            micros.len(),
            time(*from_us),
            micros
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Fault::GatewayOffline { from_us, until_us } => match until_us {
            Some(until) => format!(
                "offline {} to {}, then backfills",
                time(*from_us),
                time(*until)
            ),
            None => format!("offline from {} for good", time(*from_us)),
        },
        Fault::MeterReversedClamp { meter } => format!("consumption meter {meter} clamps reversed"),
        Fault::MeterNotReporting { meter, from_us } => {
            format!("meter {meter} silent from {}", time(*from_us))
        }
        Fault::UnderProduction {
            cause,
            micros,
            factor,
            from_us,
        } => format!(
            "{cause:?}: {} microinverter(s) at {:.0} % since {}",
            micros.len(),
            factor * 100.0,
            time(*from_us)
        ),
        Fault::GridOutOfRange {
            event,
            from_us,
            until_us,
        } => format!(
            "{} from {} to {}",
            event.code(),
            time(*from_us),
            time(*until_us)
        ),
    }
}

fn format_time(us: i64) -> String {
    let date = CivilDate::of_timestamp(us);
    let seconds = (us - date.start_micros()) / 1_000_000;
    format!(
        "{date}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}
