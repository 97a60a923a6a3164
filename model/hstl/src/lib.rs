//! HSTL, the hierarchical spatio-temporal gait network (Wang et al., ICCV 2023), for the edge.
//!
//! - [`Weights`]: parameters read from an OpenGait/HSTL `.pt` checkpoint (no Python) or seeded
//!   with OpenGait's initialisation, checked key by key against the reference layout.
//! - [`onnx_graph`]: writes the network as a standard ONNX model that tract and ONNX Runtime run.
//! - [`backend`]: the [`Embedder`] implementations (tract; ONNX Runtime behind feature `ort`).
//! - [`Embedding`] and its reference distance; [`Silhouettes`], the network input.
//! - [`OperatingPoint`]: a model's calibrated accept distance, and [`accepts`], the one accept rule.
//! - [`shipped`]: where the project's trained model is, the default of every tool.

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod backend;
#[cfg(any(test, feature = "datasets"))]
pub mod casia_b;
pub mod checkpoint;
pub mod embedding;
pub mod error;
#[cfg(any(test, feature = "datasets"))]
pub mod evaluation;
pub mod files;
pub mod input;
pub mod model_info;
#[cfg(any(test, feature = "cli"))]
pub mod network_args;
pub mod onnx_graph;
pub mod operating_point;
pub mod pickle;
pub mod precision;
pub mod process_memory;
pub mod shipped;
pub mod streaming;
pub mod variant;
pub mod weights;

pub use backend::tract::TractEmbedder;
pub use backend::{open_embedder, Backend, Embedder, Precision, MAX_THREADS};
pub use embedding::Embedding;
pub use error::{HstlError, Result};
pub use input::{Orientation, Silhouettes};
pub use operating_point::{accepts, model_id, OperatingPoint};
pub use shipped::{model_or_shipped, shipped_model_path};
pub use variant::{Architecture, Variant};
pub use weights::Weights;
