//! Calibration of the kiosk's decisions: error rates of a distance threshold for open-set searches
//! against a gallery ([`open_set`], what `calibrate` measures) and for pairs of embeddings
//! ([`pairs`], what a site has before it has searches), the choice of a threshold for a target rate
//! ([`thresholds`]), what the door's own policy does with each walk-up ([`walk_level`]), cohort score
//! normalisation of its searches ([`cohort`]), the DET curve as a picture ([`det_plot`]), and the
//! int8 scales of reduced precision ([`quantize`]).

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cohort;
pub mod det_plot;
mod error;
pub mod open_set;
pub mod pairs;
pub mod quantize;
pub mod thresholds;
pub mod walk_level;

pub use error::QuantizeError;
