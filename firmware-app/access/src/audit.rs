//! The append-only audit log: one JSON object per line, chained and sealed.
//!
//! - **Chain.** Every line carries the seal of the line before it (`prev`) and its own (`mac`): an
//!   HMAC-SHA256 over the line under a key derived from the kiosk's template key. Editing, removing,
//!   reordering or inserting a line anywhere, the last one included, breaks a seal, and nobody without
//!   the key can compute new ones. Without a key the seal is a plain SHA-256, which shows accidents
//!   but not tampering; such a log says so (`keyed: false`) and a verifier holding a key refuses it.
//! - **Files.** Every file starts with a segment line numbering it (`generation`). When the live file
//!   passes its size limit it becomes `NAME.1` (older files shift up; the one past `keep_files` is
//!   deleted) and the next generation starts. A missing rotated file, a cut head or a renamed file
//!   breaks the numbering.
//! - **Anchors.** The chain's head (sequence number and seal) is published as an event from time to
//!   time, so it is stored outside this file (the gallery database, the MQTT stream). A log that
//!   ends before an anchor lost lines from its end; a line whose seal differs from its anchor was
//!   rewritten. Lines written after the newest anchor can be cut without trace: anchors bound what
//!   can be lost unseen.
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
use crate::gallery::TemplateKey;
use crate::line_file::append_whole_line;

/// The `prev` of the very first line.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const SEAL_HEX: usize = 64;
/// How a line ends: `,"mac":"<64 hex digits>"}`.
const SEAL_PREFIX: &str = ",\"mac\":\"";
/// A line longer than this is not one the kiosk wrote (events are a few hundred bytes).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// What `TemplateKey::derive` is asked for.
const CHAIN_KEY_PURPOSE: &str = "audit chain";

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
}

/// The secret that seals the chain.
#[derive(Clone)]
pub struct ChainKey([u8; 32]);

