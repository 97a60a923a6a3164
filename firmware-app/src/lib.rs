//! The door-kiosk application: the kiosk loop that joins a camera's silhouette stage
//! ([`silhouette`]) to the network ([`hstl`]) and to access decisions ([`access`]), its
//! configuration, the inference wiring, the door's outputs (relay, MQTT, status screen on a
//! framebuffer), the link to a site of many doors and enrolment. The binaries `kiosk` and `enrol` live in the `kiosk-cli` package.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod assembly;
pub mod config;
pub mod display;
pub mod door;
pub mod door_watch;
pub mod enrolment;
pub mod framebuffer;
pub mod kiosk;
pub mod mqtt;
pub mod panel;
pub mod site_sync;
pub mod threads;

pub use assembly::{Kiosk, SetupError, MAX_QUEUED_EVENTS};
