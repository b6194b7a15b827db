//! Authority through the runtime: proposals and their decisions, capability grants, budgets, policy activation.
//!
//! `propose` is the heart of "execution decides": the proposal is recorded, classified from the active policy
//! bundle's catalog, evaluated by Cedar, checked against grants and budgets, and the decision — with every reason,
//! the grant used, the budget reservation and any consequence — is appended in the same atomic request as the
//! proposal, under the serialised state lock.

use std::path::Path;
use std::sync::Arc;

use ice_core::authority::{AgentStatusChange, PolicyActivated, RunContained};
use ice_core::budget::{BudgetKey, BudgetReserved, BudgetSet, BudgetSettled};
use ice_core::decision::{Decision, DecisionInput, DecisionPlan, PolicyEffect, PolicyFinding, decide};
use ice_core::grant::{GrantIssued, GrantRef, check_resource};
use ice_core::proposal::canonical_args;
use ice_core::{
    Cost, Draft, ErrorCode, Event, EventId, EventKind, LedgerState, Principal, PrincipalKind, Proposal, Rejection,
    RunId, Timestamp,
};
use ice_policy::PolicyOutcome;
use serde_json::{Value, json};

use crate::caller::Caller;
use crate::policy::{CompiledPolicy, PolicyBundle, PolicyHandle};
pub use crate::proposal_input::ProposalInput;
use crate::runtime::{Runtime, RuntimeError};
use crate::verdicts::{VerdictAhead, cedar_verdict, run_state_in};

/// Longest accepted purpose text.
const MAX_PURPOSE: usize = 1024;

/// A live permit as policy activation re-evaluates it: id, holder, run and the proposal it was issued for.
type LivePermit = (EventId, Principal, Option<RunId>, Proposal);

/// A recorded decision.
#[derive(Debug, Clone)]
pub struct DecisionOutcome {
    /// The `ProposalSubmitted` event.
    pub proposal: Event,
    /// The `DecisionMade` event.
    pub decision_event: Event,
    /// Its payload.
    pub decision: Decision,
    /// Everything appended with it, in order.
    pub events: Vec<Event>,
}

impl DecisionOutcome {
    /// The JSON form the CLI (`--json`) and the API show: the decision, the proposal and decision ids, and the
    /// permit or approval it produced.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(&self.decision).unwrap_or(Value::Null);
        v["proposal_id"] = json!(self.proposal.event_id.to_string());
        v["decision_event_id"] = json!(self.decision_event.event_id.to_string());
        v["decision_seq"] = json!(self.decision_event.seq.0);
        for e in &self.events {
            match e.kind {
                EventKind::PermitIssued => v["permit_id"] = json!(e.event_id.to_string()),
                EventKind::ApprovalRequested => v["approval_id"] = json!(e.event_id.to_string()),
                _ => {}
            }
        }
        v
    }
}

/// A structurally checked proposal (see [`Runtime::prepare_proposal`]).
#[derive(Debug, Clone)]
pub struct PreparedProposal {
    actor: Principal,
    run: Option<RunId>,
    proposal: Proposal,
}

/// Terms of a grant to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantInput {
    /// Who receives it.
    pub principal: Principal,
    /// Limited to one run, or global.
    pub run: Option<RunId>,
    /// Actions or patterns.
    pub actions: Vec<String>,
    /// Resource prefix or pattern.
    pub resource: String,
    /// Time to live in microseconds.
    pub ttl_micros: Option<i64>,
    /// Most uses.
    pub max_uses: Option<u64>,
    /// Whether it may be revoked.
    pub revocable: bool,
}

impl Runtime {
    /// The compiled active policy bundle (compiled once per hash, then cached).
    pub fn active_policy(&self) -> Result<PolicyHandle, RuntimeError> {
        self.catch_up()?;
        self.active_policy_cached()
    }

    fn active_policy_cached(&self) -> Result<PolicyHandle, RuntimeError> {
        self.with_state_cached(|s| self.policy_in(s))
            .map_err(|rejection| RuntimeError::Rejected { rejection, record: None })
    }

