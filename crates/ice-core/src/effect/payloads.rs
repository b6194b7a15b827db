//! Payloads of the effect-boundary events: permits, approvals, effect outcomes, reconfiguration.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{EventId, Timestamp};
use crate::principal::Principal;
use crate::proposal::{Classification, Cost};

/// Payload of `PermitIssued`. The permit's id is the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermitIssued {
    /// The allowed (or approved) proposal.
    pub proposal_id: EventId,
    /// Who may execute it (the proposer).
    pub actor: Principal,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// blake3 of the canonical args the permit is bound to.
    pub args_hash: String,
    /// After this time the permit cannot start an effect.
    pub expires_at: Timestamp,
    /// The approval it was issued from, when policy required one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<EventId>,
}

/// Payload of `PermitRevoked`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermitRevoked {
    /// The permit.
    pub permit_id: EventId,
    /// Why.
    pub reason: String,
}

/// What happens to an approval nobody answered in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    /// It expires: the proposal stays unexecuted.
    #[default]
    Deny,
    /// It is escalated once to the `escalate_to` approvers with a fresh deadline, then expires.
    Escalate,
}

/// Payload of `ApprovalRequested`: everything the approver needs to see. The approval's id is the event id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequested {
    /// The proposal.
    pub proposal_id: EventId,
    /// Who proposed.
    pub actor: Principal,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The exact canonical args.
    pub args: Value,
    /// Their blake3; an answer must name it.
    pub args_hash: String,
    /// The runtime's classification.
    pub classification: Classification,
    /// The declared cost estimate.
    pub cost_estimate: Cost,
    /// The policies that asked for approval, and why.
    pub policies: Vec<String>,
    /// Why approval is required.
    pub reason: String,
    /// Who may answer (principal patterns: `human:alice`, `human:*`).
    pub approvers: Vec<String>,
    /// Unanswered after this, it expires or escalates.
    pub expires_at: Timestamp,
    /// What happens on timeout.
    pub on_timeout: OnTimeout,
    /// Approvers after escalation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub escalate_to: Vec<String>,
    /// How long the escalated approval stays open, in seconds.
    #[serde(default)]
    pub escalation_ttl_secs: u64,
    /// The grant that covered the proposal (used when the approval is granted); none when approval was an
    /// escalation of a missing grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<EventId>,
}

/// Payload of `ApprovalGranted` / `ApprovalDenied`; the approver is the event's origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalAnswer {
    /// The approval.
    pub approval_id: EventId,
    /// The args hash the approver saw; must equal the requested one.
    pub args_hash: String,
    /// The approver's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Payload of `ApprovalExpired` / `ApprovalEscalated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalTimeout {
    /// The approval.
    pub approval_id: EventId,
    /// New approvers (escalation only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// New deadline (escalation only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// Payload of `EffectRefused`: an attempt to execute that never started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectRefused {
    /// The permit presented, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permit_id: Option<EventId>,
    /// Stable code.
    pub code: String,
    /// Why.
    pub message: String,
    /// blake3 of the args presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_hash: Option<String>,
}

/// Payload of `EffectStarted`. Starting consumes the permit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectStarted {
    /// The permit used.
    pub permit_id: EventId,
    /// The proposal.
    pub proposal_id: EventId,
    /// The effector.
    pub effector: String,
    /// The action.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// blake3 of the canonical args executed.
    pub args_hash: String,
    /// The effector's plan (target, input hash, prior state, compensation, retry mode).
    pub plan: Value,
    /// The instance running it (`host:pid:start`), to tell a crash from an effect still in flight.
    pub instance: String,
    /// After this, an effect without an outcome is presumed unknown even if its instance cannot be checked.
    pub deadline: Timestamp,
    /// The completed effect this one compensates (rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensates: Option<EventId>,
    /// For effects made exactly-once by a journal (process, http): the journal (`machine:directory`). Only that
    /// journal knows whether the effect ran, so a retry anywhere else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

/// Payload of `EffectCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectCompleted {
    /// The `EffectStarted` event.
    pub started_id: EventId,
    /// The effector's evidence.
    pub evidence: Value,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Who recorded the outcome when it was reconciled by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<Principal>,
}

/// Payload of `EffectFailed` / `EffectUnknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectFailed {
    /// The `EffectStarted` event.
    pub started_id: EventId,
    /// Stable code.
    pub code: String,
    /// What happened.
    pub message: String,
    /// Wall time in milliseconds, when known.
    #[serde(default)]
    pub duration_ms: u64,
}

/// Payload of `Reconfigured`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconfigured {
    /// The suspended agent.
    pub principal: Principal,
    /// What changed.
    pub change: String,
}
