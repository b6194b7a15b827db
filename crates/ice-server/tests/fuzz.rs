//! The API fuzzed from its own OpenAPI document, for a bounded number of requests: every documented operation
//! with random path parameters, query strings, bodies and credentials. Whatever arrives, the server answers
//! without a 5xx, every error carries a code and a hint, it keeps serving, and the ledger still verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Fixture, call};
use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*), so a failure reproduces from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: [&str; 12] = [
    "",
    "agent:a",
    "human:boss",
    "file:notes/x",
    "notes/../../etc/passwd",
    "EXECUTING",
    "TERMINATED",
    "fs.write",
    "\u{0}\u{7f}",
    "ünïcödé ✓",
    "%00%ff",
    "01a23c96-5d98-717c-8187-e266bc8cb85f",
];

fn value(r: &mut Rng, depth: usize) -> Value {
    match r.below(if depth > 3 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => json!(r.below(2) == 1),
        2 => json!(r.next() as i64),
        3 => json!((r.next() % 1000) as f64 / 7.0),
        4 | 5 => json!(*r.pick(&STRINGS)),
        6 => Value::Array((0..r.below(4)).map(|_| value(r, depth + 1)).collect()),
        _ => {
            let keys = [
                "action",
                "resource",
                "args",
                "run",
                "reason",
                "label",
                "to",
                "limit",
                "principal",
                "roles",
                "actions",
                "scope",
                "dimension",
                "args_hash",
                "comment",
                "cost_estimate",
                "path",
                "content",
                "x",
            ];
            Value::Object((0..r.below(6)).map(|_| ((*r.pick(&keys)).to_owned(), value(r, depth + 1))).collect())
        }
    }
}

fn param(r: &mut Rng, ids: &[String]) -> String {
    match r.below(4) {
        0 => r.pick(ids).clone(),
        1 => (*r.pick(&STRINGS)).to_owned(),
        2 => "x".repeat(r.below(3000)),
        _ => format!("{}", r.next()),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.:".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_survives_requests_generated_from_its_own_document() {
    let f = Fixture::new();
    let app = f.server().router();
    let doc: Value = serde_json::from_str(&ice_server::openapi_json()).unwrap();
    let mut operations = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            operations.push((method.to_uppercase(), path.clone(), query));
        }
    }
    let tokens = [&f.tokens.agent, &f.tokens.agent_b, &f.tokens.approver, &f.tokens.operator, &f.tokens.auditor];
    let ids = vec![f.run.clone(), "01a23c96-5d98-717c-8187-e266bc8cb85f".to_owned()];
    let seed = 0x1CE_5EED_u64;
    let mut r = Rng(seed);
    let mut answered = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..1_500 {
        let (method, template, query) = r.pick(&operations).clone();
        let mut path = template.clone();
        for name in ["{id}", "{agent}", "{action}"] {
            if path.contains(name) {
                path = path.replace(name, &encode(&param(&mut r, &ids)));
            }
        }
        let mut pairs = Vec::new();
        for q in &query {
            if r.below(2) == 0 {
                pairs.push(format!("{q}={}", encode(&param(&mut r, &ids))));
            }
        }
        if r.below(8) == 0 {
            pairs.push("unknown=1".into());
        }
        if !pairs.is_empty() {
            path = format!("{path}?{}", pairs.join("&"));
        }
        let body = match r.below(5) {
            0 => None,
            1 => Some(
                String::from_utf8_lossy(&(0..r.below(64)).map(|_| r.next() as u8).collect::<Vec<_>>()).into_owned(),
            ),
            _ => Some(value(&mut r, 0).to_string()),
        };
        let token = match r.below(8) {
            0 => None,
            1 => Some("ice_garbage"),
            _ => Some(r.pick(&tokens).as_str()),
        };
        if template == "/v1/stream" {
            continue; // needs an upgrade; the WebSocket tests cover it
        }
        let (s, v) = call(&app, &method, &path, token, body.as_deref()).await;
        *answered.entry(s.as_u16()).or_default() += 1;
        assert!(
            !s.is_server_error() || s == StatusCode::SERVICE_UNAVAILABLE,
            "#{i} (seed {seed:#x}) {method} {path} {body:?}: {s} {v}"
        );
        if !s.is_success() {
            assert!(v["code"].as_str().is_some_and(|c| c.starts_with("ICE-E")), "#{i} {method} {path}: {v}");
            assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()), "#{i} {method} {path}: {v}");
        }
    }
    eprintln!("fuzz (seed {seed:#x}): statuses {answered:?}");
    assert!(answered.keys().any(|s| *s == 200) && answered.keys().any(|s| *s >= 400), "{answered:?}");
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, "GET", "/v1/verify", Some(&f.tokens.auditor), None).await;
    assert_eq!((s, &v["ok"]), (StatusCode::OK, &json!(true)), "{v}");
}
