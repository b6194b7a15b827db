//! Audit bundles: the selected events, the signed checkpoints covering them with Merkle proofs, and the keys to
//! check them with (format: docs/audit-bundle.md), and a witness's cosignature when one is given. `ice export`
//! writes one to a file; `GET /v1/export` returns it.

use std::path::Path;

use ice_core::bundle::{Bundle, BundleCosignature, BundleHeader, build_bundle, verify_bundle};
use ice_core::checkpoint::CheckpointPayload;
use ice_core::witness::WitnessState;
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

/// The checkpoint the witness state file at `path` cosigned for one of `logs` (hex keys), its cosignature checked —
/// against `witness_key` when given, else the key the state names. `WitnessStateInvalid` when the file is
/// unreadable, signed by another witness, or holds none of these logs.
pub fn read_witness(path: &Path, witness_key: Option<&str>, logs: &[String]) -> Result<BundleCosignature, Rejection> {
    let bad = |m: String| Rejection::new(ErrorCode::WitnessStateInvalid, m);
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let state = WitnessState::parse(&text)?;
    if let Some(k) = witness_key
        && !k.eq_ignore_ascii_case(&state.witness_key)
    {
        return Err(bad(format!("{} is signed by witness key {}, not {k}", path.display(), state.witness_key)));
    }
    for log in logs {
        if let Some(c) = state.verified(log)? {
            EventHash::from_hex(&c.event_hash)
                .map_err(|_| bad(format!("the event hash of seq {} is not a hash", c.seq)))?;
            return Ok(BundleCosignature {
                log: log.clone(),
                witness_key: state.witness_key.clone(),
                checkpoint: c.clone(),
            });
        }
    }
    Err(bad(format!("{} holds no checkpoint of this ledger's key", path.display())))
}

impl Runtime {
    /// Builds (and verifies, against `public_keys`) an audit bundle. Everything recorded so far is first covered by
    /// a signed checkpoint when this instance holds the ledger's key. Refusals (`NotFound` for an empty selection or
    /// events no checkpoint covers yet, `BadArgument` for a bad range) are not recorded: exporting changes nothing.
    ///
    /// With `witness` (from [`read_witness`]) the bundle carries that cosignature, and the checkpoints between the
    /// selected events and the cosigned one are exported as events too, so that each covering checkpoint chains
    /// to the witnessed one by inclusion proofs. `WitnessMismatch` if the ledger no longer holds the cosigned
    /// checkpoint unchanged; a cosigned checkpoint older than every selected event is left out (nothing it covers
    /// was selected), which the bundle's report shows as 0 events witnessed.
    pub fn export_bundle(
        &self,
        selection: ExportSelection,
        public_keys: Vec<String>,
        witness: Option<BundleCosignature>,
    ) -> Result<Bundle, RuntimeError> {
        self.checkpoint()?;
        let store = self.store().clone();
        let (mut selected, chosen) = match selection {
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
        let (lo, mut hi) = (first.seq.0, last.seq.0);
        let witness = match witness {
            Some(w) => self.witnessed_checkpoint(w, lo)?,
            None => None,
        };
        if let Some(w) = &witness {
            hi = hi.max(w.checkpoint.seq);
        }
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
        if let Some(w) = &witness {
            // The chain from the selected events' checkpoints up to the witnessed one: every checkpoint in between
            // (those inside the witnessed one's range), exported as an event proved by the checkpoint after it.
            let first_cover = checkpoints.iter().map(|(c, _)| c.seq.0).min().unwrap_or(w.checkpoint.seq);
            let links = checkpoints
                .iter()
                .map(|(c, _)| c)
                .filter(|c| (first_cover..=w.checkpoint.to_seq).contains(&c.seq.0))
                .filter(|c| selected.binary_search_by_key(&c.seq, |e| e.seq).is_err())
                .cloned()
                .collect::<Vec<_>>();
            selected.extend(links);
            selected.sort_by_key(|e| e.seq);
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
        let bundle = Bundle { cosignatures: witness.into_iter().collect(), ..bundle };
        verify_bundle(&bundle, &public_keys).map_err(|e| refused(e.code, e.to_string()))?;
        Ok(bundle)
    }

    /// `w` when this ledger holds its checkpoint exactly as cosigned and it covers events from `lo` on; `None`
    /// when it is older than `lo`.
    fn witnessed_checkpoint(&self, w: BundleCosignature, lo: u64) -> Result<Option<BundleCosignature>, RuntimeError> {
        let c = &w.checkpoint;
        let held = self.store().read(&EventQuery {
            after: Seq(c.seq.saturating_sub(1)),
            until: Some(Seq(c.seq)),
            limit: 1,
            ..EventQuery::default()
        })?;
        let same = held.first().is_some_and(|e| e.kind == EventKind::Checkpoint && e.hash.to_hex() == c.event_hash);
        if !same {
            return Err(refused(
                ErrorCode::WitnessMismatch,
                format!(
                    "the witness cosigned the checkpoint at seq {} with hash {}, which this ledger no longer holds \
                     (run `ice verify --witness STATE`)",
                    c.seq, c.event_hash
                ),
            ));
        }
        Ok((c.to_seq >= lo).then_some(w))
    }
}
