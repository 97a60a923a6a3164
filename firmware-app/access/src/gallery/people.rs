//! People and their templates: enrolment, listing, erasure.

use super::*;

pub(super) const PSEUDONYM_BYTES: usize = 8;
/// Parts and channels of a stored template are each at most this (every variant is under 300).
pub(super) const MAX_TEMPLATE_SIDE: usize = 4_096;

/// One embedding to store, with where it came from.
#[derive(Debug, Clone)]
pub struct NewTemplate {
    /// The embedding of one window.
    pub embedding: Embedding,
    /// Silhouettes the network saw.
    pub frames: usize,
    /// The recording or walk it was made from, for the operator.
    pub source: String,
}

/// An enrolled person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Row id.
    pub id: i64,
    /// The random pseudonym events name them by.
    pub pseudonym: String,
    /// The name given at enrolment (never leaves the gallery).
    pub name: String,
    /// When, in milliseconds since the Unix epoch.
    pub enrolled_at_ms: i64,
    /// Templates searched (each the walk so far of an enrolled walk).
    pub templates: usize,
    /// Templates of one 30-frame window alone, enrolled before doors searched the walk so far:
    /// kept, never searched. Someone with only these is not recognised until enrolled again.
    pub window_templates: usize,
    /// The number the door's access-control panel knows them by (their card number), if any.
    pub credential: Option<u32>,
}

/// A stored template, decrypted.
#[derive(Debug, Clone)]
pub struct Template {
    /// Row id.
    pub id: i64,
    /// Row id of its owner.
    pub person_id: i64,
    /// The embedding.
    pub embedding: Embedding,
}

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The pseudonym the person had.
    pub pseudonym: String,
    /// Templates removed.
    pub templates: usize,
    /// Stored events naming them removed.
    pub events: usize,
}

impl Gallery {
    /// Enrols a new person with all of their templates in one transaction.
    pub fn enrol(
        &mut self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
    ) -> Result<Person> {
        self.enrol_with_credential(name, None, model_id, templates)
    }

    /// Enrols a new person, with the credential number a panel knows them by, and all of their
    /// templates in one transaction.
    pub fn enrol_with_credential(
        &mut self,
        name: &str,
        credential: Option<u32>,
        model_id: &str,
        templates: &[NewTemplate],
    ) -> Result<Person> {
        check_name(name)?;
        if templates.is_empty() {
            return Err(GalleryError::NoTemplates);
        }
        self.check_local_changes()?;
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
        check_credential_free(&tx, credential, None)?;
        record_model(&tx, model_id)?;
        let person_id = insert_person(&tx, &pseudonym, name, now, credential)?;
        insert_templates(
            &tx,
            self.cipher.as_ref(),
            person_id,
            &pseudonym,
            model_id,
            templates,
            now,
        )?;
        bump_roster_generation(&tx)?;
        tx.commit().map_err(full)?;
        self.roster_generation = self.current_roster_generation()?;
        Ok(Person {
            id: person_id,
            pseudonym,
            name: name.to_string(),
            enrolled_at_ms: now,
            templates: templates.len(),
            window_templates: 0,
            credential,
        })
    }

    /// Gives `name` the credential number a panel knows them by, or takes it away (`None`).
    pub fn set_credential(&mut self, name: &str, credential: Option<u32>) -> Result<Person> {
        self.check_local_changes()?;
        let person = self.person(name)?;
        let tx = self.connection.transaction().map_err(full)?;
        check_credential_free(&tx, credential, Some(person.id))?;
        tx.execute(
            "UPDATE people SET credential = ?1 WHERE id = ?2",
            params![credential, person.id],
        )
        .map_err(full)?;
        bump_roster_generation(&tx)?;
        tx.commit().map_err(full)?;
        self.roster_generation = self.current_roster_generation()?;
        self.person(name)
    }

    /// Adds walks to someone already enrolled, in one transaction.
    pub fn add_templates(
        &mut self,
        name: &str,
        model_id: &str,
        templates: &[NewTemplate],
    ) -> Result<Person> {
        self.check_local_changes()?;
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
        bump_roster_generation(&tx)?;
        tx.commit().map_err(full)?;
        self.roster_generation = self.current_roster_generation()?;
        self.person(name)
    }

