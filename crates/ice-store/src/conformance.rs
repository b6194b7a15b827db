//! The behavioural conformance suite every store backend must pass, unchanged.
//!
//! A backend's test module implements [`Harness`] (a fresh ledger location per test) and invokes
//! [`conformance_suite!`](crate::conformance_suite), which expands to one `#[test]` per check below.
//!
//! This module is a test suite compiled into the library so every backend crate can call it; like any test it
//! reports failure by panicking, hence the lint exemption.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;

use ice_core::{
    CanonicalJson, ChainHead, Draft, ErrorCode, EventHash, EventId, EventKind, IdSource, Principal, RunId, Seq,
    SequentialIds, TimeSource, Timestamp,
};

use crate::{AppendRequest, EventQuery, Store, StoreError, verify_ledger};

/// What a backend's tests provide: one fresh ledger location per harness.
pub trait Harness {
    /// Opens the store at this harness's location (a second call reopens the same ledger).
    fn open(&self) -> Arc<dyn Store>;

    /// With raw backend access (bypassing ICE), tries to UPDATE one stored event and then DELETE one. Returns
    /// whether each attempt was refused by the backend. The ledger holds at least one event when called.
    fn try_rewrite_history(&self) -> (bool, bool);
}

/// Expands to one `#[test]` per conformance check, each with a fresh harness from `$make`.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        mod conformance {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn empty_ledger() {
                $crate::conformance::empty_ledger(&($make));
            }
            #[test]
            fn append_links_and_persists() {
                $crate::conformance::append_links_and_persists(&($make));
            }
            #[test]
            fn concurrent_appends_are_gapless() {
                $crate::conformance::concurrent_appends_are_gapless(&($make));
            }
            #[test]
            fn reads_filter() {
                $crate::conformance::reads_filter(&($make));
            }
            #[test]
            fn seal_refusals_write_nothing() {
                $crate::conformance::seal_refusals_write_nothing(&($make));
            }
            #[test]
            fn unchanged_since_is_enforced() {
                $crate::conformance::unchanged_since_is_enforced(&($make));
            }
            #[test]
            fn submitted_requests_keep_their_order() {
                $crate::conformance::submitted_requests_keep_their_order(&($make));
            }
            #[test]
            fn a_request_following_a_head_commits_only_on_it() {
                $crate::conformance::a_request_following_a_head_commits_only_on_it(&($make));
            }
            #[test]
            fn a_conflicting_writer_gets_the_next_turn() {
                $crate::conformance::a_conflicting_writer_gets_the_next_turn(&($make));
            }
            #[test]
            fn history_is_append_only() {
                $crate::conformance::history_is_append_only(&($make));
            }
        }
    };
}

const T0: i64 = 1_800_000_000_000_000;

