//! The embedded ledger: one SQLite file in WAL mode, `synchronous=FULL` by default, group commit through a single
//! writer thread, append-only enforced by triggers, versioned migrations.
//!
//! Several processes may open the same file: each batch re-reads the recorded head inside an IMMEDIATE
//! transaction, so their appends interleave without forking the chain.

mod checkpointer;
mod rows;
pub mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ice_core::{ChainHead, Event, EventId};
use ice_store::{AppendRequest, EventQuery, Pending, Store, StoreError};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::rows::{COLUMNS, sql_seq};

/// SQLite's `synchronous` setting for the ledger connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync the WAL at every commit: an acknowledged event survives power loss. The default.
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, may lose the last commits on power loss.
    Normal,
    /// Never fsync (benchmarks and throwaway ledgers only).
    Off,
}

impl Synchronous {
    /// The value for `PRAGMA synchronous`.
    pub fn pragma(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Normal => "NORMAL",
            Self::Off => "OFF",
        }
    }
}

impl FromStr for Synchronous {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            "off" => Ok(Self::Off),
            other => Err(format!("synchronous must be full, normal or off, not `{other}`")),
        }
    }
}

/// How to open a SQLite ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// Most drafts sealed in one group-commit transaction.
    pub max_batch_events: usize,
    /// How long to wait for another process's write lock.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self { synchronous: Synchronous::Full, max_batch_events: 2048, busy_timeout: Duration::from_secs(30) }
    }
}

const MAX_IDLE_READERS: usize = 4;

/// A ledger in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    jobs: Option<mpsc::Sender<writer::Job>>,
    writer: Option<JoinHandle<()>>,
    /// Runs WAL checkpoints off the commit path (see `checkpointer`); ends once the writer has.
    checkpointer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
    busy_timeout: Duration,
    counters: Arc<writer::Counters>,
}

/// What this store's writer has committed since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Group-commit transactions.
    pub transactions: u64,
    /// Events in them.
    pub events: u64,
}

fn unavailable(what: &str, path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

impl SqliteStore {
    /// Opens (creating if needed) the ledger at `path`, migrating the schema and starting the writer.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Arc<Self>, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = Connection::open(&path).map_err(|e| unavailable("cannot open", &path, e))?;
        conn.busy_timeout(options.busy_timeout).map_err(|e| unavailable("cannot configure", &path, e))?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {}; PRAGMA wal_autocheckpoint = {};",
            options.synchronous.pragma(),
            checkpointer::BACKSTOP_PAGES
        ))
        .map_err(|e| unavailable("cannot configure", &path, e))?;
        schema::migrate(&mut conn)?;
        let wal = Connection::open(&path).map_err(|e| unavailable("cannot open", &path, e))?;
        let (nudge, nudges) = mpsc::sync_channel::<()>(1);
        let checkpointer = std::thread::Builder::new()
            .name("ice-sqlite-checkpointer".into())
            .spawn(move || checkpointer::run(&wal, &nudges))
            .map_err(|e| unavailable("cannot start the checkpointer for", &path, e))?;
        let (tx, rx) = mpsc::channel::<writer::Job>();
        let max_batch = options.max_batch_events.max(1);
        let counters = Arc::new(writer::Counters::default());
        let writer_counters = Arc::clone(&counters);
        let handle = std::thread::Builder::new()
            .name("ice-sqlite-writer".into())
            .spawn(move || {
                writer::run(conn, &rx, max_batch, &writer_counters, &nudge, ice_store::turn::new_writer_id());
            })
            .map_err(|e| unavailable("cannot start the writer for", &path, e))?;
        Ok(Arc::new(Self {
            path,
            jobs: Some(tx),
            writer: Some(handle),
            checkpointer: Some(checkpointer),
            readers: Mutex::new(Vec::new()),
            busy_timeout: options.busy_timeout,
            counters,
        }))
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Transactions and events committed by this store's writer since it was opened.
    pub fn stats(&self) -> WriterStats {
        use std::sync::atomic::Ordering::Relaxed;
        WriterStats {
            transactions: self.counters.transactions.load(Relaxed),
            events: self.counters.events.load(Relaxed),
        }
    }

    fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut v| v.pop());
        let conn = match pooled {
            Some(c) => c,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let c = Connection::open_with_flags(&self.path, flags)
                    .map_err(|e| unavailable("cannot open", &self.path, e))?;
                c.busy_timeout(self.busy_timeout).map_err(|e| unavailable("cannot configure", &self.path, e))?;
                c.execute_batch("PRAGMA query_only = ON;")
                    .map_err(|e| unavailable("cannot configure", &self.path, e))?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut idle) = self.readers.lock()
            && idle.len() < MAX_IDLE_READERS
        {
            idle.push(conn);
        }
        out
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish the jobs it has and exit.
        self.jobs.take();
        if let Some(h) = self.writer.take() {
            let _ = h.join();
        }
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
    }
}

