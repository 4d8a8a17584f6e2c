//! `sunfleet-ingest`: how gateways get their readings into Sunfleet and their tasks back out.
//!
//! Built so far: [`frame`], the versioned, length-prefixed wire format (`PROTOCOL.md`). The
//! QUIC transport with mutual TLS, sessions, acknowledgements after durability, task
//! delivery and the gateway library come next (issue #4).

pub mod frame;
