//! Checking the log: every seal, the chain across rotated files and their numbering, and the
//! published anchors.

use super::*;

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
    /// Published chain heads found in the log as published, by where they were published.
    pub anchors_checked: Vec<(String, usize)>,
}

impl Verification {
    /// Published heads found in the log as published, from every place together.
    pub fn anchors_total(&self) -> usize {
        self.anchors_checked.iter().map(|(_, count)| count).sum()
    }
}

/// The chain heads one place holds (the door's gallery, the site's database, the MQTT broker).
#[derive(Debug, Clone, PartialEq)]
pub struct Anchors {
    /// Where they were published, as the report names it.
    pub source: String,
    /// The heads.
    pub heads: Vec<ChainHead>,
}

/// Checks the whole log: every seal, the chain through the rotated files (oldest first) and the live
/// file, the numbering of the files, and every anchor (a head published earlier) that falls within
/// it or after its end. With `key`, every line must be sealed with it.
pub fn verify(
    config: &AuditConfig,
    key: Option<&ChainKey>,
    anchors: &[Anchors],
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
        anchors_checked: Vec::new(),
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
    for Anchors { source, heads } in anchors {
        let mut checked = 0;
        for anchor in heads {
            match seals.get(&anchor.seq) {
                Some(mac) if *mac == anchor.mac => checked += 1,
                Some(_) => {
                    return Err(AuditError::Incomplete {
                        path: config.path.clone(),
                        detail: format!(
                            "line {} differs from the head published for it ({source}): the log was rewritten",
                            anchor.seq
                        ),
                    })
                }
                None if report.last_seq.is_none_or(|last| anchor.seq > last) => {
                    return Err(AuditError::Incomplete {
                        path: config.path.clone(),
                        detail: format!(
                            "it ends at line {} but line {} was published as its head ({source}): lines were cut from its end",
                            report.last_seq.map_or("none".into(), |s| s.to_string()),
                            anchor.seq
                        ),
                    })
                }
                // Rotated away long ago: nothing left to compare.
                None => {}
            }
        }
        report.anchors_checked.push((source.clone(), checked));
    }
    Ok(report)
}
