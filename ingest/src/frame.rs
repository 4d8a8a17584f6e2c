//! The frames gateways and the server exchange (see `ingest/PROTOCOL.md`): a 6-byte header
//! `version: u8 | kind: u8 | length: u32 LE`, then `length` bytes of body. Every length and
//! count has a hard cap, and an unknown version or kind is a precise error, never a panic.

use sunfleet_engine::ids::{BatchSeq, Serial};
use sunfleet_engine::telemetry::TelemetryBatch;
use sunfleet_engine::wal::codec;

/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 6;
/// Largest frame body accepted (a gateway batch is a few KiB; a day of backfill is split).
pub const MAX_BODY_BYTES: usize = 4 << 20;
/// Largest text field (firmware, messages, task parameters).
pub const MAX_TEXT_BYTES: usize = 1_024;

/// Remote tasks a gateway runs (DOMAIN.md, "Remote tasks"). Numbers are stable forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    ProductionOn = 1,
    ProductionOff = 2,
    Reboot = 3,
    ProvisionDevices = 4,
    MeterMode = 5,
    GridProfile = 6,
    CheckSignal = 7,
    ScanDevices = 8,
    ClearGfi = 9,
    ResetDcResistance = 10,
}

impl TaskKind {
    pub const ALL: [TaskKind; 10] = [
        TaskKind::ProductionOn,
        TaskKind::ProductionOff,
        TaskKind::Reboot,
        TaskKind::ProvisionDevices,
        TaskKind::MeterMode,
        TaskKind::GridProfile,
        TaskKind::CheckSignal,
        TaskKind::ScanDevices,
        TaskKind::ClearGfi,
        TaskKind::ResetDcResistance,
    ];

    fn from_number(number: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == number)
    }

    /// The name the registry stores (`gateway_tasks.kind`).
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::ProductionOn => "production_on",
            TaskKind::ProductionOff => "production_off",
            TaskKind::Reboot => "reboot",
            TaskKind::ProvisionDevices => "provision_devices",
            TaskKind::MeterMode => "meter_mode",
            TaskKind::GridProfile => "grid_profile",
            TaskKind::CheckSignal => "check_signal",
            TaskKind::ScanDevices => "scan_devices",
            TaskKind::ClearGfi => "clear_gfi",
            TaskKind::ResetDcResistance => "reset_dc_resistance",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// Progress a gateway reports for a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    Started = 1,
    Succeeded = 2,
    Failed = 3,
}

impl TaskState {
    fn from_number(number: u8) -> Option<Self> {
        [TaskState::Started, TaskState::Succeeded, TaskState::Failed]
            .into_iter()
            .find(|s| *s as u8 == number)
    }
}

/// Why a peer refused something; sent in [`Frame::Error`] and used as the QUIC close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    UnsupportedVersion = 1,
    UnknownKind = 2,
    FrameTooLarge = 3,
    Malformed = 4,
    HelloExpected = 5,
    UnknownGateway = 6,
    RetiredGateway = 7,
    SerialMismatch = 8,
    Overloaded = 9,
    Internal = 10,
    /// Another connection of the same gateway took over.
    Replaced = 11,
    /// Hello, or the rest of a started frame, did not arrive in time.
    Timeout = 12,
    /// A frame the peer should never send in this direction or at this point.
    UnexpectedFrame = 13,
    /// The client certificate names no serial.
    BadCertificate = 14,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownKind,
        ErrorCode::FrameTooLarge,
        ErrorCode::Malformed,
        ErrorCode::HelloExpected,
        ErrorCode::UnknownGateway,
        ErrorCode::RetiredGateway,
        ErrorCode::SerialMismatch,
        ErrorCode::Overloaded,
        ErrorCode::Internal,
        ErrorCode::Replaced,
        ErrorCode::Timeout,
        ErrorCode::UnexpectedFrame,
        ErrorCode::BadCertificate,
    ];

    pub fn from_number(number: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u16 == number)
    }
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Gateway → server, first on a connection.
    Hello {
        serial: Serial,
        firmware: String,
        software_version: String,
    },
    /// Server → gateway, the answer to `Hello`: the highest batch stored durably; the
    /// gateway resends everything after it.
    Welcome { acked: BatchSeq },
    /// Gateway → server: readings, in the engine's columnar record format.
    Batch(Box<TelemetryBatch>),
    /// Server → gateway: every batch up to `seq` is durable.
    Ack { seq: BatchSeq },
    /// Server → gateway: run a task.
    Task {
        id: u64,
        kind: TaskKind,
        parameters: String,
    },
    /// Gateway → server: how a task went.
    TaskResult {
        id: u64,
        state: TaskState,
        message: String,
    },
    /// Either way, to keep an idle connection alive and measure latency.
    Heartbeat { sent_us: i64 },
    /// Either way: what was refused, and why.
    Error { code: ErrorCode, message: String },
}

