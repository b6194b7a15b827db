//! Versioned schema migrations and the privileges of the application role.
//!
//! Each migration runs once, in order, in one transaction that holds a transaction-scoped advisory lock, so
//! several ice processes opening a fresh database at once migrate it exactly once. The `schema_migrations` table
//! records what ran; a ledger written by a newer binary is refused, not guessed at. A store whose schema is
//! already current runs no DDL at all, which is what lets a non-owner application role open it.

use deadpool_postgres::Object;
use ice_store::StoreError;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use crate::connection::{Db, pg_error};

/// The event table and its indexes (also used by the benchmark's raw-insert baseline, so both write the same
/// rows: run it in a scratch database or schema). `payload` is `TEXT`, not `jsonb`: the canonical JSON bytes are
/// hashed, so they must come back exactly as written.
pub const EVENTS_DDL: &str = "
CREATE TABLE events (
    seq        BIGINT PRIMARY KEY,
    event_id   BYTEA  NOT NULL UNIQUE CHECK (octet_length(event_id) = 16),
    run_id     BYTEA           CHECK (octet_length(run_id) = 16),
    kind       TEXT   NOT NULL,
    origin     TEXT   NOT NULL,
    time       BIGINT NOT NULL,
    causes     BYTEA  NOT NULL,
    payload    TEXT   NOT NULL,
    prev_hash  BYTEA  NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       BYTEA  NOT NULL CHECK (octet_length(hash) = 32)
);
CREATE INDEX events_by_run  ON events (run_id, seq);
CREATE INDEX events_by_kind ON events (kind, seq);
CREATE INDEX events_by_time ON events (time);
";

const V1_REST: &str = r"
-- The recorded head moves in the same transaction as the events; verify compares it with the chain's end,
-- which is how a truncated tail is detected. Its single row always exists (seq 0 = empty ledger), so every
-- append transaction can lock it with SELECT ... FOR UPDATE: that row lock is what serializes writers.
CREATE TABLE chain_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT   NOT NULL CHECK (seq >= 0),
    hash BYTEA    NOT NULL CHECK (octet_length(hash) = 32),
    time BIGINT   NOT NULL
);
INSERT INTO chain_head (id, seq, hash, time) VALUES (1, 0, decode(repeat('00', 32), 'hex'), -9223372036854775808);

CREATE FUNCTION ice_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'ICE-E0304: the ledger is append-only; % on % is refused', TG_OP, TG_TABLE_NAME
        USING HINT = 'correct the record by appending new events; stored events are never changed';
END;
$fn$;

CREATE FUNCTION ice_head_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.id <> OLD.id OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'ICE-E0304: the chain head only moves forward (seq % to %)', OLD.seq, NEW.seq;
    END IF;
    RETURN NEW;
END;
$fn$;

-- Triggers bind everyone, the table owner and superusers included (unless they drop them: that is an
-- administrator's act, outside the application's reach).
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION ice_refuse_rewrite();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION ice_refuse_rewrite();
CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head
    FOR EACH ROW EXECUTE FUNCTION ice_refuse_rewrite();
CREATE TRIGGER chain_head_no_truncate BEFORE TRUNCATE ON chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION ice_refuse_rewrite();
CREATE TRIGGER chain_head_forward BEFORE UPDATE ON chain_head
    FOR EACH ROW EXECUTE FUNCTION ice_head_moves_forward();

-- Privileges are the second wall: nobody but the owner gets anything unless granted (see `grant_sql`), and an
-- application role is never granted UPDATE, DELETE or TRUNCATE on events.
REVOKE ALL ON events, chain_head, schema_migrations FROM PUBLIC;
";

/// Turn-taking between instances (`ice_store::turn`): coordination, not ledger content, so it may be updated.
const V2: &str = "
CREATE TABLE writer_turn (
    id       SMALLINT    PRIMARY KEY CHECK (id = 1),
    holder   BIGINT      NOT NULL,
    until_at TIMESTAMPTZ NOT NULL
);
REVOKE ALL ON writer_turn FROM PUBLIC;
-- A role granted the ledger privileges under version 1 (`grant_sql`) takes turns too, or its appends would fail
-- after an upgrade that only the schema owner ran.
DO $$
DECLARE r TEXT;
BEGIN
    FOR r IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
             WHERE table_schema = current_schema() AND table_name = 'events' AND privilege_type = 'INSERT'
               AND grantee NOT IN (current_user, 'PUBLIC')
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE ON writer_turn TO %I', r);
    END LOOP;
END $$;
";

/// Migrations in order: (version, name, SQL).
fn migrations() -> Vec<(i32, &'static str, String)> {
    vec![
        (1, "event table, chain head, append-only triggers and privileges", format!("{EVENTS_DDL}{V1_REST}")),
        (2, "writer turn", V2.to_owned()),
    ]
}

