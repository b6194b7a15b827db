//! Effects over the API that do not hold the request open: `exec` with `"wait": false` answers 202 with a handle
//! once the start is durable; an effect that outlasts the request timeout answers 202 instead of 408; either way
//! the outcome is recorded and readable at `GET /v1/effects/{id}` by its holder and readers only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use common::{Fixture, call, code};
use serde_json::{Value, json};

/// Polls the effect until it has an outcome.
async fn outcome(app: &Router, token: &str, effect: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = call(app, "GET", &format!("/v1/effects/{effect}"), Some(token), None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["status"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "no outcome in time: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_started_without_waiting_is_a_handle_to_its_outcome() {
    let f = Fixture::new();
    let app = f.server().router();
    let (_, d) = call(&app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&f.write_body("bg.txt"))).await;
    let permit = d["permit_id"].as_str().unwrap().to_owned();
    let exec = format!("/v1/permits/{permit}/exec");
    let (s, h) = call(&app, "POST", &exec, Some(&f.tokens.agent), Some(r#"{"wait":false}"#)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{h}");
    let effect = h["effect_id"].as_str().unwrap().to_owned();
    assert_eq!(h["poll"], format!("/v1/effects/{effect}"));
    let done = outcome(&app, &f.tokens.agent, &effect).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["permit_id"], permit.as_str());
    assert!(done["outcome_id"].is_string() && done["evidence"].is_object(), "{done}");
    assert_eq!(std::fs::read_to_string(f.dir.path().join("sandbox/notes/bg.txt")).unwrap(), "hello");
    // The handle is single-use like the permit: a second start is refused, nothing runs.
    let (s, v) = call(&app, "POST", &exec, Some(&f.tokens.agent), Some(r#"{"wait":false}"#)).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "ICE-E0802"), "{v}");
    // Readers see it; another agent does not, and unknown or malformed ids are told apart.
    let (s, v) = call(&app, "GET", &format!("/v1/effects/{effect}"), Some(&f.tokens.auditor), None).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("completed")), "{v}");
    let (s, v) = call(&app, "GET", &format!("/v1/effects/{effect}"), Some(&f.tokens.agent_b), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "ICE-E0905"), "{v}");
    let unknown = f.rt.fresh_event_id();
    let (s, v) = call(&app, "GET", &format!("/v1/effects/{unknown}"), Some(&f.tokens.auditor), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = call(&app, "GET", "/v1/effects/nope", Some(&f.tokens.auditor), None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "ICE-E0405"), "{v}");
    // Once its run ends and a checkpoint retires it from memory, it is read back from the ledger.
    let op = Some(f.tokens.operator.as_str());
    let (s, v) = call(&app, "POST", &format!("/v1/runs/{}/terminate", f.run), op, Some(r#"{"reason":"done"}"#)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = call(&app, "POST", "/v1/checkpoints", op, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let id: ice_core::EventId = effect.parse().unwrap();
    assert!(f.rt.with_state(|s| s.effects().effects().get(&id).is_none()).unwrap(), "retired from memory");
    let again = outcome(&app, &f.tokens.agent, &effect).await;
    assert_eq!(again, done, "the same record, from the ledger");
}

/// A fixture whose agent may run `sh` (process effects ask for approval under the default policy).
fn with_sh(edit: impl FnOnce(&mut ice_runtime::server_config::ServerConfig)) -> Fixture {
    let f = Fixture::with_home(
        |toml| toml.replace("[effects.process]\nallow = []", "[effects.process]\nallow = [\"sh\"]"),
        edit,
    );
    let me = f.rt.authenticate(&ice_runtime::Presented::Local { act_as: None }).unwrap();
    let grant = ice_runtime::GrantInput {
        principal: "agent:a".parse().unwrap(),
        run: None,
        actions: vec!["process.exec".into()],
        resource: "process:".into(),
        ttl_micros: None,
        max_uses: None,
        revocable: true,
    };
    f.rt.issue_grant(&me, &grant).unwrap();
    f
}

/// A permit for `sh -c script`, proposed by the agent and approved by the approver over the API.
async fn sh_permit(f: &Fixture, app: &Router, script: &str) -> String {
    let body = json!({"run": f.run, "action": "process.exec", "resource": "process:sh",
        "args": {"argv": ["sh", "-c", script]}});
    let (_, d) = call(app, "POST", "/v1/proposals", Some(&f.tokens.agent), Some(&body.to_string())).await;
    let approval = d["approval_id"].as_str().unwrap_or_else(|| panic!("approval expected: {d}"));
    let path = format!("/v1/approvals/{approval}/approve");
    let (s, a) = call(app, "POST", &path, Some(&f.tokens.approver), Some("{}")).await;
    assert_eq!(s, StatusCode::OK, "{a}");
    a["permit_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_longer_than_the_request_timeout_answers_with_a_handle() {
    let f = with_sh(|cfg| cfg.request_timeout_secs = 2);
    let app = f.server().router();
    let permit = sh_permit(&f, &app, "sleep 3; echo slow > slow.txt").await;
    let started = Instant::now();
    let (s, h) = call(&app, "POST", &format!("/v1/permits/{permit}/exec"), Some(&f.tokens.agent), Some("{}")).await;
    assert_eq!(s, StatusCode::ACCEPTED, "answered with the handle, not 408: {h}");
    assert!(started.elapsed() < Duration::from_secs(2), "before the request timeout: {:?}", started.elapsed());
    let done = outcome(&app, &f.tokens.agent, h["effect_id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(std::fs::read_to_string(f.dir.path().join("sandbox/slow.txt")).unwrap(), "slow\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_effects_are_bounded_and_refused_before_they_start() {
    let f = with_sh(|cfg| cfg.max_background_effects = 1);
    let app = f.server().router();
    let slow = sh_permit(&f, &app, "sleep 1").await;
    let other = sh_permit(&f, &app, "echo other > other.txt").await;
    let (s, h) =
        call(&app, "POST", &format!("/v1/permits/{slow}/exec"), Some(&f.tokens.agent), Some(r#"{"wait":false}"#)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{h}");
    // The one slot is taken: the second is shed before anything starts.
    let other_exec = format!("/v1/permits/{other}/exec");
    let (s, v) = call(&app, "POST", &other_exec, Some(&f.tokens.agent), None).await;
    assert_eq!((s, code(&v)), (StatusCode::SERVICE_UNAVAILABLE, "ICE-E0914"), "{v}");
    assert_eq!(f.count(ice_core::EventKind::EffectStarted), 1, "the shed exec started nothing");
    assert!(!f.dir.path().join("sandbox/other.txt").exists());
    // Once the slow one has its outcome, the slot is free and the same permit runs.
    outcome(&app, &f.tokens.agent, h["effect_id"].as_str().unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (s, v) = call(&app, "POST", &other_exec, Some(&f.tokens.agent), None).await;
        if s == StatusCode::OK {
            assert_eq!(v["status"], "completed", "{v}");
            break;
        }
        // The slot is released just after the outcome is recorded.
        assert_eq!(code(&v), "ICE-E0914", "{v}");
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.count(ice_core::EventKind::EffectCompleted), 2);
}