    /// The compiled policy active in `st` (compiled bundles are cached by hash: the bundle is looked up in place,
    /// not copied).
    fn policy_in(&self, st: &LedgerState) -> Result<PolicyHandle, Rejection> {
        let active = st
            .authority()
            .policy()
            .ok_or_else(|| Rejection::new(ErrorCode::NoActivePolicy, "no policy set has been activated"))?;
        self.compiled(&active.hash, &active.bundle)
    }

    pub(crate) fn compiled(&self, hash: &str, bundle: &Value) -> Result<PolicyHandle, Rejection> {
        let mut cache = self.policy_cache();
        if let Some(p) = cache.get(hash) {
            return Ok(Arc::clone(p));
        }
        let compiled: Arc<CompiledPolicy> = Arc::new(PolicyBundle::from_value(bundle)?.compile()?);
        cache.insert(hash.to_owned(), Arc::clone(&compiled));
        Ok(compiled)
    }

    /// Checks a proposal's structure and builds its recorded form (canonical args and their hash).
    fn checked_proposal(&self, input: &ProposalInput) -> Result<(Option<RunId>, Proposal), Rejection> {
        let run = input.run.as_deref().map(str::parse::<RunId>).transpose()?;
        let (args, args_hash) = canonical_args(&input.args)?;
        check_resource(&input.resource)?;
        // Credentials never enter the ledger: literal secrets are refused before anything is recorded.
        if let Some(effectors) = self.effector_registry() {
            effectors.screen_args(&input.action, &args.to_value()).map_err(|e| Rejection::new(e.code, e.message))?;
        }
        if input.purpose.chars().count() > MAX_PURPOSE {
            return Err(Rejection::new(
                ErrorCode::BadPayloadStructure,
                format!("purpose is longer than {MAX_PURPOSE} characters"),
            ));
        }
        if input.action.is_empty() || input.action.len() > 128 {
            return Err(Rejection::new(
                ErrorCode::UnknownAction,
                format!("action `{}` is not a valid name", input.action),
            ));
        }
        let proposal = Proposal {
            action: input.action.clone(),
            resource: input.resource.clone(),
            args: args.to_value(),
            args_hash,
            purpose: input.purpose.clone(),
            cost_estimate: input.cost_estimate.clone(),
            nondeterminism: input.nondeterminism,
            compensates: input.compensates,
        };
        Ok((run, proposal))
    }

