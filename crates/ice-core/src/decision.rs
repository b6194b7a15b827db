//! Deciding a proposal: capability grant, Cedar policy finding, budget — and the consequence of a violation.
//!
//! [`decide`] is pure: it takes the derived authority state and the policy engine's finding (computed by the
//! runtime with `ice-policy`) and returns the decision plus what must be recorded with it (grant use, budget
//! reservation, newly noticed grant expiries, suspension or containment). The runtime appends all of it in one
//! atomic request with the proposal, so every proposal has exactly one decision.

use serde::{Deserialize, Serialize};

use crate::authority::AuthorityState;
use crate::budget::Charge;
use crate::grant::{Grant, GrantStatus};
use crate::ids::{EventId, RunId, Timestamp};
use crate::principal::Principal;
use crate::proposal::{Classification, Cost};

/// The outcome of deciding a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Execute it (an execution permit may be issued).
    Allow,
    /// Do not execute it.
    Deny,
    /// A human must approve first.
    RequireApproval,
    /// Denied, and the agent is suspended.
    Suspend,
}

impl Verdict {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::RequireApproval => "require_approval",
            Self::Suspend => "suspend",
        }
    }
}

/// What went wrong, when something did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Violation {
    /// The agent is suspended.
    AgentSuspended,
    /// The run is contained.
    RunContained,
    /// A Cedar `forbid` matched.
    PolicyForbid,
    /// No live grant covers the proposal.
    NoGrant,
    /// No Cedar `permit` matched.
    NoPermit,
    /// The request could not be evaluated (e.g. args do not fit the action's schema).
    PolicyError,
    /// A budget would overflow.
    BudgetExceeded,
}

/// What the runtime does about a violation (configured per violation in `policy.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Consequence {
    /// Deny the proposal.
    #[default]
    Deny,
    /// Deny and suspend the agent (no new permits until resumed).
    Suspend,
    /// Escalate to a human: the decision becomes `require_approval`.
    Escalate,
    /// Deny and contain the run: every later proposal in it is denied.
    Contain,
}

/// Consequence per violation; anything unset denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Consequences {
    /// For [`Violation::NoGrant`].
    #[serde(default)]
    pub no_grant: Consequence,
    /// For [`Violation::PolicyForbid`].
    #[serde(default)]
    pub policy_forbid: Consequence,
    /// For [`Violation::NoPermit`].
    #[serde(default)]
    pub no_permit: Consequence,
    /// For [`Violation::PolicyError`].
    #[serde(default)]
    pub policy_error: Consequence,
    /// For [`Violation::BudgetExceeded`].
    #[serde(default)]
    pub budget_exceeded: Consequence,
}

impl Consequences {
    fn for_violation(&self, v: Violation) -> Consequence {
        match v {
            Violation::AgentSuspended | Violation::RunContained => Consequence::Deny,
            Violation::NoGrant => self.no_grant,
            Violation::PolicyForbid => self.policy_forbid,
            Violation::NoPermit => self.no_permit,
            Violation::PolicyError => self.policy_error,
            Violation::BudgetExceeded => self.budget_exceeded,
        }
    }
}

/// The policy engine's answer, as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyEffect {
    /// A permit matched and no forbid did.
    Permit,
    /// A forbid matched.
    Forbid,
    /// Nothing permitted it.
    NoPermit,
    /// A matching permit asks for human approval.
    RequireApproval,
    /// The request could not be evaluated.
    Error,
}

/// The policy engine's finding for one proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFinding {
    /// The effect.
    pub effect: PolicyEffect,
    /// Determining policy ids.
    pub policies: Vec<String>,
    /// Why approval is required (annotation texts).
    pub approval_reasons: Vec<String>,
    /// Evaluation errors.
    pub errors: Vec<String>,
}

/// One reason recorded with a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// What this reason is about: `grant`, `no_grant`, `policy_permit`, `policy_forbid`, `no_permit`,
    /// `policy_error`, `approval_required`, `budget`, `budget_exceeded`, `agent_suspended`, `run_contained`,
    /// `consequence`.
    pub kind: String,
    /// Human-readable detail.
    pub detail: String,
    /// Ids involved (grant ids, policy ids, budget keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
}

