//! The append-only audit log: one JSON object per line, each carrying the SHA-256 of the line before
//! it, so that editing, removing or reordering any line breaks the chain at that line. Every line is
//! flushed to disk (`fsync`) before the event counts as delivered. When the file passes its size limit
//! it is renamed `NAME.1` (older files shift up, the oldest past `keep_files` is deleted) and the chain
//! carries on into the new file.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::{Event, EventSink, SinkError};

/// The `prev` of the very first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditConfig {
    pub path: PathBuf,
    pub max_file_bytes: u64,
    /// Rotated files kept beside the live one.
    pub keep_files: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("audit log {path}, line {line}: {detail}")]
    Broken {
        path: PathBuf,
        line: usize,
        detail: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Line {
    seq: u64,
    prev: String,
    event: Event,
}

pub struct AuditLog {
    config: AuditConfig,
    file: File,
    written: u64,
    next_seq: u64,
    last_hash: String,
}

impl AuditLog {
    /// Opens the log for appending, resuming the chain from its last line.
    pub fn open(config: AuditConfig) -> Result<Self, AuditError> {
        let io = |source| AuditError::Io {
            path: config.path.clone(),
            source,
        };
        if let Some(parent) = config.path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let (next_seq, last_hash) = resume_point(&config)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .map_err(io)?;
        let written = file.metadata().map_err(io)?.len();
        Ok(AuditLog {
            config,
            file,
            written,
            next_seq,
            last_hash,
        })
    }

    pub fn append(&mut self, event: &Event) -> Result<(), AuditError> {
        if self.written >= self.config.max_file_bytes {
            self.rotate()?;
        }
        let path = &self.config.path;
        let io = |source| AuditError::Io {
            path: path.clone(),
            source,
        };
        let line = Line {
            seq: self.next_seq,
            prev: self.last_hash.clone(),
            event: event.clone(),
        };
        let mut text = serde_json::to_string(&line).map_err(|e| AuditError::Broken {
            path: path.clone(),
            line: 0,
            detail: e.to_string(),
        })?;
        text.push('\n');
        self.file.write_all(text.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.written += text.len() as u64;
        self.next_seq += 1;
        self.last_hash = hash_line(text.trim_end_matches('\n'));
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let io = |source| AuditError::Io {
            path: self.config.path.clone(),
            source,
        };
        let oldest = rotated_path(&self.config.path, self.config.keep_files);
        if oldest.exists() {
            std::fs::remove_file(&oldest).map_err(io)?;
        }
        for n in (1..self.config.keep_files).rev() {
            let from = rotated_path(&self.config.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.config.path, n + 1)).map_err(io)?;
            }
        }
        if self.config.keep_files > 0 {
            std::fs::rename(&self.config.path, rotated_path(&self.config.path, 1)).map_err(io)?;
        } else {
            std::fs::remove_file(&self.config.path).map_err(io)?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .map_err(io)?;
        self.written = 0;
        Ok(())
    }
}

impl EventSink for AuditLog {
    fn name(&self) -> &str {
        "audit log"
    }

    fn deliver(&mut self, event: &Event) -> Result<(), SinkError> {
        self.append(event).map_err(|e| SinkError {
            sink: "audit log".into(),
            detail: e.to_string(),
        })
    }
}

fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn hash_line(line: &str) -> String {
    Sha256::digest(line.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sequence number and hash to continue from: the last line of the live file, or of the newest rotated
/// file when the live one is empty.
fn resume_point(config: &AuditConfig) -> Result<(u64, String), AuditError> {
    for path in std::iter::once(config.path.clone())
        .chain((1..=config.keep_files).map(|n| rotated_path(&config.path, n)))
    {
        if let Some((seq, hash)) = last_line(&path)? {
            return Ok((seq + 1, hash));
        }
    }
    Ok((0, GENESIS.to_string()))
}

fn last_line(path: &Path) -> Result<Option<(u64, String)>, AuditError> {
    let Ok(file) = File::open(path) else {
        return Ok(None);
    };
    let mut last = None;
    for (number, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line).map_err(|e| AuditError::Broken {
            path: path.to_path_buf(),
            line: number + 1,
            detail: format!("not an audit line ({e})"),
        })?;
        last = Some((parsed.seq, hash_line(&line)));
    }
    Ok(last)
}

/// Checks the chain through the rotated files (oldest first) and the live file; returns the number of
/// lines checked. The first line checked may follow lines already rotated away, so its `prev` is taken
/// as given.
pub fn verify(config: &AuditConfig) -> Result<u64, AuditError> {
    let mut files: Vec<PathBuf> = (1..=config.keep_files)
        .rev()
        .map(|n| rotated_path(&config.path, n))
        .filter(|p| p.exists())
        .collect();
    files.push(config.path.clone());
    let mut expected: Option<(u64, String)> = None;
    let mut count = 0;
    for path in files {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(AuditError::Io { path, source }),
        };
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let broken = |detail: String| AuditError::Broken {
                path: path.clone(),
                line: number + 1,
                detail,
            };
            let line = line.map_err(|e| broken(e.to_string()))?;
            let parsed: Line = serde_json::from_str(&line)
                .map_err(|e| broken(format!("not an audit line ({e})")))?;
            if let Some((seq, hash)) = &expected {
                if parsed.seq != *seq {
                    return Err(broken(format!(
                        "sequence {} where {seq} was due",
                        parsed.seq
                    )));
                }
                if parsed.prev != *hash {
                    return Err(broken(
                        "does not chain to the line before: the log was altered".into(),
                    ));
                }
            }
            expected = Some((parsed.seq + 1, hash_line(&line)));
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{DenialReason, EventKind};

    fn event(at_ms: i64) -> Event {
        Event {
            at_ms,
            door: "front".into(),
            kind: EventKind::Denied {
                reason: DenialReason::Unknown,
            },
            track: Some(1),
            person: None,
            figures: None,
            model_id: "m".into(),
        }
    }

    fn config(dir: &Path, max_file_bytes: u64) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit").join("events.jsonl"),
            max_file_bytes,
            keep_files: 3,
        }
    }

    #[test]
    fn the_chain_survives_reopening_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 600);
        for round in 0..3 {
            let mut log = AuditLog::open(config.clone()).unwrap();
            for i in 0..4 {
                log.append(&event(round * 10 + i)).unwrap();
            }
        }
        assert!(
            rotated_path(&config.path, 1).exists(),
            "600 bytes hold fewer than 12 lines"
        );
        assert_eq!(verify(&config).unwrap(), 12);
    }

    #[test]
    fn an_edited_line_breaks_the_chain_at_the_next_line() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        let mut log = AuditLog::open(config.clone()).unwrap();
        for i in 0..5 {
            log.append(&event(i)).unwrap();
        }
        let text = std::fs::read_to_string(&config.path).unwrap();
        let edited = text.replacen(r#""reason":"unknown""#, r#""reason":"ambiguous""#, 1);
        std::fs::write(&config.path, edited).unwrap();
        match verify(&config) {
            Err(AuditError::Broken { line: 2, .. }) => {}
            other => panic!("expected a break at line 2, got {other:?}"),
        }
    }

    #[test]
    fn a_removed_line_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1 << 20);
        let mut log = AuditLog::open(config.clone()).unwrap();
        for i in 0..4 {
            log.append(&event(i)).unwrap();
        }
        let text = std::fs::read_to_string(&config.path).unwrap();
        let kept: Vec<&str> = text
            .lines()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| l)
            .collect();
        std::fs::write(&config.path, kept.join("\n") + "\n").unwrap();
        assert!(matches!(
            verify(&config),
            Err(AuditError::Broken { line: 2, .. })
        ));
    }
}
