//! The live fleet simulator: every system of the generated fleet becomes a gateway with its
//! own certificate and its own QUIC connection, producing readings in real time or
//! accelerated, holding them in an outbox until acknowledged, and running the tasks the
//! server sends like a real gateway would.
//!
//! The generator ([`GatewaySim`]) decides what is measured and when it is uploaded
//! (including outages with backfill, duplicate retransmits and late batches); this module
//! numbers batches in send order (the protocol's rule), moves them over the wire and
//! applies tasks to the simulated system.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::telemetry::{
    ConsumptionMeterMode, DeviceEvent, EventKind, EventState, TelemetryBatch, micro_status,
};
use sunfleet_engine::time::CivilDate;
use sunfleet_fixtures::gateway::{GatewaySim, ReplacedKind, UploadKind};
use sunfleet_fixtures::world::SystemSpec;
use sunfleet_fixtures::{Fleet, FleetConfig};
use sunfleet_ingest::frame::{ErrorCode, TaskKind, TaskState};
use sunfleet_ingest::gateway::{
    GatewayConnection, GatewayError, GatewayIdentity, GatewayOptions, GatewaySender, Outbox,
    ServerMessage, client_config, client_endpoint,
};
use sunfleet_ingest::tls::FleetCa;
use tokio::sync::{Semaphore, mpsc, watch};

/// First day of the demo fleet's window: the registry seeded by `sunfleet serve` and the
/// simulator must describe the same fleet.
pub const DEMO_FLEET_START: (i32, u32, u32) = (2026, 6, 1);

/// The demo fleet of `systems` systems.
pub fn demo_fleet(seed: u64, systems: u32) -> Fleet {
    let (y, m, d) = DEMO_FLEET_START;
    let start = CivilDate::from_ymd(y, m, d).unwrap_or(CivilDate::from_days_since_epoch(0));
    Fleet::new(FleetConfig::new(seed, systems, start, 1))
}

/// How the simulator runs.
#[derive(Clone)]
pub struct SimulatorConfig {
    pub fleet: Arc<Fleet>,
    /// The systems whose gateways run; `None`: every system of `fleet`.
    pub sites: Option<Vec<SystemSpec>>,
    pub server: SocketAddr,
    /// The name the server certificate carries.
    pub server_name: String,
    /// Signs each simulated gateway's certificate.
    pub ca: Arc<FleetCa>,
    /// Simulated seconds per wall-clock second.
    pub speed: f64,
    /// Simulated time at the start (UTC microseconds).
    pub start_us: i64,
    /// How often each gateway looks at its clock.
    pub tick: Duration,
    /// Handshakes in progress at once.
    pub connect_concurrency: usize,
    /// How long a rebooting gateway stays away.
    pub reboot_pause: Duration,
    /// Where acknowledged readings and run tasks are recorded (a soak run checks the data
    /// folder against it); none: only counted.
    pub ledger: Option<Arc<Ledger>>,
}

impl SimulatorConfig {
    pub fn new(fleet: Arc<Fleet>, server: SocketAddr, ca: Arc<FleetCa>) -> Self {
        Self {
            fleet,
            sites: None,
            server,
            server_name: "localhost".into(),
            ca,
            speed: 1.0,
            start_us: sunfleet_engine::time::now_micros(),
            tick: Duration::from_secs(1),
            connect_concurrency: 256,
            reboot_pause: Duration::from_secs(2),
            ledger: None,
        }
    }
}

/// What the server acknowledged to the simulated gateways, reading by reading, and which
/// tasks the gateways ran.
#[derive(Debug, Default)]
pub struct Ledger {
    /// (microinverter serial, reading time) → energy (J) of every acknowledged reading.
    readings: Mutex<HashMap<(Serial, i64), u32>>,
    /// Task id → how many times a gateway ran it.
    task_runs: Mutex<HashMap<u64, u32>>,
}

