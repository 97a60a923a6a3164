//! Locating the third-party data in `../shared` that these tests read in place.

#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared` beside the repository, or `HSTL_SHARED_DIR`.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("HSTL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"))
}

/// A file under `../shared`, or `None` (with a message) when absent and not required.
/// With `REQUIRE_SHARED=1` an absent file fails the test.
pub fn shared_file(relative: &str) -> Option<PathBuf> {
    let path = shared_dir().join(relative);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("REQUIRE_SHARED").as_deref() == Ok("1") {
        panic!("REQUIRE_SHARED=1 but {} is missing", path.display());
    }
    eprintln!(
        "SKIPPED: {} not found (set HSTL_SHARED_DIR or REQUIRE_SHARED=1)",
        path.display()
    );
    None
}
