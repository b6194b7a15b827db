//! Replay: rebuild all derived state from the ledger alone and prove it equal to the live state; re-decide every
//! recorded proposal (decision replay); and evaluate history under a candidate policy set (what-if).
//!
//! The walk folds events with the same `LedgerState::apply` the live runtime uses. At each `ProposalSubmitted` it
//! re-runs the decision procedure on the state *before* the proposal — exactly what the live runtime decided on —
//! at the recorded evaluation time, with the policy bundle then in force (recorded whole in `PolicyActivated`, so
//! nothing outside the ledger is needed), or with a candidate bundle for what-if. At each `Checkpoint` it compares
//! the replayed state root with the signed, recorded one, which localises any divergence to a checkpoint interval.

use std::collections::VecDeque;
use std::time::Instant;

use ice_core::checkpoint::CheckpointPayload;
use ice_core::decision::{Decision, Verdict};
use ice_core::{Event, EventKind, LedgerState, Proposal, RunId, Seq, Timestamp};
use ice_store::EventQuery;
use serde::Serialize;

use crate::policy::CompiledPolicy;
use crate::runtime::{Runtime, RuntimeError};

/// Events read per query during a walk.
const WALK_BATCH: usize = 20_000;

/// A recorded decision compared with a re-evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionDiff {
    /// The proposal.
    pub proposal_id: String,
    /// Its seq.
    pub seq: u64,
    /// Its run.
    pub run: Option<String>,
    /// Who proposed.
    pub actor: String,
    /// Action.
    pub action: String,
    /// Resource.
    pub resource: String,
    /// The recorded verdict.
    pub recorded: Verdict,
    /// The re-evaluated verdict.
    pub replayed: Verdict,
    /// The determining policies of the re-evaluation.
    pub policies: Vec<String>,
    /// What differs.
    pub detail: String,
}

/// Where replayed and recorded state stop agreeing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Divergence {
    /// The last seq at which they are known to agree (0: from the start).
    pub agree_through: u64,
    /// The seq by which they disagree.
    pub differ_by: u64,
    /// The recorded (or live) root.
    pub expected_root: String,
    /// The replayed root.
    pub replayed_root: String,
    /// What was compared.
    pub what: String,
}

/// The result of `ice replay`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Events folded.
    pub events: u64,
    /// Root of the replayed state.
    pub state_root: String,
    /// Root of the live state.
    pub live_root: String,
    /// Seq the live state was loaded from (a snapshot), 0 if folded from the start.
    pub live_started_from: u64,
    /// Checkpoints whose state root was compared.
    pub checkpoints: u64,
    /// The first divergence, if any.
    pub divergence: Option<Divergence>,
    /// Proposals re-decided.
    pub decisions: u64,
    /// Re-decisions that differ from the recorded decision.
    pub decision_mismatches: Vec<DecisionDiff>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// Of which re-deciding proposals.
    pub decide_ms: u64,
    /// Of which computing state roots at checkpoints.
    pub checkpoint_ms: u64,
}

impl ReplayReport {
    /// Whether everything matched.
    pub fn ok(&self) -> bool {
        self.divergence.is_none() && self.decision_mismatches.is_empty() && self.state_root == self.live_root
    }
}

/// Which recorded decisions a what-if looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WhatIfFilter {
    /// Only proposals at or after this time.
    pub since: Option<Timestamp>,
    /// Only proposals in this run.
    pub run: Option<RunId>,
}

/// The result of `ice what-if`.
#[derive(Debug, Clone, Serialize)]
pub struct WhatIfReport {
    /// Hash of the candidate policy bundle.
    pub candidate_hash: String,
    /// Decisions evaluated.
    pub evaluated: u64,
    /// Decisions whose verdict would change.
    pub changes: Vec<DecisionDiff>,
    /// Counts per `recorded→candidate` transition.
    pub counts: std::collections::BTreeMap<String, u64>,
}

/// Called for each proposal with the state before it, the proposal event, its payload and its recorded decision.
type OnProposal<'a> = dyn FnMut(&LedgerState, &Event, &Proposal, &Decision) -> Result<(), RuntimeError> + 'a;
/// Called for each checkpoint with the state before it, the event and its payload.
type OnCheckpoint<'a> = dyn FnMut(&LedgerState, &Event, &CheckpointPayload) -> Result<(), RuntimeError> + 'a;

/// A read-ahead cursor over the ledger (a proposal's decision follows it in the same atomic bundle).
struct Cursor<'a> {
    rt: &'a Runtime,
    buf: VecDeque<Event>,
    after: Seq,
    exhausted: bool,
}

impl<'a> Cursor<'a> {
    fn new(rt: &'a Runtime) -> Self {
        Self { rt, buf: VecDeque::new(), after: Seq(0), exhausted: false }
    }

