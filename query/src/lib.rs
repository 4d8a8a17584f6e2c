//! `sunfleet-query`: every number an installer or analyst sees comes from here.
//!
//! - [`telemetry`], [`registry`]: the engine's telemetry and the registry as DataFusion
//!   tables; a reading is visible the moment its append is acknowledged.
//! - [`bounds`]: what a scan's filters say about the days and systems it needs.
//! - [`scope`], [`catalog`]: who may see which systems, and sessions whose every table is
//!   filtered by that.
//! - [`engine`]: the query runtime, limits, and analyst SQL; [`output`]: JSON, CSV and
//!   Arrow IPC results.
//! - [`series`]: production series for graphs, from rollups and fresh raw readings;
//!   [`site`]: a site's production, consumption, net import and battery per bucket;
//!   [`live`]: each device's freshest reading; [`devices`]: per-device figures, readings
//!   and reported events of one system; [`lineage`]: the units a device replaced, whose
//!   history its own continues.
//! - [`postgres`], [`flight`]: the analysts' endpoints; [`sql_sign_in`]: their sign-in,
//!   re-checked at every statement; [`throttle`]: sign-in attempt limits (portal too).
//! - [`checks`]: the fleet checks; [`activation`]: the activation checklist advancing
//!   from what gateways report.

pub mod activation;
pub mod array_view;
pub mod bounds;
pub mod catalog;
pub mod checks;
pub mod daily;
pub mod devices;
pub mod engine;
pub mod error;
pub mod flight;
pub mod lineage;
pub mod live;
pub mod output;
pub mod overview;
pub mod postgres;
pub mod registry;
pub mod reports;
pub mod scope;
pub mod scope_filter;
pub mod series;
pub mod site;
pub mod sql_sign_in;
pub mod telemetry;
pub mod throttle;

pub use engine::{PlannedQuery, QueryConfig, QueryEngine, SqlAnswer};
pub use error::QueryError;
pub use output::ResultFormat;
pub use scope::Scope;
