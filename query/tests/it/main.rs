//! `sunfleet-query` end to end: real stores and registries in temporary folders.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers: a panic is the failure report

mod array_view;
mod checks;
mod devices;
mod fleet;
mod overview;
mod reports;
mod series;
mod slt;
mod sql;
