//! The default policy set compiles and decides as documented (tests/data/default_cases.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ice_core::{Access, Classification, Cost, EffectScope, Principal, Risk, Timestamp};
use ice_policy::{PolicyEngine, PolicyOutcome, PolicyRequest, default_source, run_policy_tests};
use serde_json::json;

fn engine() -> PolicyEngine {
    PolicyEngine::compile(&default_source()).expect("the default policy set compiles")
}

#[test]
fn default_set_compiles_with_its_ids_and_actions() {
    let e = engine();
    assert_eq!(e.policy_ids(), ["default-permit", "irreversible-needs-approval", "no-critical-risk", "no-secrets"]);
    assert_eq!(
        e.actions(),
        [
            "fs.append",
            "fs.delete",
            "fs.list",
            "fs.read",
            "fs.restore",
            "fs.write",
            "http.request",
            "memory.promote",
            "model.call",
            "process.exec"
        ]
    );
    assert_eq!(e.hash(), default_source().hash());
}

#[test]
fn default_cases_pass() {
    let report = run_policy_tests(&engine(), include_str!("data/default_cases.toml")).unwrap();
    assert!(report.all_passed(), "{report}");
    insta::assert_snapshot!("default_cases", report.to_string());
}

#[test]
fn approval_reasons_come_from_the_annotation() {
    let e = engine();
    let principal: Principal = "agent:a".parse().unwrap();
    let args = json!({"path": "/sandbox/x"});
    let v = e.evaluate(&PolicyRequest {
        principal: &principal,
        action: "fs.delete",
        resource: "file:/sandbox/x",
        run_id: None,
        run_state: None,
        classification: Classification { scope: EffectScope::External, access: Access::Irreversible, risk: Risk::High },
        cost: &Cost::zero(),
        time: Timestamp(0),
        args: &args,
    });
    assert_eq!(v.outcome, PolicyOutcome::RequireApproval);
    assert_eq!(v.approval_reasons, ["irreversible effects need a human approval"]);
    assert!(v.errors.is_empty());
}

#[test]
fn a_failing_case_is_reported_not_refused() {
    let cases = r#"
[[case]]
name = "wrong on purpose"
principal = "agent:a"
action = "fs.read"
resource = "file:/sandbox/secrets/k"
args = { path = "/sandbox/secrets/k" }
expect = "permit"

[[case]]
name = "right"
principal = "agent:a"
action = "fs.read"
resource = "file:/sandbox/k"
args = { path = "/sandbox/k" }
expect = "permit"
expect_policies = ["default-permit"]
"#;
    let report = run_policy_tests(&engine(), cases).unwrap();
    assert!(!report.all_passed());
    assert_eq!((report.passed, report.failed), (1, 1));
    let text = report.to_string();
    assert!(text.contains("FAIL") && text.contains("expected permit, got forbid [no-secrets]"), "{text}");
    assert!(text.ends_with("1 passed, 1 failed\n"), "{text}");
}
