//! Derived effect-boundary state: execution permits, human approvals, effects and their outcomes, and agents'
//! reconfigurations — folded from effect- and approval-family events.
//!
//! The rules that keep the boundary single-use live in [`EffectState::check`], which both admission and the fold
//! run: a permit starts at most one effect, an approval is answered at most once and only with the args hash it was
//! requested for, an outcome closes a started effect at most once. Because state-changing appends are serialised
//! (see `ice-runtime`), these hold across threads and across `ice` instances sharing one ledger.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authority::AuthorityState;
use crate::decision::Verdict;
use crate::error::{ErrorCode, Rejection};
use crate::event::Event;
use crate::hashed::HashedMap;
use crate::ids::{EventId, RunId, Timestamp};
use crate::kind::EventKind;
use crate::principal::Principal;

mod payloads;

pub use payloads::{
    ApprovalAnswer, ApprovalRequested, ApprovalTimeout, EffectCompleted, EffectFailed, EffectRefused, EffectStarted,
    OnTimeout, PermitIssued, PermitRevoked, Reconfigured,
};

/// Where a permit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermitStatus {
    /// Usable until it expires.
    Live,
    /// Its effect started.
    Used,
    /// Revoked before use.
    Revoked,
    /// Past its expiry, unused.
    Expired,
}

/// A permit as derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermitRecord {
    /// Id (the `PermitIssued` event id).
    pub id: EventId,
    /// Its run.
    pub run: Option<RunId>,
    /// Terms.
    pub terms: PermitIssued,
    /// The effect it started.
    pub used_by: Option<EventId>,
    /// Why it was revoked.
    pub revoked: Option<String>,
}

impl PermitRecord {
    /// Status at `now`.
    pub fn status(&self, now: Timestamp) -> PermitStatus {
        if self.used_by.is_some() {
            PermitStatus::Used
        } else if self.revoked.is_some() {
            PermitStatus::Revoked
        } else if now.0 > self.terms.expires_at.0 {
            PermitStatus::Expired
        } else {
            PermitStatus::Live
        }
    }
}

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for an answer.
    Pending,
    /// Approved.
    Granted,
    /// Denied.
    Denied,
    /// Nobody answered in time.
    Expired,
}

/// An approval as derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Id (the `ApprovalRequested` event id).
    pub id: EventId,
    /// Its run.
    pub run: Option<RunId>,
    /// The request.
    pub request: ApprovalRequested,
    /// Status.
    pub status: ApprovalStatus,
    /// Whether it was escalated.
    pub escalated: bool,
    /// Who answered.
    pub answered_by: Option<Principal>,
}

/// Where an effect stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectStatus {
    /// Started, no outcome yet.
    Running,
    /// Completed with evidence.
    Completed,
    /// Failed.
    Failed,
    /// Started but its outcome was lost (crash); awaiting reconciliation.
    Unknown,
}

/// An effect as derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRecord {
    /// Id (the `EffectStarted` event id).
    pub id: EventId,
    /// Its run.
    pub run: Option<RunId>,
    /// When it started.
    pub started_at: Timestamp,
    /// What started.
    pub started: EffectStarted,
    /// Status.
    pub status: EffectStatus,
    /// The outcome event (`EffectCompleted` / `EffectFailed`).
    pub outcome: Option<EventId>,
    /// The evidence, once completed.
    pub evidence: Option<Value>,
    /// The completed compensation that undid it.
    pub compensated_by: Option<EventId>,
}

/// Permits, approvals, effects and reconfigurations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EffectState {
    permits: HashedMap<EventId, PermitRecord>,
    permit_of_proposal: imbl::OrdMap<EventId, EventId>,
    approvals: HashedMap<EventId, ApprovalRecord>,
    approval_of_proposal: imbl::OrdMap<EventId, EventId>,
    effects: HashedMap<EventId, EffectRecord>,
    reconfigured: BTreeSet<Principal>,
}

fn parse<T: serde::de::DeserializeOwned>(kind: EventKind, payload: &str) -> Result<T, Rejection> {
    serde_json::from_str(payload)
        .map_err(|err| Rejection::new(ErrorCode::BadPayloadStructure, format!("{kind} payload: {err}")))
}

