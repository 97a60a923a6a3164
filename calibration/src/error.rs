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
    /// NaN or infinity among the values.
    #[error("{what} holds a non-finite value ({value})")]
    NonFinite {
        /// Weights or activations.
        what: &'static str,
        /// The value.
        value: f32,
    },
    /// The weights do not split into the given number of channels.
    #[error("{len} weights do not split into {channels} output channels")]
    ChannelMismatch {
        /// Number of weights.
        len: usize,
        /// Output channels asked for.
        channels: usize,
    },
    /// A percentile outside (0, 100].
    #[error("percentile {0} is outside (0, 100]")]
    Percentile(f32),
}
