//! `ice serve`: the authenticated HTTP + WebSocket door to the runtime.
//!
//! Every handler authenticates the bearer token through [`Runtime::authenticate_recording`] and calls the same
//! runtime method the CLI calls, on a blocking thread (the runtime is synchronous: its store calls block on
//! group commit). The server has no domain logic: what it adds is transport — strict JSON bodies, errors as
//! `{code, message, hint}` with HTTP statuses, limits (body size, per-token rate, timeouts, concurrency, stream
//! backpressure), metrics and the OpenAPI document.
//!
//! Shutdown ([`serve`] with a shutdown future): stop accepting, let in-flight requests finish (each is answered only
//! after its events are durable), close streams, take a final checkpoint.

mod api;
mod auth;
mod body;
mod console;
mod error;
mod metrics;
mod openapi;
pub mod otlp;
mod stream;
#[cfg(feature = "tls")]
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use ice_core::Seq;
use ice_runtime::Runtime;
use ice_runtime::server_config::ServerConfig;
use tokio::sync::{Semaphore, watch};

pub use error::ApiError;
pub use openapi::openapi_json;
#[cfg(feature = "tls")]
pub use tls::Tls;

/// What every handler shares.
pub(crate) struct AppState {
    rt: Arc<Runtime>,
    cfg: ServerConfig,
    /// The highest seq this server knows of; streams and approval waits wake on it.
    head: watch::Sender<u64>,
    limits: auth::Limits,
    metrics: metrics::Metrics,
    streams: Arc<Semaphore>,
    requests: Arc<Semaphore>,
    /// Slots of effects running on their own (an `exec` answered with a handle, or still running when answered).
    effects: Arc<Semaphore>,
    draining: AtomicBool,
    /// Set when the server stops: streams close themselves.
    stopping: watch::Sender<bool>,
    proof: ProofSettings,
}

/// What `GET /v1/verify` checks signatures against: the home's pinned keys and its unsigned-tail bound.
#[derive(Debug, Clone, Default)]
pub struct ProofSettings {
    /// Public keys (hex) whose checkpoint signatures are accepted.
    pub trusted_keys: Vec<String>,
    /// Most events allowed after the last signed checkpoint (0: no bound).
    pub tail_bound: u64,
    /// A witness's state file and, optionally, the key it must be signed with (see `[server] witness_state`).
    pub witness: Option<(std::path::PathBuf, Option<String>)>,
}

type Shared = Arc<AppState>;

/// Longest a shutdown waits for background effects to finish.
const EFFECT_DRAIN: Duration = Duration::from_secs(300);

impl AppState {
    /// Tells streams and waiters that the ledger reached `seq` (called after this server's own writes, and by the
    /// head watcher for everyone else's).
    fn saw(&self, seq: Seq) {
        self.head.send_if_modified(|h| {
            let moved = seq.0 > *h;
            *h = (*h).max(seq.0);
            moved
        });
    }
}

/// A configured server over one long-lived runtime.
pub struct Server {
    state: Shared,
    /// A service mounted at `/mcp` behind the API's authentication (the MCP gateway).
    mcp: Option<Router>,
    #[cfg(feature = "tls")]
    tls: Option<Tls>,
}

