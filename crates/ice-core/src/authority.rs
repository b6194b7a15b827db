//! Derived authority state: proposals and their decisions, grants, budgets, suspended agents, contained runs and
//! the active policy set — folded from decision, capability and related runtime events.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::budget::{BudgetReserved, BudgetSet, BudgetSettled, Budgets};
use crate::decision::{Decision, Verdict};
use crate::error::{ErrorCode, Rejection};
use crate::event::Event;
use crate::grant::{Grant, GrantIssued, GrantRef, GrantStatus};
use crate::hashed::HashedMap;
use crate::ids::{EventId, RunId, Timestamp};
use crate::kind::EventKind;
use crate::principal::Principal;
use crate::proposal::Proposal;

/// Payload of `PolicyActivated`: the complete policy bundle (so replay needs nothing but the ledger) and its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyActivated {
    /// Hash of the bundle (policy files, schema, action catalog).
    pub hash: String,
    /// The bundle as written by `ice-runtime` (files, schema, catalog).
    pub bundle: Value,
    /// Policy ids in the set.
    pub policies: Vec<String>,
}

/// Payload of `AgentSuspended` / `AgentResumed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentStatusChange {
    /// The agent.
    pub principal: Principal,
    /// Why.
    pub reason: String,
    /// The proposal whose decision triggered it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<EventId>,
}

/// Payload of `RunContained`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunContained {
    /// Why.
    pub reason: String,
    /// The proposal whose decision triggered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal_id: Option<EventId>,
}

/// A proposal as derived state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalRecord {
    /// Id (the `ProposalSubmitted` event id).
    pub id: EventId,
    /// Who proposed.
    pub actor: Principal,
    /// In which run.
    pub run: Option<RunId>,
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// blake3 of the canonical args.
    pub args_hash: String,
    /// When.
    pub submitted_at: Timestamp,
    /// The decision, once made.
    pub verdict: Option<Verdict>,
    /// The grant the decision used (what revoking that grant reaches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<EventId>,
    /// The authenticated principal behind the proposal when it differs from `actor` (an operator acting for the
    /// agent): it may no more approve the proposal than the agent may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposed_by: Option<Principal>,
}

/// The policy set in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivePolicy {
    /// Bundle hash.
    pub hash: String,
    /// The bundle.
    pub bundle: std::sync::Arc<Value>,
    /// The `PolicyActivated` event.
    pub event_id: EventId,
}

/// Everything the decision procedure reads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AuthorityState {
    proposals: HashedMap<EventId, ProposalRecord>,
    grants: HashedMap<EventId, Grant>,
    budgets: Budgets,
    suspended: BTreeMap<Principal, String>,
    contained: BTreeSet<RunId>,
    policy: Option<ActivePolicy>,
}

fn parse<T: serde::de::DeserializeOwned>(e_kind: EventKind, payload: &str) -> Result<T, Rejection> {
    serde_json::from_str(payload)
        .map_err(|err| Rejection::new(ErrorCode::BadPayloadStructure, format!("{e_kind} payload: {err}")))
}

impl AuthorityState {
    /// Proposals by id.
    pub fn proposals(&self) -> &imbl::OrdMap<EventId, std::sync::Arc<ProposalRecord>> {
        self.proposals.as_map()
    }

    /// Retires a settled proposal (see [`crate::state::retire`]).
    pub(crate) fn retire_proposal(&mut self, id: EventId) -> Result<(), Rejection> {
        self.proposals.retire(&id).map(|_| ())
    }

    /// Grants by id.
    pub fn grants(&self) -> &imbl::OrdMap<EventId, std::sync::Arc<Grant>> {
        self.grants.as_map()
    }

    /// Budgets.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Why the principal is suspended, if it is.
    pub fn suspended(&self, p: &Principal) -> Option<&str> {
        self.suspended.get(p).map(String::as_str)
    }

    /// Suspended principals and why.
    pub fn suspended_agents(&self) -> &BTreeMap<Principal, String> {
        &self.suspended
    }

    /// Whether the run is contained.
    pub fn is_contained(&self, run: RunId) -> bool {
        self.contained.contains(&run)
    }

    /// The active policy set.
    pub fn policy(&self) -> Option<&ActivePolicy> {
        self.policy.as_ref()
    }

    /// Digest work ahead of [`AuthorityState::root_parts`] (see [`crate::LedgerState::hash_changed`]).
    pub fn hash_changed(&self, into: &mut crate::hashed::Adoptions<crate::LedgerState>) -> Result<(), Rejection> {
        self.proposals.hash_changed(into, |st| &st.authority().proposals)?;
        self.grants.hash_changed(into, |st| &st.authority().grants)?;
        self.budgets.hash_changed(into)
    }

