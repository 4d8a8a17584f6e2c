//! `sunfleet-ingest`: how gateways get their readings into Sunfleet and their tasks back out.
//!
//! - [`frame`]: the versioned, length-prefixed wire format (`PROTOCOL.md`).
//! - [`wire`]: frames over QUIC streams, with a shared memory budget for frame bodies.
//! - [`tls`]: the fleet CA, server and gateway certificates, TLS 1.3 configurations.
//! - [`server`]: the ingest server (mutual TLS, registry checks, acks after durability,
//!   sessions and their high-water marks, task delivery, admission control).
//! - [`gateway`]: the gateway side, as a library (simulator, tests, benchmarks).

pub mod frame;
pub mod gateway;
pub mod server;
pub mod tls;
pub mod wire;