impl Server {
    /// Builds the server state. The runtime is the one the process keeps for its lifetime.
    pub fn new(rt: Arc<Runtime>, cfg: ServerConfig, proof: ProofSettings) -> Self {
        let head = rt.with_state_cached(|s| s.last_seq().0);
        let streams = Arc::new(Semaphore::new(cfg.max_streams));
        let requests = Arc::new(Semaphore::new(cfg.max_concurrent_requests.max(1)));
        let effects = Arc::new(Semaphore::new(cfg.max_background_effects.max(1)));
        let state = Arc::new(AppState {
            limits: auth::Limits::new(&cfg),
            rt,
            head: watch::channel(head).0,
            metrics: metrics::Metrics::default(),
            streams,
            requests,
            effects,
            draining: AtomicBool::new(false),
            stopping: watch::channel(false).0,
            proof,
            cfg,
        });
        Self {
            state,
            mcp: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Serves HTTPS with `tls` instead of plain HTTP.
    #[cfg(feature = "tls")]
    #[must_use]
    pub fn with_tls(mut self, tls: Tls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Mounts `service` at `/mcp`: each request is authenticated like an API request (bearer token, per-token
    /// rate, recorded refusals) and reaches the service with its `ice_runtime::Caller` in the request's
    /// extensions. The service decides nothing itself: it calls the runtime as that caller.
    #[must_use]
    pub fn with_mcp<S>(mut self, service: S) -> Self
    where
        S: tower::Service<axum::extract::Request, Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.mcp = Some(Router::new().fallback_service(service));
        self
    }

    /// The router (for in-process tests with `tower::ServiceExt::oneshot`, and for [`serve`]).
    pub fn router(&self) -> Router {
        api::router(self.state.clone(), self.mcp.clone())
    }

    /// Serves on `listener` until `shutdown` completes, then drains and takes a final checkpoint.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let watcher = tokio::spawn(watch_head(state.clone()));
        let reconciler = tokio::spawn(reconcile_periodically(state.clone()));
        // Checkpoints are signed here, off the request path: no request waits behind one.
        state.rt.set_inline_checkpoints(false);
        let checkpointer = tokio::spawn(checkpoint_when_due(state.clone()));
        let app = self.router().into_make_service_with_connect_info::<SocketAddr>();
        let drain_state = state.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            drain_state.draining.store(true, Ordering::SeqCst);
            // Streams end themselves when they see this.
            drain_state.stopping.send_replace(true);
        };
        #[cfg(feature = "tls")]
        let served = match &self.tls {
            Some(tls) => {
                use axum::serve::ListenerExt as _;
                // `tap_io` only so that the connect info (the peer's address) is derived as for plain TCP.
                let listener = tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
                axum::serve(listener, app).with_graceful_shutdown(graceful).await
            }
            None => axum::serve(listener, app).with_graceful_shutdown(graceful).await,
        };
        #[cfg(not(feature = "tls"))]
        let served = axum::serve(listener, app).with_graceful_shutdown(graceful).await;
        // Effects still running record their outcome before the final checkpoint (each has its own time limit).
        let slots = u32::try_from(state.cfg.max_background_effects.max(1)).unwrap_or(u32::MAX);
        let running = slots as usize - state.effects.available_permits();
        if running > 0 {
            tracing::info!(running, "waiting for background effects to record their outcomes");
            if tokio::time::timeout(EFFECT_DRAIN, state.effects.acquire_many(slots)).await.is_err() {
                tracing::warn!(
                    "effects still running after {} s; reconciliation will settle them",
                    EFFECT_DRAIN.as_secs()
                );
            }
        }
        watcher.abort();
        reconciler.abort();
        // (Set again in case serving ended on an error rather than the shutdown signal.) The housekeeping task ends
        // after the checkpoint it may be signing.
        state.stopping.send_replace(true);
        let _ = checkpointer.await;
        // Every acknowledged request committed before it was answered; what is left is ICE's own housekeeping.
        let rt = state.rt.clone();
        match tokio::task::spawn_blocking(move || rt.checkpoint()).await {
            Ok(Ok(Some(c))) => tracing::info!(seq = c.seq.0, "final checkpoint signed"),
            Ok(Ok(None)) => tracing::info!("final checkpoint: nothing new to sign (or no signing key)"),
            Ok(Err(e)) => tracing::warn!(error = %e, "final checkpoint failed"),
            Err(e) => tracing::warn!(error = %e, "final checkpoint task failed"),
        }
        served
    }
}

/// Follows the ledger head so that streams and approval waits see events other processes append.
async fn watch_head(state: Shared) {
    loop {
        let after = Seq(*state.head.borrow());
        let store = state.rt.store().clone();
        let seen = tokio::task::spawn_blocking(move || store.wait_for_append(after, Duration::from_secs(1))).await;
        match seen {
            Ok(Ok(seq)) => state.saw(seq),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the ledger head; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(_) => return,
        }
    }
}

/// Signs a checkpoint whenever one is due (by count or time), checking a few times a second.
async fn checkpoint_when_due(state: Shared) {
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Stops between checkpoints, never in one: the final checkpoint must not race a signing still under way
        // (it would lose, and the snapshot of the winner could be written after the process reported it stopped).
        if *state.stopping.borrow() {
            return;
        }
        let rt = state.rt.clone();
        match tokio::task::spawn_blocking(move || rt.checkpoint_if_due()).await {
            Ok(Ok(Some(c))) => {
                tracing::debug!(seq = c.seq.0, "checkpoint signed");
                state.saw(c.seq);
            }
            Ok(Ok(None) | Err(ice_runtime::RuntimeError::Rejected { .. })) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "checkpoint not written"),
            Err(_) => return,
        }
    }
}

/// Records effects whose process died without an outcome, so a long-lived server does not leave them "running".
async fn reconcile_periodically(state: Shared) {
    let every = state.cfg.reconcile_every_secs;
    if every == 0 {
        return;
    }
    loop {
        tokio::time::sleep(Duration::from_secs(every)).await;
        let rt = state.rt.clone();
        match tokio::task::spawn_blocking(move || rt.reconcile()).await {
            Ok(Ok(found)) if !found.is_empty() => tracing::info!(count = found.len(), "effects reconciled"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "reconcile failed"),
            Err(_) => return,
        }
    }
}
