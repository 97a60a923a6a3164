//! The append-only audit log: one JSON object per line, chained and sealed.
//!
//! - **Chain.** Every line carries the seal of the line before it (`prev`) and its own (`mac`): an
//!   HMAC-SHA256 over the line under the door's own chain key (a key file of its own, made at the
//!   door's first start: never the template key, which every door and station of a site shares).
//!   Editing, removing, reordering or inserting a line anywhere, the last one included, breaks a
//!   seal, and nobody without the key can compute new ones. Without a key the seal is a plain
//!   SHA-256, which shows accidents but not tampering; such a log says so (`keyed: false`) and a
//!   verifier holding a key refuses it.
//! - **Files.** Every file starts with a segment line numbering it (`generation`). When the live file
//!   passes its size limit it becomes `NAME.1` (older files shift up; the one past `keep_files` is
//!   deleted) and the next generation starts. A missing rotated file, a cut head or a renamed file
//!   breaks the numbering.
//! - **Anchors.** The chain's head (sequence number and seal) is published as an event from time to
//!   time, so it is stored outside this file: the gallery database (which the door's user can
//!   rewrite), the site's database (where a door can add events but never change or remove them)
//!   and the MQTT broker (the newest head, retained). A log that ends before an anchor lost lines
//!   from its end; a line whose seal differs from its anchor was rewritten. Lines written after the
//!   newest anchor can be cut without trace: anchors bound what can be lost unseen.
//! - **Writes.** A line is written with one call and flushed (`fdatasync`) before the event counts as
//!   delivered; a write that fails half-way is cut back, so no fragment stays for the next line to be
//!   glued to. A log whose end is torn (a power cut, a full disk) is repaired when it is opened: every
//!   whole line is kept, the torn bytes are moved to `NAME.torn` and the repair is logged.
//! - **One writer.** `NAME.lock` is locked for as long as the log is open: a second kiosk on the same
//!   configuration is refused instead of forking the chain.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::{Event, EventSink, SinkError};
use crate::line_file::append_whole_line;
use crate::secret_file::{create_key_file, read_key_file, SecretFileError};
use crate::vocabulary::ChainHead;

mod line;
mod verify;
mod writer;

pub use line::MAX_LINE_BYTES;
use line::*;
pub use verify::{verify, Anchors, Verification};
pub use writer::{repair_torn_end, AuditLog};

/// Where the audit log lives and how it rotates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// The live file; rotated files sit beside it as `NAME.1`, `NAME.2`, … .
    pub path: PathBuf,
    /// The live file is rotated once it would grow past this.
    pub max_file_bytes: u64,
    /// Rotated files kept beside the live one.
    pub keep_files: usize,
    /// The door's chain key (64 hex digits, mode 600); `NAME.key` beside the log when not given.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl AuditConfig {
    /// Where the door's chain key is kept.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| suffixed(&self.path, ".key"))
    }

    /// Whether any file of the log is there (the live one or a rotated one).
    fn has_lines(&self) -> bool {
        std::iter::once(self.path.clone())
            .chain((1..=self.keep_files.max(1)).map(|n| rotated_path(&self.path, n)))
            .any(|path| std::fs::metadata(path).is_ok_and(|m| m.len() > 0))
    }
}

/// The secret that seals the chain.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    /// A chain key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        ChainKey(bytes)
    }

    /// The door's chain key from its key file ([`AuditConfig::key_path`]).
    pub fn read(config: &AuditConfig) -> Result<Self, AuditError> {
        Ok(ChainKey(read_key_file(&config.key_path())?))
    }

    /// The door's chain key; made (a new random key in a new file) when neither the key file nor
    /// any line of the log is there yet. A log without its key file is refused: a new key would
    /// start a chain that nothing ties to the old one.
    pub fn open_or_create(config: &AuditConfig) -> Result<Self, AuditError> {
        let path = config.key_path();
        if path.symlink_metadata().is_ok() {
            return Self::read(config);
        }
        if config.has_lines() {
            return Err(AuditError::KeyMissing {
                log: config.path.clone(),
                key: path,
            });
        }
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(io_error(folder))?;
        }
        let key = create_key_file(&path)?;
        log::info!(
            "audit log {}: a new chain key for this door in {}",
            config.path.display(),
            path.display()
        );
        Ok(ChainKey(key))
    }
}

