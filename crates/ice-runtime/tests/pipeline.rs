//! The pipelined commit under real threads on a real SQLite ledger: many proposers against one budget and one
//! single-use approval, and a store that fails commits mid-batch. Whatever the interleaving: never
//! over-reserved, exactly one winner, every acknowledged decision durable, nothing unacknowledged committed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::Ledger;
use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::decision::{Decision, Verdict};
use ice_core::{ChainHead, Cost, Dimension, Event, EventId, EventKind, Role, Roles};
use ice_runtime::{GrantInput, LocalUser, Presented, ProposalInput, Runtime, RuntimeError, SystemClock, SystemIds};
use ice_store::{AppendRequest, EventQuery, Store, StoreError, verify_ledger};

const THREADS: usize = 8;
const EACH: usize = 12;
const LIMIT: u64 = 30;

fn setup(l: &Ledger) -> String {
    let run = l.executing_run();
    for i in 0..THREADS {
        let g = GrantInput {
            principal: format!("agent:p{i}").parse().unwrap(),
            run: None,
            actions: vec!["fs.write".into(), "fs.delete".into()],
            resource: "file:/sandbox/".into(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        l.rt.issue_grant(&l.alice, &g).unwrap();
    }
    let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total };
    l.rt.set_budget(&l.alice, key, LIMIT).unwrap();
    run
}

fn input(run: &str, n: usize) -> ProposalInput {
    ProposalInput {
        run: Some(run.to_owned()),
        action: "fs.write".into(),
        resource: format!("file:/sandbox/f{n}.md"),
        args: format!(r#"{{"path":"/sandbox/f{n}.md","content":"{n}"}}"#),
        cost_estimate: Cost::of(Dimension::Calls, 1),
        ..ProposalInput::default()
    }
}

fn decisions(store: &dyn Store) -> Vec<Decision> {
    store
        .read(&EventQuery { kind: Some(EventKind::DecisionMade), limit: usize::MAX, ..EventQuery::default() })
        .unwrap()
        .iter()
        .map(|e| serde_json::from_str(e.payload.as_str()).unwrap())
        .collect()
}

/// Proposes from `THREADS` threads on `rt`; returns the acknowledged decision events and the failures.
fn storm(rt: &Runtime, run: &str) -> (Vec<Event>, Vec<RuntimeError>) {
    let results: Vec<(Vec<Event>, Vec<RuntimeError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let agent = rt.authenticate(&Presented::Local { act_as: Some(&format!("agent:p{t}")) }).unwrap();
                    let mut acked = Vec::new();
                    let mut failed = Vec::new();
                    for i in 0..EACH {
                        match rt.propose(&agent, &input(run, t * EACH + i)) {
                            Ok(o) => acked.push(o.decision_event),
                            Err(e) => failed.push(e),
                        }
                    }
                    (acked, failed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for (a, f) in results {
        acked.extend(a);
        failed.extend(f);
    }
    (acked, failed)
}

/// With one flight at the store at a time (the default) and with two (the second pinned to the head the first will
/// leave).
#[test]
fn concurrent_proposers_share_commits_and_never_over_reserve() {
    for flights in [1, 2] {
        share_commits_and_never_over_reserve(flights);
    }
}

fn share_commits_and_never_over_reserve(flights: usize) {
    let l = Ledger::new();
    l.rt.set_max_flights(flights);
    let run = setup(&l);
    let before = l.rt.pipeline_stats();
    let (acked, failed) = storm(&l.rt, &run);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(acked.len(), THREADS * EACH, "every proposal got exactly one decision");
    for e in &acked {
        assert_eq!(l.rt.store().get(e.event_id).unwrap().as_ref(), Some(e), "acknowledged means durable");
    }
    let all = decisions(&**l.rt.store());
    let allowed = all.iter().filter(|d| d.verdict == Verdict::Allow).count() as u64;
    assert_eq!(allowed, LIMIT, "exactly the budget's worth allowed, never more");
    assert_eq!(all.len(), THREADS * EACH, "no decision recorded that was not acknowledged");
    let stats = l.rt.pipeline_stats();
    assert!(stats.bundles - before.bundles >= (THREADS * EACH) as u64);
    l.fold_from_scratch();
    verify_ledger(&**l.rt.store(), &mut |_| {}).unwrap().unwrap();
}

/// Checkpoints signed while flights are in the air (every 25 events, 8 proposers) sign the state replay reaches at
/// each checkpoint: replay of a ledger written by the pipelined path reproduces every signed state root.
#[test]
fn replay_reproduces_the_roots_signed_under_concurrent_load() {
    let l = Ledger::new().with_checkpoints(25);
    let run = setup(&l);
    let (acked, failed) = storm(&l.rt, &run);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(acked.len(), THREADS * EACH);
    let report = l.rt.replay(&mut |_, _| {}).unwrap();
    assert!(report.checkpoints >= 3, "{} checkpoints", report.checkpoints);
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert!(report.decision_mismatches.is_empty(), "{:?}", report.decision_mismatches);
    assert_eq!(report.state_root, report.live_root);
    verify_ledger(&**l.rt.store(), &mut |_| {}).unwrap().unwrap();
}

#[test]
fn a_single_use_approval_has_exactly_one_winner() {
    let l = Ledger::new();
    let run = setup(&l);
    let delete = ProposalInput {
        run: Some(run.clone()),
        action: "fs.delete".into(),
        resource: "file:/sandbox/old.md".into(),
        args: r#"{"path":"/sandbox/old.md"}"#.into(),
        ..ProposalInput::default()
    };
    let o = l.rt.propose(&l.agent("agent:p0"), &delete).unwrap();
    assert_eq!(o.decision.verdict, Verdict::RequireApproval);
    let approval: EventId =
        l.rt.with_state(|s| s.effects().approval_for(o.proposal.event_id).map(|a| a.id)).unwrap().unwrap();
    let approvers: Vec<_> =
        (0..THREADS).map(|i| l.human(&format!("human:approver{i}"), Roles::of(&[Role::Approver]))).collect();
    let wins = AtomicU64::new(0);
    std::thread::scope(|s| {
        for a in &approvers {
            let (rt, wins) = (&l.rt, &wins);
            s.spawn(move || {
                if rt.approve(a, approval, None, None).is_ok() {
                    wins.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(wins.load(Ordering::SeqCst), 1, "one approval, one winner");
    assert_eq!(l.events(EventKind::ApprovalGranted).len(), 1);
    assert_eq!(l.events(EventKind::PermitIssued).len(), 1, "one permit for the one approval");
    l.fold_from_scratch();
}

/// A store that fails every third append without writing anything (a commit that did not happen).
struct FlakyStore {
    inner: Arc<dyn Store>,
    calls: AtomicU64,
}

impl Store for FlakyStore {
    fn append(&self, request: AppendRequest) -> Result<Vec<Event>, StoreError> {
        self.submit(request).wait()
    }
    fn submit(&self, request: AppendRequest) -> ice_store::Pending {
        if self.calls.fetch_add(1, Ordering::SeqCst) % 3 == 2 {
            return ice_store::Pending::ready(Err(StoreError::Unavailable("injected commit failure".into())));
        }
        self.inner.submit(request)
    }
    fn head(&self) -> Result<Option<ChainHead>, StoreError> {
        self.inner.head()
    }
    fn read(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError> {
        self.inner.read(query)
    }
    fn get(&self, id: EventId) -> Result<Option<Event>, StoreError> {
        self.inner.get(id)
    }
    fn describe(&self) -> String {
        format!("flaky {}", self.inner.describe())
    }
}

/// With one flight at a time and with two: with two, a failed flight dooms the one behind it.
#[test]
fn failed_commits_acknowledge_nothing_and_lose_nothing_acknowledged() {
    for flights in [1, 2] {
        acknowledge_nothing_that_failed(flights);
    }
}

fn acknowledge_nothing_that_failed(flights: usize) {
    let l = Ledger::new();
    let run = setup(&l);
    let flaky: Arc<dyn Store> = Arc::new(FlakyStore { inner: Arc::clone(l.rt.store()), calls: AtomicU64::new(0) });
    let mut rt = Runtime::open(flaky, Arc::new(SystemClock), Arc::new(SystemIds)).unwrap();
    rt.set_local_users(vec![LocalUser::this_process("human:alice")]);
    rt.set_max_flights(flights);
    let (acked, failed) = storm(&rt, &run);
    assert!(!failed.is_empty(), "the injected failures reached some callers");
    for e in &failed {
        assert!(
            matches!(e, RuntimeError::Store(StoreError::Unavailable(_)) | RuntimeError::Rejected { .. }),
            "only the injected failure (or its effect on a refusal record): {e}"
        );
    }
    for e in &acked {
        assert_eq!(l.rt.store().get(e.event_id).unwrap().as_ref(), Some(e), "acknowledged means durable");
    }
    let all = decisions(&**l.rt.store());
    assert_eq!(all.len(), acked.len(), "every recorded decision was acknowledged, every acknowledged one recorded");
    assert!(all.iter().filter(|d| d.verdict == Verdict::Allow).count() as u64 <= LIMIT);
    l.fold_from_scratch();
    verify_ledger(&**l.rt.store(), &mut |_| {}).unwrap().unwrap();
}

/// A bundle is admitted whole: when a later draft is refused (here a second decision for the same proposal, as a
/// buggy or hostile bundle builder would produce), nothing of the bundle is queued or folded, so nothing of it can
/// reach the ledger and make it unfoldable.
#[test]
fn a_bundle_whose_later_draft_is_refused_is_refused_whole() {
    let l = Ledger::fast();
    let run = setup(&l);
    let state = l.rt.with_state(Clone::clone).unwrap();
    let mut pipe = ice_runtime::pipeline::Pipeline::new(state.clone());
    let mut drafts = l.rt.decision_drafts(pipe.spec(), &l.agent("agent:p1"), &input(&run, 1)).unwrap();
    let mut twice = drafts.iter().find(|d| d.kind == EventKind::DecisionMade).unwrap().clone();
    twice.event_id = l.rt.fresh_event_id();
    drafts.push(twice);
    let refused = pipe.admit(drafts).unwrap_err();
    assert!(refused.message.contains("of the bundle"), "{refused}");
    assert_eq!(*pipe.spec(), state, "speculative state untouched");
    assert!(pipe.start_flight().is_none(), "nothing queued");
}

/// Proposals are decided by whichever thread holds the state lock (flat combining) while other transitions are
/// decided by their own callers, and a second runtime on the same ledger makes flights conflict: every caller of
/// both paths gets its answer (none stranded), and the budget holds across both runtimes.
#[test]
fn combined_and_own_decisions_interleave_across_two_runtimes_without_stranding_a_caller() {
    let l = Ledger::new();
    let run = setup(&l);
    let mut second = Runtime::open(Arc::clone(l.rt.store()), Arc::new(SystemClock), Arc::new(SystemIds)).unwrap();
    second.set_local_users(vec![LocalUser::this_process("human:alice")]);
    // A stranded caller would hang the test: fail it instead.
    let (disarm, armed) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if armed.recv_timeout(std::time::Duration::from_secs(240)) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            eprintln!("a caller was stranded: no answer within 240 s");
            std::process::exit(101);
        }
    });
    let runtimes = [&l.rt, &second];
    let answered = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for t in 0..THREADS {
            let (rt, run) = (runtimes[t % 2], &run);
            handles.push(s.spawn(move || {
                let agent = rt.authenticate(&Presented::Local { act_as: Some(&format!("agent:p{t}")) }).unwrap();
                let mut answered = 0;
                for i in 0..EACH {
                    let outcome = rt.propose(&agent, &input(run, t * EACH + i)).unwrap();
                    // Decided by whichever thread combined it, on behalf of the caller that proposed it.
                    assert_eq!(outcome.proposal.origin.to_string(), format!("agent:p{t}"));
                    assert_eq!(outcome.decision.proposal_id, outcome.proposal.event_id);
                    assert!(outcome.proposal.payload.as_str().contains(&format!("/sandbox/f{}.md", t * EACH + i)));
                    answered += 1;
                }
                answered
            }));
        }
        for rt in runtimes {
            handles.push(s.spawn(move || {
                let alice = rt.authenticate(&Presented::Local { act_as: None }).unwrap();
                let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total };
                (0..10).filter(|_| rt.set_budget(&alice, key.clone(), LIMIT).is_ok()).count()
            }));
        }
        handles.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
    });
    drop(disarm);
    assert_eq!(answered, THREADS * EACH + 20, "every call succeeded");
    let all = decisions(&**l.rt.store());
    assert_eq!(all.len(), THREADS * EACH);
    assert_eq!(all.iter().filter(|d| d.verdict == Verdict::Allow).count() as u64, LIMIT);
    l.fold_from_scratch();
    verify_ledger(&**l.rt.store(), &mut |_| {}).unwrap().unwrap();
}

/// Two runtimes on one ledger file, each with its own store handle (two writers, as two processes have: their
/// conflicts claim turns and each defers to the other's), propose flat out: every call is answered, both make
/// progress, and the ledger folds. The turn protocol itself is pinned by the store conformance check
/// `a_conflicting_writer_gets_the_next_turn`; the starvation it fixes (6 decisions against 25,000 in 5 s with two
/// release-built `ice` processes) does not reproduce in a debug build, with or without turns (measured: shares
/// within 43–57 % either way), so this test guards the runtime against the turns (no error, no stall, no lost
/// decision) rather than proving fairness.
#[test]
fn two_writers_on_one_ledger_both_make_progress() {
    use std::time::{Duration, Instant};
    let l = Ledger::new();
    let run = setup(&l);
    let options = ice_store_sqlite::SqliteOptions::default();
    let store = ice_store_sqlite::SqliteStore::open(l.dir().join("ledger.db"), options).unwrap();
    let mut second = Runtime::open(store, Arc::new(SystemClock), Arc::new(SystemIds)).unwrap();
    second.set_local_users(vec![LocalUser::this_process("human:alice")]);
    let runtimes = [&l.rt, &second];
    let until = Instant::now() + Duration::from_secs(2);
    let counts: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (rt, run) = (runtimes[t % 2], &run);
                s.spawn(move || {
                    let agent = rt.authenticate(&Presented::Local { act_as: Some(&format!("agent:p{t}")) }).unwrap();
                    let mut decided = 0;
                    while Instant::now() < until {
                        rt.propose(&agent, &input(run, t * 1_000_000 + decided)).unwrap();
                        decided += 1;
                    }
                    decided
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let per_runtime = [0, 1].map(|r| counts.iter().skip(r).step_by(2).sum::<usize>());
    let total = per_runtime[0] + per_runtime[1];
    assert!(per_runtime.iter().all(|&n| n * 10 >= total), "one writer starved: {per_runtime:?} decisions");
    assert_eq!(decisions(&**l.rt.store()).len(), total);
    l.fold_from_scratch();
}
