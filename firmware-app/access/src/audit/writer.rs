//! Writing the log: one sealed line per event, rotation by size, the lock, and the repair of a torn
//! end when it is opened.

use super::*;

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

impl AuditLog {
    /// Opens the log for appending: takes its lock, repairs a torn end and resumes the chain from the
    /// last whole line (or starts it). With `key` the chain is sealed; a log begun with a key must be
    /// continued with the same one.
    pub fn open(config: AuditConfig, key: Option<ChainKey>) -> Result<Self, AuditError> {
        let path = config.path.clone();
        // A FIFO would block the kiosk, a device (`/dev/full`) swallow every line.
        hstl::files::check_regular(&path, u64::MAX).map_err(io_error(&path))?;
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