/// Why the audit log cannot be written or does not verify.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file system refused.
    #[error("audit log {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A line that fails its seal or its place in the chain.
    #[error("audit log {path}, line {line}: {detail}")]
    Broken {
        /// The file concerned.
        path: PathBuf,
        /// Its line number, from 1.
        line: usize,
        /// What is wrong with it.
        detail: String,
    },
    /// Lines or files missing from the chain (cut head or tail, a deleted rotated file, an anchor not found).
    #[error("audit log {path}: {detail}")]
    Incomplete {
        /// The file concerned.
        path: PathBuf,
        /// What is missing.
        detail: String,
    },
    /// The chain key file cannot be used.
    #[error("audit log chain key: {0}")]
    Key(#[from] SecretFileError),
    /// The log is there but its chain key file is not.
    #[error("audit log {log} is there but its chain key {key} is not: restore the key file, or move the log aside (after `kiosk verify-log` with the old key) to start a new chain")]
    KeyMissing {
        /// The log.
        log: PathBuf,
        /// The key file expected.
        key: PathBuf,
    },
    /// Another process holds the log's lock.
    #[error("audit log {path} is in use by another process (lock {lock}): two kiosks on one configuration would fork its chain")]
    Locked {
        /// The log.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn lock_path(path: &Path) -> PathBuf {
    suffixed(path, ".lock")
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

fn rotated_path(path: &Path, n: usize) -> PathBuf {
    suffixed(path, &format!(".{n}"))
}

fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AuditError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    Ok(Some(bytes))
}

/// Splits a file into its lines; a last line without its newline is returned apart (torn).
fn lines_of(bytes: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let lines = bytes[..complete]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    (lines, &bytes[complete..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use crate::vocabulary::DenialReason;

    fn event(at_ms: i64) -> Event {
        Event {
            at_ms,
            track: Some(1),
            decided: None,
            ..Event::new(
                "front",
                "m",
                EventKind::Denied {
                    reason: DenialReason::Unknown,
                },
            )
        }
    }

    fn config(dir: &Path, max_file_bytes: u64) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit").join("events.jsonl"),
            max_file_bytes,
            keep_files: 3,
            key_file: None,
        }
    }

    fn key() -> Option<ChainKey> {
        Some(ChainKey::new([7; 32]))
    }

    fn written(config: &AuditConfig, events: i64) -> ChainHead {
        let mut log = AuditLog::open(config.clone(), key()).unwrap();
        for i in 0..events {
            log.append(&event(i)).unwrap();
        }
        let head = log.head_handle().lock().unwrap().clone().unwrap();
        head
    }

    fn broken_at(result: Result<Verification, AuditError>) -> (String, usize) {
        match result {
            Err(AuditError::Broken { path, line, .. }) => {
                (path.file_name().unwrap().to_string_lossy().into(), line)
            }
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn the_chain_survives_reopening_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1_200);
        for round in 0..3 {
            let mut log = AuditLog::open(config.clone(), key()).unwrap();
            for i in 0..4 {
                log.append(&event(round * 10 + i)).unwrap();
            }
        }
        assert!(rotated_path(&config.path, 1).exists());
        let report = verify(&config, key().as_ref(), &[]).unwrap();
        assert_eq!(report.events, 12);
        assert!(report.files >= 2 && report.keyed);
    }

    #[test]
    fn an_edited_line_breaks_its_own_seal_even_the_last_one() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        written(&config, 5);
        let text = std::fs::read_to_string(&config.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for victim in [1, lines.len() - 1] {
            let mut edited = lines.clone();
            let changed = edited[victim].replacen("\"unknown\"", "\"ambiguous\"", 1);
            edited[victim] = &changed;
            std::fs::write(&config.path, edited.join("\n") + "\n").unwrap();
            assert_eq!(
                broken_at(verify(&config, key().as_ref(), &[])),
                ("events.jsonl".into(), victim + 1)
            );
        }
    }

    #[test]
    fn resealing_without_the_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        written(&config, 3);
        // Someone rewrites the whole log as an unkeyed chain, every hash recomputed.
        let text = std::fs::read_to_string(&config.path).unwrap();
        let mut forged = String::new();
        let mut prev = GENESIS.to_string();
        for line in text.lines() {
            let mut body = open_line(line, key().as_ref()).unwrap().body;
            body.prev = prev.clone();
            if let Some(segment) = body.segment.as_mut() {
                segment.keyed = false;
            }
            let sealed = sealed_text(&body, None);
            prev = open_line(sealed.trim_end(), None).unwrap().mac;
            forged.push_str(&sealed);
        }
        std::fs::write(&config.path, forged).unwrap();
        assert!(
            verify(&config, None, &[]).is_ok(),
            "a self-consistent unkeyed chain"
        );
        assert_eq!(
            broken_at(verify(&config, key().as_ref(), &[])),
            ("events.jsonl".into(), 1)
        );
    }

    #[test]
    fn removed_lines_a_cut_head_and_deleted_rotations_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        written(&config, 4);
        let text = std::fs::read_to_string(&config.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let without = |skip: usize| {
            lines
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, l)| *l)
                .collect::<Vec<_>>()
                .join("\n")
                + "\n"
        };
        std::fs::write(&config.path, without(2)).unwrap();
        assert_eq!(broken_at(verify(&config, key().as_ref(), &[])).1, 3);
        std::fs::write(&config.path, without(0)).unwrap();
        assert_eq!(broken_at(verify(&config, key().as_ref(), &[])).1, 1);

        let rotating = AuditConfig {
            path: dir.path().join("rot").join("events.jsonl"),
            max_file_bytes: 700,
            keep_files: 3,
            key_file: None,
        };
        written(&rotating, 10);
        assert!(rotated_path(&rotating.path, 3).exists());
        assert!(verify(&rotating, key().as_ref(), &[]).is_ok());
        // One rotated file gone: the numbering no longer adds up, found at the oldest file kept.
        std::fs::remove_file(rotated_path(&rotating.path, 2)).unwrap();
        assert_eq!(
            broken_at(verify(&rotating, key().as_ref(), &[])),
            ("events.jsonl.3".into(), 1)
        );
        std::fs::remove_file(rotated_path(&rotating.path, 3)).unwrap();
        assert_eq!(
            broken_at(verify(&rotating, key().as_ref(), &[])),
            ("events.jsonl.1".into(), 1)
        );
    }

    #[test]
    fn a_cut_tail_is_found_by_the_published_head() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        let head = written(&config, 5);
        let published = [Anchors {
            source: "the site".into(),
            heads: vec![head],
        }];
        assert_eq!(
            verify(&config, key().as_ref(), &published)
                .unwrap()
                .anchors_checked,
            [("the site".to_string(), 1)]
        );
        let text = std::fs::read_to_string(&config.path).unwrap();
        let kept: Vec<&str> = text.lines().take(4).collect();
        std::fs::write(&config.path, kept.join("\n") + "\n").unwrap();
        assert!(
            verify(&config, key().as_ref(), &[]).is_ok(),
            "no trace without the anchor"
        );
        let error = verify(&config, key().as_ref(), &published).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("(the site): lines were cut from its end"),
            "{error}"
        );
    }

    #[test]
    fn a_door_makes_its_own_chain_key_once_and_a_log_without_its_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        let made = ChainKey::open_or_create(&config).unwrap();
        let key_path = config.key_path();
        assert_eq!(key_path, dir.path().join("audit").join("events.jsonl.key"));
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut log = AuditLog::open(config.clone(), Some(made.clone())).unwrap();
        log.append(&event(1)).unwrap();
        drop(log);
        let again = ChainKey::open_or_create(&config).unwrap();
        assert_eq!(again.0, made.0, "the same key on every start");
        assert!(verify(&config, Some(&ChainKey::read(&config).unwrap()), &[]).is_ok());

        // Another door's key (a door of the same site) does not verify this door's log.
        let other = tempfile::tempdir().unwrap();
        let other_config = AuditConfig {
            path: other.path().join("events.jsonl"),
            ..config.clone()
        };
        let other_key = ChainKey::open_or_create(&other_config).unwrap();
        assert_ne!(other_key.0, made.0);
        assert!(verify(&config, Some(&other_key), &[]).is_err());

        std::fs::remove_file(&key_path).unwrap();
        let error = ChainKey::open_or_create(&config).err().unwrap();
        assert!(matches!(error, AuditError::KeyMissing { .. }), "{error}");
        assert!(!key_path.exists(), "no new key for an existing chain");
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        let first = AuditLog::open(config.clone(), key()).unwrap();
        let error = AuditLog::open(config.clone(), key()).err().unwrap();
        assert!(matches!(error, AuditError::Locked { .. }), "{error}");
        drop(first);
        assert!(AuditLog::open(config, key()).is_ok());
    }

    #[test]
    fn a_torn_end_is_moved_aside_and_the_chain_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        written(&config, 3);
        let whole = std::fs::read(&config.path).unwrap();
        for garbage in [
            &b"{\"seq\":4,\"prev\":\"ab"[..],
            &[0u8; 300][..],
            b"\n\n{not json}\n",
        ] {
            let mut torn = whole.clone();
            torn.extend_from_slice(garbage);
            std::fs::write(&config.path, &torn).unwrap();
            assert!(verify(&config, key().as_ref(), &[]).is_err());
            {
                let mut log = AuditLog::open(config.clone(), key()).unwrap();
                log.append(&event(99)).unwrap();
            }
            let report = verify(&config, key().as_ref(), &[]).unwrap();
            assert_eq!(report.events, 4);
            std::fs::write(&config.path, &whole).unwrap();
        }
        let aside = std::fs::read(suffixed(&config.path, ".torn")).unwrap();
        assert!(aside.starts_with(b"{\"seq\":4"));
    }

    #[test]
    fn a_log_sealed_with_a_key_is_not_continued_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        written(&config, 1);
        assert!(AuditLog::open(config.clone(), None).is_err());
        assert!(AuditLog::open(config, Some(ChainKey::new([8; 32]))).is_err());
    }
}
