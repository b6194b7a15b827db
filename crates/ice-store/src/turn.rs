//! Turn-taking between writers of one ledger (several `ice` processes on one SQLite file or one PostgreSQL
//! database).
//!
//! Appends with [`crate::AppendRequest::unchanged_since`] are optimistic: a writer decides on state folded up to
//! some seq and the append fails if another writer changed state after it. On its own that is not fair. A writer
//! that appends flight after flight back to back never conflicts, while the other one, after each conflict, must
//! first fold what the winner wrote and decide again, by which time the winner has appended once more: measured
//! with two processes of 16 agents each on one SQLite file, the loser decided 6 proposals in 5 s and the winner
//! 25,000. (Backing off does not help: the winner never waits, so the loser's next attempt is stale on arrival
//! however long it waited.)
//!
//! So a writer whose conditional append conflicts *claims the turn* in the same transaction. While another
//! writer's turn runs, a writer defers its conditional appends (the store looks again every [`TURN_POLL`], without
//! taking its write lock). A turn runs in two phases: first until its holder's next conditional append commits
//! (the holder is catching up with what it missed and deciding again; bounded by [`TURN_CATCH_UP`] in case it
//! crashed or went quiet), then for a time slice ([`TURN_SLICE`]) from that commit. The claimant's next attempt
//! therefore meets no newer state-changing event, and contending writers alternate slice by slice instead of one
//! of them starving. Unconditional appends (agents' notes, refusal records) do not wait for turns: they change no
//! state a claimant decided on. (One that shares a group-commit batch with a conditional append waits with it.)
//! A writer whose store closes while its turn runs ends the turn (the embedded store always; PostgreSQL as far as
//! its shutdown lets it), so a CLI command that conflicted and exited holds nobody off.
//!
//! Why the catch-up phase: a turn that only lasted a fixed time from the claim ran out while the claimant was
//! still folding what the other writer had appended (on a grown ledger, two processes × 16 agents on PostgreSQL:
//! 1,359 decisions/s against 0.6/s). Why a slice rather than one append per turn: every hand-over costs the
//! writer taking over a conflict (its decisions were made before the other's slice and are made again) and a
//! rebuild of its speculative state; handing over after every append cost more than the appends (two processes
//! × 16 agents on SQLite: 1,200–1,800 decisions/s in all, against 3,200–3,300/s with 50 ms slices; one process
//! alone ~7,000/s). The price is latency for a writer waiting out another's turn, and the slice's length sets it
//! while barely moving throughput (two processes × 16 agents on one SQLite file, two runs each: 10 ms slices
//! 3,129–3,304 decisions/s, p99 70–92 ms; 25 ms 3,509–3,543/s, p99 73–77 ms; 50 ms 3,476–4,011/s, p99 98–128 ms;
//! 100 ms 3,574–3,904/s, p99 152–154 ms).
//!
//! The turn is coordination, not ledger content: it lives beside the events (table `writer_turn`), is not hashed,
//! and a lost or stale turn costs fairness for a while, never correctness. Wall-clock time bounds it: the embedded
//! store compares the clocks of processes on one machine, PostgreSQL its server's clock.

use std::time::Duration;

/// The longest a claimed turn holds off other writers before its holder's next conditional append commits.
pub const TURN_CATCH_UP: Duration = Duration::from_millis(500);

/// How long a turn runs once its holder's first conditional append after the claim committed.
pub const TURN_SLICE: Duration = Duration::from_millis(25);

/// How often a writer waiting for another's turn looks again.
pub const TURN_POLL: Duration = Duration::from_micros(250);

/// The longest a writer defers to turns, in all, for one batch (one whole turn, catch-up and slice, and some):
/// past this it appends regardless, and may conflict as it would without turns.
pub const TURN_PATIENCE: Duration = Duration::from_millis(1_000);

/// [`Duration`] in whole milliseconds, as the stores record them.
pub fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A writer's identity for turn-taking: random per open store handle (a process restarted is a new writer).
pub fn new_writer_id() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    // Reinterpreted as the signed integer both databases store natively.
    i64::from_ne_bytes(h.finish().to_ne_bytes())
}

