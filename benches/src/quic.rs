//! `quic-ingest` and `quic-idle`: the ingest server in a process of its own (this binary
//! run as `quic-server`), thousands of gateways connecting to it over real QUIC with mutual
//! TLS from this process, on the same machine.
//!
//! `quic-ingest` streams a generated fleet-day as fast as the acks allow and reports
//! acknowledged (durable) microinverter readings per second, ack latency, and the server's
//! CPU seconds per million readings. `quic-idle` holds idle connections and reports the
//! server's memory per connection.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use sunfleet_engine::directory::DeviceDirectory;
use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::registry::Registry;
use sunfleet_engine::store::{Store, StoreConfig};
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::gateway::UploadKind;
use sunfleet_fixtures::stream::stream_system;
use sunfleet_fixtures::{Fleet, FleetConfig};
use sunfleet_ingest::frame;
use sunfleet_ingest::gateway::{
    GatewayConnection, GatewayIdentity, GatewayOptions, ServerMessage, client_config,
    client_endpoint,
};
use sunfleet_ingest::server::{IngestConfig, IngestServer};
use sunfleet_ingest::tls::{FleetCa, ServerIdentity};
use tokio::sync::{Mutex, Semaphore};

use crate::machine_description;

const REGISTRY: &str = "registry.sqlite3";

/// The server role: runs until its standard input closes, then prints its counters.
pub fn serve(data: PathBuf, listen: SocketAddr) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let registry = Arc::new(Registry::open(data.join(REGISTRY))?);
        let directory = DeviceDirectory::new();
        registry.load_directory(&directory)?;
        let store = Arc::new(Store::open(StoreConfig::new(&data), directory).await?);
        let (identity, _) =
            ServerIdentity::load_or_create(&data.join("tls"), &["localhost".into()])?;
        let (stop_maintenance, stop_rx) = tokio::sync::watch::channel(false);
        let maintenance =
            tokio::spawn(Arc::clone(&store).run_maintenance(Duration::from_millis(500), stop_rx));
        let server = IngestServer::start(
            IngestConfig::new(listen),
            &identity,
            Arc::clone(&store),
            registry,
        )
        .await?;
        println!("listening {}", server.local_addr()?);
        std::io::stdout().flush()?;
        // The parent closes our stdin when it is done.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                line.clear();
            }
        })
        .await?;
        let stats = server.stats();
        server.shutdown().await?;
        let _ = stop_maintenance.send(true);
        let _ = maintenance.await;
        println!("stats {stats:?}");
        anyhow::Ok(())
    })
}

/// The server child process.
struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
    clock_ticks: f64,
}

impl ServerProcess {
    fn start(data: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["quic-server", "--data"])
            .arg(data)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the server process")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().context("the server said nothing")??;
        let addr = first
            .strip_prefix("listening ")
            .context("unexpected first line from the server")?
            .parse()?;
        // The rest of its output (the final stats) goes to our stderr.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("server: {line}");
            }
        });
        let clock_ticks = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0);
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            addr,
            clock_ticks,
        })
    }

    /// CPU seconds the server has used (user + system).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) end with ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        (ticks(11) + ticks(12)) / self.clock_ticks
    }

    fn memory_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "the server exited with {status}");
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The generated fleet of `gateways` systems, written into a fresh data folder's registry,
/// with a fleet CA there.
fn prepare(gateways: u32, seed: u64, dir: &Path) -> anyhow::Result<(Fleet, FleetCa)> {
    say!("machine: {}", machine_description());
    let start = CivilDate::from_ymd(2026, 6, 1).context("start date")?;
    let fleet = Fleet::new(FleetConfig::new(seed, gateways, start, 1));
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let began = Instant::now();
    let registry = Registry::open(dir.join(REGISTRY))?;
    sunfleet_fixtures::seed::seed_registry(&registry, &fleet)?;
    say!(
        "registry: {} systems seeded in {:.1} s",
        fleet.system_count(),
        began.elapsed().as_secs_f64()
    );
    let (ca, _) = FleetCa::load_or_create(&dir.join("tls"))?;
    Ok((fleet, ca))
}

