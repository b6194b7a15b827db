//! Deterministic simulation of the pipelined commit, in the spirit of FoundationDB's simulator and TigerBeetle's
//! VOPR: a seeded scheduler interleaves proposers deciding on speculative state, flights starting and landing,
//! injected commit failures, a second writer on the same ledger (state changes that conflict, agents' notes that
//! shift seqs) and crashes; after every step it checks the invariants:
//! - nothing acknowledged that did not commit (every acknowledged event is in the store, byte for byte);
//! - the budget is never over-reserved (allowed decisions never exceed the limit);
//! - the pipeline's committed state equals a fresh fold of the committed events whenever nothing is pending;
//! - at the end, the ledger verifies and folds from scratch.
//!
//! Everything is deterministic (manual clock, sequential ids, one thread), so a failing seed replays exactly:
//! `ICE_SIM_SEED=<seed> cargo test -p ice-runtime --test simulation`. `ICE_SIM_SEEDS=<n>` runs more seeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Ledger;
use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::decision::{Decision, Verdict};
use ice_core::intake::RawEvent;
use ice_core::{Cost, Dimension, Event, EventKind, LedgerState, ManualClock, SequentialIds, Timestamp};
use ice_runtime::pipeline::{Pipeline, Settled};
use ice_runtime::{Caller, GrantInput, LocalUser, Presented, ProposalInput, Runtime};
use ice_store::{AppendRequest, EventQuery, Store, StoreError, verify_ledger};
use ice_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

const AGENTS: usize = 5;
const LIMIT: u64 = 7;
const STEPS: usize = 60;

/// xorshift64*: small, seedable, the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// A ledger prepared once (policy, run, grants, a global budget of `LIMIT` calls) and copied for every seed.
struct Template {
    _ledger: Ledger,
    files: Vec<PathBuf>,
    run: String,
}

fn template() -> Template {
    let ledger = Ledger::fast();
    let run = ledger.executing_run();
    for who in (0..AGENTS).map(|i| format!("agent:a{i}")).chain(["agent:foreign".to_owned()]) {
        let g = GrantInput {
            principal: who.parse().unwrap(),
            run: None,
            actions: vec!["fs.write".into()],
            resource: "file:/sandbox/".into(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        ledger.rt.issue_grant(&ledger.alice, &g).unwrap();
    }
    let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total };
    ledger.rt.set_budget(&ledger.alice, key, LIMIT).unwrap();
    let db = ledger.dir().join("ledger.db");
    let files = ["", "-wal", "-shm"].iter().map(|s| PathBuf::from(format!("{}{s}", db.display()))).collect();
    Template { _ledger: ledger, files, run }
}

fn open_runtime(store: Arc<dyn Store>, ids: u64) -> Runtime {
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_900_000_100)));
    let mut rt = Runtime::open(store, clock, Arc::new(SequentialIds::new(ids))).unwrap();
    rt.set_local_users(vec![LocalUser::this_process("human:alice")]);
    rt
}

fn all_events(store: &dyn Store) -> Vec<Event> {
    store.read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).unwrap()
}

fn fold(events: &[Event]) -> LedgerState {
    let mut st = LedgerState::new();
    for e in events {
        st.apply(e).unwrap_or_else(|r| panic!("seq {} does not fold: {r}", e.seq));
    }
    st
}

fn allowed(events: &[Event]) -> u64 {
    events
        .iter()
        .filter(|e| e.kind == EventKind::DecisionMade)
        .filter(|e| serde_json::from_str::<Decision>(e.payload.as_str()).unwrap().verdict == Verdict::Allow)
        .count() as u64
}

struct Sim<'a> {
    seed: u64,
    rng: Rng,
    store: Arc<dyn Store>,
    /// Builds decisions (its own pipeline is not used: the simulated one is).
    rt: Runtime,
    /// A second writer on the same ledger.
    foreign: Runtime,
    pipe: Pipeline,
    agents: Vec<Caller>,
    foreign_agent: Caller,
    waiting: Vec<Option<u64>>,
    /// Flights started and not at the store yet (carriers reach it in any order).
    out: Vec<(u64, AppendRequest)>,
    /// Flights the store answered, not landed yet (carriers take the state lock in any order).
    answered: Vec<(u64, Result<Vec<Event>, StoreError>)>,
    acked: Vec<Event>,
    run: &'a str,
    proposals: u64,
    log: Vec<String>,
    checked: Option<(Option<ice_core::Seq>, ice_core::Seq, bool)>,
    totals: Totals,
}

/// What the seeds exercised (the test asserts each path was taken, so it cannot pass vacuously).
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    flights: u64,
    conflicts: u64,
    retried: u64,
    /// Flights out behind one that did not commit as speculated.
    doomed: u64,
    failures: u64,
    crashes: u64,
    acked: u64,
}