fn draft(ids: &dyn IdSource, kind: EventKind, run: Option<RunId>, time: i64, note: &str) -> Draft {
    Draft {
        event_id: ids.event_id(),
        run_id: run,
        kind,
        origin: Principal::runtime(),
        acted_by: None,
        time: Timestamp(time),
        time_source: TimeSource::Clock,
        causes: Vec::new(),
        payload: CanonicalJson::parse(&format!(r#"{{"note":"{note}"}}"#)).expect("valid test payload"),
    }
}

fn all_events(store: &dyn Store) -> Vec<ice_core::Event> {
    store.read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).expect("read all")
}

/// An empty ledger has no head and no events, and verifies.
pub fn empty_ledger(h: &dyn Harness) {
    let store = h.open();
    assert_eq!(store.head().expect("head"), None);
    assert!(all_events(&*store).is_empty());
    let summary = verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
    assert_eq!(summary.events, 0);
    assert!(!store.describe().is_empty());
}

/// Appends seal gapless, linked, correctly hashed events that survive a reopen and are readable by id.
pub fn append_links_and_persists(h: &dyn Harness) {
    let ids = SequentialIds::new(1);
    let run = ids.run_id();
    let store = h.open();
    let mut acked = Vec::new();
    for i in 0..3 {
        let d = draft(&ids, EventKind::ReasoningRecorded, Some(run), T0 + i, "single");
        acked.extend(store.append(AppendRequest::new(vec![d.clone()])).expect("append"));
        assert_eq!(acked.last().map(|e| e.event_id), Some(d.event_id));
    }
    // Events made on a caller's behalf carry its attribution; the store keeps it byte for byte (the hash covers it).
    let attributed = |mut d: Draft| {
        d.origin = "agent:planner".parse().expect("principal");
        d.acted_by = Some("human:alice;uid:1000;agent,operator".parse().expect("attribution"));
        d
    };
    let batch: Vec<Draft> =
        (0..5).map(|i| attributed(draft(&ids, EventKind::PlanRecorded, Some(run), T0 + 10 + i, "b"))).collect();
    let sealed = store.append(AppendRequest::new(batch.clone())).expect("batch append");
    assert_eq!(sealed.len(), 5);
    acked.extend(sealed);
    let mut prev = EventHash::GENESIS;
    for (i, e) in acked.iter().enumerate() {
        assert_eq!(e.seq, Seq(i as u64 + 1), "gapless seqs");
        assert_eq!(e.prev_hash, prev, "linked");
        assert_eq!(e.hash, e.compute_hash(), "hash matches envelope");
        prev = e.hash;
    }
    drop(store);
    let store = h.open();
    assert_eq!(all_events(&*store), acked, "events survive reopen byte for byte");
    let head = store.head().expect("head").expect("non-empty");
    assert_eq!((head.seq, head.hash), (Seq(8), prev));
    let third = &acked[2];
    assert_eq!(store.get(third.event_id).expect("get").as_ref(), Some(third));
    assert_eq!(store.get(ids.event_id()).expect("get unknown"), None);
    verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
}

/// Many threads appending at once: no gap, no fork, every acknowledged event stored exactly as acknowledged.
pub fn concurrent_appends_are_gapless(h: &dyn Harness) {
    let ids = Arc::new(SequentialIds::new(2));
    let store = h.open();
    let threads = 8;
    let per_thread = 150;
    let acked: Vec<ice_core::Event> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let store = Arc::clone(&store);
                let ids = Arc::clone(&ids);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..per_thread {
                        // every fifth append is a 3-event request, to mix request sizes within one batch
                        let n = if i % 5 == 0 { 3 } else { 1 };
                        let drafts = (0..n)
                            .map(|_| draft(&*ids, EventKind::ObservationRecorded, None, T0 + i, &format!("t{t}")))
                            .map(|mut d| {
                                d.run_id = Some(RunId(uuid_from(t)));
                                d
                            })
                            .collect();
                        mine.extend(store.append(AppendRequest::new(drafts)).expect("concurrent append"));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("thread")).collect()
    });
    let stored = all_events(&*store);
    let expected_total = threads as usize * (per_thread as usize + (per_thread as usize).div_ceil(5) * 2);
    assert_eq!(stored.len(), expected_total);
    let seqs: BTreeSet<u64> = stored.iter().map(|e| e.seq.0).collect();
    assert_eq!(seqs, (1..=expected_total as u64).collect(), "gapless");
    for e in &acked {
        assert_eq!(&stored[(e.seq.0 - 1) as usize], e, "acknowledged event stored as acknowledged");
    }
    let summary = verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("chain verifies");
    assert_eq!(summary.events, expected_total as u64);
}

fn uuid_from(t: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(0x0000_0000_0000_7000 | (t << 16), 0x8000_0000_0000_0000 | t)
}