/// Each gateway's QUIC client configuration, with a certificate of its own.
fn gateway_configs(
    fleet: &Fleet,
    ca: &FleetCa,
) -> anyhow::Result<Vec<(Serial, quinn::ClientConfig)>> {
    let began = Instant::now();
    let options = GatewayOptions::default();
    let configs = fleet
        .systems()
        .map(|spec| {
            let serial = spec.gateway.serial;
            let identity = GatewayIdentity {
                serial,
                ca_pem: ca.cert_pem().to_owned(),
                certificate: ca.issue_gateway(serial)?,
            };
            Ok((serial, client_config(&identity, &options)?))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    say!(
        "certificates: {} gateway certificates issued in {:.1} s",
        configs.len(),
        began.elapsed().as_secs_f64()
    );
    Ok(configs)
}

/// Gateways per client UDP socket: real gateways each have their own; sharing one socket
/// among thousands makes its receive buffer and driver task the bottleneck.
const GATEWAYS_PER_SOCKET: usize = 500;

/// Connects every gateway, `concurrency` handshakes at a time.
async fn connect_all(
    server: SocketAddr,
    configs: Vec<(Serial, quinn::ClientConfig)>,
    concurrency: usize,
) -> anyhow::Result<Vec<GatewayConnection>> {
    let began = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency));
    let options = Arc::new(GatewayOptions {
        keep_alive: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(120),
        ..GatewayOptions::default()
    });
    let sockets = configs.len().div_ceil(GATEWAYS_PER_SOCKET).max(1);
    let endpoints = (0..sockets)
        .map(|_| client_endpoint("127.0.0.1:0".parse()?).map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tasks: Vec<_> = configs
        .into_iter()
        .enumerate()
        .map(|(i, (serial, config))| {
            let endpoint = endpoints[i / GATEWAYS_PER_SOCKET].clone();
            let gate = Arc::clone(&gate);
            let options = Arc::clone(&options);
            tokio::spawn(async move {
                let _permit = gate.acquire().await?;
                anyhow::Ok(
                    GatewayConnection::connect(&endpoint, server, config, serial, &options).await?,
                )
            })
        })
        .collect();
    let mut connections = Vec::with_capacity(tasks.len());
    for task in tasks {
        connections.push(task.await??);
    }
    let secs = began.elapsed().as_secs_f64();
    say!(
        "connections: {} gateways connected in {secs:.1} s ({:.0} handshakes/s, {concurrency} at a time)",
        connections.len(),
        connections.len() as f64 / secs
    );
    Ok(connections)
}

pub struct IngestOptions {
    pub gateways: u32,
    pub seed: u64,
    /// Batches each gateway may have unacknowledged.
    pub window: usize,
    /// Consecutive 5-minute uploads merged into one batch (1: live uploads as generated).
    pub intervals_per_batch: usize,
    pub connect_concurrency: usize,
    pub dir: Option<PathBuf>,
}

/// A gateway's day: encoded batch frames and their microinverter reading counts.
struct GatewayDay {
    frames: Vec<(Vec<u8>, u64)>,
}

fn merge(batches: &[Arc<TelemetryBatch>]) -> TelemetryBatch {
    let mut merged = (*batches[0]).clone();
    for b in &batches[1..] {
        let m = &mut merged.micro;
        m.serial.extend_from_slice(&b.micro.serial);
        m.time_us.extend_from_slice(&b.micro.time_us);
        m.interval_s.extend_from_slice(&b.micro.interval_s);
        m.energy_j.extend_from_slice(&b.micro.energy_j);
        m.ac_power_w.extend_from_slice(&b.micro.ac_power_w);
        m.dc_voltage_mv.extend_from_slice(&b.micro.dc_voltage_mv);
        m.dc_current_ma.extend_from_slice(&b.micro.dc_current_ma);
        m.ac_voltage_mv.extend_from_slice(&b.micro.ac_voltage_mv);
        m.ac_frequency_mhz
            .extend_from_slice(&b.micro.ac_frequency_mhz);
        m.temperature_c.extend_from_slice(&b.micro.temperature_c);
        m.status.extend_from_slice(&b.micro.status);
        merged.meters.extend_from_slice(&b.meters);
        merged.batteries.extend_from_slice(&b.batteries);
        merged.events.extend_from_slice(&b.events);
        merged.created_us = b.created_us;
    }
    merged
}

/// Every gateway's day of uploads (first transmissions only), numbered in send order and
/// encoded, so the timed part measures the network and the server, not the generator.
fn fleet_day(fleet: &Fleet, intervals_per_batch: usize) -> anyhow::Result<Vec<GatewayDay>> {
    let began = Instant::now();
    let mut days = Vec::new();
    for spec in fleet.systems() {
        let mut uploads = Vec::new();
        stream_system(fleet, spec, |u| {
            if u.kind != UploadKind::Duplicate {
                uploads.push(Arc::clone(&u.batch));
            }
        });
        let mut frames = Vec::new();
        for (i, chunk) in uploads.chunks(intervals_per_batch.max(1)).enumerate() {
            let mut batch = merge(chunk);
            batch.seq = BatchSeq(i as u64 + 1);
            let readings = batch.micro.len() as u64;
            frames.push((frame::encode_batch(&batch)?, readings));
        }
        days.push(GatewayDay { frames });
    }
    let readings: u64 = days.iter().flat_map(|d| &d.frames).map(|f| f.1).sum();
    let batches: usize = days.iter().map(|d| d.frames.len()).sum();
    let bytes: usize = days.iter().flat_map(|d| &d.frames).map(|f| f.0.len()).sum();
    say!(
        "workload: {batches} batches, {readings} microinverter readings ({:.1} per batch, {:.1} frame bytes per reading), generated in {:.1} s",
        readings as f64 / batches.max(1) as f64,
        bytes as f64 / readings.max(1) as f64,
        began.elapsed().as_secs_f64()
    );
    Ok(days)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

pub fn run_ingest(options: IngestOptions) -> anyhow::Result<()> {
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench-quic"));
    let (fleet, ca) = prepare(options.gateways, options.seed, &dir)?;
    let days = fleet_day(&fleet, options.intervals_per_batch)?;
    let configs = gateway_configs(&fleet, &ca)?;
    let server = ServerProcess::start(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let window = options.window.max(1);
    runtime.block_on(async {
        let connections =
            connect_all(server.addr, configs, options.connect_concurrency).await?;
        let idle_rss = server.memory_kib("VmRSS:");
        let cpu_before = server.cpu_seconds();
        let acked_readings = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(Mutex::new(Vec::<u32>::new()));
        let began = Instant::now();
        let mut tasks = Vec::new();
        for (connection, day) in connections.into_iter().zip(days) {
            let acked_readings = Arc::clone(&acked_readings);
            let latencies = Arc::clone(&latencies);
            tasks.push(tokio::spawn(async move {
                let GatewayConnection {
                    connection,
                    mut sender,
                    mut receiver,
                    ..
                } = connection;
                let permits = Arc::new(Semaphore::new(window));
                let sent: Arc<std::sync::Mutex<VecDeque<(u64, Instant, u64)>>> =
                    Arc::new(std::sync::Mutex::new(VecDeque::new()));
                let total = day.frames.len() as u64;
                let reader_permits = Arc::clone(&permits);
                let reader_sent = Arc::clone(&sent);
                let reader = tokio::spawn(async move {
                    // If the connection fails, the sender must not wait for acks forever.
                    struct CloseOnExit(Arc<Semaphore>);
                    impl Drop for CloseOnExit {
                        fn drop(&mut self) {
                            self.0.close();
                        }
                    }
                    let _close = CloseOnExit(Arc::clone(&reader_permits));
                    let mut local = Vec::new();
                    let mut acked = 0;
                    while acked < total {
                        match receiver.next().await? {
                            Some(ServerMessage::Ack(seq)) => {
                                let now = Instant::now();
                                let mut sent = reader_sent
                                    .lock()
                                    .map_err(|_| anyhow::anyhow!("poisoned"))?;
                                while sent.front().is_some_and(|(s, _, _)| *s <= seq.0) {
                                    if let Some((_, at, readings)) = sent.pop_front() {
                                        local.push((now - at).as_micros() as u32);
                                        acked_readings.fetch_add(readings, Ordering::Relaxed);
                                        reader_permits.add_permits(1);
                                    }
                                }
                                acked = acked.max(seq.0);
                            }
                            Some(ServerMessage::Error { code, message }) => {
                                anyhow::bail!("server error {code:?}: {message}")
                            }
                            Some(_) => {}
                            None => anyhow::bail!("server ended the stream"),
                        }
                    }
                    latencies.lock().await.extend(local);
                    anyhow::Ok(())
                });
                for (seq, (bytes, readings)) in day.frames.iter().enumerate() {
                    let Ok(permit) = permits.acquire().await else {
                        break; // the reader failed; its error is reported below
                    };
                    permit.forget();
                    sent.lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .push_back((seq as u64 + 1, Instant::now(), *readings));
                    sender.send_raw(bytes).await?;
                }
                reader.await??;
                connection.close(0u32.into(), b"done");
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let secs = began.elapsed().as_secs_f64();
        let cpu = server.cpu_seconds() - cpu_before;
        let readings = acked_readings.load(Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *latencies.lock().await);
        latencies.sort_unstable();
        say!(
            "durable ingest over QUIC: {:.0} microinverter readings/s acknowledged ({readings} in {secs:.1} s; {} gateways, {window} batches in flight each, {} interval(s) per batch)",
            readings as f64 / secs,
            options.gateways,
            options.intervals_per_batch
        );
        say!(
            "ack latency (send → durable ack): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} batches",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0),
            latencies.len()
        );
        say!(
            "server CPU: {cpu:.1} s over {secs:.1} s ({:.2} CPU-seconds per million readings; {:.0} % of the 2 cores)",
            cpu / (readings as f64 / 1e6),
            cpu / secs / 2.0 * 100.0
        );
        say!(
            "server memory: {:.0} MiB resident with every gateway connected and idle, {:.0} MiB peak",
            idle_rss as f64 / 1024.0,
            server.memory_kib("VmHWM:") as f64 / 1024.0
        );
        anyhow::Ok(())
    })?;
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

pub struct IdleOptions {
    pub gateways: u32,
    pub seed: u64,
    pub connect_concurrency: usize,
    pub hold_seconds: u64,
    pub dir: Option<PathBuf>,
}

pub fn run_idle(options: IdleOptions) -> anyhow::Result<()> {
    let dir = options
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench-quic-idle"));
    let (fleet, ca) = prepare(options.gateways, options.seed, &dir)?;
    let configs = gateway_configs(&fleet, &ca)?;
    let server = ServerProcess::start(&dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = server.memory_kib("VmRSS:");
        let connections =
            connect_all(server.addr, configs, options.connect_concurrency).await?;
        tokio::time::sleep(Duration::from_secs(options.hold_seconds)).await;
        let after = server.memory_kib("VmRSS:");
        let cpu = server.cpu_seconds();
        say!(
            "idle connections: {} · server resident memory {:.0} MiB before, {:.0} MiB with them ({:.1} KiB per connection) · server CPU so far {cpu:.1} s",
            connections.len(),
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            (after.saturating_sub(before)) as f64 / connections.len().max(1) as f64
        );
        for c in &connections {
            c.connection.close(0u32.into(), b"done");
        }
        anyhow::Ok(())
    })?;
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
