//! Committing: deciding bundles under the state lock, carrying flights to the store, handing each caller its
//! outcome (the sans-I/O core is [`crate::pipeline`]).
//!
//! **Flat combining** (Hendler, Incze, Shavit, Tzafrir, SPAA 2010). Deciding is cheap (tens of µs) next to
//! handing the state lock from one thread to the next on a busy machine (a wake-up and a trip through the
//! scheduler each), so with many concurrent callers the hand-offs, not the decisions, bounded throughput. A
//! decision any thread may make ([`Make::Shared`]: owned, `Send`) is therefore *published* rather than decided
//! by its caller: whoever holds the state lock decides every published one in one hold and registers each
//! caller's mailbox under its ticket, and the callers sleep until their outcome (or a flight to carry) arrives.
//!
//! Who decides published jobs (the invariant: a published job is always decided by some thread that will take
//! the lock after it was published):
//! - a publisher that finds no *combiner* sets the flag and becomes it: it takes the lock and decides batch after
//!   batch until it finds the list empty, and only then clears the flag (both under the list's mutex), so a job
//!   published while the flag is set is taken before the flag is cleared;
//! - the thread landing a flight decides everything published before it lets go of the lock (so a combiner may
//!   stop as soon as a landing waits for the lock: the landing goes first and takes over the rest);
//! - a combiner handed a flight to carry stops and clears the flag even with jobs left: the next publisher
//!   becomes combiner, and its own landing decides what is left otherwise.
//!
//! **Flights.** Whenever no flight runs and bundles are queued, the thread holding the lock starts the flight and
//! hands the request to the caller of the newest queued bundle (its owner is least likely to be the one deciding),
//! which carries it to the store, lands it, decides what was published meanwhile and hands out outcomes. So
//! group commit needs no dedicated thread, and the store is busy while the next batch is being decided.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ice_core::intake;
use ice_core::{Draft, Event, LedgerState, Rejection, RunId, Seq};
use ice_store::{Pending, StoreError};
use serde_json::Value;

use crate::mailbox::{Delivery, FlightTimes, Mailbox};
use crate::pipeline::{Pipeline, Settled};
use crate::runtime::{Runtime, RuntimeError};

/// How long a serialised transition keeps retrying after other writers changed state first. Retries need no
/// back-off: a writer whose flight conflicts is given the turn by the store (see [`ice_store::turn`]). A wall-clock
/// bound rather than a count, so a slow or oversubscribed machine does not turn ordinary contention into failures.
const CONFLICT_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// The most flights one thread carries back to back (its own caller waits meanwhile).
const CARRY_LIMIT: u32 = 4;

/// Builds a bundle from the state to decide on; owned, so that any thread may run it on the caller's behalf.
pub(crate) type SharedMake = Arc<dyn Fn(&Runtime, &LedgerState) -> Result<Vec<Draft>, Rejection> + Send + Sync>;

