//! Memory as derived state: items promoted from validated events, their lifecycle, and the payloads that record it.
//!
//! An agent records a *candidate* (`MemoryProposed`: text, structured fields, the events it derives from). It
//! becomes memory only as the outcome of an executed `memory.promote` permit — a decision like any other — when the
//! runtime records `MemoryPromoted`, whose event id is the item's id. Items are immutable; only their status moves,
//! once, from ACTIVE to EXPIRED (its TTL passed), DEPRECATED, SUPERSEDED (by a newer item, linked) or INVALIDATED
//! (by an operator, or automatically when the effect it derives from is rolled back). Items that have left ACTIVE
//! retire from memory at the next checkpoint, like every other settled record, and stay covered by the state root.
//!
//! `MemoryRead` records what was read on a caller's behalf (which items, for which query, from which index
//! version); reads change nothing here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{ErrorCode, Rejection};
use crate::event::Event;
use crate::hashed::HashedMap;
use crate::ids::{EventId, RunId, Timestamp};
use crate::kind::EventKind;
use crate::principal::Principal;

/// Longest item text, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;
/// Most source events an item may name.
pub const MAX_SOURCES: usize = 32;
/// Most structured fields an item may carry.
pub const MAX_FIELDS: usize = 32;
/// Longest time to live (ten years).
pub const MAX_TTL_SECS: u64 = 10 * 365 * 86_400;

/// Payload of `MemoryProposed`: a candidate an agent would like remembered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryCandidate {
    /// Where it would live (`team/deploys`): lower-case letters, digits, `.`, `_`, `-`, `/`.
    pub namespace: String,
    /// The fact, in words.
    pub text: String,
    /// Structured fields (a JSON object).
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// The events it derives from (at least one).
    pub sources: Vec<EventId>,
    /// How long the item would stay ACTIVE once promoted (none: until changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_secs: Option<u64>,
}

impl MemoryCandidate {
    /// Checks the candidate's shape: namespace, non-empty bounded text, bounded fields and sources, TTL.
    pub fn check(&self) -> Result<(), Rejection> {
        check_namespace(&self.namespace)?;
        let chars = self.text.chars().count();
        if self.text.trim().is_empty() || chars > MAX_TEXT_CHARS {
            return Err(bad(format!("memory text must be 1..={MAX_TEXT_CHARS} characters (got {chars})")));
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(bad(format!("at most {MAX_FIELDS} fields (got {})", self.fields.len())));
        }
        if self.sources.is_empty() || self.sources.len() > MAX_SOURCES {
            return Err(Rejection::new(
                ErrorCode::MemorySourceNotValidated,
                format!("a memory candidate names 1..={MAX_SOURCES} source events (got {})", self.sources.len()),
            ));
        }
        if self.ttl_secs.is_some_and(|t| t == 0 || t > MAX_TTL_SECS) {
            return Err(bad(format!("ttl_secs must be 1..={MAX_TTL_SECS}")));
        }
        Ok(())
    }

    /// blake3 (hex) of the canonical `{namespace, text, fields}`: what a read records of an item.
    pub fn content_hash(&self) -> String {
        content_hash(&self.namespace, &self.text, &self.fields)
    }
}

fn bad(message: String) -> Rejection {
    Rejection::new(ErrorCode::BadPayloadStructure, message)
}

/// blake3 (hex) of the RFC 8785 encoding of `{"fields":…, "namespace":…, "text":…}`.
pub fn content_hash(namespace: &str, text: &str, fields: &Map<String, Value>) -> String {
    let v = serde_json::json!({"namespace": namespace, "text": text, "fields": fields});
    let mut h = blake3::Hasher::new();
    // Encoding a JSON value built from strings and a JSON object cannot fail.
    let _ = crate::jcs::write_canonical(&v, &mut h);
    h.finalize().to_hex().to_string()
}

/// Checks a namespace: 1–128 characters of `a-z 0-9 . _ - /`, starting with a letter or digit, no `..` or `//`.
pub fn check_namespace(ns: &str) -> Result<(), Rejection> {
    let ok = !ns.is_empty()
        && ns.len() <= 128
        && ns.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !ns.ends_with('/')
        && !ns.contains("..")
        && !ns.contains("//")
        && ns.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Rejection::new(
            ErrorCode::BadArgument,
            format!("memory namespace `{ns}` must be 1-128 of a-z 0-9 . _ - / (e.g. team/deploys)"),
        ))
    }
}

