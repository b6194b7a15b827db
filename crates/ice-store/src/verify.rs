//! Whole-ledger chain verification over any [`Store`].

use ice_core::checkpoint::CheckpointPayload;
use ice_core::{ChainVerifier, ErrorCode, EventKind, Seq, VerifyFailure, VerifySummary};

use crate::{EventQuery, Store, StoreError};

/// Progress of a long verification, reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyProgress {
    /// Events checked so far.
    pub checked: u64,
    /// Seq of the recorded head (the expected end).
    pub head_seq: Seq,
}

const BATCH: usize = 10_000;

/// Walks the whole chain: gapless seqs, prev_hash links, recomputed hashes, monotonic time, and the chain's end
/// against the recorded head. The outer error is a store failure; the inner one the first bad seq.
pub fn verify_ledger(
    store: &dyn Store,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<Result<VerifySummary, VerifyFailure>, StoreError> {
    let recorded = store.head()?;
    walk(store, recorded, ChainVerifier::new(), progress, &mut |_| Ok(()))
}

/// Feeds every event from `verifier`'s head up to `recorded` (the head read when verification began: events
/// appended meanwhile are checked next time; without a recorded head everything is read, and any event at all is
/// then a finding) to the chain check and then to `also`, and finishes against `recorded`.
fn walk(
    store: &dyn Store,
    recorded: Option<ice_core::ChainHead>,
    mut verifier: ChainVerifier,
    progress: &mut dyn FnMut(VerifyProgress),
    also: &mut dyn FnMut(&ice_core::Event) -> Result<(), VerifyFailure>,
) -> Result<Result<VerifySummary, VerifyFailure>, StoreError> {
    let head_seq = recorded.map_or(Seq(0), |h| h.seq);
    loop {
        let after = verifier.head().seq;
        let query = EventQuery { after, until: recorded.map(|h| h.seq), limit: BATCH, ..EventQuery::default() };
        let batch = match store.read(&query) {
            Ok(b) => b,
            Err(StoreError::Corrupt { seq, detail }) => {
                return Ok(Err(VerifyFailure { seq, code: ErrorCode::LedgerCorrupt, message: detail }));
            }
            Err(e) => return Err(e),
        };
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if let Err(f) = verifier.check(e).and_then(|()| also(e)) {
                return Ok(Err(f));
            }
        }
        progress(VerifyProgress { checked: verifier.head().seq.0, head_seq });
    }
    Ok(verifier.finish(recorded))
}

/// What [`verify_ledger_signed`] checks besides the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Hex public keys whose checkpoint signatures are accepted. Empty: any key whose signature verifies (only
    /// integrity against accidents, not against someone who re-signs).
    pub trusted_keys: Vec<String>,
    /// Start from the latest checkpoint (its signed head is the anchor) instead of the first event.
    pub from_checkpoint: bool,
    /// A checkpoint a witness cosigned: it must still be in the ledger, unchanged, at or before the head.
    pub witnessed: Option<Witnessed>,
    /// Start from `witnessed` instead (a witness checking what was appended since it last looked).
    pub from_witnessed: bool,
}

/// A checkpoint a witness cosigned: its `Checkpoint` event's seq and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witnessed {
    /// Seq of the `Checkpoint` event.
    pub seq: Seq,
    /// Its hash.
    pub hash: ice_core::EventHash,
}

/// What a verification with checkpoints covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSummary {
    /// The chain part.
    pub chain: VerifySummary,
    /// Checkpoints whose signature, key, range and Merkle root were checked.
    pub checkpoints: u64,
    /// Seq where verification started (1, or just after the anchoring checkpoint's covered range).
    pub started_at: u64,
    /// Events after the last checkpoint's range (covered by the chain only, not yet by a signature).
    pub unsigned_tail: u64,
}