impl Ledger {
    fn acknowledged(&self, batch: &TelemetryBatch) {
        let mut readings = self.readings.lock().unwrap_or_else(PoisonError::into_inner);
        for reading in batch.micro.rows() {
            readings.insert((reading.serial, reading.time_us), reading.energy_j);
        }
    }

    fn task_ran(&self, id: u64) {
        *self
            .task_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id)
            .or_default() += 1;
    }

    /// Every acknowledged microinverter reading, (serial, time) → energy (J), handed over:
    /// the record can hold millions of readings, so it is moved out rather than copied.
    pub fn take_readings(&self) -> HashMap<(Serial, i64), u32> {
        std::mem::take(&mut *self.readings.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Task id → how many times a gateway ran it.
    pub fn task_runs(&self) -> HashMap<u64, u32> {
        self.task_runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Something a test or an operator does to a simulated system from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// A microinverter trips its ground-fault interrupt ([`micro_status::GFI_TRIPPED`]) or
    /// sees low DC insulation resistance ([`micro_status::DC_RESISTANCE_LOW`]) and stops
    /// until a task clears it.
    Latch { micro: Serial, status: u16 },
    /// The installer swaps the site's gateway for gateway `new` (R3): the old gateway's
    /// connection closes and the site reconnects with the new gateway's certificate. What
    /// the old gateway had not delivered yet is delivered by the new one, so nothing
    /// measured in between is lost.
    ReplaceGateway { new: Serial },
}

#[derive(Debug, Default)]
struct Counters {
    readings_sent: AtomicU64,
    readings_acked: AtomicU64,
    batches_sent: AtomicU64,
    batches_acked: AtomicU64,
    duplicates_sent: AtomicU64,
    in_flight: AtomicI64,
    connected: AtomicUsize,
    connections: AtomicU64,
    refused: AtomicU64,
    tasks_run: AtomicU64,
    dropped: AtomicU64,
}

impl Counters {
    fn progress(&self, gateways: usize, clock: SimClock) -> Progress {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Progress {
            gateways,
            connected: self.connected.load(Ordering::Relaxed),
            connections: load(&self.connections),
            refused: load(&self.refused),
            batches_sent: load(&self.batches_sent),
            batches_acked: load(&self.batches_acked),
            duplicates_sent: load(&self.duplicates_sent),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            readings_sent: load(&self.readings_sent),
            readings_acked: load(&self.readings_acked),
            tasks_run: load(&self.tasks_run),
            dropped: load(&self.dropped),
            sim_now_us: clock.now_us(),
        }
    }
}

/// What the simulator has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    pub gateways: usize,
    pub connected: usize,
    /// Connections made, reconnections included.
    pub connections: u64,
    /// Gateways the server turned away for good (unknown, retired).
    pub refused: u64,
    pub batches_sent: u64,
    pub batches_acked: u64,
    /// Batches sent again (lost acks, retransmits after an outage).
    pub duplicates_sent: u64,
    /// Batches made and not yet acknowledged.
    pub in_flight: i64,
    pub readings_sent: u64,
    pub readings_acked: u64,
    pub tasks_run: u64,
    /// Batches dropped because a gateway's outbox was full.
    pub dropped: u64,
    /// Simulated time now (UTC microseconds).
    pub sim_now_us: i64,
}

/// Simulated time.
#[derive(Debug, Clone, Copy)]
struct SimClock {
    wall_start: Instant,
    start_us: i64,
    speed: f64,
}

impl SimClock {
    fn now_us(&self) -> i64 {
        self.start_us + (self.wall_start.elapsed().as_secs_f64() * self.speed * 1e6) as i64
    }
}

/// A running simulator.
pub struct Simulator {
    counters: Arc<Counters>,
    clock: SimClock,
    stop: watch::Sender<bool>,
    gateways: Vec<tokio::task::JoinHandle<()>>,
    /// By gateway serial; a replaced gateway's site answers to both serials.
    controls: Mutex<HashMap<Serial, mpsc::Sender<Control>>>,
}

impl Simulator {
    /// Starts one gateway per system of the fleet.
    pub async fn start(config: SimulatorConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.speed > 0.0 && config.speed.is_finite(),
            "speed must be positive, got {}",
            config.speed
        );
        let endpoint = client_endpoint("127.0.0.1:0".parse()?).context("client endpoint")?;
        let clock = SimClock {
            wall_start: Instant::now(),
            start_us: config.start_us,
            speed: config.speed,
        };
        let counters = Arc::new(Counters::default());
        let (stop, stop_rx) = watch::channel(false);
        let handshakes = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
        let mut gateways = Vec::new();
        let mut controls = HashMap::new();
        let sites: Box<dyn Iterator<Item = SystemSpec>> = match &config.sites {
            Some(sites) => Box::new(sites.iter().cloned()),
            None => Box::new(config.fleet.systems()),
        };
        for spec in sites {
            let serial = spec.gateway.serial;
            let (control_tx, control_rx) = mpsc::channel(16);
            controls.insert(serial, control_tx);
            let identity = GatewayIdentity {
                serial,
                ca_pem: config.ca.cert_pem().to_owned(),
                certificate: config.ca.issue_gateway(serial)?,
            };
            let options = GatewayOptions {
                server_name: config.server_name.clone(),
                firmware: spec.gateway.firmware.to_owned(),
                ..GatewayOptions::default()
            };
            let quic = client_config(&identity, &options)?;
            let gateway = SimulatedGateway {
                sim: GatewaySim::new(config.fleet.config().seed, spec, clock.now_us()),
                outbox: Outbox::new(100_000, 1),
                wire_seq_of: VecDeque::new(),
                finished_tasks: HashMap::new(),
                grid_profile: None,
                pending_events: Vec::new(),
                rebooting: false,
                counters: Arc::clone(&counters),
                ledger: config.ledger.clone(),
            };
            let link = Link {
                endpoint: endpoint.clone(),
                server: config.server,
                quic,
                ca: Arc::clone(&config.ca),
                options,
                handshakes: Arc::clone(&handshakes),
                reboot_pause: config.reboot_pause,
            };
            gateways.push(tokio::spawn(gateway.run(
                link,
                clock,
                config.tick,
                stop_rx.clone(),
                control_rx,
            )));
        }
        Ok(Self {
            counters,
            clock,
            stop,
            gateways,
            controls: Mutex::new(controls),
        })
    }

    pub fn progress(&self) -> Progress {
        self.counters.progress(self.gateways.len(), self.clock)
    }

    /// Acts on a simulated system from outside, through its gateway's serial (after a
    /// gateway replacement, either serial).
    pub async fn control(&self, gateway: Serial, control: Control) -> anyhow::Result<()> {
        let sender = self
            .controls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&gateway)
            .cloned()
            .with_context(|| format!("no simulated gateway {gateway}"))?;
        sender
            .send(control)
            .await
            .map_err(|_| anyhow::anyhow!("simulated gateway {gateway} has stopped"))?;
        if let Control::ReplaceGateway { new } = control {
            self.controls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(new, sender);
        }
        Ok(())
    }

    /// Stops making readings, lets every gateway send what it holds and wait for the acks
    /// (at most `drain`), then closes the connections.
    pub async fn stop(self, drain: Duration) -> Progress {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + drain;
        let count = self.gateways.len();
        for handle in self.gateways {
            let abort = handle.abort_handle();
            if tokio::time::timeout_at(deadline, handle).await.is_err() {
                abort.abort();
            }
        }
        self.counters.progress(count, self.clock)
    }
}

