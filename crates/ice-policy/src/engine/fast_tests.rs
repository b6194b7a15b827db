//! The fast path (ICE checks args and principal kinds itself) must accept exactly the requests Cedar's request
//! validation accepts. A differential property test over near-valid args holds it to that.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::source::PolicyFile;
use crate::{DEFAULT_SCHEMA, default_source};

/// The default schema plus an action with every kind of type the fast path covers, limited to two principal
/// kinds, and one with an extension type (which must keep Cedar's validation).
fn rich_source() -> PolicySource {
    let extra = r#"
  action "test.rich" appliesTo {
    principal: [Agent, Human],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { a: Long, b?: Bool, s: Set<String>, r: { x: String, y?: Set<Long> }, ss?: Set<Set<String>>,
              rr?: Set<{ k: String }> },
    },
  };
  action "test.ext" appliesTo {
    principal: [Agent],
    resource: [Resource],
    context: {
      run_id: String, run_state: String, classification: Classification, cost: Cost, time_us: Long,
      args: { amount: decimal },
    },
  };
}
"#;
    let schema = DEFAULT_SCHEMA.trim_end().strip_suffix('}').map(|s| format!("{s}{extra}")).unwrap_or_default();
    let mut source = default_source();
    source.schema = schema;
    source.files.push(PolicyFile {
        name: "rich.cedar".to_owned(),
        text: r#"@id("rich") forbid(principal, action == Ice::Action::"test.rich", resource)
                 when { context.args.a > 3 && context.args.r.x == "x" };"#
            .to_owned(),
    });
    source
}

static ENGINE: std::sync::LazyLock<PolicyEngine> =
    std::sync::LazyLock::new(|| PolicyEngine::compile(&rich_source()).unwrap_or_else(|e| panic!("{e}")));

fn engine() -> &'static PolicyEngine {
    &ENGINE
}

#[test]
fn fast_path_covers_exact_types_only() {
    let e = engine();
    let fast: Vec<&str> = {
        let mut v: Vec<&str> = e.actions.iter().filter(|(_, i)| i.fast.is_some()).map(|(n, _)| n.as_str()).collect();
        v.sort_unstable();
        v
    };
    assert!(fast.contains(&"fs.write") && fast.contains(&"test.rich"), "{fast:?}");
    assert!(!fast.contains(&"test.ext"), "extension types keep Cedar's validation");
    let rich = e.actions["test.rich"].fast.as_ref().map(|f| f.principals.clone());
    assert_eq!(rich, Some(vec![PrincipalKind::Agent, PrincipalKind::Human]));
}

#[test]
fn a_schema_whose_context_does_not_fit_keeps_cedar_validation() {
    let mut source = default_source();
    source.schema = source.schema.replace("time_us: Long,\n      args: { path: String },", "args: { path: String },");
    let e = PolicyEngine::compile(&source).unwrap_or_else(|e| panic!("{e}"));
    assert!(e.actions["fs.read"].fast.is_none());
    assert!(e.actions["fs.write"].fast.is_some());
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just("s"),
        Just("r"),
        Just("x"),
        Just("y"),
        Just("ss"),
        Just("rr"),
        Just("k"),
        Just("z"),
        Just("path"),
        Just("content")
    ]
    .prop_map(str::to_owned)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(Value::from),
        Just(json!(u64::MAX)),
        Just(json!(0.5)),
        "[a-z]{0,3}".prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// JSON biased towards the rich args type: its field names, and leaves of every kind.
fn near_valid_json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

/// Where a mutation lands inside valid args.
#[derive(Debug, Clone, Copy)]
enum Spot {
    Top,
    InR,
    InSetOfRecords,
    InSetOfSets,
}

/// Valid args with 1–3 random fields replaced, removed or added, so most cases sit at the boundary.
fn mutated(valid: Value) -> impl Strategy<Value = Value> {
    let spot = prop_oneof![Just(Spot::Top), Just(Spot::InR), Just(Spot::InSetOfRecords), Just(Spot::InSetOfSets)];
    let value = proptest::option::of(prop_oneof![3 => leaf(), 1 => near_valid_json()]);
    proptest::collection::vec((spot, key(), value), 1..4).prop_map(move |mutations| {
        let mut args = valid.clone();
        for (spot, k, v) in mutations {
            let target = match spot {
                Spot::Top => Some(&mut args),
                Spot::InR => args.get_mut("r"),
                Spot::InSetOfRecords => args.get_mut("rr").and_then(|rr| rr.get_mut(0)),
                Spot::InSetOfSets => {
                    if let (Some(v), Some(Value::Array(outer))) = (&v, args.get_mut("ss")) {
                        outer.push(json!([v.clone()]));
                    }
                    continue;
                }
            };
            if let Some(Value::Object(m)) = target {
                match v {
                    Some(v) => m.insert(k, v),
                    None => m.remove(&k),
                };
            }
        }
        args
    })
}

fn kind() -> impl Strategy<Value = PrincipalKind> {
    prop_oneof![4 => Just(PrincipalKind::Agent), 1 => proptest::sample::select(PrincipalKind::ALL.to_vec())]
}

fn agree(action: &str, kind: PrincipalKind, args: &Value) -> Result<(), TestCaseError> {
    let e = engine();
    let principal = Principal { kind, name: "p".to_owned() };
    let request = PolicyRequest {
        principal: &principal,
        action,
        resource: "file:/a",
        run_id: None,
        run_state: None,
        classification: Classification { scope: EffectScope::Internal, access: Access::Read, risk: Risk::Low },
        cost: &Cost::zero(),
        time: Timestamp(0),
        args,
    };
    let fast = e.prepare(&request).map(|p| p.request.to_string());
    let reference = e.prepare_validated_by_cedar(&request).map(|p| p.request.to_string());
    prop_assert_eq!(fast.is_ok(), reference.is_ok(), "fast {:?} vs cedar {:?} for {}", fast, reference, args);
    if let (Ok(f), Ok(r)) = (fast, reference) {
        prop_assert_eq!(f, r);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_agrees_with_cedar_on_the_rich_type(
        kind in kind(),
        args in prop_oneof![
            4 => mutated(json!({"a": 1, "b": true, "s": ["p"], "r": {"x": "x", "y": [1, 2]}, "ss": [["q"]],
                                "rr": [{"k": "v"}]})),
            1 => near_valid_json(),
        ],
    ) {
        agree("test.rich", kind, &args)?;
    }

    #[test]
    fn fast_path_agrees_with_cedar_on_the_default_actions(
        (action, args) in proptest::sample::select(vec![
            ("fs.write", json!({"path": "/a", "content": "c"})),
            ("fs.read", json!({"path": "/a"})),
            ("process.exec", json!({"argv": ["ls"], "cwd": "/"})),
            ("model.call", json!({"model": "m", "prompt": "p", "max_tokens": 5})),
            ("http.request", json!({"method": "GET", "url": "u"})),
        ])
        .prop_flat_map(|(action, valid)| (Just(action), prop_oneof![4 => mutated(valid), 1 => near_valid_json()])),
        kind in kind(),
    ) {
        agree(action, kind, &args)?;
    }
}
