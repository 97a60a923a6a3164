//! The project's trained weights (`model/weights/`, research use: trained on CASIA-B), the model every
//! tool runs when none is named.
//!
//! One lookup for every tool, so that `hstl`, `enrol`, `calibrate`, the kiosk and the demo can never
//! disagree about which network "the default" is (a gallery enrolled with one and matched with another
//! would be refused by its model id anyway, but only at the door).

use std::path::{Path, PathBuf};

/// The shipped model's file name; its operating point sits beside it
/// ([`crate::OperatingPoint::path_for`]).
pub const SHIPPED_MODEL_FILE: &str = "hstl-compact-casia-b.onnx";

/// Names another model file to use as the default (a site's own calibrated copy, say).
pub const MODEL_ENV: &str = "HSTL_MODEL";

/// Where the model is when no model is named: `$HSTL_MODEL` when set; else `model/` beside the
/// release package's `bin/` (`bin/../model/`), when it is there; else the source tree's
/// `model/weights/`, for binaries built and run from a checkout. The file is not opened here: loading
/// it reports a missing or broken file with this path.
pub fn shipped_model_path() -> PathBuf {
    if let Some(named) = std::env::var_os(MODEL_ENV).filter(|value| !value.is_empty()) {
        return PathBuf::from(named);
    }
    let packaged = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().and_then(Path::parent).map(Path::to_path_buf))
        .map(|root| root.join("model").join(SHIPPED_MODEL_FILE));
    match packaged {
        Some(path) if path.is_file() => path,
        _ => source_tree_model(),
    }
}

/// The shipped model in the checkout this crate was built from.
pub fn source_tree_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../weights")
        .join(SHIPPED_MODEL_FILE)
}

/// `named`, or the shipped model when none was named.
pub fn model_or_shipped(named: Option<&Path>) -> PathBuf {
    named.map_or_else(shipped_model_path, Path::to_path_buf)
}
