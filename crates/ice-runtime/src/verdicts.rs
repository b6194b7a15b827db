//! Cedar's verdict on a proposal, evaluated before the state lock where it can be.
//!
//! A verdict is a pure function of the proposal, its actor, its time, the compiled policy (named exactly by its
//! hash) and the state of the run it names: nothing else of the ledger state enters a [`PolicyRequest`]. So the
//! caller's own thread evaluates it before its decision is published, against the policy and run state the runtime
//! last decided with (the [`Hints`]); whoever decides the proposal under the state lock reuses that verdict when the
//! policy and the run state it is decided on are the same, and evaluates afresh otherwise. Same inputs, same
//! verdict: the ledger records exactly what evaluating under the lock would have, and replay re-decides it the same.
//!
//! Why: Cedar was about a third of what the thread holding the state lock spent per decision, and everything under
//! that lock is done one decision at a time while the other core waits for it (`ice bench propose`, BENCHMARKS.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ice_core::{Classification, LedgerState, Principal, Proposal, RunId, RunState, Timestamp};
use ice_policy::{PolicyRequest, PolicyVerdict};

use crate::policy::{CompiledPolicy, PolicyHandle};

/// Most run states remembered; past it the hints start over (a miss only costs evaluating under the lock).
const MAX_RUN_HINTS: usize = 4096;

/// The state of the run a proposal names in `st` (what a verdict depends on besides the proposal and policy).
pub(crate) fn run_state_in(st: &LedgerState, run: Option<RunId>) -> Option<RunState> {
    run.and_then(|r| st.run(r)).map(|r| r.state)
}

/// Cedar's verdict on a proposal with the run (if any) in `run_state`: the one request deciding, deciding ahead
/// and re-checking live permits evaluate.
pub(crate) fn cedar_verdict(
    run_state: Option<RunState>,
    policy: &CompiledPolicy,
    actor: &Principal,
    run: Option<RunId>,
    proposal: &Proposal,
    classification: Classification,
    now: Timestamp,
) -> PolicyVerdict {
    policy.engine.evaluate(&PolicyRequest {
        principal: actor,
        action: &proposal.action,
        resource: &proposal.resource,
        run_id: run,
        run_state,
        classification,
        cost: &proposal.cost_estimate,
        time: now,
        args: &proposal.args,
    })
}

/// A verdict evaluated before the state lock, with the inputs it assumed besides the proposal itself.
#[derive(Debug, Clone)]
pub(crate) struct VerdictAhead {
    policy_hash: String,
    run_state: Option<RunState>,
    time: Timestamp,
    verdict: PolicyVerdict,
}

impl VerdictAhead {
    /// The verdict, if it was evaluated with exactly these inputs (the proposal and actor are the ones it was
    /// evaluated for: the caller keeps them together).
    pub(crate) fn reuse(
        &self,
        policy: &CompiledPolicy,
        run_state: Option<RunState>,
        time: Timestamp,
    ) -> Option<&PolicyVerdict> {
        (self.policy_hash == policy.hash && self.run_state == run_state && self.time == time).then_some(&self.verdict)
    }
}

/// The policy and run states the runtime last decided with: what a verdict ahead assumes.
#[derive(Default)]
pub(crate) struct Hints {
    inner: Mutex<Hint>,
}

#[derive(Default)]
struct Hint {
    policy: Option<PolicyHandle>,
    runs: HashMap<RunId, RunState>,
}

impl Hints {
    fn hint(&self) -> MutexGuard<'_, Hint> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records what a decision was made with (under the state lock; cheap when nothing changed).
    pub(crate) fn decided_with(&self, policy: &PolicyHandle, run: Option<RunId>, run_state: Option<RunState>) {
        let mut hint = self.hint();
        if hint.policy.as_ref().is_none_or(|p| p.hash != policy.hash) {
            hint.policy = Some(Arc::clone(policy));
        }
        match (run, run_state) {
            (Some(r), Some(s)) if hint.runs.get(&r) != Some(&s) => {
                if hint.runs.len() >= MAX_RUN_HINTS {
                    hint.runs.clear();
                }
                hint.runs.insert(r, s);
            }
            (Some(r), None) => {
                hint.runs.remove(&r);
            }
            _ => {}
        }
    }

    /// Evaluates the proposal's verdict with the hinted policy and run state, outside any lock but the hints' own
    /// (held only to read them). `None` when there is nothing to assume yet, the run's state is not hinted, or the
    /// hinted policy does not know the action (deciding refuses it or evaluates afresh).
    pub(crate) fn verdict_ahead(
        &self,
        actor: &Principal,
        run: Option<RunId>,
        proposal: &Proposal,
        time: Timestamp,
    ) -> Option<VerdictAhead> {
        let (policy, run_state) = {
            let hint = self.hint();
            let policy = Arc::clone(hint.policy.as_ref()?);
            let run_state = match run {
                Some(r) => Some(*hint.runs.get(&r)?),
                None => None,
            };
            (policy, run_state)
        };
        let classification = *policy.catalog.actions.get(&proposal.action)?;
        let verdict = cedar_verdict(run_state, &policy, actor, run, proposal, classification, time);
        Some(VerdictAhead { policy_hash: policy.hash.clone(), run_state, time, verdict })
    }
}
