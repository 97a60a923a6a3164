//! The schema and its forward migrations, and the connection's durability settings.

use super::*;

/// The schema this build writes. Older galleries are migrated forward on open; newer ones are refused.
pub const SCHEMA_VERSION: i32 = 5;

/// Each entry moves a gallery from schema version `index` to `index + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    "
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
",
    "
    ALTER TABLE people ADD COLUMN credential INTEGER;
    CREATE UNIQUE INDEX people_by_credential ON people(credential) WHERE credential IS NOT NULL;
",
    "
    CREATE TABLE site_outbox (
        position INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE,
        pseudonym TEXT,
        body TEXT NOT NULL
    );
    CREATE INDEX site_outbox_by_pseudonym ON site_outbox(pseudonym);
",
    "
    CREATE TABLE site_quarantine (
        pseudonym TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
",
    // Kiosks before this schema enrolled the embedding of each 30-frame window alone; doors now
    // search the walk so far, and such templates are kept (the person is told to re-enrol) but
    // never searched.
    "
    ALTER TABLE templates ADD COLUMN window_only INTEGER NOT NULL DEFAULT 0;
    UPDATE templates SET window_only = 1;
",
];

/// A connection to the gallery database at `path` with the durability every user of it relies on
/// (write-ahead log, `synchronous = FULL`, foreign keys, a busy timeout), after SQLite's quick check.
pub(crate) fn open_connection(path: &Path) -> Result<Connection> {
    hstl::files::check_regular(path, u64::MAX).map_err(|e| GalleryError::Corrupt {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let connection = Connection::open(path).map_err(|e| corrupt(path, e))?;
    let checked: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| corrupt(path, e))?;
    if checked != "ok" {
        return Err(GalleryError::Corrupt {
            path: path.to_path_buf(),
            detail: checked,
        });
    }
    // SQLite quietly opens a file it may not write read-only; every write would then fail later.
    if connection.is_readonly(rusqlite::MAIN_DB)? {
        return Err(GalleryError::ReadOnly {
            path: path.to_path_buf(),
        });
    }
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(|e| corrupt(path, e))?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // An erased person's cells are overwritten with zeros, not merely marked free.
    connection.pragma_update(None, "secure_delete", "ON")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

impl Gallery {
    pub(super) fn migrate(&mut self) -> Result<()> {
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
}
