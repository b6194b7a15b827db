//! Derived state: what the ledger says now, computed by folding events in seq order.
//!
//! The same fold runs live (after each durable append) and in replay, so the two cannot disagree. `admit`
//! applies the state-dependent rules to a draft before it is appended; `apply` folds a sealed event and
//! refuses one that breaks the rules that can never race (run exists, transitions start from the current state
//! and are legal), which only a corrupted or forked ledger can contain. The one admission rule that can race
//! between admission and commit — "no new events name a terminated run" — is enforced by `admit` only, so an
//! event that lost that race still folds.

use serde::{Deserialize, Serialize};

use crate::auth::{Attribution, Tokens};
use crate::authority::AuthorityState;
use crate::chain::ChainHead;
use crate::effect::EffectState;
use crate::error::{ErrorCode, Rejection};
use crate::event::{Draft, Event};
use crate::hashed::HashedMap;
use crate::ids::{RunId, Seq, Timestamp};
use crate::kind::EventKind;
use crate::memory::MemoryState;
use crate::payloads;
use crate::principal::Principal;
use crate::run::RunState;

pub mod retire;

/// One run as the ledger describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id.
    pub id: RunId,
    /// Current lifecycle state.
    pub state: RunState,
    /// Label given at creation.
    pub label: Option<String>,
    /// Who created it.
    pub created_by: Principal,
    /// When it was created.
    pub created_at: Timestamp,
    /// Time of the run's latest event.
    pub updated_at: Timestamp,
    /// Number of events that name this run.
    pub events: u64,
    /// Seq of the latest event that names this run.
    pub last_seq: Seq,
    /// Reason given for the latest transition, if any.
    pub last_reason: Option<String>,
}

impl RunRecord {
    /// The JSON form the CLI (`--json`) and the API show.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "run_id": self.id.to_string(),
            "state": self.state.as_str(),
            "label": self.label,
            "created_by": self.created_by.to_string(),
            "created_at": self.created_at.to_rfc3339(),
            "updated_at": self.updated_at.to_rfc3339(),
            "events": self.events,
            "last_seq": self.last_seq.0,
            "last_reason": self.last_reason,
        })
    }

    /// The record a `RunCreated` event starts (`None` for any other event).
    fn created(e: &Event) -> Option<Self> {
        let id = e.run_id.filter(|_| e.kind == EventKind::RunCreated)?;
        let p: payloads::RunCreated = serde_json::from_str(e.payload.as_str()).unwrap_or_default();
        Some(Self {
            id,
            state: RunState::Created,
            label: p.label,
            created_by: e.origin.clone(),
            created_at: e.time,
            updated_at: e.time,
            events: 0,
            last_seq: e.seq,
            last_reason: None,
        })
    }

    /// Folds a `RunTransitioned`; whether the state moved.
    fn transition(&mut self, e: &Event) -> bool {
        let Ok(t) = serde_json::from_str::<payloads::RunTransitioned>(e.payload.as_str()) else { return false };
        self.state = t.to;
        self.last_reason = t.reason;
        true
    }

    /// Counts an event naming the run.
    fn count(&mut self, e: &Event) {
        self.events += 1;
        self.updated_at = e.time;
        self.last_seq = e.seq;
    }

    /// Rebuilds a run's record from the events naming it, in seq order, as the fold builds it (every event naming
    /// the run counts, rejections included): for runs that have retired from derived state (see [`retire`]).
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Self> {
        let mut record: Option<Self> = None;
        for e in events {
            if e.kind == EventKind::RunCreated {
                record = Self::created(e);
            } else if e.kind == EventKind::RunTransitioned
                && let Some(r) = record.as_mut()
            {
                r.transition(e);
            }
            if let Some(r) = record.as_mut() {
                r.count(e);
            }
        }
        record
    }
}

/// What of a run the state root covers (the activity counters are left out: see [`LedgerState::state_root`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RunRoot {
    state: RunState,
    label: Option<String>,
    created_by: Principal,
    created_at: Timestamp,
    last_reason: Option<String>,
}

impl From<&RunRecord> for RunRoot {
    fn from(r: &RunRecord) -> Self {
        Self {
            state: r.state,
            label: r.label.clone(),
            created_by: r.created_by.clone(),
            created_at: r.created_at,
            last_reason: r.last_reason.clone(),
        }
    }
}

