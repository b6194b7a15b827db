//! Policy tests: a table of requests with the outcome each must get, run against a compiled engine — a unit test
//! suite for policies. The case file format is documented in the crate docs.

use std::collections::BTreeMap;
use std::fmt;

use ice_core::{Access, Classification, Cost, Dimension, EffectScope, Principal, Risk, RunId, RunState, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::PolicyEngine;
use crate::error::PolicyError;
use crate::request::PolicyRequest;
use crate::verdict::{PolicyOutcome, PolicyVerdict};

/// One parsed test case: a request and the outcome it must get.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyCase {
    /// What the case checks.
    pub name: String,
    /// Who asks.
    pub principal: Principal,
    /// The action name.
    pub action: String,
    /// The resource.
    pub resource: String,
    /// The args object (`{}` when absent).
    pub args: Value,
    /// The classification (default internal / read / low).
    pub classification: Classification,
    /// The cost estimate (default zero).
    pub cost: Cost,
    /// The run, if any.
    pub run_id: Option<RunId>,
    /// The run's state, if any.
    pub run_state: Option<RunState>,
    /// The decision time (default: the epoch).
    pub time: Timestamp,
    /// The expected outcome.
    pub expect: PolicyOutcome,
    /// The expected determining policy ids (order-insensitive), when the case checks them.
    pub expect_policies: Option<Vec<String>>,
}

impl PolicyCase {
    /// The request this case evaluates.
    pub fn request(&self) -> PolicyRequest<'_> {
        PolicyRequest {
            principal: &self.principal,
            action: &self.action,
            resource: &self.resource,
            run_id: self.run_id,
            run_state: self.run_state,
            classification: self.classification,
            cost: &self.cost,
            time: self.time,
            args: &self.args,
        }
    }
}

/// One case's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyCaseResult {
    /// 1-based position in the file.
    pub index: usize,
    /// The case name.
    pub name: String,
    /// Whether the verdict matched the expectation.
    pub passed: bool,
    /// The expected outcome.
    pub expected: PolicyOutcome,
    /// The expected determining policies, when the case checks them (sorted).
    pub expected_policies: Option<Vec<String>>,
    /// What the engine concluded.
    pub actual: PolicyVerdict,
}

/// The results of a case file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTestReport {
    /// Every case, in file order.
    pub results: Vec<PolicyCaseResult>,
    /// How many passed.
    pub passed: usize,
    /// How many failed.
    pub failed: usize,
}

impl PolicyTestReport {
    /// Whether every case passed.
    pub fn all_passed(&self) -> bool {
        self.failed == 0
    }
}

impl fmt::Display for PolicyTestReport {
    /// One line per case (`ok` / `FAIL`) followed by its evaluation errors, if any, then `N passed, M failed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |outcome: PolicyOutcome, policies: &[String]| {
            if policies.is_empty() { outcome.to_string() } else { format!("{outcome} [{}]", policies.join(", ")) }
        };
        for r in &self.results {
            let actual = show(r.actual.outcome, &r.actual.policies);
            if r.passed {
                writeln!(f, "ok    {:>3}  {}: {actual}", r.index, r.name)?;
            } else {
                let expected = show(r.expected, r.expected_policies.as_deref().unwrap_or_default());
                writeln!(f, "FAIL  {:>3}  {}: expected {expected}, got {actual}", r.index, r.name)?;
            }
            for e in &r.actual.errors {
                writeln!(f, "           error: {e}")?;
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// Runs every case of a TOML case file against `engine`. A case file that cannot be read as cases is refused
/// with `ICE-E0605`, naming the case and the field; failing cases are reported, not errors.
pub fn run_policy_tests(engine: &PolicyEngine, cases_toml: &str) -> Result<PolicyTestReport, PolicyError> {
    let cases = parse_policy_cases(cases_toml)?;
    let results: Vec<PolicyCaseResult> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let actual = engine.evaluate(&case.request());
            let expected_policies = case.expect_policies.clone().map(|mut p| {
                p.sort();
                p.dedup();
                p
            });
            let policies_match = expected_policies.as_ref().is_none_or(|p| *p == actual.policies);
            PolicyCaseResult {
                index: i + 1,
                name: case.name.clone(),
                passed: actual.outcome == case.expect && policies_match,
                expected: case.expect,
                expected_policies,
                actual,
            }
        })
        .collect();
    let passed = results.iter().filter(|r| r.passed).count();
    Ok(PolicyTestReport { failed: results.len() - passed, passed, results })
}