impl Reason {
    fn new(kind: &str, detail: impl Into<String>, ids: Vec<String>) -> Self {
        Self { kind: kind.to_owned(), detail: detail.into(), ids }
    }
}

/// Payload of `DecisionMade`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// The proposal decided.
    pub proposal_id: EventId,
    /// The verdict.
    pub verdict: Verdict,
    /// The violation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<Violation>,
    /// The consequence applied to the violation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consequence: Option<Consequence>,
    /// Every reason, in evaluation order.
    pub reasons: Vec<Reason>,
    /// Hash of the policy set in force.
    pub policy_hash: String,
    /// Determining Cedar policy ids.
    pub policies: Vec<String>,
    /// Grant ids used (on allow) or considered.
    pub grants: Vec<EventId>,
    /// The runtime's classification of the action.
    pub classification: Classification,
    /// The time the decision was evaluated at (replay re-evaluates at this time).
    pub evaluated_at: Timestamp,
}

/// Everything [`decide`] needs besides state.
#[derive(Debug, Clone)]
pub struct DecisionInput<'a> {
    /// The proposal's id (its `ProposalSubmitted` event id).
    pub proposal_id: EventId,
    /// Who proposes.
    pub actor: &'a Principal,
    /// In which run.
    pub run: Option<RunId>,
    /// Action name.
    pub action: &'a str,
    /// Resource.
    pub resource: &'a str,
    /// Cost estimate to reserve.
    pub estimate: &'a Cost,
    /// Classification from the catalog.
    pub classification: Classification,
    /// Decision time.
    pub now: Timestamp,
    /// The policy finding.
    pub policy: &'a PolicyFinding,
    /// Hash of the policy set in force.
    pub policy_hash: &'a str,
    /// Configured consequences.
    pub consequences: &'a Consequences,
}

/// A decision and what must be recorded with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionPlan {
    /// The `DecisionMade` payload.
    pub decision: Decision,
    /// Grant to record a `GrantUsed` for (allow only).
    pub grant_used: Option<EventId>,
    /// Budget charges to record as `BudgetReserved` (allow only).
    pub charges: Option<Vec<Charge>>,
    /// Grants found expired that have no `GrantExpired` yet.
    pub expired_grants: Vec<EventId>,
    /// Suspend the agent (consequence `suspend`).
    pub suspend_agent: bool,
    /// Contain the run (consequence `contain`).
    pub contain_run: bool,
}

fn grant_order(g: &Grant) -> (bool, i64, EventId) {
    // Run-scoped grants first (the narrowest authority), then the soonest to expire, then the oldest.
    (g.run.is_none(), g.terms.expires_at.map_or(i64::MAX, |t| t.0), g.id)
}

