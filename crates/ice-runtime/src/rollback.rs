//! Finishing runs and rolling back what they did.
//!
//! `finish_run` moves an executing run to VALIDATING and then COMMITTED when every effect it started completed, or
//! ABORTED (naming what failed or is unknown) otherwise. `rollback` undoes completed effects by applying their
//! recorded compensations — restoring prior file content from the blob store, deleting files an effect created —
//! as governed effects of their own: each compensation is a proposal by the person rolling back, decided by the same
//! grants, policy and budgets as anything else, executed through the same permit check, in a new run, and linked
//! to the effect it undoes. Irreversible effects are listed as such.

use ice_core::decision::Verdict;
use ice_core::effect::{EffectRecord, EffectStatus};
use ice_core::{Draft, ErrorCode, EventId, EventKind, LedgerState, Rejection, RunId, RunRecord, RunState, payloads};
use ice_effects::{Compensation, Plan};
use serde::Serialize;
use serde_json::json;

use crate::authority::ProposalInput;
use crate::boundary::ExecInput;
use crate::caller::Caller;
use crate::runtime::{Runtime, RuntimeError};

/// What to roll back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTarget {
    /// Every completed effect of a run, newest first.
    Run(RunId),
    /// One effect (its `EffectStarted` or `EffectCompleted` event id).
    Event(EventId),
}

/// What happened to one effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RollbackStep {
    /// Undone by this compensation effect.
    Compensated {
        /// The compensating `EffectStarted`.
        compensation: EventId,
    },
    /// A human must approve the compensation first; then execute its permit.
    AwaitingApproval {
        /// The approval.
        approval: EventId,
    },
    /// The compensation was denied.
    Denied {
        /// Why.
        reasons: Vec<String>,
    },
    /// The compensation failed.
    Failed {
        /// Why.
        message: String,
    },
    /// Already undone earlier.
    AlreadyCompensated {
        /// By which outcome.
        by: EventId,
    },
    /// A read: nothing to undo.
    NothingToUndo,
    /// Cannot be undone.
    Irreversible {
        /// Why.
        reason: String,
    },
}

/// One line of a rollback report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackItem {
    /// The effect (`EffectStarted` id).
    pub effect: EventId,
    /// Its action and resource.
    pub action: String,
    /// Its resource.
    pub resource: String,
    /// What happened.
    pub step: RollbackStep,
}

/// The result of `rollback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackReport {
    /// The run the compensations ran in.
    pub run: RunId,
    /// Its final state (EXECUTING while approvals are pending).
    pub run_state: RunState,
    /// One item per effect considered, in the order undone.
    pub items: Vec<RollbackItem>,
}

/// What rolling one effect back would do (a preview: nothing is recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Planned {
    /// Propose this compensation (decided like any proposal: it may need an approval or be denied).
    Propose {
        /// The compensating action.
        action: String,
        /// Its resource.
        resource: String,
        /// Its args.
        args: serde_json::Value,
    },
    /// The effect changed nothing (a read).
    NothingToUndo,
    /// The effect cannot be undone.
    Irreversible {
        /// Why.
        reason: String,
    },
    /// Already undone by this compensation.
    AlreadyCompensated {
        /// The compensating effect.
        by: EventId,
    },
}

/// One effect a rollback would consider, with what it would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollbackPreview {
    /// The effect (`EffectStarted` id).
    pub effect: EventId,
    /// Its action.
    pub action: String,
    /// Its resource.
    pub resource: String,
    /// What rolling it back would do.
    pub planned: Planned,
}

/// The compensation `effect`'s recorded plan names.
fn planned(effect: &EffectRecord) -> Result<Planned, RuntimeError> {
    if let Some(by) = effect.compensated_by {
        return Ok(Planned::AlreadyCompensated { by });
    }
    let plan: Plan = serde_json::from_value(effect.started.plan.clone())
        .map_err(|e| RuntimeError::Corrupt { seq: 0, message: format!("recorded plan of {}: {e}", effect.id) })?;
    let (action, path, args) = match plan.compensation {
        Compensation::Nothing => return Ok(Planned::NothingToUndo),
        Compensation::Irreversible { reason } => return Ok(Planned::Irreversible { reason }),
        Compensation::RestoreFile { path, blob } => ("fs.restore", path.clone(), json!({"path": path, "blob": blob})),
        Compensation::DeleteFile { path } => ("fs.delete", path.clone(), json!({"path": path})),
    };
    Ok(Planned::Propose { action: action.to_owned(), resource: format!("file:{path}"), args })
}

