//! The event envelope (one ledger row), drafts (events before sealing) and the envelope hash.
//!
//! ## Hash encoding (v1)
//! `hash = blake3(E)` where `E` is the concatenation, in this fixed order, of:
//! the 13 ASCII bytes `ice.event.v1\n`; `seq` as u64 big-endian; `event_id` (16 bytes); `0x00`, or `0x01` followed
//! by the 16 bytes of `run_id`; `kind` and `origin` as UTF-8, each preceded by its length as u32 big-endian;
//! (`origin` is `KIND:NAME`, or, for an event made on an authenticated caller's behalf, `KIND:NAME|` followed by
//! the [`Attribution`] text `PRINCIPAL;CREDENTIAL;ROLES` — the exact text stored in the origin column);
//! `time` (µs since the epoch) as i64 big-endian; the number of causes as u32 big-endian then each cause (16 bytes);
//! the canonical payload bytes preceded by their length as u32 big-endian; `prev_hash` (32 bytes).
//! This is a canonical encoding of the envelope: the payload is RFC 8785 text already, every other field has
//! exactly one byte form, and no JSON work is done per event.

use serde_json::{Value, json};

use crate::auth::Attribution;
use crate::canonical::CanonicalJson;
use crate::error::{ErrorCode, Rejection};
use crate::ids::{EventHash, EventId, RunId, Seq, Timestamp};
use crate::kind::EventKind;
use crate::principal::Principal;

const HASH_DOMAIN: &[u8] = b"ice.event.v1\n";

/// One sealed ledger event: the envelope plus its position and hash links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Gapless position in the ledger, from 1.
    pub seq: Seq,
    /// UUIDv7 identity.
    pub event_id: EventId,
    /// The run this event belongs to, if any.
    pub run_id: Option<RunId>,
    /// Kind from the closed taxonomy.
    pub kind: EventKind,
    /// Who emitted it: the principal acted for.
    pub origin: Principal,
    /// The authenticated caller behind it (absent for ICE's own events).
    pub acted_by: Option<Attribution>,
    /// When, from the injected clock; never earlier than the previous event's time.
    pub time: Timestamp,
    /// Parent events (must exist before this one).
    pub causes: Vec<EventId>,
    /// RFC 8785 canonical JSON object.
    pub payload: CanonicalJson,
    /// Hash of the previous event ([`EventHash::GENESIS`] for seq 1).
    pub prev_hash: EventHash,
    /// blake3 of this envelope (see the module docs for the encoding).
    pub hash: EventHash,
}

/// How a draft's time was obtained; decides what sealing does when it is behind the ledger head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSource {
    /// Read from the runtime clock at intake: sealing lifts it to the head's time if writers raced.
    Clock,
    /// Declared by the submitter: sealing refuses it if it is behind the head ([`ErrorCode::TimeWentBackwards`]).
    Declared,
}

/// An event that passed intake validation and waits to be sealed (given seq, prev_hash and hash) by a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// UUIDv7 identity, assigned at intake so the caller knows it before the append returns.
    pub event_id: EventId,
    /// The run this event belongs to, if any.
    pub run_id: Option<RunId>,
    /// Kind from the closed taxonomy.
    pub kind: EventKind,
    /// Who emits it: the principal acted for.
    pub origin: Principal,
    /// The authenticated caller behind it (absent for ICE's own events).
    pub acted_by: Option<Attribution>,
    /// Time at intake.
    pub time: Timestamp,
    /// Where the time came from.
    pub time_source: TimeSource,
    /// Parent events.
    pub causes: Vec<EventId>,
    /// Canonical payload.
    pub payload: CanonicalJson,
}

/// The origin column's text: `KIND:NAME`, or `KIND:NAME|ATTRIBUTION` for an event made on a caller's behalf.
pub fn origin_text(origin: &Principal, acted_by: Option<&Attribution>) -> String {
    match acted_by {
        Some(a) => format!("{origin}|{a}"),
        None => origin.to_string(),
    }
}

/// Parses [`origin_text`] back.
pub fn parse_origin_text(text: &str) -> Result<(Principal, Option<Attribution>), Rejection> {
    match text.split_once('|') {
        Some((origin, a)) => Ok((origin.parse()?, Some(a.parse()?))),
        None => Ok((text.parse()?, None)),
    }
}

/// Computes the v1 envelope hash from the fields (see the module docs).
#[allow(clippy::too_many_arguments)]
pub fn envelope_hash(
    seq: Seq,
    event_id: EventId,
    run_id: Option<RunId>,
    kind: EventKind,
    origin: &Principal,
    acted_by: Option<&Attribution>,
    time: Timestamp,
    causes: &[EventId],
    payload: &CanonicalJson,
    prev_hash: &EventHash,
) -> EventHash {
    let mut h = blake3::Hasher::new();
    write_envelope(
        &mut |b| {
            h.update(b);
        },
        seq,
        event_id,
        run_id,
        kind,
        origin,
        acted_by,
        time,
        causes,
        payload,
        prev_hash,
    );
    EventHash(*h.finalize().as_bytes())
}

