//! The happy path: init, runs through their lifecycle, log, inspect, verify.

use serde_json::Value;

use crate::{Ice, stderr, stdout};

const ENVELOPE: &[&str] =
    &["seq", "event_id", "run_id", "kind", "origin", "time", "time_us", "causes", "payload", "prev_hash", "hash"];

#[test]
fn init_run_lifecycle_log_verify() {
    let ice = Ice::init();
    let run = ice.create_run();
    for expected in ["PROVISIONED", "CONTEXT_READY", "EXECUTING"] {
        let out = ice.ok(&["run", "advance", &run, "--json"]);
        let v: Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["state"], expected);
    }
    // COMMITTED only through `run finish` (VALIDATING, then COMMITTED once every effect completed).
    ice.ok(&["run", "finish", &run]);
    let out = ice.ok(&["run", "advance", &run, "--json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["state"], "TERMINATED");
    let verify = ice.ok(&["verify"]);
    // init (ledger, policy, its first signed checkpoint), the run and its transitions
    assert!(verify.starts_with("ok: 10 events"), "{verify}");
    assert!(verify.contains("1 signed checkpoint(s) verified"), "{verify}");

    let events = ice.events();
    assert_eq!(events.len(), 10);
    for (i, e) in events.iter().enumerate() {
        for field in ENVELOPE {
            assert!(e.get(field).is_some(), "event {i} lacks {field}: {e}");
        }
        assert_eq!(e["seq"], i as u64 + 1);
        if i > 0 {
            assert_eq!(e["prev_hash"], events[i - 1]["hash"], "chain link at {i}");
        }
    }
    assert_eq!(events[0]["kind"], "LedgerInitialized");
    assert_eq!(events[1]["kind"], "PolicyActivated");
    assert_eq!(events[2]["kind"], "Checkpoint");
    assert_eq!(events[3]["kind"], "RunCreated");
    assert_eq!(events[9]["payload"]["to"], "TERMINATED");

    // Filters.
    let by_kind = ice.ok(&["log", "--json", "--kind", "RunTransitioned"]);
    assert_eq!(by_kind.lines().count(), 6);
    let by_run = ice.ok(&["log", "--json", "--run", &run[run.len() - 8..]]);
    assert_eq!(by_run.lines().count(), 7);
    let since = ice.ok(&["log", "--json", "--since", "9"]);
    assert_eq!(since.lines().count(), 2);
    let since_age = ice.ok(&["log", "--json", "--since", "1h"]);
    assert_eq!(since_age.lines().count(), 10);
    let limited = ice.ok(&["log", "--json", "--limit", "3"]);
    assert_eq!(limited.lines().next().map(|l| l.contains("\"seq\":8")), Some(true), "{limited}");
    let table = ice.ok(&["log"]);
    assert!(table.contains("RunTransitioned") && table.contains("SEQ"), "{table}");

    // Inspect an event and a run.
    let id = events[4]["event_id"].as_str().unwrap();
    let shown = ice.ok(&["inspect", id]);
    assert!(shown.contains("RunTransitioned") && shown.contains("PROVISIONED"), "{shown}");
    let shown = ice.ok(&["inspect", &run]);
    assert!(shown.contains("TERMINATED") && shown.contains("history (7 events)"), "{shown}");
    let missing = ice.run(&["inspect", "01900000-0000-7000-8000-000000000000"]);
    assert_eq!(missing.status.code(), Some(4), "{}", stderr(&missing));

    let list = ice.ok(&["run", "list", "--json"]);
    assert!(list.contains("\"state\":\"TERMINATED\""), "{list}");
}

#[test]
fn illegal_transitions_are_refused_and_recorded() {
    let ice = Ice::init();
    // `run advance` never commits a run: that is `run finish`'s, which checks the effects.
    let validating = ice.create_run();
    for _ in 0..4 {
        ice.ok(&["run", "advance", &validating]);
    }
    for args in [vec!["run", "advance", &validating], vec!["run", "advance", &validating, "--to", "COMMITTED"]] {
        let out = ice.run(&args);
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        assert!(stderr(&out).contains("ICE-E0201") && stderr(&out).contains("run finish"), "{}", stderr(&out));
    }
    let finished = ice.ok(&["run", "finish", &validating]);
    assert!(finished.contains("COMMITTED"), "{finished}");
    let ice = Ice::init();
    let run = ice.create_run();
    let out = ice.run(&["run", "advance", &run, "--to", "EXECUTING"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("ICE-E0201"), "{}", stderr(&out));
    assert!(stderr(&out).contains("recorded: TransitionRejected"), "{}", stderr(&out));

    // Terminating early needs a reason.
    let out = ice.run(&["run", "terminate", &run]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("ICE-E0203"), "{}", stderr(&out));
    ice.ok(&["run", "terminate", &run, "--reason", "no longer needed"]);

    // Nothing may happen to a terminated run.
    let out = ice.run(&["run", "advance", &run]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("ICE-E0202"), "{}", stderr(&out));

    let kinds: Vec<String> = ice.events().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        kinds,
        [
            "LedgerInitialized",
            "PolicyActivated",
            "Checkpoint",
            "RunCreated",
            "TransitionRejected",
            "TransitionRejected",
            "RunTransitioned",
            "TransitionRejected"
        ]
    );
    ice.ok(&["verify"]);
}

#[test]
fn init_twice_and_missing_home_are_clear_errors() {
    let ice = Ice::init();
    let again = std::process::Command::new(crate::bin()).arg("init").arg(ice.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(3));
    assert!(stderr(&again).contains("ICE-E0402"), "{}", stderr(&again));

    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::bin()).arg("--dir").arg(empty.path()).arg("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("ICE-E0401") && stderr(&out).contains("hint:"), "{}", stderr(&out));
}

#[test]
fn follow_prints_new_events() {
    use std::io::{BufRead, BufReader};
    let ice = Ice::init();
    let mut child = std::process::Command::new(crate::bin())
        .arg("--dir")
        .arg(ice.path())
        .args(["log", "--json", "--follow"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("LedgerInitialized"), "{first}");
    let run = ice.create_run();
    let next =
        lines.map_while(Result::ok).find(|l| !l.contains("PolicyActivated") && !l.contains("\"Checkpoint\"")).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(next.contains("RunCreated") && next.contains(&run), "{next}");
}

#[test]
fn demo_runs_end_to_end() {
    let out = std::process::Command::new(crate::bin()).arg("demo").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "ICE-E0120",
        "ICE-E0101",
        "ICE-E0110",
        "ICE-E0140",
        "ICE-E0201",
        "DENY fs.write",
        "no_grant",
        "ALLOW fs.write",
        "policy_forbid",
        "budget_exceeded",
        "REQUIRE_APPROVAL fs.delete",
        // The effect boundary: executed, single use, args swap refused, rollback restored the file.
        "EffectStarted seq",
        "ICE-E0802",
        "ICE-E0804",
        "recorded as EffectRefused",
        "fs.delete file:reports/q3.md undone by effect",
        "reports/q3.md is back: \"Q3: revenue up 4%\\n\"",
        "COMMITTED (all 2 effect(s) completed)",
        "replayed root == live root",
        // Credentials: tokens issued, a refused self-approval (by token and by an operator acting for the agent),
        // then an approval by a real approver.
        "agent:planner (agent): token",
        "human:reviewer (approver): token",
        "ICE-E0120] agent:planner may not emit ApprovalGranted",
        "acting for agent:planner, tries the same: refused",
        "human:reviewer (approver token) approves",
        // The agent loop on the scripted model: a governed model call per step, the forbidden write denied and
        // told to the model, tokens settled from the reported usage.
        "write_file → fs.write file:reports/secrets/brief.md: deny",
        "→ finished: The brief is in reports/q3-brief.md.",
        "agent:agent:planner/tokens: 578 of 1000 spent",
        "ok: 149 events, 2 signed checkpoint(s)",
    ] {
        assert!(text.contains(needle), "demo output lacks {needle}:\n{text}");
    }
}

/// Runs `ice ARGS` (no home needed), asserts it succeeded and returns what it printed.
fn ice_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(crate::bin()).args(args).output().unwrap();
    let text = crate::stdout(&out);
    assert!(out.status.success(), "ice {args:?}: {text}{}", crate::stderr(&out));
    text
}

