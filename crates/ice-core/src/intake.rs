//! Intake: untrusted event submissions become [`Draft`]s, or are refused.
//!
//! Validation steps 1–3 happen here, in order: **structure** (envelope fields parse, payload is a well-formed
//! object) → **taxonomy** (the kind exists, the run scope fits, typed payloads parse) → **origin authority** (the
//! principal may emit this kind). Steps 4–5 (monotonic time, causal parents) need the ledger head and happen when
//! a store seals the draft ([`crate::chain::seal_job`]); state-dependent rules (run exists, FSM) are checked by
//! [`crate::state::LedgerState::admit`]. Every refusal becomes a `TransitionRejected` record built by
//! [`rejection_draft`].

use serde_json::{Value, json};

use crate::canonical::CanonicalJson;
use crate::clock::{Clock, IdSource};
use crate::error::{ErrorCode, Rejection};
use crate::event::{Draft, TimeSource};
use crate::ids::{EventId, RunId, Timestamp};
use crate::kind::{EventKind, RunScope};
use crate::payloads;
use crate::principal::{Principal, PrincipalKind};

/// How far a declared time may lead the runtime clock. Without a bound, one submission far in the future would
/// drag every later clock-stamped event's time with it (sealing never lets time go backwards).
pub const MAX_FUTURE_SKEW_MICROS: i64 = 5 * 60 * 1_000_000;

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

/// Runs validation steps 1–3 on a submission and builds the draft.
pub fn intake(raw: &RawEvent, clock: &dyn Clock, ids: &dyn IdSource) -> Result<Draft, Rejection> {
    // 1. structure
    let origin: Principal = raw.origin.parse()?;
    let run_id = raw.run_id.as_deref().map(str::parse::<RunId>).transpose()?;
    let causes = raw.causes.iter().map(|c| c.parse::<EventId>()).collect::<Result<Vec<_>, _>>()?;
    let (time, time_source) = match &raw.time {
        Some(t) => {
            let declared = Timestamp::parse_rfc3339(t)?;
            let limit = clock.now().plus_micros(MAX_FUTURE_SKEW_MICROS);
            if declared > limit {
                return Err(Rejection::new(
                    ErrorCode::TimeInFuture,
                    format!("declared time {declared} is more than 5 minutes ahead of the runtime clock"),
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
    Ok(Draft { event_id: ids.event_id(), run_id, kind, origin, time, time_source, causes, payload })
}

/// Builds a draft from trusted, typed parts (events ICE emits itself), still enforcing taxonomy and authority.
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
    check_typed_payload(kind, &payload)?;
    check_authority(kind, &origin)?;
    Ok(Draft {
        event_id: ids.event_id(),
        run_id,
        kind,
        origin,
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

fn check_typed_payload(kind: EventKind, payload: &CanonicalJson) -> Result<(), Rejection> {
    fn parse<T: serde::de::DeserializeOwned>(kind: EventKind, p: &CanonicalJson) -> Result<(), Rejection> {
        serde_json::from_str::<T>(p.as_str()).map(|_| ()).map_err(|e| {
            Rejection::new(ErrorCode::BadPayloadStructure, format!("{kind} payload does not fit its schema: {e}"))
        })
    }
    match kind {
        EventKind::LedgerInitialized => parse::<payloads::LedgerInitialized>(kind, payload),
        EventKind::RunCreated => parse::<payloads::RunCreated>(kind, payload),
        EventKind::RunTransitioned => parse::<payloads::RunTransitioned>(kind, payload),
        EventKind::TransitionRejected => parse::<payloads::TransitionRejected>(kind, payload),
        _ => crate::authority::check_payload(kind, payload.as_str())
            .and_then(|()| crate::effect::check_payload(kind, payload.as_str())),
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
        "run_id": d.run_id.map(|r| r.to_string()),
        "causes": d.causes.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "time": d.time.to_rfc3339(),
        "payload_blake3": blake3::hash(d.payload.as_bytes()).to_hex().to_string(),
        "payload": d.payload.to_value(),
    })
}

/// Builds the `TransitionRejected` draft that records a refusal. `run_id` is set only when the run exists.
pub fn rejection_draft(
    rejection: &Rejection,
    attempt: Value,
    run_id: Option<RunId>,
    clock: &dyn Clock,
    ids: &dyn IdSource,
) -> Result<Draft, Rejection> {
    let payload = payloads::TransitionRejected {
        code: rejection.code.as_str().to_owned(),
        message: rejection.message.clone(),
        attempt,
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
        intake(r, &clock, &SequentialIds::new(1)).err().map(|e| e.code)
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
