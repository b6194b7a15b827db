//! The HTTP effector: one plain-`http://` request to an allowlisted `host:port` with an allowlisted method.
//!
//! Requests are journaled (a server's side effects cannot be observed from here) and carry the idempotency key
//! as an `Idempotency-Key` header, so a server that honours it can deduplicate too. Secret-bearing headers
//! (`[effects.http] redact_headers`) are recorded as `[redacted]` in both directions; bodies are kept as blobs.
//!
//! Header values may reference declared secrets (`"Authorization: Bearer ${secret:GITHUB_TOKEN}"`); they are
//! resolved in `apply`, after the journal says the request is to be sent, and only into the bytes on the wire. A
//! header with a reference is always recorded as `[redacted]`, and a response header echoing a resolved value is
//! redacted too. A reference anywhere else in the args is refused.
//!
//! Args: `{"method": "GET", "url": "http://host:port/path", "body"?: "...", "headers"?: ["Name: value", ...]}`.

mod client;
mod url;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use ice_core::{Access, Classification, EffectScope, ErrorCode, Risk};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::call::{no_effector, parse_args, present, string_entries};
use crate::journal::{Begin, Journal};
use crate::secrets::screen::{CREDENTIAL_HEADERS, entries, literal, refuse_references_outside, url_has_userinfo};
use crate::secrets::{Revealed, Secrets};
use crate::{BlobStore, Compensation, EffectCall, EffectError, Effector, Evidence, HttpConfig, Plan, RetryMode};
use crate::{check_args_hash, content_hash};

use self::client::{Request, Response, SendError};

/// An answer to [`post`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Header fields, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (chunked coding undone).
    pub body: Vec<u8>,
}

/// POSTs `body` to an `http://` URL with this effector's client — one connection, one deadline for the whole
/// exchange, bounded status line and headers, `Content-Length` / chunked / until-close framing — for ICE's own
/// outbound calls (model providers, trace export), never for an agent's effect, which goes through the governed
/// `http.request`. A body longer than `max_body`, or one that ends early, is an error: nothing half-read is
/// returned.
pub fn post(
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
    max_body: u64,
) -> Result<Reply, String> {
    let url = parse_url(url).map_err(|e| e.message)?;
    let request = Request { method: "POST", url: &url, headers, body: Some(body) };
    let response = client::send(&request, timeout, max_body).map_err(|e| match e {
        SendError::Connect(m) | SendError::AfterConnect(m) => m,
    })?;
    if response.truncated {
        return Err(format!("the answer is longer than {max_body} bytes"));
    }
    if let Some(why) = response.incomplete {
        return Err(format!("the answer ended early: {why}"));
    }
    Ok(Reply { status: response.status, headers: response.headers, body: response.body })
}
use self::url::{Url, parse_url};
pub(crate) use self::url::{is_token, parse_host_port};

const ACTIONS: &[&str] = &["http.request"];

/// Headers the effector sets itself; a call may not set them.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "idempotency-key",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Response headers recorded in the evidence, and the longest value recorded: evidence lands in a ledger event.
const MAX_RECORDED_HEADERS: usize = 64;
const MAX_RECORDED_VALUE: usize = 1024;

/// What a redacted header value is recorded as.
const REDACTED: &str = "[redacted]";

/// Where this effector resolves secret references, as said in refusals.
const RESOLVED_IN: &str = "args.headers values";

/// The HTTP effector.
#[derive(Debug, Clone)]
pub struct HttpEffector {
    allow_hosts: BTreeSet<String>,
    allow_methods: BTreeSet<String>,
    redact: BTreeSet<String>,
    timeout: Duration,
    max_request: u64,
    max_response: u64,
    blobs: BlobStore,
    journal: Journal,
    secrets: Secrets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestArgs {
    method: String,
    url: String,
    /// `["Name: value", ...]`: Cedar's schema has no maps with arbitrary keys, so headers are a `Set<String>`; an
    /// object is refused.
    #[serde(default, deserialize_with = "present")]
    headers: Option<Value>,
    #[serde(default)]
    body: Option<String>,
}

/// A validated call.
struct Prepared {
    method: String,
    url: Url,
    /// Every header to send except `Host`, `Content-Length` and `Connection`, in order, references unresolved.
    headers: Vec<Header>,
    body: Option<String>,
}

/// One header as given.
struct Header {
    name: String,
    value: String,
    /// The value references a secret: it is resolved only for the wire, and always recorded as redacted.
    secret: bool,
}

impl HttpEffector {
    /// An HTTP effector keeping bodies in `blobs` and its journal in `journal_dir`.
    pub fn new(config: &HttpConfig, blobs: BlobStore, journal_dir: &Path) -> Result<Self, EffectError> {
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect();
        Ok(Self {
            allow_hosts: lower(&config.allow_hosts),
            allow_methods: config.allow_methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            redact: lower(&config.redact_headers),
            timeout: Duration::from_millis(config.timeout_ms),
            max_request: config.max_request_bytes,
            max_response: config.max_response_bytes,
            blobs,
            journal: Journal::open(journal_dir)?,
            secrets: Secrets::default(),
        })
    }

