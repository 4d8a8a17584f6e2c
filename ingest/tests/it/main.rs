//! Integration tests of the ingest crate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a panic is the failure report

mod frame;
mod harness;
mod server;
mod tasks;
mod tls;
