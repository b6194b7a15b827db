//! The runtime: the single path by which anything enters the ledger.
//!
//! Every entry point (CLI today; HTTP, WebSocket and MCP later) calls these methods. A submission passes intake
//! (structure → taxonomy → authority), admission against derived state, and sealing in the store (time, causes);
//! a refusal at any step is itself recorded as `TransitionRejected` and returned with its code.
//!
//! Every bundle of drafts is decided and admitted, whole, against speculative state under the state lock, then
//! committed by the pipeline (see [`crate::pipeline`]): concurrent callers share one durable append, and each is
//! answered only once its events are durable. A state change by a writer in another process that appended first
//! makes the append conflict; the bundles are then decided again on caught-up state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ice_core::intake::{self, RawEvent};
use ice_core::{
    CanonicalJson, Clock, Draft, ErrorCode, Event, EventId, EventKind, IdSource, LedgerState, Principal, Rejection,
    RunId, RunRecord, RunState, Seq, payloads,
};
use ice_store::{EventQuery, Store, StoreError};

use crate::caller::Caller;
use crate::pipeline::Pipeline;
use crate::policy::PolicyHandle;

/// Kinds that change no governed state: agents' cognitive notes (not proposals, which are decided) and
/// rejection records. They are the only kinds a caller may submit raw.
fn is_free_kind(kind: EventKind) -> bool {
    !kind.changes_state()
}

/// Events read per catch-up query.
const CATCH_UP_BATCH: usize = 10_000;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The submission was refused; `record` is the `TransitionRejected` event that records the refusal.
    #[error("{rejection}")]
    Rejected {
        /// Code and message.
        rejection: Rejection,
        /// The recorded refusal (absent only if recording it failed too).
        record: Option<Box<Event>>,
    },
    /// The ledger could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The ledger's own contents cannot be folded (it was modified outside ICE).
    #[error("{code}: the ledger cannot be folded at seq {seq}: {message}", code = ErrorCode::LedgerCorrupt)]
    Corrupt {
        /// The event that failed to fold.
        seq: u64,
        /// Why.
        message: String,
    },
}

impl RuntimeError {
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Rejected { rejection, .. } => rejection.code,
            Self::Store(e) => e.code(),
            Self::Corrupt { .. } => ErrorCode::LedgerCorrupt,
        }
    }
}

/// The governed runtime over one ledger.
pub struct Runtime {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    pipe: Mutex<Pipeline>,
    /// Waiting callers, published decisions, flight timing (see [`crate::commit`]).
    pub(crate) commits: crate::commit::Commits,
    /// What the last decision was made with, for Cedar verdicts evaluated ahead of the state lock.
    pub(crate) hints: crate::verdicts::Hints,
    effectors: Option<Arc<ice_effects::Effectors>>,
    checkpoints: Option<crate::checkpoints::CheckpointPolicy>,
    checkpointing: std::sync::atomic::AtomicBool,
    /// Whether commits sign due checkpoints in the committing caller's thread.
    inline_checkpoints: std::sync::atomic::AtomicBool,
    /// Seq of the snapshot the state was loaded from at open (0: folded from the start).
    started_from: Seq,
    /// Local OS users and what they are (`[[users]]`).
    local_users: Vec<crate::caller::LocalUser>,
    /// Key of the keyed hash under which token secrets are recorded (`keys/token.key`).
    token_key: Option<[u8; 32]>,
    /// How long after its start an effect of this instance without an outcome may be presumed unknown by
    /// instances that cannot check whether this one is alive (recorded in each `EffectStarted`).
    outcome_deadline_micros: i64,
    /// The vector index over ACTIVE memory items (see [`crate::memory_read`]).
    memory_index: crate::memory_read::IndexCell,
}

