//! Intake: untrusted event submissions become [`Draft`]s, or are refused.
//!
//! Validation steps 1–3 happen here, in order: **structure** (envelope fields parse, payload is a well-formed
//! object) → **taxonomy** (the kind exists, the run scope fits, typed payloads parse) → **origin authority** (the
//! principal may emit this kind). Steps 4–5 (monotonic time, causal parents) need the ledger head and happen when
//! a store seals the draft ([`crate::chain::seal_job`]); state-dependent rules (run exists, FSM) are checked by
//! [`crate::state::LedgerState::admit`]. Every refusal becomes a `TransitionRejected` record built by
//! [`rejection_draft`].

use serde_json::{Value, json};

use crate::auth::Attribution;
use crate::canonical::CanonicalJson;
use crate::clock::{Clock, IdSource};
use crate::error::{ErrorCode, Rejection};
use crate::event::{Draft, TimeSource};
use crate::ids::{EventId, RunId, Timestamp};
use crate::kind::{EventKind, RunScope};
use crate::payloads;
use crate::principal::{Principal, PrincipalKind};

/// An event as submitted from outside (CLI, HTTP, an agent): every field still untrusted text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawEvent {
    /// Kind name, e.g. `ReasoningRecorded`.
    pub kind: String,
    /// Principal, `KIND:NAME`.
    pub origin: String,
    /// Run id, if the event belongs to a run.
    pub run_id: Option<String>,
    /// Payload JSON text.
    pub payload: String,
    /// Causal parent event ids.
    pub causes: Vec<String>,
    /// Declared RFC 3339 time; `None` lets the runtime clock stamp it.
    pub time: Option<String>,
}

/// Runs validation steps 1–3 on a submission and builds the draft, attributed to the authenticated caller
/// `acted_by` (the runtime sets `raw.origin` from the caller, never from input).
pub fn intake(
    raw: &RawEvent,
    acted_by: Option<Attribution>,
    clock: &dyn Clock,
    ids: &dyn IdSource,
) -> Result<Draft, Rejection> {
    // 1. structure
    let origin: Principal = raw.origin.parse()?;
    let run_id = raw.run_id.as_deref().map(str::parse::<RunId>).transpose()?;
    let causes = raw.causes.iter().map(|c| c.parse::<EventId>()).collect::<Result<Vec<_>, _>>()?;
    let (time, time_source) = match &raw.time {
        Some(t) => {
            // A declared time says when something happened, so it is never later than the runtime clock: one
            // ahead of it would drag every later clock-stamped event's time with it (sealing never lets time go
            // backwards).
            let declared = Timestamp::parse_rfc3339(t)?;
            let now = clock.now();
            if declared > now {
                return Err(Rejection::new(
                    ErrorCode::TimeInFuture,
                    format!(
                        "declared time {} is later than the runtime clock ({}); declared times record the past",
                        declared.to_rfc3339(),
                        now.to_rfc3339()
                    ),
                ));
            }
            (declared, TimeSource::Declared)
        }
        None => (clock.now(), TimeSource::Clock),
    };
    let payload = CanonicalJson::parse(&raw.payload)?;
    // 2. taxonomy
    let kind: EventKind = raw.kind.trim().parse()?;
    check_scope(kind, run_id)?;
    // A submitted proposal carries only what the agent declares; the runtime completes and checks it (args hash,
    // classification) when deciding, so its full schema applies to the recorded event, not to the submission.
    if kind != EventKind::ProposalSubmitted {
        check_typed_payload(kind, &payload)?;
    }
    // 3. origin authority
    check_authority(kind, &origin)?;
    Ok(Draft { event_id: ids.event_id(), run_id, kind, origin, acted_by, time, time_source, causes, payload })
}