/// How a gateway reaches the server.
struct Link {
    endpoint: quinn::Endpoint,
    server: SocketAddr,
    quic: quinn::ClientConfig,
    /// Signs the certificate of a gateway that replaces the site's.
    ca: Arc<FleetCa>,
    options: GatewayOptions,
    handshakes: Arc<Semaphore>,
    reboot_pause: Duration,
}

/// What ends a connection's loop.
enum Next {
    Reconnect(Duration),
    /// The site's gateway was swapped for this one.
    Replaced(Serial),
    Stop,
}

struct SimulatedGateway {
    sim: GatewaySim,
    outbox: Outbox,
    /// Recent generator sequence numbers → wire sequence numbers (for retransmits).
    wire_seq_of: VecDeque<(u64, u64)>,
    /// Tasks already run, with their outcome: a task offered again is answered, not rerun.
    finished_tasks: HashMap<u64, (TaskState, String)>,
    grid_profile: Option<String>,
    /// Events to send with the next batch (conditions raised or cleared by tasks).
    pending_events: Vec<DeviceEvent>,
    /// A reboot task ran: the gateway reports its power-on reset once it is back.
    rebooting: bool,
    counters: Arc<Counters>,
    ledger: Option<Arc<Ledger>>,
}

const RECENT_SEQS: usize = 512;

