//! `sunfleet serve`: the engine on a data folder, the QUIC ingest in front of it, the fleet
//! checks, the SQL endpoints (Postgres wire, Arrow Flight SQL), the portal and the mail
//! deliverer, until Ctrl-C or SIGTERM; then an ordered shutdown: the demo's simulated
//! gateways (in `sunfleet demo`), the portal and SQL endpoints, then ingest (so every
//! acknowledged batch is known), then checks and maintenance, then the mail deliverer
//! (after everything that queues mail); last, the write buffer is persisted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sunfleet_engine::registry::Registry;
use sunfleet_ingest::server::{IngestConfig, IngestServer};
use sunfleet_ingest::tls::ServerIdentity;
use sunfleet_query::checks::{CheckSchedule, CheckSettings, run_checks};
use sunfleet_query::flight::{FlightConfig, FlightServer};
use sunfleet_query::postgres::{PostgresConfig, PostgresServer};
use sunfleet_query::sql_sign_in::SqlSignIn;
use sunfleet_query::throttle::{SignInThrottle, ThrottleLimits};
use sunfleet_query::{QueryConfig, QueryEngine};

use crate::data::{DEFAULT_DATA_DIR, DataFolder};
use crate::simulator::{Simulator, SimulatorConfig, demo_fleet};
use sunfleet_ingest::tls::FleetCa;
use sunfleet_portal::mail::{MailConfig, MailDeliverer, SmtpSettings};
use sunfleet_portal::{PortalConfig, PortalServer};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data folder.
    #[arg(long, default_value = DEFAULT_DATA_DIR, env = "SUNFLEET_DATA")]
    pub data: PathBuf,
    /// UDP address of the QUIC ingest.
    #[arg(long, default_value = "127.0.0.1:4433", env = "SUNFLEET_QUIC")]
    pub quic: SocketAddr,
    /// Names for the server certificate created on first start.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub server_names: Vec<String>,
    /// TLS folder (default: `<data>/tls`); a fleet CA is created there if none exists.
    #[arg(long)]
    pub tls: Option<PathBuf>,
    /// Seed an empty registry with the generated demo fleet of this many systems (the
    /// fleet `sunfleet simulate --systems N --seed S` drives).
    #[arg(long)]
    pub seed_systems: Option<u32>,
    /// Seed of the demo fleet.
    #[arg(long, default_value_t = 1, env = "SUNFLEET_SEED")]
    pub seed: u64,
    /// Seconds between two runs of the fleet checks (statuses and events).
    #[arg(long, default_value_t = 300)]
    pub check_every: u64,
    /// Seconds after data arrives before the fleet checks run again (at the soonest after
    /// the previous round); they re-judge only the systems whose data changed.
    #[arg(long, default_value_t = 15)]
    pub check_after_ingest: u64,
    /// TCP address of the Postgres wire endpoint (`psql -h 127.0.0.1 -p 5433 -U EMAIL`).
    #[arg(long, default_value = "127.0.0.1:5433", env = "SUNFLEET_POSTGRES")]
    pub postgres: SocketAddr,
    /// TCP address of the Arrow Flight SQL endpoint (ADBC: `grpc://127.0.0.1:8815`).
    #[arg(long, default_value = "127.0.0.1:8815", env = "SUNFLEET_FLIGHT")]
    pub flight: SocketAddr,
    /// TCP address of the web portal.
    #[arg(long, default_value = "127.0.0.1:8080", env = "SUNFLEET_PORTAL")]
    pub portal: SocketAddr,
    /// The address people reach the portal at (e.g. `https://portal.example.com` behind a
    /// proxy), for the links it hands out (invitations, feeds); by default the address
    /// each request came to.
    #[arg(long, env = "SUNFLEET_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Require TLS on the SQL endpoints (the server certificate from the TLS folder,
    /// issued by the fleet CA); unencrypted connections are then refused.
    #[arg(long)]
    pub sql_tls: bool,
    #[command(flatten)]
    pub query: QueryLimitArgs,
    #[command(flatten)]
    pub mail: MailArgs,
}