/// Builds a draft from trusted, typed parts (events ICE emits itself), still enforcing taxonomy and authority.
///
/// That the payload fits its kind's schema is checked here only in debug builds (every test): the payload was
/// serialised from a typed value inside ICE, so a misfit is a bug in ICE, and in a release build the fold that
/// admits the draft parses the payload anyway and refuses a misfit there. Parsing it twice cost the thread that
/// holds the state lock ~5% of a decision (`ice bench propose`).
pub fn internal_draft(
    kind: EventKind,
    origin: Principal,
    run_id: Option<RunId>,
    causes: Vec<EventId>,
    payload: CanonicalJson,
    clock: &dyn Clock,
    ids: &dyn IdSource,
) -> Result<Draft, Rejection> {
    check_scope(kind, run_id)?;
    if cfg!(debug_assertions) {
        check_typed_payload(kind, &payload)?;
    }
    check_authority(kind, &origin)?;
    Ok(Draft {
        event_id: ids.event_id(),
        run_id,
        kind,
        origin,
        acted_by: None,
        time: clock.now(),
        time_source: TimeSource::Clock,
        causes,
        payload,
    })
}

fn check_scope(kind: EventKind, run_id: Option<RunId>) -> Result<(), Rejection> {
    match (kind.run_scope(), run_id) {
        (RunScope::Required, None) => {
            Err(Rejection::new(ErrorCode::RunScopeMismatch, format!("{kind} events must name a run")))
        }
        (RunScope::Forbidden, Some(_)) => {
            Err(Rejection::new(ErrorCode::RunScopeMismatch, format!("{kind} events are ledger-wide and name no run")))
        }
        _ => Ok(()),
    }
}

/// The schema of each kind's payload, exhaustively over the closed taxonomy: adding a kind without deciding its
/// payload schema does not compile. Cognitive notes are free-form objects.
fn check_typed_payload(kind: EventKind, payload: &CanonicalJson) -> Result<(), Rejection> {
    fn parse<T: serde::de::DeserializeOwned>(kind: EventKind, p: &CanonicalJson) -> Result<(), Rejection> {
        serde_json::from_str::<T>(p.as_str()).map(|_| ()).map_err(|e| {
            Rejection::new(ErrorCode::BadPayloadStructure, format!("{kind} payload does not fit its schema: {e}"))
        })
    }
    use crate::{auth, authority, budget, checkpoint, decision, effect, grant, memory, proposal};
    use EventKind as K;
    match kind {
        K::LedgerInitialized => parse::<payloads::LedgerInitialized>(kind, payload),
        K::RunCreated => parse::<payloads::RunCreated>(kind, payload),
        K::RunTransitioned => parse::<payloads::RunTransitioned>(kind, payload),
        K::TransitionRejected => parse::<payloads::TransitionRejected>(kind, payload),
        K::AgentSuspended | K::AgentResumed => parse::<authority::AgentStatusChange>(kind, payload),
        K::Reconfigured => parse::<effect::Reconfigured>(kind, payload),
        K::RunContained => parse::<authority::RunContained>(kind, payload),
        K::ProposalSubmitted => parse::<proposal::Proposal>(kind, payload),
        K::ProposalWithdrawn
        | K::ObservationRecorded
        | K::PlanRecorded
        | K::ReasoningRecorded
        | K::SnapshotRecorded => Ok(()),
        K::MemoryProposed => parse::<memory::MemoryCandidate>(kind, payload),
        K::MemoryPromoted => parse::<memory::MemoryPromoted>(kind, payload),
        K::MemoryExpired | K::MemoryDeprecated | K::MemorySuperseded | K::MemoryInvalidated => {
            parse::<memory::MemoryChange>(kind, payload)
        }
        K::MemoryRead => parse::<memory::MemoryRead>(kind, payload),
        K::PolicyActivated => parse::<authority::PolicyActivated>(kind, payload),
        K::DecisionMade => parse::<decision::Decision>(kind, payload),
        K::ApprovalRequested => parse::<effect::ApprovalRequested>(kind, payload),
        K::ApprovalGranted | K::ApprovalDenied => parse::<effect::ApprovalAnswer>(kind, payload),
        K::ApprovalExpired | K::ApprovalEscalated => parse::<effect::ApprovalTimeout>(kind, payload),
        K::BudgetSet => parse::<budget::BudgetSet>(kind, payload),
        K::BudgetReserved => parse::<budget::BudgetReserved>(kind, payload),
        K::BudgetSettled | K::BudgetReleased => parse::<budget::BudgetSettled>(kind, payload),
        K::GrantIssued => parse::<grant::GrantIssued>(kind, payload),
        K::GrantUsed | K::GrantExpired | K::GrantRevoked => parse::<grant::GrantRef>(kind, payload),
        K::TokenIssued => parse::<auth::TokenIssued>(kind, payload),
        K::TokenRevoked => parse::<auth::TokenRevoked>(kind, payload),
        K::ToolPinned => parse::<payloads::ToolPinned>(kind, payload),
        K::PermitIssued => parse::<effect::PermitIssued>(kind, payload),
        K::PermitRevoked => parse::<effect::PermitRevoked>(kind, payload),
        K::EffectRefused => parse::<effect::EffectRefused>(kind, payload),
        K::EffectStarted => parse::<effect::EffectStarted>(kind, payload),
        K::EffectCompleted => parse::<effect::EffectCompleted>(kind, payload),
        K::EffectFailed | K::EffectUnknown => parse::<effect::EffectFailed>(kind, payload),
        K::Checkpoint => parse::<checkpoint::CheckpointPayload>(kind, payload),
    }
}