/// All state derived from a ledger: what is live, plus digests of what has retired (see [`retire`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LedgerState {
    runs: imbl::OrdMap<RunId, RunRecord>,
    run_roots: HashedMap<RunId, RunRoot>,
    /// Ids of runs that have retired: a run id names one run, ever.
    retired_runs: imbl::OrdSet<RunId>,
    authority: AuthorityState,
    effects: EffectState,
    #[serde(default)]
    tokens: Tokens,
    head: Option<ChainHead>,
    events: u64,
    rejections: u64,
    #[serde(default)]
    ledger_key: Option<String>,
    #[serde(default)]
    last_checkpoint: Option<CheckpointMark>,
    #[serde(default)]
    memory: MemoryState,
    /// `events` when settled records were last looked for (see [`retire`]; 0 in snapshots written before).
    #[serde(default)]
    retire_pass_at: u64,
}

/// Where the latest checkpoint is and what it covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMark {
    /// Seq of the `Checkpoint` event.
    pub seq: Seq,
    /// Last seq it covers.
    pub to_seq: u64,
    /// When it was appended.
    pub time: Timestamp,
}

impl LedgerState {
    /// Empty state (an empty ledger).
    pub fn new() -> Self {
        Self::default()
    }

    /// Head of the folded ledger (`None` before the first event).
    pub fn head(&self) -> Option<ChainHead> {
        self.head
    }

    /// Seq of the last folded event (0 before the first).
    pub fn last_seq(&self) -> Seq {
        self.head.map_or(Seq(0), |h| h.seq)
    }

    /// Number of events folded.
    pub fn event_count(&self) -> u64 {
        self.events
    }

    /// Number of `TransitionRejected` records folded.
    pub fn rejection_count(&self) -> u64 {
        self.rejections
    }

    /// The runtime public key recorded in `LedgerInitialized` (hex).
    pub fn ledger_key(&self) -> Option<&str> {
        self.ledger_key.as_deref()
    }

    /// The latest checkpoint.
    pub fn last_checkpoint(&self) -> Option<CheckpointMark> {
        self.last_checkpoint
    }

    /// Proposals, grants, budgets, suspensions and the active policy.
    pub fn authority(&self) -> &AuthorityState {
        &self.authority
    }

    /// Permits, approvals, effects and reconfigurations.
    pub fn effects(&self) -> &EffectState {
        &self.effects
    }

    /// Memory items (ACTIVE, and those that left ACTIVE since the last checkpoint).
    pub fn memory(&self) -> &MemoryState {
        &self.memory
    }

    /// API tokens (live, revoked and expired).
    pub fn tokens(&self) -> &Tokens {
        &self.tokens
    }

    /// One run.
    pub fn run(&self, id: RunId) -> Option<&RunRecord> {
        self.runs.get(&id)
    }

    /// All runs, by id (UUIDv7 ids sort by creation time).
    pub fn runs(&self) -> impl Iterator<Item = &RunRecord> {
        self.runs.values()
    }

    /// Checks the state-dependent rules for a draft: the run it names exists (a new one for `RunCreated`) and
    /// is not terminated, and a `RunTransitioned` starts from the run's current state and is legal.
    pub fn admit(&self, d: &Draft) -> Result<(), Rejection> {
        self.check_caller(d.kind, &d.origin, d.acted_by.as_ref(), d.payload.as_str(), d.time, true)?;
        self.check(d.kind, d.run_id, d.payload.as_str(), true)?;
        self.authority.check(d.kind, d.payload.as_str(), d.time, true)?;
        self.effects.check(d.kind, d.payload.as_str(), d.time, true, &self.authority)?;
        self.memory.check(d.kind, d.payload.as_str(), d.time, true)
    }

    /// Who stood behind the event, and may they (see [`crate::auth::check_caller`]); token issue and revocation;
    /// and the approver rule: an approval is answered by a human its request (or escalation) names, never by the
    /// proposer.
    fn check_caller(
        &self,
        kind: EventKind,
        origin: &Principal,
        acted_by: Option<&Attribution>,
        payload: &str,
        time: Timestamp,
        admitting: bool,
    ) -> Result<(), Rejection> {
        crate::auth::check_caller(kind, origin, acted_by, &self.tokens, time, admitting)?;
        self.tokens.check(kind, payload)?;
        if matches!(kind, EventKind::ApprovalGranted | EventKind::ApprovalDenied) {
            self.effects.check_answerer(payload, origin, &self.authority)?;
        }
        Ok(())
    }

