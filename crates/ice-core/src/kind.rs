//! The closed event taxonomy: every kind an ICE ledger may hold, its family, its run scope and who may emit it.
//!
//! Adding a kind is a deliberate change to this file; unknown kinds are refused at intake with
//! [`crate::ErrorCode::UnknownKind`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};
use crate::principal::PrincipalKind;

/// The family an event kind belongs to; decides who may emit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// Ledger and run lifecycle, rejections, agent suspension.
    Runtime,
    /// What agents think and propose.
    Cognitive,
    /// Decisions, policy activation, approvals, budgets.
    Decision,
    /// Capability grants and their use.
    Capability,
    /// Execution permits and effect outcomes.
    Effect,
    /// Memory promotion and lifecycle.
    Memory,
    /// Signed checkpoints and snapshots.
    Checkpoint,
}

impl Family {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Runtime => "runtime",
            Self::Cognitive => "cognitive",
            Self::Decision => "decision",
            Self::Capability => "capability",
            Self::Effect => "effect",
            Self::Memory => "memory",
            Self::Checkpoint => "checkpoint",
        }
    }
}

/// Whether an event kind belongs to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunScope {
    /// The event must name a run.
    Required,
    /// The event may name a run (e.g. a grant for one run or for all).
    Optional,
    /// The event is ledger-wide and must not name a run.
    Forbidden,
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident => $family:ident, $scope:ident;)*) => {
        /// A kind of event. The set is closed: see the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventKind {
            $($(#[$doc])* $name,)*
        }

        impl EventKind {
            /// Every kind in the taxonomy.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$name,)*];

            /// The name stored in the ledger (the variant name, e.g. `RunCreated`).
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$name => stringify!($name),)* }
            }

            /// The family of this kind.
            pub fn family(self) -> Family {
                match self { $(EventKind::$name => Family::$family,)* }
            }

            /// Whether events of this kind belong to a run.
            pub fn run_scope(self) -> RunScope {
                match self { $(EventKind::$name => RunScope::$scope,)* }
            }
        }
    };
}

kinds! {
    /// A new ledger; payload names the runtime public key and format version.
    LedgerInitialized => Runtime, Forbidden;
    /// A run was created (state CREATED).
    RunCreated => Runtime, Required;
    /// A run moved from one lifecycle state to another.
    RunTransitioned => Runtime, Required;
    /// An attempted event or transition was refused; payload carries the code and the attempt.
    TransitionRejected => Runtime, Optional;
    /// An agent was suspended: no new permits.
    AgentSuspended => Runtime, Forbidden;
    /// A suspended agent was reconfigured (what changed, by whom).
    Reconfigured => Runtime, Forbidden;
    /// A suspended agent was resumed.
    AgentResumed => Runtime, Forbidden;
    /// A run was contained: every later proposal in it is denied.
    RunContained => Runtime, Required;

    /// An agent submitted a proposal (intent to act).
    ProposalSubmitted => Cognitive, Required;
    /// An agent withdrew a proposal it had submitted.
    ProposalWithdrawn => Cognitive, Required;
    /// An agent recorded an observation.
    ObservationRecorded => Cognitive, Required;
    /// An agent recorded a plan.
    PlanRecorded => Cognitive, Required;
    /// An agent recorded a reasoning note.
    ReasoningRecorded => Cognitive, Required;
    /// An agent proposed a memory candidate (text, fields, the events it derives from); only a governed
    /// `memory.promote` makes it memory.
    MemoryProposed => Cognitive, Required;

    /// A policy set was activated; payload carries its hash.
    PolicyActivated => Decision, Forbidden;
    /// A decision on a proposal: allow, deny, require_approval or suspend.
    DecisionMade => Decision, Required;
    /// A human approval was requested.
    ApprovalRequested => Decision, Required;
    /// A human approved.
    ApprovalGranted => Decision, Required;
    /// A human denied.
    ApprovalDenied => Decision, Required;
    /// An approval expired unanswered.
    ApprovalExpired => Decision, Required;
    /// An unanswered approval was escalated.
    ApprovalEscalated => Decision, Required;
    /// A budget limit was set.
    BudgetSet => Decision, Optional;
    /// Cost was reserved against budgets.
    BudgetReserved => Decision, Required;
    /// Actual cost was settled against a reservation.
    BudgetSettled => Decision, Required;
    /// An unused reservation was released.
    BudgetReleased => Decision, Required;

    /// A capability grant was issued.
    GrantIssued => Capability, Optional;
    /// A capability grant was used by a decision.
    GrantUsed => Capability, Optional;
    /// A capability grant expired.
    GrantExpired => Capability, Optional;
    /// A capability grant was revoked.
    GrantRevoked => Capability, Optional;
    /// An API token was issued (its id is this event's id; only a keyed hash of the secret is recorded).
    TokenIssued => Capability, Forbidden;
    /// An API token was revoked.
    TokenRevoked => Capability, Forbidden;
    /// An MCP tool's definition was pinned: on first sight by the runtime, after a change by an operator.
    ToolPinned => Capability, Forbidden;

    /// An execution permit was issued for an allowed proposal.
    PermitIssued => Effect, Required;
    /// An execution permit was revoked before use.
    PermitRevoked => Effect, Required;
    /// An effector refused to act (bad or missing permit, sandbox violation).
    EffectRefused => Effect, Optional;
    /// An effect began.
    EffectStarted => Effect, Required;
    /// An effect completed, with evidence.
    EffectCompleted => Effect, Required;
    /// An effect failed, with evidence.
    EffectFailed => Effect, Required;
    /// An effect started but its outcome is unknown (crash); listed for reconciliation.
    EffectUnknown => Effect, Required;

    /// A validated fact was promoted to memory.
    MemoryPromoted => Memory, Optional;
    /// A memory item expired.
    MemoryExpired => Memory, Optional;
    /// A memory item was deprecated.
    MemoryDeprecated => Memory, Optional;
    /// A memory item was superseded by another.
    MemorySuperseded => Memory, Optional;
    /// A memory item was invalidated.
    MemoryInvalidated => Memory, Optional;
    /// Memory was read on a caller's behalf: which items, for which query, from which index version (by hash).
    MemoryRead => Memory, Optional;

    /// A signed checkpoint over an event range and the derived-state root.
    Checkpoint => Checkpoint, Forbidden;
    /// A snapshot of derived state was stored.
    SnapshotRecorded => Checkpoint, Forbidden;
}