impl SimulatedGateway {
    fn serial(&self) -> Serial {
        self.sim.spec().gateway.serial
    }

    async fn run(
        mut self,
        mut link: Link,
        clock: SimClock,
        tick: Duration,
        mut stop: watch::Receiver<bool>,
        mut controls: mpsc::Receiver<Control>,
    ) {
        let mut backoff = Duration::from_millis(200);
        // A gateway put in by a replacement may connect before the registry knows it.
        let mut replacement = false;
        loop {
            let connection = {
                let Ok(_permit) = link.handshakes.acquire().await else {
                    return;
                };
                GatewayConnection::connect(
                    &link.endpoint,
                    link.server,
                    link.quic.clone(),
                    self.serial(),
                    &link.options,
                )
                .await
            };
            let next = match connection {
                Ok(connection) => {
                    backoff = Duration::from_millis(200);
                    if std::mem::take(&mut self.rebooting) {
                        self.report_power_on_reset(clock.now_us());
                    }
                    self.counters.connections.fetch_add(1, Ordering::Relaxed);
                    self.counters.connected.fetch_add(1, Ordering::Relaxed);
                    let next = self
                        .connected(connection, &link, clock, tick, &mut stop, &mut controls)
                        .await;
                    self.counters.connected.fetch_sub(1, Ordering::Relaxed);
                    next
                }
                Err(error) => match error.close_code() {
                    Some(ErrorCode::UnknownGateway) if replacement => {
                        tracing::info!(gateway = %self.serial(), "the new gateway is not registered yet; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        Next::Reconnect(backoff)
                    }
                    Some(
                        ErrorCode::UnknownGateway
                        | ErrorCode::RetiredGateway
                        | ErrorCode::BadCertificate,
                    ) => {
                        tracing::warn!(gateway = %self.serial(), %error, "refused by the server; this gateway stops");
                        self.counters.refused.fetch_add(1, Ordering::Relaxed);
                        Next::Stop
                    }
                    _ => {
                        tracing::debug!(gateway = %self.serial(), %error, "connection failed; retrying");
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                        Next::Reconnect(backoff)
                    }
                },
            };
            match next {
                Next::Stop => return,
                Next::Replaced(new) => {
                    if let Err(error) = self.replace_gateway(&mut link, new) {
                        tracing::error!(gateway = %self.serial(), %error, "cannot put in the new gateway; this site stops");
                        return;
                    }
                    replacement = true;
                    backoff = Duration::from_millis(200);
                    tokio::time::sleep(link.reboot_pause).await;
                }
                Next::Reconnect(pause) => {
                    if *stop.borrow() && self.outbox.is_empty() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One connection's life: resend what the server lacks, then produce, send, apply acks
    /// and tasks until the link drops, a reboot, or the end of the run.
    async fn connected(
        &mut self,
        connection: GatewayConnection,
        link: &Link,
        clock: SimClock,
        tick: Duration,
        stop: &mut watch::Receiver<bool>,
        controls: &mut mpsc::Receiver<Control>,
    ) -> Next {
        let GatewayConnection {
            connection,
            mut sender,
            mut receiver,
            acked,
        } = connection;
        self.acknowledged(acked);
        // The receiving half runs on its own so that waiting for a message can be
        // abandoned safely in the select below.
        let (message_tx, mut messages) = mpsc::channel(64);
        let reader = tokio::spawn(async move {
            loop {
                let message = receiver.next().await;
                let end = !matches!(message, Ok(Some(_)));
                if message_tx.send(message).await.is_err() || end {
                    return;
                }
            }
        });
        let resend: Vec<_> = self.outbox.unacknowledged().cloned().collect();
        let mut next = None;
        for batch in &resend {
            if self.send(&mut sender, batch).await.is_err() {
                next = Some(Next::Reconnect(Duration::from_millis(200)));
                break;
            }
        }
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let next = match next {
            Some(next) => next,
            None => loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        if *stop.borrow() {
                            if self.outbox.is_empty() {
                                let _ = sender.finish();
                                break Next::Stop;
                            }
                            continue;
                        }
                        if self.produce(&mut sender, clock.now_us()).await.is_err() {
                            break Next::Reconnect(Duration::from_millis(200));
                        }
                    }
                    message = messages.recv() => match message {
                        Some(Ok(Some(ServerMessage::Ack(seq)))) => self.acknowledged(seq),
                        Some(Ok(Some(ServerMessage::Task { id, kind, parameters }))) => {
                            let reboot = self
                                .run_task(&mut sender, id, kind, &parameters, clock.now_us())
                                .await;
                            if reboot {
                                self.rebooting = true;
                                let _ = sender.finish();
                                // Give the reports a moment to leave before the "power cut".
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                connection.close(0u32.into(), b"rebooting");
                                break Next::Reconnect(link.reboot_pause);
                            }
                        }
                        Some(Ok(Some(ServerMessage::Heartbeat { .. }))) => {}
                        Some(Ok(Some(ServerMessage::Error { code, message }))) => {
                            tracing::warn!(gateway = %self.serial(), ?code, "server error: {message}");
                        }
                        Some(Ok(None)) | None => break Next::Reconnect(Duration::from_millis(200)),
                        Some(Err(error)) => {
                            tracing::debug!(gateway = %self.serial(), %error, "connection lost");
                            break Next::Reconnect(Duration::from_millis(200));
                        }
                    },
                    Some(control) = controls.recv() => {
                        if let Some(new) = self.apply(control, clock.now_us()) {
                            let _ = sender.finish();
                            break Next::Replaced(new);
                        }
                    }
                    _ = stop.changed() => {}
                }
            },
        };
        reader.abort();
        match next {
            Next::Stop => connection.close(0u32.into(), b"simulation over"),
            Next::Replaced(_) => connection.close(0u32.into(), b"gateway replaced"),
            Next::Reconnect(_) => {}
        }
        next
    }

    /// A gateway back from a reboot says so, as a real one does: a power-on reset, raised
    /// and cleared at once (it is a moment, not a condition).
    fn report_power_on_reset(&mut self, now_us: i64) {
        let serial = self.serial();
        for (time_us, state) in [
            (now_us, EventState::Raised),
            (now_us + 1, EventState::Cleared),
        ] {
            self.pending_events.push(DeviceEvent {
                serial,
                time_us,
                kind: EventKind::PowerOnReset,
                state,
            });
        }
    }

    fn acknowledged(&mut self, seq: BatchSeq) {
        let acknowledged = self.outbox.acknowledge(seq);
        if let Some(ledger) = &self.ledger {
            acknowledged
                .iter()
                .for_each(|batch| ledger.acknowledged(batch));
        }
        let batches = acknowledged.len() as u64;
        let readings: u64 = acknowledged.iter().map(|b| b.micro.len() as u64).sum();
        self.counters
            .batches_acked
            .fetch_add(batches, Ordering::Relaxed);
        self.counters
            .readings_acked
            .fetch_add(readings, Ordering::Relaxed);
        self.counters
            .in_flight
            .fetch_sub(batches as i64, Ordering::Relaxed);
    }

    async fn send(
        &mut self,
        sender: &mut GatewaySender,
        batch: &TelemetryBatch,
    ) -> Result<(), GatewayError> {
        sender.send_batch(batch).await.map_err(GatewayError::Wire)?;
        self.counters.batches_sent.fetch_add(1, Ordering::Relaxed);
        self.counters
            .readings_sent
            .fetch_add(batch.micro.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Numbers a new batch (with any pending events) and sends it.
    async fn push_and_send(
        &mut self,
        sender: &mut GatewaySender,
        mut batch: TelemetryBatch,
    ) -> Result<Arc<TelemetryBatch>, GatewayError> {
        batch.events.append(&mut self.pending_events);
        let dropped_before = self.outbox.dropped();
        let numbered = self.outbox.push(batch);
        let dropped = self.outbox.dropped() - dropped_before;
        self.counters.dropped.fetch_add(dropped, Ordering::Relaxed);
        self.counters
            .in_flight
            .fetch_add(1 - dropped as i64, Ordering::Relaxed);
        self.send(sender, &numbered).await?;
        Ok(numbered)
    }

    /// Generates up to `now_us` and sends what is due.
    async fn produce(
        &mut self,
        sender: &mut GatewaySender,
        now_us: i64,
    ) -> Result<(), GatewayError> {
        let mut uploads = Vec::new();
        self.sim.advance(now_us, &mut uploads);
        for upload in uploads {
            let generated = upload.batch.seq.0;
            let known = self
                .wire_seq_of
                .iter()
                .find(|(g, _)| *g == generated)
                .map(|(_, w)| *w);
            match (upload.kind, known) {
                (UploadKind::Duplicate, Some(wire)) => {
                    // The same batch again, as a gateway that missed the ack would send it.
                    let batch = match self.outbox.get(BatchSeq(wire)) {
                        Some(batch) => Arc::clone(batch),
                        None => {
                            let mut again = (*upload.batch).clone();
                            again.seq = BatchSeq(wire);
                            // Sent by whichever gateway the site has now.
                            again.gateway = self.serial();
                            Arc::new(again)
                        }
                    };
                    self.counters
                        .duplicates_sent
                        .fetch_add(1, Ordering::Relaxed);
                    self.send(sender, &batch).await?;
                }
                (_, Some(_)) => {}
                (_, None) => {
                    let numbered = self.push_and_send(sender, (*upload.batch).clone()).await?;
                    self.wire_seq_of.push_back((generated, numbered.seq.0));
                    if self.wire_seq_of.len() > RECENT_SEQS {
                        self.wire_seq_of.pop_front();
                    }
                }
            }
        }
        if !self.pending_events.is_empty() {
            let batch = TelemetryBatch::new(self.serial(), BatchSeq(0), now_us);
            self.push_and_send(sender, batch).await?;
        }
        Ok(())
    }

    /// Applies a control; returns the new gateway when the site's gateway is swapped.
    fn apply(&mut self, control: Control, now_us: i64) -> Option<Serial> {
        match control {
            Control::ReplaceGateway { new } => return Some(new),
            Control::Latch { micro, status } => {
                let Some(kind) = latch_event(status) else {
                    tracing::warn!(status, "not a latching status");
                    return None;
                };
                let state = self.sim.state_mut();
                if state.latched_status(micro).is_none() {
                    state.latched.push((micro, status));
                    self.pending_events.push(DeviceEvent {
                        serial: micro,
                        time_us: now_us,
                        kind,
                        state: EventState::Raised,
                    });
                }
            }
        }
        None
    }

    /// Puts gateway `new` in place of the site's: its own certificate, the same devices,
    /// and every batch the old one had not delivered.
    fn replace_gateway(&mut self, link: &mut Link, new: Serial) -> anyhow::Result<()> {
        let identity = GatewayIdentity {
            serial: new,
            ca_pem: link.ca.cert_pem().to_owned(),
            certificate: link.ca.issue_gateway(new)?,
        };
        link.quic = client_config(&identity, &link.options)?;
        tracing::info!(old = %self.serial(), %new, "gateway replaced");
        self.sim.replace_gateway(new);
        self.outbox.relabel(new);
        Ok(())
    }

    /// Runs a task (or answers again for one already run). Returns whether the gateway
    /// must now reboot.
    async fn run_task(
        &mut self,
        sender: &mut GatewaySender,
        id: u64,
        kind: TaskKind,
        parameters: &str,
        now_us: i64,
    ) -> bool {
        if let Some((state, message)) = self.finished_tasks.get(&id) {
            let _ = sender.report(id, *state, message.clone()).await;
            return false;
        }
        let _ = sender.report(id, TaskState::Started, "").await;
        let (state, message) = match self.execute(kind, parameters, now_us) {
            Ok(message) => (TaskState::Succeeded, message),
            Err(message) => (TaskState::Failed, message),
        };
        self.counters.tasks_run.fetch_add(1, Ordering::Relaxed);
        if let Some(ledger) = &self.ledger {
            ledger.task_ran(id);
        }
        let _ = sender.report(id, state, message.clone()).await;
        self.finished_tasks.insert(id, (state, message));
        kind == TaskKind::Reboot && state == TaskState::Succeeded
    }

    fn execute(&mut self, kind: TaskKind, parameters: &str, now_us: i64) -> Result<String, String> {
        let spec: &SystemSpec = self.sim.spec();
        let micros = spec.micros.len();
        match kind {
            TaskKind::ProductionOn => {
                self.sim.state_mut().production_enabled = true;
                Ok(format!("production on for {micros} microinverters"))
            }
            TaskKind::ProductionOff => {
                self.sim.state_mut().production_enabled = false;
                Ok(format!("production off for {micros} microinverters"))
            }
            TaskKind::Reboot => Ok("rebooting".into()),
            TaskKind::ProvisionDevices => {
                let serials = parse_serials(parameters)?;
                if let Some(old) = optional_serial(parameters, "replaces")? {
                    let [new] = serials.as_slice() else {
                        return Err("a replacement names exactly one new serial".into());
                    };
                    return match self.sim.replace_device(old, *new) {
                        Some(ReplacedKind::Microinverter) => Ok(format!(
                            "microinverter {old} replaced by {new}: it reports in its place"
                        )),
                        Some(ReplacedKind::Battery) => Ok(format!(
                            "battery {old} replaced by {new}: it reports in its place"
                        )),
                        None => Err(format!(
                            "device {old} is not behind this gateway, or {new} is already: nothing replaced"
                        )),
                    };
                }
                let (mut added, mut batteries) = (Vec::new(), Vec::new());
                for serial in serials {
                    if self.sim.has_battery(serial) {
                        batteries.push(serial.to_string());
                    } else if self.sim.provision_micro(serial) {
                        added.push(serial.to_string());
                    }
                }
                let mut message = format!(
                    "provisioned {} microinverter(s): {}",
                    added.len(),
                    added.join(", ")
                );
                if !batteries.is_empty() {
                    message.push_str(&format!(
                        "; battery(ies) provisioned with this gateway: {}",
                        batteries.join(", ")
                    ));
                }
                Ok(message)
            }
            TaskKind::MeterMode => {
                if spec.consumption_meter.is_none() {
                    return Err("this system has no consumption meter".into());
                }
                let mode = match parameter(parameters, "mode")?.as_str() {
                    "net" => ConsumptionMeterMode::Net,
                    "total" => ConsumptionMeterMode::Total,
                    other => {
                        return Err(format!("mode {other:?} is neither \"net\" nor \"total\""));
                    }
                };
                self.sim.state_mut().consumption_mode = Some(mode);
                Ok(format!("consumption meter set to {mode:?}"))
            }
            TaskKind::GridProfile => {
                let profile = parameter(parameters, "profile")?;
                let message =
                    format!("grid profile {profile:?} applied to {micros} microinverters");
                self.grid_profile = Some(profile);
                Ok(message)
            }
            TaskKind::CheckSignal => {
                let dbm = -50 - (self.serial().value() % 45) as i64;
                let bars = ((dbm + 100) / 10).clamp(1, 5);
                Ok(format!(
                    "signal strength {dbm} dBm ({bars} of 5 bars) over {:?}",
                    spec.gateway.connection
                ))
            }
            TaskKind::ScanDevices => Ok(format!(
                "scan complete: {micros} microinverter(s), {} meter(s), {} battery(ies) found; none new",
                usize::from(spec.production_meter.is_some())
                    + usize::from(spec.consumption_meter.is_some()),
                spec.batteries.len()
            )),
            TaskKind::ClearGfi => {
                Ok(self.clear_latched(micro_status::GFI_TRIPPED, now_us, "GFI cleared"))
            }
            TaskKind::ResetDcResistance => Ok(self.clear_latched(
                micro_status::DC_RESISTANCE_LOW,
                now_us,
                "DC-resistance-low sensor reset",
            )),
        }
    }

    fn clear_latched(&mut self, status: u16, now_us: i64, what: &str) -> String {
        let Some(kind) = latch_event(status) else {
            return format!("{what} on 0 microinverters");
        };
        let state = self.sim.state_mut();
        let cleared: Vec<Serial> = state
            .latched
            .iter()
            .filter(|(_, s)| *s == status)
            .map(|(serial, _)| *serial)
            .collect();
        state.latched.retain(|(_, s)| *s != status);
        for serial in &cleared {
            self.pending_events.push(DeviceEvent {
                serial: *serial,
                time_us: now_us,
                kind,
                state: EventState::Cleared,
            });
        }
        format!("{what} on {} microinverter(s)", cleared.len())
    }
}

fn latch_event(status: u16) -> Option<EventKind> {
    match status {
        micro_status::GFI_TRIPPED => Some(EventKind::GfiTripped),
        micro_status::DC_RESISTANCE_LOW => Some(EventKind::DcResistanceLow),
        _ => None,
    }
}

fn parse_json(parameters: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(parameters).map_err(|e| format!("parameters are not JSON: {e}"))
}

/// A string parameter of a task.
fn parameter(parameters: &str, name: &str) -> Result<String, String> {
    parse_json(parameters)?
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("parameter {name:?} (a string) is missing"))
}

/// A serial parameter that may be absent (`{"replaces": "000000012345"}`).
fn optional_serial(parameters: &str, name: &str) -> Result<Option<Serial>, String> {
    match parse_json(parameters)?.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(text)) => {
            text.parse::<Serial>().map(Some).map_err(|e| e.to_string())
        }
        Some(serde_json::Value::Number(n)) => n
            .to_string()
            .parse::<Serial>()
            .map(Some)
            .map_err(|e| e.to_string()),
        Some(other) => Err(format!("{name}: {other} is not a serial number")),
    }
}

/// `{"serials": ["000000012345", 12346]}`.
fn parse_serials(parameters: &str) -> Result<Vec<Serial>, String> {
    let value = parse_json(parameters)?;
    let list = value
        .get("serials")
        .and_then(|v| v.as_array())
        .ok_or_else(|| "parameter \"serials\" (a list) is missing".to_owned())?;
    list.iter()
        .map(|item| {
            let text = match item {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                other => return Err(format!("{other} is not a serial number")),
            };
            text.parse::<Serial>().map_err(|e| e.to_string())
        })
        .collect()
}
