//! Authority through the runtime over a real SQLite ledger: grants with a fake clock, revocation, budgets under
//! concurrency, and a property test that nothing is allowed without a live grant and a Cedar permit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::decision::{Decision, Verdict, Violation};
use ice_core::{Cost, Dimension, ErrorCode, EventId, EventKind, Role, Roles};
use ice_runtime::{GrantInput, Presented, ProposalInput, RuntimeError};
use ice_store::EventQuery;
use proptest::prelude::*;

use common::{HOUR, Ledger, write};

fn grant(to: &str, ttl: Option<i64>, max_uses: Option<u64>) -> GrantInput {
    GrantInput {
        principal: to.parse().unwrap(),
        run: None,
        actions: vec!["fs.*".into()],
        resource: "file:/sandbox/".into(),
        ttl_micros: ttl,
        max_uses,
        revocable: true,
    }
}

#[test]
fn ttl_expiry_max_uses_and_revocation_with_a_fake_clock() {
    let l = Ledger::new();
    let run = l.executing_run();
    let verdict = |who: &str, p: &ProposalInput| l.rt.propose(&l.agent(who), p).unwrap().decision;

    // TTL: usable until it expires, then denied with the expiry recorded once.
    let g = l.rt.issue_grant(&l.alice, &grant("agent:a", Some(HOUR), None)).unwrap();
    assert_eq!(verdict("agent:a", &write(&run, "/sandbox/a")).verdict, Verdict::Allow);
    l.clock.advance(HOUR - 1);
    assert_eq!(verdict("agent:a", &write(&run, "/sandbox/a")).verdict, Verdict::Allow);
    l.clock.advance(1);
    let d = verdict("agent:a", &write(&run, "/sandbox/a"));
    assert_eq!((d.verdict, d.violation), (Verdict::Deny, Some(Violation::NoGrant)));
    assert!(d.reasons.iter().any(|r| r.kind == "no_grant" && r.detail.contains("expired")), "{:?}", d.reasons);
    verdict("agent:a", &write(&run, "/sandbox/a"));
    let expired = l.events(EventKind::GrantExpired);
    assert_eq!(expired.len(), 1, "expiry recorded exactly once");
    assert_eq!(expired[0].payload.to_value()["grant_id"], g.event_id.to_string());

    // Max uses: two allowed decisions, then used up.
    l.rt.issue_grant(&l.alice, &grant("agent:b", None, Some(2))).unwrap();
    for _ in 0..2 {
        assert_eq!(verdict("agent:b", &write(&run, "/sandbox/b")).verdict, Verdict::Allow);
    }
    let d = verdict("agent:b", &write(&run, "/sandbox/b"));
    assert_eq!(d.violation, Some(Violation::NoGrant));
    assert!(d.reasons.iter().any(|r| r.detail.contains("usedup")), "{:?}", d.reasons);

    // Revocation takes effect for the very next decision, and reaches the permit the grant already covered.
    let g = l.rt.issue_grant(&l.alice, &grant("agent:c", None, None)).unwrap();
    let covered = l.rt.propose(&l.agent("agent:c"), &write(&run, "/sandbox/c")).unwrap();
    assert_eq!(covered.decision.verdict, Verdict::Allow);
    let permit = covered.events.iter().find(|e| e.kind == EventKind::PermitIssued).unwrap().event_id;
    assert!(l.events(EventKind::PermitRevoked).is_empty());
    let revoked = l.rt.revoke_grant(&l.alice, g.event_id, "no longer trusted").unwrap();
    let permits_revoked = l.events(EventKind::PermitRevoked);
    assert_eq!(permits_revoked.len(), 1, "only the permit the revoked grant covered");
    assert_eq!(permits_revoked[0].payload.to_value()["permit_id"], permit.to_string());
    assert_eq!(permits_revoked[0].seq.0, revoked.seq.0 + 1, "in the same append as the revocation");
    let released = l.events(EventKind::BudgetReleased);
    assert_eq!(released.len(), 1, "with its reservation");
    assert_eq!(released[0].seq.0, revoked.seq.0 + 2);
    assert_eq!(verdict("agent:c", &write(&run, "/sandbox/c")).violation, Some(Violation::NoGrant));
    let again = l.rt.revoke_grant(&l.alice, g.event_id, "twice");
    assert!(
        matches!(again, Err(RuntimeError::Rejected { ref rejection, .. }) if rejection.code == ErrorCode::GrantNotRevocable)
    );
    let unknown = l.rt.revoke_grant(&l.alice, EventId(uuid::Uuid::nil()), "?");
    assert!(
        matches!(unknown, Err(RuntimeError::Rejected { ref rejection, .. }) if rejection.code == ErrorCode::UnknownGrant)
    );

    // Agents cannot issue grants, not even the operator acting for one; nor can a human without the operator role.
    let refused = l.rt.issue_grant(&l.agent("agent:a"), &grant("agent:a", None, None));
    assert!(
        matches!(refused, Err(RuntimeError::Rejected { ref rejection, .. }) if rejection.code == ErrorCode::OriginNotAuthorized)
    );
    let approver = l.human("human:bob", Roles::of(&[Role::Approver]));
    let refused = l.rt.issue_grant(&approver, &grant("agent:a", None, None));
    assert!(
        matches!(refused, Err(RuntimeError::Rejected { ref rejection, .. }) if rejection.code == ErrorCode::RoleRequired)
    );
}