impl Frame {
    /// The frame's name, for messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Frame::Hello { .. } => "Hello",
            Frame::Welcome { .. } => "Welcome",
            Frame::Batch(_) => "Batch",
            Frame::Ack { .. } => "Ack",
            Frame::Task { .. } => "Task",
            Frame::TaskResult { .. } => "TaskResult",
            Frame::Heartbeat { .. } => "Heartbeat",
            Frame::Error { .. } => "Error",
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Frame::Hello { .. } => 1,
            Frame::Welcome { .. } => 2,
            Frame::Batch(_) => BATCH_KIND,
            Frame::Ack { .. } => 4,
            Frame::Task { .. } => 5,
            Frame::TaskResult { .. } => 6,
            Frame::Heartbeat { .. } => 7,
            Frame::Error { .. } => 8,
        }
    }
}

/// What is wrong with received bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol version {version} is not supported (this server speaks {VERSION})")]
    UnsupportedVersion { version: u8 },
    #[error("unknown frame kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("frame of {length} bytes is larger than the {max} allowed")]
    TooLarge { length: usize, max: usize },
    #[error("malformed frame (kind {kind}): {reason}")]
    Malformed { kind: u8, reason: String },
}

impl FrameError {
    /// The code to answer with.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            FrameError::UnknownKind { .. } => ErrorCode::UnknownKind,
            FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            FrameError::Malformed { .. } => ErrorCode::Malformed,
        }
    }
}

