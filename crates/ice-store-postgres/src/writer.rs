//! Group commit: one writer task per store. Concurrent appenders queue requests; the writer drains the queue
//! into one transaction, locks the chain head row (`SELECT ... FOR UPDATE`, which serializes it against every
//! other process writing the same ledger), seals every request onto the head it read, writes all sealed events
//! with one batched INSERT, moves the head and NOTIFYs listeners in the same statement, commits, and only then
//! answers each caller. A refused request is skipped without disturbing the others in its batch; a database
//! error fails the whole batch.
//!
//! Conditional appends take turns with other instances (see [`ice_store::turn`]): a batch holding one waits while
//! another instance's turn runs, and claims the turn when it conflicts.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;

use deadpool_postgres::Object;
use ice_core::{ChainHead, Event, EventId, Seq, seal_job};
use ice_store::turn::{TURN_PATIENCE, TURN_POLL, Turn, millis};
use ice_store::{AppendRequest, StoreError};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_postgres::types::ToSql;

use crate::connection::{Db, pg_error};
use crate::notify::CHANNEL;
use crate::rows::{self, Columns, sql_seq};

/// One queued append and where to send its answer.
pub(crate) struct Job {
    /// The request.
    pub(crate) request: AppendRequest,
    /// Answer channel; the caller blocks on its receiver.
    pub(crate) reply: Sender<JobResult>,
}

type JobResult = Result<Vec<Event>, StoreError>;

const LOCK_HEAD: &str = "SELECT seq, hash, time FROM chain_head WHERE id = 1 FOR UPDATE";
const FIND_IDS: &str = "SELECT event_id FROM events WHERE event_id = ANY($1)";
/// The first state-changing event after a seq ($2: the kinds that change no state).
const FIRST_CHANGE: &str = "SELECT seq FROM events WHERE seq > $1 AND kind <> ALL($2) ORDER BY seq LIMIT 1";
/// The hash of one committed event (for `AppendRequest::following`).
const HASH_AT: &str = "SELECT hash FROM events WHERE seq = $1";
/// The data-modifying CTE runs to completion whatever the outer statement reads, so events, head and the
/// notification (delivered at COMMIT) go out in one round trip.
const APPEND: &str = "
WITH appended AS (
    INSERT INTO events (seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash)
    SELECT * FROM UNNEST($1::bigint[], $2::bytea[], $3::bytea[], $4::text[], $5::text[], $6::bigint[],
                         $7::bytea[], $8::text[], $9::bytea[], $10::bytea[])
)
UPDATE chain_head SET seq = $11, hash = $12, time = $13 WHERE id = 1
RETURNING pg_notify($14, seq::text)";
/// The recorded turn: its holder and the milliseconds left of it (by the server's clock).
const READ_TURN: &str =
    "SELECT holder, (EXTRACT(EPOCH FROM until_at - clock_timestamp()) * 1000)::bigint FROM writer_turn WHERE id = 1";
/// Records that $1 holds the turn for $2 milliseconds from now.
const HOLD_TURN: &str = "
INSERT INTO writer_turn (id, holder, until_at) VALUES (1, $1, clock_timestamp() + $2::bigint * interval '1 millisecond')
ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, until_at = EXCLUDED.until_at";

/// Runs until every sender is dropped; `me` identifies this writer for turn-taking.
pub(crate) async fn run(db: Db, mut jobs: UnboundedReceiver<Job>, max_batch_events: usize, me: i64) {
    while let Some(first) = jobs.recv().await {
        let mut n = first.request.drafts.len();
        let mut batch = vec![first];
        while n < max_batch_events {
            match jobs.try_recv() {
                Ok(j) => {
                    n += j.request.drafts.len();
                    batch.push(j);
                }
                Err(_) => break,
            }
        }
        let conditional = batch.iter().any(|j| j.request.unchanged_since.is_some());
        let patience = std::time::Instant::now() + TURN_PATIENCE;
        let results = loop {
            let defer = conditional && std::time::Instant::now() < patience;
            if defer {
                wait_for_turn(&db, me, patience).await;
            }
            // `None`: another instance claimed the turn between the look and the head lock.
            if let Some(results) = commit_batch(&db, &batch, me, defer).await {
                break results;
            }
        };
        for (job, result) in batch.into_iter().zip(results) {
            // A caller that went away has dropped its receiver; its events are durable regardless.
            let _ = job.reply.send(result);
        }
    }
    release_turn(&db, me).await;
}

/// Ends this instance's running turn, if any, once its store closes, so that an instance that conflicted and
/// exited does not hold the others off until the turn's catch-up runs out. Best effort: the store shuts its runtime
/// down in the background right after, which may cut this short (the turn then simply runs out).
async fn release_turn(db: &Db, me: i64) {
    let Ok(client) = db.client().await else { return };
    if matches!(read_turn(&client).await.map(|t| Turn::of(t, me)), Ok(Turn::Mine { left_ms }) if left_ms > 0) {
        let _ = client.execute("UPDATE writer_turn SET until_at = clock_timestamp() WHERE holder = $1", &[&me]).await;
    }
}

