//! Events stored in the gallery (the kiosk's database sink) and the audit-log anchors among them.

use super::*;

impl Gallery {
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

    /// Events stored.
    pub fn event_count(&self) -> Result<usize> {
        Ok(self
            .connection
            .query_row("SELECT COUNT(*) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })? as usize)
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
