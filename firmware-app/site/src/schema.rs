//! The site's schema and its forward migrations.
//!
//! Everything lives in the schema `gait_site`. Two group roles carry the privileges: the enrolment
//! stations' (`gait_site_enrolment`: people, templates, groups, doors, erasures) and the doors'
//! (`gait_site_door`: only the functions below, which see nothing but the calling door's people
//! and write nothing but its own events). A door's login role is made a member of
//! `gait_site_door` when the door is registered.
//!
//! Every change to who may pass which door takes the site's revision lock and a new value of the
//! `revision` sequence in the same transaction, so revisions commit in the order they were taken:
//! a door that has applied everything up to revision `r` can never later meet a change below `r`.

use postgres::Client;

use crate::error::{Result, SiteError};

/// The schema this build writes. Older sites are migrated forward by `enrol site migrate`; newer ones
/// are refused.
pub const SCHEMA_VERSION: i32 = 4;

/// The channel on which every committed change is announced (its payload: the new revision).
pub const CHANGES_CHANNEL: &str = "gait_site_changes";

/// The advisory lock that orders revisions.
pub(crate) const REVISION_LOCK: i64 = 0x6761_6974_5f72_6576;

/// Each entry moves a site from schema version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
    DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gait_site_door') THEN
            CREATE ROLE gait_site_door NOLOGIN;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gait_site_enrolment') THEN
            CREATE ROLE gait_site_enrolment NOLOGIN;
        END IF;
    END $$;

    CREATE SEQUENCE gait_site.revision;

    CREATE TABLE gait_site.people (
        id bigserial PRIMARY KEY,
        pseudonym text NOT NULL UNIQUE CHECK (pseudonym ~ '^[0-9a-f]{16}$'),
        name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
        credential bigint UNIQUE CHECK (credential BETWEEN 0 AND 4294967295),
        enrolled_at timestamptz NOT NULL DEFAULT now(),
        revision bigint NOT NULL
    );
    CREATE INDEX people_by_revision ON gait_site.people(revision);

    CREATE TABLE gait_site.templates (
        id bigserial PRIMARY KEY,
        person_id bigint NOT NULL REFERENCES gait_site.people(id) ON DELETE CASCADE,
        model_id text NOT NULL,
        parts integer NOT NULL CHECK (parts BETWEEN 1 AND 4096),
        channels integer NOT NULL CHECK (channels BETWEEN 1 AND 4096),
        frames integer NOT NULL CHECK (frames >= 0),
        source text NOT NULL,
        sealed bytea NOT NULL
    );
    CREATE INDEX templates_by_person ON gait_site.templates(person_id, model_id);

    CREATE TABLE gait_site.access_groups (
        name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200)
    );
    CREATE TABLE gait_site.memberships (
        person_id bigint NOT NULL REFERENCES gait_site.people(id) ON DELETE CASCADE,
        group_name text NOT NULL REFERENCES gait_site.access_groups(name) ON DELETE CASCADE,
        PRIMARY KEY (person_id, group_name)
    );
    CREATE INDEX memberships_by_group ON gait_site.memberships(group_name);

    CREATE TABLE gait_site.doors (
        name text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
        db_role text NOT NULL UNIQUE
    );
    CREATE TABLE gait_site.door_groups (
        door text NOT NULL REFERENCES gait_site.doors(name) ON DELETE CASCADE,
        group_name text NOT NULL REFERENCES gait_site.access_groups(name) ON DELETE CASCADE,
        PRIMARY KEY (door, group_name)
    );

    -- Only the pseudonym of an erased person stays, so that doors that held them remove them.
    CREATE TABLE gait_site.erasures (
        pseudonym text PRIMARY KEY,
        revision bigint NOT NULL,
        erased_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX erasures_by_revision ON gait_site.erasures(revision);

    CREATE TABLE gait_site.events (
        event_id text PRIMARY KEY CHECK (event_id ~ '^[0-9a-f]{32}$'),
        door text NOT NULL,
        at timestamptz NOT NULL,
        kind text NOT NULL,
        pseudonym text,
        body jsonb NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX events_by_door_time ON gait_site.events(door, at);
    CREATE INDEX events_by_pseudonym ON gait_site.events(pseudonym) WHERE pseudonym IS NOT NULL;

    -- The door of the role that connected (session_user: inside these functions current_user is
    -- their owner).
    CREATE FUNCTION gait_site.calling_door() RETURNS text
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text;
    BEGIN
        SELECT name INTO door_name FROM doors WHERE db_role = session_user;
        IF door_name IS NULL THEN
            RAISE EXCEPTION 'not a door: %', session_user USING ERRCODE = '42501';
        END IF;
        RETURN door_name;
    END $f$;

    CREATE FUNCTION gait_site.allowed_at(person bigint, door_name text) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
        SELECT EXISTS (
            SELECT 1 FROM memberships m JOIN door_groups g ON g.group_name = m.group_name
            WHERE m.person_id = person AND g.door = door_name
        )
    $f$;

    -- Everyone whose standing at the calling door may have changed after revision `after`, in
    -- revision order: present (with name and credential) or not.
    CREATE FUNCTION gait_site.door_changes(after bigint, max_rows integer)
    RETURNS TABLE (revision bigint, pseudonym text, present boolean, erased boolean, name text,
                   credential bigint)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
    BEGIN
        RETURN QUERY
        SELECT c.revision, c.pseudonym, c.present, c.erased,
               CASE WHEN c.present THEN c.name END, CASE WHEN c.present THEN c.credential END
        FROM (
            SELECT p.revision, p.pseudonym, allowed_at(p.id, door_name) AS present,
                   false AS erased, p.name, p.credential
            FROM people p WHERE p.revision > after
            UNION ALL
            SELECT e.revision, e.pseudonym, false, true, NULL, NULL
            FROM erasures e WHERE e.revision > after
        ) c
        ORDER BY c.revision
        LIMIT max_rows;
    END $f$;

    -- The templates of `model` of those of `pseudonyms` allowed at the calling door.
    CREATE FUNCTION gait_site.door_templates(pseudonyms text[], model text)
    RETURNS TABLE (pseudonym text, parts integer, channels integer, frames integer, source text,
                   sealed bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
    BEGIN
        RETURN QUERY
        SELECT p.pseudonym, t.parts, t.channels, t.frames, t.source, t.sealed
        FROM people p JOIN templates t ON t.person_id = p.id
        WHERE p.pseudonym = ANY(pseudonyms) AND t.model_id = model
          AND allowed_at(p.id, door_name)
        ORDER BY p.pseudonym, t.id;
    END $f$;

    -- The calling door's events, each stored once whatever how often it is sent; an event naming
    -- someone erased meanwhile is stored without them.
    CREATE FUNCTION gait_site.door_record_events(event_ids text[], bodies jsonb[]) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
        stored integer;
    BEGIN
        INSERT INTO events(event_id, door, at, kind, pseudonym, body)
        SELECT e.event_id, door_name, to_timestamp((e.body->>'at_ms')::bigint / 1000.0),
               coalesce(e.body->>'kind', 'unknown'),
               CASE WHEN known.pseudonym IS NOT NULL THEN known.pseudonym END,
               CASE WHEN known.pseudonym IS NULL THEN e.body - 'person' ELSE e.body END
        FROM unnest(event_ids, bodies) AS e(event_id, body)
        LEFT JOIN people known ON known.pseudonym = e.body->>'person'
        ON CONFLICT (event_id) DO NOTHING;
        GET DIAGNOSTICS stored = ROW_COUNT;
        RETURN stored;
    END $f$;

    REVOKE ALL ON ALL FUNCTIONS IN SCHEMA gait_site FROM PUBLIC;
    GRANT USAGE ON SCHEMA gait_site TO gait_site_door, gait_site_enrolment;
    GRANT EXECUTE ON FUNCTION gait_site.door_changes(bigint, integer),
                              gait_site.door_templates(text[], text),
                              gait_site.door_record_events(text[], jsonb[]) TO gait_site_door;
    GRANT SELECT, INSERT, UPDATE, DELETE ON gait_site.people, gait_site.templates,
        gait_site.access_groups, gait_site.memberships, gait_site.door_groups,
        gait_site.erasures TO gait_site_enrolment;
    GRANT SELECT ON gait_site.doors TO gait_site_enrolment;
    GRANT SELECT, DELETE ON gait_site.events TO gait_site_enrolment;
    GRANT USAGE ON ALL SEQUENCES IN SCHEMA gait_site TO gait_site_enrolment;
"#,
    r#"
    -- What the site's template key derives for checking (never the key): written by the first
    -- enrolment, compared by every later one and by every door, so that templates sealed under
    -- another key never reach the doors.
    CREATE TABLE gait_site.template_key_check (
        only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
        digest bytea NOT NULL CHECK (length(digest) = 32)
    );
    GRANT SELECT, INSERT ON gait_site.template_key_check TO gait_site_enrolment;

    CREATE FUNCTION gait_site.door_template_key_check() RETURNS bytea
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
        SELECT digest FROM template_key_check
    $f$;
    REVOKE ALL ON FUNCTION gait_site.door_template_key_check() FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION gait_site.door_template_key_check() TO gait_site_door;

    -- The audit chain heads the calling door published: anchors of its log that the door can add
    -- to but never change or remove.
    CREATE FUNCTION gait_site.door_audit_heads() RETURNS TABLE (seq bigint, mac text)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
    BEGIN
        RETURN QUERY
        SELECT (e.body->>'seq')::bigint, e.body->>'mac'
        FROM events e
        WHERE e.door = door_name AND e.kind = 'audit_head'
          AND e.body->>'seq' ~ '^[0-9]{1,18}$' AND e.body->>'mac' ~ '^[0-9a-f]{64}$'
        ORDER BY 1;
    END $f$;
    REVOKE ALL ON FUNCTION gait_site.door_audit_heads() FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION gait_site.door_audit_heads() TO gait_site_door;

    -- A door's role may not flood the site: at most 1,000 events a call (a door sends 500), none
    -- over 16 KiB (a door's own are well under 2 KiB).
    CREATE OR REPLACE FUNCTION gait_site.door_record_events(event_ids text[], bodies jsonb[])
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
        stored integer;
    BEGIN
        IF coalesce(array_length(event_ids, 1), 0) > 1000
           OR coalesce(array_length(bodies, 1), 0) > 1000 THEN
            RAISE EXCEPTION 'a door sends at most 1000 events at once, not %',
                greatest(array_length(event_ids, 1), array_length(bodies, 1))
                USING ERRCODE = '54000';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(bodies) AS b WHERE octet_length(b::text) > 16384) THEN
            RAISE EXCEPTION 'an event of over 16384 bytes is no door''s' USING ERRCODE = '54000';
        END IF;
        INSERT INTO events(event_id, door, at, kind, pseudonym, body)
        SELECT e.event_id, door_name, to_timestamp((e.body->>'at_ms')::bigint / 1000.0),
               coalesce(e.body->>'kind', 'unknown'),
               CASE WHEN known.pseudonym IS NOT NULL THEN known.pseudonym END,
               CASE WHEN known.pseudonym IS NULL THEN e.body - 'person' ELSE e.body END
        FROM unnest(event_ids, bodies) AS e(event_id, body)
        LEFT JOIN people known ON known.pseudonym = e.body->>'person'
        ON CONFLICT (event_id) DO NOTHING;
        GET DIAGNOSTICS stored = ROW_COUNT;
        RETURN stored;
    END $f$;
"#,
    r#"
    -- The name the calling door is registered under: a door whose own configuration names it
    -- otherwise refuses to link, since every event it sends names it.
    CREATE FUNCTION gait_site.door_name() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
        SELECT calling_door()
    $f$;
    REVOKE ALL ON FUNCTION gait_site.door_name() FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION gait_site.door_name() TO gait_site_door;

    -- What a door's role sent that this door may not claim: an event naming another door, a grant
    -- for someone not allowed at this door. Kept for the site's administrator with the reason,
    -- never among the doors' events; the rest of the call is stored, so that one such event does
    -- not hold up the door's outbox.
    CREATE TABLE gait_site.refused_events (
        event_id text NOT NULL,
        door text NOT NULL,
        received timestamptz NOT NULL DEFAULT now(),
        reason text NOT NULL,
        body jsonb NOT NULL,
        PRIMARY KEY (event_id, door)
    );
    GRANT SELECT, DELETE ON gait_site.refused_events TO gait_site_enrolment;

    CREATE OR REPLACE FUNCTION gait_site.door_record_events(event_ids text[], bodies jsonb[])
    RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
        stored integer;
    BEGIN
        IF coalesce(array_length(event_ids, 1), 0) > 1000
           OR coalesce(array_length(bodies, 1), 0) > 1000 THEN
            RAISE EXCEPTION 'a door sends at most 1000 events at once, not %',
                greatest(array_length(event_ids, 1), array_length(bodies, 1))
                USING ERRCODE = '54000';
        END IF;
        IF EXISTS (SELECT 1 FROM unnest(bodies) AS b WHERE octet_length(b::text) > 16384) THEN
            RAISE EXCEPTION 'an event of over 16384 bytes is no door''s' USING ERRCODE = '54000';
        END IF;
        CREATE TEMPORARY TABLE IF NOT EXISTS sent (event_id text, body jsonb, refusal text)
            ON COMMIT DROP;
        TRUNCATE sent;
        INSERT INTO sent
        SELECT e.event_id, e.body,
               CASE
                   WHEN e.body ? 'door' AND e.body->>'door' IS DISTINCT FROM door_name THEN
                       format('it names door %s, not the sending door %s', e.body->>'door', door_name)
                   WHEN e.body->>'kind' = 'granted' AND EXISTS (
                       SELECT 1 FROM people p
                       WHERE p.pseudonym = e.body->>'person' AND NOT allowed_at(p.id, door_name)) THEN
                       format('a grant for someone door %s does not hold', door_name)
               END
        FROM unnest(event_ids, bodies) AS e(event_id, body);
        INSERT INTO refused_events(event_id, door, reason, body)
        SELECT s.event_id, door_name, s.refusal, s.body FROM sent s WHERE s.refusal IS NOT NULL
        ON CONFLICT DO NOTHING;
        INSERT INTO events(event_id, door, at, kind, pseudonym, body)
        SELECT s.event_id, door_name, to_timestamp((s.body->>'at_ms')::bigint / 1000.0),
               coalesce(s.body->>'kind', 'unknown'),
               CASE WHEN known.pseudonym IS NOT NULL THEN known.pseudonym END,
               CASE WHEN known.pseudonym IS NULL THEN s.body - 'person' ELSE s.body END
        FROM sent s
        LEFT JOIN people known ON known.pseudonym = s.body->>'person'
        WHERE s.refusal IS NULL
        ON CONFLICT (event_id) DO NOTHING;
        GET DIAGNOSTICS stored = ROW_COUNT;
        RETURN stored;
    END $f$;
"#,
    r#"
    -- Stations before this schema enrolled the embedding of each 30-frame window alone; doors now
    -- search the walk so far. Such templates are kept (the station lists who must enrol again)
    -- and never sent to a door.
    ALTER TABLE gait_site.templates ADD COLUMN window_only boolean NOT NULL DEFAULT false;
    UPDATE gait_site.templates SET window_only = true;

    CREATE OR REPLACE FUNCTION gait_site.door_templates(pseudonyms text[], model text)
    RETURNS TABLE (pseudonym text, parts integer, channels integer, frames integer, source text,
                   sealed bytea)
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = gait_site, pg_temp AS $f$
    DECLARE
        door_name text := calling_door();
    BEGIN
        RETURN QUERY
        SELECT p.pseudonym, t.parts, t.channels, t.frames, t.source, t.sealed
        FROM people p JOIN templates t ON t.person_id = p.id
        WHERE p.pseudonym = ANY(pseudonyms) AND t.model_id = model AND NOT t.window_only
          AND allowed_at(p.id, door_name)
        ORDER BY p.pseudonym, t.id;
    END $f$;
"#,
];

/// The schema version of the site `client` is connected to (0: none yet).
pub fn schema_version(client: &mut Client) -> Result<i32> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'gait_site' AND tablename = 'schema_version')",
            &[],
        )?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(client
        .query_one("SELECT version FROM gait_site.schema_version", &[])?
        .get(0))
}