    /// The secrets its header values may reference (none by default: every reference is `UnknownSecret`).
    #[must_use]
    pub(crate) fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    fn prepare(&self, call: &EffectCall<'_>) -> Result<Prepared, EffectError> {
        check_args_hash(call)?;
        if call.action != "http.request" {
            return Err(no_effector("http", call.action));
        }
        Journal::check_key(call.idempotency_key)?;
        let args: RequestArgs = parse_args(call)?;
        refuse_references_outside(call.action, call.args, Some("headers"), RESOLVED_IN)?;
        if call.resource != args.url {
            return Err(EffectError::new(
                ErrorCode::ResourceMismatch,
                format!("http.request: resource `{}` must be exactly args.url `{}`", call.resource, args.url),
            ));
        }
        let url = parse_url(&args.url)?;
        if !self.allow_hosts.contains(&url.host_port()) {
            return Err(EffectError::new(
                ErrorCode::NotAllowlisted,
                format!("host `{}` is not in effects.http.allow_hosts", url.host_port()),
            ));
        }
        if !is_token(&args.method) {
            return Err(bad(format!("method `{}` is not an HTTP method", args.method.escape_debug())));
        }
        let method = args.method.to_ascii_uppercase();
        if !self.allow_methods.contains(&method) {
            return Err(EffectError::new(
                ErrorCode::NotAllowlisted,
                format!("method {method} is not in effects.http.allow_methods"),
            ));
        }
        let body_len = args.body.as_ref().map_or(0, String::len) as u64;
        if body_len > self.max_request {
            return Err(EffectError::new(
                ErrorCode::EffectLimit,
                format!("the request body is {body_len} bytes; effects.http.max_request_bytes is {}", self.max_request),
            ));
        }
        let given = parse_headers(args.headers)?;
        let mut headers = Vec::with_capacity(given.len() + 1);
        for (name, value) in given {
            if !is_token(&name) {
                return Err(bad(format!("header name `{}` is not a token", name.escape_debug())));
            }
            if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(bad(format!("header `{name}` is set by the effector and may not be given")));
            }
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(bad(format!("header `{name}` has a control character (CR, LF, NUL, ...) in its value")));
            }
            let secret = self.secrets.check(call.action, &format!("args.headers entry `{name}`"), &value)?;
            headers.push(Header { name, value, secret });
        }
        headers.push(Header {
            name: "Idempotency-Key".to_owned(),
            value: call.idempotency_key.to_owned(),
            secret: false,
        });
        Ok(Prepared { method, url, headers, body: args.body })
    }

    fn redacted(&self, name: &str, value: &str) -> String {
        if self.redact.contains(&name.to_ascii_lowercase()) { REDACTED.to_owned() } else { value.to_owned() }
    }

    /// The headers to send: references resolved now, from their sources (`UnknownSecret` when one cannot be, or
    /// when a value read could not be carried by a header). Each secret read is added to `read`.
    fn wire_headers(
        &self,
        action: &str,
        p: &Prepared,
        read: &mut Vec<Revealed>,
    ) -> Result<Vec<(String, String)>, EffectError> {
        p.headers
            .iter()
            .map(|h| {
                if !h.secret {
                    return Ok((h.name.clone(), h.value.clone()));
                }
                let field = format!("args.headers entry `{}`", h.name);
                let value = self.secrets.resolve(action, &field, &h.value, read)?;
                if value.expose().chars().any(|c| c.is_control() && c != '\t') {
                    return Err(EffectError::new(
                        ErrorCode::UnknownSecret,
                        format!(
                            "{action}: {field} resolves to a value with a control character (CR, LF, NUL, ...), \
                             which a header cannot carry; check the secret's source"
                        ),
                    ));
                }
                Ok((h.name.clone(), value.expose().to_owned()))
            })
            .collect()
    }

    /// Request headers as recorded: lowercase names, secrets redacted (always, for a value with a reference).
    fn request_record(&self, p: &Prepared) -> Value {
        let map: Map<String, Value> = p
            .headers
            .iter()
            .map(|h| {
                let value = if h.secret { REDACTED.to_owned() } else { self.redacted(&h.name, &h.value) };
                (h.name.to_ascii_lowercase(), Value::from(value))
            })
            .collect();
        Value::Object(map)
    }

    /// Response headers as recorded: lowercase names, repeated fields joined, secrets redacted (configured names,
    /// and any value containing a secret read for this request), bounded.
    fn response_record(&self, resp: &Response, read: &[Revealed]) -> (Value, bool) {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        let mut cut = false;
        for (name, value) in &resp.headers {
            if !map.contains_key(name) && map.len() == MAX_RECORDED_HEADERS {
                cut = true;
                continue;
            }
            let entry = map.entry(name.clone()).or_default();
            if !entry.is_empty() {
                entry.push_str(", ");
            }
            if read.iter().any(|secret| value.contains(secret.expose())) {
                entry.push_str(REDACTED);
            } else {
                entry.push_str(&self.redacted(name, value));
            }
        }
        let map = map
            .into_iter()
            .map(|(name, mut value)| {
                if value.len() > MAX_RECORDED_VALUE {
                    let end = (0..=MAX_RECORDED_VALUE).rev().find(|&i| value.is_char_boundary(i)).unwrap_or(0);
                    value.truncate(end);
                    value.push('…');
                    cut = true;
                }
                (name, Value::from(value))
            })
            .collect();
        (Value::Object(map), cut)
    }

    fn evidence(&self, p: &Prepared, resp: &Response, duration: Duration, read: &[Revealed]) -> Evidence {
        let (headers, headers_cut) = self.response_record(resp, read);
        let mut detail = Map::new();
        detail.insert("status".into(), resp.status.into());
        detail.insert("headers".into(), headers);
        detail.insert("request_headers".into(), self.request_record(p));
        detail.insert("duration_ms".into(), u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).into());
        detail.insert("truncated".into(), resp.truncated.into());
        if headers_cut {
            detail.insert("headers_truncated".into(), true.into());
        }
        if let Some(why) = &resp.incomplete {
            detail.insert("incomplete".into(), why.clone().into());
        }
        // The request happened whatever the blob store says: a failure to keep the body is noted, not raised.
        let output_blob = if resp.body.is_empty() {
            None
        } else {
            match self.blobs.put(&resp.body) {
                Ok(hash) => Some(hash),
                Err(e) => {
                    detail.insert("output_blob_error".into(), e.to_string().into());
                    None
                }
            }
        };
        let sent = p.body.as_ref().map_or(0, String::len) as u64;
        Evidence {
            output_hash: content_hash(&resp.body),
            output_bytes: resp.body_total,
            output_blob,
            after: None,
            bytes: sent + resp.body.len() as u64,
            detail: Value::Object(detail),
            already_applied: false,
            tokens: None,
        }
    }
}