impl EventKind {
    /// Whether folding this kind can change what admission or a decision depends on. Agents' cognitive notes and
    /// rejection records (`TransitionRejected`, `EffectRefused`) cannot; everything else (runs, proposals and decisions, grants, budgets, policies,
    /// suspensions, effects, memory, checkpoints) can. Serialised appends only conflict with kinds that can.
    pub fn changes_state(self) -> bool {
        let free = (self.family() == Family::Cognitive && self != Self::ProposalSubmitted)
            || matches!(self, Self::TransitionRejected | Self::EffectRefused | Self::MemoryRead);
        !free
    }

    /// Whether a principal of this kind may emit events of this kind (origin authority).
    ///
    /// Agents may emit only cognitive events (proposals included). Rejections, ledger initialisation,
    /// checkpoints, memory promotion (the outcome of an executed `memory.promote` permit), expiry and recorded
    /// reads are the runtime's alone.
    pub fn may_be_emitted_by(self, who: PrincipalKind) -> bool {
        use PrincipalKind as P;
        match self {
            Self::LedgerInitialized
            | Self::TransitionRejected
            | Self::Checkpoint
            | Self::SnapshotRecorded
            | Self::MemoryPromoted
            | Self::MemoryExpired
            | Self::MemoryRead => who == P::Runtime,
            _ => match self.family() {
                Family::Runtime | Family::Capability | Family::Memory => matches!(who, P::Runtime | P::Human),
                Family::Cognitive => matches!(who, P::Agent | P::Human | P::Runtime),
                Family::Decision => matches!(who, P::Runtime | P::Policy | P::Human),
                Family::Effect => matches!(who, P::Runtime | P::Effector),
                Family::Checkpoint => who == P::Runtime,
            },
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        EventKind::ALL.iter().copied().find(|k| k.as_str() == s).ok_or_else(|| {
            Rejection::new(ErrorCode::UnknownKind, format!("`{s}` is not an event kind in the ICE taxonomy"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>().unwrap(), *k);
        }
        assert_eq!("Nope".parse::<EventKind>().unwrap_err().code, ErrorCode::UnknownKind);
    }

    #[test]
    fn agents_emit_only_cognitive() {
        for k in EventKind::ALL {
            assert_eq!(k.may_be_emitted_by(PrincipalKind::Agent), k.family() == Family::Cognitive, "{k}");
        }
        assert!(!EventKind::TransitionRejected.may_be_emitted_by(PrincipalKind::Human));
    }
}