/// How a caller's bundle gets decided.
enum Make<'a> {
    /// By the caller itself, under the state lock.
    Here(&'a dyn Fn(&LedgerState) -> Result<Vec<Draft>, Rejection>),
    /// By whichever thread holds the state lock, with every other published one.
    Shared(&'a SharedMake),
}

/// A published decision: what to decide, the run its attempt names, and where its caller waits.
struct Job {
    make: SharedMake,
    run: Option<RunId>,
    mailbox: Arc<Mailbox>,
}

#[derive(Default)]
struct Published {
    jobs: Vec<Job>,
    /// Some thread has taken on deciding `jobs` until it finds the list empty.
    combining: bool,
}

/// The runtime's commit machinery besides the pipeline itself.
#[derive(Default)]
pub(crate) struct Commits {
    /// The callers waiting for their ticket's outcome, by ticket; only ever locked under the state lock.
    waiting: Mutex<HashMap<u64, Arc<Mailbox>>>,
    /// Decisions waiting for a thread that holds the state lock.
    published: Mutex<Published>,
    /// Threads that carried a flight and wait for the state lock to land it (at most one).
    landers: AtomicUsize,
    /// Where flights' time goes (diagnostics).
    times: FlightTimes,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Commits {
    /// Time at the store, waiting to land, and from a landing to the next flight, in µs so far.
    pub(crate) fn flight_totals(&self) -> (u64, u64, u64) {
        self.times.totals()
    }
}

/// What a caller's bundle came to: settled by the pipeline, or refused when it was decided (with the run its
/// attempt named, if that run exists).
type Outcome = Result<Settled, (Rejection, Option<RunId>)>;

impl Runtime {
    pub(crate) fn commit(&self, draft: Draft) -> Result<Event, RuntimeError> {
        let summary = intake::draft_summary(&draft);
        let mut events = self.commit_with(&|_: &LedgerState| Ok(vec![draft.clone()]), &|| summary.clone())?;
        events.pop().ok_or_else(|| RuntimeError::Store(StoreError::Unavailable("the append returned no event".into())))
    }

    /// Builds drafts from speculative state, admits the whole bundle against it and commits it through the
    /// pipeline (see the module docs and [`crate::pipeline`]); `attempt` describes the submission for the
    /// refusal record. `make` may run more than once: whenever what it was decided on did not commit.
    pub(crate) fn commit_with(
        &self,
        make: &dyn Fn(&LedgerState) -> Result<Vec<Draft>, Rejection>,
        attempt: &dyn Fn() -> Value,
    ) -> Result<Vec<Event>, RuntimeError> {
        self.commit_or(make, &|rejection, run| self.refuse(rejection, attempt(), run), &|| attempted_run(attempt))
    }

    /// [`Runtime::commit_with`] for a decision any thread may make (see the module docs): the hot path, a
    /// proposal's decision, is decided together with every other published one. `run` is the run the attempt
    /// names.
    pub(crate) fn commit_shared(
        &self,
        make: &SharedMake,
        run: Option<RunId>,
        attempt: &dyn Fn() -> Value,
    ) -> Result<Vec<Event>, RuntimeError> {
        self.commit_by(Make::Shared(make), &|rejection, run| self.refuse(rejection, attempt(), run), &|| run)
    }

    /// One step of a housekeeping sweep (reconciliation, expiries, releases) that any instance may run: like
    /// [`Runtime::commit_with`], but a refusal means another instance did the same step first, so it yields
    /// nothing instead of an error.
    pub(crate) fn sweep_step(
        &self,
        make: &dyn Fn(&LedgerState) -> Result<Vec<Draft>, Rejection>,
        attempt: &dyn Fn() -> Value,
    ) -> Result<Vec<Event>, RuntimeError> {
        match self.commit_with(make, attempt) {
            Err(RuntimeError::Rejected { .. }) => Ok(Vec::new()),
            other => other,
        }
    }

    /// [`Runtime::commit_with`] with the caller choosing how a refusal is recorded (the effect boundary records
    /// `EffectRefused` rather than `TransitionRejected`) and which run it names.
    pub(crate) fn commit_or(
        &self,
        make: &dyn Fn(&LedgerState) -> Result<Vec<Draft>, Rejection>,
        refuse: &dyn Fn(Rejection, Option<RunId>) -> RuntimeError,
        attempted_run: &dyn Fn() -> Option<RunId>,
    ) -> Result<Vec<Event>, RuntimeError> {
        self.commit_by(Make::Here(make), refuse, attempted_run)
    }

    fn commit_by(
        &self,
        make: Make<'_>,
        refuse: &dyn Fn(Rejection, Option<RunId>) -> RuntimeError,
        attempted_run: &dyn Fn() -> Option<RunId>,
    ) -> Result<Vec<Event>, RuntimeError> {
        let started = std::time::Instant::now();
        let mailbox = Arc::new(Mailbox::default());
        let mut rounds = 0u32;
        loop {
            rounds = rounds.saturating_add(1);
            let outcome = match make {
                Make::Here(make) => self.decide_here(make, attempted_run, &mailbox)?,
                Make::Shared(make) => self.decide_shared(make, attempted_run(), &mailbox),
            };
            match outcome {
                Err((rejection, run)) => return Err(refuse(rejection, run)),
                Ok(Settled::Committed(events)) => {
                    self.maybe_checkpoint();
                    return Ok(events);
                }
                Ok(Settled::Refused(rejection)) => {
                    let run = attempted_run().filter(|r| self.with_state_cached(|st| st.run(*r).is_some()));
                    return Err(refuse(rejection, run));
                }
                Ok(Settled::Failed(e)) => return Err(e.into()),
                Ok(Settled::Retry) if started.elapsed() < CONFLICT_RETRY_WINDOW => {}
                Ok(Settled::Retry) => {
                    return Err(RuntimeError::Store(StoreError::Unavailable(format!(
                        "the ledger head kept moving under concurrent writers; gave up after {rounds} tries in {}s",
                        CONFLICT_RETRY_WINDOW.as_secs()
                    ))));
                }
            }
        }
    }

    /// Decides the caller's bundle in its own hold of the state lock, then waits for its outcome.
    fn decide_here(
        &self,
        make: &dyn Fn(&LedgerState) -> Result<Vec<Draft>, Rejection>,
        attempted_run: &dyn Fn() -> Option<RunId>,
        mailbox: &Arc<Mailbox>,
    ) -> Result<Outcome, RuntimeError> {
        let mut pipe = self.lock();
        // Decisions see other writers' events as of the last look: a head check when nothing of ours is pending,
        // else the fold of the flight that is landing (a stale decision conflicts and is redone).
        self.catch_up_locked(&mut pipe)?;
        self.decide_one(&mut pipe, make, attempted_run, mailbox);
        self.deliver(&mut pipe);
        drop(pipe);
        Ok(self.await_outcome(mailbox))
    }

    /// Publishes the caller's decision, decides everything published if no other thread is doing so, then waits
    /// for its outcome.
    fn decide_shared(&self, make: &SharedMake, run: Option<RunId>, mailbox: &Arc<Mailbox>) -> Outcome {
        let combine = {
            let mut published = guard(&self.commits.published);
            published.jobs.push(Job { make: Arc::clone(make), run, mailbox: Arc::clone(mailbox) });
            !std::mem::replace(&mut published.combining, true)
        };
        if combine {
            let mut pipe = self.lock();
            self.drain(&mut pipe, mailbox);
        }
        self.await_outcome(mailbox)
    }

    /// Decides published jobs a batch at a time until none is left, or a landing waits for the lock (checked after
    /// each decision; the landing decides the rest), or this thread (`own` is its mailbox) is handed a flight (see
    /// the module docs).
    fn drain(&self, pipe: &mut Pipeline, own: &Mailbox) {
        loop {
            let jobs = {
                let mut published = guard(&self.commits.published);
                if published.jobs.is_empty() {
                    published.combining = false;
                    return;
                }
                std::mem::take(&mut published.jobs)
            };
            match self.catch_up_locked(pipe) {
                Ok(()) => {
                    let mut jobs = jobs.into_iter();
                    while let Some(job) = jobs.next() {
                        let make = |st: &LedgerState| {
                            // A bug in one caller's decision must not strand the others this thread decides for.
                            catch_unwind(AssertUnwindSafe(|| (job.make)(self, st))).unwrap_or_else(|_| {
                                Err(Rejection::new(
                                    ice_core::ErrorCode::StoreUnavailable,
                                    "deciding this proposal panicked (a bug in ICE); nothing was recorded",
                                ))
                            })
                        };
                        self.decide_one(pipe, &make, &|| job.run, &job.mailbox);
                        if self.commits.landers.load(Ordering::SeqCst) > 0 {
                            // The landing goes first (and decides the rest, kept in publication order).
                            let mut published = guard(&self.commits.published);
                            let later = std::mem::take(&mut published.jobs);
                            published.jobs.extend(jobs.by_ref().chain(later));
                            break;
                        }
                    }
                }
                Err(e) => {
                    let e = match e {
                        RuntimeError::Store(e) => e,
                        RuntimeError::Corrupt { seq, message } => {
                            StoreError::Corrupt { seq: Seq(seq), detail: message }
                        }
                        RuntimeError::Rejected { rejection, .. } => StoreError::Unavailable(rejection.to_string()),
                    };
                    for job in jobs {
                        job.mailbox.put(Delivery::Settled(Settled::Failed(e.clone())));
                    }
                }
            }
            self.deliver(pipe);
            if self.commits.landers.load(Ordering::SeqCst) > 0 {
                return;
            }
            if own.holds_flight() {
                guard(&self.commits.published).combining = false;
                return;
            }
        }
    }

    /// Decides one bundle on speculative state and admits it: the caller's mailbox is registered under its
    /// ticket (a landing hands it the outcome), or handed the refusal.
    fn decide_one(
        &self,
        pipe: &mut Pipeline,
        make: &dyn Fn(&LedgerState) -> Result<Vec<Draft>, Rejection>,
        attempted_run: &dyn Fn() -> Option<RunId>,
        mailbox: &Arc<Mailbox>,
    ) {
        match make(pipe.spec()).and_then(|drafts| pipe.admit(drafts)) {
            Ok(ticket) => {
                guard(&self.commits.waiting).insert(ticket, Arc::clone(mailbox));
            }
            Err(rejection) => {
                let run = attempted_run().filter(|r| pipe.spec().run(*r).is_some());
                mailbox.put(Delivery::Refused(rejection, run));
            }
        }
    }

    /// Waits for the caller's outcome, carrying any flight it is handed on the way.
    fn await_outcome(&self, mailbox: &Mailbox) -> Outcome {
        loop {
            match mailbox.wait() {
                Delivery::Settled(settled) => return Ok(settled),
                Delivery::Refused(rejection, run) => return Err((rejection, run)),
                Delivery::Fly(id, request) => self.fly((id, request), mailbox),
            }
        }
    }

    /// Carries a started flight to the store and lands it, then carries the next one straight away while bundles
    /// are queued (at most [`CARRY_LIMIT`] flights in all): this thread is running, whereas a caller woken to carry
    /// it would first queue for a busy core. When it stops carrying, it decides what was published meanwhile. The
    /// carrier's own outcome is handed out when its first flight lands (by this thread, or by the carrier of a
    /// flight ahead of it: flights land in the order they left).
    fn fly(&self, flight: (u64, Pending), own: &Mailbox) {
        let times = &self.commits.times;
        let (mut id, mut pending) = flight;
        for carried in 1.. {
            let left = times.leaving();
            let result = pending.wait();
            let answered = times.answered(left);
            let mut pipe = self.lock_to_land();
            times.landing(answered);
            // A conflict needs no back-off: the store handed this writer the turn with the conflict (see
            // `ice_store::turn`), so the flight decided on what it caught up with here meets no newer change. (With
            // an exponential back-off instead, two instances on one ledger ended up sleeping through their turns.)
            pipe.land(id, result, &mut self.reader_to_head());
            times.landed(pipe.next_flier().is_some());
            let next = if carried < CARRY_LIMIT { self.start_flight(&mut pipe) } else { None };
            self.deliver(&mut pipe);
            match next {
                Some(next) => {
                    // Whoever publishes next decides what is published while this thread is at the store.
                    guard(&self.commits.published).combining = false;
                    (id, pending) = next;
                }
                None => {
                    self.drain(&mut pipe, own);
                    return;
                }
            }
        }
    }

    /// Starts the next flight and submits its request to the store, under the state lock: flights reach the store
    /// in the order they started, as a flight that follows another's head must (see `pipeline::DEFAULT_FLIGHTS`).
    fn start_flight(&self, pipe: &mut Pipeline) -> Option<(u64, Pending)> {
        let (id, request) = pipe.start_flight()?;
        Some((id, self.store().submit(request)))
    }

    /// Reads committed events after a seq (see [`Pipeline::land`]), up to the ledger's head as of the first read:
    /// catching up after a conflict must not chase another instance that writes faster than this one folds,
    /// holding the state lock all the while (a bundle decided on state that is still stale just conflicts again).
    fn reader_to_head(&self) -> impl FnMut(Seq) -> Result<Vec<Event>, StoreError> + '_ {
        let mut head: Option<Seq> = None;
        move |after: Seq| {
            let until = match head {
                Some(h) => h,
                None => *head.insert(self.store().head()?.map_or(Seq(0), |h| h.seq)),
            };
            if after >= until { Ok(Vec::new()) } else { self.read_range(after, until) }
        }
    }

    /// The state lock, for landing a flight: a combining thread lets go of it at its next batch.
    fn lock_to_land(&self) -> MutexGuard<'_, Pipeline> {
        self.commits.landers.fetch_add(1, Ordering::SeqCst);
        let pipe = self.lock();
        self.commits.landers.fetch_sub(1, Ordering::SeqCst);
        pipe
    }

    /// Hands every waiting caller whose ticket has settled its outcome, and starts the next flight when none is
    /// under way and bundles are queued (handing it to the caller of one of them). Under the state lock, so that
    /// no outcome is missed: a caller's mailbox is registered in the same hold in which its bundle was admitted.
    fn deliver(&self, pipe: &mut Pipeline) {
        let mut waiting = guard(&self.commits.waiting);
        let settled: Vec<u64> = pipe.settled_tickets().collect();
        // A wake chain (see `Mailbox`): this thread wakes one caller, each woken caller the next.
        let mut chain: Option<Arc<Mailbox>> = None;
        for t in settled {
            if let (Some(outcome), Some(mailbox)) = (pipe.take(t), waiting.remove(&t)) {
                chain = match mailbox.fill(Delivery::Settled(outcome), chain.take()) {
                    Ok(()) => Some(mailbox),
                    Err(then) => then,
                };
            }
        }
        if let Some(first) = chain {
            first.wake();
        }
        if let Some(mailbox) = pipe.next_flier().and_then(|t| waiting.get(&t))
            && let Some((id, pending)) = self.start_flight(pipe)
        {
            mailbox.put(Delivery::Fly(id, pending));
        }
    }

    /// Records a refusal as `TransitionRejected` and returns the error to hand back to the caller.
    pub(crate) fn refuse(&self, rejection: Rejection, attempt: Value, run: Option<RunId>) -> RuntimeError {
        let draft = intake::rejection_draft(&rejection, attempt, run, self.clock(), self.ids());
        self.record_refusal(rejection, draft.ok())
    }

    /// Appends the record of a refusal (a free kind: never conflicting with anything a caller decided) and returns
    /// the error carrying it. Best effort: if recording fails too, the refusal is still returned, without its
    /// record.
    pub(crate) fn record_refusal(&self, rejection: Rejection, record: Option<Draft>) -> RuntimeError {
        let record = record.and_then(|draft| {
            // A refusal record conflicts with nothing, but may be carried by a flight that did; a few tries.
            for _ in 0..8 {
                let mailbox = Arc::new(Mailbox::default());
                match self.decide_here(&|_| Ok(vec![draft.clone()]), &|| None, &mailbox) {
                    Ok(Ok(Settled::Committed(mut events))) => return events.pop(),
                    Ok(Ok(Settled::Retry)) => {}
                    _ => return None,
                }
            }
            None
        });
        RuntimeError::Rejected { rejection, record: record.map(Box::new) }
    }
}

/// The run an attempt's description names.
fn attempted_run(attempt: &dyn Fn() -> Value) -> Option<RunId> {
    attempt().get("run_id").and_then(Value::as_str).and_then(|r| r.parse::<RunId>().ok())
}
