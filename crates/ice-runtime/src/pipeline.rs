//! Pipelined governed commit: decide on speculative state, share one durable commit, acknowledge only what
//! committed.
//!
//! The runtime keeps two folds of the ledger. `committed` holds only durable events; readers see it. `spec` is
//! `committed` plus every bundle that was decided but is not durable yet (in flight to the store, or queued
//! behind the flight); decisions are made against it, so a decision sees every earlier decision of this runtime
//! whether or not its commit has finished. That is early lock release with commit-ordered acknowledgement (the
//! idea of Johnson et al., "Aether", VLDB 2010): the state lock is held while deciding, not while fsyncing.
//!
//! A flight takes every queued bundle in decision order and appends them as one atomic request that follows the
//! head it was decided on (`AppendRequest::following`: `unchanged_since` that seq, and the event there must be
//! that very one), so the store takes its write lock (SQLite's write transaction, PostgreSQL's chain-head row) once
//! per flight. Up to [`Pipeline::set_max_flights`] are out at once (one by default, [`DEFAULT_FLIGHTS`]): a second
//! leaves while the first commits, following the head
//! the first will leave if it commits as speculated; flights land in the order they left. When a flight lands:
//! - committed: each bundle's caller is handed its sealed events; if the store sealed them exactly as speculated
//!   (no other writer slipped events in between), the speculative state the flight left becomes `committed` (its
//!   events are not folded a second time) and `spec` stays valid; else its events fold into `committed`, and
//!   `spec` is rebuilt from `committed` plus the queued bundles, re-admitted on it — or, with a flight behind it,
//!   that flight is doomed and the queue decided again (below);
//! - refused, conflicting or failed: nothing of it committed; `spec` is reset to `committed` (caught up) and every
//!   bundle of the flight and of the queue behind it (decided on top of it) is handed back to be decided again,
//!   except that a store error is returned to the flight's own callers and a sealing refusal to the bundle it
//!   names. A flight still out behind it is *doomed*: it follows a head that never was, so the store refuses it
//!   whatever else happened meanwhile; its bundles are decided again when its answer comes, and no flight leaves
//!   until it has. (Pinning the head is what makes this safe: with `unchanged_since` alone, another writer's
//!   notes could fill the seqs, and the simulation test finds a seed that over-reserves the budget.)
//!
//! This module is the sans-I/O core: it never touches the store itself. The runtime drives it from callers'
//! threads (whoever finds a flight due starts it and submits its request under the state lock, so flights reach the
//! store in the order they left); the simulation test drives it step by step from a seeded scheduler, with flights
//! reaching the store and landing in any order.

use std::collections::{HashMap, HashSet, VecDeque};

use ice_core::hashed::Adoptions;
use ice_core::{ChainHead, Draft, ErrorCode, Event, EventId, LedgerState, Rejection, Seq, seal_job};
use ice_store::{AppendRequest, StoreError};

/// What became of a bundle handed to the pipeline.
#[derive(Debug)]
pub enum Settled {
    /// Durable: the sealed events, in order.
    Committed(Vec<Event>),
    /// Not committed, because something it was decided on top of did not commit or another writer changed state
    /// first: decide it again on current state.
    Retry,
    /// The store refused to seal it (e.g. a declared time earlier than the head).
    Refused(Rejection),
    /// The store failed; nothing of the flight committed.
    Failed(StoreError),
}

struct Bundle {
    ticket: u64,
    drafts: Vec<Draft>,
    /// The events as sealed on `spec` (what the store will seal if nobody else writes first).
    speculative: Vec<Event>,
}

/// Bundles sent to the store as one request, until it lands.
struct Flight {
    id: u64,
    bundles: Vec<Bundle>,
    /// `spec` as the flight left it (taken when it started, so nothing queued since is in it): the committed state
    /// once it lands exactly as speculated, without folding its events a second time. `None` once doomed.
    end: Option<LedgerState>,
    /// A flight ahead of it did not commit as speculated: it is pinned to a head that never was (see
    /// [`AppendRequest::following`]), so it cannot commit; its bundles wait for its answer to be decided again.
    doomed: bool,
    /// The store's answer, once in (a flight lands only after every flight ahead of it).
    result: Option<Result<Vec<Event>, StoreError>>,
}

