//! Group commit: one writer thread owns the write connection. Concurrent appenders queue requests; the writer
//! drains the queue into one IMMEDIATE transaction, seals every request onto the head it reads inside that
//! transaction (so other processes writing the same file are serialized by SQLite's lock), commits, and only then
//! answers each caller. A refused request is skipped without disturbing the others in its batch.
//!
//! Conditional appends take turns with other processes writing the same file (see [`ice_store::turn`]): a batch
//! holding one waits while another writer's turn runs, and claims the turn when it conflicts.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use ice_core::{ChainHead, Event, EventId, seal_job};
use ice_store::turn::{TURN_PATIENCE, TURN_POLL, Turn, millis};
use ice_store::{AppendRequest, StoreError};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::rows::{self, encode_causes, sql_seq};

/// One queued append and where to send its answer.
pub struct Job {
    /// The request.
    pub request: AppendRequest,
    /// Answer channel (capacity 1).
    pub reply: SyncSender<Result<Vec<Event>, StoreError>>,
}

/// Counters the writer keeps (read by benchmarks and `describe`-style diagnostics).
#[derive(Debug, Default)]
pub struct Counters {
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Events committed.
    pub events: AtomicU64,
}

/// Runs until every sender is dropped, nudging the checkpointer after each commit; `me` identifies this writer for
/// turn-taking.
pub fn run(
    mut conn: Connection,
    jobs: &Receiver<Job>,
    max_batch_events: usize,
    counters: &Arc<Counters>,
    checkpointer: &SyncSender<()>,
    me: i64,
) {
    while let Ok(first) = jobs.recv() {
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
        let patience = Instant::now() + TURN_PATIENCE;
        let outcome = loop {
            let defer = conditional && Instant::now() < patience;
            if defer {
                wait_for_turn(&conn, me, patience);
            }
            match commit(&mut conn, &batch, me, defer) {
                // Another writer claimed the turn between the look and the write lock.
                Ok(None) => {}
                Ok(Some(results)) => break Ok(results),
                Err(e) => break Err(e),
            }
        };
        let results = match outcome {
            Ok(results) => {
                let committed: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(Vec::len).sum();
                counters.transactions.fetch_add(1, Ordering::Relaxed);
                counters.events.fetch_add(committed as u64, Ordering::Relaxed);
                // Full means a nudge is already waiting.
                let _ = checkpointer.try_send(());
                results
            }
            Err(e) => {
                let err = StoreError::Unavailable(format!("append transaction failed: {e}"));
                batch.iter().map(|_| Err(err.clone())).collect()
            }
        };
        for (job, result) in batch.into_iter().zip(results) {
            // A caller that gave up waiting has dropped its receiver; its events are durable regardless.
            let _ = job.reply.send(result);
        }
    }
    release_turn(&conn, me);
}

/// Ends this writer's running turn, if any, as the store closes: a process that conflicted and then exited (a CLI
/// command whose retry was refused) would otherwise hold other writers off until the turn's catch-up ran out.
/// Best effort; looks first, so that a store that never held the turn takes no write lock on its way out.
fn release_turn(conn: &Connection, me: i64) {
    if matches!(read_turn(conn).map(|t| Turn::of(t, me)), Ok(Turn::Mine { left_ms }) if left_ms > 0) {
        let _ = conn.execute("UPDATE writer_turn SET until_ms = 0 WHERE holder = ?1", [me]);
    }
}

type JobResult = Result<Vec<Event>, StoreError>;

fn first_change_sql() -> String {
    let free: Vec<String> = AppendRequest::free_kinds().iter().map(|k| format!("'{k}'")).collect();
    format!("SELECT seq FROM events WHERE seq > ?1 AND kind NOT IN ({}) ORDER BY seq LIMIT 1", free.join(", "))
}

/// Wall-clock milliseconds since the Unix epoch: what `writer_turn.until_ms` is measured in.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const READ_TURN: &str = "SELECT holder, until_ms FROM writer_turn WHERE id = 1";

/// The recorded turn: its holder and the milliseconds left of it.
fn read_turn(conn: &Connection) -> Result<Option<(i64, i64)>, rusqlite::Error> {
    let now = now_ms();
    conn.prepare_cached(READ_TURN)?
        .query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.saturating_sub(now))))
        .optional()
}