/// A case as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    principal: String,
    action: String,
    resource: String,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    classification: RawClassification,
    #[serde(default)]
    cost: BTreeMap<String, u64>,
    run_id: Option<String>,
    run_state: Option<RunState>,
    time: Option<String>,
    expect: PolicyOutcome,
    expect_policies: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawClassification {
    scope: Option<EffectScope>,
    access: Option<Access>,
    risk: Option<Risk>,
}

/// Parses a TOML case file into cases (see the crate docs for the format).
pub fn parse_policy_cases(cases_toml: &str) -> Result<Vec<PolicyCase>, PolicyError> {
    let file_err = |message: String| PolicyError::Cases { case: None, message };
    let mut table: toml::Table =
        toml::from_str(cases_toml).map_err(|e| file_err(format!("not valid TOML: {}", e.to_string().trim())))?;
    let raw = table.remove("case");
    if let Some(key) = table.keys().next() {
        return Err(file_err(format!("unknown top-level key `{key}`; cases are written as [[case]] tables")));
    }
    let items = match raw {
        Some(toml::Value::Array(items)) if !items.is_empty() => items,
        Some(toml::Value::Array(_)) | None => return Err(file_err("the file has no [[case]] table".to_owned())),
        Some(_) => return Err(file_err("`case` must be an array of tables, written [[case]]".to_owned())),
    };
    items.into_iter().enumerate().map(|(i, item)| parse_case(i + 1, item)).collect()
}

fn parse_case(index: usize, item: toml::Value) -> Result<PolicyCase, PolicyError> {
    let label = match item.get("name").and_then(toml::Value::as_str) {
        Some(name) => format!("case {index} (`{name}`)"),
        None => format!("case {index}"),
    };
    let err = |message: String| PolicyError::Cases { case: Some(label.clone()), message };
    let raw: RawCase = item.try_into().map_err(|e: toml::de::Error| err(e.message().trim().to_owned()))?;
    let principal: Principal =
        raw.principal.parse().map_err(|e: ice_core::Rejection| err(format!("field `principal`: {}", e.message)))?;
    let args = raw.args.unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    if !args.is_object() {
        return Err(err("field `args` must be a table, e.g. args = { path = \"/sandbox/a.md\" }".to_owned()));
    }
    let mut cost = Cost::zero();
    for (name, amount) in &raw.cost {
        let d: Dimension =
            name.parse().map_err(|e: ice_core::Rejection| err(format!("field `cost`: {}", e.message)))?;
        cost.set(d, *amount);
    }
    let run_id = match &raw.run_id {
        Some(id) => Some(id.parse().map_err(|e: ice_core::Rejection| err(format!("field `run_id`: {}", e.message)))?),
        None => None,
    };
    let time = match &raw.time {
        Some(t) => Timestamp::parse_rfc3339(t)
            .map_err(|e| err(format!("field `time` must be an RFC 3339 time such as 2026-11-01T12:00:00Z: {e}")))?,
        None => Timestamp(0),
    };
    let c = raw.classification;
    Ok(PolicyCase {
        name: raw.name,
        principal,
        action: raw.action,
        resource: raw.resource,
        args,
        classification: Classification {
            scope: c.scope.unwrap_or(EffectScope::Internal),
            access: c.access.unwrap_or(Access::Read),
            risk: c.risk.unwrap_or(Risk::Low),
        },
        cost,
        run_id,
        run_state: raw.run_state,
        time,
        expect: raw.expect,
        expect_policies: raw.expect_policies,
    })
}
