//! Evaluation semantics: the request ICE builds, outcomes, errors that never panic, the bare-Cedar baseline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ice_core::{
    Access, Classification, Cost, Dimension, EffectScope, Principal, PrincipalKind, Risk, RunId, RunState, Timestamp,
};
use ice_policy::{
    DEFAULT_SCHEMA, PolicyEngine, PolicyFile, PolicyOutcome, PolicyRequest, PolicySource, PolicyVerdict, default_source,
};
use serde_json::{Value, json};

fn engine(files: &[(&str, &str)]) -> PolicyEngine {
    let source = PolicySource {
        files: files.iter().map(|(n, t)| PolicyFile { name: (*n).to_owned(), text: (*t).to_owned() }).collect(),
        schema: DEFAULT_SCHEMA.to_owned(),
    };
    PolicyEngine::compile(&source).unwrap_or_else(|e| panic!("{e}"))
}

const WRITE: Classification =
    Classification { scope: EffectScope::External, access: Access::Write, risk: Risk::Medium };

struct Req {
    principal: Principal,
    action: &'static str,
    resource: String,
    run_id: Option<RunId>,
    run_state: Option<RunState>,
    classification: Classification,
    cost: Cost,
    time: Timestamp,
    args: Value,
}

impl Req {
    fn write() -> Self {
        Self {
            principal: "agent:a".parse().unwrap(),
            action: "fs.write",
            resource: "file:/sandbox/x".to_owned(),
            run_id: None,
            run_state: None,
            classification: WRITE,
            cost: Cost::zero(),
            time: Timestamp(0),
            args: json!({"path": "/sandbox/x", "content": "hi"}),
        }
    }

    fn request(&self) -> PolicyRequest<'_> {
        PolicyRequest {
            principal: &self.principal,
            action: self.action,
            resource: &self.resource,
            run_id: self.run_id,
            run_state: self.run_state,
            classification: self.classification,
            cost: &self.cost,
            time: self.time,
            args: &self.args,
        }
    }

    fn eval(&self, e: &PolicyEngine) -> PolicyVerdict {
        e.evaluate(&self.request())
    }
}

#[test]
fn args_that_do_not_fit_are_errors_never_panics() {
    let e = PolicyEngine::compile(&default_source()).unwrap();
    let mut deep = json!("x");
    for _ in 0..200 {
        deep = json!({ "d": deep });
    }
    for args in [
        json!(null),
        json!([1, 2]),
        json!("path"),
        json!({}),
        json!({"path": "/a"}),
        json!({"path": null, "content": "x"}),
        json!({"path": ["/a"], "content": "x"}),
        json!({"path": "/a", "content": 1}),
        json!({"path": "/a", "content": "x", "extra": {"nested": [null]}}),
        json!({"path": "/a", "content": "x", "n": u64::MAX}),
        json!({"path": "/a", "content": deep}),
    ] {
        let mut r = Req::write();
        r.args = args.clone();
        let v = r.eval(&e);
        assert_eq!(v.outcome, PolicyOutcome::Error, "{args}: {v:?}");
        assert_eq!(v.errors.len(), 1, "{args}: {v:?}");
        assert!(v.policies.is_empty() && v.approval_reasons.is_empty());
        assert!(e.prepare(&r.request()).is_err());
    }
    // `null` fields are absent, so an optional field may be null.
    let mut r = Req::write();
    r.action = "process.exec";
    r.args = json!({"argv": ["ls"], "cwd": null});
    assert_eq!(r.eval(&e).outcome, PolicyOutcome::Permit);
}

#[test]
fn the_context_carries_every_field() {
    let run = RunId::from_bytes([7; 16]);
    let policy = format!(
        r#"@id("ctx")
permit (principal == Ice::Agent::"a", action == Ice::Action::"fs.write", resource)
when {{
  resource.scheme == "file" && resource.path == "/sandbox/x" &&
  context.run_id == "{run}" && context.run_state == "EXECUTING" && context.time_us == 42 &&
  context.classification == {{ scope: "external", access: "write", risk: "medium", risk_level: 2 }} &&
  context.cost == {{ wall_ms: 0, tokens: 5, money_micros: 0, calls: 1, bytes: 0 }} &&
  context.args.content == "hi"
}};"#
    );
    let e = engine(&[("ctx.cedar", &policy)]);
    let mut r = Req::write();
    r.run_id = Some(run);
    r.run_state = Some(RunState::Executing);
    r.time = Timestamp(42);
    r.cost.set(Dimension::Calls, 1);
    r.cost.set(Dimension::Tokens, 5);
    let v = r.eval(&e);
    assert_eq!((v.outcome, v.policies.as_slice()), (PolicyOutcome::Permit, ["ctx".to_owned()].as_slice()), "{v:?}");

    r.run_state = Some(RunState::Validating);
    let v = r.eval(&e);
    assert_eq!(v.outcome, PolicyOutcome::NoPermit);
    assert!(v.policies.is_empty() && v.errors.is_empty());

    let empty = engine(&[(
        "e.cedar",
        "permit(principal, action, resource) when { context.run_id == \"\" && context.run_state == \"\" };",
    )]);
    assert_eq!(Req::write().eval(&empty).outcome, PolicyOutcome::Permit);
}

