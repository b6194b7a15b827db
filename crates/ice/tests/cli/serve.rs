//! `ice serve` as users run it: the real binary on a loopback port, stopped by SIGTERM; `ice bench serve` and
//! `ice serve --openapi`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::Ice;

/// One request on its own connection: (status, body as JSON).
fn http(addr: &str, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Starts `ice serve` on a free loopback port; returns the child, its address and a thread collecting its logs.
fn serve(ice: &Ice) -> (std::process::Child, String, std::thread::JoinHandle<Vec<String>>) {
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
        if let Some(a) = line.strip_prefix("ice serve: listening on http://") {
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
fn sigterm(pid: u32) -> bool {
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
