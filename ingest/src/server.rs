//! The ingest server: accepts gateway connections (QUIC, mutual TLS), checks each gateway
//! against the registry, stores its batches through the engine and acknowledges each one
//! only once the WAL record holding it is fsync'd, and delivers the gateway's tasks.
//!
//! Per connection: one task reads frames in order and appends batches; an acker awaits
//! their durability in the same order and sends acks; a writer owns the sending half; a
//! task sender delivers tasks. The reader stops reading while the connection's in-flight
//! queue is full or the shared frame budget is spent, so a slow engine slows gateways
//! through QUIC flow control rather than growing queues.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use quinn::{Connection, Endpoint, Incoming, VarInt};
use sunfleet_engine::Error as EngineError;
use sunfleet_engine::ids::{BatchSeq, DeviceId, Serial};
use sunfleet_engine::registry::{GatewaySession, Registry, TaskReport};
use sunfleet_engine::store::Store;
use sunfleet_engine::time::now_micros;
use sunfleet_engine::wal::{PendingAppend, WalSeq};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc, watch};

use crate::frame::{ErrorCode, Frame, TaskKind, TaskState};
use crate::tls::{self, ServerIdentity, TlsError};
use crate::wire::{FrameBudget, FrameReader, FrameWriter, WireError};

/// Limits and timings of the server. Every limit is deliberate: quinn's defaults allow far
/// more buffering per connection than a gateway ever needs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    /// Connections (live and handshaking) beyond this are refused.
    pub max_connections: usize,
    /// Handshakes in progress beyond this make new clients prove their address first
    /// (a stateless retry). 0: always.
    pub retry_above_handshakes: usize,
    /// Bytes of frames received and not yet stored, across all connections.
    pub frame_budget_bytes: usize,
    /// Batches a connection may have appended and not yet acknowledged.
    pub max_in_flight_per_connection: usize,
    /// Flow-control windows: one stream, and the whole connection.
    pub stream_receive_window: u32,
    pub connection_receive_window: u32,
    pub send_window: u64,
    /// The gateway must open its stream and say Hello within this.
    pub hello_timeout: Duration,
    /// A frame that has started must be complete within this.
    pub frame_timeout: Duration,
    /// A connection with no traffic at all is closed after this (gateways heartbeat).
    pub idle_timeout: Duration,
    /// How often acknowledged sequence numbers are saved to the registry.
    pub session_save_interval: Duration,
    /// How often the registry is checked for newly queued tasks.
    pub task_poll_interval: Duration,
}