/// One event an item derives from, as the runtime validated it at promotion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemorySource {
    /// The event.
    pub event_id: EventId,
    /// Its kind (`EffectCompleted`, `ApprovalGranted`, `RunTransitioned`).
    pub kind: EventKind,
    /// For an effect outcome: the effect (its `EffectStarted` id), whose rollback invalidates the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<EventId>,
}

/// Payload of `MemoryPromoted` (the item's id is the event's id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPromoted {
    /// The `MemoryProposed` candidate it was promoted from.
    pub candidate: EventId,
    /// Namespace.
    pub namespace: String,
    /// Text.
    pub text: String,
    /// Structured fields.
    #[serde(default)]
    pub fields: Map<String, Value>,
    /// The validated events it derives from.
    pub sources: Vec<MemorySource>,
    /// The `memory.promote` proposal that was decided.
    pub proposal_id: EventId,
    /// The permit whose execution promoted it.
    pub permit_id: EventId,
    /// The approval, when policy asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<EventId>,
    /// Who held the permit (the promoting authority's principal).
    pub promoted_by: Principal,
    /// Who proposed the candidate.
    pub proposed_by: Principal,
    /// When it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The item this one supersedes (recorded by a `MemorySuperseded` in the same commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<EventId>,
}

/// Payload of `MemoryExpired`, `MemoryDeprecated`, `MemorySuperseded` and `MemoryInvalidated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryChange {
    /// The item.
    pub item: EventId,
    /// Why.
    pub reason: String,
    /// `MemorySuperseded`: the newer item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<EventId>,
    /// `MemoryInvalidated` by a rollback: the compensation's outcome event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<EventId>,
}

/// One item a read returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadItem {
    /// The item.
    pub item: EventId,
    /// Its content hash (see [`content_hash`]).
    pub content_hash: String,
    /// Similarity to the query in millionths (search reads only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_ppm: Option<i64>,
}

/// Payload of `MemoryRead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryRead {
    /// Who read (the authenticated caller).
    pub reader: Principal,
    /// `search` or `show`.
    pub mode: String,
    /// blake3 (hex) of the query text (search) or of the item id (show).
    pub query_hash: String,
    /// The namespace searched (none: every namespace the reader may read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The index version: embedder id and the seq of the memory state it reflected (`hash-v1-384@1234`).
    pub index: String,
    /// Results asked for.
    pub k: u32,
    /// What was returned, in order.
    pub items: Vec<ReadItem>,
}

/// Where an item is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MemoryStatus {
    /// Returned by reads and search.
    Active,
    /// Its TTL passed.
    Expired,
    /// Taken out of use by an operator.
    Deprecated,
    /// Replaced by a newer item.
    Superseded,
    /// Found wrong: by an operator, or its source effect was rolled back.
    Invalidated,
}

impl MemoryStatus {
    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Expired => "EXPIRED",
            Self::Deprecated => "DEPRECATED",
            Self::Superseded => "SUPERSEDED",
            Self::Invalidated => "INVALIDATED",
        }
    }

    /// Parses a name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Expired, Self::Deprecated, Self::Superseded, Self::Invalidated]
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    fn of(kind: EventKind) -> Option<Self> {
        match kind {
            EventKind::MemoryExpired => Some(Self::Expired),
            EventKind::MemoryDeprecated => Some(Self::Deprecated),
            EventKind::MemorySuperseded => Some(Self::Superseded),
            EventKind::MemoryInvalidated => Some(Self::Invalidated),
            _ => None,
        }
    }
}

/// A memory item as derived state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryItem {
    /// Id (the `MemoryPromoted` event id).
    pub id: EventId,
    /// The run it was promoted in.
    pub run: Option<RunId>,
    /// When it was promoted.
    pub promoted_at: Timestamp,
    /// What was promoted, with its provenance.
    pub promoted: MemoryPromoted,
    /// Content hash (see [`content_hash`]).
    pub content_hash: String,
    /// Lifecycle status.
    pub status: MemoryStatus,
    /// The event that ended ACTIVE, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<(EventId, MemoryChange)>,
}

