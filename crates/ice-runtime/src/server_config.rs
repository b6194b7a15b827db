//! The `[server]` table of `.ice/config.toml`: where `ice serve` listens and the limits it enforces. Plain data;
//! the server (`ice-server`) reads it, so the home stays the one place configuration is parsed.

use serde::{Deserialize, Serialize};

/// `[server]`: every field has a default, so a home made before the server existed serves unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on (`host:port`). Default `127.0.0.1:7030`: loopback only, until an operator decides
    /// otherwise (and then with TLS in front or `tls_cert`/`tls_key`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest request body accepted, in bytes (larger: 413, `ICE-E0911`).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Requests per second each token may make on average (0: no limit); above it, 429 with `Retry-After`.
    #[serde(default = "default_rate")]
    pub rate_per_token: u32,
    /// How many requests a token may make at once above its rate (the bucket size).
    #[serde(default = "default_burst")]
    pub burst_per_token: u32,
    /// Longest a request may take before it is answered 408/`ICE-E0912`; a proposal's `wait` is capped below it.
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
    /// Requests handled at once; more are shed with 503 (`ICE-E0914`) instead of queueing without bound.
    #[serde(default = "default_concurrency")]
    pub max_concurrent_requests: usize,
    /// Refused credentials recorded per minute (the rest are counted in `/metrics`, not written).
    #[serde(default = "default_refusal_records")]
    pub refusal_records_per_minute: u32,
    /// Open WebSocket streams at once.
    #[serde(default = "default_streams")]
    pub max_streams: usize,
    /// Seconds a stream may stay unable to take the next event before it is closed (a slow consumer is dropped,
    /// never buffered without bound).
    #[serde(default = "default_stream_send_timeout")]
    pub stream_send_timeout_secs: u64,
    /// Seconds between reconciliations of effects whose outcome is unknown (0: never; the CLI reconciles on use).
    #[serde(default = "default_reconcile_secs")]
    pub reconcile_every_secs: u64,
    /// Effects running in the background at once (an `exec` that answers with a handle instead of waiting for the
    /// outcome); more are refused 503 (`ICE-E0914`) before anything starts.
    #[serde(default = "default_background_effects")]
    pub max_background_effects: usize,
    /// Log format: `text` (default) or `json`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
    /// PEM file of the certificate chain to serve HTTPS with (relative paths: to the home's `.ice/`); with
    /// `tls_key`. Absent: plain HTTP.
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub tls_key: Option<String>,
    /// OpenTelemetry: the OTLP/HTTP endpoint traces are exported to (e.g. `http://127.0.0.1:4318`; spans are
    /// POSTed as OTLP JSON to `<endpoint>/v1/traces`). Absent: no export.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of exported spans.
    #[serde(default = "default_service_name")]
    pub otlp_service_name: String,
    /// A witness's state file (`ice witness --state FILE`; relative to `.ice/`): `GET /v1/verify` then also checks
    /// that the checkpoint it cosigned is in the ledger, unchanged, and says so. Absent: no witness check.
    #[serde(default)]
    pub witness_state: Option<String>,
    /// The witness's public key (hex) the state must be signed with; absent: the key the state names.
    #[serde(default)]
    pub witness_key: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            rate_per_token: default_rate(),
            burst_per_token: default_burst(),
            request_timeout_secs: default_timeout(),
            max_concurrent_requests: default_concurrency(),
            refusal_records_per_minute: default_refusal_records(),
            max_streams: default_streams(),
            stream_send_timeout_secs: default_stream_send_timeout(),
            reconcile_every_secs: default_reconcile_secs(),
            max_background_effects: default_background_effects(),
            log_format: default_log_format(),
            tls_cert: None,
            tls_key: None,
            otlp_endpoint: None,
            otlp_service_name: default_service_name(),
            witness_state: None,
            witness_key: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:7030".to_owned()
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_rate() -> u32 {
    500
}
fn default_burst() -> u32 {
    1_000
}
fn default_timeout() -> u64 {
    60
}
fn default_concurrency() -> usize {
    256
}
fn default_refusal_records() -> u32 {
    60
}
fn default_streams() -> usize {
    128
}
fn default_stream_send_timeout() -> u64 {
    10
}
fn default_reconcile_secs() -> u64 {
    30
}
fn default_log_format() -> String {
    "text".to_owned()
}
fn default_background_effects() -> usize {
    64
}
fn default_service_name() -> String {
    "ice".to_owned()
}
