//! The door-kiosk application: frame sources (synthetic scene, image directories, video files,
//! cameras), the silhouette stage (background model, blobs, tracks, quality gates, OpenGait
//! normalisation, windows), inference, the gallery, matching and decisions, events and their sinks
//! (audit log, database, door relay), the status screen, the kiosk loop, enrolment and the demo.

pub mod audit;
pub mod background;
pub mod blobs;
pub mod config;
pub mod decision;
pub mod demo;
pub mod display;
pub mod door;
pub mod enrolment;
pub mod evaluation;
pub mod events;
pub mod extract;
pub mod frame;
pub mod framebuffer;
pub mod gallery;
pub mod inference;
pub mod kiosk;
pub mod line_file;
pub mod matcher;
pub mod mqtt;
pub mod normalise;
pub mod quality;
pub mod silhouette;
pub mod source;
pub mod tracking;
pub mod windows;
