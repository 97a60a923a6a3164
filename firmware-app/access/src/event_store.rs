//! The events a door keeps in its gallery database: its own history (what the kiosk decided, the
//! audit log's chain heads that anchor it) and the outbox of events waiting for the site.
//!
//! The store shares the gallery's database file, so that an erasure removes a person's templates,
//! their events and their waiting events in one transaction, but it is a connection of its own: the
//! template store never writes events, and the event sink never touches templates.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::events::{Event, EventKind, EventSink, SinkError};
use crate::gallery::{
    full, open_connection, random_hex, Gallery, GalleryError, Result, TemplateKey,
};
use crate::vocabulary::ChainHead;

/// An event waiting in the outbox for the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Position in the outbox.
    pub position: i64,
    /// Its id, fixed when it was stored, so that sending it twice stores it once.
    pub event_id: String,
    /// The person it names, if any.
    pub pseudonym: Option<String>,
    /// The event, serialised.
    pub body: String,
}

/// The events of one gallery database.
pub struct EventStore {
    connection: Connection,
    path: PathBuf,
}

impl EventStore {
    /// A connection of its own to `gallery`'s database (opened, migrated and its key checked by the
    /// gallery).
    pub fn of(gallery: &Gallery) -> Result<Self> {
        Self::open_at(gallery.path())
    }

    /// The events of the gallery at `path`, which must exist and open with `key`.
    pub fn open_existing(path: &Path, key: Option<&TemplateKey>) -> Result<Self> {
        Self::of(&Gallery::open_existing(path, key)?)
    }

    fn open_at(path: &Path) -> Result<Self> {
        Ok(EventStore {
            connection: open_connection(path)?,
            path: path.to_path_buf(),
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
    #[cfg(any(test, feature = "inspection"))]
    pub fn events_naming(&self, pseudonym: &str) -> Result<usize> {
        Ok(self.connection.query_row(
            "SELECT COUNT(*) FROM events WHERE pseudonym = ?1",
            [pseudonym],
            |row| row.get::<_, i64>(0),
        )? as usize)
    }

    /// Events stored.
    #[cfg(any(test, feature = "inspection"))]
    pub fn event_count(&self) -> Result<usize> {
        Ok(self
            .connection
            .query_row("SELECT COUNT(*) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })? as usize)
    }

    /// Stores `event` in the outbox for the site under a new id, without its person when they are
    /// no longer enrolled here (erased while it was decided).
    pub fn queue_for_site(&mut self, event: &Event) -> Result<()> {
        let event_id = random_hex::<16>();
        let body = serde_json::to_string(event).map_err(|e| GalleryError::Event(e.to_string()))?;
        let stored = self
            .connection
            .execute(
                "INSERT INTO site_outbox(event_id, pseudonym, body)
                 SELECT ?1, ?2, ?3
                 WHERE ?2 IS NULL OR EXISTS (SELECT 1 FROM people WHERE pseudonym = ?2)",
                params![event_id, event.person.as_deref(), body],
            )
            .map_err(full)?;
        if stored == 0 {
            let anonymous = Event {
                person: None,
                ..event.clone()
            };
            let body = serde_json::to_string(&anonymous)
                .map_err(|e| GalleryError::Event(e.to_string()))?;
            self.connection
                .execute(
                    "INSERT INTO site_outbox(event_id, pseudonym, body) VALUES (?1, NULL, ?2)",
                    params![event_id, body],
                )
                .map_err(full)?;
        }
        Ok(())
    }

    /// The oldest `limit` events waiting for the site.
    pub fn site_outbox(&self, limit: usize) -> Result<Vec<OutboxEvent>> {
        let mut statement = self.connection.prepare(
            "SELECT position, event_id, pseudonym, body FROM site_outbox ORDER BY position LIMIT ?1",
        )?;
        let rows = statement.query_map([limit as i64], |row| {
            Ok(OutboxEvent {
                position: row.get(0)?,
                event_id: row.get(1)?,
                pseudonym: row.get(2)?,
                body: row.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// Removes the outbox's events up to and including `position`: the site has committed them.
    pub fn site_outbox_sent(&mut self, position: i64) -> Result<usize> {
        self.connection
            .execute("DELETE FROM site_outbox WHERE position <= ?1", [position])
            .map_err(full)
    }

    /// Events waiting for the site.
    pub fn site_outbox_len(&self) -> Result<usize> {
        Ok(self
            .connection
            .query_row("SELECT COUNT(*) FROM site_outbox", [], |row| {
                row.get::<_, i64>(0)
            })? as usize)
    }
}

impl EventSink for EventStore {
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