/// What queries (analysts' and the portal's) may use.
#[derive(Debug, Clone, Args)]
pub struct QueryLimitArgs {
    /// Memory all running queries together may hold before they spill or fail, in MiB.
    #[arg(long, default_value_t = 2048)]
    pub query_memory_mib: usize,
    /// Disk all queries' spill files together may take, in MiB (the WAL shares the disk).
    #[arg(long, default_value_t = 8192)]
    pub query_spill_mib: u64,
    /// Seconds a query may run before it is stopped.
    #[arg(long, default_value_t = 60)]
    pub query_timeout_s: u64,
    /// Rows an analyst's result may have (the Postgres, Flight SQL and /api/sql answers).
    #[arg(long, default_value_t = 1_000_000)]
    pub sql_max_rows: u64,
}

impl QueryLimitArgs {
    fn config(&self, spill_dir: PathBuf) -> QueryConfig {
        let mut config = QueryConfig::new(spill_dir);
        config.memory_limit_bytes = self.query_memory_mib << 20;
        config.max_spill_bytes = self.query_spill_mib << 20;
        config.timeout = Duration::from_secs(self.query_timeout_s.max(1));
        config.max_result_rows = self.sql_max_rows;
        config
    }
}

/// Mail to people (the owner's welcome and notices of changed details).
#[derive(Debug, Clone, Args)]
pub struct MailArgs {
    /// The SMTP server mail goes through: `smtp://host:port` (no encryption: a relay on
    /// this machine or network), `starttls://host:port`, or `smtps://host:port`; add
    /// `user:password@` before the host to sign in. Without it mail stays in the outbox,
    /// which the platform administrator reads at /admin/mail.
    #[arg(long, env = "SUNFLEET_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of that mail: an address, or `Name <address>`.
    #[arg(long, env = "SUNFLEET_MAIL_FROM", default_value = sunfleet_portal::mail::DEFAULT_FROM)]
    pub mail_from: String,
}