    fn check(&self, kind: EventKind, run_id: Option<RunId>, payload: &str, admitting: bool) -> Result<(), Rejection> {
        if kind == EventKind::Checkpoint {
            let c: crate::checkpoint::CheckpointPayload = serde_json::from_str(payload)
                .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("Checkpoint payload: {e}")))?;
            let from = self.last_checkpoint.map_or(1, |m| m.to_seq + 1);
            if c.from_seq != from || c.to_seq < c.from_seq || c.to_seq > self.last_seq().0 {
                return Err(Rejection::new(
                    ErrorCode::HeadConflict,
                    format!(
                        "a checkpoint must cover seqs {from}..=N with N at most {} (got {}..={})",
                        self.last_seq(),
                        c.from_seq,
                        c.to_seq
                    ),
                ));
            }
            return Ok(());
        }
        let Some(run_id) = run_id else { return Ok(()) };
        if kind == EventKind::RunCreated {
            if self.runs.contains_key(&run_id) || self.retired_runs.contains(&run_id) {
                return Err(Rejection::new(ErrorCode::BadEnvelopeField, format!("run {run_id} already exists")));
            }
            return Ok(());
        }
        let Some(run) = self.runs.get(&run_id) else {
            // A rejection may name the run it tried to reach even when that run does not exist.
            if kind == EventKind::TransitionRejected {
                return Ok(());
            }
            if self.retired_runs.contains(&run_id) {
                return Err(Rejection::new(
                    ErrorCode::RunTerminated,
                    format!("run {run_id} is TERMINATED (and settled); {kind} events can no longer name it"),
                ));
            }
            return Err(Rejection::new(ErrorCode::UnknownRun, format!("run {run_id} does not exist")));
        };
        if kind == EventKind::TransitionRejected {
            return Ok(());
        }
        if kind == EventKind::RunTransitioned {
            let t: payloads::RunTransitioned = serde_json::from_str(payload)
                .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("RunTransitioned payload: {e}")))?;
            if t.from != run.state {
                return Err(Rejection::new(
                    ErrorCode::IllegalTransition,
                    format!("run {run_id} is in {}, not {}", run.state, t.from),
                ));
            }
            return run.state.check_transition(t.to, t.reason.as_deref());
        }
        // What was already under way when the run ended must still be able to close (else an effect stays "running"
        // and its reservation holds budget for ever, and the run never settles): effect outcomes and the settlement
        // or release of reservations are the only new events a terminated run accepts.
        let closes = matches!(
            kind,
            EventKind::EffectCompleted
                | EventKind::EffectFailed
                | EventKind::EffectUnknown
                | EventKind::BudgetSettled
                | EventKind::BudgetReleased
        );
        if admitting && run.state.is_terminal() && !closes {
            return Err(Rejection::new(
                ErrorCode::RunTerminated,
                format!("run {run_id} is TERMINATED; {kind} events can no longer name it"),
            ));
        }
        Ok(())
    }

    /// Folds one sealed event. Events must come in seq order; an event that breaks the rules is refused and
    /// the state is left unchanged.
    pub fn apply(&mut self, e: &Event) -> Result<(), Rejection> {
        let expected = self.last_seq().next();
        if e.seq != expected {
            return Err(Rejection::new(ErrorCode::SequenceGap, format!("fold expected seq {expected}, got {}", e.seq)));
        }
        self.check_caller(e.kind, &e.origin, e.acted_by.as_ref(), e.payload.as_str(), e.time, false)?;
        self.check(e.kind, e.run_id, e.payload.as_str(), false)?;
        self.authority.check(e.kind, e.payload.as_str(), e.time, false)?;
        self.effects.check(e.kind, e.payload.as_str(), e.time, false, &self.authority)?;
        self.memory.check(e.kind, e.payload.as_str(), e.time, false)?;
        self.authority.apply(e)?;
        self.effects.apply(e)?;
        if e.kind.family() == crate::kind::Family::Memory {
            self.memory.apply(e)?;
        }
        self.tokens.apply(e.kind, e.event_id, &e.origin, e.time, e.payload.as_str());
        match e.kind {
            EventKind::RunCreated => {
                if let Some(record) = RunRecord::created(e) {
                    self.run_roots.insert(record.id, RunRoot::from(&record));
                    self.runs.insert(record.id, record);
                }
            }
            EventKind::RunTransitioned => {
                if let Some(run) = e.run_id.and_then(|id| self.runs.get_mut(&id))
                    && run.transition(e)
                {
                    self.run_roots.insert(run.id, RunRoot::from(&*run));
                }
            }
            EventKind::TransitionRejected => self.rejections += 1,
            EventKind::LedgerInitialized => {
                if let Ok(p) = serde_json::from_str::<payloads::LedgerInitialized>(e.payload.as_str()) {
                    self.ledger_key = Some(p.runtime_public_key);
                }
            }
            EventKind::Checkpoint => {
                if let Ok(c) = serde_json::from_str::<crate::checkpoint::CheckpointPayload>(e.payload.as_str()) {
                    self.last_checkpoint = Some(CheckpointMark { seq: e.seq, to_seq: c.to_seq, time: e.time });
                }
                self.retire_if_due(e.time)?;
            }
            _ => {}
        }
        if let Some(run) = e.run_id.and_then(|id| self.runs.get_mut(&id)) {
            run.count(e);
        }
        self.head = Some(ChainHead::after(e));
        self.events += 1;
        Ok(())
    }
}

