//! The HTTP effector against a tiny loopback server that records what it receives: GET and POST, the
//! Idempotency-Key header, redaction, allowlists (refused before any connection), chunked and oversized
//! responses, timeouts and the journal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

#[path = "support/harness.rs"]
mod harness;
#[path = "support/server.rs"]
mod server;

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use harness::{Env, call, hash};
use ice_core::ErrorCode;
use ice_effects::{Compensation, EffectsConfig, HttpConfig, OwnedCall, RetryMode};
use serde_json::{Value, json};
use server::Server;

fn env_for(server: &Server, tweak: impl FnOnce(&mut HttpConfig)) -> Env {
    let mut http = HttpConfig {
        allow_hosts: vec![server.addr.to_string()],
        allow_methods: vec!["GET".into(), "HEAD".into(), "post".into()],
        ..HttpConfig::default()
    };
    tweak(&mut http);
    Env::new(&EffectsConfig { http, ..EffectsConfig::default() })
}

fn request(url: &str, args: Value) -> OwnedCall {
    let mut args = args;
    args["url"] = json!(url);
    call("http.request", url, args)
}

#[test]
fn get_records_status_headers_and_body_with_secrets_redacted() {
    let server = Server::start();
    let env = env_for(&server, |_| {});
    let owned = request(
        &server.url("/hello"),
        json!({"method": "get", "headers": ["Authorization: Bearer top-secret", "X-Trace:t1"]}),
    );
    let (plan, evidence) = env.run(&owned).unwrap();
    assert_eq!(plan.target, server.url("/hello"));
    assert_eq!(plan.compensation, Compensation::Nothing);
    assert_eq!((plan.retry, plan.input_hash.clone()), (RetryMode::Journal, hash(b"")));
    assert_eq!(evidence.detail["status"], json!(200));
    assert_eq!(evidence.output_hash, hash(b"hello"));
    assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), b"hello");
    assert_eq!(evidence.detail["headers"]["set-cookie"], json!("[redacted]"));
    assert_eq!(evidence.detail["headers"]["x-plain"], json!("v"));
    assert_eq!(evidence.detail["request_headers"]["authorization"], json!("[redacted]"));
    assert_eq!(evidence.detail["request_headers"]["x-trace"], json!("t1"));
    assert_eq!(evidence.detail["truncated"], json!(false));
    let recorded = serde_json::to_string(&(&plan, &evidence)).unwrap();
    assert!(!recorded.contains("top-secret") && !recorded.contains("s3cr3t"), "{recorded}");

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].head.starts_with("GET /hello HTTP/1.1\r\n"), "{}", seen[0].head);
    assert_eq!(seen[0].header("authorization").as_deref(), Some("Bearer top-secret"));
    assert_eq!(seen[0].header("idempotency-key").as_deref(), Some(owned.idempotency_key.as_str()));
    assert_eq!(seen[0].header("host"), Some(server.addr.to_string()));
    assert_eq!(seen[0].header("connection").as_deref(), Some("close"));
}

#[test]
fn post_sends_its_body_and_is_irreversible() {
    let server = Server::start();
    let env = env_for(&server, |_| {});
    let owned = request(&server.url("/echo"), json!({"method": "POST", "body": "{\"n\":1}"}));
    let (plan, evidence) = env.run(&owned).unwrap();
    assert!(matches!(plan.compensation, Compensation::Irreversible { .. }));
    assert_eq!(plan.input_hash, hash(b"{\"n\":1}"));
    assert_eq!(evidence.detail["status"], json!(201));
    assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), b"{\"n\":1}");
    let seen = server.seen();
    assert_eq!(seen[0].body, b"{\"n\":1}");
    assert_eq!(seen[0].header("content-length").as_deref(), Some("7"));
}

#[test]
fn response_framings_are_decoded() {
    let server = Server::start();
    let env = env_for(&server, |_| {});
    for (path, body, status) in
        [("/chunked", "hello world", 200), ("/continue", "ok", 200), ("/eof", "until the end", 200)]
    {
        let (_, evidence) = env.run(&request(&server.url(path), json!({"method": "GET"}))).unwrap();
        assert_eq!(evidence.detail["status"], json!(status), "{path}");
        assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), body.as_bytes(), "{path}");
        assert_eq!(evidence.output_bytes, body.len() as u64, "{path}");
    }
    let (_, head) = env.run(&request(&server.url("/hello"), json!({"method": "HEAD"}))).unwrap();
    assert_eq!((head.output_bytes, head.output_blob.clone()), (0, None));
    let (_, short) = env.run(&request(&server.url("/short"), json!({"method": "GET"}))).unwrap();
    assert!(short.detail["incomplete"].is_string(), "{}", short.detail);
    assert_eq!(env.blob(short.output_blob.as_deref().unwrap()), b"abc");
}

