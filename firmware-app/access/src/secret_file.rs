//! Secrets kept in files (the template key, the OSDP secure-channel key, database passwords, TLS
//! private keys): every one is read here, and refused when others may read the file, because a
//! secret that others can read protects nothing.

use std::path::{Path, PathBuf};

/// Why a secret file was not used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file cannot be read.
    #[error("reading the key file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A new key file could not be written whole (it exists already, or the disk refused).
    #[error("writing the key file {path}: {source}")]
    Unwritable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file can be read by other users.
    #[error("the key file {path} can be read by others (mode {mode:o}): `chmod 600` it, owned by the kiosk's user")]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key of the length asked for.
    #[error("the key in {path} must be {bytes} bytes written as {} hex digits", bytes * 2)]
    NotAKey {
        /// The file.
        path: PathBuf,
        /// The key's length.
        bytes: usize,
    },
}

/// The text of a file holding a secret, refused when its mode lets anyone but its owner read it.
pub fn read_private_file(path: &Path) -> Result<String, SecretFileError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |source| SecretFileError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // A device or a FIFO is refused before its mode is read or anything opens it.
    hstl::files::check_regular(path, hstl::files::MAX_SECRET_FILE_BYTES).map_err(unreadable)?;
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Exposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    let bytes =
        hstl::files::read_regular(path, hstl::files::MAX_SECRET_FILE_BYTES).map_err(unreadable)?;
    String::from_utf8(bytes).map_err(|_| {
        unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not text",
        ))
    })
}

/// An `N`-byte key from a key file: `2N` hex digits, the file readable by its owner only.
pub fn read_key_file<const N: usize>(path: &Path) -> Result<[u8; N], SecretFileError> {
    let text = read_private_file(path)?;
    key_from_hex(&text).ok_or_else(|| SecretFileError::NotAKey {
        path: path.to_path_buf(),
        bytes: N,
    })
}

/// Writes a new random `N`-byte key to `path` as `2N` hex digits on a line, readable by its owner
/// only, and returns it. An existing file is never overwritten (losing a key makes everything sealed
/// with it unreadable), and a key that did not reach the disk whole is removed again: a torn key
/// left behind would make the next attempt fail with "File exists".
pub fn create_key_file<const N: usize>(path: &Path) -> Result<[u8; N], SecretFileError> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let unwritable = |source| SecretFileError::Unwritable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(unwritable)?;
    let mut key = [0u8; N];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    if let Err(error) = writeln!(file, "{hex}").and_then(|()| file.sync_all()) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(unwritable(error));
    }
    Ok(key)
}

/// `N` bytes from `2N` hex digits (surrounding white space ignored).
pub(crate) fn key_from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut key = [0u8; N];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}