    /// The person enrolled under `name`.
    pub fn person(&self, name: &str) -> Result<Person> {
        self.people()?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| GalleryError::UnknownPerson(name.to_string()))
    }

    /// Everyone enrolled, by name.
    pub fn people(&self) -> Result<Vec<Person>> {
        let mut statement = self.connection.prepare(
            "SELECT p.id, p.pseudonym, p.name, p.enrolled_at_ms,
                    COUNT(t.id) - COALESCE(SUM(t.window_only), 0), p.credential,
                    COALESCE(SUM(t.window_only), 0)
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
                credential: row.get(5)?,
                window_templates: row.get::<_, i64>(6)? as usize,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    pub(super) fn count_people(&self) -> Result<i64> {
        Ok(self
            .connection
            .query_row("SELECT COUNT(*) FROM people", [], |row| row.get(0))?)
    }

    /// Every template searched, decrypted and checked against its recorded shape (window-only
    /// templates, [`Person::window_templates`], are left out).
    pub fn templates(&self) -> Result<Vec<Template>> {
        let mut statement = self.connection.prepare(
            "SELECT t.id, t.person_id, p.pseudonym, t.model_id, t.parts, t.channels, t.nonce, t.data
             FROM templates t JOIN people p ON p.id = t.person_id
             WHERE t.window_only = 0 ORDER BY t.id",
        )?;
        let mut rows = statement.query([])?;
        let mut templates = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let person_id: i64 = row.get(1)?;
            let pseudonym: String = row.get(2)?;
            let model_id: String = row.get(3)?;
            let embedding = open_template(
                self.cipher.as_ref(),
                id,
                &pseudonym,
                &model_id,
                (row.get(4)?, row.get(5)?),
                row.get(6)?,
                row.get(7)?,
            )?;
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
        self.check_local_changes()?;
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
        bump_roster_generation(&tx)?;
        tx.commit().map_err(full)?;
        self.roster_generation = self.current_roster_generation()?;
        self.scrub_freed_pages()?;
        Ok(Erasure {
            pseudonym: person.pseudonym,
            templates,
            events,
        })
    }
}

/// The model a gallery's templates belong to, stored with its first templates.
pub(super) fn record_model(tx: &Transaction<'_>, model_id: &str) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO meta(key, value) VALUES ('model_id', ?1)",
        params![model_id.as_bytes()],
    )
    .map_err(full)?;
    Ok(())
}

/// A person's row; their row id.
pub(super) fn insert_person(
    tx: &Transaction<'_>,
    pseudonym: &str,
    name: &str,
    now: i64,
    credential: Option<u32>,
) -> Result<i64> {
    tx.execute(
        "INSERT INTO people(pseudonym, name, enrolled_at_ms, credential) VALUES (?1, ?2, ?3, ?4)",
        params![pseudonym, name, now, credential],
    )
    .map_err(full)?;
    Ok(tx.last_insert_rowid())
}

pub(super) fn insert_templates(
    tx: &Transaction<'_>,
    cipher: Option<&ChaCha20Poly1305>,
    person_id: i64,
    pseudonym: &str,
    model_id: &str,
    templates: &[NewTemplate],
    now: i64,
) -> Result<()> {
    for template in templates {
        let bytes = embedding_bytes(&template.embedding);
        let (nonce, data) = match cipher {
            Some(cipher) => {
                let mut sealed = seal(cipher, &bytes, &associated_data(pseudonym, model_id))?;
                let data = sealed.split_off(NONCE_BYTES);
                (Some(sealed), data)
            }
            None => (None, bytes),
        };
        insert_template_row(
            tx,
            &TemplateRow {
                person_id,
                model_id,
                shape: (
                    template.embedding.parts() as i64,
                    template.embedding.channels() as i64,
                ),
                frames: template.frames as i64,
                source: &template.source,
                nonce: nonce.as_deref(),
                data: &data,
                now,
            },
        )?;
    }
    Ok(())
}

/// One template as its row stores it.
pub(super) struct TemplateRow<'a> {
    pub person_id: i64,
    pub model_id: &'a str,
    pub shape: (i64, i64),
    pub frames: i64,
    pub source: &'a str,
    /// `None` in a gallery without a key.
    pub nonce: Option<&'a [u8]>,
    pub data: &'a [u8],
    pub now: i64,
}

pub(super) fn insert_template_row(tx: &Transaction<'_>, row: &TemplateRow) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO templates(person_id, model_id, parts, channels, frames, source, nonce, data, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        row.person_id,
        row.model_id,
        row.shape.0,
        row.shape.1,
        row.frames,
        row.source,
        row.nonce,
        row.data,
        row.now
    ])
    .map_err(full)?;
    Ok(())
}