fn put_text(out: &mut Vec<u8>, text: &str, kind: u8) -> Result<(), FrameError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(FrameError::Malformed {
            kind,
            reason: format!("text of {} bytes, more than {MAX_TEXT_BYTES}", text.len()),
        });
    }
    out.extend_from_slice(&(text.len() as u16).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Encodes a batch frame without first moving the batch into a [`Frame`].
pub fn encode_batch(batch: &TelemetryBatch) -> Result<Vec<u8>, FrameError> {
    let body = codec::encode(batch).map_err(|e| FrameError::Malformed {
        kind: BATCH_KIND,
        reason: e.to_string(),
    })?;
    with_header(BATCH_KIND, body)
}

const BATCH_KIND: u8 = 3;

fn with_header(kind: u8, body: Vec<u8>) -> Result<Vec<u8>, FrameError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(FrameError::TooLarge {
            length: body.len(),
            max: MAX_BODY_BYTES,
        });
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Encodes a frame with its header.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, FrameError> {
    let kind = frame.kind();
    let mut body = Vec::new();
    match frame {
        Frame::Hello {
            serial,
            firmware,
            software_version,
        } => {
            body.extend_from_slice(&serial.value().to_le_bytes());
            put_text(&mut body, firmware, kind)?;
            put_text(&mut body, software_version, kind)?;
        }
        Frame::Welcome { acked } => body.extend_from_slice(&acked.0.to_le_bytes()),
        Frame::Batch(batch) => return encode_batch(batch),
        Frame::Ack { seq } => body.extend_from_slice(&seq.0.to_le_bytes()),
        Frame::Task {
            id,
            kind: task,
            parameters,
        } => {
            body.extend_from_slice(&id.to_le_bytes());
            body.push(*task as u8);
            put_text(&mut body, parameters, kind)?;
        }
        Frame::TaskResult { id, state, message } => {
            body.extend_from_slice(&id.to_le_bytes());
            body.push(*state as u8);
            put_text(&mut body, message, kind)?;
        }
        Frame::Heartbeat { sent_us } => body.extend_from_slice(&sent_us.to_le_bytes()),
        Frame::Error { code, message } => {
            body.extend_from_slice(&(*code as u16).to_le_bytes());
            put_text(&mut body, message, kind)?;
        }
    }
    with_header(kind, body)
}

/// Reads fields off a body, failing with the frame's kind on a short read.
struct Reader<'a> {
    bytes: &'a [u8],
    kind: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.bytes.len() < n {
            return Err(self.malformed(format!("needs {n} more bytes, has {}", self.bytes.len())));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn malformed(&self, reason: String) -> FrameError {
        FrameError::Malformed {
            kind: self.kind,
            reason,
        }
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn text(&mut self) -> Result<String, FrameError> {
        let length = usize::from(self.u16()?);
        if length > MAX_TEXT_BYTES {
            return Err(self.malformed(format!(
                "text of {length} bytes, more than {MAX_TEXT_BYTES}"
            )));
        }
        let bytes = self.take(length)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.malformed("text is not UTF-8".into()))
    }

    fn finish<T>(self, value: T) -> Result<T, FrameError> {
        if self.bytes.is_empty() {
            Ok(value)
        } else {
            Err(self.malformed(format!("{} unexpected trailing bytes", self.bytes.len())))
        }
    }
}

/// Checks a frame header: returns the frame's kind and body length.
pub fn parse_header(header: &[u8; HEADER_BYTES]) -> Result<(u8, usize), FrameError> {
    if header[0] != VERSION {
        return Err(FrameError::UnsupportedVersion { version: header[0] });
    }
    let kind = header[1];
    if !(1..=8).contains(&kind) {
        return Err(FrameError::UnknownKind { kind });
    }
    let length = u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if length > MAX_BODY_BYTES {
        return Err(FrameError::TooLarge {
            length,
            max: MAX_BODY_BYTES,
        });
    }
    Ok((kind, length))
}

/// Decodes the first frame in `bytes`: `Ok(None)` when more bytes are needed, otherwise
/// the frame and how many bytes it took.
pub fn decode(bytes: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes[0] != VERSION {
        return Err(FrameError::UnsupportedVersion { version: bytes[0] });
    }
    let Some(header) = bytes.first_chunk::<HEADER_BYTES>() else {
        return Ok(None);
    };
    let (kind, length) = parse_header(header)?;
    let Some(body) = bytes.get(HEADER_BYTES..HEADER_BYTES + length) else {
        return Ok(None);
    };
    Ok(Some((decode_body(kind, body)?, HEADER_BYTES + length)))
}

/// Decodes a body whose header [`parse_header`] accepted.
pub fn decode_body(kind: u8, body: &[u8]) -> Result<Frame, FrameError> {
    let mut r = Reader { bytes: body, kind };
    let frame = match kind {
        1 => {
            let serial_value = r.u64()?;
            let serial = Serial::new(serial_value).ok_or_else(|| {
                r.malformed(format!("serial {serial_value} has more than 12 digits"))
            })?;
            let firmware = r.text()?;
            let software_version = r.text()?;
            r.finish(Frame::Hello {
                serial,
                firmware,
                software_version,
            })?
        }
        2 => {
            let acked = BatchSeq(r.u64()?);
            r.finish(Frame::Welcome { acked })?
        }
        3 => Frame::Batch(Box::new(codec::decode(body).map_err(|e| {
            FrameError::Malformed {
                kind,
                reason: e.to_string(),
            }
        })?)),
        4 => {
            let seq = BatchSeq(r.u64()?);
            r.finish(Frame::Ack { seq })?
        }
        5 => {
            let id = r.u64()?;
            let number = r.u8()?;
            let task = TaskKind::from_number(number)
                .ok_or_else(|| r.malformed(format!("unknown task kind {number}")))?;
            let parameters = r.text()?;
            r.finish(Frame::Task {
                id,
                kind: task,
                parameters,
            })?
        }
        6 => {
            let id = r.u64()?;
            let number = r.u8()?;
            let state = TaskState::from_number(number)
                .ok_or_else(|| r.malformed(format!("unknown task state {number}")))?;
            let message = r.text()?;
            r.finish(Frame::TaskResult { id, state, message })?
        }
        7 => {
            let sent_us = r.u64()? as i64;
            r.finish(Frame::Heartbeat { sent_us })?
        }
        8 => {
            let number = r.u16()?;
            let code = ErrorCode::from_number(number)
                .ok_or_else(|| r.malformed(format!("unknown error code {number}")))?;
            let message = r.text()?;
            r.finish(Frame::Error { code, message })?
        }
        _ => return Err(FrameError::UnknownKind { kind }),
    };
    Ok(frame)
}
