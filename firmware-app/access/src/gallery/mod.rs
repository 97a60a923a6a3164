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

mod error;
mod people;
mod replica;
mod schema;
mod sealing;

use std::path::{Path, PathBuf};

use crate::events::now_ms;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hstl::Embedding;
use rand::RngCore;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Transaction};

use error::corrupt;
pub(crate) use error::full;
pub use error::GalleryError;
pub(crate) use people::random_hex;
pub use people::{
    check_name, name_fault, printable, Erasure, NewTemplate, Person, Template, MAX_NAME_CHARS,
};
pub use replica::{new_pseudonym, Applied, Quarantined, SealedTemplate, SiteBatch, SiteChange};
pub(crate) use schema::open_connection;
pub use schema::SCHEMA_VERSION;
pub use sealing::TemplateKey;
use sealing::{associated_data, open_sealed, seal, KEY_BYTES, NONCE_BYTES};

/// The result of gallery operations.
pub type Result<T> = std::result::Result<T, GalleryError>;

/// An open gallery database (one connection).
///
/// ```
/// use access::gallery::{Gallery, NewTemplate, TemplateKey};
/// use hstl::Embedding;
///
/// let dir = tempfile::tempdir()?;
/// let key = TemplateKey::generate();
/// let mut gallery = Gallery::open(&dir.path().join("gallery.db"), Some(&key))?;
/// let walk = NewTemplate {
///     embedding: Embedding::new(2, 3, vec![0.5; 6])?,
///     frames: 30,
///     source: "front door, Monday".into(),
/// };
/// let ada = gallery.enrol("Ada", "sha256:model", &[walk])?;
/// assert_eq!(gallery.people()?[0].pseudonym, ada.pseudonym);
/// // Opening it again takes the same key; another key is refused rather than misread.
/// drop(gallery);
/// assert!(Gallery::open(&dir.path().join("gallery.db"), Some(&TemplateKey::generate())).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Gallery {
    connection: Connection,
    path: PathBuf,
    cipher: Option<ChaCha20Poly1305>,
    /// SQLite's count of commits by other connections, when last looked at.
    data_version: i64,
    /// The roster's generation (bumped by every enrolment and erasure), when last looked at.
    roster_generation: i64,
}

