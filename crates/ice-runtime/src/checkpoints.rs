//! Signed checkpoints and state snapshots.
//!
//! Every `every_events` events or `every_secs` seconds (checked after each append), the runtime appends a
//! `Checkpoint` covering the events since the previous one: the last covered hash, the Merkle root over the
//! covered hashes and the root of the governed state, signed with the runtime's ed25519 key. Only the instance
//! holding the ledger's key (the one recorded in `LedgerInitialized`) signs checkpoints; other instances on a
//! shared ledger leave it to that one. With each checkpoint a snapshot of the derived state is written next to the
//! ledger (`.ice/snapshots/`, the newest few kept) so that opening the runtime folds only the events after it.

use std::path::{Path, PathBuf};

use ice_core::checkpoint::{CheckpointPayload, to_hex};
use ice_core::hashed::Adoptions;
use ice_core::merkle::merkle_root;
use ice_core::{Event, EventKind, LedgerState, Principal, Rejection, Seq};
use ice_store::EventQuery;

use crate::runtime::{Runtime, RuntimeError};

/// When checkpoints are taken.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// What signs (the runtime's key, wherever it lives: see [`crate::signer`]).
    pub key: crate::signer::CheckpointSigner,
    /// Checkpoint after this many events since the last one (0: never by count).
    pub every_events: u64,
    /// Checkpoint when this many seconds passed since the last one and there are new events (0: never by time).
    pub every_secs: u64,
    /// Where snapshots go (none: no snapshots).
    pub snapshot_dir: Option<PathBuf>,
    /// How many snapshots to keep.
    pub keep_snapshots: usize,
}

/// Events read per query when hashing a checkpoint's range.
const RANGE_BATCH: usize = 50_000;

impl Runtime {
    /// The hashes of events `from..=to`, in seq order, read from the store.
    pub fn range_hashes(&self, from: u64, to: u64) -> Result<Vec<[u8; 32]>, RuntimeError> {
        let mut out = Vec::with_capacity(usize::try_from(to.saturating_sub(from) + 1).unwrap_or(0));
        let mut after = Seq(from.saturating_sub(1));
        while after.0 < to {
            let batch = self.store().read(&EventQuery {
                after,
                until: Some(Seq(to)),
                limit: RANGE_BATCH,
                ..EventQuery::default()
            })?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            out.extend(batch.iter().map(|e| e.hash.0));
        }
        Ok(out)
    }

    /// Whether this instance signs checkpoints: it has a key and it is the ledger's.
    fn checkpoint_key(&self, st: &LedgerState) -> Option<&CheckpointPolicy> {
        let policy = self.checkpoint_policy()?;
        let public = policy.key.public_hex();
        (st.ledger_key() == Some(public.as_str())).then_some(policy)
    }

    /// Appends a checkpoint now if there is anything uncovered (`None` when there is not, or this instance does not
    /// hold the ledger's key).
    ///
    /// The checkpoint covers the durable events (`from..=to`, hashed outside the state lock, so deciding goes on
    /// meanwhile) and signs the state root of the state it is appended onto: the decided state, including bundles
    /// still in flight ahead of it, which is exactly the state replay folds up to the checkpoint event.
    ///
    /// Asked for explicitly (`ice checkpoint`, a server's final checkpoint), its snapshot is written whatever the
    /// rationing of periodic ones (see [`Runtime::checkpoint_if_due`]).
    pub fn checkpoint(&self) -> Result<Option<Event>, RuntimeError> {
        self.checkpoint_then_snapshot(true)
    }