    /// Submits a proposal on the caller's behalf (agent or operator) and decides it. Structural problems (run,
    /// args, resource, unknown action, a literal credential) are refused and recorded as `TransitionRejected`;
    /// everything else gets exactly one recorded decision.
    pub fn propose(&self, caller: &Caller, input: &ProposalInput) -> Result<DecisionOutcome, RuntimeError> {
        let actor = caller.principal().clone();
        let attempt = || {
            json!({"kind": "ProposalSubmitted", "origin": actor.to_string(), "acted_by": caller.attribution().to_string(),
                "run_id": input.run.as_deref().map(|r| r.chars().take(64).collect::<String>()),
                "action": input.action.chars().take(128).collect::<String>(),
                "resource": input.resource.chars().take(256).collect::<String>(),
                "args_blake3": blake3::hash(input.args.as_bytes()).to_hex().to_string(), "args_bytes": input.args.len()})
        };
        let checked = self.checked_proposal(input).and_then(|(run, proposal)| {
            // What a promotion names is checked against the ledger before anything is decided (ICE-E1001).
            if proposal.action == crate::memory::PROMOTE_ACTION {
                self.check_promotion(&proposal)?;
            }
            Ok((run, proposal))
        });
        let (run, proposal) = match checked {
            Ok(v) => v,
            Err(r) => {
                let run = input.run.as_deref().and_then(|r| r.parse().ok());
                return Err(self.refuse(r, attempt(), run));
            }
        };
        // The proposal's own draft depends on no state: it is built (and its payload canonicalised) once, outside
        // the state lock, and reused if the decision has to be made again.
        let proposal_draft = self.caller_draft(caller, EventKind::ProposalSubmitted, run, &proposal);
        // The policy is the one active in the state the decision is made on (a policy activated by a decision
        // still in flight counts). Decided by whichever thread holds the state lock, with other callers'
        // (`crate::commit`): everything it needs is owned.
        // Cedar, too, is evaluated here, with the policy and run state the last decision saw: reused if they are
        // still what this one is decided on (`crate::verdicts`).
        let ahead = proposal_draft
            .as_ref()
            .ok()
            .and_then(|d| self.hints.verdict_ahead(caller.principal(), run, &proposal, d.time));
        let who = caller.clone();
        let make: crate::commit::SharedMake = Arc::new(move |rt: &Runtime, st: &LedgerState| {
            let policy = rt.policy_in(st)?;
            rt.decision_bundle(st, &policy, &who, run, &proposal, &proposal_draft, ahead.as_ref())
        });
        let events = self.commit_shared(&make, run, &attempt)?;
        let proposal_event = events.first().cloned();
        let decision_event = events.iter().find(|e| e.kind == EventKind::DecisionMade).cloned();
        match (proposal_event, decision_event) {
            (Some(proposal), Some(decision_event)) => {
                let decision: Decision = serde_json::from_str(decision_event.payload.as_str())
                    .map_err(|e| RuntimeError::Corrupt { seq: decision_event.seq.0, message: e.to_string() })?;
                Ok(DecisionOutcome { proposal, decision_event, decision, events })
            }
            _ => Err(RuntimeError::Corrupt {
                seq: 0,
                message: "a decision bundle lacked its proposal or decision".into(),
            }),
        }
    }

    /// The bundle the caller's proposal would be recorded as if decided on `st` (the proposal, its decision and
    /// what the decision records), recording nothing: what [`Runtime::propose`] hands to the commit pipeline.
    pub fn decision_drafts(
        &self,
        st: &LedgerState,
        caller: &Caller,
        input: &ProposalInput,
    ) -> Result<Vec<Draft>, Rejection> {
        let (run, proposal) = self.checked_proposal(input)?;
        let policy = self.policy_in(st)?;
        let proposal_draft = self.caller_draft(caller, EventKind::ProposalSubmitted, run, &proposal);
        self.decision_bundle(st, &policy, caller, run, &proposal, &proposal_draft, None)
    }

