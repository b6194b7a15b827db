//! Who is calling: `Authorization: Bearer <token>` authenticated by the runtime (never a name from the request),
//! and the limits tied to the caller — a token bucket per token, a bounded rate of refusal records, and a bucket
//! per peer address for credentials that keep failing.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ice_core::auth::Credential;
use ice_core::{ErrorCode, Rejection};
use ice_runtime::server_config::ServerConfig;
use ice_runtime::{Caller, Presented};
use serde_json::json;

use crate::Shared;
use crate::error::ApiError;

/// Buckets kept before idle (full) ones are dropped.
const MAX_BUCKETS: usize = 10_000;
/// Failed authentications a peer may make in a burst before it is slowed down, and per second after that.
const FAILURE_BURST: f64 = 20.0;
const FAILURE_RATE: f64 = 2.0;

/// A token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Keyed token buckets.
struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, Bucket>>,
}

impl<K: std::hash::Hash + Eq + Clone> Buckets<K> {
    fn new(rate: f64, burst: f64) -> Self {
        Self { rate, burst: burst.max(1.0), map: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`; `Err(seconds to wait)` when the bucket is empty.
    fn take(&self, key: &K, now: Instant) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_BUCKETS && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let b = map.entry(key.clone()).or_insert(Bucket { tokens: self.burst, last: now });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// Whether `key` has a token, without taking one (`Err(seconds to wait)` when it has none).
    fn has(&self, key: &K, now: Instant) -> Result<(), u64> {
        let map = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some(b) if b.tokens + now.duration_since(b.last).as_secs_f64() * self.rate < 1.0 => {
                Err(((1.0 - b.tokens) / self.rate).ceil().max(1.0) as u64)
            }
            _ => Ok(()),
        }
    }
}

/// The server's caller-bound limits.
pub struct Limits {
    per_token: Buckets<String>,
    failures: Buckets<Option<IpAddr>>,
    records: Buckets<()>,
}

impl Limits {
    /// Limits from `[server]`.
    pub fn new(cfg: &ServerConfig) -> Self {
        Self {
            per_token: Buckets::new(f64::from(cfg.rate_per_token), f64::from(cfg.burst_per_token)),
            failures: Buckets::new(FAILURE_RATE, FAILURE_BURST),
            records: Buckets::new(
                f64::from(cfg.refusal_records_per_minute) / 60.0,
                f64::from(cfg.refusal_records_per_minute).max(1.0),
            ),
        }
    }
}

/// An authenticated caller.
pub struct Authed(pub Caller);

/// The WebSocket subprotocol that carries a token where a browser cannot set `Authorization`: a client offers
/// `Sec-WebSocket-Protocol: ice-bearer, <token>` on a WebSocket upgrade (and only there).
pub const WS_BEARER: &str = "ice-bearer";

/// The token a WebSocket upgrade offers as its second subprotocol after [`WS_BEARER`].
fn ws_token(parts: &Parts) -> Option<String> {
    let upgrade = parts.headers.get(axum::http::header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let offered = parts.headers.get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)?.to_str().ok()?;
    let mut values = offered.split(',').map(str::trim);
    values.find(|v| *v == WS_BEARER)?;
    values.next().filter(|t| !t.is_empty()).map(str::to_owned)
}

fn rate_limited(secs: u64, message: String) -> ApiError {
    let mut e = ApiError::new(ErrorCode::RateLimited, message);
    e.retry_after = Some(secs);
    e
}

impl FromRequestParts<Shared> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let now = Instant::now();
        let header = parts.headers.get(AUTHORIZATION).map(|v| v.to_str().map(str::trim));
        let offered = if header.is_none() { ws_token(parts) } else { None };
        let secret = match header {
            Some(Ok(v)) => v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim),
            _ => offered.as_deref(),
        };
        // A peer whose credentials keep failing is answered 429 (and not recorded) for its next failures; a
        // valid token from the same address is unaffected.
        let failing = state.limits.failures.has(&peer, now).err();
        let record = failing.is_none() && state.limits.records.take(&(), now).is_ok();
        let rt = state.rt.clone();
        let result = match secret {
            None => {
                let what = if header.is_some() { "not `Bearer <token>`" } else { "missing" };
                let rejection = Rejection::new(
                    ErrorCode::Unauthenticated,
                    format!("the Authorization header is {what}: send `Authorization: Bearer <token>`"),
                );
                let attempt = json!({"auth": "http", "peer": peer.map(|p| p.to_string()), "header": what});
                Err(tokio::task::spawn_blocking(move || rt.refuse_request(rejection, attempt, record))
                    .await
                    .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable, "authentication task failed"))?)
            }
            Some(secret) => {
                let secret = secret.to_owned();
                tokio::task::spawn_blocking(move || {
                    rt.authenticate_recording(&Presented::Token { secret: &secret, act_as: None }, record)
                })
                .await
                .map_err(|_| ApiError::new(ErrorCode::StoreUnavailable, "authentication task failed"))?
            }
        };
        let caller = match result {
            Ok(c) => c,
            Err(e) => {
                let _ = state.limits.failures.take(&peer, now);
                state.metrics.auth_refused(record);
                if let Some(secs) = failing {
                    state.metrics.rate_limited();
                    return Err(rate_limited(secs, "too many failed authentications from this address".into()));
                }
                return Err(e.into());
            }
        };
        let key = match &caller.attribution().via {
            Credential::Token { id } => id.to_string(),
            other => format!("{other:?}"),
        };
        if let Err(secs) = state.limits.per_token.take(&key, now) {
            state.metrics.rate_limited();
            return Err(rate_limited(
                secs,
                format!("token {key} is over its rate of {} requests/s", state.cfg.rate_per_token),
            ));
        }
        crate::api::tag("ice.principal", caller.principal());
        Ok(Self(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_refuses_past_its_burst_and_refills_at_its_rate() {
        let b = Buckets::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.take(&"k", t0).is_ok());
        }
        assert_eq!(b.take(&"k", t0), Err(1));
        assert!(b.take(&"other", t0).is_ok(), "buckets are per key");
        assert!(b.take(&"k", t0 + Duration::from_millis(150)).is_ok(), "0.15 s at 10/s refills one token");
    }

    #[test]
    fn a_zero_rate_means_no_limit() {
        let b = Buckets::new(0.0, 0.0);
        let t0 = Instant::now();
        assert!((0..10_000).all(|_| b.take(&1, t0).is_ok()));
    }
}
