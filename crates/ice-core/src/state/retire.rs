//! Retirement: derived state holds what is live, not all of history.
//!
//! When a `Checkpoint` event is folded — live and in replay alike, at the checkpoint's own time, so every fold
//! retires the same records — everything that no event can change any more leaves memory. Looking means scanning
//! every live record, so with more than `SCAN_ALWAYS` live records it is done only once at least as many events as
//! there are live records were folded since the last pass (`RETIRE_RATIO`): the scan then costs about one record per
//! event however much is live, and settled records wait at most about as many events as are live. With less live
//! (the usual case) it is every checkpoint:
//!
//! - a **proposal** once it is settled: decided, no open reservation, no pending approval, no permit that can
//!   still be used, and no effect of its permit still waiting for an outcome; its permit and approval retire
//!   with it;
//! - an **effect** once it has its outcome and its run (if any) is TERMINATED — until then a rollback may still
//!   compensate it;
//! - a **memory item** once it has left ACTIVE (expired, deprecated, superseded or invalidated);
//! - a **run** once it is TERMINATED and nothing of it is live; its id is kept (16 bytes) so that it can never be
//!   created again and events naming it are refused as naming a terminated run.
//!
//! Retired records stay in the ledger (and so in `ice log`, exports and replay); the state root keeps covering
//! them through the retired sums of [`crate::hashed::HashedMap`], so retiring never changes the root and the
//! snapshot written after a checkpoint proves against the root that checkpoint signed. A retired record is gone
//! from the rules too: an event naming a retired proposal, permit or approval is refused as naming an unknown
//! one, which is what single use requires.

use std::collections::BTreeSet;

use super::LedgerState;
use crate::authority::ProposalRecord;
use crate::decision::Verdict;
use crate::effect::{ApprovalStatus, EffectStatus, PermitStatus};
use crate::error::Rejection;
use crate::ids::{EventId, RunId, Timestamp};

/// A retirement pass is due once `events since the last × RETIRE_RATIO ≥ live records`...
const RETIRE_RATIO: u64 = 1;
/// ...or whenever there are at most this many live records (a scan of them costs ~0.1 ms).
const SCAN_ALWAYS: u64 = 1_000;

/// Whether a retirement pass is due after `events` folded, the last pass at `pass_at`, with `live` records. A mark
/// beyond the events folded can only come from an edited snapshot (the mark is not covered by the state root): it
/// counts as no pass at all, so that it cannot stop retirement for good.
fn retire_due(events: u64, pass_at: u64, live: u64) -> bool {
    let since = events.checked_sub(pass_at).unwrap_or(events);
    live <= SCAN_ALWAYS || since.saturating_mul(RETIRE_RATIO) >= live
}

impl LedgerState {
    /// At a checkpoint: retires every settled record if a pass is due (see the module docs).
    pub(super) fn retire_if_due(&mut self, now: Timestamp) -> Result<(), Rejection> {
        if !retire_due(self.events, self.retire_pass_at, self.live_records() as u64) {
            return Ok(());
        }
        self.retire_pass_at = self.events;
        self.retire_settled(now)
    }

