//! A site of many doors on PostgreSQL.
//!
//! The site database is the system of record: people, their templates (sealed under the site's
//! template key by the enrolment station: the server stores ciphertext and never holds the key),
//! the model that made them, access groups, which doors each group may pass, erasures, and every
//! door's events. Each kiosk keeps its encrypted SQLite gallery as its replica of the people
//! allowed through its door, so that it keeps deciding when the server or the network is down.
//!
//! - [`SiteAdmin`]: enrolment stations and the site owner (enrol, erase, groups, doors).
//! - [`DoorLink`]: a door's own role, which can only read its people's changes and templates and
//!   store its own events ([`schema`] says how the database enforces that).
//! - [`SiteConfig`]: the server, the role, TLS with the server's certificate verified, and
//!   credentials from files only their owner can read.

#![forbid(unsafe_code)]

mod admin;
mod connection;
mod door;
mod error;
pub mod schema;
pub mod tls;

pub use admin::{RefusedEvent, SiteAdmin, SiteEnrolment, SiteErasure, SiteEvent, SitePerson};
pub use connection::SiteConfig;
pub use door::{published_audit_heads, DoorLink};
pub use error::{with_causes, Result, SiteError};
pub use schema::{migrate, schema_version, SCHEMA_VERSION};