impl ChainKey {
    /// A chain key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        ChainKey(bytes)
    }

    /// The chain key the kiosk derives from its template key: one secret to install, two keys.
    pub fn from_template_key(key: &TemplateKey) -> Self {
        ChainKey(key.derive(CHAIN_KEY_PURPOSE))
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
    /// Another process holds the log's lock.
    #[error("audit log {path} is in use by another process (lock {lock}): two kiosks on one configuration would fork its chain")]
    Locked {
        /// The log.
        path: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
}

/// The newest line of the chain: what an anchor records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the line.
    pub seq: u64,
    /// Its seal, hex.
    pub mac: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Segment {
    generation: u64,
    keyed: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    seq: u64,
    prev: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    segment: Option<Segment>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    event: Option<Event>,
}

/// A line read back: its body and its seal, checked against each other.
struct SealedLine {
    body: Body,
    mac: String,
}

fn seal(key: Option<&ChainKey>, body: &[u8]) -> String {
    let digest: Vec<u8> = match key {
        Some(key) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key.0).expect("HMAC takes any key size");
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        None => Sha256::digest(body).to_vec(),
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn sealed_text(body: &Body, key: Option<&ChainKey>) -> String {
    let json = serde_json::to_string(body).expect("an audit line serialises");
    let mac = seal(key, json.as_bytes());
    format!("{}{SEAL_PREFIX}{mac}\"}}\n", &json[..json.len() - 1])
}

/// Reads one line without checking its seal: its body, the JSON its seal covers, and the seal.
fn parse_line(line: &str) -> Result<(Body, String, String), String> {
    if line.len() > MAX_LINE_BYTES {
        return Err(format!("a line of {} bytes", line.len()));
    }
    let cut = line
        .len()
        .checked_sub(SEAL_PREFIX.len() + SEAL_HEX + 2)
        .filter(|&cut| line.is_char_boundary(cut))
        .ok_or("not an audit line (too short)")?;
    let (head, tail) = line.split_at(cut);
    let mac = tail
        .strip_prefix(SEAL_PREFIX)
        .and_then(|t| t.strip_suffix("\"}"))
        .filter(|m| m.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or("not an audit line (no seal at its end)")?;
    let json = format!("{head}}}");
    let body: Body = serde_json::from_str(&json).map_err(|e| format!("not an audit line ({e})"))?;
    Ok((body, json, mac.to_string()))
}

/// Reads one line and checks its seal; `Err` says what is wrong with it.
fn open_line(line: &str, key: Option<&ChainKey>) -> Result<SealedLine, String> {
    let (body, json, mac) = parse_line(line)?;
    if seal(key, json.as_bytes()) != mac {
        return Err(if key.is_some() {
            "its seal is wrong: the line was altered, or sealed with another key".into()
        } else {
            "its seal is wrong: the line was altered".into()
        });
    }
    Ok(SealedLine { body, mac })
}

/// The audit log as an event sink: one sealed, chained, fsync'd line per event, rotated by size.
pub struct AuditLog {
    config: AuditConfig,
    key: Option<ChainKey>,
    file: File,
    /// Held for the log's lifetime: the lock is released when it closes.
    _lock: File,
    written: u64,
    generation: u64,
    head: Arc<Mutex<Option<ChainHead>>>,
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

impl AuditLog {
    /// Opens the log for appending: takes its lock, repairs a torn end and resumes the chain from the
    /// last whole line (or starts it). With `key` the chain is sealed; a log begun with a key must be
    /// continued with the same one.
    pub fn open(config: AuditConfig, key: Option<ChainKey>) -> Result<Self, AuditError> {
        let path = config.path.clone();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let lock_file = lock_path(&path);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_file)
            .map_err(io_error(&lock_file))?;
        if lock.try_lock().is_err() {
            return Err(AuditError::Locked {
                path,
                lock: lock_file,
            });
        }
        repair_torn_end(&path)?;
        let resume = resume_point(&config, key.as_ref())?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let written = file.metadata().map_err(io_error(&path))?.len();
        let mut log = AuditLog {
            config,
            key,
            file,
            _lock: lock,
            written,
            generation: resume.generation,
            head: Arc::new(Mutex::new(resume.head)),
        };
        if written == 0 {
            log.start_segment()?;
        }
        Ok(log)
    }

    /// The chain's newest line, shared: it changes as lines are appended.
    pub fn head_handle(&self) -> Arc<Mutex<Option<ChainHead>>> {
        self.head.clone()
    }

    fn start_segment(&mut self) -> Result<(), AuditError> {
        let segment = Segment {
            generation: self.generation,
            keyed: self.key.is_some(),
        };
        self.write_line(Some(segment), None)
    }

    fn write_line(
        &mut self,
        segment: Option<Segment>,
        event: Option<&Event>,
    ) -> Result<(), AuditError> {
        let head = self.head.lock().expect("audit head lock").clone();
        let body = Body {
            seq: head.as_ref().map_or(0, |h| h.seq + 1),
            prev: head.map_or(GENESIS.to_string(), |h| h.mac),
            segment,
            event: event.cloned(),
        };
        let text = sealed_text(&body, self.key.as_ref());
        append_whole_line(&mut self.file, &mut self.written, text.as_bytes()).map_err(
            |source| AuditError::Io {
                path: self.config.path.clone(),
                source,
            },
        )?;
        let mac = text[text.len() - SEAL_HEX - 3..text.len() - 3].to_string();
        *self.head.lock().expect("audit head lock") = Some(ChainHead { seq: body.seq, mac });
        Ok(())
    }

    /// Seals and appends one event; a line that could not be written whole is cut back, so the file only ever holds whole lines.
    pub fn append(&mut self, event: &Event) -> Result<(), AuditError> {
        if self.written >= self.config.max_file_bytes {
            self.rotate()?;
        }
        self.write_line(None, Some(event))
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let path = self.config.path.clone();
        let io = io_error(&path);
        let keep = self.config.keep_files.max(1);
        let oldest = rotated_path(&path, keep);
        if oldest.exists() {
            std::fs::remove_file(&oldest).map_err(&io)?;
        }
        for n in (1..keep).rev() {
            let from = rotated_path(&path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&path, n + 1)).map_err(&io)?;
            }
        }
        std::fs::rename(&path, rotated_path(&path, 1)).map_err(&io)?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(&io)?;
        self.written = 0;
        self.generation += 1;
        self.start_segment()
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

/// Cuts a torn end off the live file: everything after its last whole line. The bytes cut are
/// appended to `NAME.torn` and logged; every whole line stays. Seals are not checked here, so a
/// wrong key never passes for damage.
pub fn repair_torn_end(path: &Path) -> Result<Option<u64>, AuditError> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok(None);
    };
    let mut keep = 0;
    let mut start = 0;
    while let Some(length) = bytes[start..].iter().position(|&b| b == b'\n') {
        let line = &bytes[start..start + length];
        let whole = std::str::from_utf8(line)
            .ok()
            .is_some_and(|text| parse_line(text).is_ok());
        start += length + 1;
        if whole {
            keep = start;
        }
    }
    if keep == bytes.len() {
        return Ok(None);
    }
    let torn = &bytes[keep..];
    let aside = suffixed(path, ".torn");
    let mut saved = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&aside)
        .map_err(io_error(&aside))?;
    saved
        .write_all(torn)
        .and_then(|()| saved.sync_all())
        .map_err(io_error(&aside))?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    file.set_len(keep as u64)
        .and_then(|()| file.sync_all())
        .map_err(io_error(path))?;
    log::warn!(
        "audit log {}: its end was torn (power cut or full disk): {} byte(s) after the last whole line moved to {}",
        path.display(),
        torn.len(),
        aside.display()
    );
    Ok(Some(torn.len() as u64))
}

