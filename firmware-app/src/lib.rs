//! The door-kiosk application. So far: frame sources (synthetic scene, image directories, video files,
//! cameras), the silhouette stage (background model, blobs, tracks, quality gates, OpenGait
//! normalisation, windows) and choosing the inference backend.

pub mod background;
pub mod blobs;
pub mod evaluation;
pub mod extract;
pub mod frame;
pub mod inference;
pub mod normalise;
pub mod quality;
pub mod silhouette;
pub mod source;
pub mod tracking;
pub mod windows;