/// Reads filter by seq range, run, kind, time, and honour the limit.
pub fn reads_filter(h: &dyn Harness) {
    let ids = SequentialIds::new(3);
    let (r1, r2) = (ids.run_id(), ids.run_id());
    let store = h.open();
    let mut drafts = Vec::new();
    for i in 0..10 {
        let run = if i % 2 == 0 { r1 } else { r2 };
        let kind = if i % 3 == 0 { EventKind::PlanRecorded } else { EventKind::ReasoningRecorded };
        drafts.push(draft(&ids, kind, Some(run), T0 + i * 1000, "r"));
    }
    store.append(AppendRequest::new(drafts)).expect("append");
    let q = |q: EventQuery| store.read(&q).expect("read").iter().map(|e| e.seq.0).collect::<Vec<_>>();
    assert_eq!(q(EventQuery { after: Seq(3), until: Some(Seq(6)), ..EventQuery::default() }), vec![4, 5, 6]);
    assert_eq!(q(EventQuery { run: Some(r1), ..EventQuery::default() }), vec![1, 3, 5, 7, 9]);
    assert_eq!(q(EventQuery { kind: Some(EventKind::PlanRecorded), ..EventQuery::default() }), vec![1, 4, 7, 10]);
    assert_eq!(q(EventQuery { since: Some(Timestamp(T0 + 7000)), ..EventQuery::default() }), vec![8, 9, 10]);
    assert_eq!(q(EventQuery { run: Some(r2), after: Seq(4), limit: 2, ..EventQuery::default() }), vec![6, 8]);
    assert_eq!(
        q(EventQuery { run: Some(r1), kind: Some(EventKind::PlanRecorded), ..EventQuery::default() }),
        vec![1, 7]
    );
    assert!(q(EventQuery { run: Some(ids.run_id()), ..EventQuery::default() }).is_empty());
}

/// Sealing refusals (declared time behind the head, unknown cause, duplicate id) write nothing; a cause earlier
/// in the same request is accepted; a clock time behind the head is lifted to the head's time.
pub fn seal_refusals_write_nothing(h: &dyn Harness) {
    let ids = SequentialIds::new(4);
    let run = Some(ids.run_id());
    let store = h.open();
    let first = store
        .append(AppendRequest::new(vec![draft(&ids, EventKind::ReasoningRecorded, run, T0 + 1_000, "a")]))
        .expect("append")
        .remove(0);

    let mut back = draft(&ids, EventKind::ReasoningRecorded, run, T0, "declared-back");
    back.time_source = TimeSource::Declared;
    let ok = draft(&ids, EventKind::ReasoningRecorded, run, T0 + 2_000, "ok");
    let err = store.append(AppendRequest::new(vec![ok, back])).expect_err("declared time behind head");
    assert!(matches!(&err, StoreError::Rejected { index: 1, .. }), "{err:?}");
    assert_eq!(err.code(), ErrorCode::TimeWentBackwards);

    let mut orphan = draft(&ids, EventKind::ReasoningRecorded, run, T0 + 2_000, "orphan");
    orphan.causes = vec![EventId(uuid::Uuid::from_u64_pair(7, 7))];
    assert_eq!(
        store.append(AppendRequest::new(vec![orphan])).expect_err("unknown cause").code(),
        ErrorCode::UnknownCause
    );

    let mut dup = draft(&ids, EventKind::ReasoningRecorded, run, T0 + 2_000, "dup");
    dup.event_id = first.event_id;
    assert_eq!(store.append(AppendRequest::new(vec![dup])).expect_err("dup id").code(), ErrorCode::BadEnvelopeField);

    assert_eq!(all_events(&*store), vec![first.clone()], "refused requests wrote nothing");
    assert_eq!(store.head().expect("head").map(|h| h.seq), Some(Seq(1)));

    let parent = draft(&ids, EventKind::PlanRecorded, run, T0 + 3_000, "parent");
    let mut child = draft(&ids, EventKind::ReasoningRecorded, run, T0 + 3_000, "child");
    child.causes = vec![parent.event_id, first.event_id];
    let sealed = store.append(AppendRequest::new(vec![parent, child])).expect("causes in the same request");
    assert_eq!(sealed[1].causes.len(), 2);

    let late = draft(&ids, EventKind::ReasoningRecorded, run, T0, "late clock");
    let sealed = store.append(AppendRequest::new(vec![late])).expect("clock time lifted");
    assert_eq!(sealed[0].time, Timestamp(T0 + 3_000));
    verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
}