impl Store for SqliteStore {
    fn append(&self, request: AppendRequest) -> Result<Vec<Event>, StoreError> {
        self.submit(request).wait()
    }

    fn submit(&self, request: AppendRequest) -> Pending {
        if request.drafts.is_empty() {
            return Pending::ready(Ok(Vec::new()));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let Some(jobs) = self.jobs.as_ref() else {
            return Pending::ready(Err(StoreError::Unavailable("the store is closed".into())));
        };
        if jobs.send(writer::Job { request, reply }).is_err() {
            return Pending::ready(Err(StoreError::Unavailable("the ledger writer has stopped".into())));
        }
        Pending::waiting(move || {
            answer.recv().map_err(|_| StoreError::Unavailable("the ledger writer stopped before answering".into()))?
        })
    }

    fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.with_reader(|c| {
            let fail = |e| unavailable("cannot read the head of", &self.path, e);
            let mut stmt = c.prepare_cached("SELECT seq, hash, time FROM chain_head WHERE id = 1").map_err(fail)?;
            stmt.query_row([], rows::decode_head).optional().map_err(fail)?.transpose()
        })
    }

    fn read(&self, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM events WHERE seq > ?1");
        let mut params: Vec<Box<dyn rusqlite::ToSql>> = vec![Box::new(sql_seq(q.after))];
        if let Some(until) = q.until {
            params.push(Box::new(sql_seq(until)));
            sql.push_str(&format!(" AND seq <= ?{}", params.len()));
        }
        if let Some(run) = q.run {
            params.push(Box::new(run.as_bytes().to_vec()));
            sql.push_str(&format!(" AND run_id = ?{}", params.len()));
        }
        if let Some(kind) = q.kind {
            params.push(Box::new(kind.as_str()));
            sql.push_str(&format!(" AND kind = ?{}", params.len()));
        }
        if let Some(since) = q.since {
            params.push(Box::new(since.0));
            sql.push_str(&format!(" AND time >= ?{}", params.len()));
        }
        params.push(Box::new(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" ORDER BY seq LIMIT ?{}", params.len()));
        self.with_reader(|c| {
            let fail = |e| unavailable("cannot read", &self.path, e);
            let mut stmt = c.prepare_cached(&sql).map_err(fail)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), rows::decode).map_err(fail)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row.map_err(fail)??);
            }
            Ok(out)
        })
    }

    fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        self.with_reader(|c| {
            let fail = |e| unavailable("cannot read", &self.path, e);
            let mut stmt =
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM events WHERE event_id = ?1")).map_err(fail)?;
            stmt.query_row([id.as_bytes()], rows::decode).optional().map_err(fail)?.transpose()
        })
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ice_store::Store;
    use ice_store::conformance::Harness;

    use super::{SqliteOptions, SqliteStore};

    struct SqliteHarness {
        dir: tempfile::TempDir,
    }

    impl SqliteHarness {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().expect("tempdir") }
        }
        fn path(&self) -> std::path::PathBuf {
            self.dir.path().join("ledger.db")
        }
    }

    impl Harness for SqliteHarness {
        fn open(&self) -> Arc<dyn Store> {
            SqliteStore::open(self.path(), SqliteOptions::default()).expect("open")
        }
        fn try_rewrite_history(&self) -> (bool, bool) {
            let c = rusqlite::Connection::open(self.path()).expect("raw open");
            let update = c.execute("UPDATE events SET payload = '{}' WHERE seq = 1", []);
            let delete = c.execute("DELETE FROM events WHERE seq = 1", []);
            (update.is_err(), delete.is_err())
        }
    }

    ice_store::conformance_suite!(SqliteHarness::new());

    /// A state-changing draft (what conditional appends conflict on).
    fn state_change(ids: &dyn ice_core::IdSource) -> ice_core::Draft {
        ice_core::Draft {
            event_id: ids.event_id(),
            run_id: None,
            kind: ice_core::EventKind::RunTransitioned,
            origin: ice_core::Principal::runtime(),
            acted_by: None,
            time: ice_core::Timestamp(1_800_000_000_000_000),
            time_source: ice_core::TimeSource::Clock,
            causes: Vec::new(),
            payload: ice_core::CanonicalJson::parse("{}").expect("payload"),
        }
    }

    /// The turn a writer claimed ends when its store closes, so a process that conflicted and exited does not
    /// hold the others off (see `writer::release_turn`).
    #[test]
    fn a_closing_writer_gives_its_turn_back() {
        use ice_core::{Seq, SequentialIds};
        use ice_store::AppendRequest;
        let h = SqliteHarness::new();
        let ids = SequentialIds::new(9);
        let change = || state_change(&ids);
        let turn_left_ms = || {
            let c = rusqlite::Connection::open(h.path()).expect("raw open");
            let until: i64 =
                c.query_row("SELECT until_ms FROM writer_turn", [], |r| r.get(0)).expect("a turn is recorded");
            until - crate::writer::now_ms()
        };
        let (a, b) = (h.open(), h.open());
        b.append(AppendRequest::unchanged_since(vec![change()], Seq(0))).expect("b");
        a.append(AppendRequest::unchanged_since(vec![change()], Seq(0))).expect_err("a conflicts and claims");
        assert!(turn_left_ms() > 0, "a holds the turn");
        drop(a);
        assert!(turn_left_ms() <= 0, "a closed and gave it back");
        drop(b);
    }

    /// Anyone who can write the file (or a broken writer) could record a turn that never ends: it costs each
    /// conditional batch at most `TURN_PATIENCE` of waiting, never the append.
    #[test]
    fn a_turn_recorded_for_ever_delays_a_writer_by_its_patience_only() {
        use ice_core::{Seq, SequentialIds};
        use ice_store::AppendRequest;
        use ice_store::turn::TURN_PATIENCE;
        let h = SqliteHarness::new();
        let store = h.open();
        let c = rusqlite::Connection::open(h.path()).expect("raw open");
        let an_hour = crate::writer::now_ms() + 3_600_000;
        c.execute("INSERT INTO writer_turn (id, holder, until_ms) VALUES (1, 42, ?1)", [an_hour]).expect("forge");
        let ids = SequentialIds::new(10);
        let draft = state_change(&ids);
        let started = std::time::Instant::now();
        store.append(AppendRequest::unchanged_since(vec![draft], Seq(0))).expect("appended after waiting");
        let waited = started.elapsed();
        assert!(waited >= TURN_PATIENCE, "it deferred to the recorded turn: {waited:?}");
        assert!(waited < TURN_PATIENCE * 10, "and only for its patience: {waited:?}");
    }

    /// Commits leave copying the WAL into the ledger file to the checkpointer thread (see `checkpointer`): the
    /// file itself grows while the store stays open, although the writer's own limit is far from reached.
    #[test]
    fn the_wal_is_checkpointed_off_the_commit_path() {
        use ice_core::SequentialIds;
        use ice_store::AppendRequest;
        let h = SqliteHarness::new();
        let store = h.open();
        let ids = SequentialIds::new(11);
        for _ in 0..50 {
            store.append(AppendRequest::new((0..100).map(|_| state_change(&ids)).collect())).expect("append");
        }
        let size = || std::fs::metadata(h.path()).map_or(0, |m| m.len());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() < 256 * 1024 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(size() >= 256 * 1024, "5,000 events reached the ledger file: {} bytes", size());
        let pages = 256 * 1024 / 4096;
        assert!(pages < super::checkpointer::BACKSTOP_PAGES, "not by the writer's backstop");
        drop(store);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let h = SqliteHarness::new();
        drop(h.open());
        let c = rusqlite::Connection::open(h.path()).expect("raw open");
        c.execute("INSERT INTO schema_migrations(version, name) VALUES (99, 'future')", []).expect("insert");
        drop(c);
        let err = SqliteStore::open(h.path(), SqliteOptions::default()).err().expect("refused");
        assert_eq!(err.code(), ice_core::ErrorCode::SchemaMismatch);
    }
}
