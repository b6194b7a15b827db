//! The conformance suite on a real PostgreSQL server (a throwaway cluster this test binary starts itself), plus
//! what only this backend has: privileges, several writer processes on one chain, LISTEN/NOTIFY, connection
//! failures, and use from inside an async runtime.

mod multi_writer;
mod staging;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ice_core::{
    CanonicalJson, Draft, ErrorCode, EventKind, IdSource, Principal, Seq, SequentialIds, TimeSource, Timestamp,
};
use ice_store::conformance::Harness;
use ice_store::{AppendRequest, EventQuery, Store, StoreError, verify_ledger};
use tokio_postgres::error::SqlState;

use crate::{PostgresOptions, PostgresStore};
use ice_testkit::pg::{APP_ROLE, OWNER, cluster};

const T0: i64 = 1_800_000_000_000_000;

fn options() -> PostgresOptions {
    PostgresOptions { pool_size: 4, ..PostgresOptions::default() }
}

/// One fresh database per harness. The owner migrates it and grants the application role; the stores the suite
/// opens then connect as that non-owner role, as a production deployment would.
struct PgHarness {
    db: String,
}

impl PgHarness {
    fn new() -> Self {
        let db = cluster().create_database();
        let owner = PostgresOptions { app_role: Some(APP_ROLE.into()), ..options() };
        drop(PostgresStore::open(&cluster().url(OWNER, &db), owner).expect("migrate as the owner"));
        Self { db }
    }

    fn open_as(&self, user: &str) -> Arc<PostgresStore> {
        PostgresStore::open(&cluster().url(user, &self.db), options()).expect("open")
    }

    fn exec(&self, user: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
        cluster().exec(user, &self.db, sql)
    }

    /// Whether `sql` is refused both to the application role (privileges) and to the owner (triggers).
    fn refused_to_everyone(&self, sql: &str) -> bool {
        [APP_ROLE, OWNER].iter().all(|user| refused_by_ledger(self.exec(user, sql)))
    }
}

/// True when the statement failed because the ledger refused it; any other failure (a connection problem, a
/// typo) fails the test instead of passing for a refusal.
fn refused_by_ledger(result: Result<(), tokio_postgres::Error>) -> bool {
    let Err(e) = result else { return false };
    let append_only = e.as_db_error().is_some_and(|d| d.message().contains("ICE-E0304"));
    match e.code() {
        Some(c) if *c == SqlState::INSUFFICIENT_PRIVILEGE => true,
        Some(c) if *c == SqlState::RAISE_EXCEPTION && append_only => true,
        _ => panic!("the statement failed for another reason than a refusal: {e:?}"),
    }
}

impl Harness for PgHarness {
    fn open(&self) -> Arc<dyn Store> {
        self.open_as(APP_ROLE)
    }

    fn try_rewrite_history(&self) -> (bool, bool) {
        (
            self.refused_to_everyone("UPDATE events SET payload = '{}' WHERE seq = 1"),
            self.refused_to_everyone("DELETE FROM events WHERE seq = 1"),
        )
    }
}

ice_store::conformance_suite!(PgHarness::new());

fn draft(ids: &dyn IdSource, time: i64, note: &str) -> Draft {
    Draft {
        event_id: ids.event_id(),
        run_id: None,
        kind: EventKind::ObservationRecorded,
        origin: Principal::runtime(),
        acted_by: None,
        time: Timestamp(time),
        time_source: TimeSource::Clock,
        causes: Vec::new(),
        payload: CanonicalJson::parse(&format!(r#"{{"note":"{note}"}}"#)).expect("payload"),
    }
}

#[test]
fn refuses_a_newer_schema() {
    let h = PgHarness::new();
    h.exec(OWNER, "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')").expect("insert");
    for user in [OWNER, APP_ROLE] {
        let err = PostgresStore::open(&cluster().url(user, &h.db), options()).err().expect("refused");
        assert_eq!(err.code(), ErrorCode::SchemaMismatch, "{err}");
        assert!(err.to_string().contains("schema version 99"), "{err}");
    }
}

#[test]
fn processes_opening_a_fresh_database_at_once_migrate_it_once() {
    let db = cluster().create_database();
    let url = cluster().url(OWNER, &db);
    let stores: Vec<_> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..4).map(|_| s.spawn(|| PostgresStore::open(&url, options()))).collect();
        opening.into_iter().map(|h| h.join().expect("thread").expect("open")).collect()
    });
    let ids = SequentialIds::new(15);
    for (i, store) in stores.iter().enumerate() {
        store.append(AppendRequest::new(vec![draft(&ids, T0, &format!("{i}"))])).expect("append");
    }
    assert_eq!(stores[0].head().expect("head").map(|h| h.seq), Some(Seq(4)));
    // Exactly one row per migration: a second run of migration 1 would have failed on its CREATE TABLEs anyway.
    cluster()
        .exec(
            OWNER,
            &db,
            "DO $$ BEGIN IF (SELECT count(*) FROM schema_migrations) <> 2 THEN RAISE 'twice'; END IF; END $$",
        )
        .expect("migrated once");
}