/// A stored template's embedding: opened under its owner and model when sealed, its recorded shape
/// checked (a damaged or crafted shape must not overflow the arithmetic) and its values finite.
pub(super) fn open_template(
    cipher: Option<&ChaCha20Poly1305>,
    id: i64,
    pseudonym: &str,
    model_id: &str,
    (parts, channels): (i64, i64),
    nonce: Option<Vec<u8>>,
    data: Vec<u8>,
) -> Result<Embedding> {
    let tampered = || GalleryError::TemplateTampered {
        id,
        pseudonym: pseudonym.to_string(),
    };
    let bytes = match (cipher, nonce) {
        (Some(cipher), Some(nonce)) if nonce.len() == NONCE_BYTES => {
            let mut sealed = nonce;
            sealed.extend_from_slice(&data);
            open_sealed(cipher, &sealed, &associated_data(pseudonym, model_id))
                .ok_or_else(tampered)?
        }
        (None, None) => data,
        _ => return Err(tampered()),
    };
    let (parts, channels) = match (usize::try_from(parts), usize::try_from(channels)) {
        (Ok(p), Ok(c))
            if (1..=MAX_TEMPLATE_SIDE).contains(&p) && (1..=MAX_TEMPLATE_SIDE).contains(&c) =>
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
    Embedding::new(parts, channels, values).map_err(|e| match e {
        hstl::HstlError::NotFinite { value, .. } => GalleryError::TemplateNotFinite {
            id,
            pseudonym: pseudonym.to_string(),
            value,
        },
        _ => GalleryError::TemplateSize {
            id,
            found: bytes.len(),
            expected,
            parts,
            channels,
        },
    })
}

/// An embedding as templates store it: its values, little-endian `f32`s.
pub(super) fn embedding_bytes(embedding: &Embedding) -> Vec<u8> {
    embedding
        .as_slice()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// The longest name a person is enrolled under: a full name with room to spare, and short enough for
/// every screen, event and log line that shows it.
pub const MAX_NAME_CHARS: usize = 200;

/// Refuses a name that is empty, longer than [`MAX_NAME_CHARS`], or holds control characters (a
/// terminal or a log would run them: a name could forge lines or clear a screen).
pub fn check_name(name: &str) -> Result<()> {
    match name_fault(name) {
        Some(reason) => Err(GalleryError::BadName {
            name: printable(name),
            reason,
        }),
        None => Ok(()),
    }
}

/// What keeps `name` (a person's, a door's) from being shown as typed on a screen, in a log or a
/// terminal, and stored at a site: `None` when nothing does.
pub fn name_fault(name: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        Some("it is empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("it is longer than 200 characters")
    } else if name.chars().any(char::is_control) {
        Some("it holds control characters")
    } else {
        None
    }
}

/// `text` with its control characters escaped (`\u{1b}`), safe to print to a terminal or a log.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Refuses `credential` when someone other than `holder` has it: a panel would open the door for
/// the wrong person.
fn check_credential_free(
    tx: &Transaction,
    credential: Option<u32>,
    holder: Option<i64>,
) -> Result<()> {
    let Some(credential) = credential else {
        return Ok(());
    };
    let taken: Option<i64> = tx
        .query_row(
            "SELECT id FROM people WHERE credential = ?1",
            [credential],
            |r| r.get(0),
        )
        .optional()?;
    match taken {
        Some(id) if Some(id) != holder => Err(GalleryError::CredentialTaken(credential)),
        _ => Ok(()),
    }
}

pub(super) fn new_pseudonym() -> String {
    random_hex::<PSEUDONYM_BYTES>()
}

/// `N` random bytes as hex digits.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Marks a change of who is enrolled, in the transaction that makes it: watchers reload their index
/// when the generation moves, and only then.
pub(super) fn bump_roster_generation(tx: &Transaction) -> Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('roster_generation', 1) \
         ON CONFLICT(key) DO UPDATE SET value = value + 1",
        [],
    )
    .map_err(full)?;
    Ok(())
}

impl Gallery {
    /// After an erasure: nothing of the erased is left in any file of the gallery. Deleted cells are
    /// zeroed (`secure_delete`, set at open), `VACUUM` rewrites the database without its free pages,
    /// and a checkpoint copies that into the main file and empties the write-ahead log, which held
    /// the old pages. A checkpoint another connection's read keeps from completing is an error,
    /// not a silent success.
    pub(super) fn scrub_freed_pages(&mut self) -> Result<()> {
        self.connection.execute_batch("VACUUM;").map_err(full)?;
        let blocked: i64 = self
            .connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(full)?;
        if blocked != 0 {
            return Err(GalleryError::ScrubBlocked);
        }
        Ok(())
    }
}
