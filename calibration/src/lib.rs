//! Calibration of the kiosk's decisions: error rates of a distance threshold, for pairs
//! ([`thresholds`]) and for open-set searches against a gallery ([`open_set`]), and the DET curve
//! as a picture ([`det_plot`]).

#![warn(missing_docs)]

pub mod det_plot;
pub mod open_set;
pub mod thresholds;
