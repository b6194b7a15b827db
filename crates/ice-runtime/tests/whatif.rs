//! Data-driven what-if tests: each `tests/data/whatif/*.toml` records a history (grants, proposals) under the
//! default policy set, then evaluates it under a candidate set (default files plus `candidate.add`, with
//! `candidate.replace` swapping whole files) and checks that exactly the expected decisions flip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use common::Ledger;
use ice_runtime::{GrantInput, ProposalInput, WhatIfFilter};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[allow(dead_code)]
    description: String,
    candidate: Candidate,
    grant: Vec<Grant>,
    propose: Vec<Propose>,
    #[serde(default)]
    expect: Vec<Expect>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidate {
    #[serde(default)]
    add: BTreeMap<String, String>,
    #[serde(default)]
    replace: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Grant {
    to: String,
    actions: Vec<String>,
    resource: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Propose {
    r#as: String,
    action: String,
    path: String,
}

#[derive(Deserialize, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct Expect {
    proposal: usize,
    flip: String,
    policies: Vec<String>,
}

fn run(name: &str, text: &str) {
    let s: Scenario = toml::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let l = Ledger::new();
    let run = l.executing_run();
    for g in &s.grant {
        let input = GrantInput {
            principal: g.to.parse().unwrap(),
            run: None,
            actions: g.actions.clone(),
            resource: g.resource.clone(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        l.rt.issue_grant(&l.alice, &input).unwrap();
    }
    let mut ids = Vec::new();
    for p in &s.propose {
        let args = if matches!(p.action.as_str(), "fs.write" | "fs.append") {
            serde_json::json!({"path": p.path, "content": "x"})
        } else {
            serde_json::json!({"path": p.path})
        };
        let input = ProposalInput {
            run: Some(run.clone()),
            action: p.action.clone(),
            resource: format!("file:{}", p.path),
            args: args.to_string(),
            ..ProposalInput::default()
        };
        ids.push(l.rt.propose(&l.agent(&p.r#as), &input).unwrap().proposal.event_id.to_string());
    }
    let dir = tempfile::tempdir().unwrap();
    ice_runtime::policy::write_defaults(dir.path()).unwrap();
    for (file, text) in s.candidate.add.iter().chain(&s.candidate.replace) {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let candidate = ice_runtime::policy::PolicyBundle::load_dir(dir.path()).unwrap().compile().unwrap();
    let report = l.rt.what_if(&candidate, WhatIfFilter::default(), &mut |_, _| {}).unwrap();
    assert_eq!(report.evaluated, s.propose.len() as u64, "{name}");
    let mut got: Vec<Expect> = report
        .changes
        .iter()
        .map(|c| Expect {
            proposal: ids.iter().position(|id| *id == c.proposal_id).unwrap(),
            flip: format!("{}→{}", c.recorded.as_str(), c.replayed.as_str()),
            policies: c.policies.clone(),
        })
        .collect();
    got.sort();
    let mut want = s.expect;
    want.sort();
    assert_eq!(got, want, "{name}: the candidate must flip exactly the expected decisions");
    let total: u64 = report.counts.values().sum();
    assert_eq!(total, report.changes.len() as u64, "{name}: counts add up");
}

#[test]
fn what_if_scenarios_flip_exactly_the_expected_decisions() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/whatif");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            run(&path.display().to_string(), &std::fs::read_to_string(&path).unwrap());
            n += 1;
        }
    }
    assert!(n >= 2, "scenarios found in {}", dir.display());
}
