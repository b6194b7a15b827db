//! Versioned schema migrations. Each migration runs once, in order, inside one IMMEDIATE transaction; the
//! `schema_migrations` table records what ran. A ledger written by a newer binary is refused, not guessed at.

use rusqlite::{Connection, TransactionBehavior};

use ice_store::StoreError;

/// The event table and its indexes (also used by the benchmark's raw-insert baseline, so both write the same rows).
pub const EVENTS_DDL: &str = "
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,
    event_id   BLOB    NOT NULL UNIQUE,
    run_id     BLOB,
    kind       TEXT    NOT NULL,
    origin     TEXT    NOT NULL,
    time       INTEGER NOT NULL,
    causes     BLOB    NOT NULL,
    payload    TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);
CREATE INDEX events_by_run  ON events(run_id, seq);
CREATE INDEX events_by_kind ON events(kind, seq);
CREATE INDEX events_by_time ON events(time);
";

const V1_REST: &str = "
-- The recorded head moves in the same transaction as the events; verify compares it with the chain's end,
-- which is how a truncated tail is detected.
CREATE TABLE chain_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash BLOB    NOT NULL,
    time INTEGER NOT NULL
);
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'ICE-E0304: the ledger is append-only; events cannot be updated'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'ICE-E0304: the ledger is append-only; events cannot be deleted'); END;
CREATE TRIGGER chain_head_forward BEFORE UPDATE ON chain_head WHEN NEW.seq <= OLD.seq
BEGIN SELECT RAISE(ABORT, 'ICE-E0304: the chain head only moves forward'); END;
CREATE TRIGGER chain_head_no_delete BEFORE DELETE ON chain_head
BEGIN SELECT RAISE(ABORT, 'ICE-E0304: the chain head cannot be deleted'); END;
";

/// Turn-taking between processes writing the same file (`ice_store::turn`): coordination, not ledger content.
const V2: &str = "
CREATE TABLE writer_turn (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    holder   INTEGER NOT NULL,
    until_ms INTEGER NOT NULL
);
";

/// Migrations in order: (version, name, SQL).
fn migrations() -> Vec<(i64, &'static str, String)> {
    vec![
        (1, "event table, chain head, append-only triggers", format!("{EVENTS_DDL}{V1_REST}")),
        (2, "writer turn", V2.to_owned()),
    ]
}

/// The schema version this binary writes.
pub const LATEST_VERSION: i64 = 2;

fn schema_err(e: rusqlite::Error) -> StoreError {
    StoreError::Schema(format!("migration failed: {e}"))
}

/// Brings the schema up to [`LATEST_VERSION`], or refuses a ledger from a newer binary.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(schema_err)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_at INTEGER NOT NULL DEFAULT (unixepoch())
        );",
    )
    .map_err(schema_err)?;
    let current: i64 = tx
        .query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0))
        .map_err(schema_err)?;
    if current > LATEST_VERSION {
        return Err(StoreError::Schema(format!(
            "the ledger has schema version {current}; this binary knows up to {LATEST_VERSION}"
        )));
    }
    for (version, name, sql) in migrations() {
        if version > current {
            tx.execute_batch(&sql).map_err(schema_err)?;
            tx.execute("INSERT INTO schema_migrations(version, name) VALUES (?1, ?2)", (version, name))
                .map_err(schema_err)?;
        }
    }
    tx.commit().map_err(schema_err)
}