/// How many flights a pipeline lets out at once unless told otherwise ([`Pipeline::set_max_flights`]): one.
///
/// With two, the second leaves while the first is committing, sealed on the head the first will leave if it
/// commits as speculated and pinned to it, so the store need not idle from its answer to the first until the next
/// flight leaves; if the first does not commit as speculated, the second cannot commit either, and no flight leaves
/// while such a doomed one is still out. Measured on the 2-core VM (BENCHMARKS.md): one instance gained nothing
/// outside the run-to-run noise (the runtime's hand-offs, not the store, bound it there), and two instances on one
/// SQLite ledger decided 15–20 % more together but shared unfairly in one run of three (722 + 4,477 per s), with
/// the p99 up to 430 ms. Why is not known yet: letting a doomed flight's conflict on its pin not claim the writer
/// turn made the sharing worse (every run uneven, 3,402 + 1,201 per s at worst). Until that is understood, one it
/// is; the simulation test runs the pipeline with two.
pub const DEFAULT_FLIGHTS: usize = 1;

/// The two folds and the bundles between them.
pub struct Pipeline {
    committed: LedgerState,
    spec: LedgerState,
    queued: Vec<Bundle>,
    /// At the store, in the order they left (at most `max_flights`); they land in that order.
    flights: VecDeque<Flight>,
    max_flights: usize,
    next_flight: u64,
    settled: HashMap<u64, Settled>,
    next_ticket: u64,
    stats: PipelineStats,
    /// The committed state right after the latest `Checkpoint` folded into it (what its snapshot holds), until
    /// taken. A copy is O(1) (persistent trees), so it is kept at every checkpoint; `Runtime::write_snapshot`
    /// rations what is written.
    at_checkpoint: Option<LedgerState>,
    /// The hashes of the committed events a checkpoint has not covered yet (see [`Pipeline::hashes`]).
    uncovered: Uncovered,
    /// Another writer appended to the ledger since this pipeline was created (see [`Pipeline::to_predigest`]).
    shared: bool,
}

/// A snapshot costs an encoding and a write of the live state; one is written at a checkpoint once at least as
/// many events as there are live records have passed since the last one (`events × CAPTURE_RATIO ≥ live`),
/// so its cost per event stays bounded (about one record copied, encoded and written per event) however much work
/// is live, and a fresh process folds after the snapshot at most about as many events as the snapshot holds
/// records, plus one checkpoint interval: opening stays O(live state). (It was a quarter as many events; at 64
/// agents deciding with every permit left live, snapshots were then ~13 % of all CPU.)
pub(crate) const CAPTURE_RATIO: u64 = 1;

/// What the pipeline has done since it was created (for benchmarks and diagnostics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Flights sent to the store.
    pub flights: u64,
    /// Bundles carried by them.
    pub bundles: u64,
    /// Flights that conflicted with another writer.
    pub conflicts: u64,
    /// Bundles handed back to be decided again.
    pub retried: u64,
    /// Flights that could not commit because a flight ahead of them did not commit as speculated.
    pub doomed: u64,
    /// Flights by how many bundles they carried: `batch_sizes[i]` counts flights of at most `BATCH_BOUNDS[i]`
    /// bundles (cumulative, as a Prometheus histogram's buckets are); the last bucket is every flight.
    pub batch_sizes: [u64; BATCH_BOUNDS.len() + 1],
    /// Bundles decided and waiting for the next flight, at the time of reading.
    pub queued: u64,
    /// Bundles in the flight under way, at the time of reading.
    pub flying: u64,
    /// Time flights spent at the store (the append, its fsync included), in µs (from the runtime's clockwork, not
    /// this sans-I/O core: see `Runtime::pipeline_stats`).
    pub store_micros: u64,
    /// Time from the store's answer to the flight landing (waiting for the state lock), in µs.
    pub landing_wait_micros: u64,
    /// Time from a landing that left bundles queued to the next flight leaving, in µs (the store idle meanwhile).
    pub relaunch_micros: u64,
}