/// Feeds the v1 envelope encoding (the bytes the hash covers) to `out`, piece by piece, without allocating.
#[allow(clippy::too_many_arguments)]
fn write_envelope(
    out: &mut dyn FnMut(&[u8]),
    seq: Seq,
    event_id: EventId,
    run_id: Option<RunId>,
    kind: EventKind,
    origin: &Principal,
    acted_by: Option<&Attribution>,
    time: Timestamp,
    causes: &[EventId],
    payload: &CanonicalJson,
    prev_hash: &EventHash,
) {
    out(HASH_DOMAIN);
    out(&seq.0.to_be_bytes());
    out(event_id.as_bytes());
    match run_id {
        Some(r) => {
            out(&[1]);
            out(r.as_bytes());
        }
        None => out(&[0]),
    }
    write_str(out, kind.as_str());
    let origin_kind = origin.kind.as_str();
    // origin is encoded as its `KIND:NAME` text (plus `|ATTRIBUTION`) without allocating for the common case.
    let attribution = acted_by.map(ToString::to_string);
    let extra = attribution.as_ref().map_or(0, |a| a.len() + 1);
    out(&len_u32(origin_kind.len() + 1 + origin.name.len() + extra).to_be_bytes());
    out(origin_kind.as_bytes());
    out(b":");
    out(origin.name.as_bytes());
    if let Some(a) = &attribution {
        out(b"|");
        out(a.as_bytes());
    }
    out(&time.0.to_be_bytes());
    out(&len_u32(causes.len()).to_be_bytes());
    for c in causes {
        out(c.as_bytes());
    }
    write_str(out, payload.as_str());
    out(&prev_hash.0);
}

fn write_str(out: &mut dyn FnMut(&[u8]), s: &str) {
    out(&len_u32(s.len()).to_be_bytes());
    out(s.as_bytes());
}

fn len_u32(n: usize) -> u32 {
    // Payloads are capped at 64 KiB and names at 128 bytes, so this never saturates for valid events.
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Event {
    /// Recomputes this event's hash from its fields (ignores the stored `hash`).
    pub fn compute_hash(&self) -> EventHash {
        envelope_hash(
            self.seq,
            self.event_id,
            self.run_id,
            self.kind,
            &self.origin,
            self.acted_by.as_ref(),
            self.time,
            &self.causes,
            &self.payload,
            &self.prev_hash,
        )
    }

    /// The exact bytes the hash covers (the v1 envelope encoding), e.g. to benchmark hashing against.
    pub fn envelope_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(160 + self.payload.as_str().len());
        write_envelope(
            &mut |b| v.extend_from_slice(b),
            self.seq,
            self.event_id,
            self.run_id,
            self.kind,
            &self.origin,
            self.acted_by.as_ref(),
            self.time,
            &self.causes,
            &self.payload,
            &self.prev_hash,
        );
        v
    }

    /// The envelope as a JSON value (the `ice log --json` line format and the export format).
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq.0,
            "event_id": self.event_id.to_string(),
            "run_id": self.run_id.map(|r| r.to_string()),
            "kind": self.kind.as_str(),
            "origin": self.origin.to_string(),
            "acted_by": self.acted_by.as_ref().map(ToString::to_string),
            "time": self.time.to_rfc3339(),
            "time_us": self.time.0,
            "causes": self.causes.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "payload": self.payload.to_value(),
            "prev_hash": self.prev_hash.to_hex(),
            "hash": self.hash.to_hex(),
        })
    }

    /// Parses the [`Event::to_json`] form back. The payload is re-canonicalised, so an event whose stored
    /// payload was not canonical fails its hash check afterwards rather than being silently repaired.
    pub fn from_json(v: &Value) -> Result<Event, Rejection> {
        let field = |name: &str| {
            v.get(name).ok_or_else(|| Rejection::new(ErrorCode::BadEnvelopeField, format!("event has no `{name}`")))
        };
        let text = |name: &str| -> Result<&str, Rejection> {
            field(name)?.as_str().ok_or_else(|| {
                Rejection::new(ErrorCode::BadEnvelopeField, format!("event field `{name}` must be a string"))
            })
        };
        let int = |name: &str| -> Result<i64, Rejection> {
            field(name)?.as_i64().ok_or_else(|| {
                Rejection::new(ErrorCode::BadEnvelopeField, format!("event field `{name}` must be an integer"))
            })
        };
        let seq = u64::try_from(int("seq")?)
            .map_err(|_| Rejection::new(ErrorCode::BadEnvelopeField, "event field `seq` must be positive"))?;
        let run_id = match field("run_id")? {
            Value::Null => None,
            Value::String(s) => Some(s.parse()?),
            _ => return Err(Rejection::new(ErrorCode::BadEnvelopeField, "event field `run_id` must be a string")),
        };
        let causes = field("causes")?
            .as_array()
            .ok_or_else(|| Rejection::new(ErrorCode::BadEnvelopeField, "event field `causes` must be an array"))?
            .iter()
            .map(|c| {
                c.as_str().ok_or_else(|| Rejection::new(ErrorCode::BadEnvelopeField, "causes must be strings"))?.parse()
            })
            .collect::<Result<Vec<EventId>, _>>()?;
        Ok(Event {
            seq: Seq(seq),
            event_id: text("event_id")?.parse()?,
            run_id,
            kind: text("kind")?.parse()?,
            origin: text("origin")?.parse()?,
            acted_by: match v.get("acted_by") {
                None | Some(Value::Null) => None,
                Some(Value::String(a)) => Some(a.parse()?),
                Some(_) => {
                    return Err(Rejection::new(ErrorCode::BadEnvelopeField, "event field `acted_by` must be a string"));
                }
            },
            time: Timestamp(int("time_us")?),
            causes,
            payload: CanonicalJson::from_value(field("payload")?)?,
            prev_hash: EventHash::from_hex(text("prev_hash")?)?,
            hash: EventHash::from_hex(text("hash")?)?,
        })
    }
}
