//! Whole-ledger chain verification over any [`Store`].

use ice_core::{ChainVerifier, ErrorCode, Seq, VerifyFailure, VerifySummary};

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