/// Records that `me` holds the turn for `d` from now.
fn hold_turn(tx: &rusqlite::Transaction<'_>, me: i64, d: std::time::Duration) -> Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO writer_turn (id, holder, until_ms) VALUES (1, ?1, ?2)
         ON CONFLICT(id) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms",
    )?
    .execute([me, now_ms().saturating_add(millis(d))])?;
    Ok(())
}

/// Waits, without the write lock (a read in WAL mode blocks no writer), until no other writer's turn runs or
/// `patience` is over. A read that fails ends the wait: the transaction then reports the error.
fn wait_for_turn(conn: &Connection, me: i64, patience: Instant) {
    while Instant::now() < patience {
        match read_turn(conn) {
            Ok(turn) if Turn::of(turn, me) == Turn::Theirs => std::thread::sleep(TURN_POLL),
            _ => return,
        }
    }
}

/// One transaction for the batch; `None` (nothing written) when `defer` and another writer's turn runs.
fn commit(
    conn: &mut Connection,
    batch: &[Job],
    me: i64,
    defer: bool,
) -> Result<Option<Vec<JobResult>>, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut results = Vec::with_capacity(batch.len());
    let turn = Turn::of(read_turn(&tx)?, me);
    if defer && turn == Turn::Theirs {
        return Ok(None);
    }
    let (mut conflicted, mut committed_conditional) = (false, false);
    {
        // Cached statements: this runs once per flight, and preparing is SQLite's parser each time.
        let recorded = tx
            .prepare_cached("SELECT seq, hash, time FROM chain_head WHERE id = 1")?
            .query_row([], rows::decode_head)
            .optional()?;
        let mut head = match recorded {
            None => ChainHead::genesis(),
            Some(Ok(h)) => h,
            Some(Err(e)) => return Ok(Some(batch.iter().map(|_| Err(e.clone())).collect())),
        };
        let start_seq = head.seq;
        let mut exists = tx.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut in_batch: HashSet<EventId> = HashSet::new();
        // For `unchanged_since`: the first state-changing event after a seq, committed or sealed in this batch.
        let mut first_change = tx.prepare_cached(&first_change_sql())?;
        let mut batch_state_seq: Option<ice_core::Seq> = None;
        let mut hash_at = tx.prepare_cached("SELECT hash FROM events WHERE seq = ?1")?;
        for job in batch {
            if let Some(since) = job.request.unchanged_since {
                let changed = if since > head.seq {
                    Some(head.seq)
                } else {
                    match batch_state_seq.filter(|s| *s > since) {
                        Some(s) => Some(s),
                        None => first_change
                            .query_row([sql_seq(since)], |r| r.get::<_, i64>(0))
                            .optional()?
                            .map(|s| ice_core::Seq(u64::try_from(s).unwrap_or(0))),
                    }
                };
                // A pinned head: the event at `since` must be that very one (see `AppendRequest::following`).
                let changed = match (changed, job.request.since_hash) {
                    (None, Some(pinned)) => {
                        let found = if since == head.seq {
                            Some(head.hash.0.to_vec())
                        } else {
                            hash_at.query_row([sql_seq(since)], |r| r.get::<_, Vec<u8>>(0)).optional()?
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
            let mut db_error = None;
            let sealed = seal_job(&head, &job.request.drafts, &mut |id| {
                if in_batch.contains(id) {
                    return true;
                }
                match exists.exists([id.as_bytes()]) {
                    Ok(found) => found,
                    Err(e) => {
                        db_error = Some(e);
                        true
                    }
                }
            });
            if let Some(e) = db_error {
                return Err(e);
            }
            match sealed {
                Ok(events) => {
                    for e in &events {
                        let origin = ice_core::event::origin_text(&e.origin, e.acted_by.as_ref());
                        insert.execute(rusqlite::params![
                            sql_seq(e.seq),
                            e.event_id.as_bytes(),
                            e.run_id.as_ref().map(|r| r.as_bytes()),
                            e.kind.as_str(),
                            origin,
                            e.time.0,
                            encode_causes(&e.causes),
                            e.payload.as_str(),
                            e.prev_hash.0,
                            e.hash.0,
                        ])?;
                        in_batch.insert(e.event_id);
                    }
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
            tx.prepare_cached(
                "INSERT INTO chain_head (id, seq, hash, time) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, time = excluded.time",
            )?
            .execute(rusqlite::params![sql_seq(head.seq), head.hash.0, head.time.0])?;
        }
        if let Some(d) = turn.hold_after(conflicted, committed_conditional) {
            hold_turn(&tx, me, d)?;
        }
    }
    tx.commit()?;
    Ok(Some(results))
}