/// Upper bounds of the [`PipelineStats::batch_sizes`] buckets.
pub const BATCH_BOUNDS: [u64; 8] = [1, 2, 4, 8, 16, 32, 64, 128];

/// Seals `drafts` onto `state`'s head and folds them one by one, admitting each against the state the ones
/// before it left: the whole bundle is checked, not only its first draft. On a refusal at index `i > 0` the
/// state holds the first `i` events (the caller rebuilds it).
fn fold_bundle(state: &mut LedgerState, drafts: &[Draft]) -> Result<Vec<Event>, (usize, Rejection)> {
    let own: HashSet<EventId> = drafts.iter().map(|d| d.event_id).collect();
    let head = state.head().unwrap_or_else(ChainHead::genesis);
    // Causes outside the bundle are checked by the store when it seals; here only the bundle's shape matters.
    let sealed = seal_job(&head, drafts, &mut |id| !own.contains(id))?;
    for (i, (draft, event)) in drafts.iter().zip(&sealed).enumerate() {
        state.admit(draft).map_err(|r| (i, r))?;
        state.apply(event).map_err(|r| (i, r))?;
    }
    Ok(sealed)
}

impl Pipeline {
    /// A pipeline over state folded up to some head, with nothing pending.
    pub fn new(state: LedgerState) -> Self {
        Self {
            spec: state.clone(),
            uncovered: Uncovered::after(state.last_seq()),
            committed: state,
            queued: Vec::new(),
            flights: VecDeque::new(),
            max_flights: DEFAULT_FLIGHTS,
            next_flight: 1,
            settled: HashMap::new(),
            next_ticket: 1,
            stats: PipelineStats::default(),
            at_checkpoint: None,
            shared: false,
        }
    }

    /// O(1) copies of the states whose changed entries are worth hashing ahead of the next checkpoint, outside the
    /// state lock (see `LedgerState::hash_changed`; adopted with [`Pipeline::adopt`]). Speculative state always;
    /// once another writer has appended, committed state too: a conflict or a foreign event rebuilds speculative
    /// state from committed state, and a committed state never hashed would make the next state root re-hash every
    /// entry changed since the runtime opened (measured: 14–41 ms under the state lock at each checkpoint with two
    /// instances on one ledger).
    pub fn to_predigest(&self) -> (LedgerState, Option<LedgerState>) {
        (self.spec.clone(), self.shared.then(|| self.committed.clone()))
    }

    /// Accounts the hashes computed on the copies [`Pipeline::to_predigest`] made, where they still apply.
    pub fn adopt(&self, spec: &Adoptions<LedgerState>, committed: Option<&Adoptions<LedgerState>>) {
        spec.adopt_into(&self.spec);
        if let Some(c) = committed {
            c.adopt_into(&self.committed);
        }
    }

    /// Durable state only.
    pub fn committed(&self) -> &LedgerState {
        &self.committed
    }

    /// Durable state plus every decided bundle not yet durable: what decisions are made against.
    pub fn spec(&self) -> &LedgerState {
        &self.spec
    }

    /// Counters since creation.
    pub fn stats(&self) -> PipelineStats {
        let flying = self.flights.iter().map(|f| f.bundles.len() as u64).sum();
        PipelineStats { queued: self.queued.len() as u64, flying, ..self.stats }
    }

    /// The committed state as it was right after the latest checkpoint folded (once; `None` until another).
    pub fn take_checkpoint_state(&mut self) -> Option<LedgerState> {
        self.at_checkpoint.take()
    }

    /// Folds one durable event into the committed state, keeping a copy of the state right after a checkpoint:
    /// the snapshot written for it must hold exactly that, whatever landed after it since.
    fn fold_committed(&mut self, e: &Event) -> Result<(), Rejection> {
        self.committed.apply(e)?;
        self.uncovered.push(e.seq, e.hash.0);
        if e.kind == ice_core::EventKind::Checkpoint {
            self.at_checkpoint = Some(self.committed.clone());
            if let Some(mark) = self.committed.last_checkpoint() {
                self.uncovered.cover(mark.to_seq);
            }
        }
        Ok(())
    }