impl Sim<'_> {
    fn input(&mut self) -> ProposalInput {
        self.proposals += 1;
        ProposalInput {
            run: Some(self.run.to_owned()),
            action: "fs.write".into(),
            resource: "file:/sandbox/a.md".into(),
            args: format!(r#"{{"path":"/sandbox/a.md","content":"{}"}}"#, self.proposals),
            purpose: "simulation".into(),
            cost_estimate: Cost::of(Dimension::Calls, 1),
            ..ProposalInput::default()
        }
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=6 => {
                let free: Vec<usize> = (0..AGENTS).filter(|k| self.waiting[*k].is_none()).collect();
                if free.is_empty() {
                    return self.log.push("decide: every agent waits".into());
                }
                let k = free[self.rng.below(free.len())];
                let input = self.input();
                let admitted = self
                    .rt
                    .decision_drafts(self.pipe.spec(), &self.agents[k], &input)
                    .and_then(|drafts| self.pipe.admit(drafts));
                match admitted {
                    Ok(ticket) => {
                        self.waiting[k] = Some(ticket);
                        self.log.push(format!("agent {k} decided, ticket {ticket}"));
                    }
                    Err(r) => self.log.push(format!("agent {k} refused: {r}")),
                }
            }
            7..=9 => {
                let started = self.pipe.start_flight();
                self.log.push(format!("flight started: {:?}", started.as_ref().map(|(id, _)| id)));
                self.out.extend(started);
            }
            10 | 11 => {
                if !self.out.is_empty() {
                    let (id, request) = self.out.remove(self.rng.below(self.out.len()));
                    let result = self.store.append(request);
                    self.log.push(format!(
                        "flight {id} answered: {}",
                        result.as_ref().map_or_else(|e| e.to_string(), |e| format!("{} events", e.len()))
                    ));
                    self.answered.push((id, result));
                }
            }
            12 | 13 => {
                if !self.answered.is_empty() {
                    let (id, result) = self.answered.remove(self.rng.below(self.answered.len()));
                    self.log.push(format!("flight {id} lands"));
                    let store = Arc::clone(&self.store);
                    self.pipe.land(id, result, &mut |after| {
                        store.read(&EventQuery { after, limit: 7, ..EventQuery::default() })
                    });
                }
            }
            14 | 15 => {
                if !self.out.is_empty() {
                    let (id, _) = self.out.remove(self.rng.below(self.out.len()));
                    self.totals.failures += 1;
                    self.log.push(format!("flight {id} failed (injected)"));
                    let failed = Err(StoreError::Unavailable("injected commit failure".into()));
                    self.pipe.land(id, failed, &mut |_| Ok(Vec::new()));
                }
            }
            16..=18 => {
                if self.rng.below(2) == 0 {
                    let input = self.input();
                    let r = self.foreign.propose(&self.foreign_agent, &input);
                    self.log.push(format!("foreign proposal: {:?}", r.map(|o| o.decision.verdict)));
                } else {
                    let raw = RawEvent {
                        kind: "ReasoningRecorded".into(),
                        run_id: Some(self.run.to_owned()),
                        payload: "{}".into(),
                        ..RawEvent::default()
                    };
                    let r = self.foreign.submit(&self.foreign_agent, &raw);
                    self.log.push(format!("foreign note: {}", r.is_ok()));
                }
            }
            _ => {
                // Crash: everything in memory is lost, nothing unacknowledged is owed to anyone.
                let st = fold(&all_events(&*self.store));
                self.add_stats();
                self.pipe = two_flights(st);
                self.totals.crashes += 1;
                self.out.clear();
                self.answered.clear();
                self.waiting = vec![None; AGENTS];
                self.log.push("crash and restart".into());
            }
        }
        self.collect();
        self.check();
    }

    fn collect(&mut self) {
        for k in 0..AGENTS {
            let Some(ticket) = self.waiting[k] else { continue };
            match self.pipe.take(ticket) {
                None => {}
                Some(Settled::Committed(events)) => {
                    for e in &events {
                        match self.store.get(e.event_id).unwrap() {
                            Some(stored) if stored == *e => {}
                            other => self.fail(format!(
                                "acknowledged event {} (seq {}) is not in the store as acknowledged: {other:?}",
                                e.event_id, e.seq
                            )),
                        }
                    }
                    self.acked.extend(events);
                    self.waiting[k] = None;
                }
                Some(other) => {
                    self.log.push(format!("agent {k} ticket {ticket}: {other:?}"));
                    self.waiting[k] = None;
                }
            }
        }
    }

    fn add_stats(&mut self) {
        let s = self.pipe.stats();
        self.totals.flights += s.flights;
        self.totals.conflicts += s.conflicts;
        self.totals.retried += s.retried;
        self.totals.doomed += s.doomed;
    }

    fn fail(&self, what: String) -> ! {
        panic!("seed {} broke an invariant: {what}\nsteps:\n  {}", self.seed, self.log.join("\n  "))
    }

    /// The ledger-wide invariants, re-checked whenever the ledger or the pipeline's committed state moved.
    fn check(&mut self) {
        let seen = (self.store.head().unwrap().map(|h| h.seq), self.pipe.committed().last_seq(), self.pipe.idle());
        if self.checked == Some(seen) {
            return;
        }
        self.checked = Some(seen);
        let events = all_events(&*self.store);
        let allowed = allowed(&events);
        if allowed > LIMIT {
            self.fail(format!("{allowed} proposals allowed against a limit of {LIMIT} calls"));
        }
        if self.pipe.idle() {
            let fresh = fold(&events[..usize::try_from(self.pipe.committed().last_seq().0).unwrap()]);
            if fresh != *self.pipe.committed() {
                self.fail("the committed state differs from a fresh fold of the committed events".into());
            }
        }
    }
}

