//! `sunfleet-engine`: durable, queryable storage for fleet telemetry, and the fleet registry.
//!
//! Modules today:
//! - [`ids`]: identity newtypes: serial numbers at the edges, dense ids inside.
//! - [`time`]: UTC timestamps in microseconds and civil (calendar) dates.
//! - [`telemetry`]: what a gateway uploads: columnar batches of microinverter, meter and
//!   battery readings and device events.
//! - [`wal`]: the write-ahead log: group commit with fsync, torn-tail recovery, and the
//!   compact record codec.
//! - [`failpoint`]: named crash points armed by an environment variable (durability tests).
//! - [`error`]: the crate's error type.
//!
//! The write buffer, Parquet partitions, rollups and the registry are built on these types (see `ARCHITECTURE.md` at the workspace root for the plan and its status).

pub mod activity;
pub mod buffer;
pub mod compaction;
pub mod dedup;
pub mod device_models;
pub mod directory;
pub mod error;
pub mod failpoint;
pub mod grid_profiles;
pub mod ids;
pub mod manifest;
pub mod registry;
pub mod rollups;
pub mod scan;
pub mod storage;
pub mod store;
pub mod tables;
pub mod telemetry;
pub mod time;
pub mod wal;

pub use error::Error;
