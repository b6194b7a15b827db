//! The effect boundary through the real binary: permits, exact args, approvals, crash recovery, rollback,
//! suspension.

use serde_json::Value;

use crate::{Ice, approved_permit, exec_and_kill_at, permit_of, propose_file, stderr, stdout};

/// A fresh home whose agent `agent:a` may use every fs action in the sandbox, with a run EXECUTING.
fn setup() -> (Ice, String) {
    let ice = Ice::init();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:"]);
    let run = ice.executing_run();
    (ice, run)
}

fn exec(ice: &Ice, permit: &str, args: Option<&str>) -> std::process::Output {
    let mut argv = vec!["exec", "--as", "agent:a", permit];
    if let Some(a) = args {
        argv.extend(["--args", a]);
    }
    ice.run(&argv)
}

fn refused_with(out: &std::process::Output, code: &str) {
    assert_eq!(out.status.code(), Some(3), "expected a refusal: {}{}", stdout(out), stderr(out));
    assert!(stderr(out).contains(code), "expected {code}: {}", stderr(out));
}

fn count(ice: &Ice, kind: &str) -> usize {
    ice.events().iter().filter(|e| e["kind"] == kind).count()
}

fn sandbox(ice: &Ice) -> std::path::PathBuf {
    ice.path().join("sandbox")
}