    /// Feeds this state's part of the state root to `h`: the large maps by cached entry hashes, the rest (budgets,
    /// suspensions, containments, the active policy's hash and event) canonically.
    pub fn root_parts(&self, h: &mut blake3::Hasher) -> Result<(), Rejection> {
        self.proposals.digest("proposals", h)?;
        self.grants.digest("grants", h)?;
        // Budgets come before the small remainder (`authority`): see `LedgerState::state_root`.
        self.budgets.root_parts(h)?;
        #[derive(Serialize)]
        struct Rest<'a> {
            suspended: &'a BTreeMap<Principal, String>,
            contained: &'a BTreeSet<RunId>,
            // The bundle is determined by its hash.
            policy: Option<(&'a str, EventId)>,
        }
        let rest = Rest {
            suspended: &self.suspended,
            contained: &self.contained,
            policy: self.policy.as_ref().map(|p| (p.hash.as_str(), p.event_id)),
        };
        let value = serde_json::to_value(&rest)
            .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("state cannot be encoded: {e}")))?;
        crate::state::hash_canonical("authority", &value, h)
    }

    /// Checks the authority rules an event of this kind must satisfy against current state (used by both
    /// admission and the fold; none of these can race, because decisions are serialised). Time-dependent rules
    /// (a grant's expiry) are checked only when `admitting`: sealing may lift an event's time past the moment
    /// it was admitted at, and the fold must still accept it.
    pub fn check(&self, kind: EventKind, payload: &str, now: Timestamp, admitting: bool) -> Result<(), Rejection> {
        match kind {
            EventKind::DecisionMade => {
                let d: Decision = parse(kind, payload)?;
                match self.proposals.get(&d.proposal_id) {
                    None => Err(Rejection::new(
                        ErrorCode::UnknownProposal,
                        format!("proposal {} does not exist", d.proposal_id),
                    )),
                    Some(p) if p.verdict.is_some() => Err(Rejection::new(
                        ErrorCode::UnknownProposal,
                        format!("proposal {} already has a decision", d.proposal_id),
                    )),
                    Some(_) => Ok(()),
                }
            }
            EventKind::GrantUsed | EventKind::GrantRevoked | EventKind::GrantExpired => {
                let r: GrantRef = parse(kind, payload)?;
                let g = self.grants.get(&r.grant_id).ok_or_else(|| {
                    Rejection::new(ErrorCode::UnknownGrant, format!("grant {} does not exist", r.grant_id))
                })?;
                let status = g.status(now);
                let ok = match kind {
                    EventKind::GrantUsed if admitting => status == GrantStatus::Live,
                    EventKind::GrantUsed => g.revoked.is_none() && g.terms.max_uses.is_none_or(|m| g.uses < m),
                    EventKind::GrantRevoked => g.terms.revocable && g.revoked.is_none(),
                    _ => !g.expiry_recorded && (!admitting || status == GrantStatus::Expired),
                };
                if ok {
                    Ok(())
                } else {
                    Err(Rejection::new(
                        ErrorCode::GrantNotRevocable,
                        format!(
                            "grant {} is {status:?} (revocable: {}); {kind} does not apply",
                            r.grant_id, g.terms.revocable
                        )
                        .to_lowercase(),
                    ))
                }
            }
            EventKind::BudgetSettled | EventKind::BudgetReleased => {
                let s: BudgetSettled = parse(kind, payload)?;
                if self.budgets.reservation(s.proposal_id).is_none() {
                    return Err(Rejection::new(
                        ErrorCode::UnknownProposal,
                        format!("proposal {} has no open budget reservation", s.proposal_id),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Folds one event (already checked).
    pub fn apply(&mut self, e: &Event) -> Result<(), Rejection> {
        let payload = e.payload.as_str();
        match e.kind {
            EventKind::ProposalSubmitted => {
                let p: Proposal = parse(e.kind, payload)?;
                self.proposals.insert(
                    e.event_id,
                    ProposalRecord {
                        id: e.event_id,
                        actor: e.origin.clone(),
                        run: e.run_id,
                        action: p.action,
                        resource: p.resource,
                        args_hash: p.args_hash,
                        submitted_at: e.time,
                        verdict: None,
                        grant: None,
                        proposed_by: e.acted_by.as_ref().map(|a| a.principal.clone()).filter(|p| *p != e.origin),
                    },
                );
            }
            EventKind::DecisionMade => {
                let d: Decision = parse(e.kind, payload)?;
                if let Some(p) = self.proposals.get_mut(&d.proposal_id) {
                    p.verdict = Some(d.verdict);
                    p.grant = d.grants.first().copied();
                }
            }
            EventKind::GrantIssued => {
                let terms: GrantIssued = parse(e.kind, payload)?;
                self.grants.insert(
                    e.event_id,
                    Grant {
                        id: e.event_id,
                        run: e.run_id,
                        terms,
                        issued_by: e.origin.clone(),
                        issued_at: e.time,
                        uses: 0,
                        revoked: None,
                        expiry_recorded: false,
                    },
                );
            }
            EventKind::GrantUsed | EventKind::GrantRevoked | EventKind::GrantExpired => {
                let r: GrantRef = parse(e.kind, payload)?;
                if let Some(g) = self.grants.get_mut(&r.grant_id) {
                    match e.kind {
                        EventKind::GrantUsed => g.uses += 1,
                        EventKind::GrantRevoked => g.revoked = Some(r.reason.unwrap_or_default()),
                        _ => g.expiry_recorded = true,
                    }
                }
            }
            EventKind::BudgetSet => self.budgets.apply_set(&parse::<BudgetSet>(e.kind, payload)?),
            EventKind::BudgetReserved => self.budgets.apply_reserved(&parse::<BudgetReserved>(e.kind, payload)?),
            EventKind::BudgetSettled | EventKind::BudgetReleased => {
                self.budgets.apply_settled(&parse::<BudgetSettled>(e.kind, payload)?);
            }
            EventKind::AgentSuspended => {
                let s: AgentStatusChange = parse(e.kind, payload)?;
                self.suspended.insert(s.principal, s.reason);
            }
            EventKind::AgentResumed => {
                let s: AgentStatusChange = parse(e.kind, payload)?;
                self.suspended.remove(&s.principal);
            }
            EventKind::RunContained => {
                if let Some(run) = e.run_id {
                    self.contained.insert(run);
                }
            }
            EventKind::PolicyActivated => {
                let p: PolicyActivated = parse(e.kind, payload)?;
                self.policy =
                    Some(ActivePolicy { hash: p.hash, bundle: std::sync::Arc::new(p.bundle), event_id: e.event_id });
            }
            _ => {}
        }
        Ok(())
    }
}
