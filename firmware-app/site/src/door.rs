//! The site as a door sees it: its own people's changes by revision, their templates of its
//! model, announcements of new changes, and its events going up.

use std::collections::HashMap;
use std::time::Duration;

use access::event_store::OutboxEvent;
use access::gallery::{SealedTemplate, SiteBatch, SiteChange};
use access::vocabulary::ChainHead;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, IsolationLevel};

use crate::connection::SiteConfig;
use crate::error::{Result, SiteError};
use crate::schema::{check_schema, CHANGES_CHANNEL};

/// The audit chain heads this door (the role of `config`) published to the site, oldest first.
pub fn published_audit_heads(config: &SiteConfig) -> Result<Vec<ChainHead>> {
    let mut client = config.connect()?;
    if check_schema(&mut client)? < 2 {
        return Ok(Vec::new());
    }
    let rows = client.query("SELECT seq, mac FROM gait_site.door_audit_heads()", &[])?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.get(0);
            Ok(ChainHead {
                seq: u64::try_from(seq)
                    .map_err(|_| SiteError::Damaged(format!("audit head {seq}")))?,
                mac: row.get(1),
            })
        })
        .collect()
}

/// A door's connection to its site, listening for announced changes.
pub struct DoorLink {
    client: Client,
    model_id: String,
}

impl DoorLink {
    /// Connects as the door's role, checks the schema, that the role is registered as the door
    /// named `door` and that `key_check` (`TemplateKey::site_check` of the door's key) is the
    /// site's, and starts listening for changes. Only templates of `model_id` are ever fetched.
    pub fn connect(
        config: &SiteConfig,
        door: &str,
        model_id: &str,
        key_check: &[u8; 32],
    ) -> Result<Self> {
        let mut client = config.connect()?;
        // A role that is no door may not even see the schema: refused the same way.
        let not_a_door = |error: SiteError| match error {
            SiteError::Database(e)
                if e.as_db_error().map(|d| d.code())
                    == Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                SiteError::NotADoor {
                    role: config.role().unwrap_or_default(),
                }
            }
            other => other,
        };
        let schema = check_schema(&mut client).map_err(not_a_door)?;
        // Before schema 4 the site sends the templates of single windows as if they were walks.
        if schema < 4 {
            return Err(SiteError::OlderSchema {
                found: schema,
                supported: crate::schema::SCHEMA_VERSION,
            });
        }
        client
            .query("SELECT * FROM gait_site.door_changes(0, 0)", &[])
            .map_err(|e| not_a_door(e.into()))?;
        let site: Option<Vec<u8>> = client
            .query_one("SELECT gait_site.door_template_key_check()", &[])?
            .get(0);
        if site.is_some_and(|site| site != key_check) {
            return Err(SiteError::WrongTemplateKey);
        }
        let registered: String = client
            .query_one("SELECT gait_site.door_name()", &[])?
            .get(0);
        if registered != door {
            return Err(SiteError::DoorNameMismatch {
                registered,
                configured: door.to_string(),
            });
        }
        client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
        Ok(DoorLink {
            client,
            model_id: model_id.to_string(),
        })
    }

    /// Changes after `revision`, at most `max_people` of them, with their templates, read in one
    /// consistent snapshot; `None` when there are none.
    pub fn pull(&mut self, revision: i64, max_people: usize) -> Result<Option<SiteBatch>> {
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let limit = i32::try_from(max_people).unwrap_or(i32::MAX);
        let rows = tx.query(
            "SELECT revision, pseudonym, present, erased, name, credential
             FROM gait_site.door_changes($1, $2)",
            &[&revision, &limit],
        )?;
        let Some(last) = rows.last() else {
            return Ok(None);
        };
        let newest: i64 = last.get(0);
        let present: Vec<String> = rows
            .iter()
            .filter(|row| row.get::<_, bool>(2))
            .map(|row| row.get(1))
            .collect();
        let mut templates: HashMap<String, Vec<SealedTemplate>> = HashMap::new();
        for row in tx.query(
            "SELECT pseudonym, parts, channels, frames, source, sealed
             FROM gait_site.door_templates($1, $2)",
            &[&present, &self.model_id],
        )? {
            let shape = |i: usize| {
                usize::try_from(row.get::<_, i32>(i))
                    .map_err(|_| SiteError::Damaged(format!("a template of shape column {i}")))
            };
            templates
                .entry(row.get(0))
                .or_default()
                .push(SealedTemplate {
                    parts: shape(1)?,
                    channels: shape(2)?,
                    frames: shape(3)?,
                    source: row.get(4),
                    sealed: row.get(5),
                });
        }
        tx.commit()?;
        let mut changes = Vec::with_capacity(rows.len());
        for row in &rows {
            let pseudonym: String = row.get(1);
            let erased: bool = row.get(3);
            // Allowed here but with no template of this door's model: nothing to match against.
            let templates = templates.remove(&pseudonym).unwrap_or_default();
            if !row.get::<_, bool>(2) || templates.is_empty() {
                changes.push(SiteChange::Absent { pseudonym, erased });
                continue;
            }
            let credential = row
                .get::<_, Option<i64>>(5)
                .map(|c| {
                    u32::try_from(c).map_err(|_| SiteError::Damaged(format!("credential {c}")))
                })
                .transpose()?;
            changes.push(SiteChange::Present {
                pseudonym,
                name: row.get(4),
                credential,
                templates,
            });
        }
        Ok(Some(SiteBatch {
            revision: newest,
            changes,
        }))
    }

    /// Stores `events` at the site in one transaction; each is stored once however often it is
    /// sent. Returns how many were new.
    pub fn upload(&mut self, events: &[OutboxEvent]) -> Result<usize> {
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let bodies: Vec<&str> = events.iter().map(|e| e.body.as_str()).collect();
        let stored: i32 = self
            .client
            .query_one(
                "SELECT gait_site.door_record_events($1, $2::text[]::jsonb[])",
                &[&ids, &bodies],
            )?
            .get(0);
        Ok(stored as usize)
    }

    /// Waits up to `timeout` for the site to announce a change; `true` when one came.
    pub fn wait_for_change(&mut self, timeout: Duration) -> Result<bool> {
        let mut notifications = self.client.notifications();
        let mut announced = notifications.timeout_iter(timeout);
        let first = announced.next()?;
        // Several announcements fold into one pull.
        while announced.next()?.is_some() {}
        Ok(first.is_some())
    }

    /// Whether the connection has been closed (the server went away).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
