//! Permits and human approvals: what a decision hands to the effect boundary.
//!
//! An `allow` decision is appended together with a `PermitIssued` bound to the proposal's args hash; a
//! `require_approval` decision with an `ApprovalRequested` that shows the approver the exact canonical args, the
//! classification, the cost estimate and the policies that asked. An approval is answered once, by a principal the
//! recorded rules name (never the proposer), for the args hash it was requested with; granting it records the grant
//! use, reserves the budget and issues the permit in the same append. Unanswered approvals expire or escalate
//! (once) when reconciled after their deadline.

use ice_core::budget::{BudgetReserved, BudgetSettled};
use ice_core::decision::{DecisionPlan, Verdict};
use ice_core::effect::{
    ApprovalAnswer, ApprovalRequested, ApprovalStatus, ApprovalTimeout, OnTimeout, PermitIssued, PermitRevoked,
};
use ice_core::grant::{GrantRef, GrantStatus};
use ice_core::{Draft, ErrorCode, Event, EventId, EventKind, LedgerState, Principal, Proposal, Rejection, RunId};
use serde_json::json;

use crate::caller::Caller;
use crate::policy::CompiledPolicy;
use crate::runtime::{Runtime, RuntimeError};

const MICROS_PER_SEC: i64 = 1_000_000;

fn secs(s: u64) -> i64 {
    i64::try_from(s).unwrap_or(i64::MAX / MICROS_PER_SEC).saturating_mul(MICROS_PER_SEC)
}