#[test]
fn permits_bind_exact_args_and_are_single_use() {
    let (ice, run) = setup();
    let (code, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"notes/a.txt","content":"v1"}"#);
    assert_eq!(code, 0, "{d}");
    let permit = permit_of(&d);

    // Other args than the permitted ones: refused, recorded, nothing written.
    let out = exec(&ice, &permit, Some(r#"{"path":"notes/a.txt","content":"v2"}"#));
    refused_with(&out, "ICE-E0804");
    assert!(stderr(&out).contains("recorded: EffectRefused"), "{}", stderr(&out));
    assert!(!sandbox(&ice).join("notes/a.txt").exists());
    assert_eq!(count(&ice, "EffectRefused"), 1);

    // Exactly the permitted args (key order does not matter: args are canonical).
    ice.ok(&["exec", "--as", "agent:a", &permit, "--args", r#"{"content":"v1","path":"notes/a.txt"}"#]);
    assert_eq!(std::fs::read(sandbox(&ice).join("notes/a.txt")).unwrap(), b"v1");

    // Reused: refused.
    refused_with(&exec(&ice, &permit, None), "ICE-E0802");
    // Someone else's permit, an unknown permit: refused.
    let (_, d2) = propose_file(&ice, &run, "fs.write", r#"{"path":"notes/b.txt","content":"b"}"#);
    let out = ice.run(&["exec", "--as", "agent:mallory", &permit_of(&d2)]);
    refused_with(&out, "ICE-E0801");
    refused_with(&exec(&ice, "0190f0f0-0000-7000-8000-000000000000", None), "ICE-E0801");
    assert_eq!(count(&ice, "EffectRefused"), 4);
    assert_eq!(count(&ice, "EffectStarted"), 1);
    assert_eq!(count(&ice, "EffectCompleted"), 1);
    ice.ok(&["verify"]);
}

#[test]
fn an_approval_binds_the_args_and_an_args_swap_is_refused() {
    let (ice, run) = setup();
    ice.ok(&[
        "exec",
        "--as",
        "agent:a",
        &permit_of(&propose_file(&ice, &run, "fs.write", r#"{"path":"a.txt","content":"A"}"#).1),
    ]);
    ice.ok(&[
        "exec",
        "--as",
        "agent:a",
        &permit_of(&propose_file(&ice, &run, "fs.write", r#"{"path":"b.txt","content":"B"}"#).1),
    ]);

    let (code, d) = propose_file(&ice, &run, "fs.delete", r#"{"path":"a.txt"}"#);
    assert_eq!(code, 7, "a delete is irreversible: approval required ({d})");
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    let listed = ice.ok(&["approvals", "list", "--json"]);
    let pending: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(pending["request"]["args"]["path"], "a.txt", "the approver sees the exact args");

    // Agents cannot approve (acting for one lends only the agent role); a stale args hash is refused.
    let alice = ice.token("human:alice", "approver");
    let bob = ice.token("human:bob", "approver");
    refused_with(&ice.run(&["approve", &approval, "--as", "agent:a"]), "ICE-E0120");
    refused_with(&ice.run_token(&alice, &["approve", &approval, "--args-hash", "00"]), "ICE-E0804");
    let out = ice.ok_token(&alice, &["approve", &approval, "--comment", "ok"]);
    let permit = approved_permit(&out);
    // Approved once: a second answer is refused.
    refused_with(&ice.run_token(&bob, &["approve", &approval]), "ICE-E0821");

    // Args A approved, args B executed: refused and recorded; b.txt untouched.
    refused_with(&exec(&ice, &permit, Some(r#"{"path":"b.txt"}"#)), "ICE-E0804");
    assert!(sandbox(&ice).join("b.txt").exists());
    ice.ok(&["exec", "--as", "agent:a", &permit]);
    assert!(!sandbox(&ice).join("a.txt").exists());
    let granted = ice.events().into_iter().find(|e| e["kind"] == "ApprovalGranted").unwrap();
    assert_eq!(granted["origin"], "human:alice", "the approver is recorded");
    assert!(granted["acted_by"].as_str().unwrap().starts_with("human:alice;token:"), "with the credential used");
    ice.ok(&["verify"]);
}

#[test]
fn expired_approvals_and_permits_cannot_be_used() {
    let (ice, run) = setup();
    let catalog = ice.path().join(".ice/policies/policy.toml");
    let text = std::fs::read_to_string(&catalog).unwrap();
    let text = text.replace("ttl_secs = 86400              #", "ttl_secs = 1              #");
    let text = text.replace("ttl_secs = 900 ", "ttl_secs = 1 ");
    std::fs::write(&catalog, text).unwrap();
    ice.ok(&["policy", "activate"]);

    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"x.txt","content":"x"}"#);
    let permit = permit_of(&d);
    let (code, d) = propose_file(&ice, &run, "fs.delete", r#"{"path":"x.txt"}"#);
    assert_eq!(code, 7);
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(2100));

    refused_with(&exec(&ice, &permit, None), "ICE-E0803");
    refused_with(&ice.run(&["approve", &approval]), "ICE-E0821");
    assert_eq!(count(&ice, "ApprovalExpired"), 1);
    assert!(!sandbox(&ice).join("x.txt").exists());
    ice.ok(&["verify"]);
}

#[test]
fn a_crash_between_start_and_outcome_is_unknown_and_a_retry_applies_once() {
    let (ice, run) = setup();
    for (i, point) in ["after-effect-apply", "after-effect-start"].into_iter().enumerate() {
        let path = format!("log{i}.txt");
        let (_, d) = propose_file(&ice, &run, "fs.append", &format!(r#"{{"path":"{path}","content":"line\n"}}"#));
        exec_and_kill_at(&ice, &permit_of(&d), point);

        let out = ice.run(&["effects", "pending", "--json"]);
        assert_eq!(out.status.code(), Some(1), "an unknown effect is pending: {}", stdout(&out));
        let pending: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0]["status"], "unknown");
        let effect = pending[0]["effect_id"].as_str().unwrap().to_owned();

        // Retrying is an operator's: the agent may not, even through an operator acting for it.
        refused_with(&ice.run(&["effects", "retry", &effect, "--as", "agent:a"]), "ICE-E0905");
        let retried = ice.ok(&["effects", "retry", &effect]);
        let applied_before = point == "after-effect-apply";
        assert_eq!(retried.contains("already been applied"), applied_before, "{retried}");
        assert_eq!(std::fs::read_to_string(sandbox(&ice).join(&path)).unwrap(), "line\n", "applied exactly once");
        // Retrying a completed effect is refused.
        refused_with(&ice.run(&["effects", "retry", &effect]), "ICE-E0814");
        assert_eq!(ice.run(&["effects", "pending"]).status.code(), Some(0));
    }
    assert_eq!(count(&ice, "EffectUnknown"), 2);
    ice.ok(&["verify"]);
}

#[test]
fn rollback_restores_files_byte_identical() {
    let (ice, run) = setup();
    let original: &[u8] = b"original\n\xe2\x9c\x93 bytes";
    std::fs::create_dir_all(sandbox(&ice).join("docs")).unwrap();
    std::fs::write(sandbox(&ice).join("docs/a.txt"), original).unwrap();

    // The operator proposes for agent:a (`--as`), so a second human answers the approvals.
    let alice = ice.token("human:alice", "approver");
    let step = |action: &str, args: &str| {
        let (code, d) = propose_file(&ice, &run, action, args);
        let permit = if code == 7 {
            let approval = d["approval_id"].as_str().unwrap().to_owned();
            let out = ice.ok_token(&alice, &["approve", &approval]);
            approved_permit(&out)
        } else {
            permit_of(&d)
        };
        ice.ok(&["exec", "--as", "agent:a", &permit]);
    };
    step("fs.write", r#"{"path":"docs/a.txt","content":"second"}"#);
    step("fs.append", r#"{"path":"docs/a.txt","content":" + more"}"#);
    step("fs.write", r#"{"path":"docs/new.txt","content":"created"}"#);
    step("fs.read", r#"{"path":"docs/new.txt"}"#);
    step("fs.delete", r#"{"path":"docs/a.txt"}"#);
    assert!(!sandbox(&ice).join("docs/a.txt").exists());
    let finished = ice.ok(&["run", "finish", &run]);
    assert!(finished.contains("COMMITTED"), "{finished}");

    // The operator rolling back needs authority like anyone else.
    let ops = ice.token("human:ops", "operator");
    ice.ok(&["grant", "issue", "--to", "human:ops", "--action", "fs.*", "--resource", "file:"]);
    let out = ice.run_token(&ops, &["rollback", &run, "--json"]);
    assert_eq!(out.status.code(), Some(9), "deleting the created file needs approval: {}", stdout(&out));
    let report: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let steps: Vec<&str> =
        report["items"].as_array().unwrap().iter().map(|i| i["step"]["status"].as_str().unwrap()).collect();
    assert_eq!(steps, ["compensated", "nothing_to_undo", "awaiting_approval", "compensated", "compensated"]);
    let approval = report["items"][2]["step"]["approval"].as_str().unwrap().to_owned();
    let rollback_run = report["run"].as_str().unwrap().to_owned();
    let out = ice.ok(&["approve", &approval]);
    let permit = approved_permit(&out);
    ice.ok_token(&ops, &["exec", &permit]);
    ice.ok(&["run", "finish", &rollback_run]);

    assert_eq!(std::fs::read(sandbox(&ice).join("docs/a.txt")).unwrap(), original, "byte-identical");
    assert!(!sandbox(&ice).join("docs/new.txt").exists());
    // Every compensation is linked to what it undoes; a second rollback finds nothing left to undo.
    let effects: Vec<Value> =
        ice.ok(&["effects", "list", "--json"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let undone = effects.iter().filter(|e| e["run_id"] == run.as_str() && e["compensated_by"].is_string()).count();
    assert_eq!(undone, 4);
    let again = ice.run_token(&ops, &["rollback", &run, "--json"]);
    let report: Value = serde_json::from_str(stdout(&again).trim()).unwrap();
    assert!(report["items"].as_array().unwrap().iter().all(|i| i["step"]["status"] != "compensated"));
    ice.ok(&["verify"]);
}

#[test]
fn suspension_revokes_permits_and_resume_needs_a_reconfiguration() {
    let (ice, run) = setup();
    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"s.txt","content":"s"}"#);
    let permit = permit_of(&d);
    let sec = ice.token("human:sec", "operator");
    ice.ok_token(&sec, &["agent", "suspend", "agent:a", "--reason", "prompt injection suspected"]);
    assert_eq!(count(&ice, "PermitRevoked"), 1);
    refused_with(&exec(&ice, &permit, None), "ICE-E0805");
    let (code, _) = propose_file(&ice, &run, "fs.write", r#"{"path":"s.txt","content":"s"}"#);
    assert_eq!(code, 6, "a suspended agent is denied");

    refused_with(&ice.run_token(&sec, &["agent", "resume", "agent:a", "--reason", "fixed"]), "ICE-E0830");
    ice.ok_token(&sec, &["agent", "reconfigure", "agent:a", "--change", "system prompt hardened"]);
    refused_with(&ice.run(&["agent", "resume", "agent:a", "--reason", "fixed", "--as", "agent:a"]), "ICE-E0120");
    ice.ok_token(&sec, &["agent", "resume", "agent:a", "--reason", "fixed"]);
    let (code, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"s.txt","content":"s"}"#);
    assert_eq!(code, 0);
    ice.ok(&["exec", "--as", "agent:a", &permit_of(&d)]);
    ice.ok(&["verify"]);
}

#[test]
fn sandbox_escapes_are_refused_through_the_cli() {
    let (ice, run) = setup();
    let outside = ice.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, sandbox(&ice).join("link")).unwrap();
    for path in ["/etc/passwd-ice", "link/x.txt", "a//b.txt"] {
        let args = serde_json::json!({"path": path, "content": "x"}).to_string();
        let (code, d) = propose_file(&ice, &run, "fs.write", &args);
        assert_eq!(code, 0, "{path}: policy and grant allow it; the boundary must still refuse ({d})");
        refused_with(&exec(&ice, &permit_of(&d), None), "ICE-E0810");
    }
    // `..` never even becomes a proposal.
    let out = ice.propose_as_a(&run, "fs.write", "file:../x", r#"{"path":"../x","content":"x"}"#, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written outside the sandbox");
    assert!(!std::path::Path::new("/etc/passwd-ice").exists());
}

#[test]
fn an_unknown_outcome_can_be_resolved_by_a_human_and_the_run_aborts() {
    let (ice, run) = setup();
    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"r.txt","content":"r"}"#);
    exec_and_kill_at(&ice, &permit_of(&d), "after-effect-start");
    let out = ice.run(&["effects", "pending", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let effect = serde_json::from_str::<Value>(stdout(&out).lines().next().unwrap()).unwrap()["effect_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let note = ["--note", "checked the sandbox: r.txt was not written"];
    let mut agent = vec!["effects", "resolve", &effect, "--failed", "--as", "agent:a"];
    agent.extend(note);
    refused_with(&ice.run(&agent), "ICE-E0905");
    let mut human = vec!["effects", "resolve", &effect, "--failed"];
    human.extend(note);
    ice.ok_token(&ice.token("human:ops", "operator"), &human);
    assert_eq!(ice.run(&["effects", "pending"]).status.code(), Some(0));
    let finished = ice.ok(&["run", "finish", &run]);
    assert!(finished.contains("ABORTED"), "an effect failed: {finished}");
    let failed = ice.events().into_iter().find(|e| e["kind"] == "EffectFailed").unwrap();
    assert!(failed["payload"]["message"].as_str().unwrap().contains("human:ops"));
    ice.ok(&["verify"]);
}

/// Terminating a run while one of its effects runs does not lose the outcome: the sweep records it on the
/// terminated run, once; a second look writes nothing.
#[test]
fn an_outcome_lands_even_after_its_run_was_terminated() {
    let (ice, run) = setup();
    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"t.txt","content":"t"}"#);
    exec_and_kill_at(&ice, &permit_of(&d), "after-effect-start");
    ice.ok(&["run", "terminate", &run, "--reason", "operator stopped the run mid-effect"]);
    let out = ice.run(&["effects", "pending", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let unknown: Vec<Value> = ice.events().into_iter().filter(|e| e["kind"] == "EffectUnknown").collect();
    assert_eq!(unknown.len(), 1, "the outcome landed on the terminated run");
    assert_eq!(unknown[0]["run_id"].as_str(), Some(run.as_str()));
    let before = ice.events().len();
    let _ = ice.run(&["effects", "pending", "--json"]);
    assert_eq!(ice.events().len(), before, "nothing new, nothing written");
    ice.ok(&["verify"]);
}

/// `fs.restore` is not a way to copy any blob (the blob store also holds what was read and what processes
/// printed) into the sandbox: proposed directly, even with a genuine prior-content hash, it is refused; only
/// `ice rollback` restores, and only the content the compensated effect recorded for that path.
#[test]
fn restore_is_only_a_recorded_compensation() {
    let (ice, run) = setup();
    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"r.txt","content":"first"}"#);
    ice.ok(&["exec", "--as", "agent:a", &permit_of(&d)]);
    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"r.txt","content":"second"}"#);
    ice.ok(&["exec", "--as", "agent:a", &permit_of(&d)]);
    let prior = blake3::hash(b"first").to_hex().to_string();
    for path in ["r.txt", "copy.txt"] {
        let args = format!(r#"{{"path":"{path}","blob":"{prior}"}}"#);
        let resource = format!("file:{path}");
        let out = ice.propose_as_a(&run, "fs.restore", &resource, &args, &[]);
        assert_eq!(out.status.code(), Some(3), "{}{}", stdout(&out), stderr(&out));
        assert!(stderr(&out).contains("fs.restore only puts back"), "{}", stderr(&out));
    }
    assert!(!ice.path().join("sandbox/copy.txt").exists());
}

/// Two homes on one ledger (the second joined the first's SQLite file): a process effect applied from home A whose
/// process was killed before recording the outcome must not run again from home B, whose journal cannot know it
/// ran; from A its journal answers, and it does not run twice.
#[test]
fn a_journaled_effect_is_never_retried_from_another_home() {
    let a = Ice::init();
    let config = a.path().join(".ice/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("[effects.process]\nallow = []"), "{text}");
    std::fs::write(&config, text.replace("[effects.process]\nallow = []", "[effects.process]\nallow = [\"sh\"]"))
        .unwrap();
    let b = Ice::init_with(&["--store", &format!("sqlite:{}", a.db().display())]);
    a.ok(&["grant", "issue", "--to", "agent:a", "--action", "process.exec", "--resource", "process:"]);
    let run = a.executing_run();
    let args = r#"{"argv":["sh","-c","echo paid >> payments.txt"]}"#;
    let out = a.propose_as_a(&run, "process.exec", "process:sh", args, &["--json"]);
    let d: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let approval = d["approval_id"].as_str().unwrap_or_else(|| panic!("approval expected: {d}")).to_owned();
    let bob = a.token("human:bob", "approver");
    let permit = approved_permit(&a.ok_token(&bob, &["approve", &approval]));
    exec_and_kill_at(&a, &permit, "after-effect-apply");
    assert_eq!(std::fs::read_to_string(sandbox(&a).join("payments.txt")).unwrap(), "paid\n");

    // B sees the effect without an outcome (A's process is gone) and may not retry it.
    let out = b.run(&["effects", "pending", "--json"]);
    let pending: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(pending.len(), 1, "{}", stdout(&out));
    let effect = pending[0]["effect_id"].as_str().unwrap().to_owned();
    let out = b.run(&["effects", "retry", &effect]);
    refused_with(&out, "ICE-E0818");
    assert!(stderr(&out).contains("journal"), "{}", stderr(&out));
    assert!(!sandbox(&b).join("payments.txt").exists());
    // From A, the journal knows it ran: recorded once, never run again.
    let retried = a.ok(&["effects", "retry", &effect]);
    assert!(retried.contains("already been applied"), "{retried}");
    assert_eq!(std::fs::read_to_string(sandbox(&a).join("payments.txt")).unwrap(), "paid\n", "paid exactly once");
    b.ok(&["verify"]);
}

/// An effect under way when its run is terminated still closes: its outcome and the settlement of its reservation
/// land on the terminated run, so the budget is freed and the run can settle and leave memory.
#[test]
fn a_reservation_under_way_when_the_run_ends_is_still_settled() {
    let (ice, run) = setup();
    ice.ok(&["budget", "set", "--scope", "global", "--dimension", "calls", "--limit", "10"]);
    let (_, d) = propose_file(&ice, &run, "fs.write", r#"{"path":"b.txt","content":"b"}"#);
    exec_and_kill_at(&ice, &permit_of(&d), "after-effect-start");
    ice.ok(&["run", "terminate", &run, "--reason", "stopped mid-effect"]);
    let out = ice.run(&["effects", "pending", "--json"]);
    let pending: Vec<Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let effect = pending[0]["effect_id"].as_str().unwrap().to_owned();
    ice.ok(&["effects", "resolve", &effect, "--failed", "--note", "checked: b.txt was never written"]);
    assert_eq!(count(&ice, "BudgetReleased"), 1, "the reservation closed on the terminated run");
    let budget = ice.ok(&["budget", "show", "--json"]);
    assert!(budget.contains("\"reserved\":0,") && budget.contains("\"spent\":0,"), "nothing held: {budget}");
    ice.ok(&["checkpoint"]);
    assert!(ice.ok(&["run", "list"]).contains("1 terminated run(s) settled and left memory"));
    ice.ok(&["verify"]);
}
