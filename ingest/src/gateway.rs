//! The gateway side of the protocol, as a library: the simulator, the tests and the
//! benchmarks use it, and a real gateway's firmware would do the same.
//!
//! [`GatewayConnection::connect`] does the handshake (mutual TLS, Hello, Welcome); an
//! [`Outbox`] numbers batches and keeps every one until it is acknowledged, so after a
//! reconnect the gateway resends exactly what the server's Welcome says is missing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, ConnectionError, Endpoint};
use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::telemetry::TelemetryBatch;

use crate::frame::{ErrorCode, Frame, TaskKind, TaskState};
use crate::tls::{self, CertifiedKey, TlsError};
use crate::wire::{FrameReader, FrameWriter, WireError};

/// How long a receiver waits, after the server's stream ends, for the connection's close
/// reason.
const STREAM_END_GRACE: Duration = Duration::from_secs(2);

/// Who a gateway is and whom it trusts.
#[derive(Debug, Clone)]
pub struct GatewayIdentity {
    pub serial: Serial,
    pub ca_pem: String,
    pub certificate: CertifiedKey,
}

/// How a gateway connects.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The name the server certificate must carry.
    pub server_name: String,
    pub firmware: String,
    pub software_version: String,
    /// QUIC keep-alives while idle (under the server's idle timeout).
    pub keep_alive: Duration,
    /// Wait for the server at most this long for the handshake and its Welcome.
    pub connect_timeout: Duration,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            server_name: "localhost".into(),
            firmware: "D8.2.4".into(),
            software_version: concat!("sunfleet-gateway/", env!("CARGO_PKG_VERSION")).into(),
            keep_alive: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("QUIC: {0}")]
    Quic(String),
    #[error("could not connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(ConnectionError),
    /// The server closed the connection with one of the protocol's codes.
    #[error("server closed the connection: {code:?}: {reason}")]
    Closed {
        code: Option<ErrorCode>,
        reason: String,
    },
    #[error(transparent)]
    Wire(WireError),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
}

impl GatewayError {
    /// The protocol code the server closed with, if it did.
    pub fn close_code(&self) -> Option<ErrorCode> {
        match self {
            GatewayError::Closed { code, .. } => *code,
            _ => None,
        }
    }
}

fn connection_error(error: ConnectionError) -> GatewayError {
    match error {
        ConnectionError::ApplicationClosed(close) => GatewayError::Closed {
            code: u16::try_from(close.error_code.into_inner())
                .ok()
                .and_then(ErrorCode::from_number),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        other => GatewayError::Connection(other),
    }
}

/// A wire error, or the connection's close reason when that is what ended the stream.
fn wire_error(connection: &Connection, error: WireError) -> GatewayError {
    match connection.close_reason() {
        Some(reason) => connection_error(reason),
        None => GatewayError::Wire(error),
    }
}

/// A client endpoint (one UDP socket) that many gateway connections can share.
pub fn client_endpoint(bind: SocketAddr) -> Result<Endpoint, GatewayError> {
    crate::endpoint(bind, None).map_err(|e| GatewayError::Quic(format!("binding {bind}: {e}")))
}

/// The QUIC client configuration of one gateway.
pub fn client_config(
    identity: &GatewayIdentity,
    options: &GatewayOptions,
) -> Result<quinn::ClientConfig, GatewayError> {
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::gateway_config(
        &identity.ca_pem,
        &identity.certificate,
    )?)
    .map_err(|e| GatewayError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(options.keep_alive))
        .max_concurrent_bidi_streams(0u32.into())
        .max_concurrent_uni_streams(0u32.into());
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// What the server sends a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// Every batch up to `seq` is durable.
    Ack(BatchSeq),
    Task {
        id: u64,
        kind: TaskKind,
        parameters: String,
    },
    Heartbeat {
        sent_us: i64,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// A connected gateway after Welcome.
pub struct GatewayConnection {
    pub connection: Connection,
    pub sender: GatewaySender,
    pub receiver: GatewayReceiver,
    /// The highest batch the server holds durably: resend everything after it.
    pub acked: BatchSeq,
}

impl GatewayConnection {
    /// Connects, says Hello and waits for Welcome.
    pub async fn connect(
        endpoint: &Endpoint,
        server: SocketAddr,
        config: quinn::ClientConfig,
        serial: Serial,
        options: &GatewayOptions,
    ) -> Result<Self, GatewayError> {
        let timeout = options.connect_timeout;
        let handshake = async {
            let connection = endpoint
                .connect_with(config, server, &options.server_name)?
                .await
                .map_err(connection_error)?;
            let (send, recv) = connection.open_bi().await.map_err(connection_error)?;
            let mut sender = GatewaySender {
                writer: FrameWriter::new(send),
            };
            // A gateway trusts its server: no budget, and a long time for a big frame.
            let mut receiver = GatewayReceiver {
                reader: FrameReader::new(recv, None, Duration::from_secs(120)),
                connection: connection.clone(),
            };
            sender
                .send(&Frame::Hello {
                    serial,
                    firmware: options.firmware.clone(),
                    software_version: options.software_version.clone(),
                })
                .await
                .map_err(|e| wire_error(&connection, e))?;
            let welcome = receiver
                .reader
                .next()
                .await
                .map_err(|e| wire_error(&connection, e))?;
            match welcome.map(|w| w.frame) {
                Some(Frame::Welcome { acked }) => Ok(Self {
                    connection,
                    sender,
                    receiver,
                    acked,
                }),
                Some(other) => Err(GatewayError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                ))),
                None => Err(connection_error(connection.closed().await)),
            }
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| GatewayError::Timeout(timeout))?
    }
}

