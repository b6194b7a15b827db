//! The hash chain: sealing drafts onto a head (validation steps 4–5: monotonic time, causal parents) and
//! verifying a stored chain.
//!
//! Every store backend seals with [`seal_job`] under its write lock, so sealing rules are identical everywhere.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};
use crate::event::{Draft, Event, TimeSource, envelope_hash};
use crate::ids::{EventHash, EventId, Seq, Timestamp};

/// Where a ledger's chain currently ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the last event (0 for an empty ledger).
    pub seq: Seq,
    /// Hash of the last event ([`EventHash::GENESIS`] for an empty ledger).
    pub hash: EventHash,
    /// Time of the last event.
    pub time: Timestamp,
}

impl ChainHead {
    /// The head of an empty ledger.
    pub fn genesis() -> Self {
        Self { seq: Seq(0), hash: EventHash::GENESIS, time: Timestamp(i64::MIN) }
    }

    /// The head after `event`.
    pub fn after(event: &Event) -> Self {
        Self { seq: event.seq, hash: event.hash, time: event.time }
    }
}

/// Seals one job (drafts that commit together) onto `head`, returning the sealed events.
///
/// `known(id)` must say whether an event id is already in the ledger (committed, or sealed earlier in the same
/// store batch). The job is all-or-nothing: on the first refusal nothing is returned but the index of the
/// refused draft and why.
pub fn seal_job(
    head: &ChainHead,
    drafts: &[Draft],
    known: &mut dyn FnMut(&EventId) -> bool,
) -> Result<Vec<Event>, (usize, Rejection)> {
    let mut out: Vec<Event> = Vec::with_capacity(drafts.len());
    let mut in_job: HashSet<EventId> = HashSet::new();
    let mut cur = *head;
    for (i, d) in drafts.iter().enumerate() {
        if in_job.contains(&d.event_id) || known(&d.event_id) {
            return Err((
                i,
                Rejection::new(
                    ErrorCode::BadEnvelopeField,
                    format!("event id {} is already in the ledger", d.event_id),
                ),
            ));
        }
        for c in &d.causes {
            if !in_job.contains(c) && !known(c) {
                return Err((
                    i,
                    Rejection::new(ErrorCode::UnknownCause, format!("causal parent {c} is not in the ledger")),
                ));
            }
        }
        let time = match d.time_source {
            TimeSource::Clock => d.time.max(cur.time),
            TimeSource::Declared if d.time < cur.time => {
                return Err((
                    i,
                    Rejection::new(
                        ErrorCode::TimeWentBackwards,
                        format!(
                            "declared time {} is earlier than the ledger head's time {}",
                            d.time.to_rfc3339(),
                            cur.time.to_rfc3339()
                        ),
                    ),
                ));
            }
            TimeSource::Declared => d.time,
        };
        let seq = cur.seq.next();
        let hash = envelope_hash(
            seq,
            d.event_id,
            d.run_id,
            d.kind,
            &d.origin,
            d.acted_by.as_ref(),
            time,
            &d.causes,
            &d.payload,
            &cur.hash,
        );
        let event = Event {
            seq,
            event_id: d.event_id,
            run_id: d.run_id,
            kind: d.kind,
            origin: d.origin.clone(),
            acted_by: d.acted_by.clone(),
            time,
            causes: d.causes.clone(),
            payload: d.payload.clone(),
            prev_hash: cur.hash,
            hash,
        };
        cur = ChainHead::after(&event);
        in_job.insert(d.event_id);
        out.push(event);
    }
    Ok(out)
}

/// The first problem found while verifying a chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code} at seq {seq}: {message}")]
pub struct VerifyFailure {
    /// The first bad sequence number.
    pub seq: Seq,
    /// What kind of problem (hash mismatch, broken link, gap, time regression, head mismatch).
    pub code: ErrorCode,
    /// What exactly is wrong.
    pub message: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySummary {
    /// Number of events checked.
    pub events: u64,
    /// The head the chain ends at.
    pub head: ChainHead,
}

/// Incremental chain verifier: feed events in seq order, then [`ChainVerifier::finish`].
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    cur: ChainHead,
    events: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier starting at an empty ledger.
    pub fn new() -> Self {
        Self { cur: ChainHead::genesis(), events: 0 }
    }

    /// A verifier starting after a trusted head (e.g. a verified checkpoint).
    pub fn starting_at(head: ChainHead) -> Self {
        Self { cur: head, events: 0 }
    }

    /// Checks the next event.
    pub fn check(&mut self, e: &Event) -> Result<(), VerifyFailure> {
        let expected = self.cur.seq.next();
        if e.seq != expected {
            return Err(VerifyFailure {
                seq: expected,
                code: ErrorCode::SequenceGap,
                message: format!("seq {expected} is missing: the next stored event has seq {}", e.seq),
            });
        }
        if e.prev_hash != self.cur.hash {
            return Err(VerifyFailure {
                seq: e.seq,
                code: ErrorCode::BrokenLink,
                message: format!(
                    "prev_hash {} does not match the previous event's hash {}",
                    e.prev_hash, self.cur.hash
                ),
            });
        }
        let computed = e.compute_hash();
        if computed != e.hash {
            return Err(VerifyFailure {
                seq: e.seq,
                code: ErrorCode::HashMismatch,
                message: format!("stored hash {} but the envelope hashes to {computed}", e.hash),
            });
        }
        if e.time < self.cur.time {
            return Err(VerifyFailure {
                seq: e.seq,
                code: ErrorCode::TimeRegression,
                message: format!("time {} is earlier than the previous event's {}", e.time, self.cur.time),
            });
        }
        self.cur = ChainHead::after(e);
        self.events += 1;
        Ok(())
    }

    /// Where the verified chain currently ends.
    pub fn head(&self) -> ChainHead {
        self.cur
    }

    /// Finishes, comparing the end of the chain with the head the store recorded (catches tail truncation).
    pub fn finish(self, recorded: Option<ChainHead>) -> Result<VerifySummary, VerifyFailure> {
        if let Some(rec) = recorded {
            if rec.seq > self.cur.seq {
                return Err(VerifyFailure {
                    seq: self.cur.seq.next(),
                    code: ErrorCode::HeadMismatch,
                    message: format!(
                        "the recorded head is seq {} but the chain ends at seq {}: events {}..={} are missing",
                        rec.seq,
                        self.cur.seq,
                        self.cur.seq.next(),
                        rec.seq
                    ),
                });
            }
            if rec.seq < self.cur.seq || rec.hash != self.cur.hash {
                return Err(VerifyFailure {
                    seq: rec.seq.max(Seq(1)),
                    code: ErrorCode::HeadMismatch,
                    message: format!(
                        "the recorded head (seq {}, hash {}) does not match the chain's end (seq {}, hash {})",
                        rec.seq, rec.hash, self.cur.seq, self.cur.hash
                    ),
                });
            }
        } else if self.cur.seq.0 > 0 {
            return Err(VerifyFailure {
                seq: Seq(1),
                code: ErrorCode::HeadMismatch,
                message: "the ledger holds events but no recorded head".to_owned(),
            });
        }
        Ok(VerifySummary { events: self.events, head: self.cur })
    }
}
