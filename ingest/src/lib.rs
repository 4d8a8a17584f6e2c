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

use std::net::SocketAddr;

/// Receive and send buffer asked of the kernel for an endpoint's UDP socket. Thousands of
/// connections share one socket: with the kernel's default (about 200 KiB) bursts are
/// dropped and QUIC falls back to slow loss recovery. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`; raise those on a server for a large fleet
/// (`sysctl -w net.core.rmem_max=33554432 net.core.wmem_max=33554432`).
pub const UDP_BUFFER_BYTES: usize = 32 << 20;

/// A QUIC endpoint on a UDP socket with large buffers: a server if `server` is given.
pub fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let domain = socket2::Domain::for_address(bind);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: a smaller buffer still works, only less well under bursts.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = socket.set_send_buffer_size(UDP_BUFFER_BYTES);
    socket.bind(&bind.into())?;
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no async runtime for QUIC"))?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        runtime,
    )
}
