//! System-backed [`Clock`] and [`IdSource`]: the only place the runtime reads the wall clock or draws ids.

use std::time::{SystemTime, UNIX_EPOCH};

use ice_core::{Clock, IdSource, Timestamp};
use uuid::Uuid;

/// The wall clock, in microseconds since the Unix epoch.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let micros = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
        Timestamp(i64::try_from(micros).unwrap_or(i64::MAX))
    }
}

/// UUIDv7 ids from the system clock and randomness (monotonic within the process).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemIds;

impl IdSource for SystemIds {
    fn next_uuid(&self) -> Uuid {
        Uuid::now_v7()
    }
}
