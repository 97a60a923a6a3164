//! What can go wrong with a gallery, and SQLite's errors told apart.

use super::*;

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("{path} is not a gallery database or is damaged ({detail})")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path} cannot be written: its file system is read-only, or it belongs to another user (the kiosk and `enrol` must run as the user that owns the gallery and its folder)")]
    ReadOnly { path: PathBuf },
    #[error("no gallery at {path}: enrol someone first (`enrol add --gallery {path} ...`) or correct the path")]
    Missing { path: PathBuf },
    #[error("{path} has gallery schema {found}, newer than this build's {SCHEMA_VERSION}: update the kiosk software")]
    NewerSchema { path: PathBuf, found: i32 },
    #[error("the gallery is encrypted: configure its key")]
    KeyRequired,
    #[error("the configured key does not open this gallery")]
    WrongKey,
    #[error("a key is configured but the gallery was created unencrypted; its templates would stay in clear")]
    NotEncrypted,
    #[error("reading the key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key file {path} can be read by others (mode {mode:o}): `chmod 600` it, owned by the kiosk's user")]
    KeyExposed { path: PathBuf, mode: u32 },
    #[error("a key must be {KEY_BYTES} bytes written as {} hex digits", KEY_BYTES * 2)]
    BadKey,
    #[error("the gallery was enrolled with model {gallery}, the kiosk runs model {model}: re-enrol or use the matching model")]
    ModelMismatch { gallery: String, model: String },
    #[error("{0} is already enrolled")]
    AlreadyEnrolled(String),
    #[error("nobody called {0} is enrolled")]
    UnknownPerson(String),
    #[error("an enrolment needs at least one template")]
    NoTemplates,
    #[error("template {id} of {pseudonym} does not decrypt: it was altered or the key is wrong")]
    TemplateTampered { id: i64, pseudonym: String },
    #[error("template {id} of {pseudonym} holds {value}: it was made by a broken model; erase and re-enrol this person")]
    TemplateNotFinite {
        id: i64,
        pseudonym: String,
        value: f32,
    },
    #[error("template {id} claims a {parts}x{channels} shape, which no model has: the gallery is damaged")]
    TemplateShape { id: i64, parts: i64, channels: i64 },
    #[error("template {id} is {found} bytes, expected {expected} for {parts}x{channels}")]
    TemplateSize {
        id: i64,
        found: usize,
        expected: usize,
        parts: usize,
        channels: usize,
    },
    #[error("an event does not serialise: {0}")]
    Event(String),
    #[error("the disk holding the gallery is full; nothing was changed")]
    DiskFull,
    #[error("gallery database: {0}")]
    Database(#[from] rusqlite::Error),
}

pub(super) fn corrupt(path: &Path, error: rusqlite::Error) -> GalleryError {
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => GalleryError::Corrupt {
            path: path.to_path_buf(),
            detail: error.to_string(),
        },
        // Opening (and WAL's side files) fails this way on a read-only file system or a folder of
        // another user's.
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::ReadOnly) => GalleryError::ReadOnly {
            path: path.to_path_buf(),
        },
        _ => full(error),
    }
}

pub(super) fn full(error: rusqlite::Error) -> GalleryError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => GalleryError::DiskFull,
        _ => GalleryError::Database(error),
    }
}