impl Effector for HttpEffector {
    fn name(&self) -> &'static str {
        "http"
    }

    fn actions(&self) -> &'static [&'static str] {
        ACTIONS
    }

    fn classification(&self, action: &str) -> Option<Classification> {
        // As the default catalog declares it: a write (a GET is harmless, a POST is not, the catalog cannot tell).
        (action == "http.request").then_some(Classification {
            scope: EffectScope::External,
            access: Access::Write,
            risk: Risk::Medium,
        })
    }

    fn screen(&self, action: &str, args: &Value) -> Result<(), EffectError> {
        if action != "http.request" {
            return Ok(());
        }
        refuse_references_outside(action, args, Some("headers"), RESOLVED_IN)?;
        if args.get("url").and_then(Value::as_str).is_some_and(url_has_userinfo) {
            return Err(EffectError::new(
                ErrorCode::LiteralSecret,
                "http.request: args.url carries user info (`user:password@`); send credentials in a header with a \
                 secret reference",
            ));
        }
        for entry in entries(args, "headers", ':') {
            if self.secrets.check(action, &entry.label, &entry.value)? {
                continue;
            }
            let name = entry.name.trim_matches([' ', '\t']).to_ascii_lowercase();
            if !entry.value.is_empty() && (CREDENTIAL_HEADERS.contains(&name.as_str()) || self.redact.contains(&name)) {
                return Err(literal(action, &entry.label));
            }
        }
        Ok(())
    }

    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError> {
        let p = self.prepare(call)?;
        let compensation = match p.method.as_str() {
            "GET" | "HEAD" => Compensation::Nothing,
            method => Compensation::Irreversible { reason: format!("an HTTP {method} request cannot be recalled") },
        };
        Ok(Plan {
            target: call.resource.to_owned(),
            input_hash: content_hash(p.body.as_deref().unwrap_or_default().as_bytes()),
            before: None,
            expected_after: None,
            compensation,
            retry: RetryMode::Journal,
        })
    }

    fn apply(&self, call: &EffectCall<'_>, plan: &Plan) -> Result<Evidence, EffectError> {
        let p = self.prepare(call)?;
        if plan.target != call.resource
            || plan.input_hash != content_hash(p.body.as_deref().unwrap_or_default().as_bytes())
            || plan.retry != RetryMode::Journal
        {
            return Err(EffectError::new(
                ErrorCode::ArgsMismatch,
                "http.request: the plan handed to apply was not made for these args",
            ));
        }
        if let Begin::Done(evidence) = self.journal.begin(call)? {
            return Ok(evidence);
        }
        let mut read = Vec::new();
        let headers = match self.wire_headers(call.action, &p, &mut read) {
            Ok(headers) => headers,
            Err(e) => {
                // Nothing was sent, so a retry (once the source is fixed) may send it.
                self.journal.abandon(call)?;
                return Err(e);
            }
        };
        let request =
            Request { method: &p.method, url: &p.url, headers: &headers, body: p.body.as_deref().map(str::as_bytes) };
        let start = Instant::now();
        match client::send(&request, self.timeout, self.max_response) {
            Ok(response) => {
                let mut evidence = self.evidence(&p, &response, start.elapsed(), &read);
                // The request happened; if its end cannot be journaled, the evidence is still the truth to report.
                if let Err(e) = self.journal.complete(call, &evidence)
                    && let Value::Object(detail) = &mut evidence.detail
                {
                    detail.insert("journal_error".into(), e.to_string().into());
                }
                Ok(evidence)
            }
            Err(SendError::Connect(why)) => {
                // Nothing was sent, so a retry may send it.
                self.journal.abandon(call)?;
                Err(EffectError::new(ErrorCode::EffectFailed, format!("http.request {}: {why}", p.url.host_port())))
            }
            Err(SendError::AfterConnect(why)) => {
                let error = EffectError::new(
                    ErrorCode::OutcomeUnknown,
                    format!(
                        "http.request {} {}: no complete response ({why}); the server may have received and acted \
                         on the request",
                        p.method, call.resource
                    ),
                );
                self.journal.fail(call, &error)?;
                Err(error)
            }
        }
    }
}

