//! Properties: evaluation never panics on any input, and the default set decides exactly as documented — in
//! particular a satisfied forbid always yields `Forbid`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ice_core::{
    Access, Classification, Cost, Dimension, EffectScope, Principal, PrincipalKind, Risk, RunId, RunState, Timestamp,
};
use ice_policy::{PolicyEngine, PolicyFile, PolicyOutcome, PolicyRequest, default_source};
use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn kind() -> impl Strategy<Value = PrincipalKind> {
    proptest::sample::select(PrincipalKind::ALL.to_vec())
}

fn classification() -> impl Strategy<Value = Classification> {
    (
        prop_oneof![Just(EffectScope::Internal), Just(EffectScope::External)],
        prop_oneof![Just(Access::Read), Just(Access::Write), Just(Access::Irreversible)],
        prop_oneof![Just(Risk::Low), Just(Risk::Medium), Just(Risk::High), Just(Risk::Critical)],
    )
        .prop_map(|(scope, access, risk)| Classification { scope, access, risk })
}

fn cost() -> impl Strategy<Value = Cost> {
    proptest::collection::vec((proptest::sample::select(Dimension::ALL.to_vec()), 0u64..(1 << 53)), 0..5).prop_map(
        |pairs| {
            let mut c = Cost::zero();
            for (d, v) in pairs {
                c.set(d, v);
            }
            c
        },
    )
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// A path that sometimes walks into a secrets directory.
fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[a-z/]{0,12}",
        "/[a-z]{0,5}/secrets/[a-z]{0,5}",
        "/secrets/[a-z.]{0,5}",
        "/sandbox/secrets[a-z.]{0,3}",
        ".{0,16}",
    ]
}

/// An action with args that fit its declared type (optional fields sometimes present, sometimes null).
fn valid_action() -> impl Strategy<Value = (&'static str, Value)> {
    let opt_str = proptest::option::of(".{0,8}").prop_map(|o| o.map_or(Value::Null, Value::String));
    prop_oneof![
        (proptest::sample::select(vec!["fs.read", "fs.list", "fs.delete"]), path())
            .prop_map(|(a, p)| (a, json!({ "path": p }))),
        (proptest::sample::select(vec!["fs.write", "fs.append"]), path(), ".{0,20}")
            .prop_map(|(a, p, c)| (a, json!({ "path": p, "content": c }))),
        (proptest::collection::vec(".{0,6}", 0..4), opt_str.clone())
            .prop_map(|(argv, cwd)| ("process.exec", json!({ "argv": argv, "cwd": cwd }))),
        ("[A-Z]{1,6}", ".{0,20}", opt_str.clone())
            .prop_map(|(m, u, b)| ("http.request", json!({ "method": m, "url": u, "body": b }))),
        (".{0,8}", opt_str, proptest::option::of(any::<i64>()))
            .prop_map(|(m, p, t)| ("model.call", json!({ "model": m, "prompt": p, "max_tokens": t }))),
    ]
}

/// Compiled once: compiling is the slow part, and sharing also exercises the entity cache across cases.
static DEFAULT: LazyLock<PolicyEngine> = LazyLock::new(|| PolicyEngine::compile(&default_source()).unwrap());