/// Whether `args` (`{"path", "blob"}`) are exactly the restore that `effect` recorded as its compensation.
pub(crate) fn is_recorded_restore(effect: &EffectRecord, args: &serde_json::Value) -> bool {
    match serde_json::from_value::<Plan>(effect.started.plan.clone()).map(|p| p.compensation) {
        Ok(Compensation::RestoreFile { path, blob }) => args == &json!({"path": path, "blob": blob}),
        _ => false,
    }
}

impl Runtime {
    /// Finishes an executing (or validating) run: VALIDATING, then COMMITTED if every effect completed, else
    /// ABORTED. The only way a run becomes COMMITTED.
    pub fn finish_run(&self, caller: &Caller, run: RunId) -> Result<RunRecord, RuntimeError> {
        self.reconcile()?;
        let attempt = || json!({"kind": "RunTransitioned", "run_id": run.to_string(), "to": "COMMITTED|ABORTED"});
        self.commit_with(&|st: &LedgerState| self.finish_drafts(st, caller, run), &attempt)?;
        self.with_state(|st| st.run(run).cloned())?
            .ok_or_else(|| RuntimeError::Corrupt { seq: 0, message: format!("run {run} vanished") })
    }

    fn finish_drafts(&self, st: &LedgerState, caller: &Caller, run: RunId) -> Result<Vec<Draft>, Rejection> {
        let state = st.run(run).map(|r| r.state);
        if !matches!(state, Some(RunState::Executing | RunState::Validating)) {
            return Err(Rejection::new(
                ErrorCode::IllegalTransition,
                format!(
                    "run {run} is {}; only an EXECUTING or VALIDATING run can be finished",
                    state.map_or("missing".into(), |s| s.to_string())
                ),
            ));
        }
        let effects: Vec<&EffectRecord> =
            st.effects().effects().values().map(|e| &**e).filter(|e| e.run == Some(run)).collect();
        if let Some(e) = effects.iter().find(|e| e.status == EffectStatus::Running) {
            return Err(Rejection::new(
                ErrorCode::IllegalTransition,
                format!("effect {} is still running; finish the run when it has an outcome", e.id),
            ));
        }
        let bad: Vec<String> = effects
            .iter()
            .filter(|e| e.status != EffectStatus::Completed)
            .map(|e| format!("{} {:?}", e.id, e.status).to_lowercase())
            .collect();
        let validating = payloads::RunTransitioned {
            from: RunState::Executing,
            to: RunState::Validating,
            reason: Some(format!("{} effect(s) to validate", effects.len())),
        };
        let (to, reason) = if bad.is_empty() {
            (RunState::Committed, format!("all {} effect(s) completed", effects.len()))
        } else {
            (RunState::Aborted, format!("effects without a completed outcome: {}", bad.join(", ")))
        };
        let end = payloads::RunTransitioned { from: RunState::Validating, to, reason: Some(reason) };
        let mut second = self.caller_draft(caller, EventKind::RunTransitioned, Some(run), &end)?;
        if state == Some(RunState::Validating) {
            return Ok(vec![second]);
        }
        // The pipeline admits the second transition against the state the first leaves.
        let first = self.caller_draft(caller, EventKind::RunTransitioned, Some(run), &validating)?;
        second.causes = vec![first.event_id];
        Ok(vec![first, second])
    }

    /// Rolls back completed effects (operator only; the compensations are the operator's own proposals, decided
    /// like any other); see the module docs.
    pub fn rollback(&self, actor: &Caller, target: RollbackTarget) -> Result<RollbackReport, RuntimeError> {
        self.require(actor, ice_core::Role::Operator, "rollback")?;
        self.reconcile()?;
        let attempt = || json!({"kind": "Rollback", "target": format!("{target:?}")});
        let targets = self.rollback_targets(target)?;
        if targets.is_empty() {
            let r = Rejection::new(ErrorCode::NothingToRollBack, format!("no completed effect matches {target:?}"));
            return Err(self.refuse(r, attempt(), None));
        }
        let label = match target {
            RollbackTarget::Run(r) => format!("rollback of run {r}"),
            RollbackTarget::Event(e) => format!("rollback of effect {e}"),
        };
        let run = self.create_run(actor, Some(label))?.id;
        for to in [RunState::Provisioned, RunState::ContextReady, RunState::Executing] {
            self.advance_run(actor, run, Some(to), None)?;
        }
        let mut items = Vec::new();
        for effect in targets {
            let step = self.compensate(actor, run, &effect)?;
            items.push(RollbackItem {
                effect: effect.id,
                action: effect.started.action.clone(),
                resource: effect.started.resource.clone(),
                step,
            });
        }
        let pending = items.iter().any(|i| matches!(i.step, RollbackStep::AwaitingApproval { .. }));
        let run_state = if pending { RunState::Executing } else { self.finish_run(actor, run)?.state };
        Ok(RollbackReport { run, run_state, items })
    }

