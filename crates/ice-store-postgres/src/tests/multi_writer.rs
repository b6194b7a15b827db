//! Several stores (separate pools and writer tasks, as separate ice processes would have) appending to one ledger
//! at once from several threads each: no gap, no fork, and every acknowledged event stored as acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use ice_core::{Event, EventId, IdSource, Seq, SequentialIds};
use ice_store::{AppendRequest, EventQuery, Store, StoreError, verify_ledger};

use super::{PgHarness, T0, draft};
use ice_testkit::pg::APP_ROLE;

const STORES: u64 = 4;
const THREADS_PER_STORE: u64 = 3;
const APPENDS_PER_THREAD: u64 = 500;

/// What one thread appends: mostly single drafts, every fourth request three at once; each request names the
/// thread's previous event as a cause (so causes committed by this store are looked up), every 25th also the
/// ledger's latest event (most likely written by another store), and every 10th expects the head it just read
/// (a conflict is retried without the expectation).
fn writer_thread(store: &dyn Store, ids: &dyn IdSource, tag: &str) -> (Vec<Event>, u64) {
    let mut acked: Vec<Event> = Vec::new();
    let mut conflicts = 0;
    for i in 0..APPENDS_PER_THREAD {
        let n = if i % 4 == 0 { 3 } else { 1 };
        let mut drafts: Vec<_> = (0..n).map(|_| draft(ids, T0 + i as i64, tag)).collect();
        if let Some(prev) = acked.last() {
            drafts[0].causes.push(prev.event_id);
        }
        let mut expect = None;
        if i % 25 == 0 || i % 10 == 0 {
            let head = store.head().expect("head").map_or(Seq(0), |h| h.seq);
            if i % 25 == 0 && head.0 > 0 {
                let latest = store.read(&EventQuery { after: Seq(head.0 - 1), ..EventQuery::default() }).expect("read");
                drafts[0].causes.extend(latest.iter().map(|e| e.event_id));
            }
            if i % 10 == 0 {
                expect = Some(head);
            }
        }
        let sealed = match expect {
            Some(head) => match store.append(AppendRequest::unchanged_since(drafts.clone(), head)) {
                Err(StoreError::HeadConflict { .. }) => {
                    conflicts += 1;
                    store.append(AppendRequest::new(drafts)).expect("retried append")
                }
                other => other.expect("append expecting the head"),
            },
            None => store.append(AppendRequest::new(drafts)).expect("append"),
        };
        acked.extend(sealed);
    }
    (acked, conflicts)
}

#[test]
fn several_writers_share_one_chain_without_forking() {
    let h = PgHarness::new();
    let stores: Vec<Arc<dyn Store>> = (0..STORES).map(|_| h.open_as(APP_ROLE) as Arc<dyn Store>).collect();
    let started = Instant::now();
    let results: Vec<(Vec<Event>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .flat_map(|(si, store)| {
                (0..THREADS_PER_STORE).map(move |t| {
                    let store = Arc::clone(store);
                    s.spawn(move || {
                        let ids = SequentialIds::new(1000 + si as u64 * 100 + t);
                        writer_thread(&*store, &ids, &format!("s{si}t{t}"))
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("writer thread")).collect()
    });
    let elapsed = started.elapsed();

    let acked: Vec<Event> = results.iter().flat_map(|(events, _)| events.iter().cloned()).collect();
    let conflicts: u64 = results.iter().map(|(_, c)| c).sum();
    let per_thread = APPENDS_PER_THREAD + APPENDS_PER_THREAD.div_ceil(4) * 2;
    let expected = (STORES * THREADS_PER_STORE * per_thread) as usize;
    assert_eq!(acked.len(), expected, "every append was acknowledged");

    // Read back through a store that wrote nothing.
    let reader = h.open_as(APP_ROLE);
    let stored = reader.read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).expect("read all");
    assert_eq!(stored.len(), expected);
    for (i, e) in stored.iter().enumerate() {
        assert_eq!(e.seq, Seq(i as u64 + 1), "gapless");
        if i > 0 {
            assert_eq!(e.prev_hash, stored[i - 1].hash, "no fork at seq {}", e.seq);
        }
    }
    let by_id: HashMap<EventId, &Event> = stored.iter().map(|e| (e.event_id, e)).collect();
    assert_eq!(by_id.len(), expected, "no duplicate ids");
    for e in &acked {
        assert_eq!(by_id.get(&e.event_id), Some(&e), "acknowledged event stored exactly as acknowledged");
    }
    let summary = verify_ledger(&*reader, &mut |_| {}).expect("store ok").expect("chain verifies");
    assert_eq!(summary.events, expected as u64);
    let head = reader.head().expect("head").expect("non-empty");
    assert_eq!((head.seq, head.hash), (Seq(expected as u64), stored[expected - 1].hash));
    eprintln!(
        "{STORES} stores x {THREADS_PER_STORE} threads: {expected} events in {elapsed:?} ({:.0} events/s), \
         {conflicts} unchanged_since conflicts retried",
        expected as f64 / elapsed.as_secs_f64()
    );
}
