//! The gallery as a door's replica of a site: people and their sealed templates applied in batches
//! by revision, and the outbox of events that wait for the site.
//!
//! The site never holds the template key: an enrolment station seals each template under the site's
//! key, with the person's pseudonym and the model id as associated data exactly as a local enrolment
//! does, and the door stores the sealed bytes as they arrive. Each template is opened once on arrival:
//! a person with a template the door cannot open (sealed under another key, damaged, of a wrong
//! shape) is quarantined — removed from the replica, remembered with the reason, reported once — and
//! every other change of the batch is applied, so that one bad row never stops erasures and later
//! changes from reaching the door.

use super::people::{insert_person, insert_template_row, open_template, record_model, TemplateRow};
use super::*;

/// A template as a site stores it: sealed under the site's template key (nonce, then ciphertext and
/// tag), with its shape in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedTemplate {
    /// Parts of the embedding.
    pub parts: usize,
    /// Channels per part.
    pub channels: usize,
    /// Silhouettes the network saw.
    pub frames: usize,
    /// The recording or walk it was made from.
    pub source: String,
    /// `nonce || ciphertext+tag`.
    pub sealed: Vec<u8>,
}

/// One person as a door's replica must hold them from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteChange {
    /// Allowed through this door, with every template of this door's model.
    Present {
        /// Their pseudonym, the same at every door.
        pseudonym: String,
        /// Their name, for the door's screen.
        name: String,
        /// The number the door's panel knows them by.
        credential: Option<u32>,
        /// Their templates of this door's model.
        templates: Vec<SealedTemplate>,
    },
    /// Not (or no longer) to be recognised at this door.
    Absent {
        /// Their pseudonym.
        pseudonym: String,
        /// Erased at the site: every stored event naming them goes too, and nothing naming them is
        /// sent to the site again.
        erased: bool,
    },
}

/// Changes up to and including one site revision, applied together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteBatch {
    /// The newest revision the batch covers.
    pub revision: i64,
    /// In revision order.
    pub changes: Vec<SiteChange>,
}

/// What applying a batch did to the replica.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// People stored (new or replaced).
    pub stored: usize,
    /// People removed (no longer allowed here, or erased).
    pub removed: usize,
    /// Of those, erased at the site.
    pub erased: usize,
    /// People newly quarantined by this batch (someone already quarantined is not reported again).
    pub quarantined: Vec<Quarantined>,
}

/// Someone the site allows through this door whose templates the door cannot open: not
/// recognised here until the site sends templates that open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Their pseudonym.
    pub pseudonym: String,
    /// The site revision that brought the templates.
    pub revision: i64,
    /// Why their templates were refused.
    pub reason: String,
}

/// A new random pseudonym, as every enrolment gives a person.
pub fn new_pseudonym() -> String {
    people::new_pseudonym()
}

