//! The gallery: enrolled people and their templates in an SQLite database.
//!
//! - Every change is one transaction in a write-ahead log with `synchronous = FULL`, so a crash or a
//!   power cut at any moment leaves either the state before the change or the state after it.
//! - A gallery belongs to one model: templates made by another model are refused, because distances
//!   between embeddings of two models mean nothing.
//! - With a key, templates are sealed with ChaCha20-Poly1305; the person's pseudonym and the model id are
//!   the associated data, so a template moved to another person or model no longer opens.
//! - People carry a random pseudonym. Events and the audit trail name people only by it, so erasing a
//!   person (one call, one transaction) leaves nothing in the gallery that links them to a name.

use std::path::{Path, PathBuf};

use crate::audit::ChainHead;
use crate::events::{now_ms, Event, EventKind, EventSink, SinkError};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hstl::Embedding;
use rand::RngCore;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};

/// The schema this build writes. Older galleries are migrated forward on open; newer ones are refused.
pub const SCHEMA_VERSION: i32 = 1;

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const PSEUDONYM_BYTES: usize = 8;
/// Parts and channels of a stored template are each at most this (every variant is under 300).
const MAX_TEMPLATE_SIDE: usize = 4_096;
/// Sealed under the key when an encrypted gallery is created, so that a wrong key is told apart from a
/// damaged template.
const KEY_CHECK_PLAINTEXT: &[u8] = b"gait gallery key check";

/// Each entry moves a gallery from schema version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE people (
        id INTEGER PRIMARY KEY,
        pseudonym TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        enrolled_at_ms INTEGER NOT NULL
    );
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY,
        person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        parts INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        frames INTEGER NOT NULL,
        source TEXT NOT NULL,
        nonce BLOB,
        data BLOB NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE INDEX templates_by_person ON templates(person_id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        pseudonym TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX events_by_pseudonym ON events(pseudonym);
"];

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

pub type Result<T> = std::result::Result<T, GalleryError>;

/// A 256-bit key for templates at rest, from 64 hex digits (a file on the device, ideally sealed by its
/// TPM or secure element).
#[derive(Clone)]
pub struct TemplateKey([u8; KEY_BYTES]);

impl TemplateKey {
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
            return Err(GalleryError::BadKey);
        }
        let mut key = [0u8; KEY_BYTES];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
                .map_err(|_| GalleryError::BadKey)?;
        }
        Ok(TemplateKey(key))
    }

    /// A key file: the 64 hex digits on a line of their own, readable by its owner only (a key
    /// that others can read protects nothing, so it is refused rather than used).
    pub fn read_file(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let key_file = |source| GalleryError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let mode = std::fs::metadata(path)
            .map_err(key_file)?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(GalleryError::KeyExposed {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
        let text = std::fs::read_to_string(path).map_err(key_file)?;
        Self::from_hex(&text)
    }

    /// A key for another purpose (`purpose` names it), derived so that one secret on the device
    /// serves the templates and the audit chain without either key revealing the other.
    pub fn derive(&self, purpose: &str) -> [u8; KEY_BYTES] {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"gait kiosk key derivation\0");
        hasher.update(purpose.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.0);
        hasher.finalize().into()
    }

    pub fn generate() -> Self {
        let mut key = [0u8; KEY_BYTES];
        rand::rng().fill_bytes(&mut key);
        TemplateKey(key)
    }

    /// Writes a new random key to `path`, readable by its owner only; an existing file is never
    /// overwritten (losing a key makes everything sealed with it unreadable).
    pub fn create_file(path: &Path) -> Result<Self> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key_file = |source| GalleryError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(key_file)?;
        let key = Self::generate();
        writeln!(file, "{}", key.to_hex())
            .and_then(|()| file.sync_all())
            .map_err(key_file)?;
        Ok(key)
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for TemplateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateKey(..)")
    }
}

