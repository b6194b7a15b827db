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
use ice_core::proposal::{Nondeterminism, canonical_args};
use ice_core::{
    Cost, Draft, ErrorCode, Event, EventId, EventKind, LedgerState, Principal, PrincipalKind, Proposal, Rejection,
    RunId, Timestamp,
};
use ice_policy::{PolicyOutcome, PolicyRequest};
use serde_json::{Value, json};

use crate::policy::{CompiledPolicy, PolicyBundle, PolicyHandle};
use crate::runtime::{Runtime, RuntimeError};

/// Longest accepted purpose text.
const MAX_PURPOSE: usize = 1024;

/// A proposal as submitted (untrusted).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProposalInput {
    /// Who proposes (`agent:NAME`, ...).
    pub actor: String,
    /// The run it belongs to.
    pub run: Option<String>,
    /// Action name.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// Args JSON object text.
    pub args: String,
    /// Declared purpose.
    pub purpose: String,
    /// Declared cost estimate.
    pub cost_estimate: Cost,
    /// Declared nondeterminism.
    pub nondeterminism: Nondeterminism,
    /// The completed effect this proposal undoes (set by rollback).
    pub compensates: Option<EventId>,
}

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

fn principal_from(text: &str) -> Result<Principal, Rejection> {
    text.parse()
}

impl ProposalInput {
    /// Reads a proposal from a raw `ProposalSubmitted` submission (payload fields `action`, `resource`, `args`,
    /// `purpose`, `cost_estimate`, `nondeterminism`; `args_hash` is recomputed, never trusted).
    pub fn from_raw(raw: &ice_core::RawEvent, payload: &Value) -> Self {
        let text = |k: &str| payload.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
        Self {
            actor: raw.origin.clone(),
            run: raw.run_id.clone(),
            action: text("action"),
            resource: text("resource"),
            args: payload.get("args").map_or_else(|| "{}".to_owned(), Value::to_string),
            purpose: text("purpose"),
            cost_estimate: payload
                .get("cost_estimate")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default(),
            nondeterminism: payload
                .get("nondeterminism")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default(),
            compensates: None,
        }
    }
}

impl Runtime {
    /// The compiled active policy bundle (compiled once per hash, then cached).
    pub fn active_policy(&self) -> Result<PolicyHandle, RuntimeError> {
        self.catch_up()?;
        self.active_policy_cached()
    }

