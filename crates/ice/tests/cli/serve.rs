//! `ice serve` as users run it: the real binary on a loopback port, stopped by SIGTERM; `ice bench serve` and
//! `ice serve --openapi`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Ice;

/// One request on its own connection: (status, body as JSON).
pub(crate) fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    http_with(addr, method, path, token, body, "")
}

/// [`http`] with extra header lines (each ending in `\r\n`).
fn http_with(addr: &str, method: &str, path: &str, token: &str, body: &str, headers: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    // A body that is not one JSON value (an audit bundle's JSON lines) comes back as a string.
    (status, serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned())))
}

/// Starts `ice serve` on a free loopback port; returns the child, its address and a thread collecting its logs.
pub(crate) fn serve(ice: &Ice) -> (std::process::Child, String, std::thread::JoinHandle<Vec<String>>) {
    let mut child = Command::new(crate::bin())
        .args(["--dir", ice.path().to_str().unwrap(), "serve", "--listen", "127.0.0.1:0", "--log-json"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = Instant::now();
    let addr = loop {
        let line = lines.next().expect("ice serve printed its address").unwrap();
        let served = line.strip_prefix("ice serve: listening on http://");
        if let Some(a) = served.or_else(|| line.strip_prefix("ice serve: listening on https://")) {
            break a.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "not ready in time");
    };
    // Logs are JSON lines with --log-json; drain them so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    (child, addr, drain)
}

#[test]
fn serve_answers_over_http_and_stops_cleanly_on_sigterm() {
    let ice = Ice::init();
    let run = ice.executing_run();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.write", "--resource", "file:notes/"]);
    let agent = ice.token("agent:a", "agent");
    let (mut child, addr, drain) = serve(&ice);
    let (s, me) = http(&addr, "GET", "/v1/whoami", &agent, "");
    assert_eq!((s, me["principal"].as_str()), (200, Some("agent:a")), "{me}");
    let body = serde_json::json!({"run": run, "action": "fs.write", "resource": "file:notes/s.txt",
        "args": {"path": "notes/s.txt", "content": "served"}})
    .to_string();
    let (s, d) = http(&addr, "POST", "/v1/proposals", &agent, &body);
    assert_eq!((s, d["verdict"].as_str()), (200, Some("allow")), "{d}");
    let (s, out) = http(&addr, "POST", &format!("/v1/permits/{}/exec", crate::permit_of(&d)), &agent, "");
    assert_eq!((s, out["status"].as_str()), (200, Some("completed")), "{out}");
    assert!(sigterm(child.id()), "SIGTERM delivered");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "ice serve did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let logs = drain.join().unwrap();
    assert!(logs.iter().any(|l| l.contains("final checkpoint")), "{logs:?}");
    assert!(logs.iter().filter(|l| l.starts_with('{')).all(|l| serde_json::from_str::<Value>(l).is_ok()), "{logs:?}");
    // What the server acknowledged is in the ledger, covered by the final checkpoint; it verifies and replays.
    let events = ice.events();
    assert_eq!(events.last().unwrap()["kind"], "Checkpoint");
    assert!(events.iter().any(|e| e["kind"] == "EffectCompleted"));
    ice.ok(&["verify"]);
    ice.ok(&["replay"]);
}

/// Sends SIGTERM with the `kill` command (as an operator or a service manager would).
pub(crate) fn sigterm(pid: u32) -> bool {
    Command::new("kill").args(["-TERM", &pid.to_string()]).status().is_ok_and(|s| s.success())
}

#[test]
fn serve_refuses_a_busy_port_with_a_code() {
    let ice = Ice::init();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = ice.run(&["serve", "--listen", &addr]);
    assert!(!out.status.success());
    assert!(crate::stderr(&out).contains("ICE-E0403"), "{}", crate::stderr(&out));
}

#[test]
fn openapi_document_and_bench_serve_run() {
    let out = Command::new(crate::bin()).args(["serve", "--openapi"]).output().unwrap();
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["paths"]["/v1/proposals"]["post"].is_object(), "{doc}");
    let out = Command::new(crate::bin())
        .args(["bench", "serve", "--rates", "100", "--clients", "2", "--seconds", "0.3"])
        .output()
        .unwrap();
    let text = crate::stdout(&out);
    assert!(out.status.success(), "{text}{}", crate::stderr(&out));
    assert!(text.contains("RATIO http p50 / in-process p50"), "{text}");
    assert!(text.contains("offered   100/s"), "{text}");
}

/// `ice --server URL --token T` runs the everyday commands against the server, as the token's principal.
#[test]
fn the_cli_works_against_a_remote_server() {
    let ice = Ice::init();
    let (operator, agent) = (ice.token("human:ops", "operator"), ice.token("agent:a", "agent"));
    let approver = ice.token("human:boss", "approver");
    let (mut child, addr, _logs) = serve(&ice);
    let url = format!("http://{addr}");
    // Run from another directory: no home is needed.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = |token: &str, args: &[&str]| {
        Command::new(crate::bin())
            .current_dir(elsewhere.path())
            .env_remove("ICE_DIR")
            .args(["--server", &url, "--token", token])
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |token: &str, args: &[&str]| {
        let out = remote(token, args);
        assert!(out.status.success(), "ice {args:?}: {}{}", crate::stdout(&out), crate::stderr(&out));
        crate::stdout(&out)
    };
    let run: Value = serde_json::from_str(ok(&operator, &["run", "create", "--label", "remote"]).trim()).unwrap();
    let run = run["run_id"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        ok(&operator, &["run", "advance", &run]);
    }
    ok(&operator, &["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:notes/"]);
    let args = r#"{"path":"notes/r.txt","content":"remote"}"#;
    let d = ok(
        &agent,
        &["propose", "--run", &run, "--action", "fs.write", "--resource", "file:notes/r.txt", "--args", args],
    );
    let d: Value = serde_json::from_str(d.trim()).unwrap();
    assert_eq!(d["verdict"], "allow");
    let out: Value = serde_json::from_str(ok(&agent, &["exec", d["permit_id"].as_str().unwrap()]).trim()).unwrap();
    assert_eq!(out["status"], "completed");
    // An irreversible delete waits for a human; the approver answers from the CLI.
    let del = r#"{"path":"notes/r.txt"}"#;
    let out = remote(
        &agent,
        &["propose", "--run", &run, "--action", "fs.delete", "--resource", "file:notes/r.txt", "--args", del],
    );
    assert_eq!(out.status.code(), Some(7), "approval required: {}", crate::stdout(&out));
    let pending: Value = serde_json::from_str(ok(&approver, &["approvals", "list"]).trim()).unwrap();
    let id = pending["approval_id"].as_str().unwrap();
    let hash = pending["request"]["args_hash"].as_str().unwrap();
    let answer: Value = serde_json::from_str(ok(&approver, &["approve", id, "--args-hash", hash]).trim()).unwrap();
    ok(&agent, &["exec", answer["permit_id"].as_str().unwrap()]);
    assert!(!ice.path().join("sandbox/notes/r.txt").exists());
    let log = ok(&operator, &["log", "--limit", "3"]);
    assert_eq!(log.lines().count(), 3, "{log}");
    // --follow polls the server: a run created meanwhile shows up.
    {
        use std::io::BufRead;
        let mut follower = Command::new(crate::bin())
            .current_dir(elsewhere.path())
            .env_remove("ICE_DIR")
            .args(["--server", &url, "--token", &operator, "log", "--limit", "1", "--follow"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(follower.stdout.take().unwrap()).lines();
        lines.next().unwrap().unwrap();
        let created: Value =
            serde_json::from_str(ok(&operator, &["run", "create", "--label", "followed"]).trim()).unwrap();
        let id = created["run_id"].as_str().unwrap();
        let seen = lines.map_while(Result::ok).find(|l| l.contains("RunCreated")).unwrap();
        assert!(seen.contains(id), "{seen}");
        follower.kill().unwrap();
        follower.wait().unwrap();
    }
    let v: Value = serde_json::from_str(ok(&operator, &["verify"]).trim()).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    // Policy travels as text: the local directory is read and sent.
    let policies = ice.path().join(".ice/policies");
    let policies = policies.to_str().unwrap();
    ok(&agent, &["policy", "validate", policies]);
    let out = remote(&operator, &["what-if", "--policies", policies]);
    assert_eq!(out.status.code(), Some(0), "the active set changes nothing: {}", crate::stderr(&out));
    // Refusals keep their codes and exit codes; the principal is the token's, never --as.
    let out = remote(&agent, &["run", "create"]);
    assert_eq!(out.status.code(), Some(3), "{}", crate::stderr(&out));
    assert!(crate::stderr(&out).contains("ICE-E0"), "{}", crate::stderr(&out));
    let out = remote(&operator, &["run", "create", "--as", "agent:a"]);
    assert!(crate::stderr(&out).contains("ICE-E0906"), "{}", crate::stderr(&out));
    let out = remote("ice_bogus", &["run", "list"]);
    assert!(crate::stderr(&out).contains("ICE-E0902"), "{}", crate::stderr(&out));
    let out = remote(&operator, &["replay"]);
    assert!(crate::stderr(&out).contains("not available with --server"), "{}", crate::stderr(&out));
    let out =
        Command::new(crate::bin()).args(["--server", &url, "run", "list"]).env_remove("ICE_TOKEN").output().unwrap();
    assert!(crate::stderr(&out).contains("ICE-E0901"), "{}", crate::stderr(&out));
    assert!(sigterm(child.id()));
    assert!(child.wait().unwrap().success());
}

/// What the collector received: (path, content type, body).
type Posts = std::sync::Arc<std::sync::Mutex<Vec<(String, String, Value)>>>;

/// A stand-in OTLP/HTTP collector (no OpenTelemetry collector can be installed here): accepts POSTs, answers 200,
/// keeps (path, content type, body).
fn collector() -> (String, Posts) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let mut reader = BufReader::new(conn);
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let (mut length, mut content_type) = (0usize, String::new());
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap(),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
            keep.lock().unwrap().push((path, content_type, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        }
    });
    (addr, got)
}

/// With `[server] otlp_endpoint`, each request is a server span in the caller's trace (W3C `traceparent`), with
/// the principal, run and proposal ids as attributes and the runtime call as its child; the last spans are sent
/// at shutdown.
#[test]
fn request_spans_are_exported_over_otlp_with_the_ids_as_attributes() {
    let ice = Ice::init();
    let (collector, got) = collector();
    let config = ice.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let otlp = format!("otlp_endpoint = \"http://{collector}\"\notlp_service_name = \"ice-test\"");
    assert!(text.contains("otlp_service_name = \"ice\""), "{text}");
    std::fs::write(&config, text.replace("otlp_service_name = \"ice\"", &otlp)).unwrap();
    let run = ice.executing_run();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.write", "--resource", "file:notes/"]);
    let agent = ice.token("agent:a", "agent");
    let (mut child, addr, _logs) = serve(&ice);
    let body = serde_json::json!({"run": run, "action": "fs.write", "resource": "file:notes/t.txt",
        "args": {"path": "notes/t.txt", "content": "traced"}})
    .to_string();
    let (trace, parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let tp = format!("traceparent: 00-{trace}-{parent}-01\r\n");
    let (s, d) = http_with(&addr, "POST", "/v1/proposals", &agent, &body, &tp);
    assert_eq!(s, 200, "{d}");
    assert!(sigterm(child.id()));
    assert!(child.wait().unwrap().success());
    let got = got.lock().unwrap().clone();
    assert!(!got.is_empty(), "nothing was exported");
    let mut spans = Vec::new();
    for (path, content_type, body) in &got {
        assert_eq!((path.as_str(), content_type.as_str()), ("/v1/traces", "application/json"));
        let resource = &body["resourceSpans"][0];
        assert_eq!(resource["resource"]["attributes"][0]["value"]["stringValue"], "ice-test", "{body}");
        spans.extend(resource["scopeSpans"][0]["spans"].as_array().unwrap().iter().cloned());
    }
    let attr = |span: &Value, key: &str| -> Value {
        let found = span["attributes"].as_array().unwrap().iter().find(|a| a["key"] == key);
        found.map_or(Value::Null, |a| a["value"].clone())
    };
    let request = spans.iter().find(|s| s["name"] == "POST /v1/proposals").unwrap_or_else(|| panic!("{spans:?}"));
    assert_eq!((request["traceId"].as_str(), request["parentSpanId"].as_str()), (Some(trace), Some(parent)));
    assert_eq!(request["kind"], 2, "a server span");
    assert_eq!(attr(request, "ice.proposal_id")["stringValue"], d["proposal_id"], "{request}");
    assert_eq!(attr(request, "ice.run_id")["stringValue"], run.as_str(), "{request}");
    assert_eq!(attr(request, "ice.principal")["stringValue"], "agent:a", "{request}");
    assert_eq!(attr(request, "http.response.status_code")["intValue"], "200", "{request}");
    let start: u128 = request["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = request["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(end >= start && start > 0);
    let runtime = spans
        .iter()
        .find(|s| s["name"] == "runtime" && s["parentSpanId"] == request["spanId"])
        .unwrap_or_else(|| panic!("the runtime call is a child of the request: {spans:?}"));
    assert_eq!(runtime["traceId"], trace);
}

/// With `[server] tls_cert` / `tls_key`, `ice serve` speaks HTTPS only, and `ice --server https://…` reaches it
/// trusting the certificate given with `--ca-cert`; without it (the system bundle) the self-signed certificate
/// is refused.
#[test]
fn serve_speaks_https_with_a_configured_certificate() {
    let ice = Ice::init();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    std::fs::write(ice.path().join(".ice/cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(ice.path().join(".ice/key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let config = ice.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let tls = "otlp_service_name = \"ice\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"";
    std::fs::write(&config, text.replace("otlp_service_name = \"ice\"", tls)).unwrap();
    let operator = ice.token("human:ops", "operator");
    let (mut child, addr, _logs) = serve(&ice);
    let ca = ice.path().join(".ice/cert.pem");
    let remote = |url: &str, extra: &[&str]| {
        Command::new(crate::bin())
            .env_remove("ICE_DIR")
            .args(["--server", url, "--token", &operator])
            .args(extra)
            .args(["run", "create", "--label", "over tls"])
            .output()
            .unwrap()
    };
    let out = remote(&format!("https://{addr}"), &["--ca-cert", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", crate::stdout(&out), crate::stderr(&out));
    assert!(crate::stdout(&out).contains("run_id"), "{}", crate::stdout(&out));
    // The name in the URL must be one the certificate carries.
    let port = addr.rsplit_once(':').unwrap().1;
    let out = remote(&format!("https://localhost:{port}"), &["--ca-cert", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    // Not trusted by the system bundle; and plain HTTP gets no answer from a TLS port.
    let out = remote(&format!("https://{addr}"), &[]);
    assert!(!out.status.success());
    assert!(crate::stderr(&out).to_lowercase().contains("certificate"), "{}", crate::stderr(&out));
    let out = remote(&format!("http://{addr}"), &[]);
    assert!(!out.status.success(), "{}", crate::stdout(&out));
    // Still serving after the failed handshakes.
    let out = remote(&format!("https://{addr}"), &["--ca-cert", ca.to_str().unwrap()]);
    assert!(out.status.success(), "{}", crate::stderr(&out));
    assert!(sigterm(child.id()));
    assert!(child.wait().unwrap().success());
    // A key without its certificate is a configuration error with a code, before anything listens.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("tls_cert = \"cert.pem\"\n", "")).unwrap();
    let out = ice.run(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(crate::stderr(&out).contains("tls_cert and tls_key go together"), "{}", crate::stderr(&out));
}

/// With `[server] witness_state`, `GET /v1/verify` also checks the checkpoint a witness cosigned, and says which;
/// a state whose cosignature does not verify makes the answer a failure with its code.
#[test]
fn verify_over_the_api_checks_a_configured_witness() {
    let ice = Ice::init();
    let elsewhere = tempfile::tempdir().unwrap();
    let state = elsewhere.path().join("witness.json");
    ice.ok(&["checkpoint"]);
    ice.ok(&["witness", "--state", state.to_str().unwrap()]);
    let config = ice.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let line = format!("otlp_service_name = \"ice\"\nwitness_state = {:?}", state.to_str().unwrap());
    std::fs::write(&config, text.replace("otlp_service_name = \"ice\"", &line)).unwrap();
    let auditor = ice.token("human:audit", "auditor");
    let (mut child, addr, _logs) = serve(&ice);
    let (status, v) = http(&addr, "GET", "/v1/verify", &auditor, "");
    assert_eq!((status, &v["ok"]), (200, &Value::Bool(true)), "{v}");
    let seq = v["witness"]["cosigned_seq"].as_u64().expect("the witness is reported");
    assert!(seq >= 1, "{v}");
    // An exported bundle carries the witness's cosignature of that checkpoint.
    let (status, bundle) = http(&addr, "GET", "/v1/export?from=1&to=1", &auditor, "");
    assert_eq!(status, 200, "{bundle}");
    let last = bundle.as_str().unwrap().lines().last().unwrap().to_owned();
    let cosignature: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(
        (&cosignature["type"], &cosignature["checkpoint"]["seq"]),
        (&Value::from("cosignature"), &Value::from(seq))
    );
    // A forged cosignature: the witness check fails, with its code.
    let forged = std::fs::read_to_string(&state).unwrap();
    let sig = serde_json::from_str::<Value>(&forged).unwrap()["logs"].as_object().unwrap().values().next().unwrap()
        ["cosignature"]
        .as_str()
        .unwrap()
        .to_owned();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    std::fs::write(&state, forged.replace(&sig, &flipped)).unwrap();
    let (status, v) = http(&addr, "GET", "/v1/verify", &auditor, "");
    assert_eq!((status, &v["ok"]), (200, &Value::Bool(false)), "{v}");
    assert!(v["code"].as_str().unwrap().starts_with("ICE-E05"), "{v}");
    sigterm(child.id());
    let _ = child.wait();
}