/// One embedding to store, with where it came from.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    pub embedding: Embedding,
    /// Silhouettes the network saw.
    pub frames: usize,
    /// The recording or walk it was made from, for the operator.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub pseudonym: String,
    pub name: String,
    pub enrolled_at_ms: i64,
    pub templates: usize,
}

/// A stored template, decrypted.
#[derive(Debug, Clone)]
pub struct Template {
    pub id: i64,
    pub person_id: i64,
    pub embedding: Embedding,
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    pub pseudonym: String,
    pub templates: usize,
    pub events: usize,
}

pub struct Gallery {
    connection: Connection,
    path: PathBuf,
    cipher: Option<ChaCha20Poly1305>,
    /// SQLite's count of commits by other connections, when last looked at.
    data_version: i64,
}

impl Gallery {
    /// Opens (creating and migrating as needed) the gallery at `path`. A new gallery is encrypted when a
    /// key is given; an existing one must be opened with the key it was created with.
    pub fn open(path: &Path, key: Option<&TemplateKey>) -> Result<Self> {
        let connection = Connection::open(path).map_err(|e| corrupt(path, e))?;
        let mut gallery = Gallery {
            connection,
            path: path.to_path_buf(),
            cipher: key.map(|k| ChaCha20Poly1305::new(Key::from_slice(&k.0))),
            data_version: 0,
        };
        gallery.configure()?;
        gallery.migrate()?;
        gallery.check_key()?;
        gallery.data_version = gallery.current_data_version()?;
        Ok(gallery)
    }

    /// Opens a gallery that must already exist: the kiosk and the tools that only read or remove
    /// never create one, so a mistyped path is an error rather than a new, empty gallery.
    pub fn open_existing(path: &Path, key: Option<&TemplateKey>) -> Result<Self> {
        if !path.is_file() {
            return Err(GalleryError::Missing {
                path: path.to_path_buf(),
            });
        }
        Self::open(path, key)
    }

    fn current_data_version(&self) -> Result<i64> {
        Ok(self
            .connection
            .pragma_query_value(None, "data_version", |row| row.get(0))?)
    }

    /// Whether another connection (another process: `enrol add`, `enrol remove`) committed a change
    /// since the last call or since opening. It costs one pragma, so it can be asked per search.
    pub fn changed_elsewhere(&mut self) -> Result<bool> {
        let now = self.current_data_version()?;
        let changed = now != self.data_version;
        self.data_version = now;
        Ok(changed)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    fn configure(&mut self) -> Result<()> {
        let path = self.path.clone();
        let checked: String = self
            .connection
            .query_row("PRAGMA quick_check", [], |row| row.get(0))
            .map_err(|e| corrupt(&path, e))?;
        if checked != "ok" {
            return Err(GalleryError::Corrupt {
                path,
                detail: checked,
            });
        }
        // SQLite quietly opens a file it may not write read-only; every write would then fail later.
        if self.connection.is_readonly(rusqlite::MAIN_DB)? {
            return Err(GalleryError::ReadOnly { path });
        }
        self.connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| corrupt(&path, e))?;
        self.connection.pragma_update(None, "synchronous", "FULL")?;
        self.connection.pragma_update(None, "foreign_keys", "ON")?;
        self.connection
            .busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<()> {
        let version: i32 = self
            .connection
            .pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(GalleryError::NewerSchema {
                path: self.path.clone(),
                found: version,
            });
        }
        for (from, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.connection.transaction().map_err(full)?;
            tx.execute_batch(migration).map_err(full)?;
            tx.pragma_update(None, "user_version", from as i32 + 1)
                .map_err(full)?;
            tx.commit().map_err(full)?;
            log::info!(
                "gallery {} migrated to schema {}",
                self.path.display(),
                from + 1
            );
        }
        Ok(())
    }