/// Requests submitted through one handle reach the store in that order without waiting for each other: a request
/// that follows the head an earlier one will leave (as a runtime's second flight does) commits right behind it,
/// however many such pairs are queued at once.
pub fn submitted_requests_keep_their_order(h: &dyn Harness) {
    let ids = SequentialIds::new(13);
    let run = Some(ids.run_id());
    let store = h.open();
    let mut head = ChainHead::genesis();
    let mut pending = Vec::new();
    for _ in 0..20 {
        let drafts = vec![draft(&ids, EventKind::RunTransitioned, run, T0, "change")];
        // Where the store will seal it, given that every earlier submission commits first.
        let sealed = ice_core::seal_job(&head, &drafts, &mut |_| false).expect("seals");
        pending.push(store.submit(AppendRequest::following(drafts, head)));
        head = ChainHead::after(sealed.last().expect("one event"));
    }
    for (i, p) in pending.into_iter().enumerate() {
        let events = p.wait().unwrap_or_else(|e| panic!("submission {i} committed in its turn: {e}"));
        assert_eq!(events[0].seq, Seq(i as u64 + 1));
    }
    assert_eq!(store.head().expect("head"), Some(head), "exactly the head foreseen");
    verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
}

/// A request pinned to a head (`AppendRequest::following`) commits only on top of exactly that head: not on a
/// head of the same seq with another hash (what a caller's earlier request would have left, had it committed),
/// whether that seq is the head or lies under notes appended since, nor past the head when the request that would
/// have got it there was refused; on the real head it commits, notes appended since included.
pub fn a_request_following_a_head_commits_only_on_it(h: &dyn Harness) {
    let ids = SequentialIds::new(12);
    let run = Some(ids.run_id());
    let store = h.open();
    let note = || draft(&ids, EventKind::ReasoningRecorded, run, T0, "note");
    let change = || draft(&ids, EventKind::RunTransitioned, run, T0, "change");
    let genesis = ChainHead::genesis();
    store.append(AppendRequest::following(vec![change()], genesis)).expect("on the genesis head");
    let real = store.head().expect("head").expect("non-empty");
    let never = ChainHead { hash: EventHash([7; 32]), ..real };
    let err = store.append(AppendRequest::following(vec![change()], never)).expect_err("a head that never was");
    assert_eq!(err, StoreError::HeadConflict { expected: real.seq, actual: real.seq });
    store.append(AppendRequest::new(vec![note()])).expect("a note");
    let err = store.append(AppendRequest::following(vec![change()], never)).expect_err("under a note too");
    assert_eq!(err.code(), ErrorCode::HeadConflict);
    assert_eq!(all_events(&*store).len(), 2, "the refused appends wrote nothing");
    store.append(AppendRequest::following(vec![change()], real)).expect("on the real head, notes since");
    // Pinned past the head, to what a refused request would have sealed.
    let head = store.head().expect("head").expect("non-empty");
    let mut refused = change();
    refused.causes = vec![ids.event_id()];
    let would_be = ChainHead { seq: Seq(head.seq.0 + 1), hash: EventHash([9; 32]), time: head.time };
    let first = store.append(AppendRequest::following(vec![refused], head));
    assert!(matches!(first, Err(StoreError::Rejected { .. })), "an unknown cause: {first:?}");
    let second = store.append(AppendRequest::following(vec![change()], would_be));
    assert_eq!(second.expect_err("pinned to what was refused").code(), ErrorCode::HeadConflict);
    assert_eq!(all_events(&*store).len(), 3);
    verify_ledger(&*store, &mut |_| {}).expect("store ok").expect("verifies");
}