impl EffectState {
    /// Permits by id.
    pub fn permits(&self) -> &imbl::OrdMap<EventId, std::sync::Arc<PermitRecord>> {
        self.permits.as_map()
    }

    /// The permit issued for a proposal.
    pub fn permit_for(&self, proposal: EventId) -> Option<&PermitRecord> {
        self.permit_of_proposal.get(&proposal).and_then(|p| self.permits.get(p))
    }

    /// Approvals by id.
    pub fn approvals(&self) -> &imbl::OrdMap<EventId, std::sync::Arc<ApprovalRecord>> {
        self.approvals.as_map()
    }

    /// The approval requested for a proposal.
    pub fn approval_for(&self, proposal: EventId) -> Option<&ApprovalRecord> {
        self.approval_of_proposal.get(&proposal).and_then(|a| self.approvals.get(a))
    }

    /// Effects by id (the `EffectStarted` event id).
    pub fn effects(&self) -> &imbl::OrdMap<EventId, std::sync::Arc<EffectRecord>> {
        self.effects.as_map()
    }

    /// Digest work ahead of [`EffectState::root_parts`] (see [`crate::LedgerState::hash_changed`]).
    pub fn hash_changed(&self, into: &mut crate::hashed::Adoptions<crate::LedgerState>) -> Result<(), Rejection> {
        self.permits.hash_changed(into, |st| &st.effects().permits)?;
        self.approvals.hash_changed(into, |st| &st.effects().approvals)?;
        self.effects.hash_changed(into, |st| &st.effects().effects)
    }