/// `ice bench propose` runs end to end (briefly) and reports a durable rate, its ratio to the in-memory decide
/// rate, and how many decisions shared each commit; bad levels are refused with a code.
#[test]
fn bench_propose_reports_durable_rate_against_in_memory() {
    let text = ice_ok(&["bench", "propose", "--agents", "1,4", "--seconds", "0.3"]);
    assert!(text.contains("in-memory decide"), "{text}");
    assert_eq!(text.matches("RATIO durable / in-memory").count(), 2, "{text}");
    assert!(text.contains("decisions per commit"), "{text}");
    assert!(text.contains("checkpoints in a housekeeping thread"), "{text}");
    let text = ice_ok(&["bench", "propose", "--agents", "2", "--seconds", "0.2", "--checkpoints", "inline"]);
    assert!(text.contains("checkpoints inline"), "{text}");
    let bad = std::process::Command::new(crate::bin()).args(["bench", "propose", "--agents", "0"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(crate::stderr(&bad).contains("ICE-E"), "{}", crate::stderr(&bad));
}

/// `ice bench history` grows a ledger and reports memory and the latency of read commands run as fresh processes
/// (briefly here); the commands it measures succeed against the ledger it grew.
#[test]
fn bench_history_reports_memory_and_command_latency() {
    let text = ice_ok(&["bench", "history", "--events", "600", "--points", "2", "--agents", "2"]);
    assert!(text.contains("log --limit 20"), "{text}");
    assert!(text.contains("RATIO last / first point"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 2, "{text}");
}

/// The proof benchmarks and the multi-instance propose benchmark run end to end on small ledgers, so a change that
/// breaks their generators (as the trust model once did, silently) fails here rather than when figures are due.
#[test]
fn proof_and_instance_benchmarks_run() {
    let run = ice_ok;
    let replay = run(&["bench", "replay", "--events", "3000", "--proposals", "30"]);
    assert!(replay.contains("= live root"), "{replay}");
    let verify = run(&["bench", "verify", "--events", "3000"]);
    assert!(verify.contains("ratio verify / raw blake3"), "{verify}");
    let instances = run(&["bench", "propose", "--instances", "1,2", "--agents", "2", "--seconds", "0.3"]);
    assert_eq!(instances.matches("RATIO durable / in-memory").count(), 2, "{instances}");
    assert!(instances.contains("2 instance(s):"), "{instances}");
}