/// The default set plus a forbid that holds for every request.
static STOP: LazyLock<PolicyEngine> = LazyLock::new(|| {
    let mut source = default_source();
    source.files.push(PolicyFile {
        name: "stop.cedar".to_owned(),
        text: "@id(\"stop\") forbid(principal, action, resource) when { context.cost.calls >= 0 };".to_owned(),
    });
    PolicyEngine::compile(&source).unwrap()
});

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Anything at all — names ICE would refuse, unknown actions, any resource, any JSON as args — gives a
    /// verdict, never a panic, and the verdict is consistent.
    #[test]
    fn evaluate_never_panics(
        kind in kind(),
        name in ".{0,20}",
        action in prop_oneof![Just("fs.write".to_owned()), Just("model.call".to_owned()), ".{0,12}"],
        resource in ".{0,24}",
        run_id in proptest::option::of(any::<[u8; 16]>()),
        run_state in proptest::option::of(proptest::sample::select(RunState::ALL.to_vec())),
        classification in classification(),
        cost in cost(),
        time in any::<i64>(),
        args in any_json(),
    ) {
        let e = &*DEFAULT;
        let principal = Principal { kind, name };
        let v = e.evaluate(&PolicyRequest {
            principal: &principal,
            action: &action,
            resource: &resource,
            run_id: run_id.map(RunId::from_bytes),
            run_state,
            classification,
            cost: &cost,
            time: Timestamp(time),
            args: &args,
        });
        match v.outcome {
            PolicyOutcome::Error => prop_assert!(!v.errors.is_empty()),
            PolicyOutcome::NoPermit => prop_assert!(v.policies.is_empty() && v.errors.is_empty()),
            PolicyOutcome::RequireApproval => prop_assert!(!v.approval_reasons.is_empty()),
            PolicyOutcome::Permit | PolicyOutcome::Forbid => prop_assert!(!v.policies.is_empty()),
        }
    }

    /// With args that fit the schema, the default set decides exactly as documented: a satisfied forbid always
    /// wins; otherwise irreversible needs approval and everything else is permitted.
    #[test]
    fn default_set_decides_as_documented(
        kind in kind(),
        name in "[A-Za-z0-9._@-]{1,16}",
        (action, args) in valid_action(),
        scheme in "[a-z]{0,5}",
        resource_path in path(),
        classification in classification(),
        cost in cost(),
        run_state in proptest::option::of(proptest::sample::select(RunState::ALL.to_vec())),
    ) {
        let e = &*DEFAULT;
        let principal = Principal::new(kind, &name).unwrap();
        let resource = format!("{scheme}:{resource_path}");
        let v = e.evaluate(&PolicyRequest {
            principal: &principal,
            action,
            resource: &resource,
            run_id: None,
            run_state,
            classification,
            cost: &cost,
            time: Timestamp(0),
            args: &args,
        });
        let critical = classification.risk == Risk::Critical;
        let arg_path = args.get("path").and_then(Value::as_str).unwrap_or_default();
        let secrets = action.starts_with("fs.") && (resource_path.contains("/secrets/") || arg_path.contains("/secrets/"));
        let mut forbids = Vec::new();
        if critical { forbids.push("no-critical-risk"); }
        if secrets { forbids.push("no-secrets"); }
        prop_assert!(v.errors.is_empty(), "{v:?}");
        if !forbids.is_empty() {
            prop_assert_eq!(v.outcome, PolicyOutcome::Forbid);
            prop_assert_eq!(v.policies, forbids);
        } else if classification.access == Access::Irreversible {
            prop_assert_eq!(v.outcome, PolicyOutcome::RequireApproval);
            prop_assert_eq!(v.policies, ["irreversible-needs-approval"]);
            prop_assert_eq!(v.approval_reasons, ["irreversible effects need a human approval"]);
        } else {
            prop_assert_eq!(v.outcome, PolicyOutcome::Permit);
            prop_assert_eq!(v.policies, ["default-permit"]);
        }
    }

    /// Add a forbid that holds for every request: every request that can be evaluated is forbidden, whatever
    /// the permits say.
    #[test]
    fn a_satisfied_forbid_always_wins(
        kind in kind(),
        name in "[A-Za-z0-9._@-]{1,16}",
        (action, args) in valid_action(),
        resource in ".{0,24}",
        classification in classification(),
        cost in cost(),
    ) {
        let e = &*STOP;
        let principal = Principal::new(kind, &name).unwrap();
        let v = e.evaluate(&PolicyRequest {
            principal: &principal,
            action,
            resource: &resource,
            run_id: None,
            run_state: None,
            classification,
            cost: &cost,
            time: Timestamp(0),
            args: &args,
        });
        prop_assert_eq!(v.outcome, PolicyOutcome::Forbid);
        prop_assert!(v.policies.contains(&"stop".to_owned()));
        prop_assert!(v.approval_reasons.is_empty());
    }
}
