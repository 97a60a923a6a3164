//! The site as an enrolment station and its administrator see it: people, their sealed templates,
//! access groups, doors, erasures and the doors' events.

use access::gallery::SealedTemplate;
use postgres::error::SqlState;
use postgres::{Client, Transaction};

use crate::connection::SiteConfig;
use crate::error::{Result, SiteError};
use crate::schema::{check_schema, CHANGES_CHANNEL, REVISION_LOCK, SCHEMA_VERSION};

/// Someone to enrol at the site, their templates already sealed under the site's template key.
#[derive(Debug, Clone)]
pub struct SiteEnrolment {
    /// Their name.
    pub name: String,
    /// The pseudonym their templates were sealed for (see `access::gallery::new_pseudonym`).
    pub pseudonym: String,
    /// The number access-control panels know them by.
    pub credential: Option<u32>,
    /// The access groups they join (each must exist).
    pub groups: Vec<String>,
    /// The model that made the templates.
    pub model_id: String,
    /// At least one.
    pub templates: Vec<SealedTemplate>,
    /// `TemplateKey::site_check` of the key that sealed `templates`: the enrolment is refused
    /// unless it is the site's.
    pub key_check: [u8; 32],
}

/// Someone enrolled at the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePerson {
    /// Their name.
    pub name: String,
    /// The pseudonym every door and event names them by.
    pub pseudonym: String,
    /// The number access-control panels know them by.
    pub credential: Option<u32>,
    /// The access groups they belong to, by name.
    pub groups: Vec<String>,
    /// Templates sent to doors, of every model.
    pub templates: usize,
    /// Templates of single windows, enrolled before doors searched the walk so far: kept, never
    /// sent to a door. Someone with only these is recognised nowhere until enrolled again.
    pub window_templates: usize,
}

/// What an erasure at the site removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteErasure {
    /// The pseudonym they had.
    pub pseudonym: String,
    /// Templates removed.
    pub templates: usize,
    /// The doors' events naming them, removed.
    pub events: usize,
}

/// One door's event as the site stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteEvent {
    /// The id the door gave it.
    pub event_id: String,
    /// The door whose role sent it.
    pub door: String,
    /// Its kind (`granted`, `denied`, ...).
    pub kind: String,
    /// The person it names, if any.
    pub pseudonym: Option<String>,
    /// The event as the door serialised it.
    pub body: String,
}

/// What a door's role sent that the site refused to store as that door's event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    /// The id the door gave it.
    pub event_id: String,
    /// The door whose role sent it.
    pub door: String,
    /// Why it was refused: another door named, a grant for someone the door does not hold.
    pub reason: String,
}

/// A connection with an enrolment station's or the site owner's role.
pub struct SiteAdmin {
    client: Client,
    schema: i32,
}

impl SiteAdmin {
    /// Connects and checks the site's schema.
    pub fn connect(config: &SiteConfig) -> Result<Self> {
        let mut client = config.connect()?;
        let schema = check_schema(&mut client)?;
        Ok(SiteAdmin { client, schema })
    }

