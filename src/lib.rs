//! The `sunfleet` binary's commands, as a library so the end-to-end tests can run them in
//! process. `main.rs` is only the command line.

pub mod cert;
pub mod data;
pub mod demo;
pub mod export;
pub mod import;
pub mod serve;
pub mod simulate;
pub mod simulator;
pub mod soak;
pub mod sql;
pub mod task;
pub mod user;
pub mod weather;