    fn fill(&mut self, want: usize) -> Result<(), RuntimeError> {
        while self.buf.len() < want && !self.exhausted {
            let batch =
                self.rt.store().read(&EventQuery { after: self.after, limit: WALK_BATCH, ..EventQuery::default() })?;
            self.exhausted = batch.len() < WALK_BATCH;
            if let Some(last) = batch.last() {
                self.after = last.seq;
            }
            self.buf.extend(batch);
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Event>, RuntimeError> {
        self.fill(1)?;
        Ok(self.buf.pop_front())
    }

    /// The `DecisionMade` for `proposal` among the next events (bundles are contiguous, so it is close).
    fn decision_for(&mut self, proposal: ice_core::EventId) -> Result<Option<Decision>, RuntimeError> {
        // The bundle is [proposal, GrantExpired × k, DecisionMade, …]; k is the number of covering grants noticed
        // expired, so a generous window suffices.
        const WINDOW: usize = 4096;
        self.fill(WINDOW)?;
        for e in self.buf.iter().take(WINDOW) {
            if e.kind == EventKind::DecisionMade
                && let Ok(d) = serde_json::from_str::<Decision>(e.payload.as_str())
                && d.proposal_id == proposal
            {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}

fn corrupt(e: &Event, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Corrupt { seq: e.seq.0, message: message.into() }
}

fn diff_detail(recorded: &Decision, replayed: &Decision) -> String {
    let mut parts = Vec::new();
    if recorded.verdict != replayed.verdict {
        parts.push(format!("verdict {} → {}", recorded.verdict.as_str(), replayed.verdict.as_str()));
    }
    if recorded.policies != replayed.policies {
        parts.push(format!("policies {:?} → {:?}", recorded.policies, replayed.policies));
    }
    if recorded.grants != replayed.grants {
        parts.push("grants differ".to_owned());
    }
    if recorded.reasons != replayed.reasons {
        parts.push("reasons differ".to_owned());
    }
    if recorded.violation != replayed.violation || recorded.consequence != replayed.consequence {
        parts.push("violation or consequence differs".to_owned());
    }
    if recorded.classification != replayed.classification || recorded.policy_hash != replayed.policy_hash {
        parts.push("classification or policy set differs".to_owned());
    }
    parts.join("; ")
}

impl Runtime {
    /// Walks the whole ledger, folding it into fresh state. For every proposal, `decide` gets the state before it,
    /// the proposal, and its recorded decision. For every checkpoint, `checkpoint` gets the state before it and its
    /// payload. `progress` gets (events done, head seq).
    fn walk(
        &self,
        decide: &mut OnProposal<'_>,
        checkpoint: &mut OnCheckpoint<'_>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<LedgerState, RuntimeError> {
        let total = self.store().head()?.map_or(0, |h| h.seq.0);
        let mut st = LedgerState::new();
        let mut cursor = Cursor::new(self);
        while let Some(e) = cursor.next()? {
            match e.kind {
                EventKind::ProposalSubmitted => {
                    let p: Proposal = serde_json::from_str(e.payload.as_str())
                        .map_err(|err| corrupt(&e, format!("proposal payload: {err}")))?;
                    let recorded = cursor
                        .decision_for(e.event_id)?
                        .ok_or_else(|| corrupt(&e, "a proposal without its decision in the same bundle"))?;
                    decide(&st, &e, &p, &recorded)?;
                }
                EventKind::Checkpoint => {
                    let c: CheckpointPayload = serde_json::from_str(e.payload.as_str())
                        .map_err(|err| corrupt(&e, format!("checkpoint payload: {err}")))?;
                    checkpoint(&st, &e, &c)?;
                }
                _ => {}
            }
            st.apply(&e).map_err(|r| corrupt(&e, r.to_string()))?;
            if e.seq.0 % 4096 == 0 {
                progress(e.seq.0, total);
            }
        }
        progress(st.last_seq().0, total);
        Ok(st)
    }

    /// Re-decides one proposal with `policy` on the state before it, at its recorded evaluation time.
    fn redecide(
        &self,
        st: &LedgerState,
        policy: &CompiledPolicy,
        e: &Event,
        p: &Proposal,
        recorded: &Decision,
    ) -> Result<Decision, RuntimeError> {
        let plan = self
            .plan_decision(st, policy, &e.origin, e.run_id, p, e.event_id, recorded.evaluated_at, None)
            .map_err(|r| corrupt(e, format!("re-deciding proposal {}: {r}", e.event_id)))?;
        Ok(plan.decision)
    }

    fn diff(e: &Event, p: &Proposal, recorded: &Decision, replayed: &Decision) -> DecisionDiff {
        DecisionDiff {
            proposal_id: e.event_id.to_string(),
            seq: e.seq.0,
            run: e.run_id.map(|r| r.to_string()),
            actor: e.origin.to_string(),
            action: p.action.clone(),
            resource: p.resource.clone(),
            recorded: recorded.verdict,
            replayed: replayed.verdict,
            policies: replayed.policies.clone(),
            detail: diff_detail(recorded, replayed),
        }
    }

    /// Rebuilds every piece of derived state from the ledger alone, re-decides every proposal under the policy,
    /// grants and budgets then in force, checks every checkpoint's state root, and compares the final state root
    /// with the live state's.
    pub fn replay(&self, progress: &mut dyn FnMut(u64, u64)) -> Result<ReplayReport, RuntimeError> {
        let started = Instant::now();
        let live_root = self
            .with_state(LedgerState::state_root)?
            .map_err(|r| RuntimeError::Corrupt { seq: 0, message: r.to_string() })?;
        let mut mismatches = Vec::new();
        let mut decisions = 0u64;
        let mut checkpoints = 0u64;
        let mut divergence: Option<Divergence> = None;
        let mut agree_through = 0u64;
        let mut decide_time = std::time::Duration::ZERO;
        let mut checkpoint_time = std::time::Duration::ZERO;
        let state = self.walk(
            &mut |st, e, p, recorded| {
                let t = Instant::now();
                decisions += 1;
                let policy = st
                    .authority()
                    .policy()
                    .ok_or_else(|| corrupt(e, "a proposal was decided with no policy set active"))?;
                let compiled =
                    self.compiled(&policy.hash, &policy.bundle).map_err(|r| corrupt(e, format!("policy set: {r}")))?;
                let replayed = self.redecide(st, &compiled, e, p, recorded)?;
                if replayed != *recorded {
                    mismatches.push(Self::diff(e, p, recorded, &replayed));
                }
                decide_time += t.elapsed();
                Ok(())
            },
            &mut |st, e, c| {
                checkpoints += 1;
                let t = Instant::now();
                let root = st.state_root().map_err(|r| corrupt(e, r.to_string()))?;
                checkpoint_time += t.elapsed();
                if root != c.state_root && divergence.is_none() {
                    divergence = Some(Divergence {
                        agree_through,
                        differ_by: c.to_seq,
                        expected_root: c.state_root.clone(),
                        replayed_root: root,
                        what: format!("the state root signed in the checkpoint at seq {}", e.seq),
                    });
                } else if divergence.is_none() {
                    agree_through = c.to_seq;
                }
                Ok(())
            },
            progress,
        )?;
        let state_root = state.state_root().map_err(|r| RuntimeError::Corrupt { seq: 0, message: r.to_string() })?;
        let live_started_from = self.started_from().0;
        if divergence.is_none() && state_root != live_root {
            let from = if live_started_from > 0 {
                format!(" (the live state was loaded from the snapshot at seq {live_started_from})")
            } else {
                String::new()
            };
            divergence = Some(Divergence {
                agree_through,
                differ_by: state.last_seq().0,
                expected_root: live_root.clone(),
                replayed_root: state_root.clone(),
                what: format!("the live state's root{from}"),
            });
        }
        Ok(ReplayReport {
            events: state.event_count(),
            state_root,
            live_root,
            live_started_from,
            checkpoints,
            divergence,
            decisions,
            decision_mismatches: mismatches,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            decide_ms: u64::try_from(decide_time.as_millis()).unwrap_or(u64::MAX),
            checkpoint_ms: u64::try_from(checkpoint_time.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Evaluates recorded history under a candidate policy bundle: for each recorded decision (filtered), the
    /// verdict the candidate gives on the same state, at the same time. Reports the decisions that would change.
    pub fn what_if(
        &self,
        candidate: &CompiledPolicy,
        filter: WhatIfFilter,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<WhatIfReport, RuntimeError> {
        let mut changes = Vec::new();
        let mut counts = std::collections::BTreeMap::new();
        let mut evaluated = 0u64;
        self.walk(
            &mut |st, e, p, recorded| {
                if filter.since.is_some_and(|t| e.time.0 < t.0) || filter.run.is_some_and(|r| e.run_id != Some(r)) {
                    return Ok(());
                }
                evaluated += 1;
                let replayed = self.redecide(st, candidate, e, p, recorded)?;
                if replayed.verdict != recorded.verdict {
                    let key = format!("{}→{}", recorded.verdict.as_str(), replayed.verdict.as_str());
                    *counts.entry(key).or_insert(0) += 1;
                    changes.push(Self::diff(e, p, recorded, &replayed));
                }
                Ok(())
            },
            &mut |_, _, _| Ok(()),
            progress,
        )?;
        Ok(WhatIfReport { candidate_hash: candidate.hash.clone(), evaluated, changes, counts })
    }
}