    /// Enrols a new person with their groups and templates in one transaction, once the key that
    /// sealed the templates is known to be the site's (the first enrolment makes it so).
    pub fn enrol(&mut self, enrolment: &SiteEnrolment) -> Result<SitePerson> {
        if self.schema < SCHEMA_VERSION {
            return Err(SiteError::OlderSchema {
                found: self.schema,
                supported: SCHEMA_VERSION,
            });
        }
        if enrolment.templates.is_empty() {
            return Err(SiteError::Settings(
                "an enrolment needs at least one template".into(),
            ));
        }
        access::gallery::check_name(&enrolment.name)
            .map_err(|e| SiteError::Settings(e.to_string()))?;
        self.change(|tx| {
            check_template_key(tx, &enrolment.key_check)?;
            let inserted = tx.query_one(
                "INSERT INTO gait_site.people(pseudonym, name, credential, revision)
                 VALUES ($1, $2, $3, nextval('gait_site.revision')) RETURNING id",
                &[
                    &enrolment.pseudonym,
                    &enrolment.name,
                    &enrolment.credential.map(i64::from),
                ],
            );
            let person: i64 = match inserted {
                Ok(row) => row.get(0),
                Err(error) => {
                    return Err(match unique_violation(&error) {
                        Some("people_name_key") => {
                            SiteError::AlreadyEnrolled(enrolment.name.clone())
                        }
                        Some("people_credential_key") => {
                            SiteError::CredentialTaken(enrolment.credential.unwrap_or_default())
                        }
                        _ => error.into(),
                    })
                }
            };
            for group in &enrolment.groups {
                join_group(tx, person, group)?;
            }
            let statement = tx.prepare(
                "INSERT INTO gait_site.templates(person_id, model_id, parts, channels, frames, source, sealed)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )?;
            for template in &enrolment.templates {
                tx.execute(
                    &statement,
                    &[
                        &person,
                        &enrolment.model_id,
                        &(template.parts as i32),
                        &(template.channels as i32),
                        &(template.frames as i32),
                        &template.source,
                        &template.sealed,
                    ],
                )?;
            }
            Ok(())
        })?;
        self.person(&enrolment.name)
    }

    /// Erases `name` at the site: the person, their templates, their memberships and every event
    /// naming them, in one transaction; doors remove them on their next pull.
    pub fn erase(&mut self, name: &str) -> Result<SiteErasure> {
        let refusals_kept = self.schema >= 3;
        self.change(|tx| {
            let row = tx
                .query_opt(
                    "SELECT id, pseudonym FROM gait_site.people WHERE name = $1 FOR UPDATE",
                    &[&name],
                )?
                .ok_or_else(|| SiteError::UnknownPerson(name.to_string()))?;
            let person: i64 = row.get(0);
            let pseudonym: String = row.get(1);
            let templates = tx.execute(
                "DELETE FROM gait_site.templates WHERE person_id = $1",
                &[&person],
            )?;
            tx.execute("DELETE FROM gait_site.people WHERE id = $1", &[&person])?;
            let events = tx.execute(
                "DELETE FROM gait_site.events WHERE pseudonym = $1",
                &[&pseudonym],
            )?;
            if refusals_kept {
                tx.execute(
                    "DELETE FROM gait_site.refused_events WHERE body->>'person' = $1",
                    &[&pseudonym],
                )?;
            }
            tx.execute(
                "INSERT INTO gait_site.erasures(pseudonym, revision) VALUES ($1, nextval('gait_site.revision'))",
                &[&pseudonym],
            )?;
            Ok(SiteErasure {
                pseudonym,
                templates: templates as usize,
                events: events as usize,
            })
        })
    }

    /// Gives `name` the credential number a panel knows them by, or takes it away.
    pub fn set_credential(&mut self, name: &str, credential: Option<u32>) -> Result<SitePerson> {
        self.change(|tx| {
            let updated = tx.execute(
                "UPDATE gait_site.people SET credential = $2, revision = nextval('gait_site.revision')
                 WHERE name = $1",
                &[&name, &credential.map(i64::from)],
            );
            match updated {
                Ok(0) => Err(SiteError::UnknownPerson(name.to_string())),
                Ok(_) => Ok(()),
                Err(error) if unique_violation(&error).is_some() => {
                    Err(SiteError::CredentialTaken(credential.unwrap_or_default()))
                }
                Err(error) => Err(error.into()),
            }
        })?;
        self.person(name)
    }

    /// Adds `name` to an access group.
    pub fn join(&mut self, name: &str, group: &str) -> Result<()> {
        self.change(|tx| {
            let person = person_id(tx, name)?;
            join_group(tx, person, group)?;
            bump(tx, person)
        })
    }

    /// Takes `name` out of an access group.
    pub fn leave(&mut self, name: &str, group: &str) -> Result<()> {
        self.change(|tx| {
            let person = person_id(tx, name)?;
            tx.execute(
                "DELETE FROM gait_site.memberships WHERE person_id = $1 AND group_name = $2",
                &[&person, &group],
            )?;
            bump(tx, person)
        })
    }

    /// Creates an access group (nothing happens when it exists).
    pub fn add_group(&mut self, group: &str) -> Result<()> {
        self.client.execute(
            "INSERT INTO gait_site.access_groups(name) VALUES ($1) ON CONFLICT DO NOTHING",
            &[&group],
        )?;
        Ok(())
    }

    /// Registers a door whose kiosk logs in as `role` (an existing login role), and makes that role
    /// a member of the doors' group role. Needs the site owner's role.
    pub fn add_door(&mut self, door: &str, role: &str) -> Result<()> {
        let mut tx = self.client.transaction()?;
        tx.execute(
            "INSERT INTO gait_site.doors(name, db_role) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET db_role = excluded.db_role",
            &[&door, &role],
        )?;
        let quoted: String = tx.query_one("SELECT quote_ident($1)", &[&role])?.get(0);
        tx.batch_execute(&format!("GRANT gait_site_door TO {quoted}"))?;
        tx.commit()?;
        Ok(())
    }

    /// Lets the members of `group` through `door`.
    pub fn allow(&mut self, door: &str, group: &str) -> Result<()> {
        self.change(|tx| {
            check_exists(tx, "doors", door, || SiteError::UnknownDoor(door.into()))?;
            check_exists(tx, "access_groups", group, || {
                SiteError::UnknownGroup(group.into())
            })?;
            tx.execute(
                "INSERT INTO gait_site.door_groups(door, group_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&door, &group],
            )?;
            bump_group(tx, group)
        })
    }

    /// Stops letting the members of `group` through `door`.
    pub fn disallow(&mut self, door: &str, group: &str) -> Result<()> {
        self.change(|tx| {
            tx.execute(
                "DELETE FROM gait_site.door_groups WHERE door = $1 AND group_name = $2",
                &[&door, &group],
            )?;
            bump_group(tx, group)
        })
    }

    /// The person enrolled as `name`.
    pub fn person(&mut self, name: &str) -> Result<SitePerson> {
        self.people_named(Some(name))?
            .pop()
            .ok_or_else(|| SiteError::UnknownPerson(name.to_string()))
    }

    /// Everyone enrolled at the site, by name.
    pub fn people(&mut self) -> Result<Vec<SitePerson>> {
        self.people_named(None)
    }

    /// The person called `name`, or everyone.
    fn people_named(&mut self, name: Option<&str>) -> Result<Vec<SitePerson>> {
        let rows = self.client.query(
            "SELECT p.name, p.pseudonym, p.credential,
                    coalesce((SELECT array_agg(m.group_name ORDER BY m.group_name)
                              FROM gait_site.memberships m WHERE m.person_id = p.id), '{}'),
                    (SELECT count(*) FROM gait_site.templates t
                     WHERE t.person_id = p.id AND NOT t.window_only),
                    (SELECT count(*) FROM gait_site.templates t
                     WHERE t.person_id = p.id AND t.window_only)
             FROM gait_site.people p WHERE $1::text IS NULL OR p.name = $1 ORDER BY p.name",
            &[&name],
        )?;
        rows.iter()
            .map(|row| {
                let credential = row
                    .get::<_, Option<i64>>(2)
                    .map(|c| {
                        u32::try_from(c)
                            .map_err(|_| SiteError::Damaged(format!("credential number {c}")))
                    })
                    .transpose()?;
                Ok(SitePerson {
                    name: row.get(0),
                    pseudonym: row.get(1),
                    credential,
                    groups: row.get(3),
                    templates: row.get::<_, i64>(4) as usize,
                    window_templates: row.get::<_, i64>(5) as usize,
                })
            })
            .collect()
    }

    /// The doors' events, oldest first; of one door when named.
    pub fn events(&mut self, door: Option<&str>) -> Result<Vec<SiteEvent>> {
        let rows = self.client.query(
            "SELECT event_id, door, kind, pseudonym, body::text FROM gait_site.events
             WHERE $1::text IS NULL OR door = $1 ORDER BY at, event_id",
            &[&door],
        )?;
        Ok(rows
            .iter()
            .map(|row| SiteEvent {
                event_id: row.get(0),
                door: row.get(1),
                kind: row.get(2),
                pseudonym: row.get(3),
                body: row.get(4),
            })
            .collect())
    }

    /// The events doors' roles sent that were not theirs to send, oldest first: a door whose
    /// events land here is misconfigured or its credentials are in someone else's hands.
    pub fn refused_events(&mut self) -> Result<Vec<RefusedEvent>> {
        let rows = self.client.query(
            "SELECT event_id, door, reason FROM gait_site.refused_events ORDER BY received, event_id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|row| RefusedEvent {
                event_id: row.get(0),
                door: row.get(1),
                reason: row.get(2),
            })
            .collect())
    }

    /// One change to who may pass which door: under the revision lock, so that revisions commit
    /// in order, and announced to the doors when it commits.
    fn change<T>(&mut self, apply: impl FnOnce(&mut Transaction) -> Result<T>) -> Result<T> {
        let mut tx = self.client.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REVISION_LOCK])?;
        let result = apply(&mut tx)?;
        tx.execute(
            "SELECT pg_notify($1, currval('gait_site.revision')::text)",
            &[&CHANGES_CHANNEL],
        )?;
        tx.commit()?;
        Ok(result)
    }
}