impl LedgerState {
    /// The state root over the governed state: runs (id, state, label, creator, last reason), proposals and
    /// decisions, grants, budgets and reservations, suspensions, containments, the active policy, permits,
    /// approvals, effects and reconfigurations. Activity counters (event and rejection counts, a run's event count
    /// and last seq, the head) are left out on purpose: they are moved by free events (agents' notes, rejections)
    /// that may land between a checkpoint's covered range and the checkpoint itself, and they decide nothing.
    ///
    /// v3 layout: blake3 of `"ice.state-root.v3\n"` followed by, in this order, the section hashes of `runs`,
    /// `proposals`, `grants`, `budget_lines`, `reservations`, `authority` (suspended, contained, policy hash and
    /// event), `permits`, `approvals`, `effects`, `reconfigured` and `tokens`, then — only once the ledger holds
    /// promoted memory, so that the roots of ledgers without memory are unchanged — `memory` (items by id). A map section (`runs`, `proposals`,
    /// `grants`, `reservations`, `permits`, `approvals`, `effects`, `memory`) is blake3(name, LtHash of the entry hashes of
    /// its live *and retired* entries), an entry hash being blake3 of the RFC 8785 encoding of `[key, value]`
    /// (see [`crate::hashed`]); other sections are blake3(name, RFC 8785 encoding). Retiring a record therefore
    /// leaves the root unchanged, and a checkpoint re-hashes only what changed. (v2 hashed the entry hashes in key
    /// order, which needed every record in memory; v1 had no `tokens`.)
    pub fn state_root(&self) -> Result<String, Rejection> {
        let mut h = blake3::Hasher::new();
        h.update(b"ice.state-root.v3\n");
        self.run_roots.digest("runs", &mut h)?;
        self.authority.root_parts(&mut h)?;
        self.effects.root_parts(&mut h)?;
        let tokens = serde_json::to_value(self.tokens.all().values().collect::<Vec<_>>())
            .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("state cannot be encoded: {e}")))?;
        hash_canonical("tokens", &tokens, &mut h)?;
        self.memory.root_parts(&mut h)?;
        Ok(h.finalize().to_hex().to_string())
    }

    /// Hashes the map entries changed since the last [`LedgerState::state_root`] without accounting them: called on
    /// an O(1) clone of the state taken under the runtime's state lock, outside it; the state cloned adopts the
    /// hashes of entries it has not changed since ([`crate::hashed::Adoptions::adopt_into`]), so that the next root
    /// re-hashes only what changed meanwhile, under the lock.
    pub fn hash_changed(&self) -> Result<crate::hashed::Adoptions<LedgerState>, Rejection> {
        let mut into = crate::hashed::Adoptions::<LedgerState>::default();
        self.run_roots.hash_changed(&mut into, |st| &st.run_roots)?;
        self.authority.hash_changed(&mut into)?;
        self.effects.hash_changed(&mut into)?;
        self.memory.hash_changed(&mut into)?;
        Ok(into)
    }

    /// Encodes the state for a snapshot. Plain JSON, not canonical: a snapshot is trusted only once the state it
    /// decodes to matches the signed state root (see `ice_runtime::snapshot`), never by its bytes, and canonicalising
    /// the whole live state cost ~4x the encoding itself at every checkpoint.
    pub fn to_snapshot(&self) -> Result<String, Rejection> {
        serde_json::to_string(self)
            .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("state cannot be encoded: {e}")))
    }

    /// Decodes a snapshot written by [`LedgerState::to_snapshot`].
    pub fn from_snapshot(text: &str) -> Result<Self, Rejection> {
        serde_json::from_str(text)
            .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("snapshot cannot be decoded: {e}")))
    }
}

/// Feeds one section to a state-root hasher: blake3 over the section name and the RFC 8785 encoding of `value`.
pub(crate) fn hash_canonical(name: &str, value: &serde_json::Value, h: &mut blake3::Hasher) -> Result<(), Rejection> {
    let mut section = blake3::Hasher::new();
    section.update(&(name.len() as u64).to_be_bytes());
    section.update(name.as_bytes());
    crate::jcs::write_canonical(value, &mut section)
        .map_err(|e| Rejection::new(ErrorCode::BadPayloadStructure, format!("state cannot be encoded: {e}")))?;
    h.update(section.finalize().as_bytes());
    Ok(())
}

/// Serde helper for maps whose keys are not strings: encoded as a list of `[key, value]` pairs in key order.
pub mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Serializes a map as `[[k, v], ...]`.
    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(m: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    /// Deserializes `[[k, v], ...]` into a map.
    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}
