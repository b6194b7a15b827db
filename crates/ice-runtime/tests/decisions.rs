//! Data-driven decision tests: each `tests/data/decisions/*.toml` scenario (grants, budgets, clock advances,
//! proposals against the default policy set) is run on a fresh ledger, and the decisions with their reasons are
//! compared with an insta snapshot in `tests/snapshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fmt::Write as _;

use ice_core::budget::{BudgetKey, Period};
use ice_core::{Cost, EventId};
use ice_runtime::{GrantInput, ProposalInput, RuntimeError};
use serde::Deserialize;
use serde_json::Value;

use common::Ledger;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    step: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Step {
    Grant {
        to: String,
        actions: Vec<String>,
        resource: String,
        ttl_s: Option<i64>,
        max_uses: Option<u64>,
        this_run: Option<bool>,
    },
    Revoke(usize),
    AdvanceS(i64),
    Budget {
        scope: String,
        dimension: String,
        limit: u64,
        period: Option<String>,
    },
    Propose {
        r#as: String,
        action: String,
        resource: String,
        args: Value,
        cost: Option<Cost>,
    },
    Settle {
        proposal: usize,
        actual: Cost,
    },
}

/// Replaces ids with stable labels so snapshots do not depend on id generation.
struct Labels(Vec<(String, String)>);

impl Labels {
    fn add(&mut self, id: impl ToString, label: String) {
        self.0.push((id.to_string(), label));
    }
    fn apply(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |t, (id, label)| t.replace(id, label))
    }
}

fn run_scenario(text: &str) -> String {
    let scenario: Scenario = toml::from_str(text).unwrap();
    let l = Ledger::new();
    let run = l.executing_run();
    let mut labels = Labels(vec![(run.clone(), "RUN".into())]);
    let mut grants: Vec<EventId> = Vec::new();
    let mut proposals: Vec<EventId> = Vec::new();
    let mut out = String::new();
    for (i, step) in scenario.step.into_iter().enumerate() {
        let line = match step {
            Step::Grant { to, actions, resource, ttl_s, max_uses, this_run } => {
                let input = GrantInput {
                    principal: to.parse().unwrap(),
                    run: this_run.unwrap_or(false).then(|| run.parse().unwrap()),
                    actions,
                    resource,
                    ttl_micros: ttl_s.map(|s| s * 1_000_000),
                    max_uses,
                    revocable: true,
                };
                let e = l.rt.issue_grant(&l.alice, &input).unwrap();
                labels.add(e.event_id, format!("grant#{}", grants.len()));
                grants.push(e.event_id);
                format!("grant#{} issued to {}", grants.len() - 1, input.principal)
            }
            Step::Revoke(g) => {
                l.rt.revoke_grant(&l.alice, grants[g], "scenario").unwrap();
                format!("grant#{g} revoked")
            }
            Step::AdvanceS(s) => {
                l.clock.advance(s * 1_000_000);
                format!("clock +{s}s")
            }
            Step::Budget { scope, dimension, limit, period } => {
                let scope = if scope == "run" { format!("run:{run}") } else { scope };
                let key = BudgetKey {
                    scope: scope.parse().unwrap(),
                    dimension: dimension.parse().unwrap(),
                    period: if period.as_deref() == Some("day") { Period::Day } else { Period::Total },
                };
                l.rt.set_budget(&l.alice, key.clone(), limit).unwrap();
                format!("budget {key} = {limit}")
            }
            Step::Propose { r#as, action, resource, args, cost } => {
                let input = ProposalInput {
                    run: Some(run.clone()),
                    action: action.clone(),
                    resource: resource.clone(),
                    args: args.to_string(),
                    purpose: "scenario".into(),
                    cost_estimate: cost.unwrap_or_default(),
                    ..ProposalInput::default()
                };
                match l.rt.propose(&l.agent(&r#as), &input) {
                    Ok(o) => {
                        labels.add(o.proposal.event_id, format!("proposal#{}", proposals.len()));
                        proposals.push(o.proposal.event_id);
                        let mut s = format!(
                            "proposal#{} {} {action} {resource} -> {}",
                            proposals.len() - 1,
                            r#as,
                            o.decision.verdict.as_str()
                        );
                        if let Some(v) = o.decision.violation {
                            let _ = write!(s, " ({v:?})");
                        }
                        for r in &o.decision.reasons {
                            let _ = write!(s, "\n    {}: {}", r.kind, r.detail);
                            if !r.ids.is_empty() {
                                let _ = write!(s, " [{}]", r.ids.join(", "));
                            }
                        }
                        s
                    }
                    Err(RuntimeError::Rejected { rejection, .. }) => {
                        format!("proposal by {} {action} {resource} refused: {}", r#as, rejection.code)
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            Step::Settle { proposal, actual } => match l.rt.settle(&l.alice, proposals[proposal], actual.clone()) {
                Ok(_) => format!("proposal#{proposal} settled at {actual}"),
                Err(RuntimeError::Rejected { rejection, .. }) => {
                    format!("proposal#{proposal} settle at {actual} refused: {}", rejection.code)
                }
                Err(e) => panic!("{e}"),
            },
        };
        let _ = writeln!(out, "{i:>2}. {}", labels.apply(&line));
    }
    l.fold_from_scratch();
    out
}

#[test]
fn decision_scenarios_match_their_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/decisions");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3, "scenarios live in {}", dir.display());
    for path in files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let output = run_scenario(&std::fs::read_to_string(&path).unwrap());
        insta::assert_snapshot!(name, output);
    }
}