/// `args.headers` entries `Name: value`, split at the first `:`, with spaces and tabs around the value dropped, in
/// the order given. An empty name, or a name given twice (in any case), is refused; the caller checks the rest.
fn parse_headers(value: Option<Value>) -> Result<Vec<(String, String)>, EffectError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    // Entries are named by index, not echoed: a malformed one may carry a secret value.
    for (i, entry) in string_entries(value, "headers", "Name: value").map_err(bad)?.into_iter().enumerate() {
        let Some((name, value)) = entry.split_once(':') else {
            return Err(bad(format!("args.headers entry {i} has no `:`; it must be of the form \"Name: value\"")));
        };
        if name.is_empty() {
            return Err(bad(format!("args.headers entry {i} has an empty name")));
        }
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(bad(format!("args.headers sets `{}` more than once", name.escape_debug())));
        }
        // Only optional whitespace (SP, HTAB) is dropped: a CR or LF stays in the value and is refused.
        headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    Ok(headers)
}

fn bad(message: impl Into<String>) -> EffectError {
    EffectError::new(ErrorCode::BadArgument, format!("http.request: {}", message.into()))
}

#[cfg(test)]
mod tests {
    use ice_core::ErrorCode;
    use serde_json::json;

    use super::*;

    #[test]
    fn header_entries_split_at_the_first_colon() {
        let headers = parse_headers(Some(json!(["X-B: b", "X-A:a", "X-Url:  http://x:1/ \t", "X-Empty:"]))).unwrap();
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("X-B", "b"), ("X-A", "a"), ("X-Url", "http://x:1/"), ("X-Empty", "")]);
        assert!(parse_headers(None).unwrap().is_empty());
        // CR and LF are not trimmed away: they stay for the control-character check to refuse.
        assert_eq!(parse_headers(Some(json!(["X-A: a\r\n"]))).unwrap()[0].1, "a\r\n");
    }

    #[test]
    fn bad_header_entries_are_refused() {
        for (value, says) in [
            (json!({"X-A": "a"}), "must be an array of \"Name: value\" strings, not an object"),
            (json!(["X-A secret"]), "entry 0 has no `:`"),
            (json!(["X-A: a", ": secret"]), "entry 1 has an empty name"),
            (json!(["X-A: 1", "x-a: 2"]), "more than once"),
            (json!([true]), "entry 0 is a boolean"),
            (json!("X-A: a"), "not a string"),
        ] {
            let err = parse_headers(Some(value.clone())).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadArgument, "{value}");
            assert!(err.message.starts_with("http.request: ") && err.message.contains(says), "{value}: {err}");
            assert!(!err.message.contains("secret"), "{err}");
        }
    }
}