/// Why a batch failed as a whole.
enum BatchError {
    /// Nothing was written: a statement failed before COMMIT, or the server answered COMMIT with an error.
    Failed(String),
    /// COMMIT was sent but not confirmed: the batch may or may not be durable.
    Unconfirmed(String),
    /// A store-level problem (corrupt head) that every job in the batch reports as is.
    Store(StoreError),
}

/// The recorded turn, read outside any transaction (no lock taken), with the statement prepared once per
/// connection: a waiting writer looks every `TURN_POLL`.
async fn read_turn(client: &Object) -> Result<Option<(i64, i64)>, tokio_postgres::Error> {
    let statement = client.prepare_cached(READ_TURN).await?;
    turn_of_row(client.query_opt(&statement, &[]).await?)
}

/// A `READ_TURN` row: its holder and the milliseconds left of it.
fn turn_of_row(row: Option<tokio_postgres::Row>) -> Result<Option<(i64, i64)>, tokio_postgres::Error> {
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Waits until no other instance's turn runs or `patience` is over. A failure to look ends the wait: the
/// transaction then reports it.
async fn wait_for_turn(db: &Db, me: i64, patience: std::time::Instant) {
    let Ok(client) = db.client().await else { return };
    while std::time::Instant::now() < patience {
        match read_turn(&client).await {
            Ok(turn) if Turn::of(turn, me) == Turn::Theirs => tokio::time::sleep(TURN_POLL).await,
            _ => return,
        }
    }
}

/// One transaction for the batch; `None` (nothing written) when `defer` and another instance's turn runs.
async fn commit_batch(db: &Db, batch: &[Job], me: i64, defer: bool) -> Option<Vec<JobResult>> {
    let fail_all = |e: StoreError| Some(batch.iter().map(|_| Err(e.clone())).collect());
    let mut client = match db.client().await {
        Ok(c) => c,
        Err(e) => return fail_all(e),
    };
    let commit_sent = AtomicBool::new(false);
    let outcome =
        tokio::time::timeout(db.timeout(), seal_and_commit(&mut client, batch, &commit_sent, me, defer)).await;
    match outcome {
        Ok(Ok(results)) => results,
        Ok(Err(BatchError::Failed(e))) => fail_all(db.unavailable("append failed (nothing was written) on", e)),
        Ok(Err(BatchError::Unconfirmed(e))) => fail_all(
            db.unavailable("append outcome unknown (COMMIT was not confirmed; read the ledger before retrying) on", e),
        ),
        Ok(Err(BatchError::Store(e))) => fail_all(e),
        Err(_) => {
            // The transaction may still be running server-side: close the connection (which rolls it back unless
            // COMMIT already happened) rather than return it to the pool.
            drop(Object::take(client));
            let what = if commit_sent.load(Ordering::SeqCst) {
                "append outcome unknown (COMMIT was sent but not confirmed in time; read the ledger before \
                 retrying) on"
            } else {
                "append failed (no answer in time; nothing was written) on"
            };
            fail_all(db.unavailable(what, format!("{:?} elapsed", db.timeout())))
        }
    }
}

async fn seal_and_commit(
    client: &mut Object,
    batch: &[Job],
    commit_sent: &AtomicBool,
    me: i64,
    defer: bool,
) -> Result<Option<Vec<JobResult>>, BatchError> {
    let failed = |e: tokio_postgres::Error| BatchError::Failed(pg_error(&e));
    let tx = client.transaction().await.map_err(failed)?;
    // Prepared (once per connection) before the lock is taken, so no round trip is spent on them while holding it.
    let lock_head = tx.prepare_cached(LOCK_HEAD).await.map_err(failed)?;
    let find_ids = tx.prepare_cached(FIND_IDS).await.map_err(failed)?;
    let append = tx.prepare_cached(APPEND).await.map_err(failed)?;
    let first_change = tx.prepare_cached(FIRST_CHANGE).await.map_err(failed)?;
    let hash_at = tx.prepare_cached(HASH_AT).await.map_err(failed)?;
    let read_turn_stmt = tx.prepare_cached(READ_TURN).await.map_err(failed)?;
    let hold_turn = tx.prepare_cached(HOLD_TURN).await.map_err(failed)?;

    // Every id the seal may ask about: the drafts' own ids and their causes.
    let mut asked: HashSet<&[u8]> = HashSet::new();
    for d in batch.iter().flat_map(|j| &j.request.drafts) {
        asked.insert(d.event_id.as_bytes());
        asked.extend(d.causes.iter().map(|c| c.as_bytes().as_slice()));
    }
    let asked: Vec<&[u8]> = asked.into_iter().collect();
    let ids_param: [&(dyn ToSql + Sync); 1] = [&asked];
    // Pipelined, in this order (biased): the server runs the id lookup only after the head lock is granted, and
    // in READ COMMITTED each statement takes a fresh snapshot, so the lookup sees every event committed by the
    // writer we may have waited for. One round trip instead of two.
    let (head_row, found, turn_row) = tokio::try_join!(biased;
        tx.query_opt(&lock_head, &[]),
        tx.query(&find_ids, &ids_param),
        tx.query_opt(&read_turn_stmt, &[]),
    )
    .map_err(failed)?;
    let turn = Turn::of(turn_of_row(turn_row).map_err(failed)?, me);
    if defer && turn == Turn::Theirs {
        tx.rollback().await.map_err(failed)?;
        return Ok(None);
    }
    let Some(head_row) = head_row else {
        return Err(BatchError::Store(StoreError::Schema(
            "the chain_head row (id = 1) is missing: the schema was altered outside ICE".into(),
        )));
    };
    let mut head = rows::decode_head(&head_row).map_err(BatchError::Store)?;
    let start_seq = head.seq;
    let mut committed: HashSet<EventId> = HashSet::with_capacity(found.len());
    for row in &found {
        let id: &[u8] = row.try_get(0).map_err(failed)?;
        if let Ok(id) = <[u8; 16]>::try_from(id) {
            committed.insert(EventId::from_bytes(id));
        }
    }

    let mut results: Vec<JobResult> = Vec::with_capacity(batch.len());
    let mut in_batch: HashSet<EventId> = HashSet::new();
    // For `unchanged_since`: the first state-changing event after a seq, committed or sealed in this batch.
    let free_kinds = AppendRequest::free_kinds();
    let mut batch_state_seq: Option<Seq> = None;
    let (mut conflicted, mut committed_conditional) = (false, false);
    for job in batch {
        if let Some(since) = job.request.unchanged_since {
            let changed = if since > head.seq {
                Some(head.seq)
            } else {
                match batch_state_seq.filter(|s| *s > since) {
                    Some(s) => Some(s),
                    None => {
                        let row = tx.query_opt(&first_change, &[&sql_seq(since), &free_kinds]).await.map_err(failed)?;
                        match row {
                            Some(r) => Some(Seq(u64::try_from(r.try_get::<_, i64>(0).map_err(failed)?).unwrap_or(0))),
                            None => None,
                        }
                    }
                }
            };
            // A pinned head: the event at `since` must be that very one (see `AppendRequest::following`). Events
            // sealed earlier in this batch are not inserted yet: they are looked up among the results.
            let changed = match (changed, job.request.since_hash) {
                (None, Some(pinned)) => {
                    let found = if since == head.seq {
                        Some(head.hash.0.to_vec())
                    } else if since > start_seq {
                        results
                            .iter()
                            .filter_map(|r| r.as_ref().ok())
                            .flatten()
                            .find(|e| e.seq == since)
                            .map(|e| e.hash.0.to_vec())
                    } else {
                        match tx.query_opt(&hash_at, &[&sql_seq(since)]).await.map_err(failed)? {
                            Some(r) => Some(r.try_get::<_, Vec<u8>>(0).map_err(failed)?),
                            None => None,
                        }
                    };
                    (found.as_deref() != Some(pinned.0.as_slice())).then_some(head.seq)
                }
                (changed, _) => changed,
            };
            if let Some(actual) = changed {
                results.push(Err(StoreError::HeadConflict { expected: since, actual }));
                conflicted = true;
                continue;
            }
        }
        let sealed = seal_job(&head, &job.request.drafts, &mut |id| in_batch.contains(id) || committed.contains(id));
        match sealed {
            Ok(events) => {
                in_batch.extend(events.iter().map(|e| e.event_id));
                if let Some(last) = events.last() {
                    head = ChainHead::after(last);
                }
                if let Some(e) = events.iter().rev().find(|e| e.kind.changes_state()) {
                    batch_state_seq = Some(e.seq);
                }
                committed_conditional |= job.request.unchanged_since.is_some();
                results.push(Ok(events));
            }
            Err((index, rejection)) => results.push(Err(StoreError::Rejected { index, rejection })),
        }
    }

    if head.seq != start_seq {
        let mut cols = Columns::default();
        for e in results.iter().filter_map(|r| r.as_ref().ok()).flatten() {
            cols.push(e);
        }
        let (new_seq, new_hash) = (sql_seq(head.seq), head.hash.0.as_slice());
        let mut params = cols.params();
        params.extend([&new_seq as &(dyn ToSql + Sync), &new_hash, &head.time.0, &CHANNEL]);
        tx.query_one(&append, &params).await.map_err(failed)?;
    }
    if let Some(d) = turn.hold_after(conflicted, committed_conditional) {
        tx.execute(&hold_turn, &[&me, &millis(d)]).await.map_err(failed)?;
    }
    // A batch of refusals only commits an empty transaction; keeping one path keeps the lock release simple.
    commit_sent.store(true, Ordering::SeqCst);
    tx.commit().await.map_err(|e| {
        if e.as_db_error().is_some() {
            // The server answered COMMIT with an error: the transaction was rolled back.
            BatchError::Failed(pg_error(&e))
        } else {
            BatchError::Unconfirmed(pg_error(&e))
        }
    })?;
    Ok(Some(results))
}
