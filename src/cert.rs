//! `sunfleet cert`: the installation's fleet CA, the server certificate and gateway
//! certificates. They live in `<data>/tls` unless `--tls` says otherwise.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::Registry;
use sunfleet_ingest::tls::{CA_CERT_FILE, CertifiedKey, FleetCa, SERVER_CERT_FILE};

use crate::data::{DEFAULT_DATA_DIR, registry_path};

#[derive(Debug, Args)]
pub struct CertArgs {
    /// Data folder whose `tls/` folder holds the CA and the server certificate.
    #[arg(long, global = true, default_value = DEFAULT_DATA_DIR, env = "SUNFLEET_DATA")]
    data: PathBuf,
    /// The TLS folder itself (default: `<data>/tls`).
    #[arg(long, global = true)]
    tls: Option<PathBuf>,
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Create the fleet CA (refused if one exists: every gateway certificate depends on it).
    Ca {
        /// The CA's name.
        #[arg(long, default_value = "Sunfleet fleet CA")]
        name: String,
    },
    /// Issue the server certificate for these DNS names or IP addresses (replacing the old).
    Server {
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        names: Vec<String>,
    },
    /// Issue a gateway's client certificate: `<serial>.pem`, `<serial>.key` and the CA's
    /// `ca.pem` in the output folder.
    Gateway {
        /// The gateway's serial number (12 digits).
        #[arg(long)]
        serial: String,
        /// Where to write the files.
        #[arg(long, short = 'o', default_value = ".")]
        out: PathBuf,
    },
    /// Revoke a gateway (a stolen or compromised unit): it is retired in the registry, a
    /// running server closes its open connection within about a second and refuses it from
    /// then on, and its unfinished tasks are cancelled. A gateway swapped for a new one is
    /// replaced from the portal instead (its devices move to the new one).
    Revoke {
        /// The gateway's serial number (12 digits).
        #[arg(long)]
        serial: String,
    },
}

/// The TLS folder of a data folder.
pub fn tls_dir(data: &Path) -> PathBuf {
    data.join("tls")
}

pub fn run(args: CertArgs) -> anyhow::Result<ExitCode> {
    let dir = args.tls.unwrap_or_else(|| tls_dir(&args.data));
    match args.command {
        CertCommand::Ca { name } => {
            let ca = FleetCa::generate(&name)?;
            ca.save(&dir)
                .with_context(|| format!("saving the CA in {}", dir.display()))?;
            println!("fleet CA created: {}", dir.join(CA_CERT_FILE).display());
        }
        CertCommand::Server { names } => {
            anyhow::ensure!(!names.is_empty(), "--names needs at least one name");
            let ca = load_ca(&dir)?;
            let server = ca.issue_server(&names)?;
            server.save(&dir, SERVER_CERT_FILE.trim_end_matches(".pem"))?;
            println!(
                "server certificate for {} written to {}",
                names.join(", "),
                dir.join(SERVER_CERT_FILE).display()
            );
        }
        CertCommand::Gateway { serial, out } => {
            let serial: Serial = serial.parse()?;
            let ca = load_ca(&dir)?;
            let certificate: CertifiedKey = ca.issue_gateway(serial)?;
            let stem = serial.to_string();
            certificate.save(&out, &stem)?;
            std::fs::write(out.join(CA_CERT_FILE), ca.cert_pem())
                .with_context(|| format!("writing {}", out.join(CA_CERT_FILE).display()))?;
            println!(
                "gateway {serial}: {stem}.pem and {stem}.key (with {CA_CERT_FILE}) in {}",
                out.display()
            );
        }
        CertCommand::Revoke { serial } => {
            let serial: Serial = serial.parse()?;
            let registry = Registry::open(registry_path(&args.data))
                .with_context(|| format!("opening the registry in {}", args.data.display()))?;
            registry.revoke_gateway(serial, None, sunfleet_engine::time::now_micros())?;
            println!(
                "gateway {serial} revoked: a running server closes its connection within a \
                 second and refuses it from now on"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_ca(dir: &Path) -> anyhow::Result<FleetCa> {
    FleetCa::load(dir).with_context(|| {
        format!(
            "no usable fleet CA in {} (create one with `sunfleet cert ca`, or start \
             `sunfleet serve` once)",
            dir.display()
        )
    })
}