impl Runtime {
    /// The permit (on allow) or approval request (on require_approval) that goes with a decision.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handoff_draft(
        &self,
        policy: &CompiledPolicy,
        actor: &Principal,
        run: Option<RunId>,
        proposal: &Proposal,
        proposal_id: EventId,
        plan: &DecisionPlan,
        decision_id: EventId,
    ) -> Result<Option<Draft>, Rejection> {
        let now = self.now();
        let rt = Principal::runtime();
        let mut draft = match plan.decision.verdict {
            Verdict::Allow => {
                let p = PermitIssued {
                    proposal_id,
                    actor: actor.clone(),
                    action: proposal.action.clone(),
                    resource: proposal.resource.clone(),
                    args_hash: proposal.args_hash.clone(),
                    expires_at: now.plus_micros(secs(policy.catalog.permits.ttl_secs)),
                    approval_id: None,
                };
                self.internal(EventKind::PermitIssued, rt, run, &p)?
            }
            Verdict::RequireApproval => {
                let rules = &policy.catalog.approvals;
                let reason = plan
                    .decision
                    .reasons
                    .iter()
                    .filter(|r| matches!(r.kind.as_str(), "approval_required" | "consequence"))
                    .map(|r| r.detail.clone())
                    .collect::<Vec<_>>()
                    .join("; ");
                let a = ApprovalRequested {
                    proposal_id,
                    actor: actor.clone(),
                    action: proposal.action.clone(),
                    resource: proposal.resource.clone(),
                    args: proposal.args.clone(),
                    args_hash: proposal.args_hash.clone(),
                    classification: plan.decision.classification,
                    cost_estimate: proposal.cost_estimate.clone(),
                    policies: plan.decision.policies.clone(),
                    reason,
                    approvers: rules.approvers.clone(),
                    expires_at: now.plus_micros(secs(rules.ttl_secs)),
                    on_timeout: rules.on_timeout,
                    escalate_to: rules.escalate_to.clone(),
                    escalation_ttl_secs: rules.escalation_ttl_secs,
                    grant_id: plan.decision.grants.first().copied(),
                };
                self.internal(EventKind::ApprovalRequested, rt, run, &a)?
            }
            Verdict::Deny | Verdict::Suspend => return Ok(None),
        };
        draft.causes = vec![decision_id];
        Ok(Some(draft))
    }

    /// `PermitRevoked` for each of `permits` (live ones, found by the caller), each with the release of the
    /// reservation made for it.
    pub(crate) fn revoke_permit_drafts(
        &self,
        st: &LedgerState,
        permits: &[EventId],
        reason: &str,
    ) -> Result<Vec<Draft>, Rejection> {
        permits
            .iter()
            .copied()
            .map(|permit_id| {
                let permit = st.effects().permits().get(&permit_id);
                let run = permit.and_then(|p| p.run);
                let r = PermitRevoked { permit_id, reason: reason.to_owned() };
                let mut d = self.internal(EventKind::PermitRevoked, Principal::runtime(), run, &r)?;
                d.causes = vec![permit_id];
                let mut out = vec![d];
                // The reservation made for a permit that will never run is released with it.
                if let Some(p) = permit.filter(|p| st.authority().budgets().reservation(p.terms.proposal_id).is_some())
                {
                    out.push(self.release_draft(p.terms.proposal_id, run, permit_id, "permit revoked unused")?);
                }
                Ok(out)
            })
            .collect::<Result<Vec<Vec<Draft>>, Rejection>>()
            .map(|v| v.into_iter().flatten().collect())
    }

    /// What ends with a run, in the bundle that terminates it: its live permits are revoked, the reservations of
    /// permits that expired unused are released, and its pending approvals expire — once the run is TERMINATED no
    /// event can close them, and a reservation left open would hold its budget for ever.
    pub(crate) fn close_out_drafts(&self, st: &LedgerState, run: RunId) -> Result<Vec<Draft>, Rejection> {
        let now = self.now();
        let permits: Vec<&ice_core::effect::PermitRecord> =
            st.effects().permits().values().map(|p| &**p).filter(|p| p.run == Some(run)).collect();
        let live: Vec<EventId> =
            permits.iter().filter(|p| p.status(now) == ice_core::effect::PermitStatus::Live).map(|p| p.id).collect();
        let mut drafts = self.revoke_permit_drafts(st, &live, "run terminated")?;
        for p in permits.iter().filter(|p| p.status(now) == ice_core::effect::PermitStatus::Expired) {
            if st.authority().budgets().reservation(p.terms.proposal_id).is_some() {
                drafts.push(self.release_draft(p.terms.proposal_id, Some(run), p.id, "permit expired unused")?);
            }
        }
        for a in st.effects().approvals().values().filter(|a| a.run == Some(run) && a.status == ApprovalStatus::Pending)
        {
            let t = ApprovalTimeout { approval_id: a.id, approvers: vec![], expires_at: None };
            let mut d = self.internal(EventKind::ApprovalExpired, Principal::runtime(), Some(run), &t)?;
            d.causes = vec![a.id];
            drafts.push(d);
        }
        Ok(drafts)
    }

    /// `BudgetReleased` of a proposal's whole reservation (nothing was spent), caused by `cause`.
    pub(crate) fn release_draft(
        &self,
        proposal_id: EventId,
        run: Option<RunId>,
        cause: EventId,
        reason: &str,
    ) -> Result<Draft, Rejection> {
        let s = BudgetSettled { proposal_id, actual: ice_core::Cost::zero(), reason: Some(reason.to_owned()) };
        let mut d = self.internal(EventKind::BudgetReleased, Principal::runtime(), run, &s)?;
        d.causes = vec![cause];
        Ok(d)
    }

    /// Releases the reservations of permits that expired unused (a reservation must not outlive the chance to
    /// spend it).
    pub(crate) fn release_expired_permits(&self) -> Result<Vec<Event>, RuntimeError> {
        let now = self.now();
        let expired: Vec<(EventId, EventId, Option<RunId>)> = self.with_state(|st| {
            st.effects()
                .permits()
                .values()
                .filter(|p| p.status(now) == ice_core::effect::PermitStatus::Expired)
                .filter(|p| st.authority().budgets().reservation(p.terms.proposal_id).is_some())
                .map(|p| (p.id, p.terms.proposal_id, p.run))
                .collect()
        })?;
        let mut recorded = Vec::new();
        for (permit, proposal, run) in expired {
            recorded.extend(self.sweep_step(
                &|st: &LedgerState| {
                    if st.authority().budgets().reservation(proposal).is_none() {
                        return Err(Rejection::new(ErrorCode::UnknownProposal, "already released"));
                    }
                    Ok(vec![self.release_draft(proposal, run, permit, "permit expired unused")?])
                },
                &|| json!({"kind": "BudgetReleased", "proposal_id": proposal.to_string()}),
            )?);
        }
        Ok(recorded)
    }

    /// Approves a pending approval (approver role; a human the request names, never the proposer). `args_hash`,
    /// when given, is the hash the approver saw and must match. Granting re-evaluates what the decision depended
    /// on — the grant, the policy now in force, the budget, suspension and containment — before a permit is issued.
    pub fn approve(
        &self,
        approver: &Caller,
        approval: EventId,
        args_hash: Option<&str>,
        comment: Option<&str>,
    ) -> Result<Vec<Event>, RuntimeError> {
        self.answer(approver, approval, args_hash, comment, true)
    }

    /// Denies a pending approval (approver role, same rules as approving).
    pub fn deny_approval(
        &self,
        approver: &Caller,
        approval: EventId,
        comment: Option<&str>,
    ) -> Result<Vec<Event>, RuntimeError> {
        self.answer(approver, approval, None, comment, false)
    }

    fn answer(
        &self,
        approver: &Caller,
        approval: EventId,
        args_hash: Option<&str>,
        comment: Option<&str>,
        grant: bool,
    ) -> Result<Vec<Event>, RuntimeError> {
        // Record the expiries an answer would otherwise run into (the answer itself checks its deadline too).
        self.expire_approvals()?;
        let kind = if grant { EventKind::ApprovalGranted } else { EventKind::ApprovalDenied };
        let attempt = || {
            json!({"kind": kind.as_str(), "origin": approver.principal().to_string(),
                "acted_by": approver.attribution().to_string(), "approval_id": approval.to_string(),
                "args_hash": args_hash})
        };
        let run = self.with_state(|st| st.effects().approvals().get(&approval).and_then(|a| a.run))?;
        let policy = if grant {
            match self.active_policy() {
                Ok(p) => Some(p),
                Err(RuntimeError::Rejected { rejection, .. }) => return Err(self.refuse(rejection, attempt(), run)),
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        // The proposal's args, for re-evaluating the policy now in force (read outside the state lock).
        let proposal = match (
            grant,
            self.with_state(|st| st.effects().approvals().get(&approval).map(|a| a.request.proposal_id))?,
        ) {
            (true, Some(pid)) => Some(self.proposal_of(pid)?),
            _ => None,
        };
        self.commit_with(
            &|st: &LedgerState| {
                self.answer_drafts(st, approver, approval, args_hash, comment, policy.as_deref().zip(proposal.as_ref()))
            },
            &attempt,
        )
    }

    /// The answer and, when granting, what the permit needs: the grant use, the reservation and the permit.
    /// `granting` carries the policy in force and the proposal (absent when denying).
    fn answer_drafts(
        &self,
        st: &LedgerState,
        approver: &Caller,
        approval: EventId,
        args_hash: Option<&str>,
        comment: Option<&str>,
        granting: Option<(&CompiledPolicy, &Proposal)>,
    ) -> Result<Vec<Draft>, Rejection> {
        let record =
            st.effects().approvals().get(&approval).ok_or_else(|| {
                Rejection::new(ErrorCode::UnknownApproval, format!("approval {approval} does not exist"))
            })?;
        if record.status != ApprovalStatus::Pending {
            return Err(Rejection::new(
                ErrorCode::ApprovalClosed,
                format!("approval {approval} is {:?}, not pending", record.status).to_lowercase(),
            ));
        }
        let req = &record.request;
        let answer = ApprovalAnswer {
            approval_id: approval,
            args_hash: args_hash.unwrap_or(&req.args_hash).to_owned(),
            comment: comment.map(str::to_owned),
        };
        let kind = if granting.is_some() { EventKind::ApprovalGranted } else { EventKind::ApprovalDenied };
        let mut first = self.caller_draft(approver, kind, record.run, &answer)?;
        first.causes = vec![approval];
        // Role, approver patterns, never the proposer, args hash, deadline: admission checks the answer (the same
        // checks the fold makes) before anything of this bundle is appended.
        let aid = first.event_id;
        let mut drafts = vec![first];
        let Some((policy, proposal)) = granting else {
            return Ok(drafts);
        };
        let now = self.now();
        let rt = Principal::runtime();
        if let Some(why) = st.authority().suspended(&req.actor) {
            return Err(Rejection::new(
                ErrorCode::ResumeNotAllowed,
                format!("{} is suspended ({why}); no permit can be issued until it is resumed", req.actor),
            ));
        }
        if record.run.is_some_and(|r| st.authority().is_contained(r)) {
            return Err(Rejection::new(
                ErrorCode::IllegalTransition,
                format!(
                    "run {} is contained; no permit can be issued in it",
                    record.run.map(|r| r.to_string()).unwrap_or_default()
                ),
            ));
        }
        if !self.still_permitted(st, policy, &req.actor, record.run, proposal, now) {
            return Err(Rejection::new(
                ErrorCode::NoPermit,
                format!("the policy now in force ({}) no longer permits this proposal; propose again", policy.hash),
            ));
        }
        if let Some(grant_id) = req.grant_id {
            let live = st.authority().grants().get(&grant_id).is_some_and(|g| g.status(now) == GrantStatus::Live);
            if !live {
                return Err(Rejection::new(
                    ErrorCode::UnknownGrant,
                    format!("grant {grant_id} that covered this proposal is no longer live; propose again"),
                ));
            }
            let r = GrantRef { grant_id, proposal_id: Some(req.proposal_id), reason: None };
            let mut d = self.internal(EventKind::GrantUsed, rt.clone(), record.run, &r)?;
            d.causes = vec![aid];
            drafts.push(d);
        }
        let estimate = policy.catalog.reservation(&req.action, &req.cost_estimate);
        let charges = st.authority().budgets().plan(&req.actor, record.run, &estimate, now).map_err(|o| {
            Rejection::new(
                ErrorCode::BadBudget,
                format!(
                    "approving would overspend {}: {} spent + {} reserved + {} requested exceeds {}",
                    o.budget, o.spent, o.reserved, o.requested, o.limit
                ),
            )
        })?;
        let r = BudgetReserved { proposal_id: req.proposal_id, charges };
        let mut d = self.internal(EventKind::BudgetReserved, rt.clone(), record.run, &r)?;
        d.causes = vec![aid];
        drafts.push(d);
        let p = PermitIssued {
            proposal_id: req.proposal_id,
            actor: req.actor.clone(),
            action: req.action.clone(),
            resource: req.resource.clone(),
            args_hash: req.args_hash.clone(),
            expires_at: now.plus_micros(secs(policy.catalog.permits.ttl_secs)),
            approval_id: Some(approval),
        };
        let mut d = self.internal(EventKind::PermitIssued, rt, record.run, &p)?;
        d.causes = vec![aid];
        drafts.push(d);
        Ok(drafts)
    }

    /// Expires (or escalates once) approvals past their deadline.
    pub(crate) fn expire_approvals(&self) -> Result<Vec<Event>, RuntimeError> {
        let now = self.now();
        let overdue: Vec<EventId> = self.with_state(|st| {
            st.effects()
                .approvals()
                .values()
                .filter(|a| a.status == ApprovalStatus::Pending && now.0 > a.request.expires_at.0)
                .map(|a| a.id)
                .collect()
        })?;
        let mut recorded = Vec::new();
        for id in overdue {
            recorded.extend(self.sweep_step(
                &|st: &LedgerState| {
                    let a = st.effects().approvals().get(&id).ok_or_else(|| {
                        Rejection::new(ErrorCode::UnknownApproval, format!("approval {id} does not exist"))
                    })?;
                    let escalate = a.request.on_timeout == OnTimeout::Escalate
                        && !a.escalated
                        && !a.request.escalate_to.is_empty();
                    let (kind, t) = if escalate {
                        let until = self.now().plus_micros(secs(a.request.escalation_ttl_secs));
                        let t = ApprovalTimeout {
                            approval_id: id,
                            approvers: a.request.escalate_to.clone(),
                            expires_at: Some(until),
                        };
                        (EventKind::ApprovalEscalated, t)
                    } else {
                        (
                            EventKind::ApprovalExpired,
                            ApprovalTimeout { approval_id: id, approvers: vec![], expires_at: None },
                        )
                    };
                    let mut d = self.internal(kind, Principal::runtime(), a.run, &t)?;
                    d.causes = vec![id];
                    st.effects().check(kind, d.payload.as_str(), d.time, true, st.authority())?;
                    Ok(vec![d])
                },
                &|| json!({"kind": "ApprovalExpired", "approval_id": id.to_string()}),
            )?);
        }
        Ok(recorded)
    }
}