impl MemoryItem {
    /// Whether reads may return it at `now`: ACTIVE and not past its expiry (an expiry not yet recorded counts).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.status == MemoryStatus::Active && self.promoted.expires_at.is_none_or(|t| t > now)
    }

    /// The status a reader sees at `now` (EXPIRED once the TTL passed, even before `MemoryExpired` is recorded).
    pub fn status_at(&self, now: Timestamp) -> MemoryStatus {
        if self.status == MemoryStatus::Active && !self.is_live(now) { MemoryStatus::Expired } else { self.status }
    }

    /// The JSON form the CLI (`--json`) and the API show.
    pub fn to_json(&self, now: Timestamp) -> Value {
        let p = &self.promoted;
        let ended = self.ended.as_ref().map(|(id, c)| {
            serde_json::json!({"event_id": id.to_string(), "reason": c.reason,
                "superseded_by": c.superseded_by.map(|i| i.to_string()), "cause": c.cause.map(|i| i.to_string())})
        });
        serde_json::json!({
            "item_id": self.id.to_string(),
            "status": self.status_at(now).as_str(),
            "namespace": p.namespace,
            "text": p.text,
            "fields": p.fields,
            "content_hash": self.content_hash,
            "run_id": self.run.map(|r| r.to_string()),
            "promoted_at": self.promoted_at.to_rfc3339(),
            "expires_at": p.expires_at.map(|t| t.to_rfc3339()),
            "candidate": p.candidate.to_string(),
            "proposed_by": p.proposed_by.to_string(),
            "promoted_by": p.promoted_by.to_string(),
            "proposal_id": p.proposal_id.to_string(),
            "permit_id": p.permit_id.to_string(),
            "approval_id": p.approval_id.map(|a| a.to_string()),
            "supersedes": p.supersedes.map(|s| s.to_string()),
            "sources": p.sources.iter().map(|s| serde_json::json!({"event_id": s.event_id.to_string(),
                "kind": s.kind.as_str(), "effect": s.effect.map(|e| e.to_string())})).collect::<Vec<_>>(),
            "ended": ended,
        })
    }
}

/// Every memory item that is live, plus the digest of those that retired.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MemoryState {
    items: HashedMap<EventId, MemoryItem>,
    /// Seq of the latest event that changed an item (what an index built from this state reflects).
    #[serde(default)]
    changed_at: u64,
}

fn parse<T: serde::de::DeserializeOwned>(kind: EventKind, payload: &str) -> Result<T, Rejection> {
    serde_json::from_str(payload).map_err(|e| bad(format!("{kind} payload: {e}")))
}

impl MemoryState {
    /// Items in memory, by id (ACTIVE ones, and those that left ACTIVE since the last checkpoint).
    pub fn items(&self) -> &imbl::OrdMap<EventId, std::sync::Arc<MemoryItem>> {
        self.items.as_map()
    }

    /// One item in memory.
    pub fn get(&self, id: EventId) -> Option<&MemoryItem> {
        self.items.get(&id)
    }

    /// Seq of the latest event that changed an item.
    pub fn changed_at(&self) -> u64 {
        self.changed_at
    }

    /// ACTIVE items with a source that is an outcome of `effect` (an `EffectStarted` id).
    pub fn derived_from_effect(&self, effect: EventId) -> Vec<EventId> {
        let derived = |i: &&MemoryItem| i.promoted.sources.iter().any(|s| s.effect == Some(effect));
        self.items.values().filter(|i| i.status == MemoryStatus::Active).filter(derived).map(|i| i.id).collect()
    }

    /// ACTIVE items whose expiry is at or before `now` (the runtime records their `MemoryExpired`).
    pub fn due_to_expire(&self, now: Timestamp) -> Vec<EventId> {
        let due = |i: &&MemoryItem| i.status == MemoryStatus::Active && i.promoted.expires_at.is_some_and(|t| t <= now);
        self.items.values().filter(due).map(|i| i.id).collect()
    }

    fn active(&self, id: EventId) -> Result<&MemoryItem, Rejection> {
        let item = self.items.get(&id).ok_or_else(|| {
            Rejection::new(ErrorCode::UnknownMemoryItem, format!("memory item {id} is not ACTIVE or does not exist"))
        })?;
        if item.status != MemoryStatus::Active {
            return Err(Rejection::new(
                ErrorCode::MemoryNotActive,
                format!("memory item {id} is {}, not ACTIVE", item.status.as_str()),
            ));
        }
        Ok(item)
    }