/// An owner who upgrades a version-1 ledger (opening it once, without `app_role`) leaves the application role
/// granted under version 1 able to take turns: without it every conditional append would fail after the upgrade.
#[test]
fn upgrading_to_turns_grants_them_to_the_application_role() {
    let h = PgHarness::new();
    // Back to version 1 as it was deployed: no turn table, the role granted only the version-1 privileges.
    h.exec(OWNER, "DROP TABLE writer_turn; DELETE FROM schema_migrations WHERE version = 2").expect("downgrade");
    drop(PostgresStore::open(&cluster().url(OWNER, &h.db), options()).expect("upgrade as the owner"));
    let store = h.open_as(APP_ROLE);
    let ids = SequentialIds::new(16);
    let change = || Draft { kind: EventKind::RunTransitioned, ..draft(&ids, T0, "change") };
    store.append(AppendRequest::unchanged_since(vec![change()], Seq(0))).expect("first");
    // A second writer's conflict claims the turn: the role must be able to write it.
    let other = h.open_as(APP_ROLE);
    let err = other.append(AppendRequest::unchanged_since(vec![change()], Seq(0))).expect_err("conflict");
    assert_eq!(err.code(), ErrorCode::HeadConflict, "{err}");
    h.exec(APP_ROLE, "SELECT holder FROM writer_turn").expect("the role reads the turn");
    assert!(refused_by_ledger(h.exec(APP_ROLE, "DELETE FROM writer_turn")), "but cannot delete it");
}

#[test]
fn the_application_role_cannot_migrate_a_fresh_database() {
    let db = cluster().create_database();
    let err = PostgresStore::open(&cluster().url(APP_ROLE, &db), options()).err().expect("refused");
    assert_eq!(err.code(), ErrorCode::SchemaMismatch, "{err}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    assert!(err.to_string().contains("open it once as the schema owner"), "the error says how to fix it: {err}");
}

#[test]
fn the_head_and_the_tables_cannot_be_rewound_or_dropped() {
    let h = PgHarness::new();
    let store = h.open_as(APP_ROLE);
    let ids = SequentialIds::new(10);
    store.append(AppendRequest::new((0..3).map(|i| draft(&ids, T0 + i, "k")).collect())).expect("append");
    assert!(h.refused_to_everyone("TRUNCATE events"));
    assert!(h.refused_to_everyone("TRUNCATE chain_head"));
    assert!(h.refused_to_everyone("DELETE FROM chain_head"));
    assert!(h.refused_to_everyone("UPDATE chain_head SET seq = 1"), "the head only moves forward");
    assert!(refused_by_ledger(h.exec(APP_ROLE, "DROP TABLE events")), "only the owner may drop");
    assert!(refused_by_ledger(h.exec(APP_ROLE, "INSERT INTO schema_migrations VALUES (2, 'x')")));
    assert_eq!(store.head().expect("head").map(|h| h.seq), Some(Seq(3)));
    verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
}

#[test]
fn corrupt_rows_are_reported_not_panicked() {
    let h = PgHarness::new();
    let store = h.open_as(APP_ROLE);
    let ids = SequentialIds::new(11);
    let events = store.append(AppendRequest::new((0..3).map(|i| draft(&ids, T0 + i, "c")).collect())).expect("append");
    // Only a superuser can switch triggers off for a session: the kind of tampering verify exists to catch.
    h.exec(OWNER, "SET session_replication_role = replica; UPDATE events SET kind = 'no.such.kind' WHERE seq = 2")
        .expect("tamper");
    let err = store.read(&EventQuery::default()).expect_err("corrupt row");
    assert!(matches!(&err, StoreError::Corrupt { seq: Seq(2), .. }), "{err:?}");
    assert!(matches!(store.get(events[1].event_id), Err(StoreError::Corrupt { seq: Seq(2), .. })));
    let failure = verify_ledger(&*store, &mut |_| {}).expect("store reachable").expect_err("verify finds it");
    assert_eq!(failure.seq, Seq(2));
}

/// Polls `condition` for up to ten seconds.
fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Blocks in `wait_for_append` on `waiter` while `writer` appends one event; returns the seq the wait saw.
fn wake_once(waiter: &PostgresStore, writer: &PostgresStore, ids: &dyn IdSource) -> Seq {
    let after = waiter.head().expect("head").map_or(Seq(0), |h| h.seq);
    std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let started = Instant::now();
            let seq = waiter.wait_for_append(after, Duration::from_secs(20)).expect("wait");
            (seq, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(200));
        writer.append(AppendRequest::new(vec![draft(ids, T0, "wake")])).expect("append");
        let (seq, took) = waiting.join().expect("waiter");
        assert_eq!(seq, after.next());
        assert!(took < Duration::from_secs(5), "woken by the append, not the timeout: {took:?}");
        seq
    })
}

