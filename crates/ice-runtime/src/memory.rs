//! Memory through the runtime: candidates, governed promotion, lifecycle changes and their automatic parts.
//!
//! - `memory_propose` records an agent's candidate (`MemoryProposed`, the sources as its causes).
//! - Promotion is the action `memory.promote` (args `{candidate, namespace, supersedes?}`, resource
//!   `memory:<namespace>`), proposed and decided like any other action: grant, Cedar, budget, an approval where
//!   policy asks for one. At proposal the runtime refuses (`ICE-E1001`, recorded) a candidate whose sources are not
//!   validated domain events — a completed effect that has not been rolled back, a granted approval, a run's move to
//!   COMMITTED. Executing the permit is an internal effect: `EffectStarted`, `MemoryPromoted` (the item, with its
//!   sources, proposal, permit, approval and promoting principal), `MemorySuperseded` for the item it replaces,
//!   `EffectCompleted` and the budget settlement commit together, after the same checks as every other effect and
//!   the source check again against current state. Nothing is half done, so nothing is ever unknown.
//! - Operators deprecate, supersede and invalidate items (`memory_change`); the runtime records `MemoryExpired` for
//!   items past their TTL when it reconciles, and `MemoryInvalidated` (with the compensation as cause) in the same
//!   commit as the completed rollback of an effect an item derives from (see `boundary.rs`).

use ice_core::effect::{EffectCompleted, EffectStarted, EffectStatus, PermitRecord};
use ice_core::memory::{MemoryCandidate, MemoryChange, MemoryPromoted, MemorySource};
use ice_core::{
    Draft, ErrorCode, Event, EventId, EventKind, LedgerState, Principal, Proposal, Rejection, RunId, RunState, payloads,
};
use ice_effects::{Compensation, Evidence, Plan, RetryMode};
use ice_store::EventQuery;
use serde::Deserialize;
use serde_json::json;

use crate::boundary::{ExecOutcome, StartedEffect};
use crate::caller::Caller;
use crate::runtime::{Runtime, RuntimeError};

/// The action that promotes a candidate.
pub const PROMOTE_ACTION: &str = "memory.promote";
/// The action a grant names to let an agent read a namespace (`memory:<namespace>`); never proposed.
pub const READ_ACTION: &str = "memory.read";

/// Args of `memory.promote`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteArgs {
    candidate: EventId,
    namespace: String,
    #[serde(default)]
    supersedes: Option<EventId>,
}

fn not_validated(message: String) -> Rejection {
    Rejection::new(ErrorCode::MemorySourceNotValidated, message)
}

/// A candidate and the events it names, read from the ledger.
struct Promotion {
    args: PromoteArgs,
    candidate: MemoryCandidate,
    proposed_by: Principal,
    sources: Vec<Event>,
    /// Compensations started after the earliest source whose effect left derived state (see `validate_sources`).
    later_compensations: Vec<EventId>,
}

