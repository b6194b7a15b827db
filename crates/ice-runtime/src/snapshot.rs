//! Loading state snapshots: a snapshot is a cache of the fold, trusted only after it is proven against the ledger.
//!
//! A snapshot `<seq>.json` in `.ice/snapshots/` is the derived state right after the `Checkpoint` event at `seq`.
//! It is used only if that event is in the ledger with the snapshot's head hash, and the snapshot's governed state
//! root equals the root the (signed) checkpoint recorded; otherwise it is ignored and the fold starts earlier.

use std::path::Path;

use ice_core::checkpoint::CheckpointPayload;
use ice_core::{EventKind, LedgerState, Seq};
use ice_store::{EventQuery, Store};

use crate::checkpoints::snapshot_files;

/// The newest snapshot in `dir` that matches the ledger, if any.
pub fn latest_valid(store: &dyn Store, dir: &Path) -> Option<LedgerState> {
    let mut files = snapshot_files(dir);
    files.sort();
    files.into_iter().rev().find_map(|path| {
        let text = std::fs::read_to_string(&path).ok()?;
        let state = LedgerState::from_snapshot(&text).ok()?;
        proven(store, &state).then_some(state)
    })
}

/// Whether a snapshot's state matches the checkpoint event it claims to follow.
fn proven(store: &dyn Store, state: &LedgerState) -> bool {
    let (Some(head), Some(mark)) = (state.head(), state.last_checkpoint()) else { return false };
    if mark.seq != head.seq {
        return false;
    }
    let query = EventQuery {
        after: Seq(head.seq.0.saturating_sub(1)),
        until: Some(head.seq),
        limit: 1,
        ..EventQuery::default()
    };
    let Ok(events) = store.read(&query) else { return false };
    let Some(event) = events.first() else { return false };
    if event.kind != EventKind::Checkpoint || event.hash != head.hash {
        return false;
    }
    let Ok(payload) = serde_json::from_str::<CheckpointPayload>(event.payload.as_str()) else { return false };
    state.state_root().is_ok_and(|root| root == payload.state_root)
}
