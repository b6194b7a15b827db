//! The trust model through the real binary: every attack an agent holding only a token (or a name it typed)
//! tried against the runtime is refused with its code, recorded, and changes nothing else; budgets cannot be
//! dodged; revocation reaches what was issued; token secrets never reach the ledger.

use serde_json::Value;

use crate::{Ice, approved_permit, permit_of, stderr, stdout};

/// Runs `args` with `token` (or as the local operator when `None`), expects a refusal with `code`, and checks the
/// refusal wrote exactly one record (`TransitionRejected` or `EffectRefused`) and nothing else.
fn refused(ice: &Ice, token: Option<&str>, args: &[&str], code: &str) {
    let before = ice.events();
    let out = match token {
        Some(t) => ice.run_token(t, args),
        None => ice.run(args),
    };
    assert_eq!(out.status.code(), Some(3), "{args:?} should be refused: {}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains(code), "{args:?} should fail with {code}: {}", stderr(&out));
    let after = ice.events();
    assert_eq!(after.len(), before.len() + 1, "{args:?}: exactly one record written");
    let rec = after.last().unwrap();
    assert!(rec["kind"] == "TransitionRejected" || rec["kind"] == "EffectRefused", "{rec}");
    assert_eq!(rec["origin"], "runtime:ice", "refusals are the runtime's to record");
    assert_eq!(&after[..before.len()], &before[..], "history untouched");
}

fn json_line(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// `ice propose --json` with a token; returns the decision.
fn propose(ice: &Ice, token: &str, run: &str, action: &str, args: &str, cost: Option<&str>) -> Value {
    let v: Value = serde_json::from_str(args).unwrap();
    let resource = format!("file:{}", v["path"].as_str().unwrap());
    let mut argv = vec!["propose", "--json", "--run", run, "--action", action, "--resource", &resource, "--args", args];
    if let Some(c) = cost {
        argv.extend(["--cost", c]);
    }
    let out = ice.run_token(token, &argv);
    json_line(&stdout(&out))
}

/// A home with an agent token for `agent:a` (which holds an fs grant) and an executing run.
fn setup() -> (Ice, String, String) {
    let ice = Ice::init();
    let agent = ice.token("agent:a", "agent");
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:"]);
    let run = ice.executing_run();
    (ice, agent, run)
}

#[test]
fn an_agent_cannot_approve_its_own_proposal_under_any_name() {
    let (ice, agent, run) = setup();
    let d = propose(&ice, &agent, &run, "fs.delete", r#"{"path":"x.txt"}"#, None);
    assert_eq!(d["verdict"], "require_approval", "{d}");
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    // With its own token, as itself or naming a sock puppet.
    refused(&ice, Some(&agent), &["approve", &approval], "ICE-E0120");
    refused(&ice, Some(&agent), &["approve", &approval, "--as", "human:evil-sock-puppet"], "ICE-E0906");
    // Through the OS account: acting for anyone but an agent is not possible, and acting for one lends no
    // approver role.
    refused(&ice, None, &["approve", &approval, "--as", "human:evil-sock-puppet"], "ICE-E0906");
    refused(&ice, None, &["approve", &approval, "--as", "agent:a"], "ICE-E0120");
    // An approver that is the proposer: a human token for the agent's name cannot exist (agents' tokens carry
    // only the agent role), and an approver whose principal the approvers patterns do not name is refused.
    let out = ice.run(&["token", "create", "--principal", "agent:a", "--role", "approver"]);
    assert!(!out.status.success() && stderr(&out).contains("ICE-E0405"), "{}", stderr(&out));
    let pending = ice.ok(&["approvals", "list", "--json"]);
    assert!(pending.contains(&approval), "the approval is still pending: {pending}");
    // An operator who proposed for an agent may not approve that proposal either.
    let out = ice.propose_as_a(&run, "fs.delete", "file:y.txt", r#"{"path":"y.txt"}"#, &["--json"]);
    let by_operator = json_line(&stdout(&out))["approval_id"].as_str().unwrap().to_owned();
    refused(&ice, None, &["approve", &by_operator], "ICE-E0822");
    // A real approver answers.
    let bob = ice.token("human:bob", "approver");
    let out = ice.ok_token(&bob, &["approve", &approval]);
    assert!(out.contains("permit "), "{out}");
    ice.ok(&["verify"]);
    ice.ok(&["replay"]);
}

#[test]
fn an_agent_cannot_grant_activate_budget_or_resume_itself() {
    let (ice, agent, _run) = setup();
    let cases: [&[&str]; 8] = [
        &["grant", "issue", "--to", "agent:a", "--action", "*", "--resource", "file:", "--irrevocable"],
        &["grant", "issue", "--to", "agent:a", "--action", "*", "--resource", "file:", "--as", "human:alice"],
        &["policy", "activate"],
        &["budget", "set", "--scope", "agent:agent:a", "--dimension", "calls", "--limit", "999999"],
        &["agent", "reconfigure", "agent:a", "--change", "nothing"],
        &["agent", "resume", "agent:a", "--reason", "I say so"],
        &["token", "create", "--principal", "agent:a", "--role", "agent"],
        &["run", "create"],
    ];
    for args in cases {
        let code = if args.contains(&"--as") { "ICE-E0906" } else { "ICE-E0120" };
        refused(&ice, Some(&agent), args, code);
    }
    // Suspended, it stays suspended: only an operator resumes it.
    ice.ok(&["agent", "suspend", "agent:a", "--reason", "test"]);
    refused(&ice, Some(&agent), &["agent", "resume", "agent:a", "--reason", "x"], "ICE-E0120");
    let listed = ice.ok(&["agent", "list"]);
    assert!(listed.contains("agent:a  suspended"), "{listed}");
}

#[test]
fn nobody_claims_runtime_effector_or_policy_principals() {
    let (ice, agent, run) = setup();
    let payload = r#"{"code":"ICE-E0000","message":"forged","attempt":{}}"#;
    for who in ["runtime:ice", "effector:fs", "policy:cedar"] {
        let args = ["emit", "--kind", "TransitionRejected", "--as", who, "--run", &run, "--payload", payload];
        refused(&ice, None, &args, "ICE-E0907");
        refused(&ice, Some(&agent), &args, "ICE-E0906");
    }
    let refusal = r#"{"code":"ICE-E0801","message":"forged"}"#;
    refused(&ice, None, &["emit", "--kind", "EffectRefused", "--as", "effector:fs", "--payload", refusal], "ICE-E0907");
    // As themselves, neither an operator nor an agent may write refusal or effect records.
    refused(&ice, None, &["emit", "--kind", "TransitionRejected", "--payload", payload], "ICE-E0120");
    refused(&ice, Some(&agent), &["emit", "--kind", "EffectRefused", "--payload", refusal], "ICE-E0120");
    let out = ice.run(&["token", "create", "--principal", "runtime:ice", "--role", "operator"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("ICE-E0907"), "{}", stderr(&out));
}

#[test]
fn budgets_cannot_be_dodged() {
    let (ice, agent, run) = setup();
    // calls limited to 1: proposals with no estimate still reserve the catalog's minimum of one call.
    ice.ok(&["budget", "set", "--scope", "agent:agent:a", "--dimension", "calls", "--limit", "1"]);
    let verdicts: Vec<Value> = (0..5)
        .map(|i| {
            let args = format!(r#"{{"path":"n{i}.txt","content":"x"}}"#);
            propose(&ice, &agent, &run, "fs.write", &args, None)["verdict"].clone()
        })
        .collect();
    assert_eq!(verdicts, ["allow", "deny", "deny", "deny", "deny"]);
    let denied = propose(&ice, &agent, &run, "fs.write", r#"{"path":"z.txt","content":"x"}"#, None);
    let reason = denied["reasons"].as_array().unwrap().iter().find(|r| r["kind"] == "budget_exceeded").unwrap().clone();
    let detail = reason["detail"].as_str().unwrap();
    assert!(detail.contains("(calls)") && detail.contains("0 spent + 1 reserved + 1 requested exceeds the limit 1"));

    // money that cannot be measured settles at what was declared, so three proposals of 60 against 100 do not
    // all pass.
    let (ice, agent, run) = setup();
    ice.ok(&["budget", "set", "--scope", "agent:agent:a", "--dimension", "money_micros", "--limit", "100"]);
    let d = propose(&ice, &agent, &run, "fs.write", r#"{"path":"m.txt","content":"x"}"#, Some("money_micros=60"));
    assert_eq!(d["verdict"], "allow");
    let permit = permit_of(&d);
    // Settling by hand before executing (to close the reservation at zero) is refused while the permit is live.
    let proposal = d["proposal_id"].as_str().unwrap();
    refused(&ice, None, &["budget", "settle", proposal, "--actual", "money_micros=0"], "ICE-E0707");
    refused(&ice, Some(&agent), &["budget", "settle", proposal, "--actual", "money_micros=0"], "ICE-E0120");
    ice.ok_token(&agent, &["exec", &permit]);
    let shown = ice.ok(&["budget", "show", "--json"]);
    assert!(shown.contains(r#""spent":60"#), "the declared money was spent: {shown}");
    let verdicts: Vec<Value> = (0..2)
        .map(|i| {
            let args = format!(r#"{{"path":"m{i}.txt","content":"x"}}"#);
            propose(&ice, &agent, &run, "fs.write", &args, Some("money_micros=60"))["verdict"].clone()
        })
        .collect();
    assert_eq!(verdicts, ["deny", "deny"]);
    ice.ok(&["replay"]);
}

#[test]
fn revocation_reaches_outstanding_permits_and_pending_approvals() {
    let (ice, agent, run) = setup();
    let grant = ice
        .ok(&["grant", "list", "--json"])
        .lines()
        .map(json_line)
        .find(|g| g["terms"]["principal"] == "agent:a")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = propose(&ice, &agent, &run, "fs.write", r#"{"path":"r.txt","content":"x"}"#, None);
    let permit = permit_of(&d);
    let d = propose(&ice, &agent, &run, "fs.delete", r#"{"path":"r.txt"}"#, None);
    let approval = d["approval_id"].as_str().unwrap().to_owned();

    // A forbid-all policy: the outstanding permit is revoked with the activation.
    let policies = ice.path().join("strict");
    std::fs::create_dir_all(&policies).unwrap();
    for f in std::fs::read_dir(ice.path().join(".ice/policies")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, policies.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        policies.join("zz-forbid-all.cedar"),
        "@id(\"forbid-all\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    ice.ok(&["policy", "activate", policies.to_str().unwrap()]);
    let revoked = ice.events().into_iter().filter(|e| e["kind"] == "PermitRevoked").count();
    assert_eq!(revoked, 1, "the activation revoked the permit it no longer permits");
    refused(&ice, Some(&agent), &["exec", &permit], "ICE-E0805");
    assert!(!ice.path().join("sandbox/r.txt").exists());
    // The pending approval: answering re-evaluates the policy in force.
    refused(&ice, None, &["approve", &approval], "ICE-E0801");

    // Back to the default set; a new permit, then the grant is revoked: the permit goes with it.
    ice.ok(&["policy", "activate"]);
    let d = propose(&ice, &agent, &run, "fs.write", r#"{"path":"r.txt","content":"x"}"#, None);
    let permit = permit_of(&d);
    ice.ok(&["grant", "revoke", &grant, "--reason", "agent misbehaved"]);
    refused(&ice, Some(&agent), &["exec", &permit], "ICE-E0805");
    // The grant the pending approval relied on is gone: answering it is refused (a not-found code: exit 4).
    let before = ice.events().len();
    let out = ice.run(&["approve", &approval]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("ICE-E0703"), "{}", stderr(&out));
    assert_eq!(ice.events().len(), before + 1, "only the refusal is recorded");
    assert!(!ice.path().join("sandbox/r.txt").exists());
    ice.ok(&["verify"]);
    ice.ok(&["replay"]);
}

#[test]
fn token_secrets_never_reach_the_ledger_logs_or_errors() {
    let (ice, agent, run) = setup();
    let approver = ice.token("human:bob", "approver");
    std::fs::create_dir_all(ice.path().join("sandbox")).unwrap();
    std::fs::write(ice.path().join("sandbox/q.txt"), "q").unwrap();
    let d = propose(&ice, &agent, &run, "fs.delete", r#"{"path":"q.txt"}"#, None);
    let approval = d["approval_id"].as_str().unwrap().to_owned();
    let out = ice.ok_token(&approver, &["approve", &approval]);
    let permit = approved_permit(&out);
    ice.ok_token(&agent, &["exec", &permit]);
    // A wrong secret for a real token id, and a revoked token: refused without echoing the secret.
    let (prefix, secret) = agent.rsplit_once('_').unwrap();
    let forged = format!("{prefix}_{}", "0".repeat(secret.len()));
    let out = ice.run_token(&forged, &["propose", "--run", &run, "--action", "fs.read", "--resource", "file:q.txt"]);
    assert!(stderr(&out).contains("ICE-E0902"), "{}", stderr(&out));
    let id = ice
        .ok(&["token", "list", "--json"])
        .lines()
        .map(json_line)
        .find(|t| t["principal"] == "human:bob")
        .unwrap()["token_id"]
        .as_str()
        .unwrap()
        .to_owned();
    ice.ok(&["token", "revoke", &id, "--reason", "rotated"]);
    let out = ice.run_token(&approver, &["deny", &approval]);
    assert!(stderr(&out).contains("ICE-E0903"), "{}", stderr(&out));
    let mut texts = vec![stderr(&out), stdout(&out), ice.ok(&["log", "--json"]), ice.ok(&["token", "list", "--all"])];
    texts.push(String::from_utf8_lossy(&std::fs::read(ice.db()).unwrap()).into_owned());
    let wal = ice.path().join(".ice/ledger.db-wal");
    if wal.exists() {
        texts.push(String::from_utf8_lossy(&std::fs::read(wal).unwrap()).into_owned());
    }
    for t in [&agent, &approver] {
        let secret = t.rsplit_once('_').unwrap().1;
        for text in &texts {
            assert!(!text.contains(secret), "a token secret leaked");
        }
    }
    ice.ok(&["verify"]);
}

#[test]
fn home_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let ice = Ice::init();
    let mode = |p: &str| std::fs::metadata(ice.path().join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(".ice"), 0o700);
    assert_eq!(mode(".ice/keys"), 0o700);
    for f in [".ice/keys/runtime.key", ".ice/keys/token.key", ".ice/config.toml", ".ice/ledger.db"] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
}

#[test]
fn literal_credentials_are_refused_at_intake() {
    let (ice, agent, run) = setup();
    let args = r#"{"method":"GET","url":"http://127.0.0.1:9/x","headers":["Authorization: Bearer abcdefghijklmnopqrstuvwxyz"]}"#;
    let argv =
        ["propose", "--run", &run, "--action", "http.request", "--resource", "http://127.0.0.1:9/x", "--args", args];
    refused(&ice, Some(&agent), &argv, "ICE-E0850");
    let log = ice.ok(&["log", "--json"]);
    assert!(!log.contains("abcdefghijklmnopqrstuvwxyz"), "the refused credential is not echoed into the ledger");
    // A reference is fine at intake (resolution happens inside the effector).
    let args =
        r#"{"method":"GET","url":"http://127.0.0.1:9/x","headers":["Authorization: Bearer ${secret:UNDECLARED}"]}"#;
    let argv =
        ["propose", "--run", &run, "--action", "http.request", "--resource", "http://127.0.0.1:9/x", "--args", args];
    refused(&ice, Some(&agent), &argv, "ICE-E0851");
}

/// A home is bound to its ledger: pointed at another ledger (`ICE_STORE`), it refuses to run rather than execute
/// effects in its own sandbox while recording them elsewhere.
#[test]
fn a_home_refuses_a_ledger_that_is_not_its_own() {
    let a = Ice::init();
    let b = Ice::init();
    let out = std::process::Command::new(crate::bin())
        .args(["--dir", a.path().to_str().unwrap(), "run", "list"])
        .env("ICE_STORE", format!("sqlite:{}", b.db().display()))
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(crate::stderr(&out).contains("belongs to the ledger of key"), "{}", crate::stderr(&out));
    a.ok(&["run", "list"]);
}