/// Refuses a site without a schema or with a newer one than this build knows; returns its version.
pub fn check_schema(client: &mut Client) -> Result<i32> {
    match schema_version(client)? {
        0 => Err(SiteError::NoSchema),
        found if found > SCHEMA_VERSION => Err(SiteError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        }),
        found => Ok(found),
    }
}

/// Creates or migrates the site's schema, each step in one transaction (run by the site owner:
/// it creates the two group roles on first use). Returns the version reached.
pub fn migrate(client: &mut Client) -> Result<i32> {
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS gait_site;
         CREATE TABLE IF NOT EXISTS gait_site.schema_version (
             only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
             version integer NOT NULL
         );
         LOCK TABLE gait_site.schema_version IN EXCLUSIVE MODE;",
    )?;
    let found: i32 = tx
        .query_opt("SELECT version FROM gait_site.schema_version", &[])?
        .map_or(0, |row| row.get(0));
    if found > SCHEMA_VERSION {
        return Err(SiteError::NewerSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (from, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(migration)?;
        tx.execute(
            "INSERT INTO gait_site.schema_version(version) VALUES ($1)
             ON CONFLICT (only_row) DO UPDATE SET version = excluded.version",
            &[&(from as i32 + 1)],
        )?;
        log::info!("site schema migrated to {}", from + 1);
    }
    tx.batch_execute(
        "GRANT USAGE ON SCHEMA gait_site TO gait_site_door, gait_site_enrolment;
         GRANT SELECT ON gait_site.schema_version TO gait_site_door, gait_site_enrolment;",
    )?;
    tx.commit()?;
    Ok(SCHEMA_VERSION)
}