/// Verifies the chain (as [`verify_ledger`]) and every `Checkpoint` in it: signature, signer trusted, contiguous
/// covered range, `to_hash`, and the Merkle root over the covered hashes. With `from_checkpoint`, starts at the
/// latest checkpoint: its signature and key are checked and its signed `to_hash` anchors the chain check of
/// everything after it, so the cost is bounded by the events since that checkpoint.
pub fn verify_ledger_signed(
    store: &dyn Store,
    options: &VerifyOptions,
    progress: &mut dyn FnMut(VerifyProgress),
) -> Result<Result<SignedSummary, VerifyFailure>, StoreError> {
    let recorded = store.head()?;
    let mut verifier = ChainVerifier::new();
    let mut checker = Checkpoints { options, range_from: 1, range: Vec::new(), checked: 0, anchor: None };
    let mut anchor = None;
    if let Some(w) = options.witnessed {
        match witnessed_event(store, w, recorded)? {
            Ok(e) => anchor = options.from_witnessed.then_some(e),
            Err(f) => return Ok(Err(f)),
        }
    }
    if options.from_checkpoint && anchor.is_none() {
        let all = store.read(&EventQuery {
            kind: Some(EventKind::Checkpoint),
            limit: usize::MAX,
            ..EventQuery::default()
        })?;
        anchor = all.last().cloned();
    }
    if let Some(anchor) = &anchor {
        match checker.anchor_at(anchor) {
            Ok(head) => verifier = ChainVerifier::starting_at(head),
            Err(f) => return Ok(Err(f)),
        }
    }
    let started_at = verifier.head().seq.0 + 1;
    let chain = walk(store, recorded, verifier, progress, &mut |e| checker.event(e))?;
    let (checkpoints, unsigned_tail) = (checker.checked, checker.range.len() as u64);
    Ok(chain.map(|chain| SignedSummary { chain, checkpoints, started_at, unsigned_tail }))
}

/// The `Checkpoint` event a witness cosigned, if the ledger still holds it unchanged below its head.
fn witnessed_event(
    store: &dyn Store,
    w: Witnessed,
    recorded: Option<ice_core::ChainHead>,
) -> Result<Result<ice_core::Event, VerifyFailure>, StoreError> {
    let fail = |message: String| Err(VerifyFailure { seq: w.seq, code: ErrorCode::WitnessMismatch, message });
    let head = recorded.map_or(0, |h| h.seq.0);
    if head < w.seq.0 {
        return Ok(fail(format!(
            "a witness cosigned the checkpoint at seq {}, but the ledger's head is seq {head}: events were deleted",
            w.seq
        )));
    }
    let query = EventQuery { after: Seq(w.seq.0 - 1), until: Some(w.seq), limit: 1, ..EventQuery::default() };
    Ok(match store.read(&query)?.into_iter().next() {
        None => fail(format!("a witness cosigned the checkpoint at seq {}, which the ledger no longer holds", w.seq)),
        Some(e) if e.kind != EventKind::Checkpoint || e.hash != w.hash => fail(format!(
            "a witness cosigned checkpoint {} at seq {}; the ledger holds {} {} there: history was rewritten",
            w.hash, w.seq, e.kind, e.hash
        )),
        Some(e) => Ok(e),
    })
}

/// The checkpoint half of [`verify_ledger_signed`]: follows the ranges checkpoints must cover.
struct Checkpoints<'a> {
    options: &'a VerifyOptions,
    /// The first seq the next checkpoint must cover.
    range_from: u64,
    /// Hashes of the events since `range_from`, in order.
    range: Vec<[u8; 32]>,
    /// Checkpoints verified.
    checked: u64,
    /// The checkpoint verification started from, already checked.
    anchor: Option<Seq>,
}

