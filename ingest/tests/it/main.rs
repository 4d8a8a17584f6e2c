//! Integration tests of the ingest crate.
#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod frame;