    /// The hashes of committed events `from..=to`, when this pipeline still holds them all: every event folded
    /// since the latest checkpoint it folded (the one a checkpoint covers next), up to [`UNCOVERED_MAX`]. A
    /// checkpoint then reads nothing back from the store. `None` otherwise (e.g. events before this process
    /// opened the ledger): read them.
    pub fn hashes(&self, from: u64, to: u64) -> Option<Vec<[u8; 32]>> {
        self.uncovered.range(from, to)
    }

    /// Nothing decided is waiting for the store.
    pub fn idle(&self) -> bool {
        self.flights.is_empty() && self.queued.is_empty()
    }

    /// Whether a flight is at the store.
    pub fn in_flight(&self) -> bool {
        !self.flights.is_empty()
    }

    /// Admits a bundle against speculative state (every draft, in order) and queues it; returns its ticket.
    /// A refusal leaves everything as it was.
    pub fn admit(&mut self, drafts: Vec<Draft>) -> Result<u64, Rejection> {
        if drafts.is_empty() {
            return Err(Rejection::new(ErrorCode::BadArgument, "nothing to append"));
        }
        match fold_bundle(&mut self.spec, &drafts) {
            Ok(speculative) => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                self.queued.push(Bundle { ticket, drafts, speculative });
                Ok(ticket)
            }
            Err((i, rejection)) => {
                if i > 0 {
                    // The first events of the bundle were folded before a later one was refused.
                    self.rebuild_spec();
                }
                let rejection = if i > 0 {
                    Rejection::new(
                        rejection.code,
                        format!(
                            "draft {} of the bundle ({}) was refused: {}",
                            i + 1,
                            drafts[i].kind,
                            rejection.message
                        ),
                    )
                } else {
                    rejection
                };
                Err(rejection)
            }
        }
    }

    /// Tickets with an outcome not yet taken (their callers are to be woken).
    pub fn settled_tickets(&self) -> impl Iterator<Item = u64> + '_ {
        self.settled.keys().copied()
    }

    /// The ticket whose caller should carry the next flight, when one is due: the newest queued (the flight takes
    /// every queued bundle; the newest's caller is the least likely to be busy deciding).
    pub fn next_flier(&self) -> Option<u64> {
        if self.may_fly() { self.queued.last().map(|b| b.ticket) } else { None }
    }

    /// Whether another flight may leave: fewer than `max_flights` are out, none of them doomed.
    fn may_fly(&self) -> bool {
        self.flights.len() < self.max_flights && self.flights.iter().all(|f| !f.doomed)
    }

    /// Lets up to `n` flights out at once (at least one; see [`DEFAULT_FLIGHTS`]).
    pub fn set_max_flights(&mut self, n: usize) {
        self.max_flights = n.max(1);
    }

    /// The outcome of a ticket, once there is one (taken: asked once).
    pub fn take(&mut self, ticket: u64) -> Option<Settled> {
        self.settled.remove(&ticket)
    }

    /// Starts the next flight: every queued bundle, as one atomic request that follows the head the flights
    /// already out will leave (the committed head when none is), and its id to land it with. `None` when no
    /// flight may leave (see [`Pipeline::set_max_flights`]) or nothing is queued.
    pub fn start_flight(&mut self) -> Option<(u64, AppendRequest)> {
        if !self.may_fly() || self.queued.is_empty() {
            return None;
        }
        let base = match self.flights.back() {
            Some(ahead) => ahead.end.as_ref().and_then(LedgerState::head),
            None => self.committed.head(),
        }
        .unwrap_or_else(ChainHead::genesis);
        let bundles = std::mem::take(&mut self.queued);
        self.stats.flights += 1;
        let size = bundles.len() as u64;
        self.stats.bundles += size;
        for (bucket, bound) in self.stats.batch_sizes.iter_mut().zip(BATCH_BOUNDS.iter().chain([&u64::MAX])) {
            if size <= *bound {
                *bucket += 1;
            }
        }
        let drafts = bundles.iter().flat_map(|b| b.drafts.iter().cloned()).collect();
        let id = self.next_flight;
        self.next_flight += 1;
        self.flights.push_back(Flight { id, bundles, end: Some(self.spec.clone()), doomed: false, result: None });
        Some((id, AppendRequest::following(drafts, base)))
    }

    /// Hands the store's answer for flight `id` in, and lands every flight whose answer is in, in the order they
    /// left: a flight whose answer comes first waits for those ahead of it. `read_after(seq)` reads committed
    /// events after `seq` (in seq order, possibly in several calls), used to fold what other writers appended.
    /// Returns whether the store reported a conflict with another writer (diagnostics and tests; the store's
    /// turn-taking, not the caller, paces the retry).
    pub fn land(
        &mut self,
        id: u64,
        result: Result<Vec<Event>, StoreError>,
        read_after: &mut dyn FnMut(Seq) -> Result<Vec<Event>, StoreError>,
    ) -> bool {
        match self.flights.iter_mut().find(|f| f.id == id) {
            Some(flight) => flight.result = Some(result),
            // Not a flight of this pipeline (started by one that was replaced): nothing of it is pending here.
            None => return false,
        }
        let mut conflicted = false;
        while self.flights.front().is_some_and(|f| f.result.is_some()) {
            let Some(mut flight) = self.flights.pop_front() else { break };
            let Some(result) = flight.result.take() else { break };
            conflicted |= self.land_front(flight, result, read_after);
        }
        conflicted
    }

    /// Lands the front flight (see [`Pipeline::land`]).
    fn land_front(
        &mut self,
        flight: Flight,
        result: Result<Vec<Event>, StoreError>,
        read_after: &mut dyn FnMut(Seq) -> Result<Vec<Event>, StoreError>,
    ) -> bool {
        let Flight { bundles: flying, end, doomed, .. } = flight;
        match result {
            Ok(events) => {
                let first = events.first().map_or(Seq(0), |e| e.seq);
                let foreign = first > self.committed.last_seq().next();
                self.shared |= foreign;
                if foreign && let Err(e) = self.catch_up_until(first, read_after) {
                    return self.fail_all(flying, e);
                }
                let as_speculated = !doomed
                    && !foreign
                    && events.len() == flying.iter().map(|b| b.speculative.len()).sum::<usize>()
                    && events.iter().zip(flying.iter().flat_map(|b| &b.speculative)).all(|(a, s)| a.hash == s.hash);
                match end {
                    // Sealed exactly as speculated, right after the committed head: the committed state is the
                    // speculative state the flight left, which folded these very events onto this very base (unless
                    // a checkpoint is among them, whose state is kept for its snapshot as the fold passes it).
                    Some(end)
                        if as_speculated
                            && self.committed.last_seq().next() == first
                            && end.last_seq() == events.last().map_or(Seq(0), |e| e.seq)
                            && events.iter().all(|e| e.kind != ice_core::EventKind::Checkpoint) =>
                    {
                        self.committed = end;
                        for e in &events {
                            self.uncovered.push(e.seq, e.hash.0);
                        }
                    }
                    _ => {
                        for e in &events {
                            if e.seq > self.committed.last_seq()
                                && let Err(r) = self.fold_committed(e)
                            {
                                let e = StoreError::Corrupt { seq: e.seq, detail: r.to_string() };
                                return self.fail_all(flying, e);
                            }
                        }
                    }
                }
                let mut rest = events.into_iter();
                for b in flying {
                    let mine: Vec<Event> = rest.by_ref().take(b.drafts.len()).collect();
                    self.settled.insert(b.ticket, Settled::Committed(mine));
                }
                if !as_speculated {
                    if self.flights.is_empty() {
                        self.rebuild_spec();
                    } else {
                        // The flights behind were pinned to the head this one was to leave: they cannot commit.
                        self.retry_all(Vec::new());
                    }
                }
                false
            }
            // A doomed flight conflicts on its pin, not with another writer: its bundles never had a chance to commit,
            // and are decided again. (Any other answer is handed out as for any flight: after a commit whose outcome
            // is unknown, say, the flight ahead may have committed after all, and this one with it.)
            Err(StoreError::HeadConflict { .. }) if doomed => {
                self.retry_all(flying);
                false
            }
            Err(StoreError::HeadConflict { .. }) => {
                self.shared = true;
                if let Err(e) = self.catch_up_until(Seq(u64::MAX), read_after) {
                    return self.fail_all(flying, e);
                }
                self.stats.conflicts += 1;
                self.retry_all(flying);
                true
            }
            Err(StoreError::Rejected { index, rejection }) => {
                let mut start = 0;
                for b in flying {
                    let end = start + b.drafts.len();
                    let outcome = if (start..end).contains(&index) {
                        Settled::Refused(rejection.clone())
                    } else {
                        Settled::Retry
                    };
                    self.settled.insert(b.ticket, outcome);
                    start = end;
                }
                self.retry_all(Vec::new());
                false
            }
            Err(e) => self.fail_all(flying, e),
        }
    }

    /// Folds events other writers appended, when nothing of ours is pending (otherwise the next landing does).
    /// Returns false when the pipeline is busy and nothing was folded.
    pub fn fold_foreign(&mut self, events: &[Event]) -> Result<bool, (Seq, Rejection)> {
        if !self.idle() {
            return Ok(false);
        }
        for e in events {
            if e.seq <= self.committed.last_seq() {
                continue;
            }
            self.shared = true;
            self.fold_committed(e).map_err(|r| (e.seq, r))?;
            self.spec.apply(e).map_err(|r| (e.seq, r))?;
        }
        Ok(true)
    }

    fn catch_up_until(
        &mut self,
        before: Seq,
        read_after: &mut dyn FnMut(Seq) -> Result<Vec<Event>, StoreError>,
    ) -> Result<(), StoreError> {
        while self.committed.last_seq().next() < before {
            let batch = read_after(self.committed.last_seq())?;
            let Some(last) = batch.last().map(|e| e.seq) else { return Ok(()) };
            for e in batch.iter().take_while(|e| e.seq < before) {
                self.fold_committed(e).map_err(|r| StoreError::Corrupt { seq: e.seq, detail: r.to_string() })?;
            }
            if last >= before {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Nothing of the flight committed and the store said why: its callers get the error; what was queued
    /// behind it is decided again.
    fn fail_all(&mut self, flying: Vec<Bundle>, e: StoreError) -> bool {
        for b in flying {
            self.settled.insert(b.ticket, Settled::Failed(e.clone()));
        }
        self.retry_all(Vec::new());
        false
    }

    /// Hands `flying` and everything queued back to be decided again, dooms every flight still out (each follows
    /// the head of what did not commit), and resets `spec` to `committed`.
    fn retry_all(&mut self, flying: Vec<Bundle>) {
        for b in flying.into_iter().chain(std::mem::take(&mut self.queued)) {
            self.stats.retried += 1;
            self.settled.insert(b.ticket, Settled::Retry);
        }
        for f in self.flights.iter_mut().filter(|f| !f.doomed) {
            self.stats.doomed += 1;
            f.doomed = true;
            f.end = None;
        }
        self.spec = self.committed.clone();
    }

    /// `spec` from scratch: `committed`, the flights out as speculated (doomed ones are not in it; the committed
    /// head does not move while flights are out), then each queued bundle re-admitted; a queued bundle that no
    /// longer folds is handed back with everything behind it.
    fn rebuild_spec(&mut self) {
        loop {
            let mut spec = self.committed.clone();
            let mut whole = true;
            let live = self.flights.iter().filter(|f| !f.doomed);
            for e in live.flat_map(|f| &f.bundles).flat_map(|b| &b.speculative) {
                if spec.apply(e).is_err() {
                    whole = false;
                    break;
                }
            }
            if !whole {
                // Cannot happen (the flight was folded on this same base); fail safe by deciding it all again
                // once the flight lands, and deciding nothing on top of it meanwhile.
                self.spec = spec;
                let queued = std::mem::take(&mut self.queued);
                for b in queued {
                    self.settled.insert(b.ticket, Settled::Retry);
                }
                return;
            }
            let mut refused_at = None;
            for (i, b) in self.queued.iter_mut().enumerate() {
                match fold_bundle(&mut spec, &b.drafts) {
                    Ok(events) => b.speculative = events,
                    Err(_) => {
                        refused_at = Some(i);
                        break;
                    }
                }
            }
            match refused_at {
                None => {
                    self.spec = spec;
                    return;
                }
                Some(i) => {
                    for b in self.queued.split_off(i) {
                        self.settled.insert(b.ticket, Settled::Retry);
                    }
                }
            }
        }
    }
}

/// The most uncovered hashes a pipeline keeps (32 bytes each, 2 MiB in all): beyond it, the oldest are dropped and
/// the checkpoint covering them reads them from the store. Far above a checkpoint interval (2,000 events by
/// default), and what an instance that never signs (it folds the signer's checkpoints) holds at most.
pub const UNCOVERED_MAX: usize = 1 << 16;

/// The hashes of consecutive committed events, from the first one no checkpoint covers up to the committed head.
struct Uncovered {
    /// Seq of `hashes[0]`.
    from: u64,
    hashes: std::collections::VecDeque<[u8; 32]>,
}

impl Uncovered {
    /// Nothing held, the next event to fold being the one after `seq`.
    fn after(seq: Seq) -> Self {
        Self { from: seq.0 + 1, hashes: std::collections::VecDeque::new() }
    }

    /// The hash of the committed event `seq`, the next one folded (events fold in seq order, one by one; should
    /// one not follow, what is held no longer leads up to it and is dropped).
    fn push(&mut self, seq: Seq, hash: [u8; 32]) {
        if seq.0 != self.from + self.hashes.len() as u64 {
            self.hashes.clear();
            self.from = seq.0;
        }
        if self.hashes.len() >= UNCOVERED_MAX {
            let half = self.hashes.len() / 2;
            self.hashes.drain(..half);
            self.from += half as u64;
        }
        self.hashes.push_back(hash);
    }

    /// A checkpoint covered every event up to `to_seq`.
    fn cover(&mut self, to_seq: u64) {
        let covered = usize::try_from((to_seq + 1).saturating_sub(self.from)).unwrap_or(usize::MAX);
        let covered = covered.min(self.hashes.len());
        self.hashes.drain(..covered);
        self.from += covered as u64;
    }

    fn range(&self, from: u64, to: u64) -> Option<Vec<[u8; 32]>> {
        let end = self.from + self.hashes.len() as u64;
        if from < self.from || to < from || to >= end {
            return None;
        }
        let start = usize::try_from(from - self.from).ok()?;
        let len = usize::try_from(to - from + 1).ok()?;
        Some(self.hashes.range(start..start + len).copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::{UNCOVERED_MAX, Uncovered};
    use ice_core::Seq;

    fn h(seq: u64) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..8].copy_from_slice(&seq.to_le_bytes());
        out
    }

    #[test]
    fn uncovered_hashes_follow_the_fold_and_the_checkpoints() {
        let mut u = Uncovered::after(Seq(10));
        for seq in 11..=20 {
            u.push(Seq(seq), h(seq));
        }
        assert_eq!(u.range(11, 20), Some((11..=20).map(h).collect()));
        assert_eq!(u.range(10, 12), None, "before what is held");
        assert_eq!(u.range(15, 21), None, "after it");
        u.cover(14);
        assert_eq!(u.range(14, 15), None, "covered");
        assert_eq!(u.range(15, 20), Some((15..=20).map(h).collect()));
        u.cover(3);
        assert_eq!(u.range(15, 20), Some((15..=20).map(h).collect()), "an older cover changes nothing");
        // An event that does not follow drops what no longer leads up to it.
        u.push(Seq(30), h(30));
        assert_eq!(u.range(15, 20), None);
        assert_eq!(u.range(30, 30), Some(vec![h(30)]));
    }

    #[test]
    fn uncovered_hashes_are_bounded() {
        let mut u = Uncovered::after(Seq(0));
        let n = UNCOVERED_MAX as u64 + 10;
        for seq in 1..=n {
            u.push(Seq(seq), h(seq));
        }
        assert!(u.hashes.len() <= UNCOVERED_MAX);
        assert_eq!(u.range(1, 2), None, "the oldest were dropped: a checkpoint reads them");
        assert_eq!(u.range(n - 1, n), Some(vec![h(n - 1), h(n)]));
    }
}
