//! The run lifecycle FSM.
//!
//! ```text
//! CREATED → PROVISIONED → CONTEXT_READY → EXECUTING → VALIDATING → COMMITTED | ABORTED → TERMINATED
//!                                          EXECUTING → ABORTED
//! any non-terminal state → TERMINATED (with a reason)
//! ```
//! Forward only. TERMINATED is the single terminal state.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};

/// A run's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    /// Recorded, nothing provisioned yet.
    Created,
    /// Resources (sandbox, budgets) provisioned.
    Provisioned,
    /// Context assembled; ready to execute.
    ContextReady,
    /// Effects may run.
    Executing,
    /// Outcomes being validated.
    Validating,
    /// Validated and committed.
    Committed,
    /// Abandoned; compensations may apply.
    Aborted,
    /// Final: nothing more may happen to the run.
    Terminated,
}

impl RunState {
    /// All states, in lifecycle order.
    pub const ALL: [RunState; 8] = [
        Self::Created,
        Self::Provisioned,
        Self::ContextReady,
        Self::Executing,
        Self::Validating,
        Self::Committed,
        Self::Aborted,
        Self::Terminated,
    ];

    /// The upper-case name, e.g. `CONTEXT_READY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Provisioned => "PROVISIONED",
            Self::ContextReady => "CONTEXT_READY",
            Self::Executing => "EXECUTING",
            Self::Validating => "VALIDATING",
            Self::Committed => "COMMITTED",
            Self::Aborted => "ABORTED",
            Self::Terminated => "TERMINATED",
        }
    }

    /// Whether the run is final.
    pub fn is_terminal(self) -> bool {
        self == Self::Terminated
    }

    /// The next state on the happy path, if any (used by `ice run advance` without `--to`).
    pub fn next_on_happy_path(self) -> Option<RunState> {
        match self {
            Self::Created => Some(Self::Provisioned),
            Self::Provisioned => Some(Self::ContextReady),
            Self::ContextReady => Some(Self::Executing),
            Self::Executing => Some(Self::Validating),
            Self::Validating => Some(Self::Committed),
            Self::Committed | Self::Aborted => Some(Self::Terminated),
            Self::Terminated => None,
        }
    }

    /// Checks a transition. `reason` must be present when terminating a run that is not COMMITTED or ABORTED.
    pub fn check_transition(self, to: RunState, reason: Option<&str>) -> Result<(), Rejection> {
        use RunState::*;
        if self == Terminated {
            return Err(Rejection::new(ErrorCode::RunTerminated, "the run is TERMINATED; it cannot change state"));
        }
        let legal = matches!(
            (self, to),
            (Created, Provisioned)
                | (Provisioned, ContextReady)
                | (ContextReady, Executing)
                | (Executing, Validating)
                | (Validating, Committed)
                | (Validating, Aborted)
                | (Executing, Aborted)
                | (_, Terminated)
        );
        if !legal {
            return Err(Rejection::new(
                ErrorCode::IllegalTransition,
                format!("a run cannot go from {} to {}", self.as_str(), to.as_str()),
            ));
        }
        let early_end = to == Terminated && !matches!(self, Committed | Aborted);
        if early_end && reason.is_none_or(|r| r.trim().is_empty()) {
            return Err(Rejection::new(
                ErrorCode::ReasonRequired,
                format!("terminating a run in {} needs a reason", self.as_str()),
            ));
        }
        Ok(())
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = Rejection;
    fn from_str(s: &str) -> Result<Self, Rejection> {
        let norm = s.trim().to_ascii_uppercase().replace('-', "_");
        RunState::ALL.into_iter().find(|st| st.as_str() == norm).ok_or_else(|| {
            Rejection::new(
                ErrorCode::BadArgument,
                format!(
                    "`{s}` is not a run state (CREATED, PROVISIONED, CONTEXT_READY, EXECUTING, VALIDATING, \
                     COMMITTED, ABORTED, TERMINATED)"
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;
    use proptest::prelude::*;

    /// The lifecycle written out independently as an edge list: the reference the FSM is checked against.
    const EDGES: &[(RunState, RunState)] = &[
        (Created, Provisioned),
        (Provisioned, ContextReady),
        (ContextReady, Executing),
        (Executing, Validating),
        (Validating, Committed),
        (Validating, Aborted),
        (Executing, Aborted),
        (Committed, Terminated),
        (Aborted, Terminated),
        (Created, Terminated),
        (Provisioned, Terminated),
        (ContextReady, Terminated),
        (Executing, Terminated),
        (Validating, Terminated),
    ];

    fn reference_accepts(seq: &[RunState]) -> bool {
        let mut cur = Created;
        seq.iter().all(|&to| {
            let ok = EDGES.contains(&(cur, to));
            cur = to;
            ok
        })
    }

    fn fsm_accepts(seq: &[RunState]) -> bool {
        let mut cur = Created;
        seq.iter().all(|&to| {
            let ok = cur.check_transition(to, Some("because")).is_ok();
            cur = to;
            ok
        })
    }

    proptest! {
        /// The FSM accepts exactly the sequences the reference edge list accepts.
        #[test]
        fn fsm_accepts_exactly_legal_sequences(seq in prop::collection::vec(prop::sample::select(RunState::ALL.to_vec()), 0..10)) {
            prop_assert_eq!(fsm_accepts(&seq), reference_accepts(&seq));
        }

        /// Legal sequences built by walking the reference edges are all accepted.
        #[test]
        fn every_walk_of_the_reference_is_accepted(choices in prop::collection::vec(0usize..8, 0..10)) {
            let mut cur = Created;
            let mut walk = Vec::new();
            for c in choices {
                let outs: Vec<_> = EDGES.iter().filter(|(f, _)| *f == cur).map(|(_, t)| *t).collect();
                if outs.is_empty() { break; }
                cur = outs[c % outs.len()];
                walk.push(cur);
            }
            prop_assert!(fsm_accepts(&walk));
        }
    }

    #[test]
    fn early_termination_needs_a_reason() {
        assert_eq!(Executing.check_transition(Terminated, None).unwrap_err().code, ErrorCode::ReasonRequired);
        assert!(Committed.check_transition(Terminated, None).is_ok());
        assert_eq!(Terminated.check_transition(Terminated, Some("x")).unwrap_err().code, ErrorCode::RunTerminated);
        assert_eq!(Created.check_transition(Executing, None).unwrap_err().code, ErrorCode::IllegalTransition);
    }
}
