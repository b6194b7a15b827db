//! In-process tests of every endpoint: roles, main error codes, bad input, limits, the OpenAPI document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use axum::http::StatusCode;
use common::{Fixture, call, code};
use ice_core::EventKind;
use serde_json::{Value, json};

#[tokio::test]
async fn credentials_are_required_and_refusals_are_recorded() {
    let f = Fixture::new();
    let app = f.server().router();
    let before = f.count(EventKind::TransitionRejected);
    let (s, v) = call(&app, "GET", "/v1/whoami", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "ICE-E0901"), "{v}");
    assert!(v["hint"].as_str().is_some_and(|h| !h.is_empty()));
    let (s, v) = call(&app, "GET", "/v1/whoami", Some("ice_nonsense"), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "ICE-E0902"), "{v}");
    // A well-formed token whose secret is wrong.
    let forged = format!("{}{}", &f.tokens.agent[..f.tokens.agent.len() - 4], "0000");
    let (s, v) = call(&app, "GET", "/v1/whoami", Some(&forged), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "ICE-E0902"), "{v}");
    assert_eq!(f.count(EventKind::TransitionRejected), before + 3, "each refusal recorded once");
    // Revoked.
    let (_, tok) = call(
        &app,
        "POST",
        "/v1/tokens",
        Some(&f.tokens.operator),
        Some(r#"{"principal":"agent:c","roles":["agent"]}"#),
    )
    .await;
    let (s, _) = call(&app, "GET", "/v1/whoami", tok["token"].as_str(), None).await;
    assert_eq!(s, StatusCode::OK);
    let path = format!("/v1/tokens/{}/revoke", tok["token_id"].as_str().unwrap());
    let (s, v) = call(&app, "POST", &path, Some(&f.tokens.operator), Some(r#"{"reason":"leaked"}"#)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&app, "GET", "/v1/whoami", tok["token"].as_str(), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "ICE-E0903"), "{v}");
    // Expired: a one-second token, checked after it lapsed.
    let (_, tok) = call(
        &app,
        "POST",
        "/v1/tokens",
        Some(&f.tokens.operator),
        Some(r#"{"principal":"agent:d","roles":["agent"],"ttl_secs":1}"#),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, v) = call(&app, "GET", "/v1/whoami", tok["token"].as_str(), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "ICE-E0904"), "{v}");
}

#[tokio::test]
async fn a_flood_of_bad_tokens_is_recorded_at_a_bounded_rate() {
    let f = Fixture::with(|c| c.refusal_records_per_minute = 5);
    let app = f.server().router();
    let before = f.count(EventKind::TransitionRejected);
    for _ in 0..40 {
        let (s, _) = call(&app, "GET", "/v1/whoami", Some("ice_bad"), None).await;
        assert!(s == StatusCode::UNAUTHORIZED || s == StatusCode::TOO_MANY_REQUESTS, "{s}");
    }
    let recorded = f.count(EventKind::TransitionRejected) - before;
    assert!(recorded <= 5, "{recorded} refusals recorded; the bound is 5 per minute");
    assert!(recorded >= 1);
    let (_, metrics) = call(&app, "GET", "/metrics", None, None).await;
    assert!(metrics.as_str().unwrap().contains("ice_auth_refusals_unrecorded_total"), "{metrics}");
}

/// An event id that names nothing.
const NO_ITEM: &str = "01900000-0000-7000-8000-0000000000ff";

/// Who may call what: (method, path, body) × (agent, approver, operator, auditor) → status.
#[tokio::test]
async fn every_endpoint_checks_the_role_in_the_runtime() {
    let f = Fixture::new();
    let app = f.server().router();
    let run = f.run.clone();
    let forbidden = StatusCode::FORBIDDEN;
    let ok = StatusCode::OK;
    let reads = [ok, ok, ok];
    let cases: Vec<(&str, String, Option<String>, [StatusCode; 4])> = vec![
        ("GET", "/v1/whoami".into(), None, [ok; 4]),
        ("GET", "/v1/runs".into(), None, [forbidden, reads[0], reads[1], reads[2]]),
        ("GET", format!("/v1/runs/{run}"), None, [ok; 4]),
        ("POST", "/v1/runs".into(), Some("{}".into()), [forbidden, forbidden, ok, forbidden]),
        ("GET", "/v1/events?limit=5".into(), None, [forbidden, ok, ok, ok]),
        ("GET", "/v1/approvals".into(), None, [forbidden, ok, ok, ok]),
        ("GET", "/v1/grants".into(), None, [forbidden, ok, ok, ok]),
        ("GET", "/v1/agents".into(), None, [forbidden, ok, ok, ok]),
        ("GET", format!("/v1/runs/{run}/rollback"), None, [forbidden, ok, ok, ok]),
        // The operator passes the role check; the run has no completed effect to undo.
        ("POST", format!("/v1/runs/{run}/rollback"), None, [forbidden, forbidden, StatusCode::CONFLICT, forbidden]),
        ("GET", "/v1/budgets".into(), None, [forbidden, ok, ok, ok]),
        ("GET", "/v1/policy".into(), None, [ok; 4]),
        ("GET", "/v1/checkpoints".into(), None, [forbidden, ok, ok, ok]),
        ("GET", "/v1/verify".into(), None, [forbidden, ok, ok, ok]),
        ("GET", format!("/v1/export?run={run}"), None, [forbidden, ok, ok, ok]),
        (
            "PUT",
            "/v1/budgets".into(),
            Some(r#"{"scope":"global","dimension":"calls","limit":1000}"#.into()),
            [forbidden, forbidden, ok, forbidden],
        ),
        (
            "POST",
            "/v1/grants".into(),
            Some(r#"{"principal":"agent:b","actions":["fs.read"],"resource":"file:notes/"}"#.into()),
            [forbidden, forbidden, ok, forbidden],
        ),
        (
            "POST",
            "/v1/agents/agent:b/suspend".into(),
            Some(r#"{"reason":"test"}"#.into()),
            [forbidden, forbidden, ok, forbidden],
        ),
        // Operators may propose (for agents, as `ice propose --as`); this one holds no grant: a recorded deny.
        ("POST", "/v1/proposals".into(), Some(f.write_body("m.txt")), [ok, forbidden, ok, forbidden]),
        ("POST", "/v1/checkpoints".into(), None, [forbidden, forbidden, ok, forbidden]),
        ("GET", "/v1/memory".into(), None, [forbidden, ok, ok, ok]),
        ("POST", "/v1/memory/search".into(), Some(r#"{"query":"deploy key"}"#.into()), [ok; 4]),
        ("GET", format!("/v1/memory/{NO_ITEM}/reads"), None, [forbidden, forbidden, ok, ok]),
        // The operator passes the role check; there is no such item.
        (
            "POST",
            format!("/v1/memory/{NO_ITEM}/deprecate"),
            Some(r#"{"reason":"stale"}"#.into()),
            [forbidden, forbidden, StatusCode::NOT_FOUND, forbidden],
        ),
        (
            "POST",
            "/v1/memory/candidates".into(),
            Some(json!({"run": run, "namespace": "team", "text": "x", "sources": [NO_ITEM]}).to_string()),
            [StatusCode::BAD_REQUEST, forbidden, StatusCode::BAD_REQUEST, forbidden],
        ),
        (
            "POST",
            "/v1/tokens".into(),
            Some(r#"{"principal":"agent:z","roles":["agent"]}"#.into()),
            [forbidden, forbidden, ok, forbidden],
        ),
    ];
    let tokens = [&f.tokens.agent, &f.tokens.approver, &f.tokens.operator, &f.tokens.auditor];
    for (method, path, body, expected) in &cases {
        for (token, want) in tokens.iter().zip(expected) {
            let (s, v) = call(&app, method, path, Some(token), body.as_deref()).await;
            assert_eq!(s, *want, "{method} {path} as {}: {v}", &token[..12]);
            if s == forbidden {
                // The role table (E0905) or, for kinds agents may never emit, origin authority (E0120).
                assert!(["ICE-E0905", "ICE-E0120"].contains(&code(&v)), "{method} {path}: {v}");
                assert!(v["recorded_seq"].as_u64().is_some(), "a 403 is recorded: {v}");
            }
        }
    }
    // The resume that goes with the suspend above: refused until what changed is recorded.
    let op = Some(f.tokens.operator.as_str());
    let (s, v) = call(&app, "POST", "/v1/agents/agent:b/resume", op, Some(r#"{"reason":"ok"}"#)).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ICE-E0830"), "{v}");
    let (s, v) = call(&app, "POST", "/v1/agents/agent:b/reconfigure", op, Some(r#"{"reason":"new prompt"}"#)).await;
    assert_eq!(s, ok, "{v}");
    let (s, v) = call(&app, "POST", "/v1/agents/agent:b/resume", op, Some(r#"{"reason":"ok"}"#)).await;
    assert_eq!(s, ok, "{v}");
    let (s, v) = call(&app, "POST", "/v1/agents/agent:b/dance", op, Some(r#"{"reason":"ok"}"#)).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "ICE-E0913"), "{v}");
}

#[tokio::test]
async fn a_proposal_is_decided_executed_and_readable_by_its_proposer() {
    let f = Fixture::new();
    let app = f.server().router();
    let (s, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body("a.txt"))).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["verdict"], "allow");
    let permit = d["permit_id"].as_str().unwrap();
    let proposal = d["proposal_id"].as_str().unwrap();
    // Someone else's permit is not theirs to run.
    let (s, v) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), Some(&f.tokens.agent_b), None).await;
    assert!(s.is_client_error(), "{s} {v}");
    assert!(code(&v).starts_with("ICE-E0"), "{v}");
    // Args other than the permitted ones are refused.
    let (s, v) = call(
        &app,
        "POST",
        &format!("/v1/permits/{permit}/exec"),
        Some(&f.tokens.agent),
        Some(r#"{"args":{"path":"notes/a.txt","content":"other"}}"#),
    )
    .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ICE-E0804"), "{v}");
    let (s, out) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), Some(&f.tokens.agent), None).await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "completed");
    assert_eq!(std::fs::read_to_string(f.dir.path().join("sandbox/notes/a.txt")).unwrap(), "hello");
    // Single use.
    let (s, v) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), Some(&f.tokens.agent), None).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ICE-E0802"), "{v}");
    // The proposer reads its own proposal; another agent may not.
    let (s, v) = call(&app, "GET", &format!("/v1/proposals/{proposal}"), Some(&f.tokens.agent), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["proposal"]["kind"], "ProposalSubmitted");
    let (s, v) = call(&app, "GET", &format!("/v1/proposals/{proposal}"), Some(&f.tokens.agent_b), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "ICE-E0905"), "{v}");
    // A denial is a decision: 200 with verdict deny (agent:b holds no grant).
    let (s, v) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent_b), Some(&f.write_body("b.txt"))).await;
    assert_eq!((s, v["verdict"].as_str()), (StatusCode::OK, Some("deny")), "{v}");
    // The run's audit bundle verifies offline against the pinned key.
    let (s, v) = call(&app, "GET", &format!("/v1/export?run={}", f.run), Some(&f.tokens.auditor), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let bundle = ice_core::bundle::Bundle::from_jsonl(v.as_str().unwrap()).unwrap();
    let report = ice_core::bundle::verify_bundle(&bundle, &f.home.pinned_keys().unwrap()).unwrap();
    assert!(report.events_verified >= 10 && report.checkpoints_verified >= 1, "{report:?}");
    let (s, v) = call(&app, "GET", "/v1/export?from=5", Some(&f.tokens.auditor), None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "ICE-E0405"), "{v}");
    // Proposing as someone else is refused.
    let body = json!({"actor": "agent:b", "run": f.run, "action": "fs.write", "resource": "file:notes/c.txt",
        "args": {"path": "notes/c.txt", "content": "x"}});
    let (s, v) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&body.to_string())).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "ICE-E0906"), "{v}");
}

#[tokio::test]
async fn a_waiting_proposal_returns_the_permit_once_an_approver_answers() {
    let f = Fixture::new();
    let app = f.server().router();
    let (s, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body("d.txt"))).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let waiter = {
        let (app, token, body) = (app.clone(), f.tokens.agent.clone(), f.delete_body("d.txt"));
        tokio::spawn(async move { call(&app, "POST", "/v1/proposals?wait=20", Some(&token), Some(&body)).await })
    };
    // The approver finds it in the queue with its exact args and hash.
    let approval = loop {
        let (_, list) = call(&app, "GET", "/v1/approvals", Some(&f.tokens.approver), None).await;
        if let Some(a) = list["approvals"].as_array().and_then(|a| a.first()).cloned() {
            break a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(approval["request"]["args"]["path"], "notes/d.txt");
    let id = approval["approval_id"].as_str().unwrap();
    let hash = approval["request"]["args_hash"].as_str().unwrap();
    // The agent cannot approve; a wrong hash is refused; the right one issues the permit.
    let (s, v) = call(&app, "POST", &format!("/v1/approvals/{id}/approve"), Some(&f.tokens.agent), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let bad = json!({"args_hash": "0".repeat(64)}).to_string();
    let (s, v) = call(&app, "POST", &format!("/v1/approvals/{id}/approve"), Some(&f.tokens.approver), Some(&bad)).await;
    assert!(s.is_client_error(), "{s} {v}");
    let good = json!({"args_hash": hash, "comment": "fine"}).to_string();
    let (s, v) =
        call(&app, "POST", &format!("/v1/approvals/{id}/approve"), Some(&f.tokens.approver), Some(&good)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let permit = v["permit_id"].as_str().unwrap().to_owned();
    let (s, waited) = waiter.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{waited}");
    assert_eq!(waited["verdict"], "require_approval");
    assert_eq!(waited["approval"]["status"], "granted", "{waited}");
    assert_eq!(waited["permit"]["permit_id"], permit.as_str());
    // Answered already.
    let (s, v) = call(&app, "POST", &format!("/v1/approvals/{id}/deny"), Some(&f.tokens.approver), None).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ICE-E0821"), "{v}");
}

#[tokio::test]
async fn bad_input_gets_a_coded_4xx_and_writes_nothing() {
    let f = Fixture::with(|c| c.max_body_bytes = 4096);
    let app = f.server().router();
    let agent = Some(f.tokens.agent.as_str());
    let op = Some(f.tokens.operator.as_str());
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let nested_args = format!(r#"{{"action":"fs.write","resource":"file:notes/x","args":{}}}"#, {
        let mut s = String::from("1");
        for _ in 0..70 {
            s = format!(r#"{{"a":{s}}}"#);
        }
        s
    });
    let huge = format!(r#"{{"label":"{}"}}"#, "x".repeat(10_000));
    /// (method, path, token, body, status, code; "" when several codes fit).
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case> = vec![
        ("POST", "/v1/proposals", agent, b"{not json".to_vec(), StatusCode::BAD_REQUEST, "ICE-E0101"),
        ("POST", "/v1/proposals", agent, b"[1,2]".to_vec(), StatusCode::BAD_REQUEST, "ICE-E0102"),
        ("POST", "/v1/proposals", agent, br#"{"action":7}"#.to_vec(), StatusCode::BAD_REQUEST, "ICE-E0102"),
        (
            "POST",
            "/v1/proposals",
            agent,
            br#"{"action":"fs.write","bogus":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "ICE-E0102",
        ),
        (
            "POST",
            "/v1/proposals",
            agent,
            br#"{"action":"a","action":"b"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "ICE-E0102",
        ),
        ("POST", "/v1/proposals", agent, deep.clone().into_bytes(), StatusCode::BAD_REQUEST, ""),
        ("POST", "/v1/proposals", agent, nested_args.into_bytes(), StatusCode::BAD_REQUEST, "ICE-E0102"),
        (
            "POST",
            "/v1/proposals",
            agent,
            vec![b'{', b'"', 0xff, 0xfe, b'"', b'}'],
            StatusCode::BAD_REQUEST,
            "ICE-E0101",
        ),
        ("POST", "/v1/proposals?wait=abc", agent, b"{}".to_vec(), StatusCode::BAD_REQUEST, "ICE-E0405"),
        ("POST", "/v1/proposals?bogus=1", agent, b"{}".to_vec(), StatusCode::BAD_REQUEST, "ICE-E0405"),
        ("POST", "/v1/runs", op, huge.into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "ICE-E0911"),
        ("POST", "/v1/runs", op, br#"{"label":5}"#.to_vec(), StatusCode::BAD_REQUEST, "ICE-E0102"),
        ("POST", "/v1/runs", op, br#"{"lable":"x"}"#.to_vec(), StatusCode::BAD_REQUEST, "ICE-E0102"),
        ("GET", "/v1/runs/not-a-uuid", op, vec![], StatusCode::BAD_REQUEST, "ICE-E0405"),
        ("GET", "/v1/events/123", op, vec![], StatusCode::BAD_REQUEST, "ICE-E0405"),
        ("GET", "/v1/events?kind=NoSuchKind", op, vec![], StatusCode::BAD_REQUEST, "ICE-E0110"),
        ("GET", "/v1/events?limit=-1", op, vec![], StatusCode::BAD_REQUEST, "ICE-E0405"),
        ("POST", "/v1/permits/zzz/exec", agent, vec![], StatusCode::BAD_REQUEST, ""),
        (
            "PUT",
            "/v1/budgets",
            op,
            br#"{"scope":"global","dimension":"gold","limit":1}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            "",
        ),
        ("DELETE", "/v1/runs", op, vec![], StatusCode::METHOD_NOT_ALLOWED, "ICE-E0913"),
        ("GET", "/v2/anything", op, vec![], StatusCode::NOT_FOUND, "ICE-E0913"),
    ];
    let head = f.head();
    for (method, path, token, body, status, want) in cases {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", token.unwrap()))
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
        let s = resp.status();
        let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        assert_eq!(s, status, "{method} {path} {}: {v}", String::from_utf8_lossy(&body[..body.len().min(60)]));
        assert!(code(&v).starts_with("ICE-E"), "{method} {path}: every error has a code: {v}");
        assert!(!v["hint"].as_str().unwrap_or("").is_empty(), "{method} {path}: and a hint: {v}");
        if !want.is_empty() {
            assert_eq!(code(&v), want, "{method} {path}: {v}");
        }
    }
    // Malformed requests are refused before the runtime: nothing at all was written.
    assert_eq!(f.head(), head, "bad input wrote events");
    let (s, _) = call(&app, "GET", "/healthz", None, None).await;
    assert_eq!(s, StatusCode::OK, "the server keeps serving");
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let f = Fixture::with(|c| {
        c.rate_per_token = 1;
        c.burst_per_token = 3;
    });
    let app = f.server().router();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let req = axum::http::Request::builder()
            .uri("/v1/whoami")
            .header("authorization", format!("Bearer {}", f.tokens.agent))
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = tower::ServiceExt::oneshot(app.clone(), req).await.unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().get("retry-after").is_some());
        }
        statuses.push(resp.status());
    }
    assert_eq!(statuses[..3], [StatusCode::OK; 3]);
    assert_eq!(statuses[3..], [StatusCode::TOO_MANY_REQUESTS; 2]);
    // Another token is not slowed by this one.
    let (s, _) = call(&app, "GET", "/v1/whoami", Some(&f.tokens.operator), None).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_not_queued() {
    let f = Fixture::with(|c| c.max_concurrent_requests = 1);
    let app = f.server().router();
    let (_, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body("s.txt"))).await;
    assert_eq!(d["verdict"], "allow");
    // A proposal waiting for its approval holds the only slot.
    let waiter = {
        let (app, token, body) = (app.clone(), f.tokens.agent.clone(), f.delete_body("s.txt"));
        tokio::spawn(async move { call(&app, "POST", "/v1/proposals?wait=3", Some(&token), Some(&body)).await })
    };
    // Only once the waiter holds the slot (its approval is recorded) does anyone else ask.
    while f.count(EventKind::ApprovalRequested) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut shed = None;
    for _ in 0..200 {
        let (s, v) = call(&app, "GET", "/v1/whoami", Some(&f.tokens.operator), None).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(v);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    if shed.is_none() {
        panic!("nothing shed; the waiter answered {:?}", waiter.await.unwrap());
    }
    assert_eq!(code(&shed.unwrap()), "ICE-E0914");
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    assert!(m.as_str().unwrap().contains("ice_requests_shed_total 1"), "health and metrics are exempt: {m}");
    let (s, waited) = waiter.await.unwrap();
    assert_eq!((s, waited["approval"]["status"].as_str()), (StatusCode::OK, Some("pending")), "{waited}");
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let f = Fixture::new();
    let app = f.server().router();
    let (s, doc) = call(&app, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut operations = 0;
    for (path, ops) in paths {
        let concrete = path
            .replace("{id}", "01a23c96-5d98-717c-8187-e266bc8cb85f")
            .replace("{agent}", "agent:q")
            .replace("{action}", "suspend");
        for method in ops.as_object().unwrap().keys() {
            operations += 1;
            let (s, v) = call(&app, &method.to_uppercase(), &concrete, None, None).await;
            // Unauthenticated, every documented operation must reach its handler's auth check, not the fallback.
            assert_ne!(code(&v), "ICE-E0913", "{method} {path} is documented but not routed");
            // 429 once this peer's failed authentications exceed their burst.
            assert!([StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&s), "{method} {path}: {v}");
            assert!(ops[method]["responses"].as_object().is_some_and(|r| !r.is_empty()));
        }
    }
    assert!(operations >= 28, "{operations} operations");
    assert_eq!(doc, serde_json::from_str::<Value>(&ice_server::openapi_json()).unwrap(), "served = generated");
}

/// The home's policy set as the API takes it, with `edit` applied to `default.cedar`.
fn policy_body(f: &Fixture, edit: impl Fn(&str) -> String) -> Value {
    let dir = f.dir.path().join(".ice/policies");
    let read = |n: &str| std::fs::read_to_string(dir.join(n)).unwrap();
    let mut policies = serde_json::Map::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".cedar") {
            let text = read(&name);
            policies.insert(name.clone(), json!(if name == "default.cedar" { edit(&text) } else { text }));
        }
    }
    json!({"policies": policies, "schema": read("schema.cedarschema"), "catalog": read("policy.toml")})
}

#[tokio::test]
async fn policy_is_validated_evaluated_and_activated_over_the_api() {
    let f = Fixture::new();
    let app = f.server().router();
    let (s, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body("p.txt"))).await;
    assert_eq!((s, d["verdict"].as_str()), (StatusCode::OK, Some("allow")), "{d}");
    let same = policy_body(&f, str::to_owned).to_string();
    let (s, v) = call(&app, "POST", "/v1/policy/validate", Some(&f.tokens.agent), Some(&same)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, active) = call(&app, "GET", "/v1/policy", Some(&f.tokens.agent), None).await;
    assert_eq!(v["hash"], active["hash"], "the same texts hash as the active set");
    assert!(active["source"].is_null(), "an agent sees the policy ids, not the rules' texts");
    let (_, shown) = call(&app, "GET", "/v1/policy", Some(&f.tokens.auditor), None).await;
    let source = &shown["source"];
    let texts = json!({"policies": source["policies"], "schema": source["schema"], "catalog": source["catalog"]});
    let (s, again) = call(&app, "POST", "/v1/policy/validate", Some(&f.tokens.auditor), Some(&texts.to_string())).await;
    assert_eq!((s, &again["hash"]), (StatusCode::OK, &active["hash"]), "the shown source is the active set: {again}");
    let (s, v) = call(&app, "POST", "/v1/policy/what-if", Some(&f.tokens.auditor), Some(&same)).await;
    assert_eq!((s, v["changes"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{v}");
    // A candidate that forbids writes flips the recorded allow.
    let strict = policy_body(&f, |t| {
        format!("{t}\n@id(\"no-writes\")\nforbid (principal, action, resource) when {{ context.classification.access == \"write\" }};\n")
    })
    .to_string();
    let (s, v) = call(&app, "POST", "/v1/policy/what-if", Some(&f.tokens.auditor), Some(&strict)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v["changes"].as_array().unwrap().is_empty(), "{v}");
    let (s, v) = call(&app, "POST", "/v1/policy/what-if", Some(&f.tokens.agent), Some(&strict)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    // Broken candidates are refused with the policy codes.
    let broken = policy_body(&f, |t| format!("{t}\npermit (principal, action"));
    let (s, v) = call(&app, "POST", "/v1/policy/validate", Some(&f.tokens.agent), Some(&broken.to_string())).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "ICE-E0601"), "{v}");
    let mut sneaky = policy_body(&f, str::to_owned);
    sneaky["policies"]["../x.cedar"] = json!("permit (principal, action, resource);");
    let (s, v) = call(&app, "POST", "/v1/policy/validate", Some(&f.tokens.agent), Some(&sneaky.to_string())).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "ICE-E0606"), "{v}");
    // Only an operator activates; then writes are denied.
    let (s, v) = call(&app, "POST", "/v1/policy/activate", Some(&f.tokens.approver), Some(&strict)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(&app, "POST", "/v1/policy/activate", Some(&f.tokens.operator), Some(&strict)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body("q.txt"))).await;
    assert_eq!(d["verdict"], "deny", "{d}");
}

#[tokio::test]
async fn metrics_count_decisions_effects_and_group_commit_batches() {
    let f = Fixture::new();
    let app = f.server().router();
    for name in ["m1.txt", "m2.txt"] {
        let (_, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body(name))).await;
        let permit = d["permit_id"].as_str().unwrap();
        let (s, v) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), Some(&f.tokens.agent), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, m) = call(&app, "GET", "/metrics", None, None).await;
    let text = m.as_str().unwrap();
    let value = |series: &str| -> f64 {
        let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
        line.unwrap_or_else(|| panic!("no {series} in\n{text}")).rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("ice_decisions_total{verdict=\"allow\"}"), 2.0);
    assert_eq!(value("ice_effects_total{outcome=\"completed\"}"), 2.0);
    assert_eq!(value("ice_effects_running"), 0.0);
    assert_eq!(value("ice_group_commit_queued_bundles"), 0.0);
    // Every flight is in the +Inf bucket; buckets are cumulative; the sum is the bundles carried.
    let flights = value("ice_group_commit_batch_size_count");
    assert!(flights >= 4.0, "two decisions and two effects at least: {flights}");
    assert_eq!(value("ice_group_commit_batch_size_bucket{le=\"+Inf\"}"), flights);
    assert!(
        value("ice_group_commit_batch_size_bucket{le=\"1\"}") <= value("ice_group_commit_batch_size_bucket{le=\"2\"}")
    );
    assert_eq!(value("ice_group_commit_batch_size_sum"), value("ice_group_commit_bundles_total"));
    assert!(value("ice_http_request_duration_seconds_count{route=\"/v1/proposals\"}") >= 2.0);
    // The exposition is well formed: every sample line is `name[{labels}] number`.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line}"));
        assert!(v.parse::<f64>().is_ok(), "bad value in {line}");
    }
}

#[tokio::test]
async fn a_proposer_withdraws_its_waiting_proposal_and_nobody_else_may() {
    let f = Fixture::new();
    let app = f.server().router();
    let (s, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.delete_body("w.txt"))).await;
    assert_eq!((s, d["verdict"].as_str()), (StatusCode::OK, Some("require_approval")), "{d}");
    let path = format!("/v1/proposals/{}/withdraw", d["proposal_id"].as_str().unwrap());
    let why = json!({"reason": "no longer needed"}).to_string();
    let (s, v) = call(&app, "POST", &path, Some(&f.tokens.agent_b), Some(&why)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(&app, "POST", &path, Some(&f.tokens.agent), Some(&why)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ProposalWithdrawn", "ApprovalExpired"]);
    let (_, list) = call(&app, "GET", "/v1/approvals", Some(&f.tokens.approver), None).await;
    assert_eq!(list["approvals"].as_array().map(Vec::len), Some(0), "{list}");
    let (s, v) = call(&app, "POST", &path, Some(&f.tokens.agent), Some(&why)).await;
    assert_eq!(s, StatusCode::CONFLICT, "nothing open any more: {v}");
}

/// Memory over HTTP: a candidate, promotion as an ordinary proposal and permit, a scoped and recorded search, the
/// audit of who read it, and an operator's lifecycle change.
#[tokio::test]
async fn memory_is_promoted_by_permit_searched_within_grants_and_audited() {
    let f = Fixture::new();
    let app = f.server().router();
    let agent = Some(f.tokens.agent.as_str());
    let (_, d) = call(&app, "POST", "/v1/proposals", agent, Some(&f.write_body("keys.txt"))).await;
    let permit = d["permit_id"].as_str().unwrap().to_owned();
    let (_, out) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), agent, None).await;
    let source = out["outcome_id"].as_str().unwrap().to_owned();
    let body = json!({"run": f.run, "namespace": "team/deploys", "text": "The deploy key rotates every Monday.",
        "fields": {"day": "monday"}, "sources": [source]});
    let (s, c) = call(&app, "POST", "/v1/memory/candidates", agent, Some(&body.to_string())).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let candidate = c["candidate_id"].as_str().unwrap().to_owned();
    let promote = json!({"run": f.run, "action": "memory.promote", "resource": "memory:team/deploys",
        "args": {"candidate": candidate, "namespace": "team/deploys"}});
    // No grant: a recorded deny.
    let (_, d) = call(&app, "POST", "/v1/proposals", agent, Some(&promote.to_string())).await;
    assert_eq!(d["verdict"], "deny", "{d}");
    let op = Some(f.tokens.operator.as_str());
    for (actions, resource) in [(json!(["memory.promote", "memory.read"]), "memory:team")] {
        let g = json!({"principal": "agent:a", "actions": actions, "resource": resource});
        let (s, v) = call(&app, "POST", "/v1/grants", op, Some(&g.to_string())).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, d) = call(&app, "POST", "/v1/proposals", agent, Some(&promote.to_string())).await;
    assert_eq!(d["verdict"], "allow", "{d}");
    let permit = d["permit_id"].as_str().unwrap().to_owned();
    let (s, out) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), agent, None).await;
    assert_eq!((s, out["status"].as_str()), (StatusCode::OK, Some("completed")), "{out}");
    let item = out["evidence"]["detail"]["item_id"].as_str().unwrap().to_owned();

    // The agent finds it within its grant; agent:b (no grant) does not.
    let q = json!({"query": "when is the deploy key rotated", "run": f.run}).to_string();
    let (s, r) = call(&app, "POST", "/v1/memory/search", agent, Some(&q)).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["items"][0]["item_id"], item.as_str(), "{r}");
    assert_eq!(r["items"][0]["fields"]["day"], "monday");
    let (_, r) = call(&app, "POST", "/v1/memory/search", Some(&f.tokens.agent_b), Some(&q)).await;
    assert_eq!(r["items"], json!([]), "{r}");
    let (s, v) = call(&app, "GET", &format!("/v1/memory/{item}"), Some(&f.tokens.agent_b), None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "ICE-E1002"), "{v}");
    let (_, next) = call(&app, "POST", "/v1/proposals", agent, Some(&f.write_body("plan.txt"))).await;

    // The auditor sees the read and the proposal that followed it.
    let (s, v) = call(&app, "GET", &format!("/v1/memory/{item}/reads"), Some(&f.tokens.auditor), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["reads"][0]["reader"], "agent:a");
    assert_eq!(v["reads"][0]["followed_by"]["proposal_id"], next["proposal_id"], "{v}");
    let (_, v) = call(&app, "GET", "/v1/memory?status=active", Some(&f.tokens.auditor), None).await;
    assert_eq!(v["items"][0]["promoted_by"], "agent:a");
    assert_eq!(v["items"][0]["sources"][0]["event_id"], source.as_str());

    // An operator deprecates it, once; search no longer returns it.
    let (s, v) = call(&app, "POST", &format!("/v1/memory/{item}/deprecate"), op, Some(r#"{"reason":"moved"}"#)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&app, "POST", &format!("/v1/memory/{item}/invalidate"), op, Some(r#"{"reason":"x"}"#)).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ICE-E1003"), "{v}");
    let (_, r) = call(&app, "POST", "/v1/memory/search", agent, Some(&q)).await;
    assert_eq!(r["items"], json!([]), "{r}");
    let (s, v) = call(&app, "POST", &format!("/v1/memory/{item}/forget"), op, Some(r#"{"reason":"x"}"#)).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}
