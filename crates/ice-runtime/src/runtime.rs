//! The runtime: the single path by which anything enters the ledger.
//!
//! Every entry point (CLI today; HTTP, WebSocket and MCP later) calls these methods. A submission passes intake
//! (structure → taxonomy → authority), admission against derived state, and sealing in the store (time, causes);
//! a refusal at any step is itself recorded as `TransitionRejected` and returned with its code.
//!
//! State-changing transitions (run creation and lifecycle moves) are serialised: the runtime holds its state lock,
//! catches up from the ledger, admits the draft, and appends with `expect_head` so that a writer in another
//! process that appended first causes a retry instead of an illegal sequence. Other events are admitted under the
//! lock but appended outside it, so concurrent submitters share group-commit transactions.

use std::sync::{Arc, Mutex, MutexGuard};

use ice_core::intake::{self, RawEvent};
use ice_core::{
    CanonicalJson, Clock, Draft, ErrorCode, Event, EventKind, IdSource, LedgerState, Principal, Rejection, RunId,
    RunRecord, RunState, payloads,
};
use ice_store::{AppendRequest, EventQuery, Store, StoreError};
use serde_json::Value;

/// How many times a serialised transition is retried after another writer moved the head.
const MAX_CONFLICT_RETRIES: usize = 16;
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
    #[error("{code}: the ledger cannot be folded at seq {seq}: {message}", code = ErrorCode::HashMismatch)]
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
            Self::Corrupt { .. } => ErrorCode::HashMismatch,
        }
    }
}

/// The governed runtime over one ledger.
pub struct Runtime {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn IdSource>,
    state: Mutex<LedgerState>,
}

impl Runtime {
    /// Opens a runtime over a store, folding the whole ledger into derived state.
    pub fn open(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn IdSource>) -> Result<Self, RuntimeError> {
        let rt = Self { store, clock, ids, state: Mutex::new(LedgerState::new()) };
        {
            let mut st = rt.lock();
            rt.catch_up_locked(&mut st)?;
        }
        Ok(rt)
    }

    /// The store under this runtime.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The injected clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    fn lock(&self) -> MutexGuard<'_, LedgerState> {
        // A panic while holding the lock cannot leave the fold half-applied (apply is all-or-nothing), so a
        // poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn catch_up_locked(&self, st: &mut LedgerState) -> Result<(), RuntimeError> {
        loop {
            let batch =
                self.store.read(&EventQuery { after: st.last_seq(), limit: CATCH_UP_BATCH, ..Default::default() })?;
            let n = batch.len();
            for e in &batch {
                st.apply(e).map_err(|r| RuntimeError::Corrupt { seq: e.seq.0, message: r.to_string() })?;
            }
            if n < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }

    /// Folds any events other writers appended since the last look.
    pub fn catch_up(&self) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        self.catch_up_locked(&mut st)
    }

    /// Reads derived state (after catching up with the ledger).
    pub fn with_state<T>(&self, f: impl FnOnce(&LedgerState) -> T) -> Result<T, RuntimeError> {
        let mut st = self.lock();
        self.catch_up_locked(&mut st)?;
        Ok(f(&st))
    }

    /// One run's current record.
    pub fn run(&self, id: RunId) -> Result<Option<RunRecord>, RuntimeError> {
        self.with_state(|s| s.run(id).cloned())
    }

    /// Submits an untrusted event (the generic intake used by `ice emit` and, later, agents).
    pub fn submit(&self, raw: &RawEvent) -> Result<Event, RuntimeError> {
        match intake::intake(raw, &*self.clock, &*self.ids) {
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

    /// Creates a run (state CREATED).
    pub fn create_run(&self, actor: &Principal, label: Option<String>) -> Result<RunRecord, RuntimeError> {
        let run = self.ids.run_id();
        self.emit(EventKind::RunCreated, actor.clone(), Some(run), &payloads::RunCreated { label })?;
        self.run(run)?.ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("run {run} vanished") })
    }

    /// Moves a run to `to`, or along the happy path when `to` is `None`.
    pub fn advance_run(
        &self,
        actor: &Principal,
        run: RunId,
        to: Option<RunState>,
        reason: Option<String>,
    ) -> Result<RunRecord, RuntimeError> {
        let attempt = || {
            serde_json::json!({"kind": "RunTransitioned", "run_id": run.to_string(), "origin": actor.to_string(),
                "to": to.map(RunState::as_str), "reason": reason})
        };
        // The payload names the run's current state, so it is built under the state lock, from caught-up state.
        self.commit_with(
            &|st: &LedgerState| {
                let current = st
                    .run(run)
                    .ok_or_else(|| Rejection::new(ErrorCode::UnknownRun, format!("run {run} does not exist")))?
                    .state;
                // TERMINATED has no next state: asking for one lets admission refuse it with its own code.
                let target = to.or_else(|| current.next_on_happy_path()).unwrap_or(current);
                let payload = payloads::RunTransitioned { from: current, to: target, reason: reason.clone() };
                self.internal(EventKind::RunTransitioned, actor.clone(), Some(run), &payload)
            },
            &attempt,
        )?;
        self.run(run)?.ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("run {run} vanished") })
    }

    /// Ends a run from any non-terminal state (a reason is required unless it is COMMITTED or ABORTED).
    pub fn terminate_run(
        &self,
        actor: &Principal,
        run: RunId,
        reason: Option<String>,
    ) -> Result<RunRecord, RuntimeError> {
        self.advance_run(actor, run, Some(RunState::Terminated), reason)
    }

    /// Emits a typed event from inside ICE through the same admission and sealing as everything else.
    pub fn emit<T: serde::Serialize>(
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

    fn internal<T: serde::Serialize>(
        &self,
        kind: EventKind,
        origin: Principal,
        run: Option<RunId>,
        payload: &T,
    ) -> Result<Draft, Rejection> {
        let payload = CanonicalJson::from_serialize(payload)?;
        intake::internal_draft(kind, origin, run, Vec::new(), payload, &*self.clock, &*self.ids)
    }

    fn commit(&self, draft: Draft) -> Result<Event, RuntimeError> {
        let summary = intake::draft_summary(&draft);
        self.commit_with(&|_: &LedgerState| Ok(draft.clone()), &|| summary.clone())
    }

    /// Builds a draft from caught-up state, admits it and appends it (see the module docs). State-changing kinds
    /// append with `expect_head` while holding the state lock and are rebuilt and retried if another writer moved
    /// the head; other kinds are appended outside the lock so concurrent submitters share a group commit.
    fn commit_with(
        &self,
        make: &dyn Fn(&LedgerState) -> Result<Draft, Rejection>,
        attempt: &dyn Fn() -> Value,
    ) -> Result<Event, RuntimeError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let mut st = self.lock();
            self.catch_up_locked(&mut st)?;
            let draft = match make(&st).and_then(|d| st.admit(&d).map(|()| d)) {
                Ok(d) => d,
                Err(rejection) => {
                    let run = attempt()
                        .get("run_id")
                        .and_then(Value::as_str)
                        .and_then(|r| r.parse::<RunId>().ok())
                        .filter(|r| st.run(*r).is_some());
                    drop(st);
                    return Err(self.refuse(rejection, attempt(), run));
                }
            };
            let serial = matches!(draft.kind, EventKind::RunCreated | EventKind::RunTransitioned);
            let run = draft.run_id.filter(|r| st.run(*r).is_some());
            let (request, mut held) = if serial {
                (AppendRequest::expecting(vec![draft], st.last_seq()), Some(st))
            } else {
                drop(st);
                (AppendRequest::new(vec![draft]), None)
            };
            match self.store.append(request) {
                Ok(mut events) => {
                    match held.as_mut() {
                        Some(st) => self.catch_up_locked(st)?,
                        None => self.catch_up()?,
                    }
                    return events.pop().ok_or_else(|| {
                        RuntimeError::Store(StoreError::Unavailable("the append returned no event".into()))
                    });
                }
                Err(StoreError::HeadConflict { .. }) => continue,
                Err(StoreError::Rejected { rejection, .. }) => {
                    drop(held);
                    return Err(self.refuse(rejection, attempt(), run));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RuntimeError::Store(StoreError::Unavailable(format!(
            "the ledger head kept moving under concurrent writers; gave up after {MAX_CONFLICT_RETRIES} tries"
        ))))
    }

    /// Records a refusal as `TransitionRejected` and returns the error to hand back to the caller.
    fn refuse(&self, rejection: Rejection, attempt: Value, run: Option<RunId>) -> RuntimeError {
        let record = intake::rejection_draft(&rejection, attempt, run, &*self.clock, &*self.ids)
            .ok()
            .and_then(|d| self.store.append(AppendRequest::new(vec![d])).ok())
            .and_then(|mut v| v.pop());
        if record.is_some() {
            let _ = self.catch_up();
        }
        RuntimeError::Rejected { rejection, record: record.map(Box::new) }
    }
}