impl Runtime {
    /// Opens a runtime over a store, folding the whole ledger into derived state.
    pub fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdSource>) -> Result<Self, RuntimeError> {
        Self::open_with_snapshot(store, clock, ids, LedgerState::new())
    }

    /// Opens a runtime starting from already-folded state (a verified snapshot) and folding only what follows.
    pub fn open_with_snapshot(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn IdSource>,
        state: LedgerState,
    ) -> Result<Self, RuntimeError> {
        let started_from = state.last_seq();
        let rt = Self {
            store,
            clock,
            ids,
            pipe: Mutex::new(Pipeline::new(state)),
            commits: crate::commit::Commits::default(),
            hints: crate::verdicts::Hints::default(),
            effectors: None,
            checkpoints: None,
            checkpointing: std::sync::atomic::AtomicBool::new(false),
            inline_checkpoints: std::sync::atomic::AtomicBool::new(true),
            started_from,
            local_users: Vec::new(),
            token_key: None,
            outcome_deadline_micros: crate::boundary::DEFAULT_OUTCOME_DEADLINE_SECS * 1_000_000,
            memory_index: Mutex::new(crate::memory_read::MemoryIndex::default_embedder()),
        };
        {
            let mut st = rt.lock();
            rt.catch_up_locked(&mut st)?;
        }
        Ok(rt)
    }

    /// Attaches the effectors that [`Runtime::execute`] hands permitted effects to.
    pub fn with_effectors(mut self, effectors: Arc<ice_effects::Effectors>) -> Self {
        self.effectors = Some(effectors);
        self
    }

    /// [`Runtime::with_effectors`] in place.
    pub fn set_effectors(&mut self, effectors: Arc<ice_effects::Effectors>) {
        self.effectors = Some(effectors);
    }

    /// The local OS users [`Runtime::authenticate`] accepts (`[[users]]` of the home's config).
    pub fn set_local_users(&mut self, users: Vec<crate::caller::LocalUser>) {
        self.local_users = users;
    }

    /// The key token secrets are hashed under.
    pub fn set_token_key(&mut self, key: [u8; 32]) {
        self.token_key = Some(key);
    }

    pub(crate) fn memory_index_cell(&self) -> &crate::memory_read::IndexCell {
        &self.memory_index
    }

    pub(crate) fn local_users(&self) -> &[crate::caller::LocalUser] {
        &self.local_users
    }

    pub(crate) fn token_key(&self) -> Option<[u8; 32]> {
        self.token_key
    }

    /// Signs checkpoints (see [`crate::checkpoints`]) with this policy.
    pub fn set_checkpoints(&mut self, policy: crate::checkpoints::CheckpointPolicy) {
        self.checkpoints = Some(policy);
    }

    /// Sets how long after its start an effect of this instance without an outcome may be presumed unknown by
    /// instances on other machines (which cannot check whether this one is alive). Effects started after this.
    pub fn set_outcome_deadline_secs(&mut self, secs: u64) {
        self.outcome_deadline_micros = i64::try_from(secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    }

    pub(crate) fn outcome_deadline_micros(&self) -> i64 {
        self.outcome_deadline_micros
    }

    /// The checkpoint policy, if this runtime signs checkpoints.
    pub(crate) fn checkpoint_policy(&self) -> Option<&crate::checkpoints::CheckpointPolicy> {
        self.checkpoints.as_ref()
    }

    /// Lets up to `n` flights be at the store at once (see `pipeline::DEFAULT_FLIGHTS`, one, and why).
    pub fn set_max_flights(&self, n: usize) {
        self.lock().set_max_flights(n);
    }

    /// Whether a commit that makes a checkpoint due signs it right away, in the committing caller's thread (the
    /// default: right for a CLI process that exits after its command). A long-lived server turns this off and
    /// calls [`Runtime::checkpoint_if_due`] from a housekeeping task, so that no request waits behind a checkpoint.
    pub fn set_inline_checkpoints(&self, on: bool) {
        self.inline_checkpoints.store(on, std::sync::atomic::Ordering::Release);
    }

    /// Events after `seq` up to `until`, one batch.
    pub(crate) fn read_range(&self, seq: Seq, until: Seq) -> Result<Vec<Event>, StoreError> {
        self.store.read(&EventQuery { after: seq, until: Some(until), limit: CATCH_UP_BATCH, ..Default::default() })
    }

    pub(crate) fn inline_checkpoints(&self) -> bool {
        self.inline_checkpoints.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Guards against a checkpoint triggering another from inside its own append.
    pub(crate) fn try_enter_checkpoint(&self) -> bool {
        !self.checkpointing.swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    /// See [`Runtime::try_enter_checkpoint`].
    pub(crate) fn leave_checkpoint(&self) {
        self.checkpointing.store(false, std::sync::atomic::Ordering::Release);
    }

    /// The seq of the snapshot this runtime's state was loaded from (0 when folded from the first event).
    pub fn started_from(&self) -> Seq {
        self.started_from
    }

    /// The attached effectors.
    pub fn effector_registry(&self) -> Option<&Arc<ice_effects::Effectors>> {
        self.effectors.as_ref()
    }

    /// A fresh event id from the injected id source.
    pub fn fresh_event_id(&self) -> ice_core::EventId {
        self.ids.event_id()
    }

    /// The store under this runtime.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The injected clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn ids(&self) -> &dyn IdSource {
        &*self.ids
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Pipeline> {
        // A panic while holding the lock cannot leave a fold half-applied (apply is all-or-nothing and a bundle
        // that fails half-way rebuilds speculative state), so a poisoned lock is still consistent.
        self.pipe.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Compiled policy bundles by hash, shared by every runtime in the process: compiling Cedar is slow, deciding
    /// with a compiled set is not, a compiled set never changes, and its hash names its content exactly.
    pub(crate) fn policy_cache(&self) -> MutexGuard<'static, HashMap<String, PolicyHandle>> {
        static COMPILED: std::sync::OnceLock<Mutex<HashMap<String, PolicyHandle>>> = std::sync::OnceLock::new();
        COMPILED.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads events after `seq` (one batch).
    fn read_after(&self, seq: Seq) -> Result<Vec<Event>, StoreError> {
        self.store.read(&EventQuery { after: seq, limit: CATCH_UP_BATCH, ..Default::default() })
    }

    /// Folds what other writers appended, when nothing of this runtime is pending (a pending flight folds it when
    /// it lands). A cheap head check first: no events are read when the head has not moved.
    pub(crate) fn catch_up_locked(&self, pipe: &mut Pipeline) -> Result<(), RuntimeError> {
        if !pipe.idle() {
            return Ok(());
        }
        let head = self.store.head()?.map_or(Seq(0), |h| h.seq);
        while pipe.committed().last_seq() < head {
            let batch = self.read_after(pipe.committed().last_seq())?;
            if batch.is_empty() {
                break;
            }
            pipe.fold_foreign(&batch)
                .map_err(|(seq, r)| RuntimeError::Corrupt { seq: seq.0, message: r.to_string() })?;
        }
        Ok(())
    }

    /// Folds any events other writers appended since the last look.
    pub fn catch_up(&self) -> Result<(), RuntimeError> {
        let mut pipe = self.lock();
        self.catch_up_locked(&mut pipe)
    }

    /// What the commit pipeline has done since this runtime was opened.
    pub fn pipeline_stats(&self) -> crate::pipeline::PipelineStats {
        let stats = self.lock().stats();
        let (store_micros, landing_wait_micros, relaunch_micros) = self.commits.flight_totals();
        crate::pipeline::PipelineStats { store_micros, landing_wait_micros, relaunch_micros, ..stats }
    }

    /// Reads derived state (durable events only, after catching up with the ledger).
    pub fn with_state<T>(&self, f: impl FnOnce(&LedgerState) -> T) -> Result<T, RuntimeError> {
        let mut pipe = self.lock();
        self.catch_up_locked(&mut pipe)?;
        Ok(f(pipe.committed()))
    }

    /// Reads derived state as folded so far (durable events only), without reading the ledger.
    pub fn with_state_cached<T>(&self, f: impl FnOnce(&LedgerState) -> T) -> T {
        f(self.lock().committed())
    }

    /// Permits, approvals and effects as the ledger records them, those retired from memory included: the
    /// boundary kinds read from the store and folded afresh (costs their history; for `--all` listings).
    pub fn boundary_history(&self) -> Result<ice_core::effect::EffectState, RuntimeError> {
        let mut events = Vec::new();
        for kind in ice_core::effect::EffectState::BOUNDARY_KINDS {
            events.extend(self.read_all(&EventQuery { kind: Some(kind), ..EventQuery::default() })?);
        }
        events.sort_by_key(|e| e.seq);
        let mut state = ice_core::effect::EffectState::default();
        for e in &events {
            state.apply(e).map_err(|r| RuntimeError::Corrupt { seq: e.seq.0, message: r.message })?;
        }
        Ok(state)
    }

    /// The committed state right after the latest checkpoint, once (see [`Pipeline::take_checkpoint_state`]).
    pub(crate) fn take_checkpoint_state(&self) -> Option<LedgerState> {
        self.lock().take_checkpoint_state()
    }

    /// The hashes of committed events `from..=to` if the pipeline still holds them (see [`Pipeline::hashes`]).
    pub(crate) fn held_hashes(&self, from: u64, to: u64) -> Option<Vec<[u8; 32]>> {
        self.lock().hashes(from, to)
    }

    /// One run's current record: from derived state while it is live, rebuilt from its events in the ledger once
    /// it has retired.
    pub fn run(&self, id: RunId) -> Result<Option<RunRecord>, RuntimeError> {
        let (live, retired) = self.with_state(|s| (s.run(id).cloned(), s.is_retired_run(id)))?;
        if live.is_some() || !retired {
            return Ok(live);
        }
        let events = self.read_all(&EventQuery { run: Some(id), ..EventQuery::default() })?;
        Ok(RunRecord::from_events(&events))
    }

    /// One effect's record (`id`: its `EffectStarted` event id): from derived state while its run is live, folded
    /// from its run's events in the ledger once retired.
    pub fn effect(&self, id: EventId) -> Result<Option<ice_core::effect::EffectRecord>, RuntimeError> {
        if let Some(live) = self.with_state(|s| s.effects().effects().get(&id).map(|e| (**e).clone()))? {
            return Ok(Some(live));
        }
        let Some(started) = self.store().get(id)?.filter(|e| e.kind == EventKind::EffectStarted) else {
            return Ok(None);
        };
        let events = match started.run_id {
            Some(run) => self.read_all(&EventQuery { run: Some(run), ..EventQuery::default() })?,
            // A run-less effect retires only once it has its final outcome (completed or failed, after any
            // "unknown"): its start and that outcome, found by reading the outcome kind's events after the start
            // a page at a time and stopping at the one that names it.
            None => {
                let mut events = vec![started.clone()];
                for kind in [EventKind::EffectCompleted, EventKind::EffectFailed] {
                    if let Some(outcome) = self.first_caused_by(kind, started.seq, id)? {
                        events.push(outcome);
                        break;
                    }
                }
                events
            }
        };
        let mut state = ice_core::effect::EffectState::default();
        for e in events.iter().filter(|e| ice_core::effect::EffectState::BOUNDARY_KINDS.contains(&e.kind)) {
            state.apply(e).map_err(|r| RuntimeError::Corrupt { seq: e.seq.0, message: r.message })?;
        }
        Ok(state.effects().get(&id).map(|e| (**e).clone()))
    }

    /// The first event of `kind` after `after` that names `cause` among its causes.
    fn first_caused_by(&self, kind: EventKind, after: Seq, cause: EventId) -> Result<Option<Event>, RuntimeError> {
        let mut query = EventQuery { kind: Some(kind), after, limit: 1_000, ..EventQuery::default() };
        loop {
            let batch = self.store().read(&query)?;
            let Some(last) = batch.last() else { return Ok(None) };
            query.after = last.seq;
            if let Some(found) = batch.into_iter().find(|e| e.causes.contains(&cause)) {
                return Ok(Some(found));
            }
        }
    }

    /// Every event matching `query` (its `after` onwards), read in batches of 10,000.
    pub(crate) fn read_all(&self, query: &EventQuery) -> Result<Vec<Event>, RuntimeError> {
        let mut events = Vec::new();
        let mut query = EventQuery { limit: 10_000, ..query.clone() };
        loop {
            let batch = self.store().read(&query)?;
            let Some(last) = batch.last() else { break };
            query.after = last.seq;
            events.extend(batch);
        }
        Ok(events)
    }

    /// Submits an untrusted event on the caller's behalf (the generic intake used by `ice emit` and agents): the
    /// origin is the caller's principal, never the submission's `origin` field (which, when given, must name it).
    /// Agents' cognitive events are appended; a `ProposalSubmitted` is decided through [`Runtime::propose`] (the
    /// returned event is its `DecisionMade`); every other kind has its own governed method and is refused here.
    pub fn submit(&self, caller: &Caller, raw: &RawEvent) -> Result<Event, RuntimeError> {
        let claimed = raw.origin.trim();
        if !claimed.is_empty() && claimed != caller.principal().to_string() {
            let rejection = Rejection::new(
                ErrorCode::ActAsNotAllowed,
                format!("the submission names origin `{claimed}` but the caller is {}", caller.principal()),
            );
            let run = raw.run_id.as_deref().and_then(|r| r.parse::<RunId>().ok());
            return Err(self.refuse(rejection, intake::attempt_summary(raw), run));
        }
        let mut raw = raw.clone();
        raw.origin = caller.principal().to_string();
        let raw = &raw;
        match intake::intake(raw, Some(caller.attribution().clone()), &*self.clock, &*self.ids) {
            Ok(draft) if draft.kind == EventKind::ProposalSubmitted => {
                match crate::authority::ProposalInput::from_raw(raw, &draft.payload.to_value()) {
                    Ok(input) => self.propose(caller, &input).map(|o| o.decision_event),
                    Err(rejection) => Err(self.refuse(rejection, intake::attempt_summary(raw), draft.run_id)),
                }
            }
            Ok(draft) if !is_free_kind(draft.kind) => {
                let rejection = Rejection::new(
                    ErrorCode::KindHasOwnCommand,
                    format!("{} events are recorded by their own command, not submitted raw", draft.kind),
                );
                let run = draft.run_id;
                Err(self.refuse(rejection, intake::attempt_summary(raw), run))
            }
            Ok(draft) => self.commit(draft),
            Err(rejection) => {
                let run = raw.run_id.as_deref().and_then(|r| r.parse::<RunId>().ok());
                Err(self.refuse(rejection, intake::attempt_summary(raw), run))
            }
        }
    }

    /// Records ledger initialisation, binding the runtime public key into the chain.
    pub fn initialize(&self, runtime_public_key: &str) -> Result<Event, RuntimeError> {
        let payload = payloads::LedgerInitialized { format: 1, runtime_public_key: runtime_public_key.to_owned() };
        self.emit(EventKind::LedgerInitialized, Principal::runtime(), None, &payload)
    }

    /// Creates a run (state CREATED). Operator only.
    pub fn create_run(&self, caller: &Caller, label: Option<String>) -> Result<RunRecord, RuntimeError> {
        let run = self.ids.run_id();
        self.emit_for(caller, EventKind::RunCreated, Some(run), &payloads::RunCreated { label })?;
        self.run(run)?.ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("run {run} vanished") })
    }

    /// Moves a run to `to`, or along the happy path when `to` is `None`. Operator only.
    pub fn advance_run(
        &self,
        caller: &Caller,
        run: RunId,
        to: Option<RunState>,
        reason: Option<String>,
    ) -> Result<RunRecord, RuntimeError> {
        let attempt = || {
            serde_json::json!({"kind": "RunTransitioned", "run_id": run.to_string(), "origin": caller.principal().to_string(),
                "to": to.map(RunState::as_str), "reason": reason})
        };
        // The payload names the run's current state, so it is built under the state lock, from caught-up state.
        self.commit_with(
            &|st: &LedgerState| {
                Ok({
                    let current = match st.run(run) {
                        Some(r) => r.state,
                        // A retired run is TERMINATED: admission refuses any transition with the right code.
                        None if st.is_retired_run(run) => RunState::Terminated,
                        None => return Err(Rejection::new(ErrorCode::UnknownRun, format!("run {run} does not exist"))),
                    };
                    // TERMINATED has no next state: asking for one lets admission refuse it with its own code.
                    let target = to.or_else(|| current.next_on_happy_path()).unwrap_or(current);
                    if target == RunState::Committed {
                        return Err(Rejection::new(
                            ErrorCode::IllegalTransition,
                            format!(
                                "run {run} is {current}; a run becomes COMMITTED only through `ice run finish`, which \
                                 checks that every effect completed"
                            ),
                        ));
                    }
                    let payload = payloads::RunTransitioned { from: current, to: target, reason: reason.clone() };
                    let transition = self.caller_draft(caller, EventKind::RunTransitioned, Some(run), &payload)?;
                    // Nothing of a TERMINATED run may stay open (no event can close it afterwards).
                    let mut drafts = if target == RunState::Terminated && current != RunState::Terminated {
                        self.close_out_drafts(st, run)?
                    } else {
                        Vec::new()
                    };
                    drafts.push(transition);
                    drafts
                })
            },
            &attempt,
        )?;
        self.run(run)?.ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("run {run} vanished") })
    }

    /// Ends a run from any non-terminal state (a reason is required unless it is COMMITTED or ABORTED).
    pub fn terminate_run(
        &self,
        caller: &Caller,
        run: RunId,
        reason: Option<String>,
    ) -> Result<RunRecord, RuntimeError> {
        self.advance_run(caller, run, Some(RunState::Terminated), reason)
    }

    /// Emits a typed event of ICE's own (origin `runtime:*`) through the same admission and sealing as everything
    /// else; events on a caller's behalf go through `emit_for`.
    pub(crate) fn emit<T: serde::Serialize>(
        &self,
        kind: EventKind,
        origin: Principal,
        run: Option<RunId>,
        payload: &T,
    ) -> Result<Event, RuntimeError> {
        let attempt = || serde_json::json!({"kind": kind.as_str(), "origin": origin.to_string(), "run_id": run.map(|r| r.to_string())});
        match self.internal(kind, origin.clone(), run, payload) {
            Ok(draft) => self.commit(draft),
            Err(rejection) => Err(self.refuse(rejection, attempt(), run)),
        }
    }

    pub(crate) fn internal<T: serde::Serialize>(
        &self,
        kind: EventKind,
        origin: Principal,
        run: Option<RunId>,
        payload: &T,
    ) -> Result<Draft, Rejection> {
        let payload = CanonicalJson::from_serialize(payload)?;
        intake::internal_draft(kind, origin, run, Vec::new(), payload, &*self.clock, &*self.ids)
    }
}