#[test]
fn principal_kinds_map_to_entity_types_and_resources_split() {
    for kind in PrincipalKind::ALL {
        let type_name = match kind {
            PrincipalKind::Agent => "Agent",
            PrincipalKind::Human => "Human",
            PrincipalKind::Runtime => "Runtime",
            PrincipalKind::Policy => "Policy",
            PrincipalKind::Effector => "Effector",
        };
        let text = format!(
            "permit(principal is Ice::{type_name}, action, resource) when {{ principal == Ice::{type_name}::\"n-1\" }};"
        );
        let e = engine(&[("p.cedar", &text)]);
        for other in PrincipalKind::ALL {
            let mut r = Req::write();
            r.principal = Principal::new(other, "n-1").unwrap();
            let expected = if other == kind { PolicyOutcome::Permit } else { PolicyOutcome::NoPermit };
            assert_eq!(r.eval(&e).outcome, expected, "{kind:?} vs {other:?}");
        }
    }
    let e = engine(&[(
        "p.cedar",
        "permit(principal, action, resource) when { resource.scheme == \"\" && resource.path == \"plain:\" };",
    )]);
    let mut r = Req::write();
    r.resource = ":plain:".to_owned();
    assert_eq!(r.eval(&e).outcome, PolicyOutcome::Permit);
    r.resource = "plain:".to_owned();
    assert_eq!(r.eval(&e).outcome, PolicyOutcome::NoPermit);
}

#[test]
fn evaluation_errors_give_error_unless_a_forbid_wins() {
    // time_us * 10^12 overflows for any time past ~107 days after the epoch.
    let overflow =
        "@id(\"overflow\") permit(principal, action, resource) when { context.time_us * 1000000000000 > 0 };";
    let plain = "@id(\"plain\") permit(principal, action, resource);";
    let stop = "@id(\"stop\") forbid(principal, action, resource) when { context.cost.calls > 5 };";
    let e = engine(&[("a.cedar", overflow), ("b.cedar", plain), ("c.cedar", stop)]);
    let mut r = Req::write();
    assert_eq!(r.eval(&e).outcome, PolicyOutcome::Permit, "no overflow at time 0");
    r.time = Timestamp::from_secs(1_800_000_000);
    let v = r.eval(&e);
    assert_eq!(v.outcome, PolicyOutcome::Error, "{v:?}");
    assert_eq!(v.policies, ["plain"], "the permits that held are still named");
    assert!(v.errors[0].contains("overflow"), "{v:?}");
    assert!(!e.is_authorized_prepared(&e.prepare(&r.request()).unwrap()) || v.outcome == PolicyOutcome::Error);

    r.cost.set(Dimension::Calls, 6);
    let v = r.eval(&e);
    assert_eq!((v.outcome, v.policies.clone()), (PolicyOutcome::Forbid, vec!["stop".to_owned()]), "{v:?}");
    assert_eq!(v.errors.len(), 1, "kept for the record");

    let e = engine(&[("a.cedar", overflow)]);
    r.cost = Cost::zero();
    assert_eq!(r.eval(&e).outcome, PolicyOutcome::Error, "an errored permit is not a plain no_permit");
}

#[test]
fn approval_reasons_are_collected_once_each() {
    let e = engine(&[(
        "a.cedar",
        r#"@id("a") @require_approval("big") permit(principal, action, resource);
           @id("b") @require_approval("big") permit(principal, action, resource);
           @id("c") @require_approval permit(principal, action, resource);
           @id("d") permit(principal, action, resource);
           @id("e") @require_approval("forbids never ask") forbid(principal, action, resource) when { false };"#,
    )]);
    let v = Req::write().eval(&e);
    assert_eq!(v.outcome, PolicyOutcome::RequireApproval);
    assert_eq!(v.policies, ["a", "b", "c", "d"]);
    assert_eq!(v.approval_reasons, ["big", "policy `c` requires a human approval"]);
}

#[test]
fn prepared_requests_run_bare_cedar() {
    let e = PolicyEngine::compile(&default_source()).unwrap();
    let mut r = Req::write();
    let prepared = e.prepare(&r.request()).unwrap();
    assert!(e.is_authorized_prepared(&prepared));
    assert!(format!("{prepared:?}").contains("fs.write"));
    r.resource = "file:/secrets/x".to_owned();
    assert!(!e.is_authorized_prepared(&e.prepare(&r.request()).unwrap()));
}

#[test]
fn many_distinct_resources_stay_correct_past_the_cache_capacity() {
    let e = PolicyEngine::compile(&default_source()).unwrap();
    let mut r = Req::write();
    for i in 0..5000 {
        r.resource = if i % 7 == 0 { format!("file:/secrets/{i}") } else { format!("file:/sandbox/{i}") };
        let expected = if i % 7 == 0 { PolicyOutcome::Forbid } else { PolicyOutcome::Permit };
        assert_eq!(r.eval(&e).outcome, expected, "{i}");
    }
    // Evaluating the same request twice gives the same verdict (the second from the cache).
    assert_eq!(r.eval(&e), r.eval(&e));
}

#[test]
fn one_engine_serves_many_threads() {
    let e = std::sync::Arc::new(PolicyEngine::compile(&default_source()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let e = std::sync::Arc::clone(&e);
            std::thread::spawn(move || {
                let mut r = Req::write();
                for i in 0..200 {
                    r.resource = format!("file:/sandbox/{}", (i * t) % 50);
                    assert_eq!(r.eval(&e).outcome, PolicyOutcome::Permit);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
