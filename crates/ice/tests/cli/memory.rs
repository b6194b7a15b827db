//! Memory through the real binary: a candidate, promotion refused without a grant or from an unvalidated source,
//! promoted with one, searched by an agent token within its grant and recorded, audited, rolled back.

use serde_json::Value;

use crate::{Ice, stderr, stdout};

fn json(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn memory_is_promoted_by_authority_searched_recorded_and_invalidated_by_rollback() {
    let ice = Ice::init();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:notes/"]);
    let operator = ice.operator();
    ice.ok(&["grant", "issue", "--to", &operator, "--action", "fs.restore", "--resource", "file:notes/"]);
    let run = ice.executing_run();
    let write = |content: &str| {
        let args = format!(r#"{{"path":"notes/keys.md","content":"{content}"}}"#);
        let d = json(&ice.ok(&[
            "propose",
            "--as",
            "agent:a",
            "--run",
            &run,
            "--action",
            "fs.write",
            "--resource",
            "file:notes/keys.md",
            "--args",
            &args,
            "--json",
        ]));
        let out = json(&ice.ok(&["exec", "--as", "agent:a", d["permit_id"].as_str().unwrap(), "--json"]));
        out["outcome_id"].as_str().unwrap().to_owned()
    };
    write("rotate on Friday");
    let source = write("rotate on Monday");

    let propose = |text: &str, source: &str| {
        let c = json(&ice.ok(&[
            "memory",
            "propose",
            "--as",
            "agent:a",
            "--run",
            &run,
            "--namespace",
            "team/deploys",
            "--text",
            text,
            "--field",
            "day=\"monday\"",
            "--source",
            source,
            "--json",
        ]));
        c["candidate_id"].as_str().unwrap().to_owned()
    };
    let candidate = propose("The deploy key rotates every Monday.", &source);
    // No grant: denied and recorded (exit 6).
    let out = ice.run(&["memory", "promote", &candidate, "--as", "agent:a"]);
    assert_eq!(out.status.code(), Some(6), "{}{}", stdout(&out), stderr(&out));
    // A source the ledger never validated (the candidate itself): refused with a code (exit 3).
    let dubious = propose("Someone said the key is old.", &candidate);
    ice.ok(&[
        "grant",
        "issue",
        "--to",
        "agent:a",
        "--action",
        "memory.promote,memory.read",
        "--resource",
        "memory:team",
    ]);
    let out = ice.run(&["memory", "promote", &dubious, "--as", "agent:a"]);
    assert_eq!(out.status.code(), Some(3), "{}{}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("ICE-E1001"), "{}", stderr(&out));

    let promoted = json(&ice.ok(&["memory", "promote", &candidate, "--as", "agent:a", "--json"]));
    let item = promoted["item_id"].as_str().unwrap().to_owned();
    let listed = ice.ok(&["memory", "list"]);
    assert!(listed.contains(&item) && listed.contains("ACTIVE"), "{listed}");
    let shown = ice.ok(&["memory", "show", &item]);
    assert!(shown.contains("promoted by  agent:a") && shown.contains(&source), "{shown}");

    // An agent token searches within its grant; every read is recorded and audited with what followed.
    let token = ice.token("agent:a", "agent");
    let found =
        json(&ice.ok_token(&token, &["memory", "search", "when does the deploy key rotate", "--run", &run, "--json"]));
    assert_eq!(found["items"][0]["item_id"], item.as_str(), "{found}");
    assert_eq!(found["items"][0]["fields"]["day"], "monday");
    let other = ice.token("agent:b", "agent");
    let none = json(&ice.ok_token(&other, &["memory", "search", "deploy key", "--json"]));
    assert_eq!(none["items"], serde_json::json!([]));
    let out = ice.run_token(&token, &["memory", "list"]);
    assert_eq!(out.status.code(), Some(3), "agents search; they do not list: {}", stderr(&out));
    ice.ok_token(
        &token,
        &[
            "propose",
            "--run",
            &run,
            "--action",
            "fs.write",
            "--resource",
            "file:notes/plan.md",
            "--args",
            r#"{"path":"notes/plan.md","content":"rotate Monday"}"#,
        ],
    );
    let reads = ice.ok(&["memory", "reads", &item]);
    assert!(reads.contains("agent:a search") && reads.contains("then proposed"), "{reads}");
    assert!(reads.contains("fs.write on file:notes/plan.md"), "{reads}");

    // Rolling back the source effect invalidates the item; search no longer returns it; replay agrees.
    ice.ok(&["rollback", &source]);
    let all = ice.ok(&["memory", "list", "--all", "--status", "invalidated"]);
    assert!(all.contains(&item), "{all}");
    let none = json(&ice.ok_token(&token, &["memory", "search", "when does the deploy key rotate", "--json"]));
    assert_eq!(none["items"], serde_json::json!([]));
    ice.ok(&["checkpoint"]);
    let replay = ice.ok(&["replay"]);
    assert!(replay.contains("replayed state equals the live state"), "{replay}");
    ice.ok(&["verify"]);
}