impl Gallery {
    /// Opens (creating and migrating as needed) the gallery at `path`. A new gallery is encrypted when a
    /// key is given; an existing one must be opened with the key it was created with.
    pub fn open(path: &Path, key: Option<&TemplateKey>) -> Result<Self> {
        create_private(path)?;
        let connection = schema::open_connection(path)?;
        let mut gallery = Gallery {
            connection,
            path: path.to_path_buf(),
            cipher: key.map(|k| ChaCha20Poly1305::new(Key::from_slice(&k.0))),
            data_version: 0,
            roster_generation: 0,
        };
        gallery.migrate()?;
        gallery.check_key()?;
        gallery.data_version = gallery.current_data_version()?;
        gallery.roster_generation = gallery.current_roster_generation()?;
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

    fn current_roster_generation(&self) -> Result<i64> {
        Ok(self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'roster_generation'",
                [],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    fn current_data_version(&self) -> Result<i64> {
        Ok(self
            .connection
            .pragma_query_value(None, "data_version", |row| row.get(0))?)
    }

    /// Whether another connection (another process: `enrol add`, `enrol remove`) changed who is
    /// enrolled since the last call or since opening. Events other connections store (the kiosk's own
    /// event sink) do not count: they change nothing the kiosk matches against. It costs one pragma
    /// when nothing was committed, so it can be asked per search.
    pub fn roster_changed_elsewhere(&mut self) -> Result<bool> {
        let now = self.current_data_version()?;
        if now == self.data_version {
            return Ok(false);
        }
        self.data_version = now;
        let generation = self.current_roster_generation()?;
        let changed = generation != self.roster_generation;
        self.roster_generation = generation;
        Ok(changed)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether templates are sealed under a key.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
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

    /// Limits the database file to `pages` pages, the way a nearly full disk would.
    #[cfg(test)]
    pub fn limit_pages(&self, pages: u64) -> Result<()> {
        self.connection
            .pragma_update(None, "max_page_count", pages as i64)?;
        Ok(())
    }
}

/// Creates an empty gallery file readable by its owner only, unless one is there: templates sealed
/// or not, names and events are nobody else's to read. SQLite gives its journal files the
/// database file's mode.
fn create_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(GalleryError::Create {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_store::EventStore;
    use crate::events::Event;

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
        let mut events = EventStore::of(&gallery).unwrap();
        events
            .record_event(1, "granted", Some(&ada.pseudonym), "{}")
            .unwrap();
        events.record_event(2, "denied", None, "{}").unwrap();
        let erased = gallery.erase("ada-lovelace").unwrap();
        assert_eq!((erased.templates, erased.events), (2, 1));
        assert_eq!(gallery.people().unwrap().len(), 1);
        assert_eq!(gallery.templates().unwrap().len(), 1);
        assert_eq!(events.event_count().unwrap(), 1);
        drop((gallery, events));
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(12).any(|w| w == b"ada-lovelace"));
        assert!(matches!(
            Gallery::open(&path, None).unwrap().erase("ada-lovelace"),
            Err(GalleryError::UnknownPerson(_))
        ));
    }

    #[test]
    fn an_erasure_leaves_nothing_of_the_person_in_any_file_while_a_kiosk_holds_the_gallery() {
        let (dir, path) = temp_db("g.db");
        let mut station = Gallery::open(&path, None).unwrap();
        let ada = station
            .enrol("ada-lovelace", "m", &[template(1.25), template(2.5)])
            .unwrap();
        station.enrol("bob", "m", &[template(3.0)]).unwrap();
        // The door: its watched gallery, its event store, and the index it searches.
        let mut door = Gallery::open_existing(&path, None).unwrap();
        let mut door_events = EventStore::of(&door).unwrap();
        door_events
            .record_event(1, "granted", Some(&ada.pseudonym), "{}")
            .unwrap();
        let index = crate::matcher::MatchIndex::from_gallery(&door, (3, 4), 1).unwrap();
        assert_eq!(index.template_count(), 3);
        assert!(!door.roster_changed_elsewhere().unwrap());

        station.erase("ada-lovelace").unwrap();
        let template_bytes: Vec<u8> = embedding(1.25)
            .as_slice()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let traces: [(&str, &[u8]); 3] = [
            ("name", b"ada-lovelace"),
            ("pseudonym", ada.pseudonym.as_bytes()),
            ("template", &template_bytes),
        ];
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let file = entry.unwrap().path();
            let raw = std::fs::read(&file).unwrap();
            for (what, bytes) in traces {
                assert!(
                    !raw.windows(bytes.len()).any(|w| w == bytes),
                    "{} still holds the erased person's {what}",
                    file.display()
                );
            }
        }
        assert!(door.roster_changed_elsewhere().unwrap());
        door_events.record_event(2, "denied", None, "{}").unwrap();
    }

    #[test]
    fn events_stored_by_another_connection_are_no_change_of_who_is_enrolled() {
        let (_dir, path) = temp_db("g.db");
        let mut kiosk = Gallery::open(&path, None).unwrap();
        kiosk.enrol("ada", "m", &[template(1.0)]).unwrap();
        let mut sink = Gallery::open_existing(&path, None).unwrap();
        let mut sink_events = EventStore::of(&sink).unwrap();
        sink_events.record_event(5, "granted", None, "{}").unwrap();
        assert!(
            !kiosk.roster_changed_elsewhere().unwrap(),
            "the kiosk's own events must not make it forget the votes of everyone in view"
        );
        sink.enrol("grace", "m", &[template(2.0)]).unwrap();
        assert!(kiosk.roster_changed_elsewhere().unwrap());
        sink.add_templates("grace", "m", &[template(3.0)]).unwrap();
        assert!(kiosk.roster_changed_elsewhere().unwrap());
        sink_events.record_event(6, "denied", None, "{}").unwrap();
        assert!(!kiosk.roster_changed_elsewhere().unwrap());
    }

    #[test]
    fn an_event_for_someone_erased_meanwhile_is_stored_without_them() {
        let (_dir, path) = temp_db("g.db");
        let mut kiosk = Gallery::open(&path, None).unwrap();
        let ada = kiosk.enrol("ada", "m", &[template(1.0)]).unwrap();
        let granted = Event {
            at_ms: 5,
            track: Some(3),
            person: Some(ada.pseudonym.clone()),
            decided: None,
            ..Event::new("front", "m", crate::events::EventKind::Granted)
        };
        let mut kiosk_events = EventStore::of(&kiosk).unwrap();
        assert!(kiosk_events.record_decision_event(&granted).unwrap());
        let mut tool = Gallery::open_existing(&path, None).unwrap();
        tool.erase("ada").unwrap();
        assert!(kiosk.roster_changed_elsewhere().unwrap());
        assert!(
            !kiosk.roster_changed_elsewhere().unwrap(),
            "asked again, nothing new"
        );
        assert!(!kiosk_events.record_decision_event(&granted).unwrap());
        assert_eq!(kiosk_events.event_count().unwrap(), 1);
        assert_eq!(kiosk_events.events_naming(&ada.pseudonym).unwrap(), 0);
        drop((kiosk, kiosk_events, tool));
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
    fn a_new_gallery_and_its_journal_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        gallery.enrol("ada", "m", &[template(1.0)]).unwrap();
        let mut checked = 0;
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let entry = entry.unwrap();
            let mode = entry.metadata().unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{:?} has mode {mode:o}", entry.file_name());
            checked += 1;
        }
        assert!(checked >= 2, "the database and its write-ahead log");
    }

    #[test]
    fn names_that_would_run_in_a_terminal_are_refused_and_shown_escaped() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        for (name, why) in [
            ("Ada\u{1b}[2J", "control characters"),
            ("Ada\nDENIED bob", "control characters"),
            ("  ", "empty"),
            (&"a".repeat(MAX_NAME_CHARS + 1), "longer than 200"),
        ] {
            let error = gallery.enrol(name, "m", &[template(1.0)]).unwrap_err();
            assert!(matches!(error, GalleryError::BadName { .. }), "{error}");
            let message = error.to_string();
            assert!(message.contains(why), "{message}");
            assert!(!message.chars().any(char::is_control), "{message:?}");
        }
        assert!(gallery.people().unwrap().is_empty(), "nothing enrolled");
        gallery
            .enrol("Åsa Öberg-Łukasz", "m", &[template(1.0)])
            .unwrap();
        assert_eq!(printable("Ada\u{1b}[2J"), "Ada\\u{1b}[2J");
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
    fn a_gallery_that_is_a_fifo_or_a_device_is_refused_without_opening_it() {
        let (dir, path) = temp_db("fifo.db");
        assert!(std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap()
            .success());
        let error = Gallery::open(&path, None).err().unwrap().to_string();
        assert!(error.contains("a FIFO, not a regular file"), "{error}");
        let device = dir.path().join("null.db");
        std::os::unix::fs::symlink("/dev/null", &device).unwrap();
        let error = Gallery::open(&device, None).err().unwrap().to_string();
        assert!(error.contains("a character device"), "{error}");
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

    #[test]
    fn a_credential_number_is_held_by_one_person_at_most() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        let ada = gallery
            .enrol_with_credential("ada", Some(4_711), "m", &[template(1.0)])
            .unwrap();
        assert_eq!(ada.credential, Some(4_711));
        assert!(matches!(
            gallery.enrol_with_credential("bob", Some(4_711), "m", &[template(2.0)]),
            Err(GalleryError::CredentialTaken(4_711))
        ));
        assert!(gallery.person("bob").is_err());
        gallery.enrol("bob", "m", &[template(2.0)]).unwrap();
        assert!(gallery.set_credential("bob", Some(4_711)).is_err());
        let before = gallery.roster_generation;
        assert_eq!(
            gallery
                .set_credential("ada", Some(4_711))
                .unwrap()
                .credential,
            Some(4_711)
        );
        gallery.set_credential("ada", None).unwrap();
        assert_eq!(
            gallery
                .set_credential("bob", Some(4_711))
                .unwrap()
                .credential,
            Some(4_711)
        );
        assert!(gallery.roster_generation > before);
        assert_eq!(gallery.person("ada").unwrap().credential, None);
    }

    #[test]
    fn window_templates_of_a_gallery_before_walks_are_kept_never_searched_and_counted() {
        let (_dir, path) = temp_db("g.db");
        let mut gallery = Gallery::open(&path, None).unwrap();
        gallery
            .enrol("ada", "m", &[template(1.0), template(2.0)])
            .unwrap();
        drop(gallery);
        // The gallery as schema 4 left it: its templates were windows.
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch("ALTER TABLE templates DROP COLUMN window_only")
            .unwrap();
        connection.pragma_update(None, "user_version", 4).unwrap();
        drop(connection);

        let mut gallery = Gallery::open(&path, None).unwrap();
        let ada = gallery.person("ada").unwrap();
        assert_eq!((ada.templates, ada.window_templates), (0, 2));
        assert!(gallery.templates().unwrap().is_empty());
        // Enrolled again, as walks: searched; the windows stay counted apart.
        gallery.add_templates("ada", "m", &[template(3.0)]).unwrap();
        let ada = gallery.person("ada").unwrap();
        assert_eq!((ada.templates, ada.window_templates), (1, 2));
        assert_eq!(gallery.templates().unwrap().len(), 1);
    }

    #[test]
    fn a_gallery_of_the_first_schema_gains_credentials_and_keeps_its_people() {
        let (_dir, path) = temp_db("g.db");
        let connection = Connection::open(&path).unwrap();
        connection.execute_batch(schema::MIGRATIONS[0]).unwrap();
        connection
            .execute(
                "INSERT INTO people(pseudonym, name, enrolled_at_ms) VALUES ('0011223344556677', 'ada', 1)",
                [],
            )
            .unwrap();
        connection.pragma_update(None, "user_version", 1).unwrap();
        drop(connection);
        let mut gallery = Gallery::open(&path, None).unwrap();
        let ada = gallery.person("ada").unwrap();
        assert_eq!(
            (ada.pseudonym.as_str(), ada.credential),
            ("0011223344556677", None)
        );
        assert_eq!(
            gallery.set_credential("ada", Some(9)).unwrap().credential,
            Some(9)
        );
    }
}