/// Whose turn it is, as seen by one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Nobody's turn runs.
    Free,
    /// This writer claimed the turn last; `left_ms` of it remain (negative once it ran out).
    Mine {
        /// Milliseconds until it ends.
        left_ms: i64,
    },
    /// Another writer's turn runs.
    Theirs,
}

impl Turn {
    /// Classifies a recorded turn (its holder, and how many milliseconds of it remain) for writer `me`.
    pub fn of(recorded: Option<(i64, i64)>, me: i64) -> Self {
        match recorded {
            Some((holder, left_ms)) if holder == me => Self::Mine { left_ms },
            Some((_, left_ms)) if left_ms > 0 => Self::Theirs,
            _ => Self::Free,
        }
    }

    /// Whether a batch that saw this turn inside its transaction claims it (or claims it again) before
    /// committing: when one of its conditional appends conflicted, unless another writer's turn runs (the batch
    /// went ahead only because its patience ran out).
    pub fn claimed_by_conflict(self, conflicted: bool) -> bool {
        conflicted && self != Self::Theirs
    }

    /// Whether a batch that did not conflict ends its turn's catch-up phase: it holds a turn still catching up
    /// (more than a slice left) and one of its conditional appends committed. The turn then runs one slice more.
    pub fn slice_starts(self, committed_conditional: bool) -> bool {
        matches!(self, Self::Mine { left_ms } if committed_conditional && left_ms > millis(TURN_SLICE))
    }

    /// For how long, from now, a batch that saw this turn records itself as the holder before committing: a claim
    /// ([`TURN_CATCH_UP`]) when it conflicted, the slice ([`TURN_SLICE`]) when it ends its catch-up, else nothing.
    pub fn hold_after(self, conflicted: bool, committed_conditional: bool) -> Option<Duration> {
        if self.claimed_by_conflict(conflicted) {
            Some(TURN_CATCH_UP)
        } else if self.slice_starts(committed_conditional) {
            Some(TURN_SLICE)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_theirs_only_while_another_writers_turn_runs() {
        assert_eq!(Turn::of(None, 7), Turn::Free);
        assert_eq!(Turn::of(Some((7, 30)), 7), Turn::Mine { left_ms: 30 });
        assert_eq!(Turn::of(Some((7, -5)), 7), Turn::Mine { left_ms: -5 });
        assert_eq!(Turn::of(Some((8, 30)), 7), Turn::Theirs);
        assert_eq!(Turn::of(Some((8, 0)), 7), Turn::Free);
    }

    #[test]
    fn a_conflict_claims_the_turn_unless_another_writers_turn_runs() {
        assert!(Turn::Free.claimed_by_conflict(true));
        assert!(Turn::Mine { left_ms: -1 }.claimed_by_conflict(true));
        assert!(!Turn::Theirs.claimed_by_conflict(true));
        assert!(!Turn::Free.claimed_by_conflict(false));
        assert!(!Turn::Mine { left_ms: 400 }.claimed_by_conflict(false));
    }

    #[test]
    fn the_holders_first_commit_after_catching_up_starts_its_slice() {
        let catching_up = Turn::Mine { left_ms: millis(TURN_CATCH_UP) - 3 };
        assert!(catching_up.slice_starts(true));
        assert!(!catching_up.slice_starts(false), "only a conditional append that committed ends catching up");
        assert!(!Turn::Mine { left_ms: millis(TURN_SLICE) - 1 }.slice_starts(true), "already in its slice");
        assert!(!Turn::Free.slice_starts(true));
        assert!(!Turn::Theirs.slice_starts(true));
    }

    #[test]
    fn a_batch_holds_the_turn_for_a_claim_or_a_slice() {
        assert_eq!(Turn::Free.hold_after(true, false), Some(TURN_CATCH_UP));
        assert_eq!(Turn::Mine { left_ms: millis(TURN_CATCH_UP) }.hold_after(false, true), Some(TURN_SLICE));
        assert_eq!(Turn::Mine { left_ms: 1 }.hold_after(false, true), None, "already in its slice");
        assert_eq!(Turn::Theirs.hold_after(true, true), None);
        assert_eq!(Turn::Free.hold_after(false, true), None);
    }

    #[test]
    fn writer_ids_differ() {
        assert_ne!(new_writer_id(), new_writer_id());
    }
}
