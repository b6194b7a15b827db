//! Handing a waiting caller its ticket's outcome (see [`crate::pipeline`] and `Runtime::await_ticket`).

use std::sync::{Condvar, Mutex};

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