/// 1,000 concurrent proposals against a budget that fits 100: exactly 100 allowed, never overspent; settling
/// releases the unused part of a reservation.
#[test]
fn budget_race_allows_exactly_what_fits() {
    let l = Ledger::new();
    let run = l.executing_run();
    l.rt.issue_grant(&l.alice, &grant("agent:a", None, None)).unwrap();
    let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total };
    l.rt.set_budget(&l.alice, key.clone(), 100).unwrap();
    let agent = l.agent("agent:a");
    let verdicts: Vec<(EventId, Decision)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                s.spawn(|| {
                    (0..20)
                        .map(|_| {
                            let o = l.rt.propose(&agent, &write(&run, "/sandbox/race")).unwrap();
                            (o.proposal.event_id, o.decision)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(verdicts.len(), 1000);
    let allowed: Vec<_> = verdicts.iter().filter(|(_, d)| d.verdict == Verdict::Allow).collect();
    assert_eq!(allowed.len(), 100, "exactly the budget");
    assert!(
        verdicts
            .iter()
            .filter(|(_, d)| d.verdict != Verdict::Allow)
            .all(|(_, d)| d.violation == Some(Violation::BudgetExceeded))
    );
    let used = |l: &Ledger| l.rt.with_state(|s| s.authority().budgets().lines()[&key].used(0)).unwrap();
    assert_eq!(used(&l), 100);

    // Settling by hand is refused while the reservation's permit can still run (its effect settles its own cost).
    let live = l.rt.settle(&l.alice, allowed[0].0, Cost::zero());
    assert!(
        matches!(live, Err(RuntimeError::Rejected { ref rejection, .. }) if rejection.code == ErrorCode::SettleWhileLive)
    );
    assert_eq!(used(&l), 100);
    // Once the permits have expired unused (not swept yet, so every reservation still stands), settle one with zero
    // actual calls: its unit is released and one more proposal fits.
    l.clock.advance(16 * 60 * 1_000_000);
    l.rt.settle(&l.alice, allowed[0].0, Cost::zero()).unwrap();
    assert_eq!(used(&l), 99);
    assert_eq!(l.rt.propose(&agent, &write(&run, "/sandbox/race")).unwrap().decision.verdict, Verdict::Allow);
    assert_eq!(l.rt.propose(&agent, &write(&run, "/sandbox/race")).unwrap().decision.verdict, Verdict::Deny);
    // A settled reservation cannot be settled twice.
    let twice = l.rt.settle(&l.alice, allowed[0].0, Cost::zero());
    assert!(
        matches!(twice, Err(RuntimeError::Rejected { ref rejection, .. }) if rejection.code == ErrorCode::UnknownProposal)
    );
    l.fold_from_scratch();
}

#[derive(Debug, Clone)]
enum Op {
    Grant { agent: usize, actions: &'static str, resource: &'static str, ttl_s: Option<i64>, max_uses: Option<u64> },
    Revoke(usize),
    Advance(i64),
    Propose { agent: usize, action: &'static str, path: &'static str },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0..3usize,
            prop::sample::select(vec!["fs.*", "fs.write", "fs.read"]),
            prop::sample::select(vec!["file:/sandbox/", "file:/other/", "file:/sandbox/*.md"]),
            prop::option::of(1..3000i64),
            prop::option::of(1..3u64)
        )
            .prop_map(|(agent, actions, resource, ttl_s, max_uses)| Op::Grant {
                agent,
                actions,
                resource,
                ttl_s,
                max_uses
            }),
        (0..8usize).prop_map(Op::Revoke),
        (0..2000i64).prop_map(Op::Advance),
        (
            0..3usize,
            prop::sample::select(vec!["fs.write", "fs.read", "fs.delete"]),
            prop::sample::select(vec!["/sandbox/a.md", "/other/b.txt", "/sandbox/secrets/k.md"])
        )
            .prop_map(|(agent, action, path)| Op::Propose { agent, action, path }),
    ]
}

/// The test's own model of a grant, kept independently of the runtime's fold.
struct ModelGrant {
    agent: usize,
    expires: Option<i64>,
    max_uses: Option<u64>,
    uses: u64,
    revoked: bool,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// For random sequences of grants, revocations, clock advances and proposals: no proposal is ever allowed
    /// without a grant that the test's own model says was live, and a Cedar permit; every proposal has exactly
    /// one recorded decision.
    #[test]
    fn nothing_is_allowed_without_a_live_grant_and_a_permit(ops in prop::collection::vec(op(), 1..30)) {
        let l = Ledger::fast();
        let run = l.executing_run();
        let agents = ["agent:p0", "agent:p1", "agent:p2"].map(|a| l.agent(a));
        let mut model: HashMap<EventId, ModelGrant> = HashMap::new();
        let mut order: Vec<EventId> = Vec::new();
        for op in ops {
            match op {
                Op::Grant { agent, actions, resource, ttl_s, max_uses } => {
                    let g = GrantInput {
                        principal: agents[agent].principal().clone(),
                        run: None,
                        actions: vec![actions.into()],
                        resource: resource.into(),
                        ttl_micros: ttl_s.map(|s| s * 1_000_000),
                        max_uses,
                        revocable: true,
                    };
                    let e = l.rt.issue_grant(&l.alice, &g).unwrap();
                    model.insert(e.event_id, ModelGrant {
                        agent, expires: ttl_s.map(|s| e.time.0 + s * 1_000_000), max_uses, uses: 0, revoked: false,
                    });
                    order.push(e.event_id);
                }
                Op::Revoke(i) => {
                    if let Some(id) = order.get(i) {
                        let result = l.rt.revoke_grant(&l.alice, *id, "prop");
                        let m = model.get_mut(id).unwrap();
                        prop_assert_eq!(result.is_ok(), !m.revoked);
                        m.revoked = true;
                    }
                }
                Op::Advance(s) => l.clock.advance(s * 1_000_000),
                Op::Propose { agent, action, path } => {
                    let mut p = write(&run, path);
                    p.action = action.into();
                    p.args = format!(r#"{{"path":"{path}","content":"x"}}"#);
                    let o = l.rt.propose(&agents[agent], &p).unwrap();
                    let d = &o.decision;
                    if d.verdict == Verdict::Allow {
                        let used = d.grants.first().copied();
                        prop_assert!(used.is_some(), "allow without a grant: {:?}", d);
                        let m = model.get_mut(&used.unwrap()).unwrap();
                        let now = o.proposal.time.0;
                        prop_assert_eq!(m.agent, agent);
                        prop_assert!(!m.revoked, "allowed on a revoked grant");
                        prop_assert!(m.expires.is_none_or(|t| now < t), "allowed on an expired grant");
                        prop_assert!(m.max_uses.is_none_or(|u| m.uses < u), "allowed on a used-up grant");
                        m.uses += 1;
                        prop_assert!(d.reasons.iter().any(|r| r.kind == "policy_permit"), "allow without a permit: {:?}", d);
                        prop_assert!(!path.contains("/secrets/"), "the no-secrets forbid must win");
                        prop_assert_ne!(action, "fs.delete", "irreversible actions need approval");
                    }
                }
            }
        }
        let proposals = l.events(EventKind::ProposalSubmitted);
        let decisions = l.events(EventKind::DecisionMade);
        prop_assert_eq!(proposals.len(), decisions.len());
        let mut per: HashMap<String, usize> = HashMap::new();
        for d in &decisions {
            *per.entry(d.payload.to_value()["proposal_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        for p in &proposals {
            prop_assert_eq!(per.get(&p.event_id.to_string()).copied(), Some(1), "exactly one decision per proposal");
        }
        l.fold_from_scratch();
    }
}

#[test]
fn decisions_are_one_atomic_bundle_with_causes() {
    let l = Ledger::new();
    let run = l.executing_run();
    l.rt.issue_grant(&l.alice, &grant("agent:a", None, None)).unwrap();
    let o = l.rt.propose(&l.agent("agent:a"), &write(&run, "/sandbox/x")).unwrap();
    let kinds: Vec<EventKind> = o.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::ProposalSubmitted,
            EventKind::DecisionMade,
            EventKind::GrantUsed,
            EventKind::BudgetReserved,
            EventKind::PermitIssued
        ]
    );
    assert_eq!(o.decision_event.causes, vec![o.proposal.event_id]);
    assert!(o.events[2..].iter().all(|e| e.causes == vec![o.decision_event.event_id]));
    let all = l.rt.store().read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).unwrap();
    let seqs: Vec<u64> = o.events.iter().map(|e| e.seq.0).collect();
    assert_eq!(seqs, (seqs[0]..seqs[0] + 5).collect::<Vec<_>>(), "contiguous: {all:?}");
}

#[test]
fn bad_proposals_are_refused_and_recorded() {
    let l = Ledger::new();
    let run = l.executing_run();
    let agent = l.agent("agent:a");
    let cases: Vec<(ProposalInput, ErrorCode)> = vec![
        (ProposalInput { action: "fs.teleport".into(), ..write(&run, "/sandbox/x") }, ErrorCode::UnknownAction),
        (
            ProposalInput { args: format!(r#"{{"p":"{}"}}"#, "x".repeat(40_000)), ..write(&run, "/sandbox/x") },
            ErrorCode::BadPayloadStructure,
        ),
        (ProposalInput { args: "{nope".into(), ..write(&run, "/sandbox/x") }, ErrorCode::MalformedJson),
        (
            ProposalInput { resource: "file:/sandbox/../etc/passwd".into(), ..write(&run, "/sandbox/x") },
            ErrorCode::BadResource,
        ),
    ];
    for (input, code) in cases {
        let before = l.count();
        match l.rt.propose(&agent, &input) {
            Err(RuntimeError::Rejected { rejection, record: Some(rec) }) => {
                assert_eq!(rejection.code, code, "{rejection}");
                assert_eq!(rec.kind, EventKind::TransitionRejected);
            }
            other => panic!("expected a recorded refusal with {code}, got {other:?}"),
        }
        assert_eq!(l.count(), before + 1, "only the rejection is written");
    }
    // Who proposes is no field of the input any more: a principal that is not one is refused when the caller
    // asks to act for it, before any proposal, and the refusal is recorded.
    let before = l.count();
    match l.rt.authenticate(&Presented::Local { act_as: Some("robot:a") }) {
        Err(RuntimeError::Rejected { rejection, record: Some(rec) }) => {
            assert_eq!(rejection.code, ErrorCode::BadEnvelopeField, "{rejection}");
            assert_eq!(rec.kind, EventKind::TransitionRejected);
        }
        other => panic!("expected a recorded refusal with {}, got {other:?}", ErrorCode::BadEnvelopeField),
    }
    assert_eq!(l.count(), before + 1, "only the rejection is written");
    assert!(l.events(EventKind::ProposalSubmitted).is_empty());
}

#[test]
fn consequences_suspend_and_contain() {
    let l = Ledger::with_catalog_edit(|c| {
        c.replace("no_grant = \"deny\"", "no_grant = \"suspend\"")
            .replace("policy_forbid = \"deny\"", "policy_forbid = \"contain\"")
    });
    let run = l.executing_run();
    let d = l.rt.propose(&l.agent("agent:rogue"), &write(&run, "/sandbox/x")).unwrap().decision;
    assert_eq!((d.verdict, d.violation), (Verdict::Suspend, Some(Violation::NoGrant)));
    assert!(l.rt.with_state(|s| s.authority().suspended(&"agent:rogue".parse().unwrap()).is_some()).unwrap());
    l.rt.issue_grant(&l.alice, &grant("agent:rogue", None, None)).unwrap();
    let d = l.rt.propose(&l.agent("agent:rogue"), &write(&run, "/sandbox/x")).unwrap().decision;
    assert_eq!((d.verdict, d.violation), (Verdict::Deny, Some(Violation::AgentSuspended)));

    l.rt.issue_grant(&l.alice, &grant("agent:ok", None, None)).unwrap();
    let d = l.rt.propose(&l.agent("agent:ok"), &write(&run, "/sandbox/secrets/k")).unwrap().decision;
    assert_eq!((d.verdict, d.violation), (Verdict::Deny, Some(Violation::PolicyForbid)));
    let d = l.rt.propose(&l.agent("agent:ok"), &write(&run, "/sandbox/fine.md")).unwrap().decision;
    assert_eq!(d.violation, Some(Violation::RunContained), "the run is contained after the forbid");
    l.fold_from_scratch();
    let _ = Arc::clone(&l.clock);
}

/// Cedar is evaluated before the state lock with the policy and run state the last decision saw
/// (`ice_runtime::verdicts`): a verdict evaluated on a policy or run state that changed before the decision must not
/// be used. Both changes here make the stale verdict (permit) wrong, so the test fails if either check is skipped.
#[test]
fn a_verdict_evaluated_ahead_of_the_lock_is_used_only_with_what_it_assumed() {
    let l = Ledger::new();
    l.rt.issue_grant(&l.alice, &grant("agent:w", None, None)).unwrap();
    let agent = l.agent("agent:w");
    let run = l.executing_run();
    let propose = |path: &str| l.rt.propose(&agent, &write(&run, path)).unwrap().decision;
    let first = propose("/sandbox/a.md");
    assert_eq!(first.verdict, Verdict::Allow, "{first:?}");

    // A new policy set forbids writes while the run is validating; the run is still executing, so writes stay
    // allowed, under the new policy's hash.
    let dir = tempfile::tempdir().unwrap();
    ice_runtime::policy::write_defaults(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("validating.cedar"),
        "@id(\"no-writes-while-validating\")\n\
         forbid (principal, action == Ice::Action::\"fs.write\", resource) when { context.run_state == \"VALIDATING\" };\n",
    )
    .unwrap();
    l.rt.activate_policy(&l.alice, dir.path()).unwrap();
    let second = propose("/sandbox/b.md");
    assert_eq!(second.verdict, Verdict::Allow, "{second:?}");
    assert_ne!(second.policy_hash, first.policy_hash, "decided under the new policy, not the one hinted");

    // The run moves on to VALIDATING: the hint still says EXECUTING, under which the new policy permits.
    l.rt.advance_run(&l.alice, run.parse().unwrap(), None, None).unwrap();
    let third = propose("/sandbox/c.md");
    assert_eq!(third.verdict, Verdict::Deny, "{third:?}");
    assert!(third.policies.iter().any(|p| p == "no-writes-while-validating"), "{third:?}");

    // With nothing changed since, the verdict evaluated ahead is used, and it is the same one.
    let fourth = propose("/sandbox/d.md");
    assert_eq!((fourth.verdict, &fourth.policies), (third.verdict, &third.policies));

    // Another policy set forbids writes for another reason: the hinted policy's verdict would name the old forbid.
    let dir = tempfile::tempdir().unwrap();
    ice_runtime::policy::write_defaults(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("frozen.cedar"),
        "@id(\"frozen\")\nforbid (principal, action == Ice::Action::\"fs.write\", resource);\n",
    )
    .unwrap();
    l.rt.activate_policy(&l.alice, dir.path()).unwrap();
    let fifth = propose("/sandbox/e.md");
    assert_eq!(fifth.verdict, Verdict::Deny, "{fifth:?}");
    assert_eq!(fifth.policies, ["frozen"], "{fifth:?}");
    l.fold_from_scratch();
}