    /// Retires every settled record (see the module docs). It fails only if a record cannot be encoded for its
    /// hash, which the record types rule out; the fold would then report the ledger undecodable.
    pub(super) fn retire_settled(&mut self, now: Timestamp) -> Result<(), Rejection> {
        let settled: Vec<EventId> =
            self.authority.proposals().values().filter(|p| self.is_settled(p, now)).map(|p| p.id).collect();
        for id in settled {
            self.authority.retire_proposal(id)?;
            self.effects.retire_of_proposal(id)?;
        }
        let finished: Vec<EventId> = self
            .effects
            .effects()
            .values()
            .filter(|e| matches!(e.status, EffectStatus::Completed | EffectStatus::Failed))
            .filter(|e| e.run.is_none_or(|r| self.runs.get(&r).is_none_or(|run| run.state.is_terminal())))
            .map(|e| e.id)
            .collect();
        for id in finished {
            self.effects.retire_effect(id)?;
        }
        let terminal: BTreeSet<RunId> = self.runs.values().filter(|r| r.state.is_terminal()).map(|r| r.id).collect();
        if terminal.is_empty() {
            // Nothing to look for in every live record (the common case while runs are under way).
            return self.memory.retire_ended();
        }
        let effects = &self.effects;
        let busy: BTreeSet<RunId> = (self.authority.proposals().values().filter_map(|p| p.run))
            .chain(effects.permits().values().filter_map(|p| p.run))
            .chain(effects.approvals().values().filter_map(|a| a.run))
            .chain(effects.effects().values().filter_map(|e| e.run))
            .filter(|r| terminal.contains(r))
            .collect();
        let ended: Vec<RunId> = terminal.difference(&busy).copied().collect();
        for id in ended {
            self.runs.remove(&id);
            self.run_roots.retire(&id)?;
            self.retired_runs.insert(id);
        }
        self.memory.retire_ended()
    }

    /// Whether no event can change the proposal any more.
    fn is_settled(&self, p: &ProposalRecord, now: Timestamp) -> bool {
        let Some(verdict) = p.verdict else { return false };
        if self.authority.budgets().reservation(p.id).is_some() {
            return false;
        }
        let approval = self.effects.approval_for(p.id);
        let permit = self.effects.permit_for(p.id);
        match approval.map(|a| a.status) {
            Some(ApprovalStatus::Pending) => return false,
            // A granted approval is followed by its permit in the same bundle.
            Some(ApprovalStatus::Granted) if permit.is_none() => return false,
            _ => {}
        }
        if let Some(permit) = permit {
            match permit.status(now) {
                PermitStatus::Live => return false,
                PermitStatus::Used => {
                    let waiting = permit
                        .used_by
                        .and_then(|e| self.effects.effects().get(&e))
                        .is_some_and(|e| matches!(e.status, EffectStatus::Running | EffectStatus::Unknown));
                    if waiting {
                        return false;
                    }
                }
                PermitStatus::Revoked | PermitStatus::Expired => {}
            }
        }
        match verdict {
            Verdict::Allow => permit.is_some(),
            Verdict::RequireApproval => approval.is_some(),
            Verdict::Deny | Verdict::Suspend => true,
        }
    }

    /// Records held in memory: runs, proposals, permits, approvals and effects (what a snapshot's size and a
    /// state clone's cost follow).
    pub fn live_records(&self) -> usize {
        self.runs.len()
            + self.authority.proposals().len()
            + self.effects.permits().len()
            + self.effects.approvals().len()
            + self.effects.effects().len()
    }

    /// Whether the run ended and retired (it is TERMINATED, and no longer held in memory).
    pub fn is_retired_run(&self, id: RunId) -> bool {
        self.retired_runs.contains(&id)
    }

    /// How many runs have retired.
    pub fn retired_runs(&self) -> usize {
        self.retired_runs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::retire_due;

    #[test]
    fn a_pass_is_due_with_little_live_or_after_as_many_events_as_live_records() {
        assert!(retire_due(10, 9, 1_000), "little live: every checkpoint");
        assert!(!retire_due(5_000, 4_000, 2_000), "1,000 events since, 2,000 live: not yet");
        assert!(retire_due(6_000, 4_000, 2_000));
        assert!(retire_due(6_000, 0, 2_000), "no pass yet (or a snapshot from before the mark)");
    }

    #[test]
    fn a_mark_beyond_the_ledger_does_not_stop_retirement() {
        // An edited snapshot claiming a pass at a seq not yet folded: counted as no pass.
        assert!(retire_due(6_000, u64::MAX, 2_000));
        assert!(!retire_due(1_500, u64::MAX, 2_000), "still rationed by the events folded");
    }
}
