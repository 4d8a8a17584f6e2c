//! `sunfleet-portal`: the installer portal. Server-rendered pages and a JSON API over the
//! query layer, for installers, subcontractors, owners and analysts.
//!
//! Modules:
//! - [`server`]: the router, shared state and the HTTP server's life cycle;
//! - [`session`]: sign-in sessions in cookies, CSRF tokens, the signed-in [`Principal`];
//! - [`access`]: the one function that decides what a principal may do ([`access::authorize`]);
//! - [`pages`]: the HTML pages (sign-in, dashboard, alerts, systems);
//! - [`api`]: the JSON API beside the pages, and analyst SQL;
//! - [`fleet`]: what the fleet pages and the API show, read through the query layer in the
//!   principal's scope;
//! - [`weather`]: the pluggable weather source of the system pages;
//! - [`mail`]: the mails to owners and the deliverer that sends the registry's outbox;
//! - [`error`]: every failure's status code and message, in one place.

pub mod access;
pub mod api;
pub mod error;
pub mod fleet;
pub mod i18n;
pub mod mail;
pub mod pages;
pub mod server;
pub mod session;
pub mod weather;

pub use error::PortalError;
pub use server::{PortalConfig, PortalServer};
pub use session::Principal;
