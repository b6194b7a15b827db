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
    let head_seq = recorded.map_or(Seq(0), |h| h.seq);
    let mut verifier = ChainVerifier::new();
    loop {
        let after = verifier.head().seq;
        // Stop at the head read above: events appended while verification runs are checked next time.
        // Without a recorded head, read everything: any event at all is then a finding.
        let query = EventQuery { after, until: recorded.map(|h| h.seq), limit: BATCH, ..EventQuery::default() };
        let batch = match store.read(&query) {
            Ok(b) => b,
            Err(StoreError::Corrupt { seq, detail }) => {
                return Ok(Err(VerifyFailure { seq, code: ErrorCode::HashMismatch, message: detail }));
            }
            Err(e) => return Err(e),
        };
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if let Err(f) = verifier.check(e) {
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
    let head_seq = recorded.map_or(Seq(0), |h| h.seq);
    let fail = |seq: Seq, code: ErrorCode, message: String| Ok(Err(VerifyFailure { seq, code, message }));
    let mut verifier = ChainVerifier::new();
    // The range the next checkpoint must cover starts here; hashes of events since then, in order.
    let mut range_from = 1u64;
    let mut range: Vec<[u8; 32]> = Vec::new();
    let mut checkpoints = 0u64;
    let mut anchor_seq = None;
    if options.from_checkpoint {
        let all = store.read(&EventQuery {
            kind: Some(EventKind::Checkpoint),
            limit: usize::MAX,
            ..EventQuery::default()
        })?;
        if let Some(anchor) = all.last() {
            let c = match checkpoint_payload(anchor) {
                Ok(c) => c,
                Err(f) => return Ok(Err(f)),
            };
            if let Err(f) = check_signature(anchor, &c, options) {
                return Ok(Err(f));
            }
            let Ok(hash) = ice_core::EventHash::from_hex(&c.to_hash) else {
                return fail(anchor.seq, ErrorCode::CheckpointInvalid, "checkpoint to_hash is not a hash".into());
            };
            verifier = ChainVerifier::starting_at(ice_core::ChainHead {
                seq: Seq(c.to_seq),
                hash,
                time: ice_core::Timestamp(i64::MIN),
            });
            range_from = c.to_seq + 1;
            checkpoints = 1;
            anchor_seq = Some(anchor.seq);
        }
    }
    let started_at = verifier.head().seq.0 + 1;
    loop {
        let after = verifier.head().seq;
        let query = EventQuery { after, until: recorded.map(|h| h.seq), limit: BATCH, ..EventQuery::default() };
        let batch = match store.read(&query) {
            Ok(b) => b,
            Err(StoreError::Corrupt { seq, detail }) => return fail(seq, ErrorCode::HashMismatch, detail),
            Err(e) => return Err(e),
        };
        if batch.is_empty() {
            break;
        }
        for e in &batch {
            if let Err(f) = verifier.check(e) {
                return Ok(Err(f));
            }
            if e.kind == EventKind::Checkpoint && anchor_seq != Some(e.seq) {
                let c = match checkpoint_payload(e) {
                    Ok(c) => c,
                    Err(f) => return Ok(Err(f)),
                };
                if let Err(f) = check_signature(e, &c, options) {
                    return Ok(Err(f));
                }
                let covered = c.to_seq.checked_sub(range_from).map(|n| n + 1);
                let Some(n) = covered
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| c.from_seq == range_from && *n <= range.len())
                else {
                    return fail(
                        e.seq,
                        ErrorCode::CheckpointInvalid,
                        format!(
                            "checkpoint covers {}..={}, but the next uncovered range starts at {range_from}",
                            c.from_seq, c.to_seq
                        ),
                    );
                };
                let root = ice_core::checkpoint::to_hex(&ice_core::merkle::merkle_root(&range[..n]));
                if root != c.merkle_root {
                    return fail(
                        e.seq,
                        ErrorCode::CheckpointInvalid,
                        format!(
                            "the Merkle root over seqs {}..={} is {root}, the checkpoint signed {}",
                            c.from_seq, c.to_seq, c.merkle_root
                        ),
                    );
                }
                if range.get(n - 1).map(|h| ice_core::checkpoint::to_hex(h)) != Some(c.to_hash.clone()) {
                    return fail(
                        e.seq,
                        ErrorCode::CheckpointInvalid,
                        format!("seq {}'s hash is not the signed to_hash", c.to_seq),
                    );
                }
                range.drain(..n);
                range_from = c.to_seq + 1;
                checkpoints += 1;
            }
            range.push(e.hash.0);
        }
        progress(VerifyProgress { checked: verifier.head().seq.0, head_seq });
    }
    let unsigned_tail = range.len() as u64;
    Ok(verifier.finish(recorded).map(|chain| SignedSummary { chain, checkpoints, started_at, unsigned_tail }))
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
