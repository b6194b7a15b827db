//! A staging schema for copying a whole ledger in (`ice migrate`): the copy is written into a fresh schema of the
//! destination database, invisible to every ice process using the destination, and moved into the destination's
//! schema in one transaction only once it is proven — or dropped. A crash in between leaves a schema named
//! `ice_migrating_*` and nothing at the destination.

use std::time::Duration;

use ice_store::StoreError;
use tokio_postgres::{Client, Config, NoTls};

use crate::connection::{describe, parse_config, pg_error};

/// The objects of a ledger's schema (see `schema`): what [`Staging::promote`] moves.
const TABLES: [&str; 4] = ["events", "chain_head", "schema_migrations", "writer_turn"];
const FUNCTIONS: [&str; 2] = ["ice_refuse_rewrite()", "ice_head_moves_forward()"];

/// A fresh schema in the destination database that a ledger can be filled into.
pub struct Staging {
    config: Config,
    schema: String,
    runtime: tokio::runtime::Runtime,
}

/// `"name"`, with embedded quotes doubled.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl Staging {
    /// Creates `ice_migrating_<pid>_<µs>` in the database `url` names.
    pub fn create(url: &str, connect_timeout: Duration) -> Result<Self, StoreError> {
        let config = parse_config(url, connect_timeout)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start a runtime for the staging schema: {e}")))?;
        let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
        let schema = format!("ice_migrating_{}_{micros}", std::process::id());
        let staging = Self { config, schema, runtime };
        staging.run(&format!("CREATE SCHEMA {}", quote(&staging.schema)), "cannot create the staging schema")?;
        Ok(staging)
    }

    /// The staging schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// `url` with its sessions' `search_path` set to the staging schema, for opening a store that fills it. A URL
    /// that already sets `options` is refused (the two would conflict).
    pub fn url(&self, url: &str) -> Result<String, StoreError> {
        if url.contains("options=") {
            return Err(StoreError::Unavailable(
                "the destination URL sets `options`, which migrating needs for its staging schema; remove it".into(),
            ));
        }
        Ok(if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options=-c%20search_path%3D{}", self.schema)
        } else {
            format!("{url} options='-c search_path={}'", self.schema)
        })
    }

    async fn connect(config: Config) -> Result<Client, StoreError> {
        let target = describe(&config);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to {target}: {}", pg_error(&e))))?;
        tokio::spawn(connection);
        Ok(client)
    }

    fn run(&self, sql: &str, what: &str) -> Result<(), StoreError> {
        let (config, sql) = (self.config.clone(), sql.to_owned());
        self.runtime.block_on(async move {
            let client = Self::connect(config).await?;
            client.batch_execute(&sql).await.map_err(|e| StoreError::Unavailable(format!("{what}: {}", pg_error(&e))))
        })
    }

    /// Moves the staged ledger into the schema the destination URL resolves to (its `current_schema()`), in one
    /// transaction: the destination may hold an *empty* ledger (dropped first), never a written one. Returns
    /// that schema's name.
    pub fn promote(&self) -> Result<String, StoreError> {
        let (config, staging) = (self.config.clone(), self.schema.clone());
        self.runtime.block_on(async move {
            let mut client = Self::connect(config).await?;
            let fail =
                |what: &str, e: tokio_postgres::Error| StoreError::Unavailable(format!("{what}: {}", pg_error(&e)));
            let tx = client.transaction().await.map_err(|e| fail("cannot start moving the copy", e))?;
            // The lock migrations take, so that no ice process creates the destination's tables meanwhile.
            tx.batch_execute("SELECT pg_advisory_xact_lock(hashtext('ice-store-postgres: schema migration'))")
                .await
                .map_err(|e| fail("cannot lock the schema", e))?;
            let dest: Option<String> = tx
                .query_one("SELECT current_schema()", &[])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| fail("cannot read the destination schema", e))?;
            let dest = dest.ok_or_else(|| {
                StoreError::Unavailable("the destination's search_path names no existing schema".into())
            })?;
            let (d, s) = (quote(&dest), quote(&staging));
            let exists: bool = tx
                .query_one("SELECT to_regclass(format('%I.events', $1::text)) IS NOT NULL", &[&dest])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(|e| fail("cannot inspect the destination", e))?;
            if exists {
                let written: bool = tx
                    .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {d}.events)"), &[])
                    .await
                    .and_then(|r| r.try_get(0))
                    .map_err(|e| fail("cannot inspect the destination", e))?;
                if written {
                    return Err(StoreError::Schema(format!(
                        "events were written to schema {dest} while the copy was made; the copy was not moved \
                         there: migrate into an empty ledger"
                    )));
                }
            }
            let mut sql = format!("DROP TABLE IF EXISTS {};\n", TABLES.map(|t| format!("{d}.{t}")).join(", "));
            sql.push_str(&format!("DROP FUNCTION IF EXISTS {};\n", FUNCTIONS.map(|f| format!("{d}.{f}")).join(", ")));
            for t in TABLES {
                sql.push_str(&format!("ALTER TABLE {s}.{t} SET SCHEMA {d};\n"));
            }
            for f in FUNCTIONS {
                sql.push_str(&format!("ALTER FUNCTION {s}.{f} SET SCHEMA {d};\n"));
            }
            sql.push_str(&format!("DROP SCHEMA {s};"));
            tx.batch_execute(&sql).await.map_err(|e| fail("cannot move the copy into place", e))?;
            tx.commit().await.map_err(|e| fail("cannot commit moving the copy", e))?;
            Ok(dest)
        })
    }

    /// Drops the staging schema and everything in it.
    pub fn discard(self) -> Result<(), StoreError> {
        self.run(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quote(&self.schema)), "cannot drop the staging schema")
    }
}
