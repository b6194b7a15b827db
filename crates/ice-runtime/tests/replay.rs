//! Replay in-process: a randomized workload (runs, grants, budgets, proposals, executions, approvals, suspensions,
//! clock advances, checkpoints every few events) replays to exactly the live state root, every recorded decision
//! reproduces, and every checkpoint's signed state root matches; what-if reports exactly the expected flips.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::Ledger;
use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::decision::Verdict;
use ice_core::{Dimension, EventKind, Principal};
use ice_effects::{Effectors, EffectsConfig};
use ice_runtime::{ExecInput, GrantInput, ProposalInput, WhatIfFilter};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Run,
    Advance(usize),
    Grant { agent: usize, prefix: &'static str, ttl_s: Option<i64> },
    Budget(u64),
    Propose { agent: usize, run: usize, action: &'static str, file: usize },
    Exec(usize),
    Approve(usize),
    Suspend(usize),
    Tick(i64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => Just(Op::Run),
        1 => (0..4usize).prop_map(Op::Advance),
        2 => (0..3usize, prop::sample::select(vec!["file:a/", "file:b/", "file:"]), prop::option::of(1..600i64))
            .prop_map(|(agent, prefix, ttl_s)| Op::Grant { agent, prefix, ttl_s }),
        1 => (1..20u64).prop_map(Op::Budget),
        5 => (0..3usize, 0..4usize, prop::sample::select(vec!["fs.write", "fs.append", "fs.delete", "fs.read"]), 0..3usize)
            .prop_map(|(agent, run, action, file)| Op::Propose { agent, run, action, file }),
        4 => (0..16usize).prop_map(Op::Exec),
        2 => (0..8usize).prop_map(Op::Approve),
        1 => (0..3usize).prop_map(Op::Suspend),
        1 => (0..400i64).prop_map(Op::Tick),
    ]
}

const AGENTS: [&str; 3] = ["agent:p0", "agent:p1", "agent:p2"];

fn ledger() -> Ledger {
    let mut l = Ledger::fast().with_checkpoints(5);
    let effectors = Effectors::new(&EffectsConfig::default(), l.dir(), &l.dir().join("state")).unwrap();
    l.rt.set_effectors(Arc::new(effectors));
    l
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn replay_of_a_random_workload_reproduces_the_live_state(ops in prop::collection::vec(op(), 1..60)) {
        let l = ledger();
        // alice proposes for the agents, so another human answers their approvals.
        let approver = l.human("human:bob", ice_core::Roles::of(&[ice_core::Role::Approver]));
        let mut runs = vec![l.executing_run()];
        let mut permits: Vec<(String, String)> = Vec::new();
        let mut approvals = Vec::new();
        for op in ops {
            match op {
                Op::Run => runs.push(l.executing_run()),
                Op::Advance(i) => {
                    if let Some(r) = runs.get(i) {
                        let _ = l.rt.finish_run(&l.alice, r.parse().unwrap());
                    }
                }
                Op::Grant { agent, prefix, ttl_s } => {
                    let g = GrantInput {
                        principal: AGENTS[agent].parse().unwrap(), run: None, actions: vec!["fs.*".into()],
                        resource: prefix.into(), ttl_micros: ttl_s.map(|s| s * 1_000_000), max_uses: Some(3), revocable: true,
                    };
                    l.rt.issue_grant(&l.alice, &g).unwrap();
                }
                Op::Budget(limit) => {
                    let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Day };
                    l.rt.set_budget(&l.alice, key, limit).unwrap();
                }
                Op::Propose { agent, run, action, file } => {
                    let Some(run) = runs.get(run) else { continue };
                    let path = format!("{}/f{file}.txt", if file % 2 == 0 { "a" } else { "b" });
                    let args = if matches!(action, "fs.write" | "fs.append") {
                        format!(r#"{{"path":"{path}","content":"x"}}"#)
                    } else {
                        format!(r#"{{"path":"{path}"}}"#)
                    };
                    let input = ProposalInput {
                        run: Some(run.clone()), action: action.into(),
                        resource: format!("file:{path}"), args, cost_estimate: ice_core::Cost::of(Dimension::Calls, 1),
                        ..ProposalInput::default()
                    };
                    if let Ok(o) = l.rt.propose(&l.agent(AGENTS[agent]), &input) {
                        for e in &o.events {
                            match e.kind {
                                EventKind::PermitIssued => permits.push((e.event_id.to_string(), AGENTS[agent].into())),
                                EventKind::ApprovalRequested => approvals.push(e.event_id),
                                _ => {}
                            }
                        }
                    }
                }
                Op::Exec(i) => {
                    if let Some((permit, actor)) = permits.get(i) {
                        let _ = l.rt.execute(&l.agent(actor), &ExecInput { permit: permit.clone(), args: None });
                    }
                }
                Op::Approve(i) => {
                    let answered = approvals.get(i).map(|a| l.rt.approve(&approver, *a, None, None));
                    if let Some(Ok(events)) = answered {
                        for e in events.iter().filter(|e| e.kind == EventKind::PermitIssued) {
                            let terms: ice_core::effect::PermitIssued = serde_json::from_str(e.payload.as_str()).unwrap();
                            permits.push((e.event_id.to_string(), terms.actor.to_string()));
                        }
                    }
                }
                Op::Suspend(agent) => {
                    let who: Principal = AGENTS[agent].parse().unwrap();
                    let _ = l.rt.suspend_agent(&l.alice, &who, "prop");
                    let _ = l.rt.reconfigure_agent(&l.alice, &who, "prop");
                    let _ = l.rt.resume_agent(&l.alice, &who, "prop");
                }
                Op::Tick(s) => l.clock.advance(s * 1_000_000),
            }
        }
        let report = l.rt.replay(&mut |_, _| {}).unwrap();
        prop_assert!(report.divergence.is_none(), "{:?}", report.divergence);
        prop_assert!(report.decision_mismatches.is_empty(), "{:?}", report.decision_mismatches);
        prop_assert_eq!(&report.state_root, &report.live_root);
        prop_assert!(report.checkpoints > 0);
        l.fold_from_scratch();
    }
}

#[test]
fn what_if_reports_exactly_the_flips_of_a_stricter_policy() {
    let l = ledger();
    let run = l.executing_run();
    for agent in AGENTS {
        let g = GrantInput {
            principal: agent.parse().unwrap(),
            run: None,
            actions: vec!["fs.*".into()],
            resource: "file:".into(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        l.rt.issue_grant(&l.alice, &g).unwrap();
    }
    let propose = |agent: &str, action: &str, path: &str| {
        let args = if action == "fs.write" {
            format!(r#"{{"path":"{path}","content":"x"}}"#)
        } else {
            format!(r#"{{"path":"{path}"}}"#)
        };
        let input = ProposalInput {
            run: Some(run.clone()),
            action: action.into(),
            resource: format!("file:{path}"),
            args,
            ..ProposalInput::default()
        };
        l.rt.propose(&l.agent(agent), &input).unwrap().decision.verdict
    };
    assert_eq!(propose("agent:p0", "fs.write", "a/x.txt"), Verdict::Allow);
    assert_eq!(propose("agent:p1", "fs.write", "a/y.txt"), Verdict::Allow);
    assert_eq!(propose("agent:p1", "fs.read", "b/z.txt"), Verdict::Allow);
    assert_eq!(propose("agent:p2", "fs.delete", "a/x.txt"), Verdict::RequireApproval);
    assert_eq!(propose("agent:p2", "fs.read", "secrets/k"), Verdict::Deny);

    // The candidate: agent:p1 may no longer write; every delete is forbidden outright.
    let dir = tempfile::tempdir().unwrap();
    ice_runtime::policy::write_defaults(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("stricter.cedar"),
        "@id(\"p1-read-only\")\nforbid (principal == Ice::Agent::\"p1\", action == Ice::Action::\"fs.write\", resource);\n\
         @id(\"no-deletes\")\nforbid (principal, action == Ice::Action::\"fs.delete\", resource);\n",
    )
    .unwrap();
    let candidate = ice_runtime::policy::PolicyBundle::load_dir(dir.path()).unwrap().compile().unwrap();
    let report = l.rt.what_if(&candidate, WhatIfFilter::default(), &mut |_, _| {}).unwrap();
    assert_eq!(report.evaluated, 5);
    let flips: Vec<(String, Verdict, Verdict)> =
        report.changes.iter().map(|c| (c.actor.clone(), c.recorded, c.replayed)).collect();
    assert_eq!(
        flips,
        [
            ("agent:p1".to_owned(), Verdict::Allow, Verdict::Deny),
            ("agent:p2".to_owned(), Verdict::RequireApproval, Verdict::Deny)
        ]
    );
    assert_eq!(report.counts.get("allow→deny"), Some(&1));
    assert_eq!(report.counts.get("require_approval→deny"), Some(&1));
    // The same set as recorded changes nothing.
    let same_dir = tempfile::tempdir().unwrap();
    ice_runtime::policy::write_defaults(same_dir.path()).unwrap();
    let same = ice_runtime::policy::PolicyBundle::load_dir(same_dir.path()).unwrap().compile().unwrap();
    assert!(l.rt.what_if(&same, WhatIfFilter::default(), &mut |_, _| {}).unwrap().changes.is_empty());
}