/// A pipeline that lets two flights out at once (the second pinned to the head the first will leave), so that
/// doomed flights are exercised too.
fn two_flights(st: LedgerState) -> Pipeline {
    let mut pipe = Pipeline::new(st);
    pipe.set_max_flights(2);
    pipe
}

fn copy(files: &[PathBuf], to: &Path) -> PathBuf {
    for f in files {
        if f.exists() {
            std::fs::copy(f, to.join(f.file_name().unwrap())).unwrap();
        }
    }
    to.join(files[0].file_name().unwrap())
}

fn simulate(t: &Template, seed: u64) -> Totals {
    let dir = tempfile::tempdir().unwrap();
    let db = copy(&t.files, dir.path());
    let options = SqliteOptions { synchronous: Synchronous::Off, ..SqliteOptions::default() };
    let store: Arc<dyn Store> = SqliteStore::open(&db, options).unwrap();
    let rt = open_runtime(Arc::clone(&store), 1_000 + seed);
    let foreign = open_runtime(Arc::clone(&store), 2_000_000 + seed);
    let agents = (0..AGENTS)
        .map(|i| rt.authenticate(&Presented::Local { act_as: Some(&format!("agent:a{i}")) }).unwrap())
        .collect();
    let foreign_agent = foreign.authenticate(&Presented::Local { act_as: Some("agent:foreign") }).unwrap();
    let pipe = two_flights(rt.with_state(Clone::clone).unwrap());
    let mut sim = Sim {
        seed,
        rng: Rng::new(seed),
        store,
        rt,
        foreign,
        pipe,
        agents,
        foreign_agent,
        waiting: vec![None; AGENTS],
        out: Vec::new(),
        answered: Vec::new(),
        acked: Vec::new(),
        run: &t.run,
        proposals: 0,
        log: Vec::new(),
        checked: None,
        totals: Totals::default(),
    };
    for _ in 0..STEPS {
        sim.step();
    }
    // Drain: land what is in flight and queued, then everything must fold and verify.
    loop {
        if !sim.out.is_empty() {
            let (id, request) = sim.out.remove(0);
            sim.answered.push((id, sim.store.append(request)));
        } else if !sim.answered.is_empty() {
            let (id, result) = sim.answered.remove(0);
            let store = Arc::clone(&sim.store);
            sim.pipe
                .land(id, result, &mut |after| store.read(&EventQuery { after, limit: 100, ..EventQuery::default() }));
        } else if let Some(started) = sim.pipe.start_flight() {
            sim.out.push(started);
        } else {
            break;
        }
        sim.collect();
        sim.check();
    }
    for e in &sim.acked {
        assert_eq!(sim.store.get(e.event_id).unwrap().as_ref(), Some(e), "seed {seed}: acknowledged event lost");
    }
    verify_ledger(&*sim.store, &mut |_| {}).unwrap().unwrap();
    sim.add_stats();
    sim.totals.acked = sim.acked.len() as u64;
    sim.totals
}

#[test]
fn seeded_interleavings_keep_every_invariant() {
    let t = template();
    if let Some(seed) = std::env::var("ICE_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        simulate(&t, seed);
        return;
    }
    let seeds: u64 = std::env::var("ICE_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    // Seeds are independent ledgers: two workers halve the wall time on two cores.
    let totals: Vec<Totals> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2u64)
            .map(|w| {
                let t = &t;
                s.spawn(move || {
                    (0..seeds).filter(|seed| seed % 2 == w).map(|seed| simulate(t, seed)).collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let sum = totals.iter().fold(Totals::default(), |a, b| Totals {
        flights: a.flights + b.flights,
        conflicts: a.conflicts + b.conflicts,
        retried: a.retried + b.retried,
        doomed: a.doomed + b.doomed,
        failures: a.failures + b.failures,
        crashes: a.crashes + b.crashes,
        acked: a.acked + b.acked,
    });
    eprintln!("{seeds} seeds: {sum:?}");
    assert!(
        sum.flights > 0
            && sum.conflicts > 0
            && sum.retried > 0
            && sum.doomed > 0
            && sum.failures > 0
            && sum.crashes > 0
            && sum.acked > 0,
        "every path was exercised: {sum:?}"
    );
}
