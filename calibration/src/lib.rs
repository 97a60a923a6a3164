//! Calibration of the kiosk's decisions. So far: error rates of a distance threshold.

pub mod thresholds;
