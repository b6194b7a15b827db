//! OpenTelemetry trace export: a `tracing` layer that turns closed spans into OTLP spans and POSTs them, batched,
//! to an OTLP/HTTP collector with the JSON encoding (`<endpoint>/v1/traces`, `Content-Type: application/json`).
//!
//! Written here rather than with the `opentelemetry` SDK crates: what the server exports is one span per request
//! and one per runtime call, and the SDK, its exporter and its HTTP client would be the largest part of the
//! build for that. The encoding follows the OTLP specification's JSON rules: trace and span ids as hex strings,
//! 64-bit integers and nanosecond times as decimal strings, span kind 2 (server) for requests.
//!
//! Conventions the layer reads from span fields: `otel.name` (the span's name, else its `tracing` name),
//! `otel.kind` (`server`, else internal), `otel.status_code` (`error` marks the span failed), and `traceparent`
//! (a W3C trace context a client sent: the span joins that trace under that parent). Every other field becomes an
//! attribute, e.g. `ice.run_id`, `ice.proposal_id`.
//!
//! Export never blocks a request: closed spans go to a bounded queue that a background thread drains; when the
//! queue is full spans are dropped and counted. The collector's address is plain `http://` (a local agent or
//! sidecar is the usual deployment).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// Closed spans waiting for export at most; more are dropped.
const QUEUE: usize = 8192;
/// Spans per POST at most.
const BATCH: usize = 512;
/// Longest a closed span waits before its batch is sent.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Deadline of one POST (connect, send, answer).
const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// A span while it is open (kept in the registry's extensions).
struct Open {
    trace: [u8; 16],
    id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_nanos: u128,
    name: String,
    server: bool,
    error: bool,
    attributes: Vec<(String, Value)>,
}

/// A closed span, on its way out.
struct Closed {
    open: Open,
    end_nanos: u128,
}

enum Message {
    Span(Box<Closed>),
    /// Send everything queued, then answer.
    Flush(SyncSender<()>),
}

/// The layer: install it on a `tracing_subscriber::registry()`.
pub struct OtlpLayer {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

/// Flushes what is queued when dropped (at the end of `ice serve`), waiting a few seconds at most.
pub struct OtlpGuard {
    queue: SyncSender<Message>,
    dropped: Arc<AtomicU64>,
}

impl OtlpGuard {
    /// Sends every span queued so far; waits up to `limit`. Returns whether the exporter answered in time.
    pub fn flush(&self, limit: Duration) -> bool {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.queue.send(Message::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(limit).is_ok()
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        self.flush(POST_TIMEOUT * 2);
    }
}

/// Where the spans go: `http://host:port[/prefix]` → (`host:port`, `/prefix/v1/traces`).
fn target(endpoint: &str) -> Result<(String, String), String> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| format!("otlp_endpoint `{endpoint}`: expected http://HOST:PORT (OTLP/HTTP)"))?;
    let (authority, prefix) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    if authority.is_empty() {
        return Err(format!("otlp_endpoint `{endpoint}`: no host"));
    }
    let authority = if authority.contains(':') { authority.to_owned() } else { format!("{authority}:4318") };
    let prefix = prefix.trim_end_matches('/');
    let path = if prefix.is_empty() { "/v1/traces".to_owned() } else { format!("/{prefix}/v1/traces") };
    Ok((authority, path))
}

/// A layer exporting to `endpoint` as service `service`, and the guard that flushes it.
pub fn layer(endpoint: &str, service: &str) -> Result<(OtlpLayer, OtlpGuard), String> {
    let (authority, path) = target(endpoint)?;
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let exporter = Exporter { authority, path, service: service.to_owned(), failing: false };
    std::thread::Builder::new()
        .name("ice-otlp".into())
        .spawn(move || exporter.run(&rx))
        .map_err(|e| format!("cannot start the OTLP exporter: {e}"))?;
    Ok((OtlpLayer { queue: tx.clone(), dropped: dropped.clone() }, OtlpGuard { queue: tx, dropped }))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if getrandom::fill(&mut b).is_err() || b.iter().all(|x| *x == 0) {
        // All-zero ids are invalid in OTLP; the clock is a poor but non-zero fallback.
        let t = now_nanos().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()] | 1;
        }
    }
    b
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    (out != [0u8; N]).then_some(out)
}

/// A W3C `traceparent` (`00-<trace>-<parent>-<flags>`): its trace id and parent span id.
fn parse_traceparent(text: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = text.trim().split('-');
    let (version, trace, parent) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" {
        return None;
    }
    Some((unhex(trace)?, unhex(parent)?))
}

