//! Audit bundles: a portable export of ledger events that anyone can verify offline, holding the signed
//! checkpoints that cover the events and one Merkle inclusion proof per event. The format is specified in
//! `docs/audit-bundle.md`.
//!
//! A bundle is JSON lines in a fixed order: the header (line 1), then one line per covering checkpoint in
//! ascending seq, then one line per exported event in ascending seq, then any witness cosignatures of its
//! checkpoints. Because the order is fixed, a position in
//! [`Bundle`] maps to a line number, which every [`BundleError`] reports. [`build_bundle`] assembles a bundle from
//! what the caller's store provides; [`verify_bundle`] checks it against trusted keys and needs nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::checkpoint::CheckpointPayload;
use crate::error::ErrorCode;
use crate::event::Event;
use crate::ids::{EventHash, Timestamp};
use crate::kind::EventKind;
use crate::merkle::{InclusionProof, MerkleTree, verify_inclusion};
use crate::witness::{WitnessedCheckpoint, check_cosignature};

/// The `format` value of the header line this module reads and writes.
pub const FORMAT: &str = "ice-audit-bundle/1";

/// The header line: what was exported, when, and which keys the exporter declares trusted.
#[derive(Debug, Clone, PartialEq)]
pub struct BundleHeader {
    /// When the bundle was made (written as RFC 3339 with microseconds).
    pub created_at: Timestamp,
    /// What was selected, e.g. `{"run":"<uuid>"}` or `{"from_seq":A,"to_seq":B}`. A selection with integer
    /// `from_seq` and `to_seq` promises every event of that range, which [`verify_bundle`] checks.
    pub selection: Value,
    /// Hex ed25519 public keys the exporter declares trusted. A verifier should pin its own instead.
    pub public_keys: Vec<String>,
}

/// One exported event with the proof that its covering checkpoint's Merkle root includes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEvent {
    /// The event as stored.
    pub event: Event,
    /// Seq of the `Checkpoint` event whose range covers this event.
    pub checkpoint_seq: u64,
    /// Inclusion of `event.hash` at leaf index `event.seq - from_seq` of that checkpoint's Merkle root.
    pub proof: InclusionProof,
}

/// A witness's cosignature of one of the bundle's checkpoints (see [`crate::witness`]): the witness checked that
/// the ledger up to that checkpoint extends everything it had cosigned before. An exported event is *witnessed*
/// when its covering checkpoint is the cosigned one, or is itself exported as an event line whose covering
/// checkpoint is witnessed (checkpoints chain to later ones through their own inclusion proofs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleCosignature {
    /// The log: hex public key its checkpoints are signed with.
    pub log: String,
    /// Hex ed25519 public key of the witness.
    pub witness_key: String,
    /// What the witness cosigned, with its cosignature.
    pub checkpoint: WitnessedCheckpoint,
}

/// A parsed or freshly built audit bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// The header line.
    pub header: BundleHeader,
    /// The covering `Checkpoint` events, ascending by seq.
    pub checkpoints: Vec<Event>,
    /// The exported events, ascending by seq.
    pub events: Vec<BundleEvent>,
    /// Witness cosignatures of checkpoints in `checkpoints`.
    pub cosignatures: Vec<BundleCosignature>,
}

/// Why a bundle could not be built, parsed or verified. `line` is 1-based in the [`Bundle::to_jsonl`] layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {}{message}", location(.line, .seq))]
pub struct BundleError {
    /// Stable code: `HashMismatch` (hash, signature, untrusted key, proof), `BrokenLink` (prev_hash),
    /// `SequenceGap` (order, missing events of a range), `NotFound` (missing checkpoint), `MalformedJson` /
    /// `BadEnvelopeField` / `SchemaMismatch` (unparseable line, unknown format), `BadArgument` (builder input).
    pub code: ErrorCode,
    /// The offending line, when there is one.
    pub line: Option<usize>,
    /// The seq of the offending event or checkpoint, when known.
    pub seq: Option<u64>,
    /// What is wrong.
    pub message: String,
}

fn location(line: &Option<usize>, seq: &Option<u64>) -> String {
    match (line, seq) {
        (Some(l), Some(s)) => format!("line {l}, seq {s}: "),
        (Some(l), None) => format!("line {l}: "),
        (None, Some(s)) => format!("seq {s}: "),
        (None, None) => String::new(),
    }
}