    fn checkpoint_then_snapshot(&self, always: bool) -> Result<Option<Event>, RuntimeError> {
        let range = self.with_state(|st| {
            let from = st.last_checkpoint().map_or(1, |m| m.to_seq + 1);
            let due = self.checkpoint_key(st).is_some() && st.last_seq().0 >= from;
            due.then(|| (from, st.last_seq().0))
        })?;
        let Some((from, to)) = range else { return Ok(None) };
        // The pipeline holds the hashes of what it folded since the last checkpoint; the store has the rest.
        let hashes = match self.held_hashes(from, to) {
            Some(held) => held,
            None => self.range_hashes(from, to)?,
        };
        if hashes.len() as u64 != to - from + 1 {
            return Err(RuntimeError::Corrupt {
                seq: from,
                message: format!("the checkpoint range {from}..={to} has gaps"),
            });
        }
        // A refusal here means another instance covered the range first: the runtime's own housekeeping lost a
        // race, nobody submitted anything, so it is not recorded (instances sharing a ledger would otherwise
        // append a rejection for every checkpoint they did not win).
        let merkle = to_hex(&merkle_root(&hashes));
        let events = self.commit_or(
            &|st: &LedgerState| self.checkpoint_draft(st, from, &hashes, &merkle).map(|d| vec![d]),
            &|rejection, _| RuntimeError::Rejected { rejection, record: None },
            &|| None,
        )?;
        let event = events.into_iter().next();
        if event.is_some() {
            self.write_snapshot(always);
        }
        Ok(event)
    }

    /// The checkpoint over the durable events `from..` whose hashes are `hashes` (with `merkle`, their Merkle root
    /// in hex, computed before the state lock: ~1.6 ms for 2,000 events), signing `st`'s state root.
    fn checkpoint_draft(
        &self,
        st: &LedgerState,
        from: u64,
        hashes: &[[u8; 32]],
        merkle: &str,
    ) -> Result<ice_core::Draft, Rejection> {
        let policy = self.checkpoint_key(st).ok_or_else(|| {
            Rejection::new(ice_core::ErrorCode::BadConfig, "this instance does not hold the ledger's checkpoint key")
        })?;
        if st.last_checkpoint().map_or(1, |m| m.to_seq + 1) != from {
            return Err(Rejection::new(
                ice_core::ErrorCode::HeadConflict,
                "another checkpoint covered this range first",
            ));
        }
        let (Some(last), Some(count)) = (hashes.last(), u64::try_from(hashes.len()).ok().filter(|n| *n > 0)) else {
            return Err(Rejection::new(ice_core::ErrorCode::SequenceGap, "the checkpoint range is empty"));
        };
        let to = from + count - 1;
        if to > st.last_seq().0 {
            return Err(Rejection::new(ice_core::ErrorCode::SequenceGap, "the checkpoint range has gaps"));
        }
        let mut payload = CheckpointPayload {
            from_seq: from,
            to_seq: to,
            to_hash: to_hex(last),
            merkle_root: merkle.to_owned(),
            state_root: st.state_root()?,
            public_key: policy.key.public_hex(),
            signature: String::new(),
        };
        let signature = policy.key.sign(&payload.signing_message()).map_err(|e| {
            Rejection::new(ice_core::ErrorCode::BadConfig, format!("the checkpoint could not be signed: {e}"))
        })?;
        payload.signature = to_hex(&signature);
        self.internal(EventKind::Checkpoint, Principal::runtime(), None, &payload)
    }

    /// Checkpoints when one is due by count or time, from the committing caller's thread unless the runtime was
    /// told to leave that to a housekeeping task ([`Runtime::set_inline_checkpoints`]). Failures are not the
    /// caller's: the next append tries again.
    pub(crate) fn maybe_checkpoint(&self) {
        if self.inline_checkpoints() {
            self.sign_due_checkpoint();
        }
    }

    /// [`Runtime::checkpoint_if_due`] for a caller with nowhere to report failure (a committing caller, a
    /// benchmark's housekeeping thread): a failure other than losing the race to another instance is a warning on
    /// stderr, and the next try may succeed.
    pub fn sign_due_checkpoint(&self) {
        // A refusal means another instance checkpointed first; anything else is worth a warning.
        if let Err(e) = self.checkpoint_if_due()
            && !matches!(e, RuntimeError::Rejected { .. })
        {
            eprintln!("warning: checkpoint not written: {e}");
        }
    }

