//! The web console in a real browser: Debian's chromium, headless, driven by playwright-core from npm
//! (`tests-support/console`, installed by `scripts/test`) against a real `ice serve`. The browser logs in with an
//! approver token, sees an agent's approval appear live with its exact args and the args hash, approves it, sees
//! the effect's outcome arrive on the timeline without reloading, denies another, and an auditor's token gets no
//! approve button and a 403 from the API. Screenshots are kept in `target/console-screenshots/`. On a ledger of
//! 100,000 events the time to the first rendered event and to scroll the timeline are measured and printed.

use std::path::PathBuf;
use std::process::Command;

use super::serve::serve;
use crate::Ice;

/// The playwright-core package of `tests-support/console`.
fn driver() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-support/console");
    assert!(
        root.join("node_modules/playwright-core/package.json").exists(),
        "{} lacks playwright-core: run `npm ci --prefix tests-support/console` (scripts/test does)",
        root.display()
    );
    root.join("e2e.mjs")
}

/// Debian's chromium.
fn chromium() -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (scripts/test does)"
    );
    chromium
}

/// Where screenshots are kept.
fn shots() -> PathBuf {
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Runs the browser script against `ice serve` on `ice` with `env`; returns its stdout (asserting success).
fn browse(ice: &Ice, env: &[(&str, &str)]) -> String {
    let (child, addr, drain) = serve(ice);
    let mut cmd = Command::new("node");
    cmd.arg(driver()).env("ICE_URL", format!("http://{addr}")).env("SHOTS", shots()).env("CHROMIUM", chromium());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    super::serve::sigterm(child.id());
    let mut child = child;
    let _ = child.wait();
    let logs = drain.join().unwrap_or_default();
    assert!(
        out.status.success(),
        "the browser test failed:\n{}{}\nserver log tail:\n{}",
        crate::stdout(&out),
        crate::stderr(&out),
        logs.iter().rev().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    crate::stdout(&out)
}

/// A memory item promoted by `agent:writer` (in a run of its own) from an executed write; `agent:writer` may read
/// the namespace. Returns the item id.
fn promoted_memory(ice: &Ice) -> String {
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "fs.write", "--resource", "file:notes/"]);
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "memory.*", "--resource", "memory:team"]);
    let run = ice.executing_run();
    let json = |out: String| -> serde_json::Value { serde_json::from_str(out.trim()).unwrap() };
    let d = json(ice.ok(&[
        "propose",
        "--as",
        "agent:writer",
        "--run",
        &run,
        "--action",
        "fs.write",
        "--resource",
        "file:notes/where.md",
        "--args",
        r#"{"path":"notes/where.md","content":"release notes: wiki"}"#,
        "--json",
    ]));
    let out = json(ice.ok(&["exec", "--as", "agent:writer", d["permit_id"].as_str().unwrap(), "--json"]));
    let c = json(ice.ok(&[
        "memory",
        "propose",
        "--as",
        "agent:writer",
        "--run",
        &run,
        "--namespace",
        "team/docs",
        "--text",
        "Release notes go to the team wiki.",
        "--source",
        out["outcome_id"].as_str().unwrap(),
        "--json",
    ]));
    let p = json(ice.ok(&["memory", "promote", c["candidate_id"].as_str().unwrap(), "--as", "agent:writer", "--json"]));
    p["item_id"].as_str().unwrap().to_owned()
}

#[test]
fn the_console_answers_approvals_on_the_exact_args_in_a_real_browser() {
    let ice = Ice::init();
    std::fs::create_dir_all(ice.path().join("sandbox/notes")).unwrap();
    for f in ["old.md", "keep.md", "third.md"] {
        std::fs::write(ice.path().join("sandbox/notes").join(f), "note\n").unwrap();
    }
    let agent = ice.token("agent:writer", "agent");
    let approver = ice.token("human:carol", "approver");
    let auditor = ice.token("human:dana", "auditor");
    let operator = ice.token("human:olga", "operator");
    ice.ok(&["grant", "issue", "--to", "agent:writer", "--action", "fs.delete", "--resource", "file:notes/"]);
    // The operator's rollback proposes the compensations as its own proposals: it needs a grant like anyone.
    ice.ok(&["grant", "issue", "--to", "human:olga", "--action", "fs.restore", "--resource", "file:notes/"]);
    let run = ice.executing_run();
    let item = promoted_memory(&ice);
    // A witness has cosigned the latest checkpoint; the server is told where its state is.
    let witness = tempfile::tempdir().unwrap();
    let state = witness.path().join("witness.json");
    ice.ok(&["witness", "--state", state.to_str().unwrap()]);
    let config = ice.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let line = format!("otlp_service_name = \"ice\"\nwitness_state = {:?}", state.to_str().unwrap());
    std::fs::write(&config, text.replace("otlp_service_name = \"ice\"", &line)).unwrap();
    let args = [
        ("AGENT_TOKEN", agent.as_str()),
        ("APPROVER_TOKEN", &approver),
        ("AUDITOR_TOKEN", &auditor),
        ("OPERATOR_TOKEN", &operator),
        ("RUN", &run),
        ("MEMORY_ITEM", &item),
    ];
    browse(&ice, &args);
    let shots = shots();
    for shot in ["approval.png", "timeline.png", "run.png", "policy.png"] {
        assert!(shots.join(shot).metadata().is_ok_and(|m| m.len() > 1000), "no screenshot {shot}");
    }
    // The bundle the operator downloaded verifies offline against the ledger's key.
    let key = ice.ok(&["key"]).trim().to_owned();
    let bundle = shots.join("bundle.ndjson");
    ice.ok(&["verify", "--bundle", bundle.to_str().unwrap(), "--trust-key", &key]);
    // The approved delete ran, and the operator's rollback from the console restored the file.
    let restored = std::fs::read_to_string(ice.path().join("sandbox/notes/old.md")).unwrap();
    assert_eq!(restored, "note\n");
    let events = ice.events();
    assert!(events.iter().any(|e| {
        e["kind"] == "EffectCompleted"
            && events
                .iter()
                .any(|s| s["event_id"] == e["payload"]["started_id"] && s["payload"]["action"] == "fs.delete")
    }));
    assert!(ice.path().join("sandbox/notes/keep.md").exists(), "the denied delete did not run");
}

#[test]
fn the_timeline_paints_and_scrolls_on_a_ledger_of_100k_events() {
    let ice = Ice::init();
    let auditor = ice.token("human:dana", "auditor");
    ice.ok(&["debug", "append-load", "--events", "100000", "--threads", "4"]);
    let said = browse(&ice, &[("MODE", "big"), ("AUDITOR_TOKEN", &auditor), ("MIN_HEAD", "100000")]);
    let line = said.lines().find(|l| l.starts_with("first paint:")).unwrap_or_else(|| panic!("no measurement: {said}"));
    // Reported, not judged: figures live in BENCHMARKS.md; the bound only catches a console that loads the
    // whole ledger.
    println!("console on 100k events: {line}");
    let ms: u64 = line["first paint: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(ms < 20_000, "first paint took {ms} ms on 100k events");
}
