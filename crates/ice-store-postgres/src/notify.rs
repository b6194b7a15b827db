//! Waking `wait_for_append` callers: every append transaction NOTIFYs [`CHANNEL`] with the new head seq (delivered
//! only at COMMIT); one listener connection per store LISTENs and records the highest seq seen, waking blocked
//! waiters through a condition variable. While the listener is down (it reconnects on its own), waiters poll the
//! recorded head instead.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ice_core::Seq;
use ice_store::StoreError;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::connection::{describe, pg_error};

/// The notification channel appends announce themselves on.
pub(crate) const CHANNEL: &str = "ice_ledger_append";

/// How often waiters poll while no listener is connected.
const POLL: Duration = Duration::from_millis(50);
/// The longest single sleep of a waiter without a deadline.
const FOREVER: Duration = Duration::from_secs(3600);
/// How long the listener waits before reconnecting.
const RECONNECT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct State {
    /// Highest head seq known to be committed.
    seen: Seq,
    /// Whether a listener connection is currently LISTENing.
    listening: bool,
}

/// What waiters block on; fed by the listener task.
#[derive(Debug, Default)]
pub(crate) struct Appends {
    state: Mutex<State>,
    changed: Condvar,
}

impl Appends {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn advance(&self, seq: Seq) {
        let mut s = self.lock();
        if seq > s.seen {
            s.seen = seq;
            self.changed.notify_all();
        }
    }

    /// Whether a listener connection is up (tests check that wake-ups come from notifications).
    #[cfg(test)]
    pub(crate) fn listening(&self) -> bool {
        self.lock().listening
    }

    fn set_listening(&self, on: bool) {
        self.lock().listening = on;
        self.changed.notify_all();
    }

    /// Blocks until the head passes `after` or `timeout` elapses; `head` reads the recorded head.
    pub(crate) fn wait(
        &self,
        after: Seq,
        timeout: Duration,
        head: &dyn Fn() -> Result<Seq, StoreError>,
    ) -> Result<Seq, StoreError> {
        // No deadline at all when `timeout` is too large to add to the clock (e.g. Duration::MAX).
        let deadline = Instant::now().checked_add(timeout);
        let current = head()?;
        if current > after {
            return Ok(current);
        }
        let mut state = self.lock();
        loop {
            if state.seen > after {
                return Ok(state.seen);
            }
            let left = deadline.map_or(FOREVER, |d| d.saturating_duration_since(Instant::now()));
            if left.is_zero() {
                drop(state);
                return head();
            }
            let listening = state.listening;
            let slice = if listening { left } else { POLL.min(left) };
            state = self.changed.wait_timeout(state, slice).unwrap_or_else(PoisonError::into_inner).0;
            if !listening && !state.listening {
                drop(state);
                let current = head()?;
                if current > after {
                    return Ok(current);
                }
                state = self.lock();
            }
        }
    }
}

/// Keeps one LISTEN connection up for the life of the store's runtime.
pub(crate) async fn listen(mut config: Config, appends: Arc<Appends>) {
    // Named apart from the pooled connections in pg_stat_activity.
    let name = format!("{} listener", config.get_application_name().unwrap_or("ice"));
    config.application_name(name);
    loop {
        // Waiters poll while the listener is down. The reason is for a log line once the workspace has logging
        // (tracing); nothing else needs it.
        let _reason = listen_once(&config, &appends).await;
        appends.set_listening(false);
        tokio::time::sleep(RECONNECT).await;
    }
}

/// Connects, LISTENs, seeds `seen` with the recorded head, then relays notifications until the connection ends.
async fn listen_once(config: &Config, appends: &Arc<Appends>) -> String {
    let target = describe(config);
    // The driver's connect_timeout bounds reaching the socket; this bounds the whole handshake too.
    let patience = config.get_connect_timeout().copied().unwrap_or(RECONNECT * 10);
    let (client, mut connection) = match tokio::time::timeout(patience, config.connect(NoTls)).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => return format!("cannot connect to {target}: {}", pg_error(&e)),
        Err(_) => return format!("cannot connect to {target}: no answer within {patience:?}"),
    };
    let relay = Arc::clone(appends);
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Ok(seq) = n.payload().parse::<u64>() {
                        relay.advance(Seq(seq));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return pg_error(&e),
                None => return "connection closed".to_owned(),
            }
        }
    });
    let setup = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        // LISTEN is active from here on, so reading the head now leaves no window for a missed append.
        client.query_one("SELECT seq FROM chain_head WHERE id = 1", &[]).await?.try_get::<_, i64>(0)
    };
    match tokio::time::timeout(patience, setup).await {
        Ok(Ok(seq)) => {
            appends.advance(Seq(u64::try_from(seq).unwrap_or(0)));
            appends.set_listening(true);
        }
        Ok(Err(e)) => {
            driver.abort();
            return format!("cannot LISTEN on {target}: {}", pg_error(&e));
        }
        Err(_) => {
            driver.abort();
            return format!("cannot LISTEN on {target}: no answer in time");
        }
    }
    let reason = driver.await.unwrap_or_else(|e| e.to_string());
    drop(client);
    format!("listener connection to {target} ended: {reason}")
}
