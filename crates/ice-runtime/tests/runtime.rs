//! Runtime behaviour over a real SQLite ledger: concurrent writers, injected clock, rejections. The OS user this
//! process runs as is mapped to the operator `human:op`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ice_core::intake::RawEvent;
use ice_core::{ErrorCode, EventKind, LedgerState, ManualClock, RunState, SequentialIds, Timestamp};
use ice_runtime::{Caller, LocalUser, Presented, Runtime, RuntimeError, SystemClock, SystemIds};
use ice_store::{EventQuery, Store, verify_ledger};
use ice_store_sqlite::{SqliteOptions, SqliteStore};

fn open(path: &std::path::Path) -> Runtime {
    let store: Arc<dyn Store> = SqliteStore::open(path, SqliteOptions::default()).unwrap();
    let mut rt = Runtime::open(store, Arc::new(SystemClock), Arc::new(SystemIds)).unwrap();
    rt.set_local_users(vec![LocalUser::this_process("human:op")]);
    rt
}

/// The operator (`act_as: None`) or the operator acting for an agent.
fn caller(rt: &Runtime, act_as: Option<&str>) -> Caller {
    rt.authenticate(&Presented::Local { act_as }).unwrap()
}

/// Two runtimes on one ledger file (as two processes would be) race to advance the same runs. Every transition
/// that was acknowledged is legal, the ledger folds from scratch, and the chain verifies.
#[test]
fn concurrent_writers_never_record_an_illegal_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let a = open(&path);
    let b = open(&path);
    let human = caller(&a, None);
    let runs: Vec<_> = (0..4).map(|_| a.create_run(&human, None).unwrap().id).collect();
    std::thread::scope(|s| {
        for rt in [&a, &b, &a, &b] {
            let runs = &runs;
            let human = caller(rt, None);
            s.spawn(move || {
                for _ in 0..8 {
                    for run in runs {
                        // COMMITTED only through finish; a VALIDATING run is finished, every other advanced.
                        let validating = rt.run(*run).unwrap().is_some_and(|r| r.state == RunState::Validating);
                        let step = if validating {
                            rt.finish_run(&human, *run)
                        } else {
                            rt.advance_run(&human, *run, None, None)
                        };
                        match step {
                            Ok(_) => {}
                            // Losing a race (the run moved on, or ended) is a legitimate refusal.
                            Err(RuntimeError::Rejected { rejection, .. }) => assert!(
                                matches!(rejection.code, ErrorCode::RunTerminated | ErrorCode::IllegalTransition),
                                "{rejection}"
                            ),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let events = a.store().read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).unwrap();
    let mut fold = LedgerState::new();
    for e in &events {
        fold.apply(e).unwrap();
    }
    for run in &runs {
        assert_eq!(fold.run(*run).unwrap().state, RunState::Terminated);
        let transitions =
            events.iter().filter(|e| e.run_id == Some(*run) && e.kind == EventKind::RunTransitioned).count();
        assert_eq!(transitions, 6, "exactly the six lifecycle steps, each once");
    }
    verify_ledger(&**a.store(), &mut |_| {}).unwrap().unwrap();
    b.catch_up().unwrap();
    assert_eq!(a.with_state(Clone::clone).unwrap(), b.with_state(Clone::clone).unwrap(), "both fold the same state");
}

/// Time comes from the injected clock; a clock that runs backwards never makes the ledger's time go backwards.
#[test]
fn injected_clock_stamps_events_and_time_never_regresses() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = SqliteStore::open(dir.path().join("l.db"), SqliteOptions::default()).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_900_000_000)));
    let mut rt = Runtime::open(store, clock.clone(), Arc::new(SequentialIds::new(9))).unwrap();
    rt.set_local_users(vec![LocalUser::this_process("human:op")]);
    let human = caller(&rt, None);
    let run = rt.create_run(&human, Some("clocked".into())).unwrap();
    assert_eq!(run.created_at, Timestamp::from_secs(1_900_000_000));
    clock.advance(-10_000_000);
    let raw = RawEvent {
        kind: "ReasoningRecorded".into(),
        origin: "agent:a".into(),
        run_id: Some(run.id.to_string()),
        payload: "{}".into(),
        ..RawEvent::default()
    };
    let e = rt.submit(&caller(&rt, Some("agent:a")), &raw).unwrap();
    assert_eq!(e.time, Timestamp::from_secs(1_900_000_000), "lifted to the head's time");
}

/// A rejection names the run in its envelope only when that run exists.
#[test]
fn rejections_attach_to_existing_runs_only() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(&dir.path().join("l.db"));
    let human = caller(&rt, None);
    let run = rt.create_run(&human, None).unwrap();
    let Err(RuntimeError::Rejected { record: Some(rec), .. }) =
        rt.advance_run(&human, run.id, Some(RunState::Validating), None)
    else {
        panic!("expected a recorded refusal")
    };
    assert_eq!(rec.run_id, Some(run.id));
    let raw = RawEvent {
        kind: "ReasoningRecorded".into(),
        origin: "agent:a".into(),
        run_id: Some("01900000-0000-7000-8000-000000000009".into()),
        payload: "{}".into(),
        ..RawEvent::default()
    };
    let Err(RuntimeError::Rejected { rejection, record: Some(rec) }) = rt.submit(&caller(&rt, Some("agent:a")), &raw)
    else {
        panic!("refused")
    };
    assert_eq!(rejection.code, ErrorCode::UnknownRun);
    assert_eq!(rec.run_id, None);
    assert_eq!(rt.with_state(LedgerState::rejection_count).unwrap(), 2);
}
