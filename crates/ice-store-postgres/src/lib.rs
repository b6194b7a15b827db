//! The shared ledger: PostgreSQL, written by several ice instances (each with its own pool) without forking the
//! chain.
//!
//! ## How several writers keep one chain
//! Each store has one writer task doing group commit (see `writer`): it drains queued appends into one
//! transaction that first takes `SELECT ... FROM chain_head WHERE id = 1 FOR UPDATE`. That **row lock on the
//! single head row** is the ledger's write lock. It was chosen over a transaction-scoped advisory lock because
//! the row has to be read and updated in that transaction anyway (so the lock and the data it guards cannot
//! drift apart), it needs no cluster-wide advisory key that another application could collide with, it is
//! visible in `pg_locks` as a lock on a named table, and it is covered by ordinary privileges (`UPDATE` on
//! `chain_head`). A writer that waited for the lock re-reads the committed head (READ COMMITTED re-checks a
//! locked row), seals onto it with [`ice_core::seal_job`], writes every sealed event with one batched
//! `INSERT ... SELECT FROM UNNEST`, moves the head, and commits: seqs stay gapless and every `prev_hash` links,
//! whichever process wrote the previous event. Callers are answered only after COMMIT, so an acknowledged
//! append is as durable as the server's `synchronous_commit` makes a commit (keep it `on`, with `fsync` on).
//!
//! ## Waiting for appends
//! The append statement also calls `pg_notify` with the new head seq (delivered at COMMIT); each store keeps one
//! extra connection LISTENing, which wakes `wait_for_append` callers. If that connection is lost, waiters poll
//! until it reconnects. (NOTIFY serializes committing transactions cluster-wide, which costs nothing here: the
//! head lock already serializes appends.)
//!
//! ## Blocking interface over an async driver
//! [`Store`] is synchronous. Each store owns a small multi-thread tokio runtime; every call is sent to a task on
//! it and the caller waits on a `std::sync::mpsc` reply, so the store can be used from any thread, including a
//! worker of another tokio runtime, without "cannot start a runtime from within a runtime" panics. (Blocking a
//! foreign runtime's worker is still the caller's cost: async callers should use `spawn_blocking`.)
//!
//! ## Append-only
//! Triggers refuse UPDATE, DELETE and TRUNCATE of events (for everyone, the owner included) and only let the
//! head move forward; privileges refuse them to the application role, which gets `SELECT, INSERT` on events
//! and `SELECT, UPDATE` on the head only (see [`schema::grant_sql`] and [`PostgresOptions::app_role`]).

mod bench;
mod connection;
mod notify;
mod rows;
pub mod schema;
mod staging;
mod writer;

use std::future::Future;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use ice_core::{ChainHead, Event, EventId, Seq};
use ice_store::{AppendRequest, EventQuery, Pending, Store, StoreError};
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::types::ToSql;

use crate::connection::Db;
use crate::notify::Appends;
use crate::rows::{COLUMNS, sql_seq};
pub use crate::staging::Staging;

/// How to open a PostgreSQL ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Most pooled connections this store opens (at least 2; the writer takes one per batch, reads share
    /// them). One more, outside the pool, LISTENs for appends.
    pub pool_size: usize,
    /// Most drafts sealed in one group-commit transaction.
    pub max_batch_events: usize,
    /// How long one connection attempt may take (unless the URL sets `connect_timeout`).
    pub connect_timeout: Duration,
    /// How long one operation (waiting for a pooled connection, then the query or the append transaction,
    /// including waiting for another writer's head lock) may take before it fails as unavailable.
    pub operation_timeout: Duration,
    /// When set, `open` (connected as the schema owner) grants this role what an ice process needs after
    /// migrating: `SELECT, INSERT` on events, `SELECT, UPDATE` on the head, `SELECT` on schema_migrations,
    /// `SELECT, INSERT, UPDATE` on writer_turn (turn-taking, see `ice_store::turn`).
    pub app_role: Option<String>,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 8,
            max_batch_events: 2048,
            connect_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(30),
            app_role: None,
        }
    }
}

