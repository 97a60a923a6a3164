//! Calibration of the kiosk's decisions: error rates of a distance threshold for open-set searches
//! against a gallery ([`open_set`], what `calibrate` measures) and for pairs of embeddings
//! ([`pairs`], what a site has before it has searches), the choice of a threshold for a target rate
//! ([`thresholds`]), and the DET curve as a picture ([`det_plot`]).

#![warn(missing_docs)]

pub mod det_plot;
pub mod open_set;
pub mod pairs;
pub mod thresholds;
