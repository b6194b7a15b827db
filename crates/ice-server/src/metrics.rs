//! `/metrics` in the Prometheus text format (0.0.4).
//!
//! Hand-written rather than the `metrics` crate's global recorder: a global recorder cannot be installed twice in
//! one process, and the tests run several servers side by side; what we export is a few counters and histograms
//! with bounded label sets, so a registry of our own is smaller than the adapter would be.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the request-latency histogram buckets.
const LATENCY_BOUNDS: [f64; 12] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A fixed-bucket histogram.
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; LATENCY_BOUNDS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in LATENCY_BOUNDS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += v;
    }
}

/// What the server reads off itself at scrape time.
pub struct Gauges {
    /// Requests being handled.
    pub in_flight: u64,
    /// Effects running (waited for or in the background).
    pub effects_running: u64,
    /// The highest seq seen.
    pub head: u64,
}

/// The server's metrics.
#[derive(Default)]
pub struct Metrics {
    /// (route template, method, status) → count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route template → latency.
    latency: Mutex<BTreeMap<String, Histogram>>,
    decisions: Mutex<BTreeMap<String, u64>>,
    effects: Mutex<BTreeMap<String, u64>>,
    auth_recorded: AtomicU64,
    auth_unrecorded: AtomicU64,
    rate_limited: AtomicU64,
    shed: AtomicU64,
    streams_open: AtomicU64,
    streams_dropped_slow: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// One answered request.
    pub fn request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        *lock(&self.requests).entry((route.to_owned(), method.to_owned(), status)).or_default() += 1;
        lock(&self.latency).entry(route.to_owned()).or_default().observe(seconds);
    }

    /// A recorded decision.
    pub fn decision(&self, verdict: &str) {
        *lock(&self.decisions).entry(verdict.to_owned()).or_default() += 1;
    }

    /// A finished effect.
    pub fn effect(&self, outcome: &str) {
        *lock(&self.effects).entry(outcome.to_owned()).or_default() += 1;
    }

    /// A refused credential; `recorded` when a `TransitionRejected` was written for it.
    pub fn auth_refused(&self, recorded: bool) {
        let c = if recorded { &self.auth_recorded } else { &self.auth_unrecorded };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A 429.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// A 503 at the concurrency limit.
    pub fn shed(&self) {
        self.shed.fetch_add(1, Ordering::Relaxed);
    }

    /// A stream opened (`+1`) or closed (`-1`).
    pub fn stream(&self, opened: bool) {
        if opened {
            self.streams_open.fetch_add(1, Ordering::Relaxed);
        } else {
            self.streams_open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A stream closed because its consumer could not keep up.
    pub fn stream_dropped_slow(&self) {
        self.streams_dropped_slow.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `pipeline` and `in_flight` are read from the runtime and the server at scrape time.
    pub fn render(&self, pipeline: &ice_runtime::pipeline::PipelineStats, now: &Gauges) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family("ice_http_requests_total", "counter", "HTTP requests answered, by route, method and status.");
        let mut text = std::mem::take(&mut out);
        for ((route, method, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                text,
                "ice_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            text,
            "# HELP ice_http_request_duration_seconds Time to answer a request, by route.\n\
             # TYPE ice_http_request_duration_seconds histogram"
        );
        for (route, h) in lock(&self.latency).iter() {
            for (b, c) in LATENCY_BOUNDS.iter().zip(h.counts) {
                let _ = writeln!(text, "ice_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {c}");
            }
            let _ = writeln!(
                text,
                "ice_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 ice_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 ice_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        let labelled = |text: &mut String, name: &str, help: &str, label: &str, m: &Mutex<BTreeMap<String, u64>>| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
            for (k, n) in lock(m).iter() {
                let _ = writeln!(text, "{name}{{{label}=\"{k}\"}} {n}");
            }
        };
        labelled(
            &mut text,
            "ice_decisions_total",
            "Decisions recorded through this server, by verdict.",
            "verdict",
            &self.decisions,
        );
        labelled(
            &mut text,
            "ice_effects_total",
            "Effects executed through this server, by outcome.",
            "outcome",
            &self.effects,
        );
        let mut scalar = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        scalar(
            "ice_auth_refusals_recorded_total",
            "counter",
            "Refused credentials recorded in the ledger.",
            load(&self.auth_recorded),
        );
        scalar(
            "ice_auth_refusals_unrecorded_total",
            "counter",
            "Refused credentials over the recording rate (counted, not written).",
            load(&self.auth_unrecorded),
        );
        scalar("ice_rate_limited_total", "counter", "Requests answered 429.", load(&self.rate_limited));
        scalar(
            "ice_requests_shed_total",
            "counter",
            "Requests answered 503 at the concurrency limit.",
            load(&self.shed),
        );
        scalar("ice_requests_in_flight", "gauge", "Requests being handled.", now.in_flight);
        scalar("ice_stream_clients", "gauge", "Open WebSocket streams.", load(&self.streams_open));
        scalar(
            "ice_stream_dropped_slow_total",
            "counter",
            "Streams closed because the client did not keep up.",
            load(&self.streams_dropped_slow),
        );
        scalar(
            "ice_group_commit_flights_total",
            "counter",
            "Group-commit transactions sent to the store.",
            pipeline.flights,
        );
        scalar(
            "ice_group_commit_bundles_total",
            "counter",
            "Bundles (one per transition) carried by them.",
            pipeline.bundles,
        );
        scalar(
            "ice_group_commit_conflicts_total",
            "counter",
            "Flights that lost to another writer.",
            pipeline.conflicts,
        );
        scalar(
            "ice_group_commit_retried_total",
            "counter",
            "Bundles decided again after a conflict.",
            pipeline.retried,
        );
        scalar(
            "ice_group_commit_queued_bundles",
            "gauge",
            "Bundles decided and waiting for the next group commit (queue depth).",
            pipeline.queued,
        );
        scalar("ice_group_commit_flying_bundles", "gauge", "Bundles in the group commit under way.", pipeline.flying);
        scalar("ice_effects_running", "gauge", "Effects running through this server.", now.effects_running);
        scalar("ice_ledger_head_seq", "gauge", "The highest seq this server has seen.", now.head);
        let name = "ice_group_commit_batch_size";
        let _ = writeln!(text, "# HELP {name} Bundles per group-commit flight.\n# TYPE {name} histogram");
        let bounds = ice_runtime::pipeline::BATCH_BOUNDS.iter().map(ToString::to_string).chain(["+Inf".to_owned()]);
        for (bound, count) in bounds.zip(pipeline.batch_sizes) {
            let _ = writeln!(text, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(text, "{name}_sum {}\n{name}_count {}", pipeline.bundles, pipeline.flights);
        text
    }
}