    fn check_key(&mut self) -> Result<()> {
        let sealed: Option<Vec<u8>> = self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'key_check'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        let has_people = self.count_people()? > 0;
        match (&self.cipher, sealed) {
            (None, Some(_)) => Err(GalleryError::KeyRequired),
            (Some(_), None) if has_people => Err(GalleryError::NotEncrypted),
            (Some(cipher), None) => {
                let sealed = seal(cipher, KEY_CHECK_PLAINTEXT, b"")?;
                self.connection
                    .execute(
                        "INSERT INTO meta(key, value) VALUES ('key_check', ?1)",
                        params![sealed],
                    )
                    .map_err(full)?;
                Ok(())
            }
            (Some(cipher), Some(sealed)) => match open_sealed(cipher, &sealed, b"") {
                Some(plain) if plain == KEY_CHECK_PLAINTEXT => Ok(()),
                _ => Err(GalleryError::WrongKey),
            },
            (None, None) => Ok(()),
        }
    }

    /// The model the gallery's templates were made with, once anyone is enrolled.
    pub fn model_id(&self) -> Result<Option<String>> {
        Ok(self
            .connection
            .query_row("SELECT value FROM meta WHERE key = 'model_id'", [], |row| {
                row.get::<_, Vec<u8>>(0)
            })
            .optional()?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Refuses a model other than the one the gallery was enrolled with.
    pub fn check_model(&self, model_id: &str) -> Result<()> {
        match self.model_id()? {
            Some(gallery) if gallery != model_id => Err(GalleryError::ModelMismatch {
                gallery,
                model: model_id.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Enrols a new person with all of their templates in one transaction.
    pub fn enrol(
        &mut self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
    ) -> Result<Person> {
        if templates.is_empty() {
            return Err(GalleryError::NoTemplates);
        }
        self.check_model(model_id)?;
        let now = now_ms();
        let pseudonym = new_pseudonym();
        let tx = self.connection.transaction().map_err(full)?;
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM people WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_some() {
            return Err(GalleryError::AlreadyEnrolled(name.to_string()));
        }
        tx.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('model_id', ?1)",
            params![model_id.as_bytes()],
        )
        .map_err(full)?;
        tx.execute(
            "INSERT INTO people(pseudonym, name, enrolled_at_ms) VALUES (?1, ?2, ?3)",
            params![pseudonym, name, now],
        )
        .map_err(full)?;
        let person_id = tx.last_insert_rowid();
        insert_templates(
            &tx,
            self.cipher.as_ref(),
            person_id,
            &pseudonym,
            model_id,
            templates,
            now,
        )?;
        tx.commit().map_err(full)?;
        Ok(Person {
            id: person_id,
            pseudonym,
            name: name.to_string(),
            enrolled_at_ms: now,
            templates: templates.len(),
        })
    }

    /// Adds walks to someone already enrolled, in one transaction.
    pub fn add_templates(
        &mut self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
    ) -> Result<Person> {
        self.check_model(model_id)?;
        let person = self.person(name)?;
        let tx = self.connection.transaction().map_err(full)?;
        insert_templates(
            &tx,
            self.cipher.as_ref(),
            person.id,
            &person.pseudonym,
            model_id,
            templates,
            now_ms(),
        )?;
        tx.commit().map_err(full)?;
        self.person(name)
    }

    pub fn person(&self, name: &str) -> Result<Person> {
        self.people()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| GalleryError::UnknownPerson(name.to_string()))
    }

    pub fn people(&self) -> Result<Vec<Person>> {
        let mut statement = self.connection.prepare(
            "SELECT p.id, p.pseudonym, p.name, p.enrolled_at_ms, COUNT(t.id)
             FROM people p LEFT JOIN templates t ON t.person_id = p.id
             GROUP BY p.id ORDER BY p.name",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(Person {
                id: row.get(0)?,
                pseudonym: row.get(1)?,
                name: row.get(2)?,
                enrolled_at_ms: row.get(3)?,
                templates: row.get::<_, i64>(4)? as usize,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    fn count_people(&self) -> Result<i64> {
        Ok(self
            .connection
            .query_row("SELECT COUNT(*) FROM people", [], |row| row.get(0))?)
    }

    /// Every template, decrypted and checked against its recorded shape.
    pub fn templates(&self) -> Result<Vec<Template>> {
        let mut statement = self.connection.prepare(
            "SELECT t.id, t.person_id, p.pseudonym, t.model_id, t.parts, t.channels, t.nonce, t.data
             FROM templates t JOIN people p ON p.id = t.person_id ORDER BY t.id",
        )?;
        let mut rows = statement.query([])?;
        let mut templates = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let person_id: i64 = row.get(1)?;
            let pseudonym: String = row.get(2)?;
            let model_id: String = row.get(3)?;
            let parts = row.get::<_, i64>(4)?;
            let channels = row.get::<_, i64>(5)?;
            let nonce: Option<Vec<u8>> = row.get(6)?;
            let data: Vec<u8> = row.get(7)?;
            let bytes = match (&self.cipher, nonce) {
                (Some(cipher), Some(nonce)) if nonce.len() == NONCE_BYTES => {
                    let mut sealed = nonce;
                    sealed.extend_from_slice(&data);
                    open_sealed(cipher, &sealed, &associated_data(&pseudonym, &model_id)).ok_or(
                        GalleryError::TemplateTampered {
                            id,
                            pseudonym: pseudonym.clone(),
                        },
                    )?
                }
                (None, None) => data,
                _ => return Err(GalleryError::TemplateTampered { id, pseudonym }),
            };
            // Shapes come from the file: a damaged or crafted one must not overflow the arithmetic.
            let (parts, channels) = match (usize::try_from(parts), usize::try_from(channels)) {
                (Ok(p), Ok(c))
                    if (1..=MAX_TEMPLATE_SIDE).contains(&p)
                        && (1..=MAX_TEMPLATE_SIDE).contains(&c) =>
                {
                    (p, c)
                }
                _ => {
                    return Err(GalleryError::TemplateShape {
                        id,
                        parts,
                        channels,
                    })
                }
            };
            let expected = parts * channels * 4;
            if bytes.len() != expected {
                return Err(GalleryError::TemplateSize {
                    id,
                    found: bytes.len(),
                    expected,
                    parts,
                    channels,
                });
            }
            let values = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let embedding = Embedding::new(parts, channels, values).map_err(|e| match e {
                hstl::HstlError::NotFinite { value, .. } => GalleryError::TemplateNotFinite {
                    id,
                    pseudonym: pseudonym.clone(),
                    value,
                },
                _ => GalleryError::TemplateSize {
                    id,
                    found: bytes.len(),
                    expected,
                    parts,
                    channels,
                },
            })?;
            templates.push(Template {
                id,
                person_id,
                embedding,
            });
        }
        Ok(templates)
    }

    /// Right to erasure: the person, every template and every stored event that names their
    /// pseudonym, in one transaction.
    pub fn erase(&mut self, name: &str) -> Result<Erasure> {
        let person = self.person(name)?;
        let tx = self.connection.transaction().map_err(full)?;
        let events = tx
            .execute(
                "DELETE FROM events WHERE pseudonym = ?1",
                [&person.pseudonym],
            )
            .map_err(full)?;
        let templates = tx
            .execute("DELETE FROM templates WHERE person_id = ?1", [person.id])
            .map_err(full)?;
        tx.execute("DELETE FROM people WHERE id = ?1", [person.id])
            .map_err(full)?;
        tx.commit().map_err(full)?;
        // Freed pages would still hold the name and templates until overwritten.
        self.connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
            .map_err(full)?;
        Ok(Erasure {
            pseudonym: person.pseudonym,
            templates,
            events,
        })
    }

    /// Stores one event (already serialised) for the kiosk's own history.
    pub fn record_event(
        &mut self,
        at_ms: i64,
        kind: &str,
        pseudonym: Option<&str>,
        body: &str,
    ) -> Result<()> {
        self.connection
            .execute(
                "INSERT INTO events(at_ms, kind, pseudonym, body) VALUES (?1, ?2, ?3, ?4)",
                params![at_ms, kind, pseudonym, body],
            )
            .map_err(full)?;
        Ok(())
    }

    /// Stores `event` in the kiosk's history, unless it names someone no longer enrolled (erased
    /// while the decision was under way): then it is stored without the pseudonym, in the same
    /// statement that checks, so an erasure cannot slip in between. Returns whether the person was kept.
    pub fn record_decision_event(&mut self, event: &Event) -> Result<bool> {
        let body = serde_json::to_string(event).map_err(|e| GalleryError::Event(e.to_string()))?;
        let stored = self
            .connection
            .execute(
                "INSERT INTO events(at_ms, kind, pseudonym, body)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE ?3 IS NULL OR EXISTS (SELECT 1 FROM people WHERE pseudonym = ?3)",
                params![
                    event.at_ms,
                    event.kind.label(),
                    event.person.as_deref(),
                    body
                ],
            )
            .map_err(full)?;
        if stored == 1 {
            return Ok(true);
        }
        let anonymous = Event {
            person: None,
            ..event.clone()
        };
        let body =
            serde_json::to_string(&anonymous).map_err(|e| GalleryError::Event(e.to_string()))?;
        self.record_event(event.at_ms, event.kind.label(), None, &body)?;
        Ok(false)
    }

    /// The stored bodies of every event of one kind (its label), oldest first.
    pub fn event_bodies(&self, kind: &str) -> Result<Vec<String>> {
        let mut statement = self
            .connection
            .prepare("SELECT body FROM events WHERE kind = ?1 ORDER BY id")?;
        let bodies = statement
            .query_map([kind], |row| row.get(0))?
            .collect::<std::result::Result<Vec<String>, _>>()?;
        Ok(bodies)
    }

    /// The audit log's chain heads the kiosk published and stored here, oldest first: the anchors
    /// `audit::verify` checks the log against.
    pub fn audit_heads(&self) -> Result<Vec<ChainHead>> {
        let damaged = |detail: String| GalleryError::Corrupt {
            path: self.path.clone(),
            detail,
        };
        self.event_bodies(EventKind::AUDIT_HEAD_LABEL)?
            .into_iter()
            .map(|body| match serde_json::from_str::<Event>(&body) {
                Ok(Event {
                    kind: EventKind::AuditHead { seq, mac },
                    ..
                }) => Ok(ChainHead { seq, mac }),
                Ok(other) => Err(damaged(format!(
                    "a {} event is stored as an audit head",
                    other.kind.label()
                ))),
                Err(e) => Err(damaged(format!(
                    "a stored audit head is damaged ({e}): {body}"
                ))),
            })
            .collect()
    }

    /// Stored events that name `pseudonym`.
    pub fn events_naming(&self, pseudonym: &str) -> Result<usize> {
        Ok(self.connection.query_row(
            "SELECT COUNT(*) FROM events WHERE pseudonym = ?1",
            [pseudonym],
            |row| row.get::<_, i64>(0),
        )? as usize)
    }

    pub fn event_count(&self) -> Result<usize> {
        Ok(self
            .connection
            .query_row("SELECT COUNT(*) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })? as usize)
    }

    /// Limits the database file to `pages` pages, the way a nearly full disk would.
    pub fn limit_pages(&self, pages: u64) -> Result<()> {
        self.connection
            .pragma_update(None, "max_page_count", pages as i64)?;
        Ok(())
    }
}

impl EventSink for Gallery {
    fn name(&self) -> &str {
        "gallery database"
    }

    fn deliver(&mut self, event: &Event) -> std::result::Result<(), SinkError> {
        let failed = |detail: String| SinkError {
            sink: "gallery database".into(),
            detail,
        };
        match self.record_decision_event(event) {
            Ok(true) => Ok(()),
            Ok(false) => {
                log::warn!(
                    "{} event stored without its person: they were erased while it was decided",
                    event.kind.label()
                );
                Ok(())
            }
            Err(e) => Err(failed(e.to_string())),
        }
    }
}

fn insert_templates(
    tx: &Transaction<'_>,
    cipher: Option<&ChaCha20Poly1305>,
    person_id: i64,
    pseudonym: &str,
    model_id: &str,
    templates: &[NewTemplate],
    now: i64,
) -> Result<()> {
    let mut statement = tx.prepare(
        "INSERT INTO templates(person_id, model_id, parts, channels, frames, source, nonce, data, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for template in templates {
        let bytes: Vec<u8> = template
            .embedding
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (nonce, data) = match cipher {
            Some(cipher) => {
                let mut sealed = seal(cipher, &bytes, &associated_data(pseudonym, model_id))?;
                let data = sealed.split_off(NONCE_BYTES);
                (Some(sealed), data)
            }
            None => (None, bytes),
        };
        statement
            .execute(params![
                person_id,
                model_id,
                template.embedding.parts() as i64,
                template.embedding.channels() as i64,
                template.frames as i64,
                template.source,
                nonce,
                data,
                now
            ])
            .map_err(full)?;
    }
    Ok(())
}

fn associated_data(pseudonym: &str, model_id: &str) -> Vec<u8> {
    format!("{pseudonym}\u{0}{model_id}").into_bytes()
}

/// `nonce || ciphertext+tag` with a fresh random nonce.
fn seal(cipher: &ChaCha20Poly1305, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| GalleryError::BadKey)?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

fn open_sealed(cipher: &ChaCha20Poly1305, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_BYTES {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

fn new_pseudonym() -> String {
    let mut bytes = [0u8; PSEUDONYM_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn corrupt(path: &Path, error: rusqlite::Error) -> GalleryError {
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

fn full(error: rusqlite::Error) -> GalleryError {
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => GalleryError::DiskFull,
        _ => GalleryError::Database(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding(seed: f32) -> Embedding {
        Embedding::new(3, 4, (0..12).map(|i| seed + i as f32).collect()).unwrap()
    }

    fn template(seed: f32) -> NewTemplate {
        NewTemplate {
            embedding: embedding(seed),
            frames: 30,
            source: format!("walk {seed}"),
        }
    }

    fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        (dir, path)
    }

    #[test]
    fn enrolled_templates_come_back_exactly_after_reopening() {
        let (_dir, path) = temp_db("g.db");
        let key = TemplateKey::generate();
        {
            let mut gallery = Gallery::open(&path, Some(&key)).unwrap();
            gallery
                .enrol("ada", "model-a", &[template(1.0), template(2.0)])
                .unwrap();
            gallery.enrol("bob", "model-a", &[template(5.0)]).unwrap();
        }
        let gallery = Gallery::open(&path, Some(&key)).unwrap();
        let people = gallery.people().unwrap();
        assert_eq!(
            people
                .iter()
                .map(|p| (p.name.as_str(), p.templates))
                .collect::<Vec<_>>(),
            [("ada", 2), ("bob", 1)]
        );
        let templates = gallery.templates().unwrap();
        assert_eq!(templates.len(), 3);
        assert_eq!(templates[1].embedding, embedding(2.0));
        assert_eq!(gallery.model_id().unwrap().as_deref(), Some("model-a"));
    }

    #[test]
    fn encrypted_templates_are_not_stored_in_clear() {
        let (_dir, path) = temp_db("g.db");
        let key = TemplateKey::generate();
        let marker = Embedding::new(1, 4, vec![1234.5678; 4]).unwrap();
        let mut gallery = Gallery::open(&path, Some(&key)).unwrap();
        gallery
            .enrol(
                "ada",
                "m",
                &[NewTemplate {
                    embedding: marker,
                    frames: 1,
                    source: "s".into(),
                }],
            )
            .unwrap();
        drop(gallery);
        let raw = std::fs::read(&path).unwrap();
        let needle = 1234.5678f32.to_le_bytes();
        assert!(!raw.windows(4).any(|w| w == needle));
    }

    #[test]
    fn wrong_missing_and_unexpected_keys_are_refused() {
        let (_dir, path) = temp_db("g.db");
        let key = TemplateKey::generate();
        Gallery::open(&path, Some(&key))
            .unwrap()
            .enrol("ada", "m", &[template(1.0)])
            .unwrap();
        assert!(matches!(
            Gallery::open(&path, Some(&TemplateKey::generate())),
            Err(GalleryError::WrongKey)
        ));
        assert!(matches!(
            Gallery::open(&path, None),
            Err(GalleryError::KeyRequired)
        ));

        let (_dir2, plain) = temp_db("plain.db");
        Gallery::open(&plain, None)
            .unwrap()
            .enrol("ada", "m", &[template(1.0)])
            .unwrap();
        assert!(matches!(
            Gallery::open(&plain, Some(&key)),
            Err(GalleryError::NotEncrypted)
        ));
        assert!(matches!(
            TemplateKey::from_hex("abc"),
            Err(GalleryError::BadKey)
        ));
        assert_eq!(TemplateKey::from_hex(&key.to_hex()).unwrap().0, key.0);
    }

    #[test]
    fn a_template_moved_to_another_person_no_longer_opens() {
        let (_dir, path) = temp_db("g.db");
        let key = TemplateKey::generate();
        let mut gallery = Gallery::open(&path, Some(&key)).unwrap();
        gallery.enrol("ada", "m", &[template(1.0)]).unwrap();
        let bob = gallery.enrol("bob", "m", &[template(2.0)]).unwrap();
        gallery
            .connection
            .execute("UPDATE templates SET person_id = ?1", [bob.id])
            .unwrap();
        assert!(matches!(
            gallery.templates(),
            Err(GalleryError::TemplateTampered { .. })
        ));
    }

    #[test]
    fn another_model_is_refused() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        gallery.enrol("ada", "model-a", &[template(1.0)]).unwrap();
        let error = gallery
            .enrol("bob", "model-b", &[template(1.0)])
            .unwrap_err();
        assert!(matches!(error, GalleryError::ModelMismatch { .. }));
        assert!(error.to_string().contains("model-a") && error.to_string().contains("model-b"));
        assert!(gallery.check_model("model-b").is_err());
        assert!(gallery.check_model("model-a").is_ok());
    }

    #[test]
    fn erasure_removes_the_person_their_templates_and_their_events() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        let ada = gallery
            .enrol("ada-lovelace", "m", &[template(1.0), template(2.0)])
            .unwrap();
        gallery.enrol("bob", "m", &[template(3.0)]).unwrap();
        gallery
            .record_event(1, "granted", Some(&ada.pseudonym), "{}")
            .unwrap();
        gallery.record_event(2, "denied", None, "{}").unwrap();
        let erased = gallery.erase("ada-lovelace").unwrap();
        assert_eq!((erased.templates, erased.events), (2, 1));
        assert_eq!(gallery.people().unwrap().len(), 1);
        assert_eq!(gallery.templates().unwrap().len(), 1);
        assert_eq!(gallery.event_count().unwrap(), 1);
        drop(gallery);
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(12).any(|w| w == b"ada-lovelace"));
        assert!(matches!(
            Gallery::open(&path, None).unwrap().erase("ada-lovelace"),
            Err(GalleryError::UnknownPerson(_))
        ));
    }

    #[test]
    fn an_event_for_someone_erased_meanwhile_is_stored_without_them() {
        let (_dir, path) = temp_db("g.db");
        let mut kiosk = Gallery::open(&path, None).unwrap();
        let ada = kiosk.enrol("ada", "m", &[template(1.0)]).unwrap();
        let granted = Event {
            at_ms: 5,
            door: "front".into(),
            kind: crate::events::EventKind::Granted,
            track: Some(3),
            person: Some(ada.pseudonym.clone()),
            figures: None,
            model_id: "m".into(),
            decided: None,
        };
        assert!(kiosk.record_decision_event(&granted).unwrap());
        let mut tool = Gallery::open_existing(&path, None).unwrap();
        tool.erase("ada").unwrap();
        assert!(kiosk.changed_elsewhere().unwrap());
        assert!(
            !kiosk.changed_elsewhere().unwrap(),
            "asked again, nothing new"
        );
        assert!(!kiosk.record_decision_event(&granted).unwrap());
        assert_eq!(kiosk.event_count().unwrap(), 1);
        assert_eq!(kiosk.events_naming(&ada.pseudonym).unwrap(), 0);
        drop((kiosk, tool));
        let raw = std::fs::read(&path).unwrap();
        let pseudonym = ada.pseudonym.as_bytes();
        assert!(!raw.windows(pseudonym.len()).any(|w| w == pseudonym));
    }

    #[test]
    fn a_template_with_an_impossible_shape_is_an_error_not_an_overflow() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        gallery.enrol("ada", "m", &[template(1.0)]).unwrap();
        for (parts, channels) in [(-1i64, 4i64), (i64::MAX, 3), (1 << 40, 1 << 40), (0, 4)] {
            gallery
                .connection
                .execute(
                    "UPDATE templates SET parts = ?1, channels = ?2",
                    params![parts, channels],
                )
                .unwrap();
            let error = gallery.templates().unwrap_err();
            assert!(
                matches!(error, GalleryError::TemplateShape { .. }),
                "{error}"
            );
        }
    }

    #[test]
    fn a_mistyped_path_is_not_a_new_gallery() {
        let (_dir, path) = temp_db("gallery.db");
        let error = Gallery::open_existing(&path, None).err().unwrap();
        assert!(matches!(error, GalleryError::Missing { .. }), "{error}");
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_reported_as_such() {
        let (_dir, path) = temp_db("g.db");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let error = Gallery::open(&path, None).err().unwrap();
        assert!(matches!(error, GalleryError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("g.db"));
    }

    #[test]
    fn a_full_disk_fails_the_enrolment_and_keeps_what_was_stored() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        gallery.enrol("ada", "m", &[template(1.0)]).unwrap();
        let pages: i64 = gallery
            .connection
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        gallery.limit_pages(pages as u64).unwrap();
        let big: Vec<NewTemplate> = (0..50)
            .map(|i| NewTemplate {
                embedding: Embedding::new(73, 128, vec![i as f32; 73 * 128]).unwrap(),
                frames: 30,
                source: "big".into(),
            })
            .collect();
        assert!(matches!(
            gallery.enrol("bob", "m", &big),
            Err(GalleryError::DiskFull)
        ));
        assert_eq!(gallery.people().unwrap().len(), 1);
        assert_eq!(gallery.templates().unwrap()[0].embedding, embedding(1.0));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let (_dir, path) = temp_db("g.db");
        drop(Gallery::open(&path, None).unwrap());
        let connection = Connection::open(&path).unwrap();
        connection
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(connection);
        assert!(matches!(
            Gallery::open(&path, None),
            Err(GalleryError::NewerSchema { .. })
        ));
    }

    #[test]
    fn enrolling_twice_and_empty_enrolments_are_refused() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        gallery.enrol("ada", "m", &[template(1.0)]).unwrap();
        assert!(matches!(
            gallery.enrol("ada", "m", &[template(1.0)]),
            Err(GalleryError::AlreadyEnrolled(_))
        ));
        assert!(matches!(
            gallery.enrol("bob", "m", &[]),
            Err(GalleryError::NoTemplates)
        ));
        let ada = gallery.add_templates("ada", "m", &[template(4.0)]).unwrap();
        assert_eq!(ada.templates, 2);
    }
}
