//! The door-kiosk application: the kiosk loop that joins a camera's silhouette stage
//! ([`silhouette`]) to the network ([`hstl`]) and to access decisions ([`access`]), its
//! configuration, the inference wiring, the door's outputs (relay, MQTT, status screen on a
//! framebuffer), the link to a site of many doors and enrolment. The binaries `kiosk` and `enrol` live in the `kiosk-cli` package.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod audit_anchors;
pub mod config;
pub mod display;
pub mod door_inputs;
pub mod enrolment;
pub mod framebuffer;
mod kiosk;
pub mod kiosk_loop;
pub mod mqtt;
pub mod panel;
pub mod relay;
pub mod site_sync;
pub mod threads;

pub use kiosk::{Kiosk, SetupError, MAX_QUEUED_EVENTS};