/// `unchanged_since` refuses an append once a state-changing event follows the seq it was based on, and only
/// then: agents' notes appended meanwhile do not conflict.
pub fn unchanged_since_is_enforced(h: &dyn Harness) {
    let ids = SequentialIds::new(5);
    let run = Some(ids.run_id());
    let store = h.open();
    let note = || draft(&ids, EventKind::ReasoningRecorded, run, T0, "note");
    let change = || draft(&ids, EventKind::RunTransitioned, run, T0, "change");
    store.append(AppendRequest::unchanged_since(vec![change()], Seq(0))).expect("nothing before");
    store.append(AppendRequest::new(vec![note(), note()])).expect("notes");
    // Notes after seq 1 do not conflict with state derived up to seq 1.
    store.append(AppendRequest::unchanged_since(vec![change()], Seq(1))).expect("only notes since seq 1");
    // The state change at seq 4 does.
    let err = store.append(AppendRequest::unchanged_since(vec![change()], Seq(3))).expect_err("seq 4 changed state");
    assert_eq!(err, StoreError::HeadConflict { expected: Seq(3), actual: Seq(4) });
    assert_eq!(err.code(), ErrorCode::HeadConflict);
    assert_eq!(all_events(&*store).len(), 4, "the refused append wrote nothing");
    // Concurrent serialised appenders based on the same seq: exactly one wins, whatever the batching.
    let base = store.head().expect("head").expect("non-empty").seq;
    let wins: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                let d = change();
                s.spawn(move || usize::from(store.append(AppendRequest::unchanged_since(vec![d], base)).is_ok()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    assert_eq!(wins, 1);
}

/// Two writers (two handles on one ledger, as two processes would have): the one whose conditional append
/// conflicted claims the turn, so the other's next conditional append waits for it, even when sent first, and
/// then meets the claimant's change (see [`crate::turn`]). Without turns the waiting append would have committed
/// first and the claimant would have conflicted again.
pub fn a_conflicting_writer_gets_the_next_turn(h: &dyn Harness) {
    let ids = SequentialIds::new(7);
    let run = Some(ids.run_id());
    let change = || draft(&ids, EventKind::RunTransitioned, run, T0, "change");
    let (a, b) = (h.open(), h.open());
    a.append(AppendRequest::unchanged_since(vec![change()], Seq(0))).expect("a first");
    b.append(AppendRequest::unchanged_since(vec![change()], Seq(1))).expect("b on a's change");
    let err = a.append(AppendRequest::unchanged_since(vec![change()], Seq(1))).expect_err("b changed state at 2");
    assert_eq!(err, StoreError::HeadConflict { expected: Seq(1), actual: Seq(2) });
    // a holds the turn now. A note (unconditional, alone in its batch) does not wait for turns.
    b.append(AppendRequest::new(vec![draft(&ids, EventKind::ReasoningRecorded, run, T0, "note")])).expect("note");
    let (b_change, a_change) = (change(), change());
    let b_result = std::thread::scope(|s| {
        let waiting = s.spawn(|| b.append(AppendRequest::unchanged_since(vec![b_change], Seq(3))));
        // Long enough for b's append to commit if nothing held it; far shorter than the claimed turn.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let sealed = a.append(AppendRequest::unchanged_since(vec![a_change], Seq(3))).expect("a's turn");
        assert_eq!(sealed[0].seq, Seq(4), "a's retry commits first");
        waiting.join().expect("thread")
    });
    assert_eq!(b_result, Err(StoreError::HeadConflict { expected: Seq(3), actual: Seq(4) }));
    assert_eq!(all_events(&*a).len(), 4);
    verify_ledger(&*a, &mut |_| {}).expect("store ok").expect("verifies");
}

/// The backend itself refuses UPDATE and DELETE of stored events.
pub fn history_is_append_only(h: &dyn Harness) {
    let ids = SequentialIds::new(6);
    let store = h.open();
    let before = store
        .append(AppendRequest::new(vec![draft(&ids, EventKind::ReasoningRecorded, Some(ids.run_id()), T0, "keep")]))
        .expect("append");
    let (update_refused, delete_refused) = h.try_rewrite_history();
    assert!(update_refused, "UPDATE of an event must be refused by the backend");
    assert!(delete_refused, "DELETE of an event must be refused by the backend");
    assert_eq!(all_events(&*store), before);
}