    /// Feeds this state's part of the state root to `h` (the `*_of_proposal` indexes are derived from the maps and
    /// left out).
    pub fn root_parts(&self, h: &mut blake3::Hasher) -> Result<(), Rejection> {
        self.permits.digest("permits", h)?;
        self.approvals.digest("approvals", h)?;
        self.effects.digest("effects", h)?;
        let value = serde_json::to_value(&self.reconfigured)
            .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("state cannot be encoded: {e}")))?;
        crate::state::hash_canonical("reconfigured", &value, h)
    }

    /// Whether a suspended agent has a `Reconfigured` record since its suspension.
    pub fn is_reconfigured(&self, agent: &Principal) -> bool {
        self.reconfigured.contains(agent)
    }

    /// The approver rule for an `ApprovalGranted` / `ApprovalDenied` whose origin is `answerer`: a human the
    /// request's approver patterns name (the escalation's, once escalated), and never the proposer — neither the
    /// agent nor the operator who proposed for it.
    pub fn check_answerer(
        &self,
        payload: &str,
        answerer: &Principal,
        authority: &AuthorityState,
    ) -> Result<(), Rejection> {
        let a: ApprovalAnswer = parse(EventKind::ApprovalGranted, payload)?;
        let Some(record) = self.approvals.get(&a.approval_id) else {
            return Err(Rejection::new(
                ErrorCode::UnknownApproval,
                format!("approval {} does not exist", a.approval_id),
            ));
        };
        let req = &record.request;
        let proposed_by = authority.proposals().get(&req.proposal_id).and_then(|p| p.proposed_by.as_ref());
        if answerer.kind != crate::principal::PrincipalKind::Human
            || *answerer == req.actor
            || proposed_by == Some(answerer)
            || !req.approvers.iter().any(|p| principal_matches(p, answerer))
        {
            return Err(Rejection::new(
                ErrorCode::ApproverNotAuthorized,
                format!(
                    "{answerer} may not answer approval {} for {} (approvers: {}; never the proposer)",
                    a.approval_id,
                    req.actor,
                    req.approvers.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Retires a settled proposal's permit and approval (see [`crate::state::retire`]).
    pub(crate) fn retire_of_proposal(&mut self, proposal: EventId) -> Result<(), Rejection> {
        if let Some(permit) = self.permit_of_proposal.remove(&proposal) {
            self.permits.retire(&permit)?;
        }
        if let Some(approval) = self.approval_of_proposal.remove(&proposal) {
            self.approvals.retire(&approval)?;
        }
        Ok(())
    }

    /// Retires an effect that has its outcome and can no longer be compensated.
    pub(crate) fn retire_effect(&mut self, id: EventId) -> Result<(), Rejection> {
        self.effects.retire(&id).map(|_| ())
    }

    /// Live permits held by an agent (what a suspension revokes).
    pub fn live_permits_of<'a>(&'a self, agent: &'a Principal, now: Timestamp) -> impl Iterator<Item = EventId> + 'a {
        self.permits
            .values()
            .filter(move |p| &p.terms.actor == agent && p.status(now) == PermitStatus::Live)
            .map(|p| p.id)
    }

    /// Checks the single-use rules for an event of this kind against current state (admission and fold alike;
    /// expiry only when `admitting`, as for grants).
    pub fn check(
        &self,
        kind: EventKind,
        payload: &str,
        now: Timestamp,
        admitting: bool,
        authority: &AuthorityState,
    ) -> Result<(), Rejection> {
        match kind {
            EventKind::PermitIssued => {
                let p: PermitIssued = parse(kind, payload)?;
                let Some(proposal) = authority.proposals().get(&p.proposal_id) else {
                    return Err(Rejection::new(
                        ErrorCode::UnknownProposal,
                        format!("proposal {} does not exist", p.proposal_id),
                    ));
                };
                let approved = p
                    .approval_id
                    .and_then(|a| self.approvals.get(&a))
                    .is_some_and(|a| a.status == ApprovalStatus::Granted && a.request.proposal_id == p.proposal_id);
                if proposal.verdict != Some(Verdict::Allow) && !approved {
                    return Err(Rejection::new(
                        ErrorCode::NoPermit,
                        format!("proposal {} was not allowed or approved; no permit can be issued", p.proposal_id),
                    ));
                }
                if proposal.args_hash != p.args_hash {
                    return Err(Rejection::new(ErrorCode::ArgsMismatch, "a permit must bind the proposal's args hash"));
                }
                if self.permit_of_proposal.contains_key(&p.proposal_id) {
                    return Err(Rejection::new(
                        ErrorCode::PermitUsed,
                        format!("proposal {} already has a permit", p.proposal_id),
                    ));
                }
                Ok(())
            }
            EventKind::PermitRevoked => {
                let r: PermitRevoked = parse(kind, payload)?;
                let permit = self.permit(r.permit_id)?;
                if permit.used_by.is_some() || permit.revoked.is_some() {
                    return Err(Rejection::new(
                        ErrorCode::PermitUsed,
                        format!("permit {} is no longer live; it cannot be revoked", r.permit_id),
                    ));
                }
                Ok(())
            }
            EventKind::EffectStarted => {
                let s: EffectStarted = parse(kind, payload)?;
                let permit = self.permit(s.permit_id)?;
                let status = permit.status(now);
                let refused = |code, what: &str| Err(Rejection::new(code, format!("permit {} {what}", s.permit_id)));
                match status {
                    PermitStatus::Used => return refused(ErrorCode::PermitUsed, "was already used"),
                    PermitStatus::Revoked => return refused(ErrorCode::PermitRevoked, "was revoked"),
                    PermitStatus::Expired if admitting => return refused(ErrorCode::PermitExpired, "has expired"),
                    _ => {}
                }
                if permit.terms.args_hash != s.args_hash {
                    return refused(ErrorCode::ArgsMismatch, "is bound to other arguments");
                }
                if permit.terms.proposal_id != s.proposal_id || permit.terms.action != s.action {
                    return refused(ErrorCode::ArgsMismatch, "was issued for another proposal or action");
                }
                Ok(())
            }
            EventKind::EffectCompleted => {
                let c: EffectCompleted = parse(kind, payload)?;
                self.open_effect(c.started_id)
            }
            EventKind::EffectFailed | EventKind::EffectUnknown => {
                let f: EffectFailed = parse(kind, payload)?;
                self.open_effect(f.started_id)?;
                if kind == EventKind::EffectUnknown
                    && self.effects.get(&f.started_id).is_some_and(|e| e.status == EffectStatus::Unknown)
                {
                    return Err(Rejection::new(
                        ErrorCode::OutcomeUnknown,
                        format!("effect {} is already marked unknown", f.started_id),
                    ));
                }
                Ok(())
            }
            EventKind::ApprovalGranted | EventKind::ApprovalDenied => {
                let a: ApprovalAnswer = parse(kind, payload)?;
                let approval = self.pending(a.approval_id)?;
                if admitting && now.0 > approval.request.expires_at.0 {
                    return Err(Rejection::new(
                        ErrorCode::ApprovalClosed,
                        format!("approval {} expired at {}", a.approval_id, approval.request.expires_at),
                    ));
                }
                if a.args_hash != approval.request.args_hash {
                    return Err(Rejection::new(
                        ErrorCode::ArgsMismatch,
                        format!(
                            "approval {} is for args {}, not {}",
                            a.approval_id, approval.request.args_hash, a.args_hash
                        ),
                    ));
                }
                Ok(())
            }
            EventKind::ApprovalExpired | EventKind::ApprovalEscalated => {
                let t: ApprovalTimeout = parse(kind, payload)?;
                let approval = self.pending(t.approval_id)?;
                if kind == EventKind::ApprovalEscalated && approval.escalated {
                    return Err(Rejection::new(
                        ErrorCode::ApprovalClosed,
                        format!("approval {} was already escalated once", t.approval_id),
                    ));
                }
                Ok(())
            }
            EventKind::Reconfigured => {
                let r: Reconfigured = parse(kind, payload)?;
                if authority.suspended(&r.principal).is_none() {
                    return Err(Rejection::new(
                        ErrorCode::ResumeNotAllowed,
                        format!("{} is not suspended; there is nothing to reconfigure", r.principal),
                    ));
                }
                Ok(())
            }
            EventKind::AgentResumed => {
                let s: crate::authority::AgentStatusChange = parse(kind, payload)?;
                if authority.suspended(&s.principal).is_none() {
                    return Err(Rejection::new(
                        ErrorCode::ResumeNotAllowed,
                        format!("{} is not suspended", s.principal),
                    ));
                }
                if !self.reconfigured.contains(&s.principal) {
                    return Err(Rejection::new(
                        ErrorCode::ResumeNotAllowed,
                        format!("{} has no Reconfigured record since it was suspended", s.principal),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn permit(&self, id: EventId) -> Result<&PermitRecord, Rejection> {
        self.permits.get(&id).ok_or_else(|| Rejection::new(ErrorCode::NoPermit, format!("permit {id} does not exist")))
    }

    fn pending(&self, id: EventId) -> Result<&ApprovalRecord, Rejection> {
        let a = self
            .approvals
            .get(&id)
            .ok_or_else(|| Rejection::new(ErrorCode::UnknownApproval, format!("approval {id} does not exist")))?;
        if a.status != ApprovalStatus::Pending {
            return Err(Rejection::new(
                ErrorCode::ApprovalClosed,
                format!("approval {id} is {:?}, not pending", a.status).to_lowercase(),
            ));
        }
        Ok(a)
    }

    fn open_effect(&self, id: EventId) -> Result<(), Rejection> {
        match self.effects.get(&id) {
            None => Err(Rejection::new(ErrorCode::NotFound, format!("effect {id} was never started"))),
            Some(e) if matches!(e.status, EffectStatus::Completed | EffectStatus::Failed) => Err(Rejection::new(
                ErrorCode::EffectConflict,
                format!("effect {id} already has an outcome ({:?})", e.status).to_lowercase(),
            )),
            Some(_) => Ok(()),
        }
    }

    /// The kinds that shape permits, approvals and effects (what [`EffectState::apply`] folds into them).
    pub const BOUNDARY_KINDS: [EventKind; 11] = [
        EventKind::PermitIssued,
        EventKind::PermitRevoked,
        EventKind::EffectStarted,
        EventKind::EffectCompleted,
        EventKind::EffectFailed,
        EventKind::EffectUnknown,
        EventKind::ApprovalRequested,
        EventKind::ApprovalGranted,
        EventKind::ApprovalDenied,
        EventKind::ApprovalExpired,
        EventKind::ApprovalEscalated,
    ];

    /// Folds one event (already checked).
    pub fn apply(&mut self, e: &Event) -> Result<(), Rejection> {
        let payload = e.payload.as_str();
        match e.kind {
            EventKind::PermitIssued => {
                let terms: PermitIssued = parse(e.kind, payload)?;
                self.permit_of_proposal.insert(terms.proposal_id, e.event_id);
                let record = PermitRecord { id: e.event_id, run: e.run_id, terms, used_by: None, revoked: None };
                self.permits.insert(e.event_id, record);
            }
            EventKind::PermitRevoked => {
                let r: PermitRevoked = parse(e.kind, payload)?;
                if let Some(p) = self.permits.get_mut(&r.permit_id) {
                    p.revoked = Some(r.reason);
                }
            }
            EventKind::EffectStarted => {
                let started: EffectStarted = parse(e.kind, payload)?;
                if let Some(p) = self.permits.get_mut(&started.permit_id) {
                    p.used_by = Some(e.event_id);
                }
                let record = EffectRecord {
                    id: e.event_id,
                    run: e.run_id,
                    started_at: e.time,
                    started,
                    status: EffectStatus::Running,
                    outcome: None,
                    evidence: None,
                    compensated_by: None,
                };
                self.effects.insert(e.event_id, record);
            }
            EventKind::EffectCompleted => {
                let c: EffectCompleted = parse(e.kind, payload)?;
                let compensates = self.effects.get_mut(&c.started_id).and_then(|eff| {
                    eff.status = EffectStatus::Completed;
                    eff.outcome = Some(e.event_id);
                    eff.evidence = Some(c.evidence);
                    eff.started.compensates
                });
                if let Some(undone) = compensates.and_then(|id| self.effects.get_mut(&id)) {
                    undone.compensated_by = Some(e.event_id);
                }
            }
            EventKind::EffectFailed | EventKind::EffectUnknown => {
                let f: EffectFailed = parse(e.kind, payload)?;
                if let Some(eff) = self.effects.get_mut(&f.started_id) {
                    if e.kind == EventKind::EffectFailed {
                        eff.status = EffectStatus::Failed;
                        eff.outcome = Some(e.event_id);
                    } else {
                        eff.status = EffectStatus::Unknown;
                    }
                }
            }
            EventKind::ApprovalRequested => {
                let request: ApprovalRequested = parse(e.kind, payload)?;
                self.approval_of_proposal.insert(request.proposal_id, e.event_id);
                let record = ApprovalRecord {
                    id: e.event_id,
                    run: e.run_id,
                    request,
                    status: ApprovalStatus::Pending,
                    escalated: false,
                    answered_by: None,
                };
                self.approvals.insert(e.event_id, record);
            }
            EventKind::ApprovalGranted | EventKind::ApprovalDenied => {
                let a: ApprovalAnswer = parse(e.kind, payload)?;
                if let Some(r) = self.approvals.get_mut(&a.approval_id) {
                    r.status = if e.kind == EventKind::ApprovalGranted {
                        ApprovalStatus::Granted
                    } else {
                        ApprovalStatus::Denied
                    };
                    r.answered_by = Some(e.origin.clone());
                }
            }
            EventKind::ApprovalExpired => {
                let t: ApprovalTimeout = parse(e.kind, payload)?;
                if let Some(r) = self.approvals.get_mut(&t.approval_id) {
                    r.status = ApprovalStatus::Expired;
                }
            }
            EventKind::ApprovalEscalated => {
                let t: ApprovalTimeout = parse(e.kind, payload)?;
                if let Some(r) = self.approvals.get_mut(&t.approval_id) {
                    r.escalated = true;
                    r.request.approvers = t.approvers;
                    if let Some(at) = t.expires_at {
                        r.request.expires_at = at;
                    }
                }
            }
            EventKind::AgentSuspended => {
                let s: crate::authority::AgentStatusChange = parse(e.kind, payload)?;
                self.reconfigured.remove(&s.principal);
            }
            EventKind::Reconfigured => {
                let r: Reconfigured = parse(e.kind, payload)?;
                self.reconfigured.insert(r.principal);
            }
            EventKind::AgentResumed => {
                let s: crate::authority::AgentStatusChange = parse(e.kind, payload)?;
                self.reconfigured.remove(&s.principal);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Whether `who` matches a principal pattern (`human:alice`, `human:*`, `*`).
pub fn principal_matches(pattern: &str, who: &Principal) -> bool {
    let text = who.to_string();
    match pattern.strip_suffix('*') {
        Some(prefix) => text.starts_with(prefix),
        None => pattern == text,
    }
}