/// A ledger in a PostgreSQL database, shareable by several processes.
pub struct PostgresStore {
    db: Db,
    jobs: Option<tokio::sync::mpsc::UnboundedSender<writer::Job>>,
    appends: Arc<Appends>,
    handle: Handle,
    runtime: Option<Runtime>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host:port/dbname`, or libpq `key=value` pairs such as
    /// `host=/run/postgresql dbname=ice`), migrates the schema, and starts the writer and the listener.
    ///
    /// Fails with [`StoreError::Unavailable`] naming the server (never the password) when it cannot be reached
    /// within the connect timeout, and with [`StoreError::Schema`] for a ledger from a newer binary.
    pub fn open(url: &str, options: PostgresOptions) -> Result<Arc<Self>, StoreError> {
        let config = connection::parse_config(url, options.connect_timeout)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ice-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("cannot start the PostgreSQL store's runtime: {e}")))?;
        let db = Db::new(config.clone(), options.pool_size.max(2), options.operation_timeout)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let store = Self {
            db: db.clone(),
            jobs: Some(tx),
            appends: Arc::new(Appends::default()),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        };
        store.call(schema::migrate(db.clone(), options.app_role.clone()))?;
        store.handle.spawn(writer::run(db, rx, options.max_batch_events.max(1), ice_store::turn::new_writer_id()));
        store.handle.spawn(notify::listen(config, Arc::clone(&store.appends)));
        Ok(Arc::new(store))
    }

    /// Runs `work` on the store's runtime and blocks the calling thread (any thread) for its answer.
    fn call<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = reply.send(work.await);
        });
        answer.recv().map_err(|_| {
            StoreError::Unavailable(format!("the store for {} stopped before answering", self.db.target()))
        })?
    }

    /// Whether this store's LISTEN connection is up.
    #[cfg(test)]
    fn listening(&self) -> bool {
        self.appends.listening()
    }

    fn head_seq(&self) -> Result<Seq, StoreError> {
        Ok(self.head()?.map_or(Seq(0), |h| h.seq))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // No append can be in flight (each holds a reference to the store), so the writer is idle. Shutting down
        // in the background never blocks, which keeps dropping the store legal inside an async context.
        self.jobs.take();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store for PostgresStore {
    fn append(&self, request: AppendRequest) -> Result<Vec<Event>, StoreError> {
        self.submit(request).wait()
    }

    fn submit(&self, request: AppendRequest) -> Pending {
        if request.drafts.is_empty() {
            return Pending::ready(Ok(Vec::new()));
        }
        let (reply, answer) = mpsc::channel();
        let stopped = format!("the ledger writer for {} has stopped", self.db.target());
        let Some(jobs) = self.jobs.as_ref() else { return Pending::ready(Err(StoreError::Unavailable(stopped))) };
        if jobs.send(writer::Job { request, reply }).is_err() {
            return Pending::ready(Err(StoreError::Unavailable(stopped)));
        }
        Pending::waiting(move || answer.recv().map_err(|_| StoreError::Unavailable(stopped))?)
    }

    fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        let db = self.db.clone();
        self.call(async move {
            let rows = db.query("SELECT seq, hash, time FROM chain_head WHERE id = 1", &[]).await?;
            match rows.first() {
                None => Err(StoreError::Schema(format!(
                    "the chain_head row (id = 1) of {} is missing: the schema was altered outside ICE",
                    db.target()
                ))),
                Some(row) => {
                    let head = rows::decode_head(row)?;
                    Ok((head.seq.0 > 0).then_some(head))
                }
            }
        })
    }

    fn read(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > $1");
        let mut params: Vec<Box<dyn ToSql + Send + Sync>> = vec![Box::new(sql_seq(q.after))];
        let mut push = |sql: &mut String, clause: &str, p: Box<dyn ToSql + Send + Sync>| {
            params.push(p);
            sql.push_str(&format!(" AND {clause} ${}", params.len()));
        };
        if let Some(until) = q.until {
            push(&mut sql, "seq <=", Box::new(sql_seq(until)));
        }
        if let Some(run) = q.run {
            push(&mut sql, "run_id =", Box::new(run.as_bytes().to_vec()));
        }
        if let Some(kind) = q.kind {
            push(&mut sql, "kind =", Box::new(kind.as_str()));
        }
        if let Some(since) = q.since {
            push(&mut sql, "time >=", Box::new(since.0));
        }
        params.push(Box::new(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" ORDER BY seq LIMIT ${}", params.len()));
        let db = self.db.clone();
        self.call(async move {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
            db.query(&sql, &refs).await?.iter().map(rows::decode).collect()
        })
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        let db = self.db.clone();
        self.call(async move {
            let sql = format!("SELECT {COLUMNS} FROM events WHERE event_id = $1");
            db.query(&sql, &[&id.as_bytes().as_slice()]).await?.first().map(rows::decode).transpose()
        })
    }

    fn describe(&self) -> String {
        self.db.target().to_owned()
    }

    fn wait_for_append(&self, after: Seq, timeout: Duration) -> Result<Seq, StoreError> {
        self.appends.wait(after, timeout, &|| self.head_seq())
    }
}

#[cfg(test)]
mod tests;