/// The sending half.
pub struct GatewaySender {
    writer: FrameWriter,
}

impl GatewaySender {
    pub async fn send(&mut self, frame: &Frame) -> Result<(), WireError> {
        self.writer.send(frame).await
    }

    pub async fn send_batch(&mut self, batch: &TelemetryBatch) -> Result<(), WireError> {
        self.writer
            .send_bytes(&crate::frame::encode_batch(batch)?)
            .await
    }

    pub async fn report(
        &mut self,
        id: u64,
        state: TaskState,
        message: impl Into<String>,
    ) -> Result<(), WireError> {
        self.writer
            .send(&Frame::TaskResult {
                id,
                state,
                message: message.into(),
            })
            .await
    }

    /// Bytes as they are (tests send malformed frames with it).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.writer.send_raw(bytes).await
    }

    /// Ends the stream: the server acknowledges what it has, then the connection can close.
    pub fn finish(&mut self) -> Result<(), WireError> {
        self.writer.finish()
    }
}

/// The receiving half.
pub struct GatewayReceiver {
    reader: FrameReader,
    connection: Connection,
}

impl GatewayReceiver {
    /// The next message; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<ServerMessage>, GatewayError> {
        let received = self
            .reader
            .next()
            .await
            .map_err(|e| wire_error(&self.connection, e))?;
        let Some(received) = received else {
            // The server ends its stream just before it closes the connection with a
            // reason; wait a moment for that reason rather than report a clean end.
            let closed = tokio::time::timeout(STREAM_END_GRACE, self.connection.closed()).await;
            return match closed {
                Ok(ConnectionError::ApplicationClosed(close))
                    if close.error_code != quinn::VarInt::from_u32(0) =>
                {
                    Err(connection_error(ConnectionError::ApplicationClosed(close)))
                }
                _ => Ok(None),
            };
        };
        Ok(Some(match received.frame {
            Frame::Ack { seq } => ServerMessage::Ack(seq),
            Frame::Task {
                id,
                kind,
                parameters,
            } => ServerMessage::Task {
                id,
                kind,
                parameters,
            },
            Frame::Heartbeat { sent_us } => ServerMessage::Heartbeat { sent_us },
            Frame::Error { code, message } => ServerMessage::Error { code, message },
            other => {
                return Err(GatewayError::Protocol(format!(
                    "unexpected frame from the server: {other:?}"
                )));
            }
        }))
    }
}

/// Batches a gateway has made and the server has not acknowledged yet, oldest first.
#[derive(Debug)]
pub struct Outbox {
    batches: VecDeque<Arc<TelemetryBatch>>,
    next_seq: u64,
    acked: u64,
    capacity: usize,
    dropped: u64,
}

impl Outbox {
    /// An outbox holding at most `capacity` batches (a gateway's storage is finite: the
    /// oldest go first when it is full), numbering from `next_seq`.
    pub fn new(capacity: usize, next_seq: u64) -> Self {
        Self {
            batches: VecDeque::new(),
            next_seq: next_seq.max(1),
            acked: next_seq.max(1) - 1,
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Numbers a batch and keeps it until acknowledged.
    pub fn push(&mut self, mut batch: TelemetryBatch) -> Arc<TelemetryBatch> {
        batch.seq = BatchSeq(self.next_seq);
        self.next_seq += 1;
        if self.batches.len() == self.capacity {
            self.batches.pop_front();
            self.dropped += 1;
        }
        let batch = Arc::new(batch);
        self.batches.push_back(Arc::clone(&batch));
        batch
    }

    /// Forgets every batch up to `seq`; returns the batches that acknowledged, oldest first.
    pub fn acknowledge(&mut self, seq: BatchSeq) -> Vec<Arc<TelemetryBatch>> {
        self.acked = self.acked.max(seq.0);
        let mut acknowledged = Vec::new();
        while self.batches.front().is_some_and(|b| b.seq.0 <= seq.0) {
            acknowledged.extend(self.batches.pop_front());
        }
        acknowledged
    }

    /// Puts every batch not yet acknowledged under gateway `serial` (the site's gateway was
    /// replaced: what the old one held is delivered by the new one, in the same order and
    /// numbering).
    pub fn relabel(&mut self, serial: Serial) {
        for batch in &mut self.batches {
            if batch.gateway != serial {
                let mut copy = (**batch).clone();
                copy.gateway = serial;
                *batch = Arc::new(copy);
            }
        }
    }

    /// The oldest batch not acknowledged.
    pub fn oldest(&self) -> Option<&Arc<TelemetryBatch>> {
        self.batches.front()
    }

    /// An unacknowledged batch by sequence number.
    pub fn get(&self, seq: BatchSeq) -> Option<&Arc<TelemetryBatch>> {
        let first = self.batches.front()?.seq.0;
        let index = usize::try_from(seq.0.checked_sub(first)?).ok()?;
        self.batches.get(index).filter(|b| b.seq == seq)
    }

    /// Everything not acknowledged, oldest first (to resend after a reconnect).
    pub fn unacknowledged(&self) -> impl Iterator<Item = &Arc<TelemetryBatch>> {
        self.batches.iter()
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn acked(&self) -> BatchSeq {
        BatchSeq(self.acked)
    }

    /// The sequence number the next batch gets.
    pub fn next_seq(&self) -> BatchSeq {
        BatchSeq(self.next_seq)
    }

    /// Batches dropped unacknowledged because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
