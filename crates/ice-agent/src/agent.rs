//! The loop: rebuild the plan from the run, take its one next step through the runtime, repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ice_core::{Cost, Dimension, ErrorCode, EventId, EventKind, RawEvent, RunId};
use ice_effects::BlobStore;
use ice_providers::{ModelEffector, Request};
use ice_runtime::{Caller, DecisionOutcome, ExecInput, ProposalInput, Runtime, RuntimeError};
use serde_json::{Value, json};

use crate::config::AgentConfig;
use crate::history::{self, Answer, History, Next};
use crate::{AgentError, MODEL_ACTION};

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model answered without calling a tool.
    Finished,
    /// A model call was not allowed (the token budget, a grant, policy, an unanswered approval).
    Refused,
    /// The model provider failed.
    ProviderFailed,
    /// `max_steps` model calls were made in the run.
    StepLimit,
}

impl StopReason {
    /// snake_case name (recorded in the `stopped` lifecycle event).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Refused => "refused",
            Self::ProviderFailed => "provider_failed",
            Self::StepLimit => "step_limit",
        }
    }
}

/// How the loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Why.
    pub reason: StopReason,
    /// The model's final answer, or what stopped it.
    pub message: String,
}

impl Stop {
    fn new(reason: StopReason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into() }
    }
}

/// One agent at work in one run.
pub struct Agent {
    rt: Arc<Runtime>,
    caller: Caller,
    config: AgentConfig,
    run: RunId,
    model: ModelEffector,
    blobs: BlobStore,
    say: Box<dyn Fn(&str) + Send + Sync>,
    poll: Duration,
}

impl Agent {
    /// An agent acting as `caller` in `run`. `rt`'s effectors must include `model` (so this process can execute
    /// its own model calls) and `blobs` must be their blob store.
    pub fn new(
        rt: Arc<Runtime>,
        caller: Caller,
        config: AgentConfig,
        run: RunId,
        model: ModelEffector,
        blobs: BlobStore,
    ) -> Self {
        Self { rt, caller, config, run, model, blobs, say: Box::new(|_| {}), poll: Duration::from_millis(250) }
    }

    /// Reports progress through `say` (one line per step).
    pub fn reporting(mut self, say: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.say = Box::new(say);
        self
    }

    /// Runs until the model finishes, policy stops it, or the step limit; records its lifecycle.
    pub fn run(&self) -> Result<Stop, AgentError> {
        if self.rt.run(self.run)?.is_none() {
            return Err(AgentError::new(ErrorCode::UnknownRun, format!("run {} does not exist", self.run)));
        }
        let history = self.history()?;
        // The last start never recorded its stop: it died (kill -9, power loss) and is resumed from the ledger.
        if matches!(history.last_lifecycle.as_deref(), Some("started" | "suspended" | "resumed")) {
            self.record(json!({"lifecycle": "crashed", "detected": "when the agent started again"}))?;
            (self.say)("the previous start of this agent ended without stopping; resuming from the ledger");
        }
        self.record(json!({"lifecycle": "started", "model": self.config.provider.model(),
            "resuming": !history.fates.is_empty(), "proposals_so_far": history.fates.len()}))?;
        let result = self.steps();
        let stopped = match &result {
            Ok(stop) => json!({"lifecycle": "stopped", "reason": stop.reason.as_str(), "detail": stop.message}),
            Err(e) => json!({"lifecycle": "stopped", "reason": "error", "code": e.code.as_str(), "detail": e.message}),
        };
        let recorded = self.record(stopped);
        let stop = result?;
        recorded?;
        Ok(stop)
    }

    fn steps(&self) -> Result<Stop, AgentError> {
        let me = self.caller.principal().clone();
        let mut suspended = false;
        loop {
            // Suspension takes effect before the next call: the agent waits, and says so in the ledger.
            let why = self.rt.with_state(|s| s.authority().suspended(&me).map(str::to_owned))?;
            match (suspended, why) {
                (false, Some(why)) => {
                    self.record(json!({"lifecycle": "suspended", "reason": why}))?;
                    (self.say)(&format!("suspended ({why}); waiting for `ice agent resume {me}`"));
                    suspended = true;
                }
                (true, None) => {
                    self.record(json!({"lifecycle": "resumed"}))?;
                    (self.say)("resumed");
                    suspended = false;
                }
                _ => {}
            }
            if suspended {
                std::thread::sleep(self.poll);
                continue;
            }
            let plan = history::plan(&self.config, &self.history()?, &self.blobs)?;
            match plan.next {
                Next::Finished { answer } => return Ok(Stop::new(StopReason::Finished, answer)),
                Next::AskModel { request } => {
                    if plan.model_calls >= self.config.agent.max_steps {
                        let m = format!("{} model calls made in this run (max_steps)", plan.model_calls);
                        return Ok(Stop::new(StopReason::StepLimit, m));
                    }
                    if let Some(stop) = self.ask(&request, plan.model_calls + 1)? {
                        return Ok(stop);
                    }
                }
                Next::ExecuteModel { permit, request } => {
                    self.model.stage(&request);
                    if let Some(stop) = self.execute_model(permit)? {
                        return Ok(stop);
                    }
                }
                Next::Recall => self.recall()?,
                Next::Propose { tool, args } => self.propose_call(&tool, args)?,
                Next::Execute { permit } => self.execute_call(permit)?,
                Next::AwaitApproval { proposal, approval } => {
                    if let Some(stop) = self.await_approval(proposal, approval)? {
                        return Ok(stop);
                    }
                }
            }
        }
    }

