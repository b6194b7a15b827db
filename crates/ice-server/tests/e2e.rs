//! Through a real socket: the approval loop over HTTP and WebSocket, stream resume without gap or duplicate, and
//! shutdown under load losing nothing acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Fixture;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A running server and the means to stop it.
struct Running {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(f: &Fixture) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = f.server();
    let done = tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    Running { addr, stop, done }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.done).await.expect("drains in time").unwrap().unwrap();
    }
}

/// One HTTP/1.1 request on its own connection; `None` when the connection failed (the server is gone).
async fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: &str) -> Option<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.into() };
    Some((status, serde_json::from_str(&body).unwrap_or(Value::String(body))))
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

async fn stream(addr: SocketAddr, query: &str, token: &str) -> Ws {
    let mut req = format!("ws://{addr}/v1/stream?{query}").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The next event from a stream (within 10 s).
async fn next_event(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("an event in time");
        match msg.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("stream closed: {c:?}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_waits_an_approver_answers_on_the_stream_and_the_outcome_streams_back() {
    let f = Fixture::new();
    let srv = start(&f).await;
    let addr = srv.addr;
    let t = &f.tokens;
    let head = f.head();
    let mut approvals = stream(addr, &format!("channel=approvals&after={head}"), &t.approver).await;
    let mut timeline = stream(addr, &format!("after={head}"), &t.auditor).await;
    // The file the irreversible delete will remove.
    let (s, d) = http(addr, "POST", "/v1/proposals", &t.agent, &f.write_body("e.txt")).await.unwrap();
    assert_eq!(s, 200, "{d}");
    let exec = format!("/v1/permits/{}/exec", d["permit_id"].as_str().unwrap());
    assert_eq!(http(addr, "POST", &exec, &t.agent, "").await.unwrap().0, 200);
    // The agent proposes the delete and waits for a human.
    let waiting = {
        let (token, body) = (t.agent.clone(), f.delete_body("e.txt"));
        tokio::spawn(async move { http(addr, "POST", "/v1/proposals?wait=30", &token, &body).await.unwrap() })
    };
    let asked = next_event(&mut approvals).await;
    assert_eq!(asked["kind"], "ApprovalRequested", "{asked}");
    assert_eq!(asked["payload"]["args"]["path"], "notes/e.txt");
    let approval = asked["event_id"].as_str().unwrap();
    let answer = json!({"args_hash": asked["payload"]["args_hash"], "comment": "ok to delete"}).to_string();
    let (s, v) = http(addr, "POST", &format!("/v1/approvals/{approval}/approve"), &t.approver, &answer).await.unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(next_event(&mut approvals).await["kind"], "ApprovalGranted");
    let (s, waited) = waiting.await.unwrap();
    assert_eq!(s, 200, "{waited}");
    let permit = waited["permit"]["permit_id"].as_str().expect("the waiting request returns the permit");
    let (s, out) = http(addr, "POST", &format!("/v1/permits/{permit}/exec"), &t.agent, "").await.unwrap();
    assert_eq!((s, out["status"].as_str()), (200, Some("completed")), "{out}");
    assert!(!f.dir.path().join("sandbox/notes/e.txt").exists());
    // The auditor's timeline saw everything, in order, ending with the delete's outcome.
    let effect = out["effect_id"].as_str().unwrap();
    let mut last = head;
    loop {
        let e = next_event(&mut timeline).await;
        let seq = e["seq"].as_u64().unwrap();
        assert_eq!(seq, last + 1, "no gap, no duplicate");
        last = seq;
        if e["kind"] == "EffectCompleted" && e["causes"].as_array().unwrap().iter().any(|c| c == effect) {
            break;
        }
    }
    let (s, v) = http(addr, "GET", "/v1/verify", &t.auditor, "").await.unwrap();
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumed_from_its_last_seq_has_no_gap_and_no_duplicate() {
    let f = Fixture::new();
    let srv = start(&f).await;
    let addr = srv.addr;
    let t = &f.tokens;
    let propose = |n: usize| {
        let (token, bodies) = (t.agent.clone(), (0..n).map(|i| f.write_body(&format!("r{i}.txt"))).collect::<Vec<_>>());
        async move {
            for b in bodies {
                assert_eq!(http(addr, "POST", "/v1/proposals", &token, &b).await.unwrap().0, 200);
            }
        }
    };
    propose(10).await;
    let mut seen = Vec::new();
    let mut ws = stream(addr, "after=0", &t.auditor).await;
    for _ in 0..25 {
        seen.push(next_event(&mut ws).await["seq"].as_u64().unwrap());
    }
    // Disconnect mid-stream; more is appended while away.
    drop(ws);
    propose(10).await;
    let last = *seen.last().unwrap();
    let mut ws = stream(addr, &format!("after={last}"), &t.auditor).await;
    let head = f.head();
    while *seen.last().unwrap() < head {
        seen.push(next_event(&mut ws).await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());
    // A filter narrows the stream and still resumes by seq.
    let mut ws = stream(addr, "after=0&kind=DecisionMade", &t.auditor).await;
    let first = next_event(&mut ws).await;
    assert_eq!(first["kind"], "DecisionMade");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_under_load_loses_nothing_that_was_acknowledged() {
    let f = Fixture::new();
    let srv = start(&f).await;
    let addr = srv.addr;
    let stop_at = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut clients = Vec::new();
    for c in 0..32 {
        let (token, bodies) =
            (f.tokens.agent.clone(), (0..10_000).map(|i| f.write_body(&format!("l{c}-{i}.txt"))).collect::<Vec<_>>());
        clients.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for b in bodies {
                match http(addr, "POST", "/v1/proposals", &token, &b).await {
                    Some((200, v)) => acked.push(v["proposal_id"].as_str().unwrap().to_owned()),
                    // Refused while draining or cut off: not acknowledged, so nothing is promised.
                    _ => {
                        if tokio::time::Instant::now() > stop_at {
                            break;
                        }
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep_until(stop_at).await;
    srv.stop().await;
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.unwrap());
    }
    assert!(acked.len() >= 32, "load reached the server: {} acknowledged", acked.len());
    // Restart: a new runtime over the same home finds every acknowledged proposal; verify and replay pass.
    let rt = f.home.open_runtime().unwrap();
    let last = rt.with_state(|s| s.last_checkpoint().map(|m| m.seq.0)).unwrap();
    assert_eq!(Some(rt.started_from().0), last, "restarted from the snapshot of the final checkpoint");
    for id in &acked {
        let e = rt.store().get(id.parse().unwrap()).unwrap();
        assert!(e.is_some_and(|e| e.kind == ice_core::EventKind::ProposalSubmitted), "acknowledged {id} is lost");
    }
    let options = ice_store::VerifyOptions {
        trusted_keys: f.home.pinned_keys().unwrap(),
        from_checkpoint: false,
        witnessed: None,
        from_witnessed: false,
    };
    let summary = ice_store::verify_ledger_signed(&**rt.store(), &options, &mut |_| {}).unwrap().unwrap();
    assert!(summary.checkpoints >= 2, "the shutdown signed a final checkpoint");
    assert_eq!(summary.unsigned_tail, 1, "the final checkpoint covers everything before it");
    let report = rt.replay(&mut |_, _| {}).unwrap();
    assert!(report.divergence.is_none() && report.decision_mismatches.is_empty(), "{report:?}");
    assert_eq!(report.state_root, report.live_root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_is_dropped_not_buffered() {
    let f = Fixture::with(|c| c.stream_send_timeout_secs = 1);
    let srv = start(&f).await;
    let addr = srv.addr;
    let mut ws = stream(addr, &format!("after={}", f.head()), &f.tokens.auditor).await;
    // ~300 proposals of ~30 KB args each: about 10 MB of events, more than loopback socket buffers hold.
    let rt = f.rt.clone();
    let (token, run) = (f.tokens.agent.clone(), f.run.clone());
    let total = tokio::task::spawn_blocking(move || {
        let agent = rt.authenticate(&ice_runtime::Presented::Token { secret: &token, act_as: None }).unwrap();
        let big = "x".repeat(30_000);
        for i in 0..300 {
            let input = ice_runtime::ProposalInput {
                run: Some(run.clone()),
                action: "fs.write".into(),
                resource: format!("file:notes/big{i}.txt"),
                args: json!({"path": format!("notes/big{i}.txt"), "content": big}).to_string(),
                ..Default::default()
            };
            rt.propose(&agent, &input).unwrap();
        }
        rt.store().head().unwrap().unwrap().seq.0
    })
    .await
    .unwrap();
    // The server gives up on this client within its send timeout instead of holding its events in memory.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let app_metrics = http(addr, "GET", "/metrics", "", "").await.unwrap().1;
        if app_metrics.as_str().unwrap().contains("ice_stream_dropped_slow_total 1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slow stream was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Reading now yields what was already in flight, then the end: never every event.
    let mut received = 0u64;
    let mut closed_with = None;
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        match msg {
            Ok(Message::Text(_)) => received += 1,
            Ok(Message::Close(c)) => {
                closed_with = c.map(|c| u16::from(c.code));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(received < total, "received {received} of {total} events: nothing should have been buffered for it");
    assert!(closed_with.is_none_or(|c| c == 4008), "{closed_with:?}");
    // It resumes from its last seq like any client.
    let mut again = stream(addr, "after=0&kind=RunCreated", &f.tokens.auditor).await;
    assert_eq!(next_event(&mut again).await["kind"], "RunCreated");
    srv.stop().await;
}

/// A browser cannot set `Authorization` on a WebSocket: the token rides as the second of the subprotocols
/// `ice-bearer, <token>`, and the handshake names `ice-bearer`. Only an upgrade may carry it that way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_stream_authenticates_by_subprotocol_and_only_an_upgrade_may() {
    let f = Fixture::new();
    let server = start(&f).await;
    let addr = server.addr;
    let mut req = format!("ws://{addr}/v1/stream?after=0").into_client_request().unwrap();
    let offer = format!("ice-bearer, {}", f.tokens.auditor);
    req.headers_mut().insert("sec-websocket-protocol", offer.parse().unwrap());
    let (mut ws, answer) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(answer.headers().get("sec-websocket-protocol").unwrap(), "ice-bearer");
    assert_eq!(next_event(&mut ws).await["seq"], 1, "the stream serves the ledger from its start");

    let mut bad = format!("ws://{addr}/v1/stream").into_client_request().unwrap();
    bad.headers_mut().insert("sec-websocket-protocol", "ice-bearer, ice_not_a_token".parse().unwrap());
    match tokio_tungstenite::connect_async(bad).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a bad token opened a stream: {other:?}"),
    }
    // A plain request cannot use the subprotocol header instead of Authorization.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/events HTTP/1.1\r\nHost: {addr}\r\nSec-WebSocket-Protocol: ice-bearer, {}\r\nConnection: close\r\n\r\n",
        f.tokens.auditor
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 401"), "{}", String::from_utf8_lossy(&raw));
    drop(ws);
    server.stop().await;
}

/// The console is three static files with a strict CSP, served without a token (they hold no data).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let f = Fixture::new();
    let server = start(&f).await;
    for (path, kind) in
        [("/console/", "text/html"), ("/console/console.js", "text/javascript"), ("/console/console.css", "text/css")]
    {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{path}: {text}");
        assert!(text.contains(&format!("content-type: {kind}")), "{path}");
        assert!(text.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{path}");
    }
    let (status, _) = http(server.addr, "GET", "/", "", "").await.unwrap();
    assert_eq!(status, 307, "/ leads to the console");
    server.stop().await;
}
