//! Frames over a QUIC stream, for both ends: a reader that holds at most one frame at a
//! time and charges its body to a shared memory budget, and a writer.

use std::sync::Arc;
use std::time::Duration;

use quinn::{ReadExactError, RecvStream, SendStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::frame::{self, Frame, FrameError, HEADER_BYTES};

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("the stream ended in the middle of a frame")]
    Truncated,
    #[error("a frame of {length} bytes was not completed within {seconds} s")]
    Stalled { length: usize, seconds: u64 },
    #[error("stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
}

/// Bytes of frame bodies being received or waiting to be stored, across all connections.
/// A reader waits for room before it reads a body, so a flood of large frames slows the
/// senders (QUIC flow control) instead of growing memory.
#[derive(Debug, Clone)]
pub struct FrameBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl FrameBudget {
    pub fn new(total_bytes: usize) -> Self {
        let total = total_bytes.max(frame::MAX_BODY_BYTES);
        Self {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// Bytes currently charged.
    pub fn in_use(&self) -> usize {
        self.total - self.bytes.available_permits()
    }

    pub fn total(&self) -> usize {
        self.total
    }

    async fn charge(&self, bytes: usize) -> Result<OwnedSemaphorePermit, WireError> {
        // MAX_BODY_BYTES fits in u32 and the budget is at least that large.
        let permits = bytes.clamp(1, frame::MAX_BODY_BYTES) as u32;
        Arc::clone(&self.bytes)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| WireError::ShuttingDown)
    }

    /// Refuses every further charge (server shutdown).
    pub fn close(&self) {
        self.bytes.close();
    }
}

/// A frame and the share of the budget its body holds until it is dropped.
#[derive(Debug)]
pub struct ReceivedFrame {
    pub frame: Frame,
    pub charge: Option<OwnedSemaphorePermit>,
    pub bytes: usize,
}

/// Reads frames off a receiving stream.
pub struct FrameReader {
    stream: RecvStream,
    budget: Option<FrameBudget>,
    body_timeout: Duration,
}

impl FrameReader {
    pub fn new(stream: RecvStream, budget: Option<FrameBudget>, body_timeout: Duration) -> Self {
        Self {
            stream,
            budget,
            body_timeout,
        }
    }

    /// The next frame; `Ok(None)` when the peer finished the stream between frames. Waits
    /// as long as it takes for a frame to start, but at most the body timeout for the rest.
    pub async fn next(&mut self) -> Result<Option<ReceivedFrame>, WireError> {
        let mut header = [0u8; HEADER_BYTES];
        let mut filled = 0;
        // The first byte may wait; an idle connection is the QUIC idle timeout's business.
        match self.stream.read(&mut header[..1]).await? {
            None => return Ok(None),
            Some(0) => return Ok(None),
            Some(n) => filled += n,
        }
        if header[0] != frame::VERSION {
            return Err(FrameError::UnsupportedVersion { version: header[0] }.into());
        }
        let stalled = |length| WireError::Stalled {
            length,
            seconds: self.body_timeout.as_secs(),
        };
        let read_rest = self.stream.read_exact(&mut header[filled..]);
        match tokio::time::timeout(self.body_timeout, read_rest).await {
            Err(_) => return Err(stalled(0)),
            Ok(result) => result.map_err(read_exact_error)?,
        }
        let (kind, length) = frame::parse_header(&header)?;
        let charge = match &self.budget {
            Some(budget) => Some(budget.charge(length).await?),
            None => None,
        };
        let mut body = vec![0u8; length];
        let read_body = self.stream.read_exact(&mut body);
        match tokio::time::timeout(self.body_timeout, read_body).await {
            Err(_) => return Err(stalled(length)),
            Ok(result) => result.map_err(read_exact_error)?,
        }
        let frame = frame::decode_body(kind, &body)?;
        Ok(Some(ReceivedFrame {
            frame,
            charge,
            bytes: HEADER_BYTES + length,
        }))
    }

    /// Stops reading, telling the peer why.
    pub fn stop(&mut self, code: frame::ErrorCode) {
        let _ = self.stream.stop(quinn::VarInt::from_u32(code as u32));
    }
}

fn read_exact_error(error: ReadExactError) -> WireError {
    match error {
        ReadExactError::FinishedEarly(_) => WireError::Truncated,
        ReadExactError::ReadError(e) => WireError::Read(e),
    }
}

/// Writes frames to a sending stream.
pub struct FrameWriter {
    stream: SendStream,
}

impl FrameWriter {
    pub fn new(stream: SendStream) -> Self {
        Self { stream }
    }

    pub async fn send(&mut self, frame: &Frame) -> Result<(), WireError> {
        let bytes = frame::encode(frame)?;
        self.stream.write_all(&bytes).await?;
        Ok(())
    }

    /// Writes an encoded frame.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.send_raw(bytes).await
    }

    /// Writes bytes as they are (tests use it to send malformed frames).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Ends the stream after everything written so far.
    pub fn finish(&mut self) -> Result<(), WireError> {
        self.stream.finish()?;
        Ok(())
    }
}
