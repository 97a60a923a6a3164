//! The door-kiosk application: frame sources, silhouettes, and choosing the inference backend.

pub mod inference;
pub mod normalise;
