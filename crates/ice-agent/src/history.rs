//! The agent's memory of its run is the ledger: before every step the loop reads the run's events and rebuilds
//! the conversation from them — the model's answers from the blobs their `model.call` effects recorded, each tool
//! call's observation from its proposal's decision and effect outcome — and works out the one thing to do next.
//! A live step and a step after `kill -9` therefore take the same path: an effect that completed is read back,
//! never repeated; a permit that was issued but not used is used; an effect that started and never finished is
//! reported to the model as unknown, not run again.

use std::collections::BTreeMap;

use ice_core::decision::Decision;
use ice_core::effect::{ApprovalAnswer, ApprovalRequested, ApprovalTimeout, EffectCompleted, EffectFailed};
use ice_core::effect::{EffectStarted, PermitIssued, PermitRevoked};
use ice_core::proposal::Proposal;
use ice_core::{ErrorCode, Event, EventId, EventKind, Principal, RunId, Seq};
use ice_effects::BlobStore;
use ice_providers::{Intent, Message, Request, intents};
use ice_store::{EventQuery, Store};
use serde_json::{Value, json};

use crate::config::AgentConfig;
use crate::{AgentError, MODEL_ACTION};

/// Most bytes of an effect's output shown to the model.
const MAX_OBSERVED_BYTES: usize = 16 * 1024;

/// What became of one effect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Completed, with its evidence.
    Completed(Value),
    /// Failed or unknown, with code and message.
    NotCompleted { kind: EventKind, code: String, message: String },
}

/// What an approval came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Pending,
    Granted,
    Denied,
    Expired,
    /// The agent stopped waiting and withdrew the proposal.
    GaveUp,
}

/// One proposal of this agent in the run (or one call refused before it became a proposal) and what became of
/// it.
#[derive(Debug, Clone)]
pub(crate) struct Fate {
    /// The proposal's event id (of the refusal's observation, for a call refused at intake).
    pub id: EventId,
    pub action: String,
    pub args_hash: String,
    /// A model call's `prompt` arg.
    pub prompt: Option<String>,
    /// Refused at intake, or its permit given up: code and message.
    pub refused: Option<(String, String)>,
    pub decision: Option<Decision>,
    pub approval: Option<(EventId, Answer)>,
    pub permit: Option<EventId>,
    pub revoked: bool,
    pub started: Option<EventId>,
    pub outcome: Option<Outcome>,
}

impl Fate {
    fn new(id: EventId, action: String, args_hash: String) -> Self {
        Self {
            id,
            action,
            args_hash,
            prompt: None,
            refused: None,
            decision: None,
            approval: None,
            permit: None,
            revoked: false,
            started: None,
            outcome: None,
        }
    }
}

/// The run as this agent left it.
#[derive(Debug, Default)]
pub(crate) struct History {
    pub fates: Vec<Fate>,
    /// The `lifecycle` of this agent's last lifecycle observation.
    pub last_lifecycle: Option<String>,
    /// The memory this agent recalled in the run (its first `MemoryRead` there): item id and text, in rank order.
    pub recall: Option<Vec<(EventId, String)>>,
}

impl History {
    /// Reads every event of `run` (a page at a time) and keeps what `me` proposed and what became of it.
    pub fn read(store: &dyn Store, run: RunId, me: &Principal) -> Result<Self, AgentError> {
        let mut h = History::default();
        let mut index: BTreeMap<EventId, usize> = BTreeMap::new(); // proposal → fate
        let mut by_link: BTreeMap<EventId, usize> = BTreeMap::new(); // approval / permit / start → fate
        let mut after = Seq(0);
        loop {
            let page = store
                .read(&EventQuery { after, run: Some(run), limit: 1000, ..EventQuery::default() })
                .map_err(|e| AgentError::new(e.code(), e.to_string()))?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in &page {
                h.fold(e, me, &mut index, &mut by_link)?;
            }
        }
        if let Some(recall) = &mut h.recall {
            // Items are immutable: the text shown is the promoted text, read back by the item's (event) id.
            for (id, text) in recall.iter_mut() {
                let e = store.get(*id).map_err(|e| AgentError::new(e.code(), e.to_string()))?;
                let p =
                    e.and_then(|e| serde_json::from_str::<ice_core::memory::MemoryPromoted>(e.payload.as_str()).ok());
                *text = p.map(|p| p.text).ok_or_else(|| {
                    AgentError::new(ErrorCode::LedgerCorrupt, format!("recalled memory item {id} is not in the ledger"))
                })?;
            }
        }
        Ok(h)
    }