struct Resume {
    generation: u64,
    head: Option<ChainHead>,
}

/// Generation and head to continue from: the live file's last line, or the newest rotated file's
/// when the live one is empty (a rotation cut short). That line's seal must open with `key`.
fn resume_point(config: &AuditConfig, key: Option<&ChainKey>) -> Result<Resume, AuditError> {
    let candidates = std::iter::once(config.path.clone())
        .chain((1..=config.keep_files.max(1)).map(|n| rotated_path(&config.path, n)));
    for (index, path) in candidates.enumerate() {
        let Some(bytes) = read_bytes(&path)? else {
            continue;
        };
        let (lines, _) = lines_of(&bytes);
        let mut generation = None;
        let mut last = None;
        for (number, line) in lines.iter().enumerate() {
            let Some((body, _, _)) = std::str::from_utf8(line)
                .ok()
                .and_then(|text| parse_line(text).ok())
            else {
                log::error!(
                    "audit log {}, line {}: not an audit line; the chain goes on from the last whole line (`kiosk verify-log` reports it)",
                    path.display(),
                    number + 1
                );
                continue;
            };
            if let Some(segment) = body.segment {
                generation = Some(segment);
            }
            last = Some((number, *line));
        }
        let Some((number, line)) = last else {
            continue;
        };
        let broken = |detail: &str| AuditError::Broken {
            path: path.clone(),
            line: number + 1,
            detail: detail.to_string(),
        };
        if let Some(segment) = generation {
            if segment.keyed != key.is_some() {
                return Err(broken(if segment.keyed {
                    "the log is sealed with a key: configure the kiosk's key file"
                } else {
                    "the log was begun without a key: move it aside to start a sealed one"
                }));
            }
        }
        let text = std::str::from_utf8(line).expect("checked above");
        let sealed = open_line(text, key).map_err(|detail| broken(&detail))?;
        let generation = generation.map_or(0, |s| s.generation);
        return Ok(Resume {
            // The live file continues its generation; after a rotated file the next one starts.
            generation: if index == 0 {
                generation
            } else {
                generation + 1
            },
            head: Some(ChainHead {
                seq: sealed.body.seq,
                mac: sealed.mac,
            }),
        });
    }
    Ok(Resume {
        generation: 0,
        head: None,
    })
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    /// Lines checked, anchors' own lines included.
    pub lines: u64,
    /// Events among them.
    pub events: u64,
    /// Files the chain spans.
    pub files: usize,
    /// Sequence number of the oldest line kept.
    pub first_seq: Option<u64>,
    /// Sequence number of the newest line.
    pub last_seq: Option<u64>,
    /// Whether lines were checked against the key (without one, only the chain's hashes).
    pub keyed: bool,
    /// Published chain heads found in the log as published.
    pub anchors_checked: usize,
}