    /// Searches memory for the task as this agent, in its run: the runtime records the read (`MemoryRead`), which
    /// is what the next plan shows the model.
    fn recall(&self) -> Result<(), AgentError> {
        let Some(m) = &self.config.agent.memory else { return Ok(()) };
        let q = ice_runtime::MemoryQuery {
            query: self.config.agent.task.clone(),
            namespace: m.namespace.clone(),
            k: m.k,
            run: Some(self.run.to_string()),
        };
        let out = self.rt.memory_search(&self.caller, &q)?;
        (self.say)(&format!("recalled {} memory item(s) (read {})", out.items.len(), out.read.event_id));
        Ok(())
    }

    fn history(&self) -> Result<History, AgentError> {
        History::read(self.rt.store().as_ref(), self.run, self.caller.principal())
    }

    /// Proposes a model call on `request`, reserving its token estimate, and makes it if it is allowed.
    fn ask(&self, request: &Request, step: u32) -> Result<Option<Stop>, AgentError> {
        let args = self.model.call_args(request);
        let prompt_chars = serde_json::to_string(&request.messages).map_or(0, |s| s.len()) as u64;
        let mut cost = Cost::zero();
        cost.set(Dimension::Calls, 1);
        cost.set(Dimension::Tokens, self.config.agent.max_tokens.saturating_add(prompt_chars.div_ceil(4)));
        let purpose = format!("agent {}: ask {} (step {step})", self.config.agent.name, self.config.provider.model());
        (self.say)(&format!("step {step}: asking {}", self.config.provider.model()));
        let outcome = self.propose(MODEL_ACTION, &self.model.resource(), args, cost, purpose)?;
        match (find(&outcome, EventKind::PermitIssued), find(&outcome, EventKind::ApprovalRequested)) {
            (Some(permit), _) => self.execute_model(permit),
            (None, Some(_)) => Ok(None),
            (None, None) => Ok(Some(Stop::new(StopReason::Refused, refusal("the model call", &outcome)))),
        }
    }

    fn execute_model(&self, permit: EventId) -> Result<Option<Stop>, AgentError> {
        let input = ExecInput { permit: permit.to_string(), args: None };
        match self.rt.execute(&self.caller, &input) {
            Ok(o) if o.status == ice_core::effect::EffectStatus::Completed => {
                let tokens = o.evidence.as_ref().and_then(|e| e.tokens).unwrap_or(0);
                (self.say)(&format!("  the model answered ({tokens} tokens)"));
                Ok(None)
            }
            Ok(o) => {
                let (code, message) = o.failure.unwrap_or((ErrorCode::EffectFailed, "the call failed".into()));
                Ok(Some(Stop::new(StopReason::ProviderFailed, format!("{}: {message}", code.as_str()))))
            }
            Err(e) => {
                self.give_up_permit(permit, &e)?;
                Ok(Some(Stop::new(StopReason::ProviderFailed, e.to_string())))
            }
        }
    }

    /// Proposes one tool call of the model's (what becomes of it is read back from the ledger by the next plan).
    fn propose_call(&self, tool: &str, args: serde_json::Map<String, Value>) -> Result<(), AgentError> {
        let (action, resource) = history::proposable(&self.config, tool, &args)
            .map_err(|why| AgentError::new(ErrorCode::UnknownAction, why))?;
        let (_, args_hash) = history::canonical(&args)?;
        let purpose = format!("agent {}: {tool} as the model asked", self.config.agent.name);
        match self.propose(&action, &resource, Value::Object(args), Cost::zero(), purpose) {
            Ok(o) => {
                (self.say)(&format!("  {tool} → {action} {resource}: {}", o.decision.verdict.as_str()));
                Ok(())
            }
            // Refused before it was a proposal (malformed args, a literal credential): recorded, and told to the
            // model as refused.
            Err(AgentError { code, message }) if is_intake_refusal(code) => {
                (self.say)(&format!("  {tool} → refused: {message}"));
                self.record(json!({"intake_refused": {"action": action, "args_hash": args_hash,
                    "code": code.as_str(), "message": message}}))
            }
            Err(e) => Err(e),
        }
    }