/// Decides a proposal. Pure: same state and input, same plan.
pub fn decide(state: &AuthorityState, input: &DecisionInput<'_>) -> DecisionPlan {
    let mut reasons = Vec::new();
    let mut violation: Option<Violation> = None;
    // The first violation found is the one recorded (and whose consequence applies).
    if let Some(why) = state.suspended(input.actor) {
        violation.get_or_insert(Violation::AgentSuspended);
        reasons.push(Reason::new("agent_suspended", format!("{} is suspended: {why}", input.actor), vec![]));
    }
    if let Some(run) = input.run
        && state.is_contained(run)
    {
        violation.get_or_insert(Violation::RunContained);
        reasons.push(Reason::new("run_contained", format!("run {run} is contained"), vec![]));
    }

    // Cedar forbids outrank everything but suspension and containment.
    let finding = input.policy;
    let policy_ids = finding.policies.clone();
    match finding.effect {
        PolicyEffect::Forbid => {
            violation.get_or_insert(Violation::PolicyForbid);
            reasons.push(Reason::new("policy_forbid", "a Cedar forbid policy matched", policy_ids.clone()));
        }
        PolicyEffect::Permit => {
            reasons.push(Reason::new("policy_permit", "permitted by Cedar policy", policy_ids.clone()))
        }
        PolicyEffect::RequireApproval => {
            reasons.push(Reason::new("approval_required", finding.approval_reasons.join("; "), policy_ids.clone()))
        }
        PolicyEffect::NoPermit | PolicyEffect::Error => {}
    }

    // Capability grants.
    let mut covering: Vec<&Grant> = state
        .grants()
        .values()
        .map(|g| &**g)
        .filter(|g| g.covers(input.actor, input.run, input.action, input.resource))
        .collect();
    covering.sort_by_key(|g| grant_order(g));
    let expired_grants: Vec<EventId> = covering
        .iter()
        .filter(|g| !g.expiry_recorded && g.revoked.is_none() && g.status(input.now) == GrantStatus::Expired)
        .map(|g| g.id)
        .collect();
    let live = covering.iter().find(|g| g.status(input.now) == GrantStatus::Live).map(|g| g.id);
    match live {
        Some(id) => reasons.push(Reason::new(
            "grant",
            format!("grant {id} lets {} do {} on {}", input.actor, input.action, input.resource),
            vec![id.to_string()],
        )),
        None => {
            violation.get_or_insert(Violation::NoGrant);
            let dead: Vec<String> =
                covering.iter().map(|g| format!("{} is {:?}", g.id, g.status(input.now)).to_lowercase()).collect();
            let mut detail = format!("no live grant lets {} do {} on {}", input.actor, input.action, input.resource);
            if !dead.is_empty() {
                detail.push_str(&format!(" ({})", dead.join(", ")));
            }
            reasons.push(Reason::new("no_grant", detail, covering.iter().map(|g| g.id.to_string()).collect()));
        }
    }

    match finding.effect {
        PolicyEffect::NoPermit => {
            violation.get_or_insert(Violation::NoPermit);
            reasons.push(Reason::new("no_permit", "no Cedar policy permits this", vec![]));
        }
        PolicyEffect::Error => {
            violation.get_or_insert(Violation::PolicyError);
            reasons.push(Reason::new("policy_error", finding.errors.join("; "), vec![]));
        }
        _ => {}
    }

    // Budgets, only when nothing else stands in the way (a refused proposal reserves nothing).
    let mut charges = None;
    if violation.is_none() && finding.effect == PolicyEffect::Permit {
        match state.budgets().plan(input.actor, input.run, input.estimate, input.now) {
            Ok(c) => {
                let ids = c.iter().map(|ch| ch.budget.to_string()).collect();
                let detail = if c.is_empty() {
                    "no budget applies".to_owned()
                } else {
                    format!("reserved {} against {} budget(s)", input.estimate, c.len())
                };
                reasons.push(Reason::new("budget", detail, ids));
                charges = Some(c);
            }
            Err(over) => {
                violation.get_or_insert(Violation::BudgetExceeded);
                reasons.push(Reason::new(
                    "budget_exceeded",
                    format!(
                        "{} ({}): {} spent + {} reserved + {} requested exceeds the limit {}",
                        over.budget, over.budget.dimension, over.spent, over.reserved, over.requested, over.limit
                    ),
                    vec![over.budget.to_string()],
                ));
            }
        }
    }

    let consequence = violation.map(|v| input.consequences.for_violation(v));
    let verdict = match (violation, consequence) {
        (None, _) if finding.effect == PolicyEffect::RequireApproval => Verdict::RequireApproval,
        (None, _) => Verdict::Allow,
        (Some(_), Some(Consequence::Suspend)) => Verdict::Suspend,
        (Some(_), Some(Consequence::Escalate)) => Verdict::RequireApproval,
        (Some(_), _) => Verdict::Deny,
    };
    if let (Some(v), Some(c)) = (violation, consequence)
        && c != Consequence::Deny
    {
        reasons.push(Reason::new("consequence", format!("{v:?} → {c:?}").to_lowercase(), vec![]));
    }
    let allowed = verdict == Verdict::Allow;
    DecisionPlan {
        decision: Decision {
            proposal_id: input.proposal_id,
            verdict,
            violation,
            consequence,
            reasons,
            policy_hash: input.policy_hash.to_owned(),
            policies: policy_ids,
            grants: live.into_iter().collect(),
            classification: input.classification,
            evaluated_at: input.now,
        },
        grant_used: if allowed { live } else { None },
        charges: if allowed { charges } else { None },
        expired_grants,
        suspend_agent: consequence == Some(Consequence::Suspend),
        contain_run: consequence == Some(Consequence::Contain) && input.run.is_some(),
    }
}
