//! `sunfleet`: the binary that wires the crates together. See `README.md` for the quick start
//! and `ARCHITECTURE.md` for the code map.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sunfleet::{cert, demo, export, import, serve, simulate, soak, sql, task, user};

#[derive(Debug, Parser)]
#[command(name = "sunfleet", version, about = "Monitoring for microinverter PV fleets", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole product on a local data folder: demo fleet over QUIC, SQL and the portal.
    Demo(demo::DemoArgs),
    /// Run the server: QUIC ingest, the engine, fleet checks, SQL endpoints and the portal.
    Serve(serve::ServeArgs),
    /// Drive a generated fleet: stream it to a server over QUIC, or count and checksum it
    /// (--dry-run).
    Simulate(simulate::SimulateArgs),
    /// Run the server under load and faults (kills, backlog storm, full and slow disk) for
    /// a bounded time on loopback, then check that nothing acknowledged was lost.
    Soak(soak::SoakArgs),
    /// Run one SQL query against a data folder (not while a server holds it).
    Sql(sql::SqlArgs),
    /// Load historical microinverter readings from CSV (one row per device and interval).
    Import(import::ImportArgs),
    /// Write a time range for chosen systems to Parquet or CSV.
    Export(export::ExportArgs),
    /// Certificate tools: fleet CA, server and gateway certificates.
    Cert(cert::CertArgs),
    /// Remote tasks for gateways: queue one, list a gateway's.
    Task(task::TaskArgs),
    /// Users: add one, set a password (for the SQL endpoints and the portal), list.
    User(user::UserArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SUNFLEET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Soak(args) => soak::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Cert(args) => cert::run(args),
        Command::Task(args) => task::run(args),
        Command::User(args) => user::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("sunfleet: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
