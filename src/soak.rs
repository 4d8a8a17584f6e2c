//! `sunfleet soak`: the server under load and faults for a bounded time, then a check that
//! nothing was lost. It runs `sunfleet serve` as a child process on loopback ports, drives
//! simulated gateways (recording every reading the server acknowledged and every task they
//! ran), portal users and SQL analysts against it, and meanwhile kills the server with
//! SIGKILL at random times, keeps it down long enough for a backlog storm, fills its disk
//! (when it can mount a size-limited tmpfs) and slows its disk down. At the end it drains
//! the gateways, stops the server with SIGTERM, opens the data folder itself and checks:
//! every acknowledged reading present exactly once with its value, hourly rollups equal to
//! a recomputation from the raw readings, every queued task run exactly once, and
//! compaction leaving one file per closed day. It prints a summary table; the exit code
//! says whether every check held.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType, UInt32Type, UInt64Type};
use clap::Args;
use sunfleet_engine::ids::Serial;
use sunfleet_engine::registry::{NewUser, Registry, TaskProgress, UserRole, insert_user};
use sunfleet_engine::time::{MICROS_PER_DAY, now_micros};
use sunfleet_ingest::tls::FleetCa;
use sunfleet_query::{QueryConfig, QueryEngine, Scope};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::data::{DataFolder, registry_path};
use crate::simulator::{Ledger, Simulator, SimulatorConfig, demo_fleet};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Minutes of load and faults before the final checks (fractions allowed).
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Seed of the fleet and of the fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulated gateways (one per system).
    #[arg(long, default_value_t = 2000)]
    pub gateways: u32,
    /// Simulated seconds per second; a microinverter reports every 5 simulated minutes.
    #[arg(long, default_value_t = 300.0)]
    pub speed: f64,
    /// Mean seconds between two SIGKILLs of the server.
    #[arg(long, default_value_t = 40.0)]
    pub kill_every: f64,
    /// Portal users and SQL analysts working throughout (each).
    #[arg(long, default_value_t = 4)]
    pub users: usize,
    /// Data folder (kept afterwards); default: a temporary folder, removed after a run
    /// whose checks all held.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Skip the disk-full fault (it needs root to mount a size-limited tmpfs; without root
    /// it is skipped anyway, and the summary says so).
    #[arg(long)]
    pub no_disk_full: bool,
    /// Size of that tmpfs, in MiB: room for the run's data, filled up during the fault.
    #[arg(long, default_value_t = 4096)]
    pub disk_mib: u64,
}

/// The address everything listens on: loopback only.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
const OPERATOR_EMAIL: &str = "soak-operator@sunfleet.test";
const OPERATOR_PASSWORD: &str = "soak operator password";
/// How long the server may take to answer /healthz after a start (a hang guard).
const START_LIMIT: Duration = Duration::from_secs(300);

