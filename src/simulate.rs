//! `sunfleet simulate`: the fixtures fleet, counted and checksummed (`--dry-run`), or
//! streamed to a server over QUIC.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sunfleet_ingest::tls::FleetCa;

use crate::data::DEFAULT_DATA_DIR;
use crate::simulator::{Progress, Simulator, SimulatorConfig, demo_fleet};
use sunfleet_engine::ids::Serial;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::faults::{Fault, ground_truth};
use sunfleet_fixtures::world::devices::NEW_SITE_MAX_MICROS;
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
    #[arg(long, default_value = "127.0.0.1:4433", env = "SUNFLEET_QUIC")]
    addr: SocketAddr,
    /// Simulated start time of the live run, `YYYY-MM-DDTHH:MM` UTC (default: now).
    #[arg(long)]
    at: Option<String>,
    /// Stop after this many wall-clock seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Data folder whose fleet CA signs the simulated gateways' certificates.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SUNFLEET_DATA")]
    data: PathBuf,
    /// The TLS folder itself (default: `<data>/tls`).
    #[arg(long)]
    tls: Option<PathBuf>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 2.0)]
    progress_every: f64,
    /// Generate the stream without sending it; print its counts and checksum.
    #[arg(long)]
    dry_run: bool,
    /// Print the ground truth: which systems carry which injected faults (with --dry-run).
    #[arg(long)]
    list_faults: bool,
    /// Play only the gateway with this serial, of a site entered in the portal's
    /// activation form (instead of the demo fleet): its microinverters report as new
    /// devices.
    #[arg(long, value_name = "GATEWAY_SERIAL")]
    site: Option<String>,
    /// Microinverters of the `--site` (1 to 64).
    #[arg(long, default_value_t = 12, requires = "site")]
    micros: u32,
    /// Latitude of the `--site` (where its sun is).
    #[arg(
        long,
        default_value_t = 48.85,
        requires = "site",
        allow_negative_numbers = true
    )]
    latitude: f64,
    /// Longitude of the `--site` (negative west of Greenwich).
    #[arg(
        long,
        default_value_t = 2.35,
        requires = "site",
        allow_negative_numbers = true
    )]
    longitude: f64,
    /// Read commands from standard input while the live run goes on, one a line:
    /// `replace-gateway <old serial> <new serial>` swaps a site's gateway for a new one (the
    /// installer's part of a gateway replacement).
    #[arg(long)]
    commands: bool,
}

/// What an operator may do to the running simulation (`--commands`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    ReplaceGateway { old: Serial, new: Serial },
}

fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["replace-gateway", old, new] => {
            let serial = |text: &str| text.parse::<Serial>().map_err(|e| format!("{text:?}: {e}"));
            Ok(Command::ReplaceGateway {
                old: serial(old)?,
                new: serial(new)?,
            })
        }
        _ => Err(format!(
            "{line:?}: the command is `replace-gateway <old serial> <new serial>`"
        )),
    }
}

/// Reads commands from standard input on a thread of its own (reading blocks); ends with
/// the input.
fn read_commands() -> tokio::sync::mpsc::UnboundedReceiver<Result<Command, String>> {
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if line.trim().is_empty() {
                continue;
            }
            if sender.send(parse_command(&line)).is_err() {
                return;
            }
        }
    });
    receiver
}

/// The generator's limit on fleet size (serial number blocks).
const MAX_SYSTEMS: u32 = 10_000_000;

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=MAX_SYSTEMS).contains(&args.systems),
        "--systems must be between 1 and {MAX_SYSTEMS}, got {}",
        args.systems
    );
    if !args.dry_run {
        return live(args);
    }
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