impl BundleError {
    fn new(code: ErrorCode, line: Option<usize>, seq: Option<u64>, message: impl Into<String>) -> Self {
        Self { code, line, seq, message: message.into() }
    }

    /// The hint for this error's code.
    pub fn hint(&self) -> &'static str {
        self.code.hint()
    }
}

/// Where the keys that decided trust came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// The bundle's own header (no keys were pinned): proves integrity, not authorship.
    Bundle,
    /// Keys the verifier pinned.
    Pinned,
}

/// What a successful [`verify_bundle`] covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleReport {
    /// Events whose hash, proof and checkpoint were verified.
    pub events_verified: usize,
    /// Checkpoints whose hash and signature were verified.
    pub checkpoints_verified: usize,
    /// Lowest exported seq (`None` for a bundle without events).
    pub first_seq: Option<u64>,
    /// Highest exported seq.
    pub last_seq: Option<u64>,
    /// Pairs of consecutive exported seqs whose prev_hash link was checked.
    pub links_verified: usize,
    /// Whether the selection was a seq range and every event of it was present.
    pub range_complete: bool,
    /// Where the trusted keys came from.
    pub keys_from: KeySource,
    /// The distinct keys (lowercase hex) that signed the verified checkpoints.
    pub signing_keys: Vec<String>,
    /// Witness cosignatures verified (each of a checkpoint the bundle holds, unchanged).
    pub cosignatures_verified: usize,
    /// Where the trusted witness keys came from (`None` without cosignatures).
    pub witness_keys_from: Option<KeySource>,
    /// Exported events under a witnessed checkpoint (see [`BundleCosignature`]).
    pub events_witnessed: usize,
}

impl Bundle {
    /// Line number of `checkpoints[i]`.
    fn checkpoint_line(&self, i: usize) -> usize {
        2 + i
    }

    /// Line number of `events[j]`.
    fn event_line(&self, j: usize) -> usize {
        2 + self.checkpoints.len() + j
    }

    /// Line number of `cosignatures[k]`.
    fn cosignature_line(&self, k: usize) -> usize {
        2 + self.checkpoints.len() + self.events.len() + k
    }

    /// The JSON-lines text: one object per line, each ending in `\n`, `"type"` first.
    pub fn to_jsonl(&self) -> String {
        let h = &self.header;
        let mut out = format!(
            "{{\"type\":\"header\",\"format\":{},\"created_at\":{},\"selection\":{},\"public_keys\":{}}}\n",
            Value::from(FORMAT),
            Value::from(h.created_at.to_rfc3339()),
            h.selection,
            Value::from(h.public_keys.clone()),
        );
        for cp in &self.checkpoints {
            let _ = writeln!(out, "{{\"type\":\"checkpoint\",\"event\":{}}}", cp.to_json());
        }
        for e in &self.events {
            let proof = json!({
                "index": e.proof.index,
                "leaf_count": e.proof.leaf_count,
                "path": e.proof.path.iter().map(|p| EventHash(*p).to_hex()).collect::<Vec<_>>(),
            });
            let _ = writeln!(
                out,
                "{{\"type\":\"event\",\"event\":{},\"checkpoint_seq\":{},\"proof\":{}}}",
                e.event.to_json(),
                e.checkpoint_seq,
                proof
            );
        }
        for c in &self.cosignatures {
            let _ = writeln!(
                out,
                "{{\"type\":\"cosignature\",\"log\":{},\"witness_key\":{},\"checkpoint\":{}}}",
                Value::from(c.log.as_str()),
                Value::from(c.witness_key.as_str()),
                serde_json::to_value(&c.checkpoint).unwrap_or(Value::Null)
            );
        }
        out
    }