/// Checks the whole log: every seal, the chain through the rotated files (oldest first) and the live
/// file, the numbering of the files, and every anchor (a head published earlier) that falls within
/// it or after its end. With `key`, every line must be sealed with it.
pub fn verify(
    config: &AuditConfig,
    key: Option<&ChainKey>,
    anchors: &[ChainHead],
) -> Result<Verification, AuditError> {
    let keep = config.keep_files.max(1);
    let mut files: Vec<PathBuf> = (1..=keep)
        .rev()
        .map(|n| rotated_path(&config.path, n))
        .filter(|p| p.exists())
        .collect();
    files.push(config.path.clone());
    let rotated_present = files.len() - 1;
    let mut expected: Option<(u64, String)> = None;
    let mut generation: Option<u64> = None;
    let mut report = Verification {
        lines: 0,
        events: 0,
        files: 0,
        first_seq: None,
        last_seq: None,
        keyed: key.is_some(),
        anchors_checked: 0,
    };
    let mut seals = std::collections::HashMap::new();
    for path in files {
        let Some(bytes) = read_bytes(&path)? else {
            continue;
        };
        report.files += 1;
        let (lines, torn) = lines_of(&bytes);
        for (number, line) in lines.iter().enumerate() {
            let broken = |detail: String| AuditError::Broken {
                path: path.clone(),
                line: number + 1,
                detail,
            };
            let text = std::str::from_utf8(line).map_err(|_| broken("not UTF-8".into()))?;
            let sealed = open_line(text, key).map_err(&broken)?;
            let body = &sealed.body;
            match (number, body.segment) {
                (0, Some(segment)) => {
                    if segment.keyed != key.is_some() {
                        return Err(broken(if segment.keyed {
                            "sealed with a key: verify with the kiosk's key".into()
                        } else {
                            "not sealed with a key: anyone could have rewritten it".into()
                        }));
                    }
                    match generation {
                        None if segment.generation > 0 && rotated_present < keep => {
                            return Err(broken(format!(
                                "the oldest file kept is generation {} but only {rotated_present} of {keep} rotated files are there: rotated files were deleted",
                                segment.generation
                            )));
                        }
                        None if segment.generation == 0 && body.prev != GENESIS => {
                            return Err(broken("the first line does not start the chain".into()));
                        }
                        Some(previous) if segment.generation != previous + 1 => {
                            return Err(broken(format!(
                                "generation {} follows generation {previous}: a file is missing or out of place",
                                segment.generation
                            )));
                        }
                        _ => {}
                    }
                    generation = Some(segment.generation);
                }
                (0, None) => {
                    return Err(broken(
                        "the file does not start with its segment line: its head was cut".into(),
                    ))
                }
                (_, Some(_)) => return Err(broken("a segment line inside a file".into())),
                (_, None) => {}
            }
            if let Some((seq, prev)) = &expected {
                if body.seq != *seq {
                    return Err(broken(format!("sequence {} where {seq} was due", body.seq)));
                }
                if body.prev != *prev {
                    return Err(broken(
                        "does not chain to the line before: the log was altered".into(),
                    ));
                }
            }
            expected = Some((body.seq + 1, sealed.mac.clone()));
            seals.insert(body.seq, sealed.mac.clone());
            report.first_seq.get_or_insert(body.seq);
            report.last_seq = Some(body.seq);
            report.lines += 1;
            report.events += u64::from(body.event.is_some());
        }
        if !torn.is_empty() {
            return Err(AuditError::Incomplete {
                path: path.clone(),
                detail: format!(
                    "{} byte(s) after the last whole line (a torn write; the kiosk repairs it when it starts)",
                    torn.len()
                ),
            });
        }
    }
    for anchor in anchors {
        match seals.get(&anchor.seq) {
            Some(mac) if *mac == anchor.mac => report.anchors_checked += 1,
            Some(_) => {
                return Err(AuditError::Incomplete {
                    path: config.path.clone(),
                    detail: format!(
                        "line {} differs from the head published for it: the log was rewritten",
                        anchor.seq
                    ),
                })
            }
            None if report.last_seq.is_none_or(|last| anchor.seq > last) => {
                return Err(AuditError::Incomplete {
                    path: config.path.clone(),
                    detail: format!(
                        "it ends at line {} but line {} was published as its head: lines were cut from its end",
                        report.last_seq.map_or("none".into(), |s| s.to_string()),
                        anchor.seq
                    ),
                })
            }
            // Rotated away long ago: nothing left to compare.
            None => {}
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::DenialReason;
    use crate::events::EventKind;

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
            decided: None,
            credential: None,
        }
    }

    fn config(dir: &Path, max_file_bytes: u64) -> AuditConfig {
        AuditConfig {
            path: dir.join("audit").join("events.jsonl"),
            max_file_bytes,
            keep_files: 3,
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
        assert_eq!(
            verify(&config, key().as_ref(), std::slice::from_ref(&head))
                .unwrap()
                .anchors_checked,
            1
        );
        let text = std::fs::read_to_string(&config.path).unwrap();
        let kept: Vec<&str> = text.lines().take(4).collect();
        std::fs::write(&config.path, kept.join("\n") + "\n").unwrap();
        assert!(
            verify(&config, key().as_ref(), &[]).is_ok(),
            "no trace without the anchor"
        );
        let error = verify(&config, key().as_ref(), &[head]).unwrap_err();
        assert!(error.to_string().contains("cut from its end"), "{error}");
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