    /// Signs a checkpoint if one is due by count (`every_events` uncovered) or time (`every_secs` since the last),
    /// and no other thread of this runtime is signing one. For a long-lived server's housekeeping task.
    pub fn checkpoint_if_due(&self) -> Result<Option<Event>, RuntimeError> {
        let Some(policy) = self.checkpoint_policy() else { return Ok(None) };
        let now = self.now();
        let due = self.with_state_cached(|st| {
            let (covered, since) = st.last_checkpoint().map_or((0, None), |m| (m.to_seq, Some(m.time)));
            let pending = st.last_seq().0.saturating_sub(covered);
            // The checkpoint event itself is one uncovered event: it alone never makes one due.
            let by_count = policy.every_events > 0 && pending >= policy.every_events;
            let by_time = policy.every_secs > 0
                && pending > 1
                && since
                    .is_some_and(|t| now.0 - t.0 >= i64::try_from(policy.every_secs).unwrap_or(i64::MAX) * 1_000_000);
            by_count || by_time
        });
        if !due || !self.try_enter_checkpoint() {
            return Ok(None);
        }
        self.predigest();
        let signed = self.checkpoint_then_snapshot(false);
        self.leave_checkpoint();
        signed
    }

    /// Hashes the state entries changed since the last checkpoint outside the state lock, on an O(1) copy of the
    /// state, and has the state adopt the hashes of the entries it has not changed since (see
    /// `LedgerState::hash_changed`); again for what changed meanwhile, until little is left, so that the checkpoint
    /// which follows hashes only a few entries under the lock (and so holds up every decision only briefly).
    ///
    /// Hashing a checkpoint interval's changes under the lock took ~7 ms at once, the p99 of every request near it;
    /// in slices of 100 entries it still held the lock ~22 ms per checkpoint at 64 agents, 15% of the lock's time
    /// (`ice bench propose`, BENCHMARKS.md).
    fn predigest(&self) {
        /// Few enough changed entries for the checkpoint to hash under the lock (~5 µs each).
        const FEW: usize = 64;
        // Bounded: under sustained load entries keep changing; the checkpoint hashes whatever is left.
        for _ in 0..8 {
            let (spec, committed) = self.lock().to_predigest();
            let (Ok(spec), Ok(committed)) = (spec.hash_changed(), committed.map(|c| c.hash_changed()).transpose())
            else {
                return;
            };
            self.lock().adopt(&spec, committed.as_ref());
            if spec.hashed() + committed.as_ref().map_or(0, Adoptions::hashed) <= FEW {
                return;
            }
        }
    }

    /// Writes the state right after the latest checkpoint (kept by the pipeline, however many events landed since:
    /// a copy is O(1)) as that checkpoint's snapshot, outside the state lock, and prunes old ones. Best effort: a
    /// missing snapshot only means a longer fold at the next start. Periodic snapshots are rationed by how much is
    /// live (see `pipeline::CAPTURE_RATIO`); `always` writes one regardless.
    fn write_snapshot(&self, always: bool) {
        let Some(dir) = self.checkpoint_policy().and_then(|p| p.snapshot_dir.clone()) else { return };
        let keep = self.checkpoint_policy().map_or(2, |p| p.keep_snapshots.max(1));
        let Some(state) = self.take_checkpoint_state() else { return };
        let seq = state.last_seq();
        // Only a snapshot at or before this checkpoint can be the last one written: a file named for a later seq
        // (put there by hand, or left by a ledger that was replaced) must not hold back every snapshot after it.
        let newest =
            snapshot_files(&dir).iter().filter_map(|p| snapshot_seq(p)).filter(|s| *s <= seq.0).max().unwrap_or(0);
        if !always
            && seq.0.saturating_sub(newest).saturating_mul(crate::pipeline::CAPTURE_RATIO) < state.live_records() as u64
        {
            return;
        }
        let Ok(text) = state.to_snapshot() else { return };
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let path = dir.join(format!("{:020}.json", seq.0));
        let tmp = dir.join(format!(".{:020}.tmp", seq.0));
        if std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).is_err() {
            return;
        }
        let mut all = snapshot_files(&dir);
        all.sort();
        let excess = all.len().saturating_sub(keep);
        for old in all.into_iter().take(excess) {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// The seq a snapshot file is named for (`<seq>.json`).
fn snapshot_seq(path: &Path) -> Option<u64> {
    path.file_stem()?.to_str()?.parse().ok()
}

/// Snapshot files in a directory (`<seq>.json`).
pub(crate) fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect()
        })
        .unwrap_or_default()
}