    /// The completed effects `target` names, newest first (what `rollback` would consider).
    fn rollback_targets(&self, target: RollbackTarget) -> Result<Vec<EffectRecord>, RuntimeError> {
        self.with_state(|st| {
            let effects = st.effects().effects();
            match target {
                RollbackTarget::Run(run) => {
                    let mut v: Vec<EffectRecord> = effects
                        .values()
                        .filter(|e| e.run == Some(run) && e.status == EffectStatus::Completed)
                        .filter(|e| e.started.compensates.is_none())
                        .map(|e| (**e).clone())
                        .collect();
                    v.sort_by_key(|e| std::cmp::Reverse((e.started_at.0, e.id)));
                    v
                }
                RollbackTarget::Event(id) => effects
                    .values()
                    .filter(|e| e.id == id || e.outcome == Some(id))
                    .filter(|e| e.status == EffectStatus::Completed)
                    .map(|e| (**e).clone())
                    .collect(),
            }
        })
    }

    /// What `rollback` would propose for each effect `target` names, in the order it would (auditor, operator,
    /// approver; nothing is recorded).
    pub fn rollback_preview(
        &self,
        caller: &Caller,
        target: RollbackTarget,
    ) -> Result<Vec<RollbackPreview>, RuntimeError> {
        use ice_core::Role;
        self.require_any(caller, &[Role::Operator, Role::Auditor, Role::Approver], "previewing a rollback")?;
        self.rollback_targets(target)?
            .iter()
            .map(|e| {
                Ok(RollbackPreview {
                    effect: e.id,
                    action: e.started.action.clone(),
                    resource: e.started.resource.clone(),
                    planned: planned(e)?,
                })
            })
            .collect()
    }

    fn compensate(&self, actor: &Caller, run: RunId, effect: &EffectRecord) -> Result<RollbackStep, RuntimeError> {
        let (action, resource, args) = match planned(effect)? {
            Planned::AlreadyCompensated { by } => return Ok(RollbackStep::AlreadyCompensated { by }),
            Planned::NothingToUndo => return Ok(RollbackStep::NothingToUndo),
            Planned::Irreversible { reason } => return Ok(RollbackStep::Irreversible { reason }),
            Planned::Propose { action, resource, args } => (action, resource, args),
        };
        let input = ProposalInput {
            run: Some(run.to_string()),
            action,
            resource,
            args: args.to_string(),
            purpose: format!(
                "rollback: undo effect {} ({} on {})",
                effect.id, effect.started.action, effect.started.resource
            ),
            compensates: Some(effect.id),
            ..ProposalInput::default()
        };
        let decided = match self.propose(actor, &input) {
            Ok(d) => d,
            Err(RuntimeError::Rejected { rejection, .. }) => {
                return Ok(RollbackStep::Failed { message: rejection.to_string() });
            }
            Err(e) => return Err(e),
        };
        match decided.decision.verdict {
            Verdict::Allow => {}
            Verdict::RequireApproval => {
                let approval =
                    self.with_state(|st| st.effects().approval_for(decided.proposal.event_id).map(|a| a.id))?;
                return Ok(match approval {
                    Some(approval) => RollbackStep::AwaitingApproval { approval },
                    None => RollbackStep::Failed { message: "approval required but none was requested".into() },
                });
            }
            Verdict::Deny | Verdict::Suspend => {
                let reasons = decided.decision.reasons.iter().map(|r| format!("{}: {}", r.kind, r.detail)).collect();
                return Ok(RollbackStep::Denied { reasons });
            }
        }
        let permit = self.with_state(|st| st.effects().permit_for(decided.proposal.event_id).map(|p| p.id))?;
        let Some(permit) = permit else {
            return Ok(RollbackStep::Failed { message: "allowed but no permit was issued".into() });
        };
        let exec = ExecInput { permit: permit.to_string(), args: None };
        match self.execute(actor, &exec) {
            Ok(out) if out.status == EffectStatus::Completed => {
                Ok(RollbackStep::Compensated { compensation: out.started.event_id })
            }
            Ok(out) => {
                Ok(RollbackStep::Failed { message: out.failure.map(|(c, m)| format!("{c}: {m}")).unwrap_or_default() })
            }
            Err(RuntimeError::Rejected { rejection, .. }) => {
                Ok(RollbackStep::Failed { message: rejection.to_string() })
            }
            Err(e) => Err(e),
        }
    }
}
