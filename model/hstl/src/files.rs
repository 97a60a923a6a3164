//! Rules for the files the tools write.

use std::path::Path;

use crate::error::{HstlError, Result};

/// Refuses an output that is one of the inputs (under any spelling of its path, links included):
/// writing it would destroy what is being read.
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<()> {
    let Ok(written) = output.canonicalize() else {
        // Not there yet, so not an input either.
        return Ok(());
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|read| read == written) {
            return Err(HstlError::OutputIsInput {
                path: output.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_that_is_an_input_is_refused_under_any_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("walk.npy");
        std::fs::write(&input, b"x").unwrap();
        let other = dir.path().join("embedding.npy");
        assert!(check_output(&other, &[&input]).is_ok());
        std::fs::write(&other, b"y").unwrap();
        assert!(
            check_output(&other, &[&input]).is_ok(),
            "an old output may be replaced"
        );
        let spelled = dir.path().join(".").join("walk.npy");
        let error = check_output(&spelled, &[&input]).unwrap_err();
        assert!(error.to_string().contains("walk.npy"), "{error}");
        let link = dir.path().join("link.npy");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        assert!(check_output(&link, &[&input]).is_err());
    }
}
