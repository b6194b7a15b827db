//! Bad input through `ice emit`: each is refused with its stable code, exit 3, and the only thing written is
//! one `TransitionRejected` record carrying that code.

use crate::{Ice, stderr};

fn refused(ice: &Ice, args: &[&str], code: &str) {
    let before = ice.events();
    let out = ice.run(args);
    assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("error[{code}]")), "{args:?} should fail with {code}: {err}");
    assert!(err.contains("hint:"), "{err}");
    let after = ice.events();
    assert_eq!(after.len(), before.len() + 1, "exactly one record written for {args:?}");
    let rec = after.last().unwrap();
    assert_eq!(rec["kind"], "TransitionRejected");
    assert_eq!(rec["origin"], "runtime:ice");
    assert_eq!(rec["payload"]["code"], code);
    assert_eq!(&after[..before.len()], &before[..], "history untouched");
}

#[test]
fn bad_inputs_are_refused_with_codes_and_recorded() {
    let ice = Ice::init();
    let run = ice.create_run();
    let ok = ice.ok(&[
        "emit",
        "--json",
        "--kind",
        "ReasoningRecorded",
        "--origin",
        "agent:a",
        "--run",
        &run,
        "--payload",
        r#"{"note":"fine"}"#,
    ]);
    let parent: serde_json::Value = serde_json::from_str(ok.trim()).unwrap();
    let parent_id = parent["event_id"].as_str().unwrap();

    let base = ["emit", "--origin", "agent:a", "--run", run.as_str()];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().map(|s| s.to_string()).chain(extra.iter().map(|s| s.to_string())).collect()
    };
    let call = |v: Vec<String>, code: &str| {
        let args: Vec<&str> = v.iter().map(String::as_str).collect();
        refused(&ice, &args, code);
    };
    // malformed JSON payload
    call(with(&["--kind", "ReasoningRecorded", "--payload", r#"{"note": "#]), "ICE-E0101");
    // payload that is JSON but not an object
    call(with(&["--kind", "ReasoningRecorded", "--payload", "[1,2]"]), "ICE-E0102");
    // a member named twice (I-JSON): refused, never "last one wins"
    call(with(&["--kind", "ReasoningRecorded", "--payload", r#"{"note":"a","note":"b"}"#]), "ICE-E0102");
    // unknown kind
    call(with(&["--kind", "WorldChanged"]), "ICE-E0110");
    // an agent emitting a runtime event
    call(with(&["--kind", "RunTransitioned", "--payload", r#"{"from":"CREATED","to":"PROVISIONED"}"#]), "ICE-E0120");
    // time going backwards
    call(with(&["--kind", "ReasoningRecorded", "--time", "2001-01-01T00:00:00Z"]), "ICE-E0130");
    // unknown causal parent
    call(with(&["--kind", "ReasoningRecorded", "--cause", "01900000-0000-7000-8000-000000000000"]), "ICE-E0140");
    // a bad principal
    let args = ["emit", "--kind", "ReasoningRecorded", "--origin", "robot:x", "--run", run.as_str()];
    refused(&ice, &args, "ICE-E0103");
    // an unknown run
    let args =
        ["emit", "--kind", "ReasoningRecorded", "--origin", "agent:a", "--run", "01900000-0000-7000-8000-000000000001"];
    refused(&ice, &args, "ICE-E0150");

    // a declared time in the future, far or near (it would drag the ledger's clock forward)
    call(with(&["--kind", "ReasoningRecorded", "--time", "2999-01-01T00:00:00Z"]), "ICE-E0131");
    let soon = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 120;
    let soon = ice_core::Timestamp::from_secs(i64::try_from(soon).unwrap()).to_rfc3339();
    call(with(&["--kind", "ReasoningRecorded", "--time", &soon]), "ICE-E0131");

    // A known cause is accepted.
    ice.ok(&with(&["--kind", "ReasoningRecorded", "--cause", parent_id])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    ice.ok(&["verify"]);
}

/// A proposal whose args (or proposal file) name a member twice is refused before anything is decided: the policy
/// and the effector must never be able to read different values of one field.
#[test]
fn proposals_with_duplicate_members_are_refused() {
    let ice = Ice::init();
    let run = ice.executing_run();
    ice.ok(&["grant", "issue", "--to", "agent:a", "--action", "fs.*", "--resource", "file:"]);
    let dup = r#"{"path":"notes/a.txt","path":"../../etc/passwd"}"#;
    let out = ice.propose_as_a(&run, "fs.read", "file:notes/a.txt", dup, &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("error[ICE-E0102]") && stderr(&out).contains("appears twice"), "{}", stderr(&out));
    let file = ice.path().join("proposal.json");
    let text = format!(
        r#"{{"run":"{run}","action":"fs.read","resource":"file:notes/a.txt","args":"{{}}","action":"fs.delete"}}"#
    );
    std::fs::write(&file, text).unwrap();
    let out = ice.run(&["propose", "--as", "agent:a", "--file", file.to_str().unwrap()]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("ICE-E0102") && stderr(&out).contains("appears twice"), "{}", stderr(&out));
    let decided = ice.events().iter().filter(|e| e["kind"] == "DecisionMade").count();
    assert_eq!(decided, 0, "nothing was decided");
}