pub fn run(args: SoakArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.minutes > 0.0 && args.minutes <= 24.0 * 60.0,
        "--minutes must be above 0 and at most a day, got {}",
        args.minutes
    );
    anyhow::ensure!(
        (1..=100_000).contains(&args.gateways),
        "--gateways must be between 1 and 100000, got {}",
        args.gateways
    );
    anyhow::ensure!(
        args.speed > 0.0 && args.speed <= 100_000.0,
        "--speed must be above 0 and at most 100000, got {}",
        args.speed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let (work, temporary) = match &args.data {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "sunfleet-soak-{}-{}",
                std::process::id(),
                args.seed
            ));
            (dir.clone(), Some(dir))
        }
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let disk = if args.no_disk_full {
        SmallDisk::skipped("--no-disk-full")
    } else {
        SmallDisk::mount(&work.join("data"), args.disk_mib)
    };
    let outcome = runtime.block_on(soak(&args, &work, &disk));
    drop(disk);
    let report = outcome?;
    print!("{}", report.table());
    if report.passed() {
        if let Some(dir) = temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "sunfleet soak: checks failed; data kept in {}",
            work.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// The data folder on a size-limited tmpfs, so the run can fill it (root only).
struct SmallDisk {
    mount: Option<PathBuf>,
    skipped_because: Option<String>,
}

impl SmallDisk {
    fn skipped(reason: &str) -> Self {
        Self {
            mount: None,
            skipped_because: Some(reason.to_owned()),
        }
    }

    fn mount(dir: &Path, mib: u64) -> Self {
        if let Err(error) = std::fs::create_dir_all(dir) {
            return Self::skipped(&format!("creating {}: {error}", dir.display()));
        }
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::piped())
            .output();
        match mounted {
            Ok(out) if out.status.success() => Self {
                mount: Some(dir.to_owned()),
                skipped_because: None,
            },
            Ok(out) => Self::skipped(&format!(
                "cannot mount a tmpfs (root needed): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(error) => Self::skipped(&format!("cannot run mount: {error}")),
        }
    }

    /// Fills the disk mounted at `mount` to the last byte with one file; returns its path.
    fn fill(mount: Option<&Path>) -> Option<PathBuf> {
        use std::io::Write;
        let filler = mount?.join("filler");
        let mut file = std::fs::File::create(&filler).ok()?;
        let block = vec![0u8; 1 << 20];
        while file.write_all(&block).is_ok() {}
        // The last partial block, byte by byte in shrinking steps.
        let mut step = block.len() / 2;
        while step > 0 {
            if file.write_all(&block[..step]).is_err() {
                step /= 2;
            }
        }
        Some(filler)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        if let Some(dir) = &self.mount {
            let _ = Command::new("umount").arg("-l").arg(dir).status();
        }
    }
}

/// What happened during the run and what the final checks found.
#[derive(Debug, Default)]
struct Report {
    minutes: f64,
    gateways: u32,
    kills: u32,
    longest_outage_s: f64,
    crash_restarts_s: Vec<f64>,
    disk_full: String,
    slow_disk: String,
    unexpected_exits: Vec<String>,
    readings_acknowledged: u64,
    batches_sent_again: u64,
    connections: u64,
    unacknowledged_at_end: i64,
    page_requests: u64,
    sql_requests: u64,
    unavailable: u64,
    server_errors: Vec<String>,
    server_errors_disk_full: u64,
    shutdown_s: f64,
    restart_after_shutdown_s: f64,
    tasks_queued: usize,
    /// Check name → (held, detail).
    checks: BTreeMap<&'static str, (bool, String)>,
}

impl Report {
    fn check(&mut self, name: &'static str, held: bool, detail: String) {
        self.checks.insert(name, (held, detail));
    }

    fn passed(&self) -> bool {
        self.checks.values().all(|(held, _)| *held)
            && self.server_errors.is_empty()
            && self.unexpected_exits.is_empty()
    }

    fn table(&self) -> String {
        let restarts = &self.crash_restarts_s;
        let mean = restarts.iter().sum::<f64>() / restarts.len().max(1) as f64;
        let max = restarts.iter().copied().fold(0.0, f64::max);
        let mut lines = vec![
            format!(
                "soak: {:.1} min, {} gateways, {} readings acknowledged, {} connections, {} batches sent again",
                self.minutes,
                self.gateways,
                self.readings_acknowledged,
                self.connections,
                self.batches_sent_again
            ),
            String::new(),
            format!("{:<34} {}", "fault / load", "outcome"),
            format!(
                "{:<34} {} kills; restart to healthy {mean:.1} s mean, {max:.1} s max",
                "SIGKILL of the server", self.kills
            ),
            format!(
                "{:<34} longest outage {:.1} s",
                "backlog storm", self.longest_outage_s
            ),
            format!("{:<34} {}", "disk full", self.disk_full),
            format!("{:<34} {}", "slow disk", self.slow_disk),
            format!(
                "{:<34} {} pages, {} SQL; {} while the server was down; {} server errors ({} while the disk was full)",
                "portal users and SQL analysts",
                self.page_requests,
                self.sql_requests,
                self.unavailable,
                self.server_errors.len(),
                self.server_errors_disk_full
            ),
            format!(
                "{:<34} stopped in {:.1} s, started again in {:.1} s",
                "SIGTERM", self.shutdown_s, self.restart_after_shutdown_s
            ),
            format!(
                "{:<34} {}",
                "unexpected server exits",
                if self.unexpected_exits.is_empty() {
                    "none".to_owned()
                } else {
                    self.unexpected_exits.join("; ")
                }
            ),
            String::new(),
            format!("{:<34} {}", "check", "result"),
        ];
        for (name, (held, detail)) in &self.checks {
            let verdict = if *held { "ok" } else { "FAILED" };
            lines.push(format!("{name:<34} {verdict}: {detail}"));
        }
        for error in self.server_errors.iter().take(5) {
            lines.push(format!("server error: {error}"));
        }
        lines.push(format!(
            "soak {}",
            if self.passed() { "passed" } else { "FAILED" }
        ));
        lines.join("\n") + "\n"
    }
}

/// The loopback ports of one server.
#[derive(Debug, Clone, Copy)]
struct Ports {
    quic: u16,
    portal: u16,
    postgres: u16,
    flight: u16,
}

impl Ports {
    fn pick() -> anyhow::Result<Self> {
        let tcp = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind((LOOPBACK, 0))?
                .local_addr()?
                .port())
        };
        let udp = std::net::UdpSocket::bind((LOOPBACK, 0))?
            .local_addr()?
            .port();
        Ok(Self {
            quic: udp,
            portal: tcp()?,
            postgres: tcp()?,
            flight: tcp()?,
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((LOOPBACK, port))
    }
}

/// `sunfleet serve` as a child process.
struct ServerProcess {
    data: PathBuf,
    log: PathBuf,
    ports: Ports,
    gateways: u32,
    seed: u64,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts the server (with every WAL sync slowed by `slow_sync_ms`) and waits until
    /// its portal answers; returns how long that took.
    async fn start(&mut self, slow_sync_ms: Option<u64>) -> anyhow::Result<Duration> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let p = self.ports;
        let exe = std::env::current_exe().context("finding the sunfleet binary")?;
        let mut command = Command::new(exe);
        command
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args(["--quic", &Ports::addr(p.quic).to_string()])
            .args(["--portal", &Ports::addr(p.portal).to_string()])
            .args(["--postgres", &Ports::addr(p.postgres).to_string()])
            .args(["--flight", &Ports::addr(p.flight).to_string()])
            .args(["--seed-systems", &self.gateways.to_string()])
            .args(["--seed", &self.seed.to_string()])
            .args(["--check-every", "30"])
            .env("SUNFLEET_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log);
        match slow_sync_ms {
            Some(ms) => command.env(sunfleet_engine::failpoint::SLOW_SYNC_ENV, ms.to_string()),
            None => command.env_remove(sunfleet_engine::failpoint::SLOW_SYNC_ENV),
        };
        let began = Instant::now();
        self.child = Some(command.spawn().context("starting sunfleet serve")?);
        loop {
            if let Ok(answer) = http(p.portal, "GET", "/healthz", &[], None).await
                && answer.status == 200
            {
                return Ok(began.elapsed());
            }
            if let Some(status) = self.exited() {
                bail!(
                    "the server exited while starting ({status}); see {}",
                    self.log.display()
                );
            }
            if began.elapsed() > START_LIMIT {
                bail!("the server did not start within {START_LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The exit status, if the server has exited (then it is forgotten).
    fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status.to_string())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns how long it took and whether it was clean.
    async fn terminate(&mut self) -> anyhow::Result<(Duration, bool)> {
        let Some(mut child) = self.child.take() else {
            bail!("the server is not running");
        };
        let began = Instant::now();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("sending SIGTERM")?;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((began.elapsed(), status.success()));
            }
            if began.elapsed() > START_LIMIT {
                let _ = child.kill();
                bail!("the server did not stop within {START_LIMIT:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tiny seeded generator for the fault schedule (SplitMix64).
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (high - low)
    }
}

/// Counters the load tasks share with the summary.
#[derive(Default)]
struct Load {
    pages: AtomicU64,
    sql: AtomicU64,
    unavailable: AtomicU64,
    server_errors: Mutex<Vec<String>>,
    server_errors_disk_full: AtomicU64,
    disk_full: AtomicBool,
    stop: AtomicBool,
}

async fn soak(args: &SoakArgs, work: &Path, disk: &SmallDisk) -> anyhow::Result<Report> {
    let mut report = Report {
        minutes: args.minutes,
        gateways: args.gateways,
        ..Report::default()
    };
    let data = work.join("data");
    let mut server = ServerProcess {
        data: data.clone(),
        log: work.join("server.log"),
        ports: Ports::pick()?,
        gateways: args.gateways,
        seed: args.seed,
        child: None,
    };
    server.start(None).await?;
    let registry = Arc::new(Registry::open(registry_path(&data))?);
    add_operator(&registry)?;
    let ca = FleetCa::load(&crate::cert::tls_dir(&data)).context("loading the fleet CA")?;

    // Gateways start two days back, so the run's first days close and get rolled up.
    let now = now_micros();
    let ledger = Arc::new(Ledger::default());
    let fleet = Arc::new(demo_fleet(args.seed, args.gateways));
    let gateway_serials: Vec<Serial> = fleet.systems().map(|s| s.gateway.serial).collect();
    let mut config = SimulatorConfig::new(
        Arc::clone(&fleet),
        Ports::addr(server.ports.quic),
        Arc::new(ca),
    );
    config.speed = args.speed;
    config.start_us = now - now.rem_euclid(MICROS_PER_DAY) - 2 * MICROS_PER_DAY;
    config.ledger = Some(Arc::clone(&ledger));
    let simulator = Simulator::start(config).await?;

    let load = Arc::new(Load::default());
    let mut workers = Vec::new();
    for i in 0..args.users {
        workers.push(tokio::spawn(portal_user(
            server.ports.portal,
            Arc::clone(&load),
            args.gateways,
            args.seed + i as u64,
        )));
        workers.push(tokio::spawn(sql_analyst(
            server.ports.portal,
            Arc::clone(&load),
            args.gateways,
        )));
    }

    // The fault schedule.
    let run_for = Duration::from_secs_f64(args.minutes * 60.0);
    let began = Instant::now();
    let at = |share: f64| began + run_for.mul_f64(share);
    let (storm_at, disk_full_at, slow_at, slow_until) = (at(0.3), at(0.5), at(0.7), at(0.8));
    let (mut storm_done, mut disk_done, mut slow_started, mut slow_done) =
        (false, false, false, false);
    let mut dice = Dice(args.seed);
    let mut next_kill = began + Duration::from_secs_f64(args.kill_every * dice.between(0.5, 1.5));
    let mut next_task = began + Duration::from_secs(2);
    let mut tasks: Vec<i64> = Vec::new();
    let mut acked_before_slow = 0;
    report.disk_full = "not reached".into();
    report.slow_disk = "not reached".into();
    while began.elapsed() < run_for {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if let Some(status) = server.exited() {
            report.unexpected_exits.push(format!(
                "at {:.0} s: {status}",
                began.elapsed().as_secs_f64()
            ));
            server.start(None).await?;
        }
        if now >= next_task && now < at(0.85) {
            let serial = gateway_serials[(dice.next() % gateway_serials.len() as u64) as usize];
            let kind = if dice.next().is_multiple_of(2) {
                "reboot"
            } else {
                "production_on"
            };
            if let Some(gateway) = registry.gateway(serial)? {
                tasks.push(registry.queue_task(gateway.device, kind, "{}", None, now_micros())?);
            }
            next_task = now + Duration::from_secs(3);
        }
        if !storm_done && now >= storm_at {
            // Down long enough for every gateway to gather a backlog, then all at once.
            storm_done = true;
            let outage = Duration::from_secs(15);
            server.kill();
            tokio::time::sleep(outage).await;
            let restart = server.start(None).await?;
            report.kills += 1;
            report.crash_restarts_s.push(restart.as_secs_f64());
            report.longest_outage_s = (outage + restart).as_secs_f64();
        } else if !disk_done && now >= disk_full_at {
            disk_done = true;
            report.disk_full = match &disk.skipped_because {
                Some(reason) => format!("skipped: {reason}"),
                None => fill_disk(disk, &mut server, &load).await?,
            };
        } else if !slow_started && now >= slow_at {
            slow_started = true;
            acked_before_slow = simulator.progress().readings_acked;
            server.kill();
            let restart = server.start(Some(50)).await?;
            report.kills += 1;
            report.crash_restarts_s.push(restart.as_secs_f64());
        } else if slow_started && !slow_done && now >= slow_until {
            slow_done = true;
            let acked = simulator.progress().readings_acked - acked_before_slow;
            server.kill();
            let restart = server.start(None).await?;
            report.kills += 1;
            report.crash_restarts_s.push(restart.as_secs_f64());
            report.slow_disk = format!(
                "every WAL sync 50 ms slower for {:.0} s: {acked} readings acknowledged meanwhile",
                (slow_until - slow_at).as_secs_f64()
            );
        } else if now >= next_kill {
            server.kill();
            tokio::time::sleep(Duration::from_secs_f64(dice.between(0.2, 2.0))).await;
            let restart = server.start(None).await?;
            report.kills += 1;
            report.crash_restarts_s.push(restart.as_secs_f64());
            next_kill =
                Instant::now() + Duration::from_secs_f64(args.kill_every * dice.between(0.5, 1.5));
        }
    }

    // Quiet: no more faults. Tasks finish, gateways deliver everything they hold.
    report.tasks_queued = tasks.len();
    let settle = Instant::now() + Duration::from_secs(120);
    while Instant::now() < settle && !tasks_done(&registry, &tasks)? {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    load.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let progress = simulator.stop(Duration::from_secs(120)).await;
    report.readings_acknowledged = progress.readings_acked;
    report.batches_sent_again = progress.duplicates_sent;
    report.connections = progress.connections;
    report.unacknowledged_at_end = progress.in_flight;
    report.page_requests = load.pages.load(Ordering::Relaxed);
    report.sql_requests = load.sql.load(Ordering::Relaxed);
    report.unavailable = load.unavailable.load(Ordering::Relaxed);
    report.server_errors = std::mem::take(
        &mut *load
            .server_errors
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    report.server_errors_disk_full = load.server_errors_disk_full.load(Ordering::Relaxed);

    let task_states = task_states(&registry, &tasks)?;
    drop(registry);
    let (stopped_in, clean) = server.terminate().await?;
    report.shutdown_s = stopped_in.as_secs_f64();
    report.check(
        "SIGTERM stops the server cleanly",
        clean,
        format!("exit after {:.1} s", report.shutdown_s),
    );
    report.restart_after_shutdown_s = server.start(None).await?.as_secs_f64();
    let (_, clean) = server.terminate().await?;
    report.check(
        "a second SIGTERM stop is clean too",
        clean,
        "after the restart".into(),
    );

    check_tasks(&mut report, &tasks, &task_states, &ledger.task_runs());
    if let Err(error) = verify_data_folder(&mut report, &data, &ledger.take_readings()).await {
        report.check(
            "the data folder could be checked",
            false,
            format!("{error:#}"),
        );
    }
    report.check(
        "gateways delivered everything",
        report.unacknowledged_at_end == 0,
        format!(
            "{} batches unacknowledged after the drain",
            report.unacknowledged_at_end
        ),
    );
    Ok(report)
}

/// The platform administrator the soak's users and analysts sign in as.
fn add_operator(registry: &Registry) -> anyhow::Result<()> {
    if registry.user_by_email(OPERATOR_EMAIL)?.is_none() {
        registry.transaction("adding the soak operator", |tx| {
            insert_user(
                tx,
                &NewUser {
                    email: OPERATOR_EMAIL.to_owned(),
                    given_name: "Soak".to_owned(),
                    family_name: "Operator".to_owned(),
                    phone: String::new(),
                    language: "en".to_owned(),
                    role: UserRole::PlatformAdmin.as_str(),
                    company_id: None,
                    owner_id: None,
                    password_hash: None,
                    created_us: now_micros(),
                },
            )
        })?;
    }
    registry.set_password(OPERATOR_EMAIL, OPERATOR_PASSWORD)?;
    Ok(())
}

/// Fills the data folder's disk for a while, frees it, and restarts the server as an
/// operator would (a failed WAL write stops acknowledgements until a restart).
async fn fill_disk(
    disk: &SmallDisk,
    server: &mut ServerProcess,
    load: &Load,
) -> anyhow::Result<String> {
    let mount = disk.mount.clone();
    let filled = tokio::task::spawn_blocking(move || SmallDisk::fill(mount.as_deref()))
        .await
        .context("filling the disk")?;
    let Some(filler) = filled else {
        return Ok("skipped: could not create the filler file".into());
    };
    load.disk_full.store(true, Ordering::Relaxed);
    // Full until the WAL's next write fails (/healthz turns 503), for 5 s at least and 20 s
    // at most: light traffic can go on filling the WAL's last page for a while.
    let began = Instant::now();
    let mut wal_failed_after = None;
    while began.elapsed() < Duration::from_secs(20)
        && (wal_failed_after.is_none() || began.elapsed() < Duration::from_secs(5))
    {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if wal_failed_after.is_none()
            && http(server.ports.portal, "GET", "/healthz", &[], None)
                .await
                .is_ok_and(|answer| answer.status == 503)
        {
            wal_failed_after = Some(began.elapsed());
        }
    }
    let held = began.elapsed();
    let survived = server.exited().is_none();
    std::fs::remove_file(&filler).context("removing the filler file")?;
    server.kill();
    load.disk_full.store(false, Ordering::Relaxed);
    let restart = server.start(None).await?;
    let wal = match wal_failed_after {
        Some(after) => format!(
            "a WAL write failed after {:.1} s and /healthz said 503",
            after.as_secs_f64()
        ),
        None => "no WAL write failed (too little traffic to need a new page)".to_owned(),
    };
    Ok(format!(
        "full for {:.0} s: {wal}; server {}; freed, restarted in {:.1} s",
        held.as_secs_f64(),
        if survived { "kept running" } else { "exited" },
        restart.as_secs_f64()
    ))
}

fn tasks_done(registry: &Registry, tasks: &[i64]) -> anyhow::Result<bool> {
    Ok(task_states(registry, tasks)?
        .values()
        .all(|state| matches!(state, TaskProgress::Succeeded | TaskProgress::Failed)))
}

fn task_states(registry: &Registry, tasks: &[i64]) -> anyhow::Result<HashMap<i64, TaskProgress>> {
    let mut states = HashMap::new();
    for &id in tasks {
        if let Some(task) = registry.task(id)? {
            states.insert(id, task.state);
        }
    }
    Ok(states)
}

fn check_tasks(
    report: &mut Report,
    tasks: &[i64],
    states: &HashMap<i64, TaskProgress>,
    runs: &HashMap<u64, u32>,
) {
    let succeeded = tasks
        .iter()
        .filter(|id| states.get(id) == Some(&TaskProgress::Succeeded))
        .count();
    let twice = runs.values().filter(|&&n| n > 1).count();
    let never = tasks
        .iter()
        .filter(|&&id| !u64::try_from(id).is_ok_and(|id| runs.contains_key(&id)))
        .count();
    report.check(
        "every task ran exactly once",
        twice == 0 && never == 0 && succeeded == tasks.len(),
        format!(
            "{} queued, {succeeded} succeeded, {never} never ran, {twice} ran more than once",
            tasks.len()
        ),
    );
}

/// Opens the stopped server's data folder and checks it against the gateways' record.
async fn verify_data_folder(
    report: &mut Report,
    data: &Path,
    acknowledged: &HashMap<(Serial, i64), u32>,
) -> anyhow::Result<()> {
    let folder = DataFolder::open(data).await?;
    let store = Arc::clone(&folder.store);
    store.persist().await?;
    store.roll_up().await?;
    store.compact().await?;
    let now = now_micros();
    let grace = 3_600 * 1_000_000;
    // A UTC day is closed (rolled up, compacted whole) an hour after it ends.
    let closed_before = (now - grace).div_euclid(MICROS_PER_DAY) * MICROS_PER_DAY;
    let mut files_per_day: HashMap<(String, i32), usize> = HashMap::new();
    for file in &store.manifest().files {
        if file.day.start_micros() < closed_before {
            *files_per_day
                .entry((format!("{:?}", file.table), file.day.days_since_epoch()))
                .or_default() += 1;
        }
    }
    let stuck = files_per_day.values().filter(|&&n| n > 1).count();
    report.check(
        "compaction: one file per closed day",
        stuck == 0,
        format!(
            "{} closed (table, day) pairs, {stuck} with more than one file",
            files_per_day.len()
        ),
    );

    // Every reading is read back: no result cap, no hurry.
    let mut config = QueryConfig::new(data.join("tmp").join("query"));
    config.max_result_rows = u64::MAX;
    config.max_result_bytes = u64::MAX;
    config.timeout = Duration::from_secs(3600);
    let engine = QueryEngine::start(Arc::clone(&store), Arc::clone(&folder.registry), config)?;
    let scope = Scope::Fleet;
    let stored = engine
        .sql(&scope, "SELECT serial, time, energy_j FROM readings")
        .await?;
    let mut seen: HashSet<(Serial, i64)> = HashSet::with_capacity(stored.rows());
    let (mut duplicates, mut wrong_value, mut found) = (0u64, 0u64, 0u64);
    for batch in &stored.batches {
        let serials = batch.column(0).as_primitive::<UInt64Type>();
        let times = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        let energies = batch.column(2).as_primitive::<UInt32Type>();
        for i in 0..batch.num_rows() {
            // Stored serials are 12-digit: every one makes a Serial.
            let Some(serial) = Serial::new(serials.value(i)) else {
                continue;
            };
            let key = (serial, times.value(i));
            if !seen.insert(key) {
                duplicates += 1;
            }
            if let Some(&energy) = acknowledged.get(&key) {
                found += 1;
                if energy != energies.value(i) {
                    wrong_value += 1;
                }
            }
        }
    }
    let missing = acknowledged.len() as u64 - found.min(acknowledged.len() as u64);
    let unacknowledged_stored = seen.len() as u64 - found.min(seen.len() as u64);
    report.check(
        "acknowledged readings: all there, once",
        missing == 0 && duplicates == 0 && wrong_value == 0 && !acknowledged.is_empty(),
        format!(
            "{} acknowledged, {missing} missing, {duplicates} stored twice, {wrong_value} with \
             another value; {unacknowledged_stored} stored but never acknowledged (acks lost in a kill)",
            acknowledged.len()
        ),
    );

    // Hourly system rollups against the raw readings, over the closed days (a reading
    // stamped at the hour belongs to the hour before: its interval ends then).
    let cutoff = closed_before;
    let recomputed = engine
        .sql(
            &scope,
            &format!(
                "SELECT system_id, CAST(date_trunc('hour', time - INTERVAL '1 microsecond') AS BIGINT),
                        CAST(sum(energy_j) AS BIGINT)
                   FROM readings WHERE CAST(time AS BIGINT) <= {cutoff} AND system_id > 0 GROUP BY 1, 2"
            ),
        )
        .await?;
    let rolled = engine
        .sql(
            &scope,
            &format!(
                "SELECT system_id, CAST(time AS BIGINT), CAST(sum(energy_j) AS BIGINT)
                   FROM rollup_hour WHERE device_id = 0 AND CAST(time AS BIGINT) < {cutoff} GROUP BY 1, 2"
            ),
        )
        .await?;
    let by_hour = |answer: &sunfleet_query::SqlAnswer| -> HashMap<(u32, i64), i64> {
        let mut out = HashMap::new();
        for batch in &answer.batches {
            let systems = batch.column(0).as_primitive::<UInt32Type>();
            let hours = batch.column(1).as_primitive::<Int64Type>();
            let energy = batch.column(2).as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                if !energy.is_null(i) {
                    out.insert((systems.value(i), hours.value(i)), energy.value(i));
                }
            }
        }
        out
    };
    let (recomputed, rolled) = (by_hour(&recomputed), by_hour(&rolled));
    let differing = recomputed
        .iter()
        .filter(|(key, energy)| rolled.get(key).copied().unwrap_or(0) != **energy)
        .count()
        + rolled
            .keys()
            .filter(|key| !recomputed.contains_key(key))
            .count();
    report.check(
        "hourly rollups = raw readings",
        differing == 0 && !recomputed.is_empty(),
        format!(
            "{} system-hours of closed days compared, {differing} differ",
            recomputed.len()
        ),
    );
    Ok(())
}

/// A portal user: signs in and reads pages until the run ends.
async fn portal_user(portal: u16, load: Arc<Load>, systems: u32, seed: u64) {
    let mut dice = Dice(seed);
    let mut session: Option<String> = None;
    while !load.stop.load(Ordering::Relaxed) {
        let Some(cookie) = session.clone() else {
            session = sign_in(portal, &load).await;
            if session.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        let system = 1 + dice.next() % u64::from(systems);
        let path = match dice.next() % 5 {
            0 => "/".to_owned(),
            1 => "/systems".to_owned(),
            2 => "/alerts".to_owned(),
            3 => format!("/systems/{system}"),
            _ => format!("/systems/{system}/graph"),
        };
        match get(portal, &path, &cookie, &load).await {
            Some(303) => session = None,
            Some(_) => {
                load.pages.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An analyst: runs SQL through the portal's API until the run ends.
async fn sql_analyst(portal: u16, load: Arc<Load>, systems: u32) {
    let mut session: Option<(String, String)> = None;
    let mut round = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        let Some((cookie, csrf)) = session.clone() else {
            session = match sign_in(portal, &load).await {
                Some(cookie) => csrf_token(portal, &cookie).await.map(|csrf| (cookie, csrf)),
                None => None,
            };
            if session.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        round += 1;
        let system = 1 + round % u64::from(systems);
        let sql = match round % 3 {
            0 => format!(
                "SELECT date_trunc('hour', time) AS hour, sum(energy_j) FROM readings \
                 WHERE system_id = {system} GROUP BY 1 ORDER BY 1"
            ),
            1 => "SELECT system_id, count(*) FROM readings GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
                .to_owned(),
            _ => "SELECT count(*) FROM rollup_hour".to_owned(),
        };
        let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
        match http(
            portal,
            "POST",
            "/api/sql",
            &headers,
            Some(("text/plain", &sql)),
        )
        .await
        {
            Ok(answer) => {
                classify(answer.status, "POST /api/sql", &load);
                if answer.status == 401 || answer.status == 403 {
                    session = None;
                } else if answer.status < 500 {
                    load.sql.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                load.unavailable.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Counts a 5xx answer (kept apart while the disk is full, where a refusal is expected).
fn classify(status: u16, what: &str, load: &Load) {
    if status >= 500 {
        if load.disk_full.load(Ordering::Relaxed) {
            load.server_errors_disk_full.fetch_add(1, Ordering::Relaxed);
        } else {
            load.server_errors
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{what}: {status}"));
        }
    }
}

async fn get(portal: u16, path: &str, cookie: &str, load: &Load) -> Option<u16> {
    match http(portal, "GET", path, &[("Cookie", cookie)], None).await {
        Ok(answer) => {
            classify(answer.status, &format!("GET {path}"), load);
            Some(answer.status)
        }
        Err(_) => {
            load.unavailable.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Signs the operator in through the form; the session cookie.
async fn sign_in(portal: u16, load: &Load) -> Option<String> {
    let Ok(form) = http(portal, "GET", "/signin", &[], None).await else {
        load.unavailable.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    classify(form.status, "GET /signin", load);
    let token = hidden_field(&form.body, "form_token")?;
    let cookies = form.cookies.join("; ");
    let body = format!(
        "email={}&password={}&form_token={token}&next=%2F",
        OPERATOR_EMAIL.replace('@', "%40"),
        OPERATOR_PASSWORD.replace(' ', "+")
    );
    let answer = http(
        portal,
        "POST",
        "/signin",
        &[("Cookie", &cookies)],
        Some(("application/x-www-form-urlencoded", &body)),
    )
    .await
    .ok()?;
    classify(answer.status, "POST /signin", load);
    answer
        .cookies
        .into_iter()
        .find(|c| c.starts_with("sunfleet_session=") && c.len() > "sunfleet_session=".len())
}

async fn csrf_token(portal: u16, cookie: &str) -> Option<String> {
    let page = http(portal, "GET", "/privacy", &[("Cookie", cookie)], None)
        .await
        .ok()?;
    hidden_field(&page.body, "csrf_token")
}

fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

struct HttpAnswer {
    status: u16,
    /// `name=value` of each Set-Cookie.
    cookies: Vec<String>,
    body: String,
}

/// One HTTP/1.1 request on its own connection (enough for a load generator on loopback).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> std::io::Result<HttpAnswer> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((LOOPBACK, port)).await?;
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some((content_type, text)) = body {
            request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                text.len()
            ));
        }
        request.push_str("\r\n");
        if let Some((_, text)) = body {
            request.push_str(text);
        }
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))?;
        let cookies = head
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie").then(|| {
                    value
                        .trim()
                        .split(';')
                        .next()
                        .unwrap_or_default()
                        .to_owned()
                })
            })
            .collect();
        Ok(HttpAnswer {
            status,
            cookies,
            body: body.to_owned(),
        })
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .map_err(|_| std::io::Error::other("no answer within 60 s"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_are_seeded_and_stay_in_range() {
        let (mut a, mut b) = (Dice(7), Dice(7));
        for _ in 0..1000 {
            let x = a.between(0.5, 1.5);
            assert_eq!(x, b.between(0.5, 1.5));
            assert!((0.5..1.5).contains(&x));
        }
    }

    #[test]
    fn a_hidden_field_is_read_from_a_page() {
        let page = r#"<input type="hidden" name="csrf_token" value="abc123">"#;
        assert_eq!(hidden_field(page, "csrf_token").as_deref(), Some("abc123"));
        assert_eq!(hidden_field(page, "form_token"), None);
    }
}