/// Records `key_check` as the site's when it has none yet; refuses it when it differs.
fn check_template_key(tx: &mut Transaction, key_check: &[u8; 32]) -> Result<()> {
    tx.execute(
        "INSERT INTO gait_site.template_key_check(digest) VALUES ($1)
         ON CONFLICT (only_row) DO NOTHING",
        &[&key_check.as_slice()],
    )?;
    let site: Vec<u8> = tx
        .query_one("SELECT digest FROM gait_site.template_key_check", &[])?
        .get(0);
    if site != key_check {
        return Err(SiteError::WrongTemplateKey);
    }
    Ok(())
}

fn person_id(tx: &mut Transaction, name: &str) -> Result<i64> {
    tx.query_opt("SELECT id FROM gait_site.people WHERE name = $1", &[&name])?
        .map(|row| row.get(0))
        .ok_or_else(|| SiteError::UnknownPerson(name.to_string()))
}

fn join_group(tx: &mut Transaction, person: i64, group: &str) -> Result<()> {
    check_exists(tx, "access_groups", group, || {
        SiteError::UnknownGroup(group.into())
    })?;
    tx.execute(
        "INSERT INTO gait_site.memberships(person_id, group_name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&person, &group],
    )?;
    Ok(())
}

fn check_exists(
    tx: &mut Transaction,
    table: &str,
    name: &str,
    missing: impl FnOnce() -> SiteError,
) -> Result<()> {
    let found = tx
        .query_opt(
            &format!("SELECT 1 FROM gait_site.{table} WHERE name = $1"),
            &[&name],
        )?
        .is_some();
    if found {
        Ok(())
    } else {
        Err(missing())
    }
}

/// A new revision for one person: every door looks at them again.
fn bump(tx: &mut Transaction, person: i64) -> Result<()> {
    tx.execute(
        "UPDATE gait_site.people SET revision = nextval('gait_site.revision') WHERE id = $1",
        &[&person],
    )?;
    Ok(())
}

/// A new revision for every member of `group`, each their own, so that a door's batch never ends
/// in the middle of one revision.
fn bump_group(tx: &mut Transaction, group: &str) -> Result<()> {
    tx.execute(
        "UPDATE gait_site.people SET revision = nextval('gait_site.revision')
         WHERE id IN (SELECT person_id FROM gait_site.memberships WHERE group_name = $1)",
        &[&group],
    )?;
    // A change that touched nobody still takes a revision, so that `currval` is defined.
    tx.execute("SELECT nextval('gait_site.revision')", &[])?;
    Ok(())
}

fn unique_violation(error: &postgres::Error) -> Option<&str> {
    error
        .as_db_error()
        .filter(|e| e.code() == &SqlState::UNIQUE_VIOLATION)
        .and_then(|e| e.constraint())
}
