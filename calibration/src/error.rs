//! What can go wrong in calibration.

use thiserror::Error;

/// Why no scale could be found.
#[derive(Debug, Error, PartialEq)]
pub enum QuantizeError {
    /// The observer saw no value at all (an empty calibration set).
    #[error("no activation values were observed: the calibration set is empty")]
    NothingObserved,
    /// Every value was zero (an all-black calibration set, or a dead layer).
    #[error(
        "every observed activation value is zero: the calibration set shows nothing (all black?)"
    )]
    AllZero,
    /// NaN or infinity among the activations.
    #[error("an activation holds a non-finite value ({0})")]
    NonFinite(f32),
    /// A percentile outside (0, 100].
    #[error("percentile {0} is outside (0, 100]")]
    Percentile(f32),
}
