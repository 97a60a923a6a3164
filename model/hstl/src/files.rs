//! Rules for the files the product reads and writes.

use std::path::Path;

/// Largest key or password file read (a key is 64 hex digits).
pub const MAX_SECRET_FILE_BYTES: u64 = 4 * 1024;
/// Largest model file read (the published 256-channel variants are about 360 MB as f32).
pub const MAX_MODEL_FILE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Largest small text file read (an operating point, a configuration).
pub const MAX_TEXT_FILE_BYTES: u64 = 1024 * 1024;

/// Refuses, before anything opens it, a `path` that is not a regular file (after symbolic links):
/// a FIFO would hang the reader or the writer, a device would never end (`/dev/zero`) or swallow
/// everything (`/dev/full`). Also refuses one larger than `max_bytes`. `Ok(None)` when nothing is
/// there.
pub fn check_regular(path: &Path, max_bytes: u64) -> std::io::Result<Option<u64>> {
    use std::io::{Error, ErrorKind};
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    if !metadata.is_file() {
        let kind = file_kind(&metadata);
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} is {kind}, not a regular file", path.display()),
        ));
    }
    if metadata.len() > max_bytes {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{} holds {} bytes, more than the {max_bytes} such a file may",
                path.display(),
                metadata.len()
            ),
        ));
    }
    Ok(Some(metadata.len()))
}

/// The bytes of the regular file `path` of at most `max_bytes` ([`check_regular`]); reading stops
/// at the bound even if the file grows meanwhile.
pub fn read_regular(path: &Path, max_bytes: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    if check_regular(path, max_bytes)?.is_none() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} does not exist", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max_bytes)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = metadata.file_type();
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

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
    fn only_regular_files_of_a_bounded_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, b"0123").unwrap();
        assert_eq!(read_regular(&key, 10).unwrap(), b"0123");
        assert_eq!(
            check_regular(&dir.path().join("missing"), 10).unwrap(),
            None
        );
        let large = read_regular(&key, 3).unwrap_err().to_string();
        assert!(large.contains("more than the 3"), "{large}");
        // A FIFO would block the read for ever: refused before it is opened.
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let refused = read_regular(&fifo, 10).unwrap_err().to_string();
        assert!(refused.contains("a FIFO, not a regular file"), "{refused}");
        // A device behind a symbolic link (the probe's /dev/zero as a key file).
        let device = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &device).unwrap();
        let refused = read_regular(&device, 10).unwrap_err().to_string();
        assert!(refused.contains("a character device"), "{refused}");
        assert!(read_regular(dir.path(), 10)
            .unwrap_err()
            .to_string()
            .contains("a folder"));
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