impl Runtime {
    /// Records an agent's memory candidate in `run`. Its sources must exist (they are the event's causes); whether
    /// they are validated is decided at promotion.
    pub fn memory_propose(
        &self,
        caller: &Caller,
        run: &str,
        candidate: &MemoryCandidate,
    ) -> Result<Event, RuntimeError> {
        let attempt = || {
            json!({"kind": "MemoryProposed", "origin": caller.principal().to_string(), "run_id": run.chars().take(64).collect::<String>(),
                "namespace": candidate.namespace.chars().take(128).collect::<String>(), "sources": candidate.sources.len()})
        };
        let run_id: RunId = match run.parse() {
            Ok(r) => r,
            Err(rejection) => return Err(self.refuse(rejection, attempt(), None)),
        };
        if let Err(rejection) = candidate.check() {
            return Err(self.refuse(rejection, attempt(), Some(run_id)));
        }
        let mut events = self.commit_with(
            &|_: &LedgerState| {
                let mut d = self.caller_draft(caller, EventKind::MemoryProposed, Some(run_id), candidate)?;
                d.causes = candidate.sources.clone();
                Ok(vec![d])
            },
            &attempt,
        )?;
        events
            .pop()
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "the candidate append returned nothing".into() })
    }

    /// Reads what a `memory.promote` proposal names and checks it as far as the ledger can say before a decision:
    /// the candidate is a `MemoryProposed` of this namespace, the resource is `memory:<namespace>`, every source is
    /// validated, and an item to supersede is ACTIVE in the same namespace.
    pub(crate) fn check_promotion(&self, proposal: &Proposal) -> Result<(), Rejection> {
        let promotion = self.read_promotion(proposal)?;
        let checked = self.with_state(|st| {
            validate_sources(st, &promotion)?;
            check_supersedes(st, &promotion)
        });
        checked.map_err(|e| Rejection::new(ErrorCode::StoreUnavailable, e.to_string()))?
    }

    fn read_promotion(&self, proposal: &Proposal) -> Result<Promotion, Rejection> {
        let args: PromoteArgs = serde_json::from_value(proposal.args.clone()).map_err(|e| {
            Rejection::new(
                ErrorCode::BadArgument,
                format!("memory.promote args are {{candidate, namespace, supersedes?}}: {e}"),
            )
        })?;
        let expected = format!("memory:{}", args.namespace);
        if proposal.resource != expected {
            return Err(Rejection::new(
                ErrorCode::ResourceMismatch,
                format!("memory.promote into namespace `{}` must name resource `{expected}`", args.namespace),
            ));
        }
        let get = |id: EventId| {
            self.store()
                .get(id)
                .map_err(|e| Rejection::new(ErrorCode::StoreUnavailable, format!("reading event {id}: {e}")))
        };
        let event = get(args.candidate)?.filter(|e| e.kind == EventKind::MemoryProposed).ok_or_else(|| {
            Rejection::new(
                ErrorCode::UnknownMemoryItem,
                format!("{} is not a memory candidate (MemoryProposed)", args.candidate),
            )
        })?;
        let candidate: MemoryCandidate = serde_json::from_str(event.payload.as_str()).map_err(|e| {
            Rejection::new(ErrorCode::BadPayloadStructure, format!("candidate {}: {e}", args.candidate))
        })?;
        if candidate.namespace != args.namespace {
            return Err(Rejection::new(
                ErrorCode::BadArgument,
                format!(
                    "candidate {} is for namespace `{}`, not `{}`",
                    args.candidate, candidate.namespace, args.namespace
                ),
            ));
        }
        let mut sources = Vec::with_capacity(candidate.sources.len());
        for id in &candidate.sources {
            sources.push(get(*id)?.ok_or_else(|| not_validated(format!("source {id} is not in the ledger")))?);
        }
        // An effect that has left derived state (its run ended) can no longer be compensated, but may have been
        // before it left: for those sources only, look for a compensation in the ledger after the source.
        let effect_of = |e: &Event| {
            (e.kind == EventKind::EffectCompleted)
                .then(|| serde_json::from_str::<EffectCompleted>(e.payload.as_str()).ok().map(|c| c.started_id))
                .flatten()
        };
        let oldest_retired = self
            .with_state(|st| {
                let retired = |e: &&Event| effect_of(e).is_some_and(|id| !st.effects().effects().contains_key(&id));
                sources.iter().filter(retired).map(|e| e.seq).min()
            })
            .map_err(|e| Rejection::new(ErrorCode::StoreUnavailable, e.to_string()))?;
        let mut later_compensations = Vec::new();
        if let Some(after) = oldest_retired {
            let query = EventQuery { after, kind: Some(EventKind::EffectStarted), ..EventQuery::default() };
            let started =
                self.read_all(&query).map_err(|e| Rejection::new(ErrorCode::StoreUnavailable, e.to_string()))?;
            later_compensations = started
                .iter()
                .filter_map(|e| serde_json::from_str::<EffectStarted>(e.payload.as_str()).ok()?.compensates)
                .collect();
        }
        Ok(Promotion { args, candidate, proposed_by: event.origin, sources, later_compensations })
    }

    /// Executes a `memory.promote` permit (see the module docs); `start_effect` has checked the permit, its holder
    /// and its args.
    pub(crate) fn promote_from_permit(
        &self,
        permit: &PermitRecord,
        proposal: &Proposal,
        args_hash: &str,
        refuse: &dyn Fn(Rejection) -> RuntimeError,
    ) -> Result<StartedEffect, RuntimeError> {
        let promotion = self.read_promotion(proposal).map_err(refuse)?;
        let policy = match self.active_policy() {
            Ok(p) => p,
            Err(RuntimeError::Rejected { rejection, .. }) => return Err(refuse(rejection)),
            Err(e) => return Err(e),
        };
        let run = permit.run;
        let plan = Plan {
            target: format!("memory:{}", promotion.args.namespace),
            input_hash: promotion.candidate.content_hash(),
            before: None,
            expected_after: None,
            compensation: Compensation::Nothing,
            retry: RetryMode::StateCheck,
        };
        let started = EffectStarted {
            permit_id: permit.id,
            proposal_id: permit.terms.proposal_id,
            effector: "memory".into(),
            action: permit.terms.action.clone(),
            resource: permit.terms.resource.clone(),
            args_hash: args_hash.to_owned(),
            plan: serde_json::to_value(&plan).unwrap_or_default(),
            instance: crate::boundary::this_instance(),
            deadline: self.now(),
            compensates: None,
            journal: None,
        };
        let events = self.commit_or(
            &|st: &LedgerState| {
                self.still_executable(st, &policy, permit, proposal)?;
                let sources = validate_sources(st, &promotion)?;
                check_supersedes(st, &promotion)?;
                let mut drafts = self.start_drafts(st, run, &started)?;
                let Some(started_id) = drafts.last().map(|d| d.event_id) else {
                    return Err(Rejection::new(ErrorCode::LedgerCorrupt, "the start bundle lacked EffectStarted"));
                };
                let item = MemoryPromoted {
                    candidate: promotion.args.candidate,
                    namespace: promotion.candidate.namespace.clone(),
                    text: promotion.candidate.text.clone(),
                    fields: promotion.candidate.fields.clone(),
                    sources,
                    proposal_id: permit.terms.proposal_id,
                    permit_id: permit.id,
                    approval_id: permit.terms.approval_id,
                    promoted_by: permit.terms.actor.clone(),
                    proposed_by: promotion.proposed_by.clone(),
                    expires_at: promotion
                        .candidate
                        .ttl_secs
                        .map(|t| self.now().plus_micros((t as i64).saturating_mul(1_000_000))),
                    supersedes: promotion.args.supersedes,
                };
                let mut promoted = self.internal(EventKind::MemoryPromoted, Principal::runtime(), run, &item)?;
                promoted.causes = vec![started_id, promotion.args.candidate];
                let item_id = promoted.event_id;
                drafts.push(promoted);
                if let Some(old) = promotion.args.supersedes {
                    let change = MemoryChange {
                        item: old,
                        reason: format!("superseded by {item_id}"),
                        superseded_by: Some(item_id),
                        cause: None,
                    };
                    let mut d = self.internal(EventKind::MemorySuperseded, Principal::runtime(), run, &change)?;
                    d.causes = vec![item_id];
                    drafts.push(d);
                }
                let evidence = Evidence {
                    output_hash: promotion.candidate.content_hash(),
                    output_bytes: promotion.candidate.text.len() as u64,
                    output_blob: None,
                    after: None,
                    bytes: 0,
                    detail: json!({"item_id": item_id.to_string()}),
                    already_applied: false,
                    tokens: None,
                };
                let completed = EffectCompleted {
                    started_id,
                    evidence: serde_json::to_value(&evidence).unwrap_or_default(),
                    duration_ms: 0,
                    resolved_by: None,
                };
                let mut outcome = self.internal(EventKind::EffectCompleted, Principal::runtime(), run, &completed)?;
                outcome.causes = vec![started_id];
                let outcome_id = outcome.event_id;
                drafts.push(outcome);
                drafts.extend(self.settlement_drafts(st, permit.terms.proposal_id, run, outcome_id)?);
                Ok(drafts)
            },
            &|r, _| refuse(r),
            &|| run,
        )?;
        let find = |k: EventKind| events.iter().find(|e| e.kind == k).cloned();
        let (Some(started_event), Some(outcome)) = (find(EventKind::EffectStarted), find(EventKind::EffectCompleted))
        else {
            return Err(RuntimeError::Corrupt {
                seq: 0,
                message: "the promotion bundle lacked its effect events".into(),
            });
        };
        let evidence = serde_json::from_str::<EffectCompleted>(outcome.payload.as_str())
            .ok()
            .and_then(|c| serde_json::from_value::<Evidence>(c.evidence).ok());
        let done =
            ExecOutcome { started: started_event, outcome, status: EffectStatus::Completed, evidence, failure: None };
        Ok(StartedEffect::done(done))
    }

    /// The settlement of a proposal's reservation with zero cost beyond one call (internal effects use nothing
    /// else), caused by `outcome`.
    fn settlement_drafts(
        &self,
        st: &LedgerState,
        proposal: EventId,
        run: Option<RunId>,
        outcome: EventId,
    ) -> Result<Vec<Draft>, Rejection> {
        let Some(_) = st.authority().budgets().reservation(proposal) else { return Ok(Vec::new()) };
        let mut actual = ice_core::Cost::zero();
        actual.set(ice_core::Dimension::Calls, 1);
        let s = ice_core::budget::BudgetSettled { proposal_id: proposal, actual, reason: None };
        let mut d = self.internal(EventKind::BudgetSettled, Principal::runtime(), run, &s)?;
        d.causes = vec![outcome];
        Ok(vec![d])
    }

    /// `MemoryInvalidated` for every ACTIVE item derived from `undone`, whose compensation completed in `cause`:
    /// recorded in the same commit as that outcome.
    pub(crate) fn invalidation_drafts(
        &self,
        st: &LedgerState,
        undone: EventId,
        cause: EventId,
    ) -> Result<Vec<Draft>, Rejection> {
        let mut drafts = Vec::new();
        for item in st.memory().derived_from_effect(undone) {
            let change = MemoryChange {
                item,
                reason: format!("the effect it derives from ({undone}) was rolled back"),
                superseded_by: None,
                cause: Some(cause),
            };
            let mut d = self.internal(EventKind::MemoryInvalidated, Principal::runtime(), None, &change)?;
            d.causes = vec![cause];
            drafts.push(d);
        }
        Ok(drafts)
    }

    /// An operator's lifecycle change: `MemoryDeprecated`, `MemorySuperseded` (with `superseded_by`) or
    /// `MemoryInvalidated`, with a reason. The item must be ACTIVE.
    pub fn memory_change(
        &self,
        caller: &Caller,
        kind: EventKind,
        item: EventId,
        reason: &str,
        superseded_by: Option<EventId>,
    ) -> Result<Event, RuntimeError> {
        if !matches!(kind, EventKind::MemoryDeprecated | EventKind::MemorySuperseded | EventKind::MemoryInvalidated) {
            return Err(RuntimeError::Rejected {
                rejection: Rejection::new(ErrorCode::BadArgument, format!("{kind} is not a memory lifecycle change")),
                record: None,
            });
        }
        let change = MemoryChange { item, reason: reason.to_owned(), superseded_by, cause: None };
        self.emit_for(caller, kind, None, &change)
    }

    /// Records `MemoryExpired` for every ACTIVE item past its TTL (part of [`Runtime::reconcile`]).
    pub(crate) fn expire_memory(&self) -> Result<Vec<Event>, RuntimeError> {
        let now = self.now();
        let due = self.with_state(|st| st.memory().due_to_expire(now))?;
        let mut recorded = Vec::new();
        for item in due {
            let change =
                MemoryChange { item, reason: "its time to live passed".into(), superseded_by: None, cause: None };
            recorded.extend(self.sweep_step(
                &|_: &LedgerState| {
                    Ok(vec![self.internal(EventKind::MemoryExpired, Principal::runtime(), None, &change)?])
                },
                &|| json!({"kind": "MemoryExpired", "item": item.to_string()}),
            )?);
        }
        Ok(recorded)
    }
}