fn check_authority(kind: EventKind, origin: &Principal) -> Result<(), Rejection> {
    if kind.may_be_emitted_by(origin.kind) {
        return Ok(());
    }
    let what = if origin.kind == PrincipalKind::Agent {
        "agents may emit only cognitive events and proposals".to_owned()
    } else {
        format!("{} events are not emitted by {} principals", kind.family().as_str(), origin.kind.as_str())
    };
    Err(Rejection::new(ErrorCode::OriginNotAuthorized, format!("{origin} may not emit {kind}: {what}")))
}

/// Longest excerpt of a refused payload kept in the rejection record.
pub const EXCERPT_CHARS: usize = 256;

/// Summarises a refused submission for the `TransitionRejected` record: the fields as given, the payload's
/// blake3 and a bounded excerpt (a refused payload may be huge or malformed, so it is not stored whole).
pub fn attempt_summary(raw: &RawEvent) -> Value {
    let excerpt: String = raw.payload.chars().take(EXCERPT_CHARS).collect();
    json!({
        "kind": raw.kind.chars().take(EXCERPT_CHARS).collect::<String>(),
        "origin": raw.origin.chars().take(EXCERPT_CHARS).collect::<String>(),
        "run_id": raw.run_id,
        "causes": raw.causes.iter().take(16).collect::<Vec<_>>(),
        "time": raw.time,
        "payload_bytes": raw.payload.len(),
        "payload_blake3": blake3::hash(raw.payload.as_bytes()).to_hex().to_string(),
        "payload_excerpt": excerpt,
    })
}

/// Summarises a refused draft (an attempt that passed intake but failed a later step).
pub fn draft_summary(d: &Draft) -> Value {
    json!({
        "event_id": d.event_id.to_string(),
        "kind": d.kind.as_str(),
        "origin": d.origin.to_string(),
        "acted_by": d.acted_by.as_ref().map(ToString::to_string),
        "run_id": d.run_id.map(|r| r.to_string()),
        "causes": d.causes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "time": d.time.to_rfc3339(),
        "payload_blake3": blake3::hash(d.payload.as_bytes()).to_hex().to_string(),
        "payload": d.payload.to_value(),
    })
}

/// Largest attempt summary kept whole in a refusal record (canonical bytes); a larger one is replaced by its size,
/// hash and an excerpt, so the record always fits the payload limit and a refusal is always recorded.
pub const MAX_ATTEMPT_BYTES: usize = 4096;
/// Longest refusal message kept (characters).
pub const MAX_MESSAGE_CHARS: usize = 2048;

/// `attempt` as recorded: whole when small, else `{"truncated": true, "bytes", "blake3", "excerpt"}`.
pub fn bounded_attempt(attempt: Value) -> Value {
    let text =
        CanonicalJson::from_value(&attempt).map(|c| c.as_str().to_owned()).unwrap_or_else(|_| attempt.to_string());
    if text.len() <= MAX_ATTEMPT_BYTES {
        return attempt;
    }
    json!({
        "truncated": true,
        "bytes": text.len(),
        "blake3": blake3::hash(text.as_bytes()).to_hex().to_string(),
        "excerpt": text.chars().take(EXCERPT_CHARS * 4).collect::<String>(),
    })
}