impl Checkpoints<'_> {
    /// Checks the latest checkpoint as the starting point and returns the signed head it anchors.
    fn anchor_at(&mut self, anchor: &ice_core::Event) -> Result<ice_core::ChainHead, VerifyFailure> {
        let c = checkpoint_payload(anchor)?;
        check_signature(anchor, &c, self.options)?;
        let hash = ice_core::EventHash::from_hex(&c.to_hash).map_err(|_| VerifyFailure {
            seq: anchor.seq,
            code: ErrorCode::CheckpointInvalid,
            message: "checkpoint to_hash is not a hash".into(),
        })?;
        self.range_from = c.to_seq + 1;
        self.checked = 1;
        self.anchor = Some(anchor.seq);
        Ok(ice_core::ChainHead { seq: Seq(c.to_seq), hash, time: ice_core::Timestamp(i64::MIN) })
    }

    /// Checks one event (already chain-checked): a checkpoint against the range it must cover; then the event
    /// joins the range of the next checkpoint.
    fn event(&mut self, e: &ice_core::Event) -> Result<(), VerifyFailure> {
        if e.kind == EventKind::Checkpoint && self.anchor != Some(e.seq) {
            self.checkpoint(e)?;
        }
        self.range.push(e.hash.0);
        Ok(())
    }

    fn checkpoint(&mut self, e: &ice_core::Event) -> Result<(), VerifyFailure> {
        let fail = |message: String| VerifyFailure { seq: e.seq, code: ErrorCode::CheckpointInvalid, message };
        let c = checkpoint_payload(e)?;
        check_signature(e, &c, self.options)?;
        let covered = c.to_seq.checked_sub(self.range_from).map(|n| n + 1);
        let n = covered
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| c.from_seq == self.range_from && *n <= self.range.len())
            .ok_or_else(|| {
                fail(format!(
                    "checkpoint covers {}..={}, but the next uncovered range starts at {}",
                    c.from_seq, c.to_seq, self.range_from
                ))
            })?;
        let root = ice_core::checkpoint::to_hex(&ice_core::merkle::merkle_root(&self.range[..n]));
        if root != c.merkle_root {
            return Err(fail(format!(
                "the Merkle root over seqs {}..={} is {root}, the checkpoint signed {}",
                c.from_seq, c.to_seq, c.merkle_root
            )));
        }
        if self.range.get(n - 1).map(|h| ice_core::checkpoint::to_hex(h)) != Some(c.to_hash.clone()) {
            return Err(fail(format!("seq {}'s hash is not the signed to_hash", c.to_seq)));
        }
        self.range.drain(..n);
        self.range_from = c.to_seq + 1;
        self.checked += 1;
        Ok(())
    }
}

fn checkpoint_payload(e: &ice_core::Event) -> Result<CheckpointPayload, VerifyFailure> {
    serde_json::from_str(e.payload.as_str()).map_err(|err| VerifyFailure {
        seq: e.seq,
        code: ErrorCode::CheckpointInvalid,
        message: format!("checkpoint payload cannot be read: {err}"),
    })
}

fn check_signature(e: &ice_core::Event, c: &CheckpointPayload, options: &VerifyOptions) -> Result<(), VerifyFailure> {
    c.verify_signature().map_err(|r| VerifyFailure {
        seq: e.seq,
        code: ErrorCode::CheckpointInvalid,
        message: r.message,
    })?;
    if !options.trusted_keys.is_empty() && !options.trusted_keys.iter().any(|k| k.eq_ignore_ascii_case(&c.public_key)) {
        return Err(VerifyFailure {
            seq: e.seq,
            code: ErrorCode::UntrustedKey,
            message: format!("checkpoint signed by {}, which is not a trusted key", c.public_key),
        });
    }
    Ok(())
}

/// A chain that verifies is not enough when most of it is signed by nothing: truncating or rewriting an unsigned
/// tail leaves no trace. Refuses a non-empty ledger without any signed checkpoint (`NoCheckpoint`) and an unsigned
/// tail longer than `tail_bound` (`UnsignedTail`; 0: no bound). What `ice verify` and `GET /v1/verify` both apply.
pub fn check_signed_coverage(s: SignedSummary, tail_bound: u64) -> Result<SignedSummary, VerifyFailure> {
    if s.checkpoints == 0 && s.chain.events > 0 {
        Err(VerifyFailure {
            seq: Seq(1),
            code: ErrorCode::NoCheckpoint,
            message: format!("{} event(s) and not one signed checkpoint", s.chain.events),
        })
    } else if tail_bound > 0 && s.unsigned_tail > tail_bound {
        Err(VerifyFailure {
            seq: Seq(s.chain.head.seq.0.saturating_sub(s.unsigned_tail) + 1),
            code: ErrorCode::UnsignedTail,
            message: format!(
                "{} event(s) follow the last signed checkpoint ({} checkpoint(s) in all); the bound is {tail_bound} \
                 ([runtime] max_unsigned_tail)",
                s.unsigned_tail, s.checkpoints
            ),
        })
    } else {
        Ok(s)
    }
}
