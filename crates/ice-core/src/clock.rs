//! Injected time and identity. The core never reads the system clock or a random source: callers pass a
//! [`Clock`] and an [`IdSource`]. System-backed implementations live in `ice-runtime`; the manual ones here
//! make tests and replay deterministic.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use uuid::Uuid;

use crate::ids::{EventId, RunId, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A source of fresh ids (UUIDv7: time-ordered, unique).
pub trait IdSource: Send + Sync {
    /// A fresh UUID.
    fn next_uuid(&self) -> Uuid;

    /// A fresh event id.
    fn event_id(&self) -> EventId {
        EventId(self.next_uuid())
    }

    /// A fresh run id.
    fn run_id(&self) -> RunId {
        RunId(self.next_uuid())
    }
}

/// A clock that only moves when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// Starts at the given time.
    pub fn new(start: Timestamp) -> Self {
        Self(AtomicI64::new(start.0))
    }

    /// Moves time forward (or backward, to test refusals) by `micros`.
    pub fn advance(&self, micros: i64) {
        self.0.fetch_add(micros, Ordering::SeqCst);
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Deterministic UUIDv7-shaped ids: a fixed millisecond prefix from a seed and a counter.
#[derive(Debug)]
pub struct SequentialIds {
    seed: u64,
    counter: AtomicU64,
    lock: Mutex<()>,
}

impl SequentialIds {
    /// Ids derived from `seed`; two sources with the same seed produce the same sequence.
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: AtomicU64::new(0), lock: Mutex::new(()) }
    }
}

impl IdSource for SequentialIds {
    fn next_uuid(&self) -> Uuid {
        let _guard = self.lock.lock();
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        // Layout per RFC 9562 §5.7: 48-bit ms timestamp, version 7, variant 10, the rest from seed and counter.
        let ms = (self.seed & 0xffff_ffff_ffff) << 16;
        let hi = ms | 0x7000 | ((n >> 48) & 0x0fff);
        let lo = 0x8000_0000_0000_0000 | (n & 0x3fff_ffff_ffff_ffff);
        Uuid::from_u64_pair(hi, lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_are_v7_and_ordered() {
        let ids = SequentialIds::new(42);
        let a = ids.next_uuid();
        let b = ids.next_uuid();
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
        assert_eq!(SequentialIds::new(42).next_uuid(), a);
    }
}
