//! The silhouette stage of the door kiosk, from a camera frame to the windows the network reads:
//! frame sources (image directories, video files, cameras), our background model, person blobs,
//! tracks, quality gates, the OpenGait normalisation and per-track windows. [`SilhouettePipeline`]
//! is the whole stage for one camera; [`extract_walks`] runs it over a recording offline.
//!
//! It knows nothing of the network, the gallery or the door: its output is normalised 64 × 64
//! silhouettes grouped by track.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod background;
pub mod blobs;
mod error;
#[cfg(any(test, feature = "evaluation"))]
pub mod evaluation;
pub mod extract;
pub mod frame;
pub mod normalise;
pub mod pipeline;
pub mod quality;
pub mod source;
pub mod tracking;
pub mod windows;

pub use error::SourceError;
pub use extract::{extract_walks, Extraction};
pub use frame::Frame;
pub use pipeline::{SilhouetteConfig, SilhouettePipeline};
pub use source::FrameSource;
pub use tracking::TrackId;
pub use windows::{Window, WindowQuality};
