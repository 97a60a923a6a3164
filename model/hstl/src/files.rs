//! Rules for the files the tools write.

use std::path::Path;

use crate::error::{HstlError, Result};

/// Refuses an output that is one of the inputs (under any spelling of its path, symbolic or hard
/// links included: the same file on the same device): writing it would destroy what is being read.
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(written) = std::fs::metadata(output) else {
        // Not there yet, so not an input either.
        return Ok(());
    };
    for input in inputs {
        if std::fs::metadata(input)
            .is_ok_and(|read| (read.dev(), read.ino()) == (written.dev(), written.ino()))
        {
            return Err(HstlError::OutputIsInput {
                path: output.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// Replaces `path` with `bytes` whole: written beside it (`PATH.partial`), flushed to the disk, renamed
/// over it and the rename flushed too, so that a power cut at any moment leaves the old file or the
/// new one, never a torn or empty one.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let mut file = std::fs::File::create(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::File::open(parent)?.sync_all()
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
        // The hostile probe's case: a hard link, another name for the very same file.
        let hard = dir.path().join("hard.npy");
        std::fs::hard_link(&input, &hard).unwrap();
        assert!(check_output(&hard, &[&input]).is_err());
        assert!(check_output(&input, &[&hard]).is_err());
    }

    #[test]
    fn a_file_is_replaced_whole_and_nothing_is_left_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("point.json");
        replace_durably(&path, b"first").unwrap();
        replace_durably(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no-such-folder").join("point.json");
        assert!(replace_durably(&missing, b"x").is_err());
    }
}