    fn fold(
        &mut self,
        e: &Event,
        me: &Principal,
        index: &mut BTreeMap<EventId, usize>,
        by_link: &mut BTreeMap<EventId, usize>,
    ) -> Result<(), AgentError> {
        let text = e.payload.as_str();
        let corrupt = |what: &str, err: serde_json::Error| {
            AgentError::new(ErrorCode::LedgerCorrupt, format!("{what} at seq {}: {err}", e.seq.0))
        };
        match e.kind {
            EventKind::ProposalSubmitted if &e.origin == me => {
                let p: Proposal = serde_json::from_str(text).map_err(|x| corrupt("ProposalSubmitted", x))?;
                index.insert(e.event_id, self.fates.len());
                let prompt = p.args.get("prompt").and_then(Value::as_str).map(str::to_owned);
                self.fates.push(Fate { prompt, ..Fate::new(e.event_id, p.action, p.args_hash) });
            }
            EventKind::ObservationRecorded if &e.origin == me => {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                if let Some(l) = v.get("lifecycle").and_then(Value::as_str) {
                    self.last_lifecycle = Some(l.to_owned());
                }
                let id_of = |k: &str| v.get(k).and_then(Value::as_str).and_then(|s| s.parse::<EventId>().ok());
                let text_of = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                if let Some(&i) = id_of("gave_up_on_permit").and_then(|id| by_link.get(&id)) {
                    self.fates[i].revoked = true;
                    self.fates[i].refused = Some((text_of("code"), text_of("message")));
                }
                if let Some(r) = v.get("intake_refused") {
                    let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                    let refused = Some((field("code"), field("message")));
                    self.fates.push(Fate { refused, ..Fate::new(e.event_id, field("action"), field("args_hash")) });
                }
            }
            EventKind::MemoryRead if self.recall.is_none() => {
                let r: ice_core::memory::MemoryRead =
                    serde_json::from_str(text).map_err(|x| corrupt("MemoryRead", x))?;
                if &r.reader == me {
                    self.recall = Some(r.items.iter().map(|i| (i.item, String::new())).collect());
                }
            }
            // The agent took its proposal back: a pending approval is given up, an unused permit will not be used.
            EventKind::ProposalWithdrawn if &e.origin == me => {
                let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                let id = v.get("proposal_id").and_then(Value::as_str).and_then(|s| s.parse::<EventId>().ok());
                if let Some(&i) = id.as_ref().and_then(|id| index.get(id)) {
                    if let Some((approval, _)) = self.fates[i].approval {
                        self.answer(by_link, approval, Answer::GaveUp);
                    }
                    self.fates[i].revoked = true;
                }
            }
            EventKind::DecisionMade => {
                let d: Decision = serde_json::from_str(text).map_err(|x| corrupt("DecisionMade", x))?;
                if let Some(&i) = index.get(&d.proposal_id) {
                    self.fates[i].decision = Some(d);
                }
            }
            EventKind::ApprovalRequested => {
                let a: ApprovalRequested = serde_json::from_str(text).map_err(|x| corrupt("ApprovalRequested", x))?;
                if let Some(&i) = index.get(&a.proposal_id) {
                    self.fates[i].approval = Some((e.event_id, Answer::Pending));
                    by_link.insert(e.event_id, i);
                }
            }
            EventKind::ApprovalGranted | EventKind::ApprovalDenied => {
                let a: ApprovalAnswer = serde_json::from_str(text).map_err(|x| corrupt("approval answer", x))?;
                let answer = if e.kind == EventKind::ApprovalGranted { Answer::Granted } else { Answer::Denied };
                self.answer(by_link, a.approval_id, answer);
            }
            EventKind::ApprovalExpired => {
                let a: ApprovalTimeout = serde_json::from_str(text).map_err(|x| corrupt("ApprovalExpired", x))?;
                self.answer(by_link, a.approval_id, Answer::Expired);
            }
            EventKind::PermitIssued => {
                let p: PermitIssued = serde_json::from_str(text).map_err(|x| corrupt("PermitIssued", x))?;
                if let Some(&i) = index.get(&p.proposal_id) {
                    self.fates[i].permit = Some(e.event_id);
                    by_link.insert(e.event_id, i);
                }
            }
            EventKind::PermitRevoked => {
                let p: PermitRevoked = serde_json::from_str(text).map_err(|x| corrupt("PermitRevoked", x))?;
                if let Some(&i) = by_link.get(&p.permit_id) {
                    self.fates[i].revoked = true;
                }
            }
            EventKind::EffectStarted => {
                let s: EffectStarted = serde_json::from_str(text).map_err(|x| corrupt("EffectStarted", x))?;
                if let Some(&i) = index.get(&s.proposal_id) {
                    self.fates[i].started = Some(e.event_id);
                    by_link.insert(e.event_id, i);
                }
            }
            EventKind::EffectCompleted => {
                let c: EffectCompleted = serde_json::from_str(text).map_err(|x| corrupt("EffectCompleted", x))?;
                if let Some(&i) = by_link.get(&c.started_id) {
                    self.fates[i].outcome = Some(Outcome::Completed(c.evidence));
                }
            }
            EventKind::EffectFailed | EventKind::EffectUnknown => {
                let f: EffectFailed = serde_json::from_str(text).map_err(|x| corrupt("effect outcome", x))?;
                if let Some(&i) = by_link.get(&f.started_id) {
                    self.fates[i].outcome =
                        Some(Outcome::NotCompleted { kind: e.kind, code: f.code, message: f.message });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn answer(&mut self, by_link: &BTreeMap<EventId, usize>, approval: EventId, answer: Answer) {
        if let Some(&i) = by_link.get(&approval)
            && let Some((_, a)) = &mut self.fates[i].approval
            && *a == Answer::Pending
        {
            *a = answer;
        }
    }
}

/// The one thing the agent does next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Ask the model (propose a `model.call` on `request`).
    AskModel { request: Request },
    /// Use the permit of a `model.call` that was allowed but not executed (its prompt is `request`).
    ExecuteModel { permit: EventId, request: Request },
    /// Propose a tool call of the model's last answer.
    Propose { tool: String, args: serde_json::Map<String, Value> },
    /// Execute the permit of an allowed tool call.
    Execute { permit: EventId },
    /// Wait for a human's answer.
    AwaitApproval { proposal: EventId, approval: EventId },
    /// The model answered without calling a tool.
    Finished { answer: String },
    /// Recall memory (search for the task) before the first model call.
    Recall,
}

/// The conversation so far and what comes next.
#[derive(Debug)]
pub(crate) struct Plan {
    pub next: Next,
    /// Model calls proposed in the run (every start counted).
    pub model_calls: u32,
}

/// Works out, from `history`, the conversation and the next step.
pub(crate) fn plan(config: &AgentConfig, history: &History, blobs: &BlobStore) -> Result<Plan, AgentError> {
    let mut messages = Vec::new();
    if let Some(system) = &config.agent.system {
        messages.push(Message::text("system", system.clone()));
    }
    match (&config.agent.memory, &history.recall) {
        (Some(_), None) if history.fates.is_empty() => return Ok(Plan { next: Next::Recall, model_calls: 0 }),
        (_, Some(items)) if !items.is_empty() => {
            let lines: Vec<String> = items.iter().map(|(id, text)| format!("- [{id}] {text}")).collect();
            messages.push(Message::text(
                "system",
                format!(
                    "Memory (validated facts promoted in this organisation; read-only, cite the [id] you rely on):\n{}",
                    lines.join("\n")
                ),
            ));
        }
        _ => {}
    }
    messages.push(Message::text("user", config.agent.task.clone()));
    let request = |messages: &Vec<Message>| Request {
        messages: messages.clone(),
        tools: config.tool_specs(),
        max_tokens: Some(config.agent.max_tokens),
    };
    let fates = &history.fates;
    let (mut i, mut model_calls) = (0usize, 0u32);
    while let Some(f) = fates.get(i) {
        if f.action != MODEL_ACTION {
            return Err(out_of_order(f, "a model call"));
        }
        model_calls += 1;
        i += 1;
        let response = match (&f.outcome, f.permit, f.started) {
            (Some(Outcome::Completed(evidence)), _, _) => response_of(evidence, blobs)?,
            // Allowed, not used: use it now if it is the last thing that happened and its prompt is still this
            // conversation (a different configuration asks anew).
            (None, Some(permit), None) if i == fates.len() && !f.revoked => {
                let r = request(&messages);
                if f.prompt.as_deref() == Some(prompt_ref(&r).as_str()) {
                    return Ok(Plan { next: Next::ExecuteModel { permit, request: r }, model_calls });
                }
                continue;
            }
            (None, None, None) if i == fates.len() => {
                if let Some((approval, Answer::Pending)) = f.approval {
                    return Ok(Plan { next: Next::AwaitApproval { proposal: f.id, approval }, model_calls });
                }
                continue;
            }
            // Refused, failed, unknown, or never answered: no answer to add; the next call asks again.
            _ => continue,
        };
        messages.push(response.clone());
        let calls = intents(&response);
        if calls.is_empty() {
            if i < fates.len() {
                return Err(out_of_order(&fates[i], "nothing (the model had finished)"));
            }
            return Ok(Plan { next: Next::Finished { answer: response.content }, model_calls });
        }
        for intent in calls {
            let (call_id, observation) = match intent {
                Intent::Malformed { call_id, tool, reason } => (
                    call_id,
                    json!({"status": "refused", "code": ErrorCode::BadArgument.as_str(),
                        "reason": format!("{tool}: {reason}")}),
                ),
                Intent::Call { call_id, tool, args } => match proposable(config, &tool, &args) {
                    Err(why) => (
                        call_id,
                        json!({"status": "refused", "code": ErrorCode::UnknownAction.as_str(), "reason": why}),
                    ),
                    Ok((action, _)) => {
                        let Some(f) = fates.get(i) else {
                            let next = Next::Propose { tool, args };
                            return Ok(Plan { next, model_calls });
                        };
                        let (_, args_hash) = canonical(&args)?;
                        if f.action != action || f.args_hash != args_hash {
                            return Err(out_of_order(f, &format!("the model's call of {tool}")));
                        }
                        i += 1;
                        match observe(f, i == fates.len(), blobs)? {
                            Observed::Done(o) => (call_id, o),
                            Observed::Pending(next) => {
                                return Ok(Plan { next, model_calls });
                            }
                        }
                    }
                },
            };
            messages.push(Message {
                role: "tool".into(),
                content: observation.to_string(),
                tool_calls: Vec::new(),
                tool_call_id: Some(call_id),
            });
        }
    }
    Ok(Plan { next: Next::AskModel { request: request(&messages) }, model_calls })
}

/// What a tool call came to, as the model is told it — or the step still to take.
enum Observed {
    Done(Value),
    Pending(Next),
}

fn observe(f: &Fate, last: bool, blobs: &BlobStore) -> Result<Observed, AgentError> {
    let id = f.id.to_string();
    if let (Some((code, message)), None) = (&f.refused, &f.outcome) {
        return Ok(Observed::Done(json!({"status": "refused", "code": code, "reason": message})));
    }
    if let Some(outcome) = &f.outcome {
        return Ok(Observed::Done(match outcome {
            Outcome::Completed(evidence) => {
                let mut o = json!({"status": "completed", "proposal": id, "detail": evidence.get("detail")});
                if let Some(text) = output_text(evidence, blobs)? {
                    o["output"] = Value::String(text);
                }
                o
            }
            Outcome::NotCompleted { kind, code, message } => json!({"status":
                if *kind == EventKind::EffectUnknown { "unknown" } else { "failed" },
                "proposal": id, "code": code, "reason": message}),
        }));
    }
    if f.started.is_some() {
        return Ok(Observed::Done(json!({"status": "unknown", "proposal": id,
            "reason": "the effect started but the agent stopped before its outcome was recorded; it is not run again"})));
    }
    if let Some((approval, answer)) = f.approval {
        match answer {
            Answer::Pending if last => {
                return Ok(Observed::Pending(Next::AwaitApproval { proposal: f.id, approval }));
            }
            Answer::Pending | Answer::GaveUp => {
                return Ok(Observed::Done(json!({"status": "not_approved", "proposal": id,
                    "reason": "no approver answered while the agent waited; the call was not made"})));
            }
            Answer::Denied | Answer::Expired => {
                let how = if answer == Answer::Denied { "denied" } else { "expired unanswered" };
                return Ok(Observed::Done(json!({"status": "not_approved", "proposal": id,
                    "reason": format!("the approval was {how}")})));
            }
            Answer::Granted => {}
        }
    }
    match (f.permit, &f.decision) {
        (Some(permit), _) if last && !f.revoked => Ok(Observed::Pending(Next::Execute { permit })),
        (Some(_), _) => Ok(Observed::Done(json!({"status": "not_executed", "proposal": id,
            "reason": "the permit was not used"}))),
        (None, Some(d)) => Ok(Observed::Done(json!({"status": "denied", "proposal": id,
            "verdict": d.verdict.as_str(), "violation": d.violation, "policies": d.policies,
            "reasons": d.reasons.iter().map(|r| format!("{}: {}", r.kind, r.detail)).collect::<Vec<_>>()}))),
        (None, None) => Ok(Observed::Done(json!({"status": "undecided", "proposal": id}))),
    }
}

/// The output an effect kept as a blob, as text for the model (capped; binary output is described, not shown).
fn output_text(evidence: &Value, blobs: &BlobStore) -> Result<Option<String>, AgentError> {
    let Some(blob) = evidence.get("output_blob").and_then(Value::as_str) else { return Ok(None) };
    let bytes = blobs.get(blob).map_err(|e| AgentError::new(e.code, e.message))?;
    Ok(Some(match std::str::from_utf8(&bytes) {
        Ok(text) if text.len() <= MAX_OBSERVED_BYTES => text.to_owned(),
        Ok(text) => {
            let mut cut = MAX_OBSERVED_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}… [{} bytes in all]", &text[..cut], text.len())
        }
        Err(_) => format!("[{} bytes of binary output, blob {blob}]", bytes.len()),
    }))
}

/// The model's answer recorded by a completed `model.call`.
fn response_of(evidence: &Value, blobs: &BlobStore) -> Result<Message, AgentError> {
    let blob = evidence
        .get("output_blob")
        .and_then(Value::as_str)
        .ok_or_else(|| AgentError::new(ErrorCode::LedgerCorrupt, "a completed model call recorded no response blob"))?;
    let bytes = blobs.get(blob).map_err(|e| AgentError::new(e.code, e.message))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| AgentError::new(ErrorCode::LedgerCorrupt, format!("response blob {blob} is not a message: {e}")))
}

/// The action and resource a tool call is proposed as, or why it is not proposed at all.
pub(crate) fn proposable(
    config: &AgentConfig,
    tool: &str,
    args: &serde_json::Map<String, Value>,
) -> Result<(String, String), String> {
    let t = config.tool(tool).ok_or_else(|| format!("there is no tool `{tool}`"))?;
    Ok((t.action.clone(), t.resource(args)?))
}

/// The canonical text and hash of a call's args, as a proposal records them.
pub(crate) fn canonical(args: &serde_json::Map<String, Value>) -> Result<(String, String), AgentError> {
    let text = Value::Object(args.clone()).to_string();
    let (c, hash) =
        ice_core::proposal::canonical_args(&text).map_err(|r| AgentError::new(r.code, r.message.clone()))?;
    Ok((c.as_str().to_owned(), hash))
}

/// How a `model.call` names its prompt: `blake3:<hash of the request>`.
pub(crate) fn prompt_ref(request: &Request) -> String {
    format!("blake3:{}", ice_providers::hash_of(request))
}

fn out_of_order(f: &Fate, expected: &str) -> AgentError {
    AgentError::new(
        ErrorCode::IllegalTransition,
        format!(
            "the run's history does not follow this agent's conversation: proposal {} ({}) where {expected} was \
             expected (was the configuration changed, or did something else propose as this agent in this run?)",
            f.id, f.action
        ),
    )
}
