//! The door-kiosk application. So far: choosing and opening the inference backend.

pub mod inference;
