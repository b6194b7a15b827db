//! Authority through the real binary: propose, grants, policies, budgets.

use serde_json::Value;

use crate::{Ice, stderr, stdout};

fn propose(ice: &Ice, run: &str, action: &str, path: &str, extra: &[&str]) -> std::process::Output {
    let resource = format!("file:{path}");
    // Args match the action's declared type in the default schema: writes carry content, reads and deletes do not.
    let args = if matches!(action, "fs.write" | "fs.append") {
        format!(r#"{{"path":"{path}","content":"x"}}"#)
    } else {
        format!(r#"{{"path":"{path}"}}"#)
    };
    let mut argv = vec!["propose", "--json", "--as", "agent:a", "--run", run, "--action", action];
    argv.extend(["--resource", &resource, "--args", &args, "--cost", "calls=1"]);
    argv.extend(extra);
    ice.run(&argv)
}

fn decision(out: &std::process::Output) -> Value {
    serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(out), stderr(out)))
}

#[test]
fn propose_grant_budget_through_the_cli() {
    let ice = Ice::init();
    let run = ice.executing_run();

    let out = propose(&ice, &run, "fs.write", "/sandbox/a.md", &[]);
    assert_eq!(out.status.code(), Some(6), "denied without a grant");
    let d = decision(&out);
    assert_eq!(d["verdict"], "deny");
    assert_eq!(d["violation"], "no_grant");

    let g = ice.ok(&[
        "grant",
        "issue",
        "--json",
        "--to",
        "agent:a",
        "--action",
        "fs.write,fs.read",
        "--resource",
        "file:/sandbox/",
        "--ttl",
        "1h",
        "--max-uses",
        "5",
    ]);
    let grant: Value = serde_json::from_str(g.trim()).unwrap();
    let grant_id = grant["event_id"].as_str().unwrap().to_owned();
    ice.ok(&["budget", "set", "--scope", &format!("run:{run}"), "--dimension", "calls", "--limit", "2"]);

    let out = propose(&ice, &run, "fs.write", "/sandbox/a.md", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let allowed = decision(&out);
    assert_eq!(allowed["verdict"], "allow");
    assert_eq!(allowed["grants"][0], grant_id);
    let human = ice.ok(&[
        "propose",
        "--as",
        "agent:a",
        "--run",
        &run,
        "--action",
        "fs.read",
        "--resource",
        "file:/sandbox/a.md",
        "--args",
        r#"{"path":"/sandbox/a.md"}"#,
        "--cost",
        "calls=1",
    ]);
    assert!(human.starts_with("ALLOW") && human.contains("policy_permit"), "{human}");

    // Budget exhausted: 2 calls reserved.
    let out = propose(&ice, &run, "fs.write", "/sandbox/b.md", &[]);
    assert_eq!(decision(&out)["violation"], "budget_exceeded");
    let shown = ice.ok(&["budget", "show", "--json"]);
    assert!(shown.contains("\"reserved\":2"), "{shown}");
    let proposal = allowed["proposal_id"].as_str().unwrap();
    // Settling by hand while the permit can still run would let the real cost go unrecorded: refused.
    let out = ice.run(&["budget", "settle", proposal, "--actual", "calls=0"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("ICE-E0707"), "{}", stderr(&out));
    let shown = ice.ok(&["budget", "show", "--json"]);
    assert!(shown.contains("\"reserved\":2"), "{shown}");

    // The secrets forbid wins over the grant; irreversible needs approval.
    let out = propose(&ice, &run, "fs.read", "/sandbox/secrets/k", &[]);
    assert_eq!(decision(&out)["violation"], "policy_forbid");
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.delete", "--resource", "file:/sandbox/"]);
    let out = propose(&ice, &run, "fs.delete", "/sandbox/old.md", &[]);
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(decision(&out)["verdict"], "require_approval");

    let list = ice.ok(&["grant", "list"]);
    assert!(list.contains(&grant_id) && list.contains("2/5"), "{list}");
    ice.ok(&["grant", "revoke", &grant_id]);
    // Revoking the grant reaches the permits it covered: revoked, their reservations released.
    let shown = ice.ok(&["budget", "show", "--json"]);
    assert!(shown.contains("\"reserved\":0") && shown.contains("\"left\":2"), "{shown}");
    assert_eq!(ice.events().iter().filter(|e| e["kind"] == "PermitRevoked").count(), 2);
    let again = ice.run(&["budget", "settle", proposal]);
    assert_eq!(again.status.code(), Some(4), "nothing left to settle: {}", stderr(&again));
    assert!(!ice.ok(&["grant", "list"]).contains(&grant_id));
    assert!(ice.ok(&["grant", "list", "--all"]).contains("revoked"));
    let out = propose(&ice, &run, "fs.write", "/sandbox/c.md", &[]);
    assert_eq!(decision(&out)["violation"], "no_grant");

    // Bad proposals: refused with codes, recorded.
    let out = ice.propose_as_a(&run, "fs.teleport", "file:/x", "{}", &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("ICE-E0701"), "{}", stderr(&out));
    let big = format!(r#"{{"path":"{}"}}"#, "x".repeat(40_000));
    let out = ice.propose_as_a(&run, "fs.read", "file:/sandbox/x", &big, &[]);
    assert!(stderr(&out).contains("ICE-E0102"), "{}", stderr(&out));
    ice.ok(&["verify"]);
}

#[test]
fn bad_policies_are_refused_and_the_previous_set_stays_in_force() {
    let ice = Ice::init();
    let active = |ice: &Ice| -> String {
        let v: Value = serde_json::from_str(ice.ok(&["policy", "show", "--json"]).trim()).unwrap();
        v["hash"].as_str().unwrap().to_owned()
    };
    let before = active(&ice);
    let policies = ice.path().join(".ice/policies");
    let copy = |name: &str| -> std::path::PathBuf {
        let dir = ice.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&policies).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
        dir
    };

    let syntax = copy("syntax");
    std::fs::write(syntax.join("broken.cedar"), "permit(principal, action, resource) when { context.").unwrap();
    let schema = copy("schema");
    std::fs::write(
        schema.join("bad-attr.cedar"),
        "@id(\"bad\") forbid(principal, action, resource) when { context.no_such_field == 1 };",
    )
    .unwrap();
    let dup = copy("dup");
    std::fs::write(dup.join("dup.cedar"), "@id(\"default-permit\") forbid(principal, action, resource);").unwrap();
    let no_schema = copy("noschema");
    std::fs::remove_file(no_schema.join("schema.cedarschema")).unwrap();
    let catalog = copy("catalog");
    std::fs::write(
        catalog.join("policy.toml"),
        "[actions.\"fs.teleport\"]\nscope = \"external\"\naccess = \"write\"\nrisk = \"low\"\n",
    )
    .unwrap();

    for (dir, code) in [
        (&syntax, "ICE-E0601"),
        (&schema, "ICE-E0602"),
        (&no_schema, "ICE-E0603"),
        (&dup, "ICE-E0604"),
        (&catalog, "ICE-E0607"),
    ] {
        let d = dir.to_str().unwrap();
        let out = ice.run(&["policy", "validate", d]);
        assert_eq!(out.status.code(), Some(3), "{d}: {}", stderr(&out));
        assert!(stderr(&out).contains(code), "{d}: expected {code}: {}", stderr(&out));
        let out = ice.run(&["policy", "activate", d]);
        assert!(
            stderr(&out).contains(code) && stderr(&out).contains("recorded: TransitionRejected"),
            "{}",
            stderr(&out)
        );
        assert_eq!(active(&ice), before, "the previous policy set stays in force");
    }

    // A stricter but valid set activates and changes the hash.
    let strict = copy("strict");
    std::fs::write(
        strict.join("strict.cedar"),
        "@id(\"no-writes\") forbid(principal, action == Ice::Action::\"fs.write\", resource);",
    )
    .unwrap();
    ice.ok(&["policy", "activate", strict.to_str().unwrap()]);
    assert_ne!(active(&ice), before);
    ice.ok(&["verify"]);
}

#[test]
fn policy_tests_run_from_a_case_file() {
    let ice = Ice::init();
    let cases = ice.path().join("cases.toml");
    std::fs::write(
        &cases,
        r#"
[[case]]
name = "writes in the sandbox are permitted"
principal = "agent:a"
action = "fs.write"
resource = "file:/sandbox/a.md"
args = { path = "/sandbox/a.md", content = "x" }
classification = { scope = "external", access = "write", risk = "medium" }
expect = "permit"

[[case]]
name = "secrets are forbidden"
principal = "agent:a"
action = "fs.read"
resource = "file:/sandbox/secrets/k"
args = { path = "/sandbox/secrets/k" }
expect = "forbid"
expect_policies = ["no-secrets"]
"#,
    )
    .unwrap();
    let out = ice.ok(&["policy", "test", cases.to_str().unwrap()]);
    assert!(out.contains("2 passed"), "{out}");
    std::fs::write(
        &cases,
        std::fs::read_to_string(&cases).unwrap().replace("expect = \"forbid\"", "expect = \"permit\""),
    )
    .unwrap();
    let out = ice.run(&["policy", "test", cases.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("1 failed"), "{}", stdout(&out));
}

/// A grant on `file:notes` covers the folder and what is below it by whole segments, never a sibling that merely
/// shares the prefix (`notes-private/`).
#[test]
fn grant_resources_match_whole_segments() {
    let ice = Ice::init();
    let run = ice.executing_run();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.read", "--resource", "file:notes"]);
    let (_, inside) = crate::propose_file(&ice, &run, "fs.read", r#"{"path":"notes/a.md"}"#);
    assert_eq!(inside["verdict"], "allow", "{inside}");
    let (code, sibling) = crate::propose_file(&ice, &run, "fs.read", r#"{"path":"notes-private/secret.txt"}"#);
    assert_eq!(sibling["verdict"], "deny", "{sibling}");
    assert_ne!(code, 0);
}