/// Streams the demo fleet to a server over QUIC until `--duration` or Ctrl-C.
fn live(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.speed > 0.0 && args.speed <= 1_000_000.0,
        "--speed must be above 0 and at most 1000000, got {}",
        args.speed
    );
    let tls_dir = args
        .tls
        .clone()
        .unwrap_or_else(|| crate::cert::tls_dir(&args.data));
    let ca = FleetCa::load(&tls_dir).with_context(|| {
        format!(
            "the simulator signs its gateways' certificates with the fleet CA in {}; start \
             `sunfleet serve` on that data folder once (or run `sunfleet cert ca`)",
            tls_dir.display()
        )
    })?;
    let fleet = Arc::new(demo_fleet(args.seed, args.systems));
    let site = match &args.site {
        Some(serial) => {
            let serial: Serial = serial
                .parse()
                .with_context(|| format!("--site {serial:?}"))?;
            anyhow::ensure!(
                (1..=NEW_SITE_MAX_MICROS).contains(&args.micros),
                "--micros must be between 1 and {NEW_SITE_MAX_MICROS}, got {}",
                args.micros
            );
            anyhow::ensure!(
                (-90.0..=90.0).contains(&args.latitude)
                    && (-180.0..=180.0).contains(&args.longitude),
                "--latitude must be within ±90 and --longitude within ±180"
            );
            Some(fleet.new_site(serial, args.micros, args.latitude, args.longitude))
        }
        None => None,
    };
    let gateways = if site.is_some() { 1 } else { args.systems };
    let mut config = SimulatorConfig::new(fleet, args.addr, Arc::new(ca));
    config.sites = site.map(|spec| vec![spec]);
    config.speed = args.speed;
    if let Some(at) = &args.at {
        config.start_us = parse_at(at)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let every = Duration::from_secs_f64(args.progress_every.max(0.1));
    let duration = args.duration.map(Duration::from_secs_f64);
    let mut commands = args.commands.then(read_commands);
    let totals = runtime.block_on(async move {
        let simulator = Simulator::start(config).await?;
        eprintln!(
            "simulating {gateways} gateway(s) against {} at {}× real time",
            args.addr, args.speed
        );
        let began = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    eprintln!("{}", progress_line(&simulator.progress(), began.elapsed()));
                    if duration.is_some_and(|d| began.elapsed() >= d) {
                        break;
                    }
                }
                Some(command) = next_command(&mut commands) => match command {
                    Ok(Command::ReplaceGateway { old, new }) => {
                        match simulator
                            .control(old, crate::simulator::Control::ReplaceGateway { new })
                            .await
                        {
                            Ok(()) => eprintln!("gateway {old} is being replaced by {new}"),
                            Err(error) => eprintln!("replace-gateway: {error:#}"),
                        }
                    }
                    Err(message) => eprintln!("{message}"),
                },
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        eprintln!("stopping: sending what the gateways hold and waiting for acks (30 s at most)");
        let totals = simulator.stop(Duration::from_secs(30)).await;
        anyhow::Ok((totals, began.elapsed()))
    })?;
    let (totals, elapsed) = totals;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "simulated {} gateways for {:.1} s at {}× real time",
        totals.gateways,
        elapsed.as_secs_f64(),
        args.speed
    )?;
    let rows: [(&str, String); 10] = [
        ("connections", totals.connections.to_string()),
        ("refused gateways", totals.refused.to_string()),
        ("batches sent", totals.batches_sent.to_string()),
        ("batches acked", totals.batches_acked.to_string()),
        ("duplicates sent", totals.duplicates_sent.to_string()),
        ("batches unacked", totals.in_flight.to_string()),
        ("readings sent", totals.readings_sent.to_string()),
        ("readings acked", totals.readings_acked.to_string()),
        ("tasks run", totals.tasks_run.to_string()),
        (
            "acked readings/s",
            format!(
                "{:.0}",
                totals.readings_acked as f64 / elapsed.as_secs_f64().max(1e-9)
            ),
        ),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<24}{value:>14}")?;
    }
    Ok(if totals.in_flight == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} batches were not acknowledged before the end",
            totals.in_flight
        );
        ExitCode::FAILURE
    })
}

/// The next command, or never when there are none (no `--commands`, or the input ended).
async fn next_command(
    commands: &mut Option<tokio::sync::mpsc::UnboundedReceiver<Result<Command, String>>>,
) -> Option<Result<Command, String>> {
    match commands {
        Some(receiver) => match receiver.recv().await {
            Some(command) => Some(command),
            None => {
                *commands = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

fn progress_line(p: &Progress, elapsed: Duration) -> String {
    let lag_note = if p.in_flight > 0 {
        format!("{} in flight", p.in_flight)
    } else {
        "all acked".to_owned()
    };
    format!(
        "[{:>6.1} s] sim {} · {}/{} connected · batches {} sent {} acked ({lag_note}) · readings {} sent {} acked · tasks {}",
        elapsed.as_secs_f64(),
        format_time(p.sim_now_us),
        p.connected,
        p.gateways,
        p.batches_sent,
        p.batches_acked,
        p.readings_sent,
        p.readings_acked,
        p.tasks_run
    )
}

/// `YYYY-MM-DDTHH:MM` (UTC) → microseconds.
fn parse_at(text: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("--at {text:?}: expected YYYY-MM-DDTHH:MM (UTC)");
    let (date, time) = text.trim_end_matches('Z').split_once('T').ok_or_else(bad)?;
    let date: CivilDate = date.parse().map_err(|_| bad())?;
    let (hours, minutes) = time.split_once(':').ok_or_else(bad)?;
    let hours: i64 = hours.parse().map_err(|_| bad())?;
    let minutes: i64 = minutes
        .get(..2)
        .unwrap_or(minutes)
        .parse()
        .map_err(|_| bad())?;
    anyhow::ensure!(
        (0..24).contains(&hours) && (0..60).contains(&minutes),
        bad()
    );
    Ok(date.start_micros() + (hours * 3_600 + minutes * 60) * 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_both_gateways() {
        assert_eq!(
            parse_command("  replace-gateway 121990000777 121990000778 "),
            Ok(Command::ReplaceGateway {
                old: "121990000777".parse().unwrap(),
                new: "121990000778".parse().unwrap(),
            })
        );
        for bad in [
            "replace-gateway 121990000777",
            "replace-gateway 12199x 121990000778",
            "reboot 121990000777",
        ] {
            assert!(parse_command(bad).is_err(), "{bad}");
        }
    }
}