    fn active_policy_cached(&self) -> Result<PolicyHandle, RuntimeError> {
        // Compiled bundles are cached by hash: look the bundle up under the state lock, without copying it.
        self.with_state_cached(|s| {
            let active = s.authority().policy().ok_or_else(|| RuntimeError::Rejected {
                rejection: Rejection::new(ErrorCode::NoActivePolicy, "no policy set has been activated"),
                record: None,
            })?;
            self.compiled(&active.hash, &active.bundle)
                .map_err(|rejection| RuntimeError::Rejected { rejection, record: None })
        })
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
    fn checked_proposal(&self, input: &ProposalInput) -> Result<(Principal, Option<RunId>, Proposal), Rejection> {
        let actor = principal_from(&input.actor)?;
        let run = input.run.as_deref().map(str::parse::<RunId>).transpose()?;
        let (args, args_hash) = canonical_args(&input.args)?;
        check_resource(&input.resource)?;
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
        Ok((actor, run, proposal))
    }

    /// Submits a proposal and decides it. Structural problems (bad actor, run, args, resource, unknown action)
    /// are refused and recorded as `TransitionRejected`; everything else gets exactly one recorded decision.
    pub fn propose(&self, input: &ProposalInput) -> Result<DecisionOutcome, RuntimeError> {
        let attempt = || {
            json!({"kind": "ProposalSubmitted", "origin": input.actor, "run_id": input.run, "action": input.action,
                "resource": input.resource, "args_blake3": blake3::hash(input.args.as_bytes()).to_hex().to_string(),
                "args_bytes": input.args.len()})
        };
        let (actor, run, proposal) = match self.checked_proposal(input) {
            Ok(v) => v,
            Err(r) => {
                let run = input.run.as_deref().and_then(|r| r.parse().ok());
                return Err(self.refuse(r, attempt(), run));
            }
        };
        let policy = match self.active_policy() {
            Ok(p) => p,
            Err(RuntimeError::Rejected { rejection, .. }) => return Err(self.refuse(rejection, attempt(), run)),
            Err(e) => return Err(e),
        };
        let events =
            self.commit_with(&|st: &LedgerState| self.decision_bundle(st, &policy, &actor, run, &proposal), &attempt)?;
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
    ) -> Result<DecisionPlan, Rejection> {
        let classification = *policy.catalog.actions.get(&proposal.action).ok_or_else(|| {
            Rejection::new(
                ErrorCode::UnknownAction,
                format!("action `{}` is not in the active action catalog", proposal.action),
            )
        })?;
        let verdict = policy.engine.evaluate(&PolicyRequest {
            principal: actor,
            action: &proposal.action,
            resource: &proposal.resource,
            run_id: run,
            run_state: run.and_then(|r| st.run(r)).map(|r| r.state),
            classification,
            cost: &proposal.cost_estimate,
            time: now,
            args: &proposal.args,
        });
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
        Ok(decide(
            st.authority(),
            &DecisionInput {
                proposal_id,
                actor,
                run,
                action: &proposal.action,
                resource: &proposal.resource,
                estimate: &proposal.cost_estimate,
                classification,
                now,
                policy: &finding,
                policy_hash: &policy.hash,
                consequences: &policy.catalog.consequences,
            },
        ))
    }

    /// What would be decided for this proposal now, without recording anything (`ice propose --dry-run`).
    /// The proposal id in the returned decision is a fresh id that is never recorded.
    pub fn dry_run(&self, input: &ProposalInput) -> Result<Decision, RuntimeError> {
        self.catch_up()?;
        let prepared = self.prepare_proposal(input)?;
        self.decide_prepared(&prepared)
    }

    /// Checks a proposal's structure once, for repeated dry-run decisions (the decide benchmark).
    pub fn prepare_proposal(&self, input: &ProposalInput) -> Result<PreparedProposal, RuntimeError> {
        let (actor, run, proposal) =
            self.checked_proposal(input).map_err(|rejection| RuntimeError::Rejected { rejection, record: None })?;
        Ok(PreparedProposal { actor, run, proposal })
    }

    /// Decides a prepared proposal against the state folded so far (no catch-up, nothing recorded): the pure
    /// in-process cost of deciding — catalog, grants, Cedar, budgets.
    pub fn decide_prepared(&self, p: &PreparedProposal) -> Result<Decision, RuntimeError> {
        let policy = self.active_policy_cached()?;
        let now = self.clock().now();
        let id = self.fresh_event_id();
        self.with_state_cached(|st| self.plan_decision(st, &policy, &p.actor, p.run, &p.proposal, id, now))
            .map(|plan| plan.decision)
            .map_err(|rejection| RuntimeError::Rejected { rejection, record: None })
    }

    /// Builds the atomic bundle for one proposal from caught-up state.
    fn decision_bundle(
        &self,
        st: &LedgerState,
        policy: &CompiledPolicy,
        actor: &Principal,
        run: Option<RunId>,
        proposal: &Proposal,
    ) -> Result<Vec<Draft>, Rejection> {
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
        let proposal_draft = self.internal(EventKind::ProposalSubmitted, actor.clone(), run, proposal)?;
        let pid = proposal_draft.event_id;
        let plan = self.plan_decision(st, policy, actor, run, proposal, pid, proposal_draft.time)?;
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
            drafts.extend(self.revoke_permits_drafts(st, actor, &why)?.into_iter().map(caused));
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
        }
        Ok(drafts)
    }

