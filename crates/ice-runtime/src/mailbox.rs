//! Handing a waiting caller what it waits for (see [`crate::commit`]), and timing where a flight's time goes.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ice_core::{Rejection, RunId};
use ice_store::Pending;

use crate::pipeline::Settled;

/// What a waiting caller is handed.
pub(crate) enum Delivery {
    /// Its ticket's outcome.
    Settled(Settled),
    /// A flight carrying its bundle has just started (its request submitted to the store): it waits for the
    /// store's answer and lands it (by the flight's id).
    Fly(u64, Pending),
    /// Its bundle was refused when it was decided (by the caller itself, or by another thread for it: flat
    /// combining); with the run its attempt named, if that run exists in the state it was decided on.
    Refused(Rejection, Option<RunId>),
}

/// Where one waiting caller is handed what it waits for: a landing wakes exactly the callers it settled (and the
/// one that carries the next flight), not every waiting caller, and a woken caller takes its outcome from here
/// rather than queueing for the state lock again only to read it.
///
/// Outcomes of one landing are handed out as a *wake chain*: every mailbox is filled, only the first is woken,
/// and each woken caller wakes the next. Waking a thread lets the scheduler run it at once, preempting the waker;
/// a thread that woke a whole flight's callers in a row was preempted by each, while the store sat idle.
#[derive(Default)]
pub(crate) struct Mailbox {
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
struct Slot {
    delivery: Option<Delivery>,
    /// Whom to wake once this delivery is taken.
    then: Option<Arc<Mailbox>>,
    /// The caller sleeps in [`Mailbox::wait`].
    asleep: bool,
}

impl Mailbox {
    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands the caller `delivery` and wakes it.
    pub(crate) fn put(&self, delivery: Delivery) {
        self.slot().delivery = Some(delivery);
        self.wake();
    }

    /// Hands the caller `delivery` without waking it, as a link of a wake chain: if the caller sleeps, it is to
    /// wake `then` once woken itself, and is now the chain's head (`Ok`: whoever fills the next link passes it
    /// as `then`, and the last one filled is woken with [`Mailbox::wake`]). A caller that is awake finds its
    /// delivery when it next waits and may be busy until then, so it is left out of the chain: `then` is handed
    /// back (`Err`).
    pub(crate) fn fill(&self, delivery: Delivery, then: Option<Arc<Mailbox>>) -> Result<(), Option<Arc<Mailbox>>> {
        let mut slot = self.slot();
        slot.delivery = Some(delivery);
        if slot.asleep {
            slot.then = then;
            Ok(())
        } else {
            Err(then)
        }
    }

    /// Wakes the caller if it waits (it finds the delivery filled before).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Whether it holds a flight not yet taken (see `Runtime::drain`).
    pub(crate) fn holds_flight(&self) -> bool {
        matches!(self.slot().delivery, Some(Delivery::Fly(..)))
    }

    /// Waits for a delivery and takes it, passing the wake-up on down the chain.
    pub(crate) fn wait(&self) -> Delivery {
        let mut slot = self.slot();
        loop {
            if let Some(delivery) = slot.delivery.take() {
                let then = slot.then.take();
                drop(slot);
                if let Some(next) = then {
                    next.wake();
                }
                return delivery;
            }
            slot.asleep = true;
            slot = self.ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
            slot.asleep = false;
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