#[test]
fn wait_for_append_is_woken_by_another_writer() {
    let h = PgHarness::new();
    let waiter = h.open_as(APP_ROLE);
    let writer = h.open_as(APP_ROLE);
    let ids = SequentialIds::new(12);
    eventually("the listener is up", || waiter.listening());

    let started = Instant::now();
    assert_eq!(waiter.wait_for_append(Seq(0), Duration::from_millis(200)).expect("wait"), Seq(0));
    assert!(started.elapsed() >= Duration::from_millis(200), "waited for the whole timeout");

    assert_eq!(wake_once(&waiter, &writer, &ids), Seq(1));
    // Already past: answers at once from the recorded head.
    assert_eq!(waiter.wait_for_append(Seq(0), Duration::from_secs(20)).expect("wait"), Seq(1));

    // Kill the listener connections: waiters fall back to polling, and the listener comes back on its own.
    h.exec(
        OWNER,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE '% listener'",
    )
    .expect("terminate the listeners");
    eventually("the listener noticed", || !waiter.listening());
    assert_eq!(wake_once(&waiter, &writer, &ids), Seq(2), "polling while the listener is down");
    eventually("the listener reconnected", || waiter.listening());
    assert_eq!(wake_once(&waiter, &writer, &ids), Seq(3));
}

#[test]
fn the_store_recovers_when_its_connections_are_killed() {
    let h = PgHarness::new();
    let store = h.open_as(APP_ROLE);
    let ids = SequentialIds::new(16);
    store.append(AppendRequest::new(vec![draft(&ids, T0, "before")])).expect("append");
    h.exec(
        OWNER,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .expect("terminate every connection of the store");
    // A pooled connection may not know yet that it is dead: the first use may fail (cleanly, as unavailable,
    // writing nothing); the pool then replaces it.
    let mut acked = None;
    for _ in 0..3 {
        match store.append(AppendRequest::new(vec![draft(&ids, T0, "after")])) {
            Ok(events) => {
                acked = Some(events);
                break;
            }
            Err(e) => assert_eq!(e.code(), ErrorCode::StoreUnavailable, "{e}"),
        }
    }
    assert_eq!(acked.expect("an append succeeds again")[0].seq, Seq(2));
    let summary = verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
    assert_eq!(summary.events, 2);
}

#[test]
fn an_unreachable_server_fails_fast_and_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let url = format!("postgres://ice:s3cret@127.0.0.1:{port}/ledger");
    let started = Instant::now();
    let opts = PostgresOptions { connect_timeout: Duration::from_secs(2), ..options() };
    let err = PostgresStore::open(&url, opts).err().expect("nothing listens there");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
    assert_eq!(err.code(), ErrorCode::StoreUnavailable);
    let msg = err.to_string();
    assert!(msg.contains(&format!("postgres://ice@127.0.0.1:{port}/ledger")), "{msg}");
    assert!(!msg.contains("s3cret"), "{msg}");
}

#[test]
fn describe_omits_the_password_and_unix_sockets_work() {
    let h = PgHarness::new();
    let c = cluster();
    let with_password = format!("postgres://{OWNER}:s3cret@127.0.0.1:{}/{}", c.port, h.db);
    let store = PostgresStore::open(&with_password, options()).expect("open (trust auth ignores the password)");
    assert_eq!(store.describe(), format!("postgres://{OWNER}@127.0.0.1:{}/{}", c.port, h.db));

    let socket = format!("host={} port={} user={APP_ROLE} dbname={}", c.dir.display(), c.port, h.db);
    let over_socket = PostgresStore::open(&socket, options()).expect("open over the unix socket");
    assert_eq!(
        over_socket.describe(),
        format!("postgres://{APP_ROLE}@/{}?host={}&port={}", h.db, c.dir.display(), c.port)
    );
    let ids = SequentialIds::new(13);
    over_socket.append(AppendRequest::new(vec![draft(&ids, T0, "unix")])).expect("append over the socket");
    assert_eq!(store.head().expect("head").map(|h| h.seq), Some(Seq(1)));
}

#[test]
fn usable_and_droppable_inside_an_async_runtime() {
    let h = PgHarness::new();
    let url = cluster().url(APP_ROLE, &h.db);
    let foreign = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let ids = SequentialIds::new(14);
    // Directly on the foreign runtime's thread, not via spawn_blocking: must not panic.
    let seq = foreign.block_on(async {
        let store = PostgresStore::open(&url, options()).expect("open inside a runtime");
        let sealed = store.append(AppendRequest::new(vec![draft(&ids, T0, "async")])).expect("append");
        assert_eq!(store.read(&EventQuery::default()).expect("read"), sealed);
        let head = store.head().expect("head").map(|h| h.seq);
        drop(store);
        head
    });
    assert_eq!(seq, Some(Seq(1)));
}