    /// Classifies, evaluates Cedar and decides (no recording). Shared by [`Runtime::propose`] and
    /// [`Runtime::dry_run`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_decision(
        &self,
        st: &LedgerState,
        policy: &CompiledPolicy,
        actor: &Principal,
        run: Option<RunId>,
        proposal: &Proposal,
        proposal_id: EventId,
        now: Timestamp,
        ahead: Option<&VerdictAhead>,
    ) -> Result<DecisionPlan, Rejection> {
        let classification = *policy.catalog.actions.get(&proposal.action).ok_or_else(|| {
            Rejection::new(
                ErrorCode::UnknownAction,
                format!("action `{}` is not in the active action catalog", proposal.action),
            )
        })?;
        let run_state = run_state_in(st, run);
        let verdict = match ahead.and_then(|a| a.reuse(policy, run_state, now)) {
            Some(verdict) => verdict.clone(),
            None => cedar_verdict(run_state, policy, actor, run, proposal, classification, now),
        };
        let finding = PolicyFinding {
            effect: match verdict.outcome {
                PolicyOutcome::Permit => PolicyEffect::Permit,
                PolicyOutcome::Forbid => PolicyEffect::Forbid,
                PolicyOutcome::NoPermit => PolicyEffect::NoPermit,
                PolicyOutcome::RequireApproval => PolicyEffect::RequireApproval,
                PolicyOutcome::Error => PolicyEffect::Error,
            },
            policies: verdict.policies,
            approval_reasons: verdict.approval_reasons,
            errors: verdict.errors,
        };
        // The reservation is never below the catalog's minimum for the action: an estimate of nothing does not
        // dodge a budget.
        let estimate = policy.catalog.reservation(&proposal.action, &proposal.cost_estimate);
        Ok(decide(
            st.authority(),
            &DecisionInput {
                proposal_id,
                actor,
                run,
                action: &proposal.action,
                resource: &proposal.resource,
                estimate: &estimate,
                classification,
                now,
                policy: &finding,
                policy_hash: &policy.hash,
                consequences: &policy.catalog.consequences,
            },
        ))
    }

    /// What would be decided for the caller's proposal now, without recording anything (`ice propose
    /// --dry-run`). The proposal id in the returned decision is a fresh id that is never recorded.
    pub fn dry_run(&self, caller: &Caller, input: &ProposalInput) -> Result<Decision, RuntimeError> {
        self.catch_up()?;
        let prepared = self.prepare_proposal(caller, input)?;
        self.decide_prepared(&prepared)
    }

    /// Checks a proposal's structure once, for repeated dry-run decisions (the decide benchmark).
    pub fn prepare_proposal(&self, caller: &Caller, input: &ProposalInput) -> Result<PreparedProposal, RuntimeError> {
        let (run, proposal) =
            self.checked_proposal(input).map_err(|rejection| RuntimeError::Rejected { rejection, record: None })?;
        Ok(PreparedProposal { actor: caller.principal().clone(), run, proposal })
    }

    /// Decides a prepared proposal against the state folded so far (no catch-up, nothing recorded): the pure
    /// in-process cost of deciding — catalog, grants, Cedar, budgets.
    pub fn decide_prepared(&self, p: &PreparedProposal) -> Result<Decision, RuntimeError> {
        let policy = self.active_policy_cached()?;
        let now = self.clock().now();
        let id = self.fresh_event_id();
        self.with_state_cached(|st| self.plan_decision(st, &policy, &p.actor, p.run, &p.proposal, id, now, None))
            .map(|plan| plan.decision)
            .map_err(|rejection| RuntimeError::Rejected { rejection, record: None })
    }

    /// Builds the atomic bundle for one proposal from caught-up state; `proposal_draft` is the proposal's own
    /// draft (or why the caller may not make it), built beforehand.
    #[allow(clippy::too_many_arguments)]
    fn decision_bundle(
        &self,
        st: &LedgerState,
        policy: &PolicyHandle,
        caller: &Caller,
        run: Option<RunId>,
        proposal: &Proposal,
        proposal_draft: &Result<Draft, Rejection>,
        ahead: Option<&VerdictAhead>,
    ) -> Result<Vec<Draft>, Rejection> {
        let actor = caller.principal();
        if !policy.catalog.actions.contains_key(&proposal.action) {
            return Err(Rejection::new(
                ErrorCode::UnknownAction,
                format!("action `{}` is not in the active action catalog", proposal.action),
            ));
        }
        if let Some(undone) = proposal.compensates {
            let completed =
                st.effects().effects().get(&undone).is_some_and(|e| {
                    e.status == ice_core::effect::EffectStatus::Completed && e.compensated_by.is_none()
                });
            if !completed {
                return Err(Rejection::new(
                    ErrorCode::NothingToRollBack,
                    format!("effect {undone} is not a completed, not yet compensated effect"),
                ));
            }
        }
        // The blob store also holds what was read and what processes printed: `fs.restore` may only put back the
        // prior content a recorded effect saved for that very path, as that effect's compensation (`ice rollback`).
        if proposal.action == "fs.restore"
            && !proposal
                .compensates
                .and_then(|undone| st.effects().effects().get(&undone))
                .is_some_and(|e| crate::rollback::is_recorded_restore(e, &proposal.args))
        {
            return Err(Rejection::new(
                ErrorCode::NothingToRollBack,
                "fs.restore only puts back a file's recorded prior content, as the compensation of the effect that \
                 replaced it; use `ice rollback`",
            ));
        }
        let proposal_draft = proposal_draft.clone()?;
        let pid = proposal_draft.event_id;
        let plan = self.plan_decision(st, policy, actor, run, proposal, pid, proposal_draft.time, ahead)?;
        self.hints.decided_with(policy, run, run_state_in(st, run));
        let rt = Principal::runtime();
        let mut drafts = vec![proposal_draft];
        for g in &plan.expired_grants {
            let r = GrantRef { grant_id: *g, proposal_id: Some(pid), reason: None };
            drafts.push(self.internal(EventKind::GrantExpired, rt.clone(), None, &r)?);
        }
        let mut decision = self.internal(EventKind::DecisionMade, rt.clone(), run, &plan.decision)?;
        decision.causes = vec![pid];
        let did = decision.event_id;
        drafts.push(decision);
        let caused = |mut d: Draft| {
            d.causes = vec![did];
            d
        };
        if let Some(g) = plan.grant_used {
            let r = GrantRef { grant_id: g, proposal_id: Some(pid), reason: None };
            drafts.push(caused(self.internal(EventKind::GrantUsed, rt.clone(), run, &r)?));
        }
        if let Some(charges) = plan.charges.clone() {
            let r = BudgetReserved { proposal_id: pid, charges };
            drafts.push(caused(self.internal(EventKind::BudgetReserved, rt.clone(), run, &r)?));
        }
        if let Some(d) = self.handoff_draft(policy, actor, run, proposal, pid, &plan, did)? {
            drafts.push(d);
        }
        if plan.suspend_agent {
            let why = format!("{actor} suspended by the decision on proposal {pid}");
            let live: Vec<EventId> = st.effects().live_permits_of(actor, self.now()).collect();
            drafts.extend(self.revoke_permit_drafts(st, &live, &why)?.into_iter().map(caused));
            let s = AgentStatusChange {
                principal: actor.clone(),
                reason: format!("consequence of {:?} on proposal {pid}", plan.decision.violation).to_lowercase(),
                proposal_id: Some(pid),
            };
            drafts.push(caused(self.internal(EventKind::AgentSuspended, rt.clone(), None, &s)?));
        }
        if plan.contain_run {
            let c = RunContained {
                reason: format!("consequence of {:?} on proposal {pid}", plan.decision.violation).to_lowercase(),
                proposal_id: Some(pid),
            };
            drafts.push(caused(self.internal(EventKind::RunContained, rt, run, &c)?));
            // Containing a run reaches what was already issued in it.
            let now = self.now();
            let live: Vec<EventId> = st
                .effects()
                .permits()
                .values()
                .filter(|p| p.run == run && run.is_some() && p.status(now) == ice_core::effect::PermitStatus::Live)
                .map(|p| p.id)
                .collect();
            let why = format!("run contained by the decision on proposal {pid}");
            drafts.extend(self.revoke_permit_drafts(st, &live, &why)?.into_iter().map(caused));
        }
        Ok(drafts)
    }

    /// Issues a capability grant (operator only).
    pub fn issue_grant(&self, caller: &Caller, input: &GrantInput) -> Result<Event, RuntimeError> {
        let attempt = || {
            json!({"kind": "GrantIssued", "origin": caller.principal().to_string(), "principal": input.principal.to_string(),
                "actions": input.actions, "resource": input.resource, "run_id": input.run.map(|r| r.to_string())})
        };
        let terms = (|| -> Result<GrantIssued, Rejection> {
            if input.actions.is_empty() || input.actions.iter().any(|a| a.trim().is_empty()) {
                return Err(Rejection::new(
                    ErrorCode::BadArgument,
                    "a grant needs at least one action (or pattern such as fs.*)",
                ));
            }
            let bare = input.resource.replace('*', "x");
            check_resource(&bare)?;
            if input.ttl_micros.is_some_and(|t| t <= 0) || input.max_uses == Some(0) {
                return Err(Rejection::new(ErrorCode::BadArgument, "ttl and max uses must be positive"));
            }
            Ok(GrantIssued {
                principal: input.principal.clone(),
                actions: input.actions.clone(),
                resource: input.resource.clone(),
                expires_at: input.ttl_micros.map(|t| self.clock().now().plus_micros(t)),
                max_uses: input.max_uses,
                revocable: input.revocable,
            })
        })();
        match terms {
            Ok(t) => self.emit_for(caller, EventKind::GrantIssued, input.run, &t),
            Err(r) => Err(self.refuse(r, attempt(), input.run)),
        }
    }

    /// Revokes a grant (operator only); takes effect for every decision after this event, and the outstanding
    /// permits it covered are revoked with it (their reservations released).
    pub fn revoke_grant(&self, caller: &Caller, grant: EventId, reason: &str) -> Result<Event, RuntimeError> {
        let r = GrantRef { grant_id: grant, proposal_id: None, reason: Some(reason.to_owned()) };
        let attempt =
            || json!({"kind": "GrantRevoked", "origin": caller.principal().to_string(), "grant_id": grant.to_string()});
        let events = self.commit_with(
            &|st: &LedgerState| {
                let first = self.caller_draft(caller, EventKind::GrantRevoked, None, &r)?;
                let why = format!("grant {grant} revoked: {reason}");
                let now = self.now();
                let covered: Vec<EventId> = st
                    .effects()
                    .permits()
                    .values()
                    .filter(|p| p.status(now) == ice_core::effect::PermitStatus::Live)
                    .filter(|p| {
                        st.authority().proposals().get(&p.terms.proposal_id).and_then(|x| x.grant) == Some(grant)
                    })
                    .map(|p| p.id)
                    .collect();
                self.with_revocations(st, first, &covered, &why)
            },
            &attempt,
        )?;
        events
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "revoke appended nothing".into() })
    }

    /// `first`, then `PermitRevoked` (and the reservation's release) for each of `permits`, caused by `first`.
    pub(crate) fn with_revocations(
        &self,
        st: &LedgerState,
        first: Draft,
        permits: &[EventId],
        why: &str,
    ) -> Result<Vec<Draft>, Rejection> {
        let cause = first.event_id;
        let mut drafts = vec![first];
        for d in self.revoke_permit_drafts(st, permits, why)? {
            let mut d = d;
            d.causes = vec![cause];
            drafts.push(d);
        }
        Ok(drafts)
    }

    /// Sets (or changes) a budget limit (operator only).
    pub fn set_budget(&self, caller: &Caller, key: BudgetKey, limit: u64) -> Result<Event, RuntimeError> {
        let run = match &key.scope {
            ice_core::budget::BudgetScope::Run { run_id } => Some(*run_id),
            _ => None,
        };
        if limit > ice_core::canonical::MAX_SAFE_INTEGER {
            let r = Rejection::new(ErrorCode::BadBudget, format!("limit {limit} is above 2^53-1"));
            return Err(self.refuse(r, json!({"kind": "BudgetSet", "limit": limit}), run));
        }
        self.emit_for(caller, EventKind::BudgetSet, run, &BudgetSet { key, limit })
    }

    /// Settles a proposal's reservation by hand (operator only), e.g. one whose permit expired before a
    /// reconciliation released it. Refused while the proposal's permit can still run or its effect has no outcome yet: effect
    /// outcomes settle their own cost.
    pub fn settle(&self, caller: &Caller, proposal: EventId, actual: Cost) -> Result<Event, RuntimeError> {
        let attempt = || json!({"kind": "BudgetSettled", "origin": caller.principal().to_string(), "proposal_id": proposal.to_string()});
        let s = BudgetSettled {
            proposal_id: proposal,
            actual,
            reason: Some(format!("settled by hand by {}", caller.principal())),
        };
        let mut events = self.commit_with(
            &|st: &LedgerState| {
                let run = st.authority().proposals().get(&proposal).and_then(|p| p.run);
                let draft = self.caller_draft(caller, EventKind::BudgetSettled, run, &s)?;
                if let Some(permit) = st.effects().permit_for(proposal) {
                    let running = permit.used_by.and_then(|e| st.effects().effects().get(&e)).is_some_and(|e| {
                        matches!(e.status, ice_core::effect::EffectStatus::Running | ice_core::effect::EffectStatus::Unknown)
                    });
                    if permit.status(self.now()) == ice_core::effect::PermitStatus::Live || running {
                        return Err(Rejection::new(
                            ErrorCode::SettleWhileLive,
                            format!("proposal {proposal} has permit {} that can still run (or an effect without an outcome)", permit.id),
                        ));
                    }
                }
                Ok(vec![draft])
            },
            &attempt,
        )?;
        events.pop().ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "settle appended nothing".into() })
    }

    /// Validates a policy directory and activates it (operator only), recording the whole bundle. Outstanding
    /// permits the new set no longer permits are revoked in the same append. On any error nothing but the refusal
    /// is recorded and the previous policy set stays in force.
    pub fn activate_policy(&self, caller: &Caller, dir: &Path) -> Result<Event, RuntimeError> {
        self.activate_policy_by(Some(caller), dir)
    }

    /// The default policy set that `ice init` activates, recorded as the runtime's own event.
    pub(crate) fn activate_initial_policy(&self, dir: &Path) -> Result<Event, RuntimeError> {
        self.activate_policy_by(None, dir)
    }

    /// [`Runtime::activate_policy`] for a bundle given as text (the API's `POST /v1/policy/activate`).
    pub fn activate_policy_bundle(&self, caller: &Caller, bundle: PolicyBundle) -> Result<Event, RuntimeError> {
        self.activate_bundle_by(Some(caller), Ok(bundle), "request body")
    }

    fn activate_policy_by(&self, caller: Option<&Caller>, dir: &Path) -> Result<Event, RuntimeError> {
        self.activate_bundle_by(caller, PolicyBundle::load_dir(dir), &dir.display().to_string())
    }

    fn activate_bundle_by(
        &self,
        caller: Option<&Caller>,
        bundle: Result<PolicyBundle, Rejection>,
        from: &str,
    ) -> Result<Event, RuntimeError> {
        let origin = caller.map_or_else(Principal::runtime, |c| c.principal().clone());
        let attempt = || json!({"kind": "PolicyActivated", "origin": origin.to_string(), "dir": from});
        let compiled = bundle.and_then(|b| {
            let c = b.compile()?;
            Ok((b, c))
        });
        let (bundle, compiled) = match compiled {
            Ok(v) => v,
            Err(r) => return Err(self.refuse(r, attempt(), None)),
        };
        let payload = PolicyActivated {
            hash: compiled.hash.clone(),
            bundle: bundle.to_value(),
            policies: compiled.engine.policy_ids(),
        };
        let compiled = Arc::new(compiled);
        self.policy_cache().insert(compiled.hash.clone(), Arc::clone(&compiled));
        // Live permits, with their proposals' args read before taking the state lock (they are few: live only).
        let live = self.live_permit_proposals()?;
        let events = self.commit_with(
            &|st: &LedgerState| {
                let first = match caller {
                    Some(c) => self.caller_draft(c, EventKind::PolicyActivated, None, &payload)?,
                    None => self.internal(EventKind::PolicyActivated, Principal::runtime(), None, &payload)?,
                };
                let forbidden = self.no_longer_permitted(st, &compiled, &live, first.time);
                self.with_revocations(st, first, &forbidden, &format!("policy {} no longer permits it", compiled.hash))
            },
            &attempt,
        )?;
        events
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "activation appended nothing".into() })
    }

    /// Live permits and the proposals they were issued for.
    fn live_permit_proposals(&self) -> Result<Vec<LivePermit>, RuntimeError> {
        let now = self.now();
        let live: Vec<(EventId, Principal, Option<RunId>, EventId)> = self.with_state(|st| {
            st.effects()
                .permits()
                .values()
                .filter(|p| p.status(now) == ice_core::effect::PermitStatus::Live)
                .map(|p| (p.id, p.terms.actor.clone(), p.run, p.terms.proposal_id))
                .collect()
        })?;
        live.into_iter().map(|(id, actor, run, pid)| Ok((id, actor, run, self.proposal_of(pid)?))).collect()
    }

    /// The permits among `live` that `policy` would not permit now (forbid, no permit or error; a permit that
    /// would now need approval stands: it was allowed or approved already).
    fn no_longer_permitted(
        &self,
        st: &LedgerState,
        policy: &CompiledPolicy,
        live: &[LivePermit],
        now: Timestamp,
    ) -> Vec<EventId> {
        live.iter()
            .filter(|(id, ..)| {
                st.effects().permits().get(id).is_some_and(|p| p.status(now) == ice_core::effect::PermitStatus::Live)
            })
            .filter(|(_, actor, run, proposal)| !self.still_permitted(st, policy, actor, *run, proposal, now))
            .map(|(id, ..)| *id)
            .collect()
    }

    /// Whether Cedar under `policy` still permits (or asks approval for) a proposal.
    pub(crate) fn still_permitted(
        &self,
        st: &LedgerState,
        policy: &CompiledPolicy,
        actor: &Principal,
        run: Option<RunId>,
        proposal: &Proposal,
        now: Timestamp,
    ) -> bool {
        let Some(classification) = policy.catalog.actions.get(&proposal.action).copied() else { return false };
        let run_state = run_state_in(st, run);
        let verdict = cedar_verdict(run_state, policy, actor, run, proposal, classification, now);
        matches!(verdict.outcome, PolicyOutcome::Permit | PolicyOutcome::RequireApproval)
    }

    /// Suspends an agent (operator only); its live permits are revoked in the same append.
    pub fn suspend_agent(&self, caller: &Caller, agent: &Principal, reason: &str) -> Result<Event, RuntimeError> {
        if agent.kind != PrincipalKind::Agent {
            let r = Rejection::new(ErrorCode::BadArgument, format!("{agent} is not an agent"));
            return Err(self.refuse(r, json!({"kind": "AgentSuspended", "principal": agent.to_string()}), None));
        }
        let s = AgentStatusChange { principal: agent.clone(), reason: reason.to_owned(), proposal_id: None };
        let attempt = || json!({"kind": "AgentSuspended", "origin": caller.principal().to_string(), "principal": agent.to_string()});
        let events = self.commit_with(
            &|st: &LedgerState| {
                let first = self.caller_draft(caller, EventKind::AgentSuspended, None, &s)?;
                let live: Vec<EventId> = st.effects().live_permits_of(agent, self.now()).collect();
                self.with_revocations(st, first, &live, &format!("{agent} suspended: {reason}"))
            },
            &attempt,
        )?;
        events
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "suspend appended nothing".into() })
    }

    /// Records what changed about a suspended agent (`Reconfigured`, operator only); resuming requires one since
    /// the suspension.
    pub fn reconfigure_agent(&self, caller: &Caller, agent: &Principal, change: &str) -> Result<Event, RuntimeError> {
        if change.trim().is_empty() {
            let r = Rejection::new(ErrorCode::ReasonRequired, "say what changed with --change \"...\"");
            return Err(self.refuse(r, json!({"kind": "Reconfigured", "principal": agent.to_string()}), None));
        }
        let r = ice_core::effect::Reconfigured { principal: agent.clone(), change: change.to_owned() };
        self.emit_for(caller, EventKind::Reconfigured, None, &r)
    }

    /// Resumes a suspended, reconfigured agent (operator only).
    pub fn resume_agent(&self, caller: &Caller, agent: &Principal, reason: &str) -> Result<Event, RuntimeError> {
        let s = AgentStatusChange { principal: agent.clone(), reason: reason.to_owned(), proposal_id: None };
        self.emit_for(caller, EventKind::AgentResumed, None, &s)
    }

    /// The current time on the runtime's clock.
    pub fn now(&self) -> Timestamp {
        self.clock().now()
    }
}