/// Builds the `TransitionRejected` draft that records a refusal. `run_id` is set only when the run exists. The
/// attempt and message are bounded ([`bounded_attempt`], [`MAX_MESSAGE_CHARS`]) so that recording never fails
/// because the refused input was large.
pub fn rejection_draft(
    rejection: &Rejection,
    attempt: Value,
    run_id: Option<RunId>,
    clock: &dyn Clock,
    ids: &dyn IdSource,
) -> Result<Draft, Rejection> {
    let payload = payloads::TransitionRejected {
        code: rejection.code.as_str().to_owned(),
        message: rejection.message.chars().take(MAX_MESSAGE_CHARS).collect(),
        attempt: bounded_attempt(attempt),
    };
    internal_draft(
        EventKind::TransitionRejected,
        Principal::runtime(),
        run_id,
        Vec::new(),
        CanonicalJson::from_serialize(&payload)?,
        clock,
        ids,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{ManualClock, SequentialIds};

    fn raw(kind: &str, origin: &str, payload: &str) -> RawEvent {
        RawEvent {
            kind: kind.into(),
            origin: origin.into(),
            run_id: Some("0191e3a0-0000-7000-8000-000000000001".into()),
            payload: payload.into(),
            ..RawEvent::default()
        }
    }

    fn code(r: &RawEvent) -> Option<ErrorCode> {
        let clock = ManualClock::new(Timestamp::from_secs(1_800_000_000));
        intake(r, None, &clock, &SequentialIds::new(1)).err().map(|e| e.code)
    }

    #[test]
    fn large_attempts_are_bounded_so_the_refusal_is_always_recorded() {
        let clock = ManualClock::new(Timestamp::from_secs(1_800_000_000));
        let ids = SequentialIds::new(1);
        let huge = json!({"reason": "x".repeat(200_000), "nested": {"a": "y".repeat(70_000)}});
        let r = Rejection::new(ErrorCode::BadArgument, "z".repeat(100_000));
        let d = rejection_draft(&r, huge, None, &clock, &ids).unwrap();
        assert!(d.payload.as_str().len() < 8 * 1024, "{}", d.payload.as_str().len());
        let p: Value = serde_json::from_str(d.payload.as_str()).unwrap();
        assert_eq!(p["attempt"]["truncated"], true);
        let small = rejection_draft(&r, json!({"kind": "X"}), None, &clock, &ids).unwrap();
        let p: Value = serde_json::from_str(small.payload.as_str()).unwrap();
        assert_eq!(p["attempt"], json!({"kind": "X"}));
    }

    #[test]
    fn pipeline_order_and_codes() {
        assert_eq!(code(&raw("ReasoningRecorded", "agent:a", r#"{"note":"x"}"#)), None);
        assert_eq!(code(&raw("ReasoningRecorded", "agent:a", "{nope")), Some(ErrorCode::MalformedJson));
        // structure is checked before taxonomy: malformed payload + unknown kind reports the payload
        assert_eq!(code(&raw("Bogus", "agent:a", "{nope")), Some(ErrorCode::MalformedJson));
        assert_eq!(code(&raw("Bogus", "agent:a", "{}")), Some(ErrorCode::UnknownKind));
        // taxonomy before authority
        assert_eq!(code(&raw("RunCreated", "agent:a", r#"{"label":1}"#)), Some(ErrorCode::BadPayloadStructure));
        assert_eq!(code(&raw("RunCreated", "agent:a", "{}")), Some(ErrorCode::OriginNotAuthorized));
        assert_eq!(code(&raw("RunCreated", "human:a", "{}")), None);
        assert_eq!(code(&raw("TransitionRejected", "human:a", "{}")), Some(ErrorCode::BadPayloadStructure));
        let mut r = raw("ReasoningRecorded", "agent:a", "{}");
        r.run_id = None;
        assert_eq!(code(&r), Some(ErrorCode::RunScopeMismatch));
        r.run_id = Some("not-a-uuid".into());
        assert_eq!(code(&r), Some(ErrorCode::BadEnvelopeField));
    }
}