/// Checks each source of a promotion against `st` and says what it is: an effect outcome (not rolled back, in
/// derived state or in the ledger), a granted approval, or a run's move to COMMITTED.
fn validate_sources(st: &LedgerState, p: &Promotion) -> Result<Vec<MemorySource>, Rejection> {
    let mut out = Vec::with_capacity(p.sources.len());
    for e in &p.sources {
        let effect = match e.kind {
            EventKind::EffectCompleted => {
                let c: EffectCompleted = serde_json::from_str(e.payload.as_str())
                    .map_err(|err| not_validated(format!("source {}: {err}", e.event_id)))?;
                let undone = st.effects().effects().get(&c.started_id).is_some_and(|r| r.compensated_by.is_some())
                    || p.later_compensations.contains(&c.started_id);
                if undone {
                    return Err(not_validated(format!(
                        "source {} is the outcome of effect {}, which was rolled back",
                        e.event_id, c.started_id
                    )));
                }
                Some(c.started_id)
            }
            EventKind::ApprovalGranted => None,
            EventKind::RunTransitioned
                if serde_json::from_str::<payloads::RunTransitioned>(e.payload.as_str())
                    .is_ok_and(|t| t.to == RunState::Committed) =>
            {
                None
            }
            other => {
                return Err(not_validated(format!(
                    "source {} is a {other}; memory is promoted only from completed effects, granted approvals and \
                     committed runs",
                    e.event_id
                )));
            }
        };
        out.push(MemorySource { event_id: e.event_id, kind: e.kind, effect });
    }
    Ok(out)
}

fn check_supersedes(st: &LedgerState, p: &Promotion) -> Result<(), Rejection> {
    let Some(old) = p.args.supersedes else { return Ok(()) };
    match st.memory().get(old) {
        Some(item) if item.status == ice_core::memory::MemoryStatus::Active => {
            if item.promoted.namespace != p.args.namespace {
                return Err(Rejection::new(
                    ErrorCode::BadArgument,
                    format!("item {old} is in namespace `{}`, not `{}`", item.promoted.namespace, p.args.namespace),
                ));
            }
            Ok(())
        }
        Some(item) => Err(Rejection::new(
            ErrorCode::MemoryNotActive,
            format!("item {old} is {}, not ACTIVE", item.status.as_str()),
        )),
        None => Err(Rejection::new(ErrorCode::UnknownMemoryItem, format!("no ACTIVE memory item {old}"))),
    }
}