impl Gallery {
    /// The newest site revision this replica holds (0 before the first batch).
    pub fn site_revision(&self) -> Result<i64> {
        let stored: Option<Vec<u8>> = self
            .connection
            .query_row(
                "SELECT value FROM meta WHERE key = 'site_revision'",
                [],
                |row| row.get(0),
            )
            .optional()?;
        Ok(stored
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Whether this gallery is a site's replica (people come from the site, not from local enrolment).
    pub fn is_site_replica(&self) -> Result<bool> {
        Ok(self.site_revision()? > 0)
    }

    /// Refuses a local enrolment, credential change or erasure in a site's replica: the next batch
    /// from the site would undo it, and an erasure must reach every door.
    pub(super) fn check_local_changes(&self) -> Result<()> {
        if self.is_site_replica()? {
            return Err(GalleryError::SiteReplica {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    /// Everyone quarantined: allowed at this door by the site, but with templates it cannot open.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let mut statement = self.connection.prepare(
            "SELECT pseudonym, revision, reason FROM site_quarantine ORDER BY revision, pseudonym",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(Quarantined {
                pseudonym: row.get(0)?,
                revision: row.get(1)?,
                reason: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Applies `batch` in one transaction. A person whose templates do not all open under this
    /// gallery's key for them and `model_id` is quarantined instead of stored; every other change
    /// is applied.
    pub fn apply_site_batch(&mut self, model_id: &str, batch: &SiteBatch) -> Result<Applied> {
        let Some(cipher) = self.cipher.clone() else {
            return Err(GalleryError::KeyRequired);
        };
        self.check_model(model_id)?;
        let now = now_ms();
        let mut applied = Applied::default();
        let tx = self.connection.transaction().map_err(full)?;
        record_model(&tx, model_id)?;
        for change in &batch.changes {
            match change {
                SiteChange::Absent { pseudonym, erased } => {
                    release_from_quarantine(&tx, pseudonym)?;
                    if remove_by_pseudonym(&tx, pseudonym)? {
                        applied.removed += 1;
                    }
                    if *erased {
                        tx.execute("DELETE FROM events WHERE pseudonym = ?1", [pseudonym])
                            .map_err(full)?;
                        tx.execute("DELETE FROM site_outbox WHERE pseudonym = ?1", [pseudonym])
                            .map_err(full)?;
                        applied.erased += 1;
                    }
                }
                SiteChange::Present {
                    pseudonym,
                    name,
                    credential,
                    templates,
                } => {
                    let removed = remove_by_pseudonym(&tx, pseudonym)?;
                    if let Some(reason) = unopenable(&cipher, pseudonym, model_id, templates)? {
                        if quarantine(&tx, pseudonym, batch.revision, &reason)? {
                            applied.quarantined.push(Quarantined {
                                pseudonym: pseudonym.clone(),
                                revision: batch.revision,
                                reason,
                            });
                        }
                        applied.removed += usize::from(removed);
                        continue;
                    }
                    release_from_quarantine(&tx, pseudonym)?;
                    // A name the site gave someone else since: theirs arrives in this batch or a
                    // later one.
                    tx.execute("DELETE FROM people WHERE name = ?1", [name])
                        .map_err(full)?;
                    if let Some(credential) = credential {
                        tx.execute("DELETE FROM people WHERE credential = ?1", [credential])
                            .map_err(full)?;
                    }
                    let person_id = insert_person(&tx, pseudonym, name, now, *credential)?;
                    for template in templates {
                        insert_sealed(&tx, person_id, model_id, template, now)?;
                    }
                    applied.stored += 1;
                }
            }
        }
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('site_revision', ?1) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![batch.revision.to_string().into_bytes()],
        )
        .map_err(full)?;
        if applied.stored + applied.removed > 0 {
            people::bump_roster_generation(&tx)?;
        }
        tx.commit().map_err(full)?;
        self.roster_generation = self.current_roster_generation()?;
        if applied.erased > 0 {
            self.scrub_freed_pages()?;
        }
        Ok(applied)
    }
}

fn remove_by_pseudonym(tx: &Transaction, pseudonym: &str) -> Result<bool> {
    let person: Option<i64> = tx
        .query_row(
            "SELECT id FROM people WHERE pseudonym = ?1",
            [pseudonym],
            |row| row.get(0),
        )
        .optional()?;
    let Some(person) = person else {
        return Ok(false);
    };
    tx.execute("DELETE FROM templates WHERE person_id = ?1", [person])
        .map_err(full)?;
    tx.execute("DELETE FROM people WHERE id = ?1", [person])
        .map_err(full)?;
    Ok(true)
}

/// Puts `pseudonym` in quarantine for `reason`; `false` when they already were (reported then).
fn quarantine(tx: &Transaction, pseudonym: &str, revision: i64, reason: &str) -> Result<bool> {
    let inserted = tx
        .execute(
            "INSERT INTO site_quarantine(pseudonym, revision, reason) VALUES (?1, ?2, ?3) \
             ON CONFLICT(pseudonym) DO NOTHING",
            params![pseudonym, revision, reason],
        )
        .map_err(full)?;
    Ok(inserted == 1)
}

fn release_from_quarantine(tx: &Transaction, pseudonym: &str) -> Result<()> {
    tx.execute(
        "DELETE FROM site_quarantine WHERE pseudonym = ?1",
        [pseudonym],
    )
    .map_err(full)?;
    Ok(())
}

/// Why some template of `templates` does not open as `pseudonym`'s of `model_id`; `None` when
/// every one does. Errors other than the template's own (the disk, the database) are returned.
fn unopenable(
    cipher: &ChaCha20Poly1305,
    pseudonym: &str,
    model_id: &str,
    templates: &[SealedTemplate],
) -> Result<Option<String>> {
    for (index, template) in templates.iter().enumerate() {
        let shape = (template.parts as i64, template.channels as i64);
        let (nonce, data) = template
            .sealed
            .split_at(NONCE_BYTES.min(template.sealed.len()));
        let opened = open_template(
            Some(cipher),
            index as i64 + 1,
            pseudonym,
            model_id,
            shape,
            Some(nonce.to_vec()),
            data.to_vec(),
        );
        match opened {
            Ok(_) => {}
            Err(
                error @ (GalleryError::TemplateTampered { .. }
                | GalleryError::TemplateShape { .. }
                | GalleryError::TemplateSize { .. }
                | GalleryError::TemplateNotFinite { .. }),
            ) => return Ok(Some(error.to_string())),
            Err(other) => return Err(other),
        }
    }
    Ok(None)
}

/// Stores a template that [`unopenable`] has opened.
fn insert_sealed(
    tx: &Transaction,
    person_id: i64,
    model_id: &str,
    template: &SealedTemplate,
    now: i64,
) -> Result<()> {
    let (nonce, data) = template.sealed.split_at(NONCE_BYTES);
    insert_template_row(
        tx,
        &TemplateRow {
            person_id,
            model_id,
            shape: (template.parts as i64, template.channels as i64),
            frames: template.frames as i64,
            source: &template.source,
            nonce: Some(nonce),
            data,
            now,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_store::EventStore;
    use crate::events::{Event, EventKind};

    fn embedding(seed: f32) -> Embedding {
        Embedding::new(3, 4, (0..12).map(|i| seed + i as f32).collect()).unwrap()
    }

    fn present(key: &TemplateKey, name: &str, seeds: &[f32]) -> SiteChange {
        let pseudonym = new_pseudonym();
        let templates = seeds
            .iter()
            .map(|&seed| SealedTemplate {
                parts: 3,
                channels: 4,
                frames: 30,
                source: format!("walk {seed}"),
                sealed: key
                    .seal_template(&pseudonym, "m", &embedding(seed))
                    .unwrap(),
            })
            .collect();
        SiteChange::Present {
            pseudonym,
            name: name.into(),
            credential: None,
            templates,
        }
    }

    fn pseudonym(change: &SiteChange) -> String {
        match change {
            SiteChange::Present { pseudonym, .. } | SiteChange::Absent { pseudonym, .. } => {
                pseudonym.clone()
            }
        }
    }

    fn replica(key: &TemplateKey) -> (tempfile::TempDir, Gallery) {
        let dir = tempfile::tempdir().unwrap();
        let gallery = Gallery::open(&dir.path().join("replica.db"), Some(key)).unwrap();
        (dir, gallery)
    }

    fn granted(person: &str) -> Event {
        Event {
            at_ms: 5,
            track: Some(1),
            person: Some(person.into()),
            decided: None,
            ..Event::new("front", "m", EventKind::Granted)
        }
    }

    #[test]
    fn templates_sealed_at_the_site_open_at_the_door_exactly() {
        let key = TemplateKey::generate();
        let (_dir, mut gallery) = replica(&key);
        let ada = present(&key, "ada", &[1.0, 2.0]);
        let applied = gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 7,
                    changes: vec![ada.clone(), present(&key, "bob", &[5.0])],
                },
            )
            .unwrap();
        assert_eq!(applied.stored, 2);
        assert_eq!(gallery.site_revision().unwrap(), 7);
        let people = gallery.people().unwrap();
        assert_eq!(people[0].pseudonym, pseudonym(&ada));
        let templates = gallery.templates().unwrap();
        assert_eq!(templates.len(), 3);
        assert_eq!(templates[1].embedding, embedding(2.0));
    }

    #[test]
    fn a_person_whose_templates_do_not_open_is_quarantined_once_and_the_rest_applies() {
        let key = TemplateKey::generate();
        let (_dir, mut gallery) = replica(&key);
        let stranger_key = TemplateKey::generate();
        let bob = present(&key, "bob", &[5.0]);
        gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 1,
                    changes: vec![bob.clone()],
                },
            )
            .unwrap();
        let eve = present(&stranger_key, "eve", &[2.0]);
        let mut tampered = present(&key, "tim", &[3.0]);
        if let SiteChange::Present { templates, .. } = &mut tampered {
            templates[0].sealed[20] ^= 1;
        }
        let bob_erased = SiteChange::Absent {
            pseudonym: pseudonym(&bob),
            erased: true,
        };
        let applied = gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 3,
                    changes: vec![
                        present(&key, "ada", &[1.0]),
                        eve.clone(),
                        tampered.clone(),
                        bob_erased,
                    ],
                },
            )
            .unwrap();
        assert_eq!((applied.stored, applied.erased), (1, 1));
        let quarantined: Vec<_> = applied.quarantined.iter().map(|q| &q.pseudonym).collect();
        assert_eq!(quarantined, [&pseudonym(&eve), &pseudonym(&tampered)]);
        assert!(applied.quarantined[0].reason.contains("does not decrypt"));
        let names: Vec<_> = gallery
            .people()
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(names, ["ada"]);
        assert_eq!(gallery.site_revision().unwrap(), 3);
        assert_eq!(gallery.quarantined().unwrap().len(), 2);

        // The same unopenable templates again: still quarantined, not reported again.
        let again = gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 4,
                    changes: vec![eve.clone()],
                },
            )
            .unwrap();
        assert!(again.quarantined.is_empty());

        // Templates that open release them.
        let SiteChange::Present {
            pseudonym: eve_pseudonym,
            ..
        } = &eve
        else {
            unreachable!()
        };
        let mended = SiteChange::Present {
            pseudonym: eve_pseudonym.clone(),
            name: "eve".into(),
            credential: None,
            templates: vec![SealedTemplate {
                parts: 3,
                channels: 4,
                frames: 30,
                source: "mended".into(),
                sealed: key
                    .seal_template(eve_pseudonym, "m", &embedding(2.0))
                    .unwrap(),
            }],
        };
        gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 5,
                    changes: vec![mended],
                },
            )
            .unwrap();
        let left: Vec<_> = gallery
            .quarantined()
            .unwrap()
            .into_iter()
            .map(|q| q.pseudonym)
            .collect();
        assert_eq!(left, [pseudonym(&tampered)]);
        assert_eq!(gallery.people().unwrap().len(), 2);
    }

    #[test]
    fn a_person_stored_then_sent_with_unopenable_templates_is_removed() {
        let key = TemplateKey::generate();
        let (_dir, mut gallery) = replica(&key);
        let ada = present(&key, "ada", &[1.0]);
        let batch = |revision, change| SiteBatch {
            revision,
            changes: vec![change],
        };
        gallery
            .apply_site_batch("m", &batch(1, ada.clone()))
            .unwrap();
        let SiteChange::Present {
            pseudonym, name, ..
        } = ada
        else {
            unreachable!()
        };
        let short = SiteChange::Present {
            pseudonym,
            name,
            credential: None,
            templates: vec![SealedTemplate {
                parts: 3,
                channels: 4,
                frames: 30,
                source: "cut".into(),
                sealed: vec![1, 2, 3],
            }],
        };
        let applied = gallery.apply_site_batch("m", &batch(2, short)).unwrap();
        assert_eq!((applied.removed, applied.quarantined.len()), (1, 1));
        assert!(gallery.people().unwrap().is_empty());
    }

    #[test]
    fn an_erasure_takes_the_person_their_events_and_their_waiting_events() {
        let key = TemplateKey::generate();
        let (_dir, mut gallery) = replica(&key);
        let ada = present(&key, "ada", &[1.0]);
        let ada_pseudonym = pseudonym(&ada);
        gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 1,
                    changes: vec![ada, present(&key, "bob", &[3.0])],
                },
            )
            .unwrap();
        let mut events = EventStore::of(&gallery).unwrap();
        events
            .record_decision_event(&granted(&ada_pseudonym))
            .unwrap();
        events.queue_for_site(&granted(&ada_pseudonym)).unwrap();
        assert_eq!(events.site_outbox_len().unwrap(), 1);
        let applied = gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 2,
                    changes: vec![SiteChange::Absent {
                        pseudonym: ada_pseudonym.clone(),
                        erased: true,
                    }],
                },
            )
            .unwrap();
        assert_eq!((applied.removed, applied.erased), (1, 1));
        assert_eq!(gallery.people().unwrap().len(), 1);
        assert_eq!(events.events_naming(&ada_pseudonym).unwrap(), 0);
        assert_eq!(events.site_outbox_len().unwrap(), 0);
        events.queue_for_site(&granted(&ada_pseudonym)).unwrap();
        let waiting = events.site_outbox(10).unwrap();
        assert_eq!(waiting[0].pseudonym, None);
        assert!(!waiting[0].body.contains(&ada_pseudonym));
    }

    #[test]
    fn a_replica_refuses_local_enrolment_and_erasure() {
        let key = TemplateKey::generate();
        let (_dir, mut gallery) = replica(&key);
        gallery
            .apply_site_batch(
                "m",
                &SiteBatch {
                    revision: 1,
                    changes: vec![present(&key, "ada", &[1.0])],
                },
            )
            .unwrap();
        let template = NewTemplate {
            embedding: embedding(1.0),
            frames: 30,
            source: "local".into(),
        };
        for error in [
            gallery.enrol("bob", "m", &[template]).unwrap_err(),
            gallery.erase("ada").unwrap_err(),
        ] {
            assert!(matches!(error, GalleryError::SiteReplica { .. }), "{error}");
        }
        assert!(gallery
            .apply_site_batch(
                "other-model",
                &SiteBatch {
                    revision: 2,
                    changes: vec![]
                }
            )
            .is_err());
    }

    #[test]
    fn the_outbox_keeps_order_and_ids_until_the_site_has_them() {
        let key = TemplateKey::generate();
        let (_dir, gallery) = replica(&key);
        let mut events = EventStore::of(&gallery).unwrap();
        for _ in 0..3 {
            events
                .queue_for_site(&Event {
                    person: None,
                    ..granted("x")
                })
                .unwrap();
        }
        let first = events.site_outbox(2).unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0].event_id, first[1].event_id);
        assert_eq!(
            first[0].event_id,
            events.site_outbox(1).unwrap()[0].event_id
        );
        assert_eq!(events.site_outbox_sent(first[1].position).unwrap(), 2);
        assert_eq!(events.site_outbox_len().unwrap(), 1);
    }
}
