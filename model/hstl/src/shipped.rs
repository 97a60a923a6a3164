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

/// The operating points calibrated for the shipped models (float and int8), compiled in: a file
/// beside a model can never loosen the point a door's own is checked against.
const SHIPPED_POINTS: [&str; 2] = [
    include_str!("../../weights/hstl-compact-casia-b.onnx.operating-point.json"),
    include_str!("../../weights/hstl-compact-casia-b.int8.onnx.operating-point.json"),
];

/// The operating point the project calibrated for the model `model_id` when it is one of the
/// shipped models (or a copy of one), as shipped.
pub fn shipped_point(model_id: &str) -> Option<crate::OperatingPoint> {
    SHIPPED_POINTS
        .iter()
        .map(|text| serde_json::from_str::<crate::OperatingPoint>(text))
        .filter_map(Result::ok)
        .find(|point| point.model_id == model_id)
}

/// `named`, or the shipped model when none was named.
pub fn model_or_shipped(named: Option<&Path>) -> PathBuf {
    named.map_or_else(shipped_model_path, Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{model_id, OperatingPoint};

    #[test]
    fn the_compiled_in_points_are_the_shipped_files() {
        for file in [SHIPPED_MODEL_FILE, "hstl-compact-casia-b.int8.onnx"] {
            let model = source_tree_model().with_file_name(file);
            let id = model_id(&model).unwrap();
            let on_disk = OperatingPoint::load_for(&model, &id).unwrap().unwrap();
            assert_eq!(shipped_point(&id), Some(on_disk), "{file}");
        }
        assert_eq!(shipped_point("sha256:another-model"), None);
    }
}