#[test]
fn an_oversized_response_is_cut_and_marked() {
    let server = Server::start();
    let env = env_for(&server, |h| h.max_response_bytes = 1000);
    let (_, evidence) = env.run(&request(&server.url("/big"), json!({"method": "GET"}))).unwrap();
    assert_eq!(evidence.detail["truncated"], json!(true));
    assert_eq!(evidence.output_bytes, 100_000);
    assert_eq!(env.blob(evidence.output_blob.as_deref().unwrap()), vec![b'z'; 1000]);
}

#[test]
fn off_allowlist_requests_are_refused_before_any_connection() {
    let server = Server::start();
    let env = env_for(&server, |h| h.max_request_bytes = 10);
    let other_port = format!("http://127.0.0.1:{}/hello", server.addr.port() + 1);
    let cases = [
        (request(&other_port, json!({"method": "GET"})), ErrorCode::NotAllowlisted),
        (request("http://localhost/hello", json!({"method": "GET"})), ErrorCode::NotAllowlisted),
        (request(&format!("https://{}/hello", server.addr), json!({"method": "GET"})), ErrorCode::NotAllowlisted),
        (request(&server.url("/hello"), json!({"method": "DELETE"})), ErrorCode::NotAllowlisted),
        (request(&server.url("/echo"), json!({"method": "POST", "body": "01234567890"})), ErrorCode::EffectLimit),
        (request(&server.url("/hello"), json!({"method": "G T"})), ErrorCode::BadArgument),
        (
            request(&server.url("/hello"), json!({"method": "GET", "headers": ["X-A: a\r\nInjected: 1"]})),
            ErrorCode::BadArgument,
        ),
        (request(&server.url("/hello"), json!({"method": "GET", "headers": ["Bad Name: x"]})), ErrorCode::BadArgument),
        (request(&server.url("/hello"), json!({"method": "GET", "headers": ["host: evil"]})), ErrorCode::BadArgument),
        // Headers are a set of "Name: value" strings; the object form is refused.
        (request(&server.url("/hello"), json!({"method": "GET", "headers": {"X-A": "a"}})), ErrorCode::BadArgument),
        (request(&server.url("/hello"), json!({"method": "GET", "headers": ["X-A"]})), ErrorCode::BadArgument),
        (request(&server.url("/hello"), json!({"method": "GET", "headers": [": a"]})), ErrorCode::BadArgument),
        (
            request(&server.url("/hello"), json!({"method": "GET", "headers": ["X-A: 1", "x-a: 2"]})),
            ErrorCode::BadArgument,
        ),
        (request(&server.url("/hello"), json!({"method": "GET", "timeout": 1})), ErrorCode::BadArgument),
        (request(&format!("http://user:pw@{}/", server.addr), json!({"method": "GET"})), ErrorCode::BadArgument),
        (request("ftp://x/", json!({"method": "GET"})), ErrorCode::BadArgument),
    ];
    for (owned, code) in cases {
        assert_eq!(env.plan(&owned).unwrap_err().code, code, "{}", owned.canonical_args);
    }
    let object = request(&server.url("/hello"), json!({"method": "GET", "headers": {"X-A": "a"}}));
    let err = env.plan(&object).unwrap_err();
    assert!(err.message.contains("args.headers must be an array of \"Name: value\" strings"), "{err}");
    let mismatch = call("http.request", &server.url("/other"), json!({"method": "GET", "url": server.url("/hello")}));
    assert_eq!(env.plan(&mismatch).unwrap_err().code, ErrorCode::ResourceMismatch);
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
}

#[test]
fn a_silent_server_times_out_as_outcome_unknown_and_is_not_retried() {
    let server = Server::start();
    let env = env_for(&server, |h| h.timeout_ms = 300);
    let owned = request(&server.url("/silent"), json!({"method": "POST", "body": "pay"}));
    let plan = env.plan(&owned).unwrap();
    let start = Instant::now();
    let err = env.apply(&owned, &plan).unwrap_err();
    assert_eq!(err.code, ErrorCode::OutcomeUnknown, "{err}");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::OutcomeUnknown);
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn the_journal_answers_a_retry_without_resending() {
    let server = Server::start();
    let env = env_for(&server, |_| {});
    let owned = request(&server.url("/echo"), json!({"method": "POST", "body": "once"}));
    let plan = env.plan(&owned).unwrap();
    let first = env.apply(&owned, &plan).unwrap();
    let again = env.apply(&owned, &plan).unwrap();
    assert!(!first.already_applied && again.already_applied);
    assert_eq!(again.output_hash, first.output_hash);
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_refused_connection_sent_nothing_and_may_be_retried() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let mut http = HttpConfig { allow_hosts: vec![format!("127.0.0.1:{port}")], ..HttpConfig::default() };
    http.timeout_ms = 1000;
    let env = Env::new(&EffectsConfig { http, ..EffectsConfig::default() });
    let owned = request(&url, json!({"method": "GET"}));
    let plan = env.plan(&owned).unwrap();
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::EffectFailed);
    assert_eq!(env.apply(&owned, &plan).unwrap_err().code, ErrorCode::EffectFailed);
}
