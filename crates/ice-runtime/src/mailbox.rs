//! Handing a waiting caller its ticket's outcome (see [`crate::pipeline`] and `Runtime::await_ticket`), and
//! timing where a flight's time goes.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::pipeline::Settled;

/// What a waiting caller is handed.
pub(crate) enum Delivery {
    /// Its ticket's outcome.
    Settled(Settled),
    /// No flight is under way and its bundle is the oldest queued: it flies the next one.
    Fly,
}

/// Where one waiting caller is handed what it waits for: a landing wakes exactly the callers it settled (and the
/// one that flies next), not every waiting caller, and a woken caller takes its outcome from here rather than
/// queueing for the state lock again only to read it.
#[derive(Default)]
pub(crate) struct Mailbox {
    slot: Mutex<Option<Delivery>>,
    ready: Condvar,
}

impl Mailbox {
    pub(crate) fn put(&self, delivery: Delivery) {
        *self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(delivery);
        self.ready.notify_one();
    }

    pub(crate) fn wait(&self) -> Delivery {
        let mut slot = self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(delivery) = slot.take() {
                return delivery;
            }
            slot = self.ready.wait(slot).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Where the time of flights goes, in µs: at the store, waiting to land, and between a landing that left work queued
/// and the next flight (wall-clock diagnostics for `ice bench propose`; nothing decided depends on them).
#[derive(Default)]
pub(crate) struct FlightTimes {
    inner: Mutex<Times>,
}

#[derive(Default)]
struct Times {
    at_store: u64,
    to_land: u64,
    to_relaunch: u64,
    ready_since: Option<Instant>,
}

fn micros_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX)
}

impl FlightTimes {
    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A flight leaves now.
    pub(crate) fn leaving(&self) -> Instant {
        let mut t = self.times();
        if let Some(ready) = t.ready_since.take() {
            t.to_relaunch = t.to_relaunch.saturating_add(micros_since(ready));
        }
        Instant::now()
    }

    /// The store answered the flight that left at `left`.
    pub(crate) fn answered(&self, left: Instant) -> Instant {
        let mut t = self.times();
        t.at_store = t.at_store.saturating_add(micros_since(left));
        Instant::now()
    }

    /// The flight the store answered at `answered` holds the state lock to land.
    pub(crate) fn landing(&self, answered: Instant) {
        let mut t = self.times();
        t.to_land = t.to_land.saturating_add(micros_since(answered));
    }

    /// The flight landed; `queued`: bundles wait for the next one.
    pub(crate) fn landed(&self, queued: bool) {
        self.times().ready_since = queued.then(Instant::now);
    }

    /// Totals so far: at the store, waiting to land, landing to the next flight.
    pub(crate) fn totals(&self) -> (u64, u64, u64) {
        let t = self.times();
        (t.at_store, t.to_land, t.to_relaunch)
    }
}