    fn execute_call(&self, permit: EventId) -> Result<(), AgentError> {
        let input = ExecInput { permit: permit.to_string(), args: None };
        match self.rt.execute(&self.caller, &input) {
            Ok(o) => {
                (self.say)(&format!("  effect {}: {}", o.started.event_id, format!("{:?}", o.status).to_lowercase()));
                Ok(())
            }
            Err(e) => self.give_up_permit(permit, &e),
        }
    }

    /// Waits for an approver; after `approval_timeout_secs` the agent stops waiting (recorded) and the call is
    /// told to the model as not approved — or, for a model call, the agent stops.
    fn await_approval(&self, proposal: EventId, approval: EventId) -> Result<Option<Stop>, AgentError> {
        (self.say)(&format!("  waiting for a human: ice approve {approval} (proposal {proposal})"));
        let deadline = Instant::now() + Duration::from_secs(self.config.agent.approval_timeout_secs);
        loop {
            let history = self.history()?;
            let fate = history.fates.iter().find(|f| f.id == proposal);
            let Some(fate) = fate else { return Ok(None) };
            if !matches!(fate.approval, Some((_, Answer::Pending))) {
                return Ok(None);
            }
            if Instant::now() >= deadline {
                // Take the proposal back (recorded; the approval leaves the approvers' queue). An approver who
                // answered in the meantime wins: the next look at the ledger sees the answer.
                let reason = format!(
                    "agent {} stopped waiting after {} s",
                    self.config.agent.name, self.config.agent.approval_timeout_secs
                );
                match self.rt.withdraw(&self.caller, proposal, &reason) {
                    Ok(_) => {}
                    Err(e) if e.code() == ErrorCode::ApprovalClosed => continue,
                    Err(e) => return Err(e.into()),
                }
                if fate.action == MODEL_ACTION {
                    let m = format!("no approver answered approval {approval} of the model call");
                    return Ok(Some(Stop::new(StopReason::Refused, m)));
                }
                (self.say)("  no answer in time: told the model it was not approved");
                return Ok(None);
            }
            std::thread::sleep(self.poll);
        }
    }

    fn propose(
        &self,
        action: &str,
        resource: &str,
        args: Value,
        cost: Cost,
        purpose: String,
    ) -> Result<DecisionOutcome, AgentError> {
        let proposal = json!({"run": self.run.to_string(), "action": action, "resource": resource, "args": args,
            "purpose": purpose, "cost_estimate": cost});
        let input = ProposalInput::from_json(&proposal).map_err(|r| AgentError::new(r.code, r.message.clone()))?;
        Ok(self.rt.propose(&self.caller, &input)?)
    }

    /// Records that a permit will not be used (execution refused it), so the next plan does not try it again.
    fn give_up_permit(&self, permit: EventId, e: &RuntimeError) -> Result<(), AgentError> {
        (self.say)(&format!("  execution refused: {e}"));
        self.record(json!({"gave_up_on_permit": permit.to_string(), "code": e.code().as_str(),
            "message": e.to_string()}))
    }

    /// Appends an `ObservationRecorded` of the agent's own in its run.
    fn record(&self, mut payload: Value) -> Result<(), AgentError> {
        payload["agent"] = Value::String(self.config.agent.name.clone());
        let raw = RawEvent {
            kind: EventKind::ObservationRecorded.as_str().to_owned(),
            origin: self.caller.principal().to_string(),
            run_id: Some(self.run.to_string()),
            payload: payload.to_string(),
            ..RawEvent::default()
        };
        self.rt.submit(&self.caller, &raw)?;
        Ok(())
    }
}

/// The id of the first event of `kind` a decision produced.
fn find(outcome: &DecisionOutcome, kind: EventKind) -> Option<EventId> {
    outcome.events.iter().find(|e| e.kind == kind).map(|e| e.event_id)
}

/// A refused decision, in a line.
fn refusal(what: &str, o: &DecisionOutcome) -> String {
    let d = &o.decision;
    let violation = d.violation.map(|v| format!("{v:?}")).unwrap_or_default();
    let reasons: Vec<String> = d.reasons.iter().map(|r| format!("{}: {}", r.kind, r.detail)).collect();
    format!(
        "{what} was {} ({violation}; proposal {}, decision at seq {}): {}",
        d.verdict.as_str(),
        o.proposal.event_id,
        o.decision_event.seq.0,
        reasons.join("; ")
    )
}

/// Whether a refused proposal was refused for what it said (told to the model) rather than for where it was made
/// (the run, the store: the agent cannot go on).
fn is_intake_refusal(code: ErrorCode) -> bool {
    !matches!(
        code,
        ErrorCode::UnknownRun
            | ErrorCode::StoreUnavailable
            | ErrorCode::HeadConflict
            | ErrorCode::LedgerCorrupt
            | ErrorCode::Unauthenticated
            | ErrorCode::RoleRequired
    ) && !code.as_str().starts_with("ICE-E01")
}
