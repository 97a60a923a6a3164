//! One line of the log: its JSON body, the seal chained to the line before, and how a line is
//! read back and opened.

use super::*;

/// The `prev` of the very first line.
pub(super) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
pub(super) const SEAL_HEX: usize = 64;
/// How a line ends: `,"mac":"<64 hex digits>"}`.
pub(super) const SEAL_PREFIX: &str = ",\"mac\":\"";
/// A line longer than this is not one the kiosk wrote (events are a few hundred bytes).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Segment {
    pub(super) generation: u64,
    pub(super) keyed: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Body {
    pub(super) seq: u64,
    pub(super) prev: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) segment: Option<Segment>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) event: Option<Event>,
}

/// A line read back: its body and its seal, checked against each other.
pub(super) struct SealedLine {
    pub(super) body: Body,
    pub(super) mac: String,
}

pub(super) fn seal(key: Option<&ChainKey>, body: &[u8]) -> String {
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

pub(super) fn sealed_text(body: &Body, key: Option<&ChainKey>) -> String {
    let json = serde_json::to_string(body).expect("an audit line serialises");
    let mac = seal(key, json.as_bytes());
    format!("{}{SEAL_PREFIX}{mac}\"}}\n", &json[..json.len() - 1])
}

/// Reads one line without checking its seal: its body, the JSON its seal covers, and the seal.
pub(super) fn parse_line(line: &str) -> Result<(Body, String, String), String> {
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
pub(super) fn open_line(line: &str, key: Option<&ChainKey>) -> Result<SealedLine, String> {
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