    /// Parses the JSON-lines text. Checks syntax and layout only (header first, checkpoints before events,
    /// cosignatures last, no unknown fields, each event object exactly as [`Event::to_json`] writes it); [`verify_bundle`] checks
    /// everything else.
    pub fn from_jsonl(text: &str) -> Result<Bundle, BundleError> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        let header = match lines.next() {
            Some((n, line)) => parse_header(n, &parse_line(n, line)?)?,
            None => return Err(bad(1, None, "the bundle is empty; line 1 must be the header")),
        };
        let mut checkpoints = Vec::new();
        let mut events = Vec::new();
        let mut cosignatures = Vec::new();
        for (n, line) in lines {
            let v = parse_line(n, line)?;
            let kind = v.get("type").and_then(Value::as_str);
            if !cosignatures.is_empty() && kind != Some("cosignature") {
                return Err(bad(n, None, "cosignature lines must come last"));
            }
            match kind {
                Some("cosignature") => cosignatures.push(parse_cosignature(n, &v)?),
                Some("checkpoint") if events.is_empty() => {
                    let event = parse_event(n, &v)?;
                    only_keys(n, Some(event.seq.0), &v, &["type", "event"])?;
                    checkpoints.push(event);
                }
                Some("checkpoint") => return Err(bad(n, None, "checkpoint lines must come before event lines")),
                Some("event") => events.push(parse_bundle_event(n, &v)?),
                Some("header") => return Err(bad(n, None, "a bundle has one header, on line 1")),
                Some(other) => return Err(bad(n, None, format!("unknown line type `{other}`"))),
                None => return Err(bad(n, None, "the line has no string field `type`")),
            }
        }
        Ok(Bundle { header, checkpoints, events, cosignatures })
    }
}

fn bad(line: usize, seq: Option<u64>, message: impl Into<String>) -> BundleError {
    BundleError::new(ErrorCode::BadEnvelopeField, Some(line), seq, message)
}

fn parse_line(n: usize, line: &str) -> Result<Value, BundleError> {
    let v: Value = serde_json::from_str(line).map_err(|e| {
        BundleError::new(ErrorCode::MalformedJson, Some(n), None, format!("the line is not valid JSON: {e}"))
    })?;
    if v.is_object() { Ok(v) } else { Err(bad(n, None, "the line must be a JSON object")) }
}

/// Refuses keys outside `allowed`: a new field means a new format version, and a reader must not show a field
/// that nothing checks.
fn only_keys(n: usize, seq: Option<u64>, v: &Value, allowed: &[&str]) -> Result<(), BundleError> {
    match v.as_object().and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str()))) {
        Some(k) => Err(bad(n, seq, format!("unknown field `{k}` (this reader knows {FORMAT})"))),
        None => Ok(()),
    }
}

