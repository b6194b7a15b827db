//! Shared fixture for server tests: a real `.ice/` home on a real SQLite file, tokens for every role, a run in
//! EXECUTING and a grant letting `agent:a` use `fs.*` under `notes/`; requests in-process through the router
//! (`tower::ServiceExt::oneshot`) or over a real socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::new_without_default, dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use ice_core::Roles;
use ice_runtime::server_config::ServerConfig;
use ice_runtime::{GrantInput, IceHome, Presented, Runtime};
use ice_server::{ProofSettings, Server};
use serde_json::Value;
use tower::ServiceExt;

/// Token secrets by role.
pub struct Tokens {
    /// `agent:a`, agent.
    pub agent: String,
    /// `agent:b`, agent (no grant).
    pub agent_b: String,
    /// `human:boss`, approver.
    pub approver: String,
    /// `human:ops`, operator.
    pub operator: String,
    /// `human:audit`, auditor.
    pub auditor: String,
}

/// A home, its runtime and a server over it.
pub struct Fixture {
    /// The directory holding `.ice/` and `sandbox/`.
    pub dir: tempfile::TempDir,
    /// The home.
    pub home: IceHome,
    /// The one runtime the server serves.
    pub rt: Arc<Runtime>,
    /// Tokens by role.
    pub tokens: Tokens,
    /// The run agents propose in (EXECUTING).
    pub run: String,
    /// `[server]` as the server gets it.
    pub cfg: ServerConfig,
}

impl Fixture {
    /// Defaults, but a generous rate limit (tests send bursts).
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// With `[server]` edited.
    pub fn with(edit: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::with_home(|toml| toml.to_owned(), edit)
    }

    /// With `.ice/config.toml` rewritten by `home` before the runtime opens, and `[server]` edited.
    pub fn with_home(home: impl FnOnce(&str) -> String, edit: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        IceHome::init(dir.path(), None).unwrap();
        let config = dir.path().join(".ice/config.toml");
        std::fs::write(&config, home(&std::fs::read_to_string(&config).unwrap())).unwrap();
        let home = IceHome::discover(Some(dir.path()), dir.path()).unwrap();
        let rt = home.open_runtime().unwrap();
        let me = rt.authenticate(&Presented::Local { act_as: None }).unwrap();
        let token = |p: &str, r: &str| {
            rt.issue_token(&me, &p.parse().unwrap(), r.parse::<Roles>().unwrap(), None, None).unwrap().1
        };
        let tokens = Tokens {
            agent: token("agent:a", "agent"),
            agent_b: token("agent:b", "agent"),
            approver: token("human:boss", "approver"),
            operator: token("human:ops", "operator"),
            auditor: token("human:audit", "auditor"),
        };
        let run = rt.create_run(&me, Some("server test".into())).unwrap().id;
        for _ in 0..3 {
            rt.advance_run(&me, run, None, None).unwrap();
        }
        let grant = GrantInput {
            principal: "agent:a".parse().unwrap(),
            run: None,
            actions: vec!["fs.*".into()],
            resource: "file:notes/".into(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        rt.issue_grant(&me, &grant).unwrap();
        let mut cfg = ServerConfig { rate_per_token: 10_000, burst_per_token: 10_000, ..ServerConfig::default() };
        edit(&mut cfg);
        Self { dir, home, rt: Arc::new(rt), tokens, run: run.to_string(), cfg }
    }

    /// A server over this fixture's runtime.
    pub fn server(&self) -> Server {
        let proof = ProofSettings {
            trusted_keys: self.home.pinned_keys().unwrap(),
            tail_bound: self.home.config().runtime.unsigned_tail_bound(),
            witness: None,
        };
        Server::new(self.rt.clone(), self.cfg.clone(), proof)
    }

    /// The events of a kind, from the ledger.
    pub fn count(&self, kind: ice_core::EventKind) -> usize {
        let q = ice_store::EventQuery { kind: Some(kind), limit: 100_000, ..Default::default() };
        self.rt.store().read(&q).unwrap().len()
    }

    /// The ledger's head seq.
    pub fn head(&self) -> u64 {
        self.rt.store().head().unwrap().map_or(0, |h| h.seq.0)
    }

    /// An `fs.write` proposal body for `path` under notes/.
    pub fn write_body(&self, path: &str) -> String {
        serde_json::json!({"run": self.run, "action": "fs.write", "resource": format!("file:notes/{path}"),
            "args": {"path": format!("notes/{path}"), "content": "hello"}})
        .to_string()
    }

    /// An `fs.delete` proposal body (irreversible: the default policy asks for approval).
    pub fn delete_body(&self, path: &str) -> String {
        serde_json::json!({"run": self.run, "action": "fs.delete", "resource": format!("file:notes/{path}"),
            "args": {"path": format!("notes/{path}")}})
        .to_string()
    }
}

/// One in-process request; the body parsed as JSON (or `Value::String` when it is not JSON).
pub async fn call(
    router: &Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned()))).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

/// The `code` of an error body.
pub fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}
