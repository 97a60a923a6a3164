//! What can go wrong with a gallery, and SQLite's errors told apart.

use super::*;

/// Why a gallery cannot be opened, read or changed; nothing stored is lost.
#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    /// Not an SQLite gallery, or damaged.
    #[error("{path} is not a gallery database or is damaged ({detail})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file or its folder cannot be written by this user.
    #[error("{path} cannot be written: its file system is read-only, or it belongs to another user (the kiosk and `enrol` must run as the user that owns the gallery and its folder)")]
    ReadOnly {
        /// The file.
        path: PathBuf,
    },
    /// No gallery at the path (the kiosk and the tools that only read or remove never create one).
    #[error("no gallery at {path}: enrol someone first (`enrol add --gallery {path} ...`) or correct the path")]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// A new gallery file could not be created.
    #[error("cannot create the gallery {path}: {source}")]
    Create {
        /// The path given.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Written by a newer build.
    #[error("{path} has gallery schema {found}, newer than this build's {SCHEMA_VERSION}: update the kiosk software")]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i32,
    },
    /// The gallery is encrypted and no key was given.
    #[error("the gallery is encrypted: configure its key")]
    KeyRequired,
    /// The key given is not the gallery's.
    #[error("the configured key does not open this gallery")]
    WrongKey,
    /// A key was given for an unencrypted gallery.
    #[error("a key is configured but the gallery was created unencrypted; its templates would stay in clear")]
    NotEncrypted,
    /// A key file was refused.
    #[error(transparent)]
    SecretFile(#[from] crate::secret_file::SecretFileError),
    /// The key is not 64 hex digits.
    #[error("a key must be {KEY_BYTES} bytes written as {} hex digits", KEY_BYTES * 2)]
    BadKey,
    /// The gallery was enrolled with another model.
    #[error("the gallery was enrolled with model {gallery}, the kiosk runs model {model}: re-enrol or use the matching model")]
    ModelMismatch {
        /// The gallery's model id.
        gallery: String,
        /// The model id offered.
        model: String,
    },
    /// A name no screen, log or terminal can show as typed.
    #[error("the name {name} cannot be enrolled: {reason}")]
    BadName {
        /// The name, its control characters escaped.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Someone of that name is already enrolled.
    #[error("{0} is already enrolled")]
    AlreadyEnrolled(String),
    /// Another person holds that credential number.
    #[error("credential number {0} is already held by someone else")]
    CredentialTaken(u32),
    /// Nobody of that name is enrolled.
    #[error("nobody called {0} is enrolled")]
    UnknownPerson(String),
    /// An enrolment without templates.
    #[error("an enrolment needs at least one template")]
    NoTemplates,
    /// A template that does not decrypt under its owner and model.
    #[error("template {id} of {pseudonym} does not decrypt: it was altered or the key is wrong")]
    TemplateTampered {
        /// The template's row id.
        id: i64,
        /// Its owner's pseudonym.
        pseudonym: String,
    },
    /// A stored template holding NaN or infinity.
    #[error("template {id} of {pseudonym} holds {value}: it was made by a broken model; erase and re-enrol this person")]
    TemplateNotFinite {
        /// The template's row id.
        id: i64,
        /// Its owner's pseudonym.
        pseudonym: String,
        /// The value found.
        value: f32,
    },
    /// A stored shape no model has.
    #[error("template {id} claims a {parts}x{channels} shape, which no model has: the gallery is damaged")]
    TemplateShape {
        /// The template's row id.
        id: i64,
        /// Parts claimed.
        parts: i64,
        /// Channels claimed.
        channels: i64,
    },
    /// A stored template whose size does not match its shape.
    #[error("template {id} is {found} bytes, expected {expected} for {parts}x{channels}")]
    TemplateSize {
        /// The template's row id.
        id: i64,
        /// Bytes stored.
        found: usize,
        /// Bytes its shape needs.
        expected: usize,
        /// Parts of its shape.
        parts: usize,
        /// Channels of its shape.
        channels: usize,
    },
    /// An event that does not serialise.
    #[error("an event does not serialise: {0}")]
    Event(String),
    /// The disk is full; the change was rolled back.
    #[error("the disk holding the gallery is full; nothing was changed")]
    DiskFull,
    /// A local change to a site's replica.
    #[error("{path} is a site's replica: enrol, erase and change credentials at the site (`enrol ... --site URL`)")]
    SiteReplica {
        /// The gallery.
        path: PathBuf,
    },
    /// Another process (an enrolment, an erasure) held the gallery's write lock longer than the busy
    /// timeout; nothing was changed.
    #[error("the gallery is locked by another process (an enrolment or erasure in progress?); nothing was changed")]
    Locked,
    /// The person is erased from the gallery, but another connection kept reading old pages for
    /// longer than the busy timeout, so copies of them may remain on disk until it lets go.
    #[error("erased, but another process held old pages of the gallery (a kiosk in the middle of a search?) past the busy timeout: their copies stay on disk until the next erasure scrubs them")]
    ScrubBlocked,
    /// Any other SQLite error.
    #[error("gallery database: {0}")]
    Database(rusqlite::Error),
}

impl From<rusqlite::Error> for GalleryError {
    fn from(error: rusqlite::Error) -> Self {
        full(error)
    }
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

/// SQLite's errors that a kiosk meets in operation, told apart from the rest.
pub(crate) fn full(error: rusqlite::Error) -> GalleryError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => GalleryError::DiskFull,
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => GalleryError::Locked,
        _ => GalleryError::Database(error),
    }
}