    /// Issues a capability grant. Only humans and the runtime may issue grants.
    pub fn issue_grant(&self, issuer: &Principal, input: &GrantInput) -> Result<Event, RuntimeError> {
        let attempt = || {
            json!({"kind": "GrantIssued", "origin": issuer.to_string(), "principal": input.principal.to_string(),
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
            Ok(t) => self.emit(EventKind::GrantIssued, issuer.clone(), input.run, &t),
            Err(r) => Err(self.refuse(r, attempt(), input.run)),
        }
    }

    /// Revokes a grant; takes effect for every decision after this event.
    pub fn revoke_grant(&self, actor: &Principal, grant: EventId, reason: &str) -> Result<Event, RuntimeError> {
        let r = GrantRef { grant_id: grant, proposal_id: None, reason: Some(reason.to_owned()) };
        self.emit(EventKind::GrantRevoked, actor.clone(), None, &r)
    }

    /// Sets (or changes) a budget limit.
    pub fn set_budget(&self, actor: &Principal, key: BudgetKey, limit: u64) -> Result<Event, RuntimeError> {
        let run = match &key.scope {
            ice_core::budget::BudgetScope::Run { run_id } => Some(*run_id),
            _ => None,
        };
        if limit > ice_core::canonical::MAX_SAFE_INTEGER {
            let r = Rejection::new(ErrorCode::BadBudget, format!("limit {limit} is above 2^53-1"));
            return Err(self.refuse(r, json!({"kind": "BudgetSet", "limit": limit}), run));
        }
        self.emit(EventKind::BudgetSet, actor.clone(), run, &BudgetSet { key, limit })
    }

    /// Settles a proposal's reservation with its actual cost (releasing the unused part). Effect outcomes call
    /// this; until effectors exist it is also exposed as `ice budget settle`.
    pub fn settle(&self, actor: &Principal, proposal: EventId, actual: Cost) -> Result<Event, RuntimeError> {
        let run = self.with_state(|s| s.authority().proposals().get(&proposal).and_then(|p| p.run))?;
        let s = BudgetSettled { proposal_id: proposal, actual, reason: None };
        self.emit(EventKind::BudgetSettled, actor.clone(), run, &s)
    }

    /// Validates a policy directory and activates it, recording the whole bundle. On any error nothing but the
    /// refusal is recorded and the previous policy set stays in force.
    pub fn activate_policy(&self, actor: &Principal, dir: &Path) -> Result<Event, RuntimeError> {
        let attempt =
            || json!({"kind": "PolicyActivated", "origin": actor.to_string(), "dir": dir.display().to_string()});
        let compiled = PolicyBundle::load_dir(dir).and_then(|b| {
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
        self.policy_cache().insert(compiled.hash.clone(), Arc::new(compiled));
        self.emit(EventKind::PolicyActivated, actor.clone(), None, &payload)
    }

    /// Suspends an agent by command.
    pub fn suspend_agent(&self, actor: &Principal, agent: &Principal, reason: &str) -> Result<Event, RuntimeError> {
        if agent.kind != PrincipalKind::Agent {
            let r = Rejection::new(ErrorCode::BadArgument, format!("{agent} is not an agent"));
            return Err(self.refuse(r, json!({"kind": "AgentSuspended", "principal": agent.to_string()}), None));
        }
        let s = AgentStatusChange { principal: agent.clone(), reason: reason.to_owned(), proposal_id: None };
        let attempt = || json!({"kind": "AgentSuspended", "origin": actor.to_string(), "principal": agent.to_string()});
        let events = self.commit_with(
            &|st: &LedgerState| {
                let first = self.internal(EventKind::AgentSuspended, actor.clone(), None, &s)?;
                let sid = first.event_id;
                let mut drafts = vec![first];
                let why = format!("{agent} suspended: {reason}");
                for mut d in self.revoke_permits_drafts(st, agent, &why)? {
                    d.causes = vec![sid];
                    drafts.push(d);
                }
                Ok(drafts)
            },
            &attempt,
        )?;
        events
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: "suspend appended nothing".into() })
    }

    /// Records what changed about a suspended agent (`Reconfigured`); resuming requires one since the suspension.
    pub fn reconfigure_agent(&self, actor: &Principal, agent: &Principal, change: &str) -> Result<Event, RuntimeError> {
        if change.trim().is_empty() {
            let r = Rejection::new(ErrorCode::ReasonRequired, "say what changed with --change \"...\"");
            return Err(self.refuse(r, json!({"kind": "Reconfigured", "principal": agent.to_string()}), None));
        }
        let r = ice_core::effect::Reconfigured { principal: agent.clone(), change: change.to_owned() };
        self.emit(EventKind::Reconfigured, actor.clone(), None, &r)
    }

    /// Resumes a suspended, reconfigured agent. Only humans (or the runtime) hold the authority to resume.
    pub fn resume_agent(&self, actor: &Principal, agent: &Principal, reason: &str) -> Result<Event, RuntimeError> {
        if !matches!(actor.kind, PrincipalKind::Human | PrincipalKind::Runtime) {
            let r = Rejection::new(ErrorCode::OriginNotAuthorized, format!("{actor} may not resume agents"));
            return Err(self.refuse(r, json!({"kind": "AgentResumed", "principal": agent.to_string()}), None));
        }
        let s = AgentStatusChange { principal: agent.clone(), reason: reason.to_owned(), proposal_id: None };
        self.emit(EventKind::AgentResumed, actor.clone(), None, &s)
    }

    /// The current time on the runtime's clock.
    pub fn now(&self) -> Timestamp {
        self.clock().now()
    }
}