/// Collects a span's fields into an [`Open`].
struct Fields<'a>(&'a mut Open);

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let text = || value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string());
        match field.name() {
            "otel.name" => self.0.name = text(),
            "otel.kind" => self.0.server = text() == "server",
            "otel.status_code" => self.0.error = text().eq_ignore_ascii_case("error"),
            "traceparent" => {
                if let Some((trace, parent)) = parse_traceparent(&text()) {
                    self.0.trace = trace;
                    self.0.parent = Some(parent);
                }
            }
            name => {
                let typed = match value {
                    Value::Bool(b) => json!({ "boolValue": b }),
                    Value::Number(n) if n.is_f64() => json!({ "doubleValue": n }),
                    Value::Number(n) => json!({ "intValue": n.to_string() }),
                    Value::String(s) => json!({ "stringValue": s }),
                    other => json!({ "stringValue": other.to_string() }),
                };
                self.0.attributes.retain(|(k, _)| k != name);
                self.0.attributes.push((name.to_owned(), typed));
            }
        }
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, json!(value));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let parent = span.parent().and_then(|p| p.extensions().get::<Open>().map(|o| (o.trace, o.id)));
        let mut open = Open {
            trace: parent.map_or_else(random, |(t, _)| t),
            id: random(),
            parent: parent.map(|(_, p)| p),
            start_nanos: now_nanos(),
            name: span.name().to_owned(),
            server: false,
            error: false,
            attributes: Vec::new(),
        };
        attrs.record(&mut Fields(&mut open));
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut Fields(open));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(open) = ctx.span(&id).and_then(|s| s.extensions_mut().remove::<Open>()) else { return };
        let closed = Box::new(Closed { open, end_nanos: now_nanos() });
        if let Err(TrySendError::Full(_)) = self.queue.try_send(Message::Span(closed)) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The background half: batches closed spans and POSTs them.
struct Exporter {
    authority: String,
    path: String,
    service: String,
    /// Whether the last POST failed (a failure is logged once, not per batch).
    failing: bool,
}

impl Exporter {
    fn run(mut self, rx: &Receiver<Message>) {
        let mut batch: Vec<Closed> = Vec::new();
        // When the oldest span of the batch closed: no span waits longer than FLUSH_EVERY.
        let mut oldest: Option<Instant> = None;
        loop {
            let wait = oldest.map_or(FLUSH_EVERY, |t| FLUSH_EVERY.saturating_sub(t.elapsed()));
            let mut ack = None;
            match rx.recv_timeout(wait) {
                Ok(Message::Span(s)) => batch.push(*s),
                Ok(Message::Flush(tx)) => ack = Some(tx),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.send(&mut batch);
                    return;
                }
            }
            // Take what else is waiting without blocking, up to a batch.
            while batch.len() < BATCH && ack.is_none() {
                match rx.try_recv() {
                    Ok(Message::Span(s)) => batch.push(*s),
                    Ok(Message::Flush(tx)) => ack = Some(tx),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() && oldest.is_none() {
                oldest = Some(Instant::now());
            }
            let due = oldest.is_some_and(|t| t.elapsed() >= FLUSH_EVERY);
            if ack.is_some() || batch.len() >= BATCH || due {
                self.send(&mut batch);
                oldest = None;
            }
            if let Some(tx) = ack {
                let _ = tx.send(());
            }
        }
    }

    fn send(&mut self, batch: &mut Vec<Closed>) {
        if batch.is_empty() {
            return;
        }
        let body = encode(&self.service, batch).to_string();
        batch.clear();
        match self.post(&body) {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(target: "ice_otlp", "OTLP export to {} works again", self.authority);
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(target: "ice_otlp", error = %e, "OTLP export to {} failed; spans are dropped until it answers", self.authority);
            }
            Err(_) => {}
        }
    }

    fn post(&self, body: &str) -> Result<(), String> {
        let url = format!("http://{}{}", self.authority, self.path);
        let headers = [("Content-Type".to_owned(), "application/json".to_owned())];
        // The answer body only matters for the message when the status is not a success.
        let reply = ice_effects::post(&url, &headers, body.as_bytes(), POST_TIMEOUT, 1 << 20)?;
        if (200..300).contains(&reply.status) {
            return Ok(());
        }
        let excerpt: String = String::from_utf8_lossy(&reply.body).chars().take(200).collect();
        Err(format!("the collector answered {}: {excerpt}", reply.status))
    }
}

/// One `ExportTraceServiceRequest` in the OTLP JSON encoding.
fn encode(service: &str, spans: &[Closed]) -> Value {
    let spans: Vec<Value> = spans
        .iter()
        .map(|c| {
            let o = &c.open;
            let mut span = json!({
                "traceId": hex(&o.trace),
                "spanId": hex(&o.id),
                "name": o.name,
                "kind": if o.server { 2 } else { 1 },
                "startTimeUnixNano": o.start_nanos.to_string(),
                "endTimeUnixNano": c.end_nanos.to_string(),
                "attributes": o.attributes.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
                "status": if o.error { json!({"code": 2}) } else { json!({}) },
            });
            if let Some(p) = o.parent {
                span["parentSpanId"] = json!(hex(&p));
            }
            span
        })
        .collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "ice-server", "version": env!("CARGO_PKG_VERSION")}, "spans": spans}],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_trace_contexts_parse() {
        assert_eq!(target("http://127.0.0.1:4318").unwrap(), ("127.0.0.1:4318".into(), "/v1/traces".into()));
        assert_eq!(target("http://collector/otlp/").unwrap(), ("collector:4318".into(), "/otlp/v1/traces".into()));
        assert!(target("https://x").is_err() && target("http://").is_err());
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (trace, parent) = parse_traceparent(tp).unwrap();
        assert_eq!((hex(&trace), hex(&parent)), ("4bf92f3577b34da6a3ce929d0e0e4736".into(), "00f067aa0ba902b7".into()));
        assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse_traceparent("00-4bf9-00f0-01").is_none());
        assert!(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
    }
}
