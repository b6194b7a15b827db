//! Audit bundles: the selected events, the signed checkpoints covering them with Merkle proofs, and the keys to
//! check them with (format: docs/audit-bundle.md). `ice export` writes one to a file; `GET /v1/export` returns it.

use ice_core::bundle::{Bundle, BundleHeader, build_bundle, verify_bundle};
use ice_core::checkpoint::CheckpointPayload;
use ice_core::{ErrorCode, EventHash, EventKind, Rejection, RunId, Seq};
use ice_store::EventQuery;
use serde_json::json;

use crate::runtime::{Runtime, RuntimeError};

/// Which events a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportSelection {
    /// One run's events.
    Run(RunId),
    /// A seq range, inclusive.
    Range(u64, u64),
}

fn refused(code: ErrorCode, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Rejected { rejection: Rejection::new(code, message), record: None }
}

impl Runtime {
    /// Builds (and verifies, against `public_keys`) an audit bundle. Everything recorded so far is first covered by
    /// a signed checkpoint when this instance holds the ledger's key. Refusals (`NotFound` for an empty selection or
    /// events no checkpoint covers yet, `BadArgument` for a bad range) are not recorded: exporting changes nothing.
    pub fn export_bundle(&self, selection: ExportSelection, public_keys: Vec<String>) -> Result<Bundle, RuntimeError> {
        self.checkpoint()?;
        let store = self.store().clone();
        let (selected, chosen) = match selection {
            ExportSelection::Run(id) => {
                let q = EventQuery { run: Some(id), limit: usize::MAX, ..EventQuery::default() };
                (store.read(&q)?, json!({"run": id.to_string()}))
            }
            ExportSelection::Range(a, b) => {
                if a == 0 || a > b {
                    return Err(refused(
                        ErrorCode::BadArgument,
                        format!("range {a}..{b} is not A..B with 1 <= A <= B"),
                    ));
                }
                let q =
                    EventQuery { after: Seq(a - 1), until: Some(Seq(b)), limit: usize::MAX, ..EventQuery::default() };
                (store.read(&q)?, json!({"from_seq": a, "to_seq": b}))
            }
        };
        let (Some(first), Some(last)) = (selected.first(), selected.last()) else {
            return Err(refused(ErrorCode::NotFound, "no events match the selection"));
        };
        let (lo, hi) = (first.seq.0, last.seq.0);
        let all_checkpoints = store.read(&EventQuery {
            kind: Some(EventKind::Checkpoint),
            limit: usize::MAX,
            ..EventQuery::default()
        })?;
        let mut checkpoints = Vec::new();
        for c in all_checkpoints {
            let p: CheckpointPayload = serde_json::from_str(c.payload.as_str())
                .map_err(|e| refused(ErrorCode::CheckpointInvalid, format!("checkpoint at seq {}: {e}", c.seq)))?;
            if p.to_seq < lo || p.from_seq > hi {
                continue;
            }
            let hashes = self.range_hashes(p.from_seq, p.to_seq)?.into_iter().map(EventHash).collect();
            checkpoints.push((c, hashes));
        }
        let header = BundleHeader { created_at: self.now(), selection: chosen, public_keys: public_keys.clone() };
        let bundle = build_bundle(header, &selected, &checkpoints).map_err(|e| {
            let hint = if e.code == ErrorCode::NotFound {
                " (events after the last checkpoint are not signed yet; export on the instance that holds the \
                 ledger's key)"
            } else {
                ""
            };
            refused(e.code, format!("{e}{hint}"))
        })?;
        verify_bundle(&bundle, &public_keys).map_err(|e| refused(e.code, e.to_string()))?;
        Ok(bundle)
    }
}