    /// The state-dependent rules for a memory event: a promotion carries a well-formed item; a lifecycle change
    /// names an ACTIVE item (an expiry only once its TTL passed; a supersession an ACTIVE newer item of the same
    /// namespace) and gives a reason.
    pub fn check(&self, kind: EventKind, payload: &str, time: Timestamp, admitting: bool) -> Result<(), Rejection> {
        match kind {
            EventKind::MemoryProposed if admitting => parse::<MemoryCandidate>(kind, payload)?.check(),
            EventKind::MemoryPromoted => {
                let p: MemoryPromoted = parse(kind, payload)?;
                let c = MemoryCandidate {
                    namespace: p.namespace,
                    text: p.text,
                    fields: p.fields,
                    sources: p.sources.iter().map(|s| s.event_id).collect(),
                    ttl_secs: None,
                };
                c.check()
            }
            k if MemoryStatus::of(k).is_some() => {
                let c: MemoryChange = parse(kind, payload)?;
                let item = self.active(c.item)?;
                if c.reason.trim().is_empty() || c.reason.chars().count() > 1024 {
                    return Err(Rejection::new(
                        ErrorCode::ReasonRequired,
                        format!("{kind} needs a reason (1-1024 characters)"),
                    ));
                }
                match kind {
                    EventKind::MemoryExpired if item.promoted.expires_at.is_none_or(|t| t > time) => {
                        Err(Rejection::new(ErrorCode::BadArgument, format!("memory item {} has not expired", c.item)))
                    }
                    EventKind::MemorySuperseded => {
                        let by = c.superseded_by.ok_or_else(|| {
                            Rejection::new(
                                ErrorCode::BadArgument,
                                "MemorySuperseded names the newer item (superseded_by)",
                            )
                        })?;
                        let newer = self.active(by)?;
                        if by == c.item || newer.promoted.namespace != item.promoted.namespace {
                            return Err(Rejection::new(
                                ErrorCode::BadArgument,
                                format!(
                                    "memory item {} can only be superseded by another item of namespace `{}`",
                                    c.item, item.promoted.namespace
                                ),
                            ));
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Folds a memory event (others are ignored).
    pub fn apply(&mut self, e: &Event) -> Result<(), Rejection> {
        match e.kind {
            EventKind::MemoryPromoted => {
                let p: MemoryPromoted = parse(e.kind, e.payload.as_str())?;
                let item = MemoryItem {
                    id: e.event_id,
                    run: e.run_id,
                    promoted_at: e.time,
                    content_hash: content_hash(&p.namespace, &p.text, &p.fields),
                    promoted: p,
                    status: MemoryStatus::Active,
                    ended: None,
                };
                self.items.insert(e.event_id, item);
            }
            k => {
                let Some(status) = MemoryStatus::of(k) else { return Ok(()) };
                let c: MemoryChange = parse(k, e.payload.as_str())?;
                if let Some(item) = self.items.get_mut(&c.item) {
                    item.status = status;
                    item.ended = Some((e.event_id, c));
                }
            }
        }
        self.changed_at = e.seq.0;
        Ok(())
    }

    /// Feeds the `memory` section to a state-root hasher — only once the ledger has memory, so the roots of
    /// ledgers without any stay what they were.
    pub fn root_parts(&self, h: &mut blake3::Hasher) -> Result<(), Rejection> {
        if self.items.is_empty() && self.items.retired_count() == 0 {
            return Ok(());
        }
        self.items.digest("memory", h)
    }

    /// Pre-hashes changed items (see [`crate::state::LedgerState::hash_changed`]).
    pub fn hash_changed(&self, into: &mut crate::hashed::Adoptions<crate::LedgerState>) -> Result<(), Rejection> {
        self.items.hash_changed(into, |st| &st.memory().items)
    }

    /// Retires every item that has left ACTIVE (no event can change it any more).
    pub(crate) fn retire_ended(&mut self) -> Result<(), Rejection> {
        let ended: Vec<EventId> =
            self.items.values().filter(|i| i.status != MemoryStatus::Active).map(|i| i.id).collect();
        for id in ended {
            self.items.retire(&id)?;
        }
        Ok(())
    }
}