/// The schema version this binary writes.
pub const LATEST_VERSION: i32 = 2;

/// Serializes concurrent migrations (any constant works; this one spells the purpose).
const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('ice-store-postgres: schema migration'))";

/// The statements that give `role` what an ice process needs and nothing more: read and append events, read
/// and move the head (row lock included), read the schema version, take turns. Run by the schema owner;
/// idempotent.
pub fn grant_sql(role: &str) -> String {
    let r = quote_ident(role);
    format!(
        "REVOKE ALL ON events, chain_head, schema_migrations, writer_turn FROM {r};
         GRANT SELECT, INSERT ON events TO {r};
         GRANT SELECT, UPDATE (seq, hash, time) ON chain_head TO {r};
         GRANT SELECT ON schema_migrations TO {r};
         GRANT SELECT, INSERT, UPDATE ON writer_turn TO {r};"
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn schema_err(what: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Schema(format!("{what}: {}", pg_error(e)))
}

/// A migration step failed on `target`; a privilege failure gets the hint that fixes it.
fn migration_err(target: &str, what: &str, e: &tokio_postgres::Error) -> StoreError {
    let hint = if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        "; the ledger needs migrating and this role may not change the schema: open it once as the schema \
         owner (PostgresOptions::app_role grants an application role its privileges)"
    } else {
        ""
    };
    StoreError::Schema(format!("{what} on {target}: {}{hint}", pg_error(e)))
}

fn too_new(current: i32) -> StoreError {
    StoreError::Schema(format!(
        "the ledger has schema version {current}; this binary knows up to {LATEST_VERSION}: upgrade ice"
    ))
}

/// Brings the schema up to [`LATEST_VERSION`] (or refuses a newer one), then grants `app_role` its privileges.
pub(crate) async fn migrate(db: Db, app_role: Option<String>) -> Result<(), StoreError> {
    let mut client = db.client().await?;
    let work = async {
        let encoding: String = client
            .query_one("SELECT current_setting('server_encoding')", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| schema_err("cannot read the server encoding", &e))?;
        if encoding != "UTF8" {
            return Err(StoreError::Schema(format!(
                "database {} has encoding {encoding}; the ledger needs UTF8 (CREATE DATABASE ... ENCODING 'UTF8')",
                db.target()
            )));
        }
        match applied_version(&**client).await? {
            // Up to date: no DDL, no lock. A non-owner role takes this path.
            Some(LATEST_VERSION) => {}
            Some(newer) if newer > LATEST_VERSION => return Err(too_new(newer)),
            _ => apply_migrations(&mut client, db.target()).await?,
        }
        if let Some(role) = app_role {
            client.batch_execute(&grant_sql(&role)).await.map_err(|e| {
                let what = format!("cannot grant the ledger privileges to role `{role}` (only the schema owner can)");
                migration_err(db.target(), &what, &e)
            })?;
        }
        Ok(())
    };
    match tokio::time::timeout(db.timeout(), work).await {
        Ok(result) => result,
        Err(_) => Err(db.unavailable("schema migration timed out on", format!("after {:?}", db.timeout()))),
    }
}

/// Runs the pending migrations in one transaction, serialized against other processes doing the same.
async fn apply_migrations(client: &mut Object, target: &str) -> Result<(), StoreError> {
    let failed = |what: &str, e: &tokio_postgres::Error| migration_err(target, what, e);
    let tx = client.transaction().await.map_err(|e| failed("cannot start the migration", &e))?;
    tx.batch_execute(MIGRATION_LOCK).await.map_err(|e| failed("cannot lock the schema", &e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER     PRIMARY KEY,
            name       TEXT        NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(|e| failed("cannot create schema_migrations", &e))?;
    // Re-read under the lock: another process may have migrated while we waited for it.
    let current = applied_version(&*tx).await?.unwrap_or(0);
    if current > LATEST_VERSION {
        return Err(too_new(current));
    }
    for (version, name, sql) in migrations() {
        if version > current {
            tx.batch_execute(&sql).await.map_err(|e| failed(&format!("migration {version} ({name}) failed"), &e))?;
            tx.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[&version, &name])
                .await
                .map_err(|e| failed("cannot record the migration", &e))?;
        }
    }
    tx.commit().await.map_err(|e| failed("cannot commit the migration", &e))
}

/// The highest applied migration, or `None` when the ledger has no `schema_migrations` table yet.
async fn applied_version(client: &impl GenericClient) -> Result<Option<i32>, StoreError> {
    let fail = |e: tokio_postgres::Error| schema_err("cannot read the schema version", &e);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(fail)?;
    if !exists {
        return Ok(None);
    }
    let row = client.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await.map_err(fail)?;
    row.try_get::<_, i32>(0).map(Some).map_err(fail)
}