impl MailArgs {
    /// The delivery configuration, or why it cannot work (checked before anything starts).
    pub fn config(&self) -> anyhow::Result<MailConfig> {
        let smtp = self
            .smtp_url
            .as_deref()
            .map(SmtpSettings::parse)
            .transpose()?;
        let config = MailConfig::new(smtp, Some(self.mail_from.clone()));
        config.sender()?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

fn seed_if_empty(registry: &Registry, systems: Option<u32>, seed: u64) -> anyhow::Result<()> {
    let Some(systems) = systems else {
        return Ok(());
    };
    if registry.count("systems")? > 0 {
        tracing::info!("registry already has systems; not seeding");
        return Ok(());
    }
    let fleet = demo_fleet(seed, systems);
    let report = sunfleet_fixtures::seed::seed_registry(registry, &fleet)?;
    tracing::info!(?report, "registry seeded with the demo fleet");
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let folder = DataFolder::open_with(&args.data, |registry| {
        seed_if_empty(registry, args.seed_systems, args.seed)
    })
    .await?;
    run_services(folder, &args, None).await
}

/// What `sunfleet demo` runs beside the server: its fleet's gateways, simulated.
pub struct DemoFleet {
    pub fleet: Arc<sunfleet_fixtures::Fleet>,
    pub speed: f64,
    /// What to print once everything listens (the demo accounts).
    pub welcome: String,
}

/// Runs every service on an open data folder until Ctrl-C or SIGTERM, then stops them in
/// order.
pub async fn run_services(
    folder: DataFolder,
    args: &ServeArgs,
    demo: Option<DemoFleet>,
) -> anyhow::Result<()> {
    let mail_config = args.mail.config()?;
    let tls_dir = args
        .tls
        .clone()
        .unwrap_or_else(|| crate::cert::tls_dir(&args.data));
    let (identity, created) = ServerIdentity::load_or_create(&tls_dir, &args.server_names)
        .with_context(|| format!("loading the TLS identity in {}", tls_dir.display()))?;
    if created {
        tracing::info!(dir = %tls_dir.display(), "created the fleet CA and server certificate");
    }
    let (stop_maintenance, stop_rx) = tokio::sync::watch::channel(false);
    let maintenance =
        tokio::spawn(Arc::clone(&folder.store).run_maintenance(Duration::from_secs(5), stop_rx));
    let query = Arc::new(QueryEngine::start(
        Arc::clone(&folder.store),
        Arc::clone(&folder.registry),
        args.query.config(args.data.join("tmp").join("query")),
    )?);
    let checks = tokio::spawn(run_checks(
        Arc::clone(&query),
        Arc::clone(&folder.registry),
        CheckSchedule {
            every: Duration::from_secs(args.check_every.max(1)),
            after_ingest: Duration::from_secs(args.check_after_ingest),
        },
        CheckSettings::default(),
        stop_maintenance.subscribe(),
    ));
    let ingest = IngestServer::start(
        IngestConfig::new(args.quic),
        &identity,
        Arc::clone(&folder.store),
        Arc::clone(&folder.registry),
    )
    .await?;
    let sql_tls = if args.sql_tls {
        Some(Arc::new(sunfleet_ingest::tls::sql_server_config(
            &identity,
        )?))
    } else {
        None
    };
    // One count of failed sign-ins for the portal and both SQL endpoints.
    let sign_in_throttle = Arc::new(SignInThrottle::new(ThrottleLimits::default()));
    let sql_sign_in = Arc::new(SqlSignIn::new(
        Arc::clone(&folder.registry),
        Arc::clone(&sign_in_throttle),
    ));
    let postgres = PostgresServer::start(
        PostgresConfig {
            listen: args.postgres,
            tls: sql_tls,
        },
        Arc::clone(&query),
        Arc::clone(&sql_sign_in),
    )
    .await?;
    let flight = FlightServer::start(
        FlightConfig {
            listen: args.flight,
            tls: args.sql_tls.then(|| {
                (
                    identity.server.cert_pem.clone(),
                    identity.server.key_pem.clone(),
                )
            }),
        },
        Arc::clone(&query),
        sql_sign_in,
    )
    .await?;
    // Before the portal, so mail queued by its first requests goes at once.
    let mail = MailDeliverer::start(Arc::clone(&folder.registry), mail_config.clone())?;
    let mut portal_config = PortalConfig::new(args.portal);
    portal_config.mail_delivery = mail_config.describe();
    portal_config.public_url = args.public_url.clone();
    portal_config.sign_in_throttle = sign_in_throttle;
    portal_config.secure_cookies = args
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    // The demo shows its simulated weather; a deployment plugs a provider in here.
    portal_config.weather = demo.as_ref().map(|demo| {
        sunfleet_portal::weather::SharedWeather(Arc::new(crate::weather::SimulatedWeather {
            fleet: Arc::clone(&demo.fleet),
        }))
    });
    let portal = PortalServer::start(
        portal_config,
        Arc::clone(&query),
        Arc::clone(&folder.registry),
    )
    .await?;
    let simulator = match demo.as_ref() {
        Some(demo) => {
            let ca = FleetCa::load(&tls_dir)
                .with_context(|| format!("loading the fleet CA in {}", tls_dir.display()))?;
            let mut config =
                SimulatorConfig::new(Arc::clone(&demo.fleet), ingest.local_addr()?, Arc::new(ca));
            config.speed = demo.speed;
            Some(Simulator::start(config).await?)
        }
        None => None,
    };
    println!(
        "sunfleet: QUIC ingest on {} (ALPN sunfleet/1, gateways need a certificate from {}); data in {}.",
        ingest.local_addr()?,
        tls_dir.join(sunfleet_ingest::tls::CA_CERT_FILE).display(),
        args.data.display()
    );
    println!(
        "sunfleet: SQL: Postgres wire on {}, Arrow Flight SQL on {}{} (sign in with a user's e-mail and password: `sunfleet user password`). Ctrl-C stops.",
        postgres.local_addr(),
        flight.local_addr(),
        if args.sql_tls { ", TLS required" } else { "" },
    );
    println!(
        "sunfleet: portal on http://{} (sign in with a user's e-mail and password).",
        portal.local_addr()
    );
    match mail_config.describe() {
        Some(delivery) => println!("sunfleet: mail to people by SMTP: {delivery}."),
        None => println!(
            "sunfleet: no SMTP server (--smtp-url): mail to people stays in the outbox (/admin/mail)."
        ),
    }
    if let Some(demo) = &demo {
        println!("{}", demo.welcome);
    }
    shutdown_signal().await;
    tracing::info!("shutting down");
    if let Some(simulator) = simulator {
        let progress = simulator.stop(Duration::from_secs(10)).await;
        tracing::info!(?progress, "demo fleet stopped");
    }
    portal.shutdown().await;
    postgres.shutdown().await;
    flight.shutdown().await;
    ingest.shutdown().await?;
    let _ = stop_maintenance.send(true);
    let _ = checks.await;
    let _ = maintenance.await;
    // Last of what queues mail is done (the portal, the checks); the mail being sent
    // finishes, the rest waits in the outbox.
    mail.shutdown().await;
    let report = folder.store.persist().await?;
    tracing::info!(?report, "write buffer persisted; bye");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