fn parse_header(n: usize, v: &Value) -> Result<BundleHeader, BundleError> {
    if v.get("type").and_then(Value::as_str) != Some("header") {
        return Err(bad(n, None, "line 1 must be the header (`\"type\":\"header\"`)"));
    }
    match v.get("format").and_then(Value::as_str) {
        Some(FORMAT) => {}
        Some(other) => {
            let msg = format!("format `{other}` is not supported; this verifier reads `{FORMAT}`");
            return Err(BundleError::new(ErrorCode::SchemaMismatch, Some(n), None, msg));
        }
        None => return Err(bad(n, None, "the header has no string field `format`")),
    }
    only_keys(n, None, v, &["type", "format", "created_at", "selection", "public_keys"])?;
    let created_at = v
        .get("created_at")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(n, None, "the header has no string field `created_at`"))
        .and_then(|s| Timestamp::parse_rfc3339(s).map_err(|r| bad(n, None, r.message)))?;
    let selection = v.get("selection").cloned().ok_or_else(|| bad(n, None, "the header has no `selection`"))?;
    let keys = v
        .get("public_keys")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(n, None, "the header has no array `public_keys` (it may be empty, but must be present)"))?;
    let public_keys = keys
        .iter()
        .map(|k| {
            k.as_str()
                .filter(|s| EventHash::from_hex(s).is_ok())
                .map(str::to_owned)
                .ok_or_else(|| bad(n, None, format!("public key {k} is not 64 hex digits")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(BundleHeader { created_at, selection, public_keys })
}

fn parse_event(n: usize, line: &Value) -> Result<Event, BundleError> {
    let v = line.get("event").ok_or_else(|| bad(n, None, "the line has no `event` object"))?;
    let seq = v.get("seq").and_then(Value::as_u64);
    let event = Event::from_json(v).map_err(|r| BundleError::new(r.code, Some(n), seq, r.message))?;
    // Fields outside the hash (`time`, unknown keys) must agree with the hashed ones, so that nothing a reader
    // sees in the line is unverified.
    if event.to_json() != *v {
        return Err(bad(
            n,
            seq,
            "the event object differs from its canonical form (e.g. `time` disagrees with `time_us`, or an \
             unknown field was added)",
        ));
    }
    Ok(event)
}

fn parse_bundle_event(n: usize, v: &Value) -> Result<BundleEvent, BundleError> {
    let event = parse_event(n, v)?;
    let seq = Some(event.seq.0);
    let checkpoint_seq = v
        .get("checkpoint_seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad(n, seq, "the line has no integer `checkpoint_seq`"))?;
    let proof = v.get("proof").ok_or_else(|| bad(n, seq, "the line has no `proof` object"))?;
    let proof = InclusionProof::deserialize(proof).map_err(|e| bad(n, seq, format!("invalid `proof`: {e}")))?;
    only_keys(n, seq, v, &["type", "event", "checkpoint_seq", "proof"])?;
    Ok(BundleEvent { event, checkpoint_seq, proof })
}

fn parse_cosignature(n: usize, v: &Value) -> Result<BundleCosignature, BundleError> {
    only_keys(n, None, v, &["type", "log", "witness_key", "checkpoint"])?;
    let text = |name: &str| {
        v.get(name)
            .and_then(Value::as_str)
            .filter(|s| EventHash::from_hex(s).is_ok())
            .map(str::to_owned)
            .ok_or_else(|| bad(n, None, format!("the cosignature has no `{name}` of 64 hex digits")))
    };
    let (log, witness_key) = (text("log")?, text("witness_key")?);
    let raw = v.get("checkpoint").ok_or_else(|| bad(n, None, "the cosignature has no `checkpoint` object"))?;
    let checkpoint = WitnessedCheckpoint::deserialize(raw)
        .map_err(|e| bad(n, None, format!("invalid cosigned `checkpoint`: {e}")))?;
    // As for events: nothing in the line may go unchecked, so it must be exactly what the fields rebuild.
    if serde_json::to_value(&checkpoint).ok().as_ref() != Some(raw) {
        return Err(bad(n, Some(checkpoint.seq), "the cosigned checkpoint has unknown or non-canonical fields"));
    }
    Ok(BundleCosignature { log, witness_key, checkpoint })
}

/// A checkpoint's payload with its hex fields decoded.
struct Covering {
    from_seq: u64,
    to_seq: u64,
    to_hash: EventHash,
    merkle_root: EventHash,
    public_key: String,
    payload: CheckpointPayload,
}

/// Decodes a checkpoint event's payload and checks its range precedes the checkpoint itself. Errors carry no
/// line; callers add it.
fn covering(cp: &Event) -> Result<Covering, BundleError> {
    let seq = Some(cp.seq.0);
    let field = |message: String| BundleError::new(ErrorCode::BadEnvelopeField, None, seq, message);
    if cp.kind != EventKind::Checkpoint {
        return Err(field(format!("a checkpoint line holds a `{}` event", cp.kind.as_str())));
    }
    let p: CheckpointPayload = serde_json::from_str(cp.payload.as_str())
        .map_err(|e| field(format!("the checkpoint payload is not a CheckpointPayload: {e}")))?;
    if p.from_seq > p.to_seq || p.to_seq >= cp.seq.0 {
        return Err(field(format!(
            "checkpoint range {}..={} must be non-empty and precede the checkpoint",
            p.from_seq, p.to_seq
        )));
    }
    let hex = |name: &str, s: &str| EventHash::from_hex(s).map_err(|r| field(format!("`{name}`: {}", r.message)));
    Ok(Covering {
        from_seq: p.from_seq,
        to_seq: p.to_seq,
        to_hash: hex("to_hash", &p.to_hash)?,
        merkle_root: hex("merkle_root", &p.merkle_root)?,
        public_key: p.public_key.to_ascii_lowercase(),
        payload: p,
    })
}

fn with_line(mut e: BundleError, line: usize) -> BundleError {
    e.line = Some(line);
    e
}

/// Assembles a bundle. `selected` are the events to export (any order, duplicates ignored); each entry of
/// `checkpoints` is a `Checkpoint` event with the hashes of every event in its `from_seq..=to_seq` range, in seq
/// order (the leaves of its Merkle tree). Only checkpoints that cover a selected event are kept; each event is
/// proved against a checkpoint whose range holds it (with tiling ranges there is exactly one).
///
/// Fails with `NotFound` if a selected event is covered by no given checkpoint, `HashMismatch` if a range's hashes
/// do not give the checkpoint's `merkle_root` / `to_hash` or do not list a selected event's hash, and
/// `BadArgument` / `BadEnvelopeField` for malformed input. It does not check signatures: run [`verify_bundle`] on
/// the result before handing it out.
pub fn build_bundle(
    header: BundleHeader,
    selected: &[Event],
    checkpoints: &[(Event, Vec<EventHash>)],
) -> Result<Bundle, BundleError> {
    struct Prepared<'a> {
        event: &'a Event,
        cov: Covering,
        hashes: &'a [EventHash],
        tree: MerkleTree,
        used: bool,
    }
    let mut prepared = Vec::with_capacity(checkpoints.len());
    for (event, hashes) in checkpoints {
        let cov = covering(event)?;
        let seq = Some(event.seq.0);
        let expected = cov.to_seq - cov.from_seq + 1;
        if hashes.len() as u64 != expected {
            let msg = format!("checkpoint covers {expected} events but {} hashes were given", hashes.len());
            return Err(BundleError::new(ErrorCode::BadArgument, None, seq, msg));
        }
        let leaves: Vec<[u8; 32]> = hashes.iter().map(|h| h.0).collect();
        let tree = MerkleTree::new(&leaves);
        if tree.root() != cov.merkle_root.0 || hashes.last() != Some(&cov.to_hash) {
            let msg = format!(
                "the given hashes of {}..={} do not match the checkpoint's merkle_root/to_hash",
                cov.from_seq, cov.to_seq
            );
            return Err(BundleError::new(ErrorCode::HashMismatch, None, seq, msg));
        }
        prepared.push(Prepared { event, cov, hashes, tree, used: false });
    }
    prepared.sort_by_key(|p| p.event.seq);
    prepared.dedup_by_key(|p| p.event.seq);

    let mut chosen: Vec<&Event> = selected.iter().collect();
    chosen.sort_by_key(|e| e.seq);
    chosen.dedup_by_key(|e| e.seq);
    let mut events = Vec::with_capacity(chosen.len());
    let mut cursor = 0;
    for e in chosen {
        let seq = e.seq.0;
        let covers = |p: &Prepared<'_>| p.cov.from_seq <= seq && seq <= p.cov.to_seq;
        // Events and tiles are both ascending, so searching on from the last match keeps this linear overall.
        let found = prepared.get(cursor..).and_then(|rest| rest.iter().position(covers)).map(|i| i + cursor);
        let Some(p) = found.or_else(|| prepared.iter().position(covers)).and_then(|i| {
            cursor = i;
            prepared.get_mut(i)
        }) else {
            let msg = "no given checkpoint covers this event; checkpoint the ledger past it first";
            return Err(BundleError::new(ErrorCode::NotFound, None, Some(seq), msg));
        };
        let index = (seq - p.cov.from_seq) as usize;
        let proof = p.tree.proof(index).filter(|_| p.hashes.get(index) == Some(&e.hash)).ok_or_else(|| {
            let msg = format!("the hashes given for checkpoint {} do not list this event's hash", p.event.seq);
            BundleError::new(ErrorCode::HashMismatch, None, Some(seq), msg)
        })?;
        p.used = true;
        events.push(BundleEvent { event: e.clone(), checkpoint_seq: p.event.seq.0, proof });
    }
    let checkpoints = prepared.into_iter().filter(|p| p.used).map(|p| p.event.clone()).collect();
    Ok(Bundle { header, checkpoints, events, cosignatures: Vec::new() })
}

/// The seq range a selection promises in full, if it is a range selection.
fn selected_range(selection: &Value) -> Option<(u64, u64)> {
    Some((selection.get("from_seq")?.as_u64()?, selection.get("to_seq")?.as_u64()?))
}

/// Verifies a bundle offline. `trusted_keys` are pinned hex ed25519 keys; if empty, the header's `public_keys`
/// are used instead and the report says `keys_from: bundle` (integrity without authorship). Witness
/// cosignatures are checked against their own keys; [`verify_bundle_witnessed`] pins witnesses.
///
/// Checks, failing on the first problem: every checkpoint's hash, payload, signature and key trust; every event's
/// hash, covering checkpoint, range, inclusion proof (leaf index `seq - from_seq` of `to_seq - from_seq + 1`) and
/// `to_hash` when it is the range's last event; prev_hash links between exported events with consecutive seqs;
/// ascending order; and, for a `{"from_seq":A,"to_seq":B}` selection, that every event of `A..=B` is present.
pub fn verify_bundle(bundle: &Bundle, trusted_keys: &[String]) -> Result<BundleReport, BundleError> {
    verify_bundle_witnessed(bundle, trusted_keys, &[])
}

/// [`verify_bundle`], and with `trusted_witnesses` (hex ed25519 keys) non-empty: every cosignature must be by one
/// of them (`UntrustedKey`) and every exported event must be witnessed (`NotWitnessed`, naming the first that is
/// not). Any cosignature that does not verify, or names a checkpoint the bundle does not hold exactly as cosigned,
/// fails with `CosignatureInvalid`.
pub fn verify_bundle_witnessed(
    bundle: &Bundle,
    trusted_keys: &[String],
    trusted_witnesses: &[String],
) -> Result<BundleReport, BundleError> {
    let (keys_from, trusted): (KeySource, &[String]) = if trusted_keys.is_empty() {
        (KeySource::Bundle, &bundle.header.public_keys)
    } else {
        (KeySource::Pinned, trusted_keys)
    };
    let trusted: Vec<String> = trusted.iter().map(|k| k.to_ascii_lowercase()).collect();

    let mut covers: BTreeMap<u64, (Covering, EventHash)> = BTreeMap::new();
    let mut signing_keys: Vec<String> = Vec::new();
    for (i, cp) in bundle.checkpoints.iter().enumerate() {
        let (line, seq) = (bundle.checkpoint_line(i), cp.seq.0);
        let fail = |code, message: String| BundleError::new(code, Some(line), Some(seq), message);
        if covers.last_key_value().is_some_and(|(&last, _)| last >= seq) {
            return Err(fail(ErrorCode::SequenceGap, "checkpoints must be in ascending seq order".into()));
        }
        let computed = cp.compute_hash();
        if computed != cp.hash {
            let msg = format!("checkpoint hash {} does not match its contents (computed {computed})", cp.hash);
            return Err(fail(ErrorCode::HashMismatch, msg));
        }
        let cov = covering(cp).map_err(|e| with_line(e, line))?;
        cov.payload.verify_signature().map_err(|r| fail(r.code, r.message))?;
        if !trusted.contains(&cov.public_key) {
            let whose = match keys_from {
                KeySource::Pinned => "the pinned keys",
                KeySource::Bundle => "the bundle header's public_keys",
            };
            let msg = format!("checkpoint is signed by {}, which is not among {whose}", cov.public_key);
            return Err(fail(ErrorCode::UntrustedKey, msg));
        }
        if cov.to_seq + 1 == seq && cp.prev_hash != cov.to_hash {
            let msg = format!("checkpoint prev_hash {} is not its own to_hash {}", cp.prev_hash, cov.to_hash);
            return Err(fail(ErrorCode::BrokenLink, msg));
        }
        if !signing_keys.contains(&cov.public_key) {
            signing_keys.push(cov.public_key.clone());
        }
        covers.insert(seq, (cov, cp.hash));
    }

    let mut links_verified = 0;
    let mut prev: Option<&Event> = None;
    for (j, be) in bundle.events.iter().enumerate() {
        let (e, line, seq) = (&be.event, bundle.event_line(j), be.event.seq.0);
        let fail = |code, message: String| BundleError::new(code, Some(line), Some(seq), message);
        let computed = e.compute_hash();
        if computed != e.hash {
            let msg = format!("event hash {} does not match its contents (computed {computed})", e.hash);
            return Err(fail(ErrorCode::HashMismatch, msg));
        }
        if let Some(p) = prev {
            if p.seq.0 >= seq {
                let msg = format!("events must be in ascending seq order, but seq {} comes first", p.seq);
                return Err(fail(ErrorCode::SequenceGap, msg));
            }
            if p.seq.0 + 1 == seq {
                if e.prev_hash != p.hash {
                    let msg = format!("prev_hash {} is not the hash {} of seq {}", e.prev_hash, p.hash, p.seq);
                    return Err(fail(ErrorCode::BrokenLink, msg));
                }
                links_verified += 1;
            }
        }
        prev = Some(e);
        if let Some((_, cp_hash)) = covers.get(&seq)
            && *cp_hash != e.hash
        {
            let msg = "this event is also a checkpoint line, with a different hash".to_owned();
            return Err(fail(ErrorCode::HashMismatch, msg));
        }
        let Some((cov, _)) = covers.get(&be.checkpoint_seq) else {
            let msg = format!("covering checkpoint seq {} is not in the bundle", be.checkpoint_seq);
            return Err(fail(ErrorCode::NotFound, msg));
        };
        if seq < cov.from_seq || seq > cov.to_seq {
            let msg = format!(
                "checkpoint seq {} covers {}..={}, which does not contain this event",
                be.checkpoint_seq, cov.from_seq, cov.to_seq
            );
            return Err(fail(ErrorCode::NotFound, msg));
        }
        let (index, count) = (seq - cov.from_seq, cov.to_seq - cov.from_seq + 1);
        if be.proof.index != index || be.proof.leaf_count != count {
            let msg = format!(
                "proof is for leaf {} of {}, but this event is leaf {index} of {count} of checkpoint seq {}",
                be.proof.index, be.proof.leaf_count, be.checkpoint_seq
            );
            return Err(fail(ErrorCode::HashMismatch, msg));
        }
        if !verify_inclusion(&e.hash.0, &be.proof, &cov.merkle_root.0) {
            let msg =
                format!("inclusion proof does not lead to the merkle_root of checkpoint seq {}", be.checkpoint_seq);
            return Err(fail(ErrorCode::HashMismatch, msg));
        }
        if seq == cov.to_seq && e.hash != cov.to_hash {
            let msg = format!("hash is not the to_hash {} of checkpoint seq {}", cov.to_hash, be.checkpoint_seq);
            return Err(fail(ErrorCode::HashMismatch, msg));
        }
    }

    let witnessed = verify_cosignatures(bundle, &covers, trusted_witnesses)?;
    let first_seq = bundle.events.first().map(|e| e.event.seq.0);
    let last_seq = bundle.events.last().map(|e| e.event.seq.0);
    let range = selected_range(&bundle.header.selection);
    if let Some((from, to)) = range {
        // Events are ascending and unique here, so count and ends decide completeness. Outside the range a bundle
        // may hold only checkpoints, exported to chain the range's checkpoints to a witnessed one.
        let inside: Vec<u64> =
            bundle.events.iter().map(|e| e.event.seq.0).filter(|s| (from..=to).contains(s)).collect();
        let complete = inside.first() == Some(&from)
            && inside.last() == Some(&to)
            && to.checked_sub(from).and_then(|d| d.checked_add(1)) == Some(inside.len() as u64);
        if !complete {
            let msg = format!(
                "the selection promises every event of {from}..={to}, but the bundle holds {} event(s) of it{}",
                inside.len(),
                match (inside.first(), inside.last()) {
                    (Some(a), Some(b)) => format!(", spanning {a}..={b}"),
                    _ => String::new(),
                }
            );
            return Err(BundleError::new(ErrorCode::SequenceGap, Some(1), None, msg));
        }
        if let Some((j, e)) = bundle
            .events
            .iter()
            .enumerate()
            .find(|(_, e)| !(from..=to).contains(&e.event.seq.0) && e.event.kind != EventKind::Checkpoint)
        {
            let msg = format!("the event lies outside the selected range {from}..={to} and is not a checkpoint");
            return Err(BundleError::new(ErrorCode::SequenceGap, Some(bundle.event_line(j)), Some(e.event.seq.0), msg));
        }
    }
    Ok(BundleReport {
        events_verified: bundle.events.len(),
        checkpoints_verified: bundle.checkpoints.len(),
        first_seq,
        last_seq,
        links_verified,
        range_complete: range.is_some(),
        keys_from,
        signing_keys,
        cosignatures_verified: bundle.cosignatures.len(),
        witness_keys_from: witnessed.keys_from,
        events_witnessed: witnessed.events,
    })
}

/// What [`verify_cosignatures`] found.
struct Witnessing {
    keys_from: Option<KeySource>,
    events: usize,
}

/// Checks every cosignature (its signature, the witness's trust, and that the bundle holds the cosigned checkpoint
/// unchanged), then which events are witnessed. `covers` are the bundle's verified checkpoints by seq.
fn verify_cosignatures(
    bundle: &Bundle,
    covers: &BTreeMap<u64, (Covering, EventHash)>,
    trusted_witnesses: &[String],
) -> Result<Witnessing, BundleError> {
    let pinned: Vec<String> = trusted_witnesses.iter().map(|k| k.to_ascii_lowercase()).collect();
    let mut anchored: BTreeSet<u64> = BTreeSet::new();
    for (k, c) in bundle.cosignatures.iter().enumerate() {
        let (line, w) = (bundle.cosignature_line(k), &c.checkpoint);
        let fail = |code, message: String| BundleError::new(code, Some(line), Some(w.seq), message);
        check_cosignature(&c.log, &c.witness_key, w).map_err(|m| fail(ErrorCode::CosignatureInvalid, m))?;
        if !pinned.is_empty() && !pinned.contains(&c.witness_key.to_ascii_lowercase()) {
            let msg = format!("cosigned by witness {}, which is not among the pinned witnesses", c.witness_key);
            return Err(fail(ErrorCode::UntrustedKey, msg));
        }
        let Some((cov, hash)) = covers.get(&w.seq) else {
            let msg = format!("the cosigned checkpoint seq {} is not among the bundle's checkpoints", w.seq);
            return Err(fail(ErrorCode::CosignatureInvalid, msg));
        };
        let p = &cov.payload;
        let same = hash.to_hex() == w.event_hash.to_ascii_lowercase()
            && cov.to_seq == w.to_seq
            && p.to_hash.eq_ignore_ascii_case(&w.to_hash)
            && p.merkle_root.eq_ignore_ascii_case(&w.merkle_root)
            && p.state_root.eq_ignore_ascii_case(&w.state_root)
            && cov.public_key == c.log.to_ascii_lowercase();
        if !same {
            let msg = "the bundle's checkpoint at this seq is not the one the witness cosigned (hash, range, roots \
                       or log key differ)";
            return Err(fail(ErrorCode::CosignatureInvalid, msg.to_owned()));
        }
        anchored.insert(w.seq);
    }
    // A checkpoint exported as an event line is witnessed when the checkpoint covering it is; covering
    // checkpoints come later than what they cover, so one pass from the highest seq down settles every chain.
    for be in bundle.events.iter().rev() {
        if be.event.kind == EventKind::Checkpoint && anchored.contains(&be.checkpoint_seq) {
            anchored.insert(be.event.seq.0);
        }
    }
    let unwitnessed = bundle.events.iter().enumerate().find(|(_, be)| !anchored.contains(&be.checkpoint_seq));
    if let (false, Some((j, be))) = (pinned.is_empty(), unwitnessed) {
        let msg = format!(
            "no checkpoint the pinned witness cosigned covers this event (its checkpoint is seq {})",
            be.checkpoint_seq
        );
        return Err(BundleError::new(ErrorCode::NotWitnessed, Some(bundle.event_line(j)), Some(be.event.seq.0), msg));
    }
    let keys_from = match (bundle.cosignatures.is_empty(), pinned.is_empty()) {
        (true, true) => None,
        (_, false) => Some(KeySource::Pinned),
        (false, true) => Some(KeySource::Bundle),
    };
    Ok(Witnessing {
        keys_from,
        events: bundle.events.iter().filter(|be| anchored.contains(&be.checkpoint_seq)).count(),
    })
}