impl IngestConfig {
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            max_connections: 200_000,
            retry_above_handshakes: 1_000,
            frame_budget_bytes: 256 << 20,
            max_in_flight_per_connection: 64,
            stream_receive_window: 256 << 10,
            connection_receive_window: 512 << 10,
            send_window: 256 << 10,
            hello_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            session_save_interval: Duration::from_secs(1),
            task_poll_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Counters for the status page, tests and benchmarks.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    retried: AtomicU64,
    rejected_gateways: AtomicU64,
    protocol_errors: AtomicU64,
    batches_stored: AtomicU64,
    batches_replayed: AtomicU64,
    micro_readings_stored: AtomicU64,
    task_reports: AtomicU64,
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestStats {
    pub live_connections: usize,
    pub handshaking: usize,
    pub accepted_connections: u64,
    /// Refused at the door (too many connections).
    pub refused_connections: u64,
    /// Asked to prove their address with a stateless retry.
    pub retried_connections: u64,
    /// Unknown, retired or badly certified gateways turned away.
    pub rejected_gateways: u64,
    /// Connections closed for a malformed or unexpected frame, or a timeout.
    pub protocol_errors: u64,
    pub batches_stored: u64,
    /// Batches received again after being stored: acknowledged, not stored twice.
    pub batches_replayed: u64,
    pub micro_readings_stored: u64,
    pub task_reports: u64,
    pub frame_budget_in_use: usize,
}

/// What ingest remembers of a gateway.
struct Session {
    gateway: DeviceId,
    /// Highest sequence number acknowledged as durable.
    acked: u64,
    firmware: String,
    software_version: String,
    last_connected_us: i64,
    dirty: bool,
    live: Option<Live>,
}

/// The gateway's current connection.
struct Live {
    id: u64,
    connection: Connection,
    tasks: Arc<Notify>,
    done: watch::Receiver<bool>,
}

struct Shared {
    config: IngestConfig,
    store: Arc<Store>,
    registry: Arc<Registry>,
    sessions: Mutex<HashMap<Serial, Session>>,
    budget: FrameBudget,
    counters: Counters,
    live: AtomicUsize,
    handshaking: AtomicUsize,
    handlers: AtomicUsize,
    handlers_done: Notify,
    next_connection: AtomicU64,
    task_wakeup: Notify,
}

impl Shared {
    fn sessions(&self) -> MutexGuard<'_, HashMap<Serial, Session>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running ingest server.
pub struct IngestServer {
    endpoint: Endpoint,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

fn transport_config(config: &IngestConfig) -> Result<quinn::TransportConfig, IngestError> {
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|e| IngestError::Quic(format!("idle timeout: {e}")))?;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(config.stream_receive_window))
        .receive_window(VarInt::from_u32(config.connection_receive_window))
        .send_window(config.send_window)
        .datagram_receive_buffer_size(None)
        .max_idle_timeout(Some(idle));
    Ok(transport)
}

impl IngestServer {
    /// Binds the server and starts accepting gateways.
    pub async fn start(
        config: IngestConfig,
        identity: &ServerIdentity,
        store: Arc<Store>,
        registry: Arc<Registry>,
    ) -> Result<Self, IngestError> {
        let crypto =
            quinn::crypto::rustls::QuicServerConfig::try_from(tls::server_config(identity)?)
                .map_err(|e| IngestError::Quic(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server_config.transport_config(Arc::new(transport_config(&config)?));
        // Bound what unaccepted connections may buffer.
        server_config.incoming_buffer_size(64 << 10);
        server_config.incoming_buffer_size_total(64 << 20);
        let endpoint = crate::endpoint(config.listen, Some(server_config)).map_err(|source| {
            IngestError::Bind {
                addr: config.listen,
                source,
            }
        })?;
        let shared = Arc::new(Shared {
            budget: FrameBudget::new(config.frame_budget_bytes),
            config,
            store,
            registry,
            sessions: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            live: AtomicUsize::new(0),
            handshaking: AtomicUsize::new(0),
            handlers: AtomicUsize::new(0),
            handlers_done: Notify::new(),
            next_connection: AtomicU64::new(1),
            task_wakeup: Notify::new(),
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let background = vec![
            tokio::spawn(accept_loop(
                endpoint.clone(),
                Arc::clone(&shared),
                shutdown_rx.clone(),
            )),
            tokio::spawn(save_sessions_loop(Arc::clone(&shared), shutdown_rx.clone())),
            tokio::spawn(dispatch_tasks_loop(Arc::clone(&shared), shutdown_rx)),
        ];
        Ok(Self {
            endpoint,
            shared,
            shutdown,
            background,
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr, IngestError> {
        self.endpoint
            .local_addr()
            .map_err(|source| IngestError::Bind {
                addr: self.shared.config.listen,
                source,
            })
    }

    pub fn stats(&self) -> IngestStats {
        let c = &self.shared.counters;
        IngestStats {
            live_connections: self.shared.live.load(Ordering::Relaxed),
            handshaking: self.shared.handshaking.load(Ordering::Relaxed),
            accepted_connections: c.accepted.load(Ordering::Relaxed),
            refused_connections: c.refused.load(Ordering::Relaxed),
            retried_connections: c.retried.load(Ordering::Relaxed),
            rejected_gateways: c.rejected_gateways.load(Ordering::Relaxed),
            protocol_errors: c.protocol_errors.load(Ordering::Relaxed),
            batches_stored: c.batches_stored.load(Ordering::Relaxed),
            batches_replayed: c.batches_replayed.load(Ordering::Relaxed),
            micro_readings_stored: c.micro_readings_stored.load(Ordering::Relaxed),
            task_reports: c.task_reports.load(Ordering::Relaxed),
            frame_budget_in_use: self.shared.budget.in_use(),
        }
    }

    /// Delivers newly queued tasks now instead of at the next poll.
    pub fn notify_tasks(&self) {
        self.shared.task_wakeup.notify_one();
    }

    /// The highest batch acknowledged to a gateway, as ingest knows it now.
    pub fn acked_seq(&self, serial: Serial) -> Option<BatchSeq> {
        self.shared
            .sessions()
            .get(&serial)
            .map(|s| BatchSeq(s.acked))
    }

    /// Stops accepting, closes every connection, waits for their handlers (so every
    /// acknowledged sequence number is known) and saves the sessions.
    pub async fn shutdown(self) -> Result<(), IngestError> {
        let _ = self.shutdown.send(true);
        self.endpoint.close(
            VarInt::from_u32(0),
            b"server shutting down; reconnect later",
        );
        self.shared.budget.close();
        loop {
            let notified = self.shared.handlers_done.notified();
            if self.shared.handlers.load(Ordering::Acquire) == 0 {
                break;
            }
            if tokio::time::timeout(Duration::from_secs(10), notified)
                .await
                .is_err()
            {
                tracing::warn!("connection handlers still running after 10 s; saving anyway");
                break;
            }
        }
        for task in self.background {
            let _ = task.await;
        }
        // A connection handle keeps the endpoint, and so its UDP port, alive.
        for session in self.shared.sessions().values_mut() {
            session.live = None;
        }
        save_sessions(&self.shared).await?;
        self.endpoint.wait_idle().await;
        Ok(())
    }
}

async fn accept_loop(endpoint: Endpoint, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            _ = shutdown.changed() => None,
        };
        let Some(incoming) = incoming else { break };
        let handshaking = shared.handshaking.load(Ordering::Relaxed);
        let live = shared.live.load(Ordering::Relaxed);
        if live + handshaking >= shared.config.max_connections {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        if handshaking >= shared.config.retry_above_handshakes
            && !incoming.remote_address_validated()
            && incoming.may_retry()
        {
            shared.counters.retried.fetch_add(1, Ordering::Relaxed);
            let _ = incoming.retry();
            continue;
        }
        shared.handlers.fetch_add(1, Ordering::AcqRel);
        let handler_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            handle_incoming(&handler_shared, incoming).await;
            if handler_shared.handlers.fetch_sub(1, Ordering::AcqRel) == 1 {
                handler_shared.handlers_done.notify_waiters();
            }
        });
    }
}

/// Decrements a gauge when dropped.
struct Gauge<'a>(&'a AtomicUsize);

impl<'a> Gauge<'a> {
    fn up(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection ended early: sent to the gateway as the close code and reason.
#[derive(Debug)]
struct Refusal {
    code: ErrorCode,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<WireError> for Refusal {
    fn from(error: WireError) -> Self {
        let code = match &error {
            WireError::Frame(e) => e.code(),
            WireError::Stalled { .. } => ErrorCode::Timeout,
            WireError::Truncated => ErrorCode::Malformed,
            WireError::ShuttingDown => ErrorCode::Overloaded,
            WireError::Read(_) | WireError::Write(_) | WireError::Closed(_) => ErrorCode::Internal,
        };
        Refusal::new(code, error.to_string())
    }
}

fn close(connection: &Connection, code: ErrorCode, message: &str) {
    connection.close(VarInt::from_u32(code as u32), message.as_bytes());
}

async fn handle_incoming(shared: &Arc<Shared>, incoming: Incoming) {
    let connection = {
        let _handshaking = Gauge::up(&shared.handshaking);
        match incoming.await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(%error, "handshake failed");
                return;
            }
        }
    };
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let _live = Gauge::up(&shared.live);
    let remote = connection.remote_address();
    let (serial, gateway) = match admit(shared, &connection).await {
        Ok(admitted) => admitted,
        Err(refusal) => {
            shared
                .counters
                .rejected_gateways
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%remote, code = ?refusal.code, "gateway refused: {}", refusal.message);
            close(&connection, refusal.code, &refusal.message);
            return;
        }
    };
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (done_tx, done_rx) = watch::channel(false);
    let tasks = Arc::new(Notify::new());
    let previous = take_over(shared, serial, gateway, id, &connection, &tasks, done_rx);
    if let Some((old_connection, mut old_done)) = previous {
        close(
            &old_connection,
            ErrorCode::Replaced,
            "a newer connection of this gateway took over",
        );
        // Its in-flight batches settle first, so the Welcome below is exact.
        let _ = tokio::time::timeout(Duration::from_secs(10), old_done.wait_for(|d| *d)).await;
    }
    let result = run_session(shared, &connection, serial, gateway, Arc::clone(&tasks)).await;
    if let Err(refusal) = result {
        shared
            .counters
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(gateway = %serial, %remote, code = ?refusal.code, "closing connection: {}", refusal.message);
        close(&connection, refusal.code, &refusal.message);
    }
    {
        let mut sessions = shared.sessions();
        if let Some(session) = sessions.get_mut(&serial)
            && session.live.as_ref().is_some_and(|l| l.id == id)
        {
            session.live = None;
        }
    }
    let _ = done_tx.send(true);
}

/// Reads the gateway's serial from its verified certificate and checks it in the registry.
async fn admit(
    shared: &Arc<Shared>,
    connection: &Connection,
) -> Result<(Serial, DeviceId), Refusal> {
    let certificates = connection
        .peer_identity()
        .and_then(|identity| {
            identity
                .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .ok_or_else(|| Refusal::new(ErrorCode::BadCertificate, "no client certificate"))?;
    let leaf = certificates
        .first()
        .ok_or_else(|| Refusal::new(ErrorCode::BadCertificate, "empty certificate chain"))?;
    let serial = tls::gateway_serial(leaf)
        .map_err(|e| Refusal::new(ErrorCode::BadCertificate, e.to_string()))?;
    let registry = Arc::clone(&shared.registry);
    let info = tokio::task::spawn_blocking(move || registry.gateway(serial))
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    match info {
        None => Err(Refusal::new(
            ErrorCode::UnknownGateway,
            format!("gateway {serial} is not registered"),
        )),
        Some(info) if info.retired => Err(Refusal::new(
            ErrorCode::RetiredGateway,
            format!("gateway {serial} is retired"),
        )),
        Some(info) => {
            let replayed = shared
                .store
                .replayed_gateway_seqs()
                .get(&serial)
                .map_or(0, |s| s.0);
            let mut sessions = shared.sessions();
            sessions.entry(serial).or_insert_with(|| Session {
                gateway: info.device,
                acked: info.acked_seq.max(replayed),
                firmware: String::new(),
                software_version: String::new(),
                last_connected_us: 0,
                dirty: replayed > info.acked_seq,
                live: None,
            });
            Ok((serial, info.device))
        }
    }
}

/// Makes this connection the gateway's live one; returns the one it replaces.
fn take_over(
    shared: &Shared,
    serial: Serial,
    gateway: DeviceId,
    id: u64,
    connection: &Connection,
    tasks: &Arc<Notify>,
    done: watch::Receiver<bool>,
) -> Option<(Connection, watch::Receiver<bool>)> {
    let mut sessions = shared.sessions();
    let session = sessions.get_mut(&serial)?;
    session.gateway = gateway;
    session
        .live
        .replace(Live {
            id,
            connection: connection.clone(),
            tasks: Arc::clone(tasks),
            done,
        })
        .map(|old| (old.connection, old.done))
}

/// A batch appended and not yet acknowledged (`durable` is `None` for a replay). Its
/// share of the frame budget is released when it is acknowledged.
struct InFlight {
    seq: u64,
    durable: Option<Durable>,
    _charge: Option<OwnedSemaphorePermit>,
}

async fn run_session(
    shared: &Arc<Shared>,
    connection: &Connection,
    serial: Serial,
    gateway: DeviceId,
    tasks: Arc<Notify>,
) -> Result<(), Refusal> {
    let config = &shared.config;
    let (send, recv) =
        match tokio::time::timeout(config.hello_timeout, connection.accept_bi()).await {
            Err(_) => return Err(Refusal::new(ErrorCode::Timeout, "no stream opened in time")),
            Ok(Err(error)) => {
                tracing::debug!(gateway = %serial, %error, "connection ended before its stream");
                return Ok(());
            }
            Ok(Ok(streams)) => streams,
        };
    let mut reader = FrameReader::new(recv, Some(shared.budget.clone()), config.frame_timeout);
    let hello = match tokio::time::timeout(config.hello_timeout, reader.next()).await {
        Err(_) => return Err(Refusal::new(ErrorCode::Timeout, "no Hello in time")),
        // The gateway went away (closed, reset) before its Hello: not a server failure,
        // the same as after the Hello (`read_frames`).
        Ok(Err(WireError::Read(
            quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_),
        ))) => return Ok(()),
        Ok(frame) => frame?,
    };
    let acked = match hello.map(|h| h.frame) {
        Some(Frame::Hello {
            serial: said,
            firmware,
            software_version,
        }) => {
            if said != serial {
                return Err(Refusal::new(
                    ErrorCode::SerialMismatch,
                    format!("Hello names gateway {said}, the certificate {serial}"),
                ));
            }
            let mut sessions = shared.sessions();
            let session = sessions
                .get_mut(&serial)
                .ok_or_else(|| Refusal::new(ErrorCode::Internal, "session vanished"))?;
            session.firmware = firmware;
            session.software_version = software_version;
            session.last_connected_us = now_micros();
            session.dirty = true;
            session.acked
        }
        Some(other) => {
            return Err(Refusal::new(
                ErrorCode::HelloExpected,
                format!("first frame was {}, not Hello", other.name()),
            ));
        }
        None => return Ok(()),
    };
    tracing::debug!(gateway = %serial, acked, "gateway connected");

    let (out_tx, out_rx) = mpsc::channel::<Frame>(config.max_in_flight_per_connection + 16);
    let writer = tokio::spawn(write_frames(FrameWriter::new(send), out_rx));
    out_tx
        .send(Frame::Welcome {
            acked: BatchSeq(acked),
        })
        .await
        .map_err(|_| Refusal::new(ErrorCode::Internal, "writer ended"))?;
    let task_sender = tokio::spawn(send_tasks(
        Arc::clone(shared),
        gateway,
        Arc::clone(&tasks),
        out_tx.clone(),
    ));
    let (in_flight_tx, in_flight_rx) = mpsc::channel(config.max_in_flight_per_connection);
    let acker = tokio::spawn(acknowledge(
        Arc::clone(shared),
        serial,
        in_flight_rx,
        out_tx.clone(),
    ));

    let result = read_frames(
        shared,
        serial,
        gateway,
        acked,
        &mut reader,
        &in_flight_tx,
        &out_tx,
    )
    .await;
    drop(in_flight_tx);
    task_sender.abort();
    if let Err(refusal) = &result {
        reader.stop(refusal.code);
        // Best effort: the close reason carries the same message.
        let _ = out_tx.try_send(Frame::Error {
            code: refusal.code,
            message: refusal.message.clone(),
        });
    }
    // Batches already appended still get their acknowledgements.
    let acker_result = acker
        .await
        .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    drop(out_tx);
    let _ = writer.await;
    result?;
    acker_result
}

async fn read_frames(
    shared: &Arc<Shared>,
    serial: Serial,
    gateway: DeviceId,
    acked: u64,
    reader: &mut FrameReader,
    in_flight: &mpsc::Sender<InFlight>,
    out: &mpsc::Sender<Frame>,
) -> Result<(), Refusal> {
    // Highest sequence number appended on this connection (or acknowledged before it).
    let mut last_appended = acked;
    loop {
        let received = match reader.next().await {
            Ok(Some(received)) => received,
            Ok(None) => return Ok(()),
            // The gateway went away (closed, reset, timed out): not a protocol error.
            Err(WireError::Read(
                quinn::ReadError::ConnectionLost(_) | quinn::ReadError::Reset(_),
            )) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        match received.frame {
            Frame::Batch(batch) => {
                if batch.gateway != serial {
                    return Err(Refusal::new(
                        ErrorCode::Malformed,
                        format!(
                            "batch {} names gateway {} on the connection of gateway {serial}",
                            batch.seq.0, batch.gateway
                        ),
                    ));
                }
                let seq = batch.seq.0;
                if seq == 0 {
                    return Err(Refusal::new(
                        ErrorCode::Malformed,
                        "batch sequence numbers start at 1",
                    ));
                }
                if let Some(time_us) = batch.time_out_of_range() {
                    let refused = sunfleet_engine::Error::TimeOutOfRange {
                        gateway: serial,
                        seq,
                        time_us,
                    };
                    return Err(Refusal::new(ErrorCode::Malformed, refused.to_string()));
                }
                let durable = if seq <= last_appended {
                    shared
                        .counters
                        .batches_replayed
                        .fetch_add(1, Ordering::Relaxed);
                    None
                } else {
                    let micro_rows = batch.micro.len() as u64;
                    let pending = append(shared, *batch).await?;
                    last_appended = seq;
                    shared
                        .counters
                        .micro_readings_stored
                        .fetch_add(micro_rows, Ordering::Relaxed);
                    Some(Box::pin(pending.durable()) as Durable)
                };
                let item = InFlight {
                    seq,
                    durable,
                    _charge: received.charge,
                };
                if in_flight.send(item).await.is_err() {
                    // The acker stopped on an engine error; it said why.
                    return Ok(());
                }
            }
            Frame::TaskResult { id, state, message } => {
                record_task_result(shared, serial, gateway, id, state, message).await?;
            }
            Frame::Heartbeat { sent_us } => {
                let _ = out.send(Frame::Heartbeat { sent_us }).await;
            }
            Frame::Error { code, message } => {
                tracing::warn!(gateway = %serial, ?code, "gateway reported an error: {message}");
            }
            other => {
                return Err(Refusal::new(
                    ErrorCode::UnexpectedFrame,
                    format!("{} is not a frame a gateway sends here", other.name()),
                ));
            }
        }
    }
}

/// Appends a batch, waiting while the engine's write buffer is full (persistence behind).
async fn append(
    shared: &Shared,
    batch: sunfleet_engine::telemetry::TelemetryBatch,
) -> Result<PendingAppend, Refusal> {
    loop {
        if shared.store.buffered_rows() < shared.store.config().max_buffered_rows {
            return shared.store.append(batch).map_err(|e| match e {
                EngineError::BufferFull { .. } => {
                    Refusal::new(ErrorCode::Overloaded, e.to_string())
                }
                other => Refusal::new(ErrorCode::Internal, other.to_string()),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn record_task_result(
    shared: &Arc<Shared>,
    serial: Serial,
    gateway: DeviceId,
    id: u64,
    state: TaskState,
    message: String,
) -> Result<(), Refusal> {
    let report = match state {
        TaskState::Started => TaskReport::Started,
        TaskState::Succeeded => TaskReport::Succeeded,
        TaskState::Failed => TaskReport::Failed,
    };
    let registry = Arc::clone(&shared.registry);
    let recorded = tokio::task::spawn_blocking(move || {
        registry.record_task_progress(gateway, id as i64, report, &message, now_micros())
    })
    .await
    .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| Refusal::new(ErrorCode::Internal, e.to_string()))?;
    shared.counters.task_reports.fetch_add(1, Ordering::Relaxed);
    if !recorded {
        tracing::info!(gateway = %serial, task = id, ?state, "report for a task that is not open; ignored");
    }
    Ok(())
}

/// The engine's promise for an appended batch.
type Durable = Pin<Box<dyn Future<Output = Result<WalSeq, EngineError>> + Send>>;

/// Polls once: the result if the batch is already durable.
fn ready(durable: &mut Durable) -> Option<Result<WalSeq, EngineError>> {
    let mut context = Context::from_waker(Waker::noop());
    match durable.as_mut().poll(&mut context) {
        Poll::Ready(result) => Some(result),
        Poll::Pending => None,
    }
}

/// Acknowledges batches in order, each once the engine says it is durable. Batches made
/// durable by the same fsync are acknowledged by one Ack (acks are cumulative).
async fn acknowledge(
    shared: Arc<Shared>,
    serial: Serial,
    mut in_flight: mpsc::Receiver<InFlight>,
    out: mpsc::Sender<Frame>,
) -> Result<(), Refusal> {
    let not_stored = |seq: u64, error: EngineError| {
        tracing::error!(gateway = %serial, seq, %error, "batch not stored");
        Refusal::new(
            ErrorCode::Internal,
            format!("batch {seq} was not stored: {error}"),
        )
    };
    let mut highest_acked = 0u64;
    let mut waiting: Option<InFlight> = None;
    loop {
        let item = match waiting.take() {
            Some(item) => item,
            None => match in_flight.recv().await {
                Some(item) => item,
                None => return Ok(()),
            },
        };
        let mut acked = item.seq;
        let mut stored = 0u64;
        if let Some(durable) = item.durable {
            durable.await.map_err(|e| not_stored(item.seq, e))?;
            stored += 1;
        }
        // Everything queued behind it that the same fsync already covered.
        while let Ok(mut next) = in_flight.try_recv() {
            match next.durable.as_mut().map(ready) {
                None => acked = acked.max(next.seq),
                Some(Some(Ok(_))) => {
                    acked = acked.max(next.seq);
                    stored += 1;
                }
                Some(Some(Err(error))) => return Err(not_stored(next.seq, error)),
                Some(None) => {
                    waiting = Some(next);
                    break;
                }
            }
        }
        shared
            .counters
            .batches_stored
            .fetch_add(stored, Ordering::Relaxed);
        highest_acked = highest_acked.max(acked);
        {
            let mut sessions = shared.sessions();
            if let Some(session) = sessions.get_mut(&serial)
                && highest_acked > session.acked
            {
                session.acked = highest_acked;
                session.dirty = true;
            }
        }
        // If the connection is gone the gateway learns the mark at its next Welcome.
        let _ = out
            .send(Frame::Ack {
                seq: BatchSeq(highest_acked),
            })
            .await;
    }
}

async fn write_frames(mut writer: FrameWriter, mut frames: mpsc::Receiver<Frame>) {
    while let Some(frame) = frames.recv().await {
        if let Err(error) = writer.send(&frame).await {
            tracing::debug!(%error, "stopped writing to a gateway");
            return;
        }
    }
    let _ = writer.finish();
}

/// Delivers the gateway's tasks: at connection, everything not finished; afterwards, what
/// gets queued while it is connected.
async fn send_tasks(
    shared: Arc<Shared>,
    gateway: DeviceId,
    wakeup: Arc<Notify>,
    out: mpsc::Sender<Frame>,
) {
    let mut include_unfinished = true;
    loop {
        let registry = Arc::clone(&shared.registry);
        let taken = tokio::task::spawn_blocking(move || {
            registry.take_tasks_to_send(gateway, include_unfinished, now_micros())
        })
        .await;
        match taken {
            Ok(Ok(tasks)) => {
                for task in tasks {
                    let Some(kind) = TaskKind::from_name(&task.kind) else {
                        tracing::error!(task = task.id, kind = task.kind, "unknown task kind");
                        continue;
                    };
                    let frame = Frame::Task {
                        id: task.id as u64,
                        kind,
                        parameters: task.parameters,
                    };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "reading tasks"),
            Err(error) => tracing::error!(%error, "reading tasks"),
        }
        include_unfinished = false;
        wakeup.notified().await;
    }
}

async fn dispatch_tasks_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.task_poll_interval) => {}
            _ = shared.task_wakeup.notified() => {}
            _ = shutdown.changed() => return,
        }
        let registry = Arc::clone(&shared.registry);
        let queued = match tokio::task::spawn_blocking(move || {
            registry.gateways_with_queued_tasks()
        })
        .await
        {
            Ok(Ok(queued)) => queued,
            Ok(Err(error)) => {
                tracing::error!(%error, "listing queued tasks");
                continue;
            }
            Err(_) => continue,
        };
        if queued.is_empty() {
            continue;
        }
        let queued: HashSet<DeviceId> = queued.into_iter().collect();
        for session in shared.sessions().values() {
            if let Some(live) = &session.live
                && queued.contains(&session.gateway)
            {
                live.tasks.notify_one();
            }
        }
    }
}

async fn save_sessions_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    // Retirements are looked for from a little before the previous look: the registry's
    // clock (the portal's, or another process's) may lag this one.
    let mut retired_since = sunfleet_engine::time::now_micros();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.session_save_interval) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = save_sessions(&shared).await {
            tracing::error!(%error, "saving gateway sessions; will retry");
        }
        let looked_at = sunfleet_engine::time::now_micros();
        match close_retired(&shared, retired_since).await {
            Ok(()) => retired_since = looked_at - RETIREMENT_CLOCK_SLACK_US,
            Err(error) => tracing::error!(%error, "looking for retired gateways; will retry"),
        }
    }
}

/// How far back each look for retired gateways reaches before the previous one.
const RETIREMENT_CLOCK_SLACK_US: i64 = 5_000_000;

/// Closes the live connection of every gateway retired since `since_us` (code 7): a retired
/// gateway stores nothing more, not only from its next connection on.
async fn close_retired(shared: &Arc<Shared>, since_us: i64) -> Result<(), IngestError> {
    let registry = Arc::clone(&shared.registry);
    let retired = tokio::task::spawn_blocking(move || registry.gateways_retired_since(since_us))
        .await
        .map_err(|e| IngestError::Quic(format!("retirement check: {e}")))??;
    let sessions = shared.sessions();
    for serial in retired {
        if let Some(live) = sessions.get(&serial).and_then(|s| s.live.as_ref()) {
            tracing::info!(%serial, "gateway retired: closing its connection");
            close(
                &live.connection,
                ErrorCode::RetiredGateway,
                &format!("gateway {serial} is retired"),
            );
        }
    }
    Ok(())
}

/// Saves every changed session in one registry transaction.
async fn save_sessions(shared: &Arc<Shared>) -> Result<(), IngestError> {
    let changed: Vec<(Serial, GatewaySession)> = {
        let mut sessions = shared.sessions();
        sessions
            .iter_mut()
            .filter(|(_, s)| s.dirty)
            .map(|(serial, s)| {
                s.dirty = false;
                (
                    *serial,
                    GatewaySession {
                        gateway: s.gateway,
                        acked_seq: s.acked,
                        firmware: s.firmware.clone(),
                        software_version: s.software_version.clone(),
                        last_connected_us: s.last_connected_us,
                    },
                )
            })
            .collect()
    };
    if changed.is_empty() {
        return Ok(());
    }
    let registry = Arc::clone(&shared.registry);
    let rows: Vec<GatewaySession> = changed.iter().map(|(_, s)| s.clone()).collect();
    let saved = tokio::task::spawn_blocking(move || registry.save_gateway_sessions(&rows))
        .await
        .map_err(|e| IngestError::Quic(format!("session saver: {e}")))?;
    if let Err(error) = saved {
        // Mark them changed again so the next round retries.
        let mut sessions = shared.sessions();
        for (serial, _) in &changed {
            if let Some(session) = sessions.get_mut(serial) {
                session.dirty = true;
            }
        }
        return Err(error.into());
    }
    Ok(())
}
