//! The effect boundary in-process: an instrumented effector proves that no effector call ever happens without a
//! matching, unused permit, under random sequences of proposals, executions (right args, other args, reused and
//! unknown permits), suspensions and clock advances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::Ledger;
use ice_core::effect::{EffectStarted, PermitIssued, PermitRevoked};
use ice_core::{Classification, EventId, EventKind, Principal, Role, Roles};
use ice_effects::{BlobStore, EffectCall, EffectError, Effector, Effectors, EffectsConfig, Evidence, FsEffector, Plan};
use ice_runtime::{ExecInput, GrantInput, ProposalInput, RuntimeError};
use ice_store::{EventQuery, Store};
use proptest::prelude::*;

/// What the instrumented effector saw at each call.
#[derive(Debug, Clone)]
struct Call {
    key: String,
    args_hash: String,
    /// `EffectStarted` events naming this permit in the ledger at the moment of the call.
    started_in_ledger: usize,
}

/// Wraps the real fs effector and records every `apply`, checking the ledger at the moment of the call.
struct Recording {
    inner: Box<dyn Effector>,
    calls: Arc<Mutex<Vec<Call>>>,
    store: Arc<dyn Store>,
}

impl Effector for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn actions(&self) -> &'static [&'static str] {
        self.inner.actions()
    }
    fn classification(&self, action: &str) -> Option<Classification> {
        self.inner.classification(action)
    }
    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError> {
        self.inner.plan(call)
    }
    fn apply(&self, call: &EffectCall<'_>, plan: &Plan) -> Result<Evidence, EffectError> {
        let started = self
            .store
            .read(&EventQuery { kind: Some(EventKind::EffectStarted), limit: usize::MAX, ..EventQuery::default() })
            .unwrap()
            .iter()
            .filter(|e| {
                serde_json::from_str::<EffectStarted>(e.payload.as_str()).unwrap().permit_id.to_string()
                    == call.idempotency_key
            })
            .count();
        self.calls.lock().unwrap().push(Call {
            key: call.idempotency_key.to_owned(),
            args_hash: call.args_hash.to_owned(),
            started_in_ledger: started,
        });
        self.inner.apply(call, plan)
    }
}

fn ledger_with_recorder() -> (Ledger, Arc<Mutex<Vec<Call>>>) {
    let mut l = Ledger::fast().with_checkpoints(0);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let config = EffectsConfig::default();
    let state = l.dir().join("state");
    let effectors = Effectors::new(&config, l.dir(), &state).unwrap();
    let blobs = BlobStore::open(state.join("blobs")).unwrap();
    let inner = Box::new(FsEffector::new(effectors.sandbox_root(), blobs).unwrap());
    let recording = Recording { inner, calls: calls.clone(), store: l.rt.store().clone() };
    l.rt.set_effectors(Arc::new(effectors.with(Box::new(recording))));
    (l, calls)
}

#[derive(Debug, Clone)]
enum Op {
    Propose {
        path: usize,
        granted: bool,
    },
    Exec {
        permit: usize,
        args: ArgsChoice,
    },
    ExecUnknown,
    SuspendAndResume,
    Advance(i64),
    /// A checkpoint: settled permits and proposals retire from memory (and must stay single-use).
    Checkpoint,
}

#[derive(Debug, Clone, Copy)]
enum ArgsChoice {
    Proposed,
    Exact,
    Other,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize, any::<bool>()).prop_map(|(path, granted)| Op::Propose { path, granted }),
        4 => (0..12usize, prop::sample::select(vec![ArgsChoice::Proposed, ArgsChoice::Exact, ArgsChoice::Other]))
            .prop_map(|(permit, args)| Op::Exec { permit, args }),
        1 => Just(Op::ExecUnknown),
        1 => Just(Op::SuspendAndResume),
        1 => (0..700i64).prop_map(Op::Advance),
        1 => Just(Op::Checkpoint),
    ]
}

struct ModelPermit {
    id: EventId,
    args: String,
    expires_at: i64,
    used: bool,
    revoked: bool,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn no_effector_call_without_a_matching_unused_permit(ops in prop::collection::vec(op(), 1..40)) {
        let (l, calls) = ledger_with_recorder();
        let run = l.executing_run();
        let agent = l.agent("agent:w");
        let grant = GrantInput {
            principal: agent.principal().clone(), run: None, actions: vec!["fs.write".into()],
            resource: "file:ok/".into(), ttl_micros: None, max_uses: None, revocable: true,
        };
        l.rt.issue_grant(&l.alice, &grant).unwrap();
        let mut permits: Vec<ModelPermit> = Vec::new();
        let mut n = 0;
        for op in ops {
            match op {
                Op::Propose { path, granted } => {
                    n += 1;
                    let dir = if granted { "ok" } else { "no" };
                    let p = format!("{dir}/f{path}.txt");
                    let args = format!(r#"{{"path":"{p}","content":"v{n}"}}"#);
                    let input = ProposalInput {
                        run: Some(run.clone()), action: "fs.write".into(),
                        resource: format!("file:{p}"), args: args.clone(), ..ProposalInput::default()
                    };
                    let out = l.rt.propose(&agent, &input).unwrap();
                    let permit = out.events.iter().find(|e| e.kind == EventKind::PermitIssued);
                    prop_assert_eq!(permit.is_some(), granted, "a permit exactly when allowed");
                    if let Some(e) = permit {
                        let terms: PermitIssued = serde_json::from_str(e.payload.as_str()).unwrap();
                        permits.push(ModelPermit { id: e.event_id, args, expires_at: terms.expires_at.0, used: false, revoked: false });
                    }
                }
                Op::Exec { permit, args } => {
                    let Some(m) = permits.get_mut(permit) else { continue };
                    let given = match args {
                        ArgsChoice::Proposed => None,
                        ArgsChoice::Exact => Some(m.args.clone()),
                        ArgsChoice::Other => Some(m.args.replace("\"v", "\"other-v")),
                    };
                    let exact = !matches!(args, ArgsChoice::Other);
                    let live = !m.used && !m.revoked && l.rt.now().0 <= m.expires_at;
                    let out = l.rt.execute(&agent, &ExecInput { permit: m.id.to_string(), args: given });
                    prop_assert_eq!(out.is_ok(), live && exact, "exec of {:?} with {:?}: {:?}", m.id, args, out.as_ref().err());
                    if let Err(RuntimeError::Rejected { record, .. }) = &out {
                        prop_assert_eq!(record.as_ref().map(|r| r.kind), Some(EventKind::EffectRefused));
                    }
                    if out.is_ok() {
                        m.used = true;
                    }
                }
                Op::ExecUnknown => {
                    let out = l.rt.execute(&agent, &ExecInput { permit: l.rt.fresh_event_id().to_string(), args: None });
                    prop_assert!(out.is_err());
                }
                Op::SuspendAndResume => {
                    l.rt.suspend_agent(&l.alice, agent.principal(), "prop").unwrap();
                    l.rt.reconfigure_agent(&l.alice, agent.principal(), "prop change").unwrap();
                    l.rt.resume_agent(&l.alice, agent.principal(), "prop").unwrap();
                    let now = l.rt.now().0;
                    for m in permits.iter_mut().filter(|m| !m.used && now <= m.expires_at) {
                        m.revoked = true;
                    }
                }
                Op::Advance(s) => l.clock.advance(s * 1_000_000),
                Op::Checkpoint => {
                    l.rt.checkpoint().unwrap();
                }
            }
        }

        // Every effector call had exactly one EffectStarted for its permit, durable before the call, with the
        // permit's args hash; no permit was used twice; no revoked permit was used.
        let calls = calls.lock().unwrap().clone();
        let issued: HashMap<String, PermitIssued> = l.events(EventKind::PermitIssued).iter()
            .map(|e| (e.event_id.to_string(), serde_json::from_str(e.payload.as_str()).unwrap())).collect();
        let started = l.events(EventKind::EffectStarted);
        prop_assert_eq!(calls.len(), started.len());
        prop_assert_eq!(calls.len(), permits.iter().filter(|m| m.used).count());
        let mut seen = std::collections::HashSet::new();
        for c in &calls {
            prop_assert_eq!(c.started_in_ledger, 1, "EffectStarted was durable before the call");
            let terms = issued.get(&c.key);
            prop_assert!(terms.is_some(), "the call's key is a permit");
            prop_assert_eq!(&terms.unwrap().args_hash, &c.args_hash, "with the permitted args");
            prop_assert!(seen.insert(c.key.clone()), "each permit at most once");
        }
        let revoked: Vec<(String, u64)> = l.events(EventKind::PermitRevoked).iter()
            .map(|e| (serde_json::from_str::<PermitRevoked>(e.payload.as_str()).unwrap().permit_id.to_string(), e.seq.0)).collect();
        for s in &started {
            let p: EffectStarted = serde_json::from_str(s.payload.as_str()).unwrap();
            prop_assert!(!revoked.iter().any(|(id, seq)| *id == p.permit_id.to_string() && *seq < s.seq.0));
        }
        l.fold_from_scratch();
    }
}

fn attach(l: &mut Ledger, config: &EffectsConfig) {
    let effectors = Effectors::new(config, l.dir(), &l.dir().join("state")).unwrap();
    l.rt.set_effectors(Arc::new(effectors));
}

fn propose(
    l: &Ledger,
    run: &str,
    actor: &str,
    action: &str,
    resource: &str,
    args: &str,
) -> ice_runtime::DecisionOutcome {
    let input = ProposalInput {
        run: Some(run.into()),
        action: action.into(),
        resource: resource.into(),
        args: args.into(),
        ..ProposalInput::default()
    };
    l.rt.propose(&l.agent(actor), &input).unwrap()
}

/// A global budget of `limit` calls.
fn global_calls(l: &Ledger, limit: u64) {
    let key = ice_core::budget::BudgetKey {
        scope: ice_core::budget::BudgetScope::Global,
        dimension: ice_core::Dimension::Calls,
        period: ice_core::budget::Period::Total,
    };
    l.rt.set_budget(&l.alice, key, limit).unwrap();
}

fn grant_all(l: &Ledger, who: &str) {
    let g = GrantInput {
        principal: who.parse().unwrap(),
        run: None,
        actions: vec!["*".into()],
        resource: "*".into(),
        ttl_micros: None,
        max_uses: None,
        revocable: true,
    };
    l.rt.issue_grant(&l.alice, &g).unwrap();
}

#[test]
fn unanswered_approvals_escalate_once_then_expire() {
    let mut l = Ledger::with_catalog_edit(|c| {
        c.replace("on_timeout = \"deny\"", "on_timeout = \"escalate\"")
            .replace("escalate_to = []", "escalate_to = [\"human:security\"]")
            .replace("approvers = [\"human:*\"]", "approvers = [\"human:alice\", \"human:bob\"]")
    });
    attach(&mut l, &EffectsConfig::default());
    let run = l.executing_run();
    grant_all(&l, "agent:a");
    let o = propose(&l, &run, "agent:a", "fs.delete", "file:x.txt", r#"{"path":"x.txt"}"#);
    let approval = l.rt.with_state(|s| s.effects().approval_for(o.proposal.event_id).map(|a| a.id)).unwrap().unwrap();
    let bob = l.human("human:bob", Roles::of(&[Role::Approver]));
    let security = l.human("human:security", Roles::of(&[Role::Approver]));
    // Before escalation the security team is not an approver.
    let err = l.rt.approve(&security, approval, None, None).unwrap_err();
    assert_eq!(err.code(), ice_core::ErrorCode::ApproverNotAuthorized);

    l.clock.advance(25 * common::HOUR);
    let swept = l.rt.reconcile().unwrap();
    assert_eq!(swept.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::ApprovalEscalated]);
    // Now bob may not answer; security may — but does not, and it expires.
    assert_eq!(
        l.rt.approve(&bob, approval, None, None).unwrap_err().code(),
        ice_core::ErrorCode::ApproverNotAuthorized
    );
    l.clock.advance(25 * common::HOUR);
    let swept = l.rt.reconcile().unwrap();
    assert_eq!(swept.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::ApprovalExpired]);
    assert_eq!(l.rt.approve(&security, approval, None, None).unwrap_err().code(), ice_core::ErrorCode::ApprovalClosed);
    assert!(l.rt.reconcile().unwrap().is_empty(), "nothing left to sweep");
    l.fold_from_scratch();
}

#[test]
fn a_process_effect_runs_once_with_evidence_and_is_listed_as_irreversible() {
    let mut l = Ledger::new();
    let mut config = EffectsConfig::default();
    config.process.allow = vec!["sh".into()];
    attach(&mut l, &config);
    let run = l.executing_run();
    grant_all(&l, "agent:a");
    let args = r#"{"argv":["sh","-c","echo ran >> count.txt; echo hello"]}"#;
    let o = propose(&l, &run, "agent:a", "process.exec", "process:sh", args);
    assert_eq!(o.decision.verdict, ice_core::decision::Verdict::RequireApproval, "{:?}", o.decision.reasons);
    let approval = l.rt.with_state(|s| s.effects().approval_for(o.proposal.event_id).map(|a| a.id)).unwrap().unwrap();
    // alice proposed for agent:a, so a second human answers.
    let bob = l.human("human:bob", ice_core::Roles::of(&[ice_core::Role::Approver]));
    let events = l.rt.approve(&bob, approval, None, Some("ok")).unwrap();
    let permit = events.iter().find(|e| e.kind == EventKind::PermitIssued).unwrap().event_id;
    let out = l.rt.execute(&l.agent("agent:a"), &ExecInput { permit: permit.to_string(), args: None }).unwrap();
    let evidence = out.evidence.unwrap();
    assert_eq!(evidence.detail["exit_code"], 0);
    assert_eq!(evidence.output_bytes, 6, "stdout `hello\\n`");
    let sandbox = l.rt.effector_registry().unwrap().sandbox_root().to_path_buf();
    assert_eq!(std::fs::read_to_string(sandbox.join("count.txt")).unwrap(), "ran\n");

    // A program that is not allowlisted is refused at the boundary even when policy and approval allow it.
    let o = propose(&l, &run, "agent:a", "process.exec", "process:rm", r#"{"argv":["rm","-rf","x"]}"#);
    let approval = l.rt.with_state(|s| s.effects().approval_for(o.proposal.event_id).map(|a| a.id)).unwrap().unwrap();
    let events = l.rt.approve(&bob, approval, None, None).unwrap();
    let permit = events.iter().find(|e| e.kind == EventKind::PermitIssued).unwrap().event_id;
    let err = l.rt.execute(&l.agent("agent:a"), &ExecInput { permit: permit.to_string(), args: None }).unwrap_err();
    assert_eq!(err.code(), ice_core::ErrorCode::NotAllowlisted);

    let report = l.rt.rollback(&l.alice, ice_runtime::RollbackTarget::Run(run.parse().unwrap())).unwrap();
    assert!(matches!(report.items[0].step, ice_runtime::RollbackStep::Irreversible { .. }), "{report:?}");
    assert_eq!(std::fs::read_to_string(sandbox.join("count.txt")).unwrap(), "ran\n", "ran exactly once");
    l.fold_from_scratch();
}

#[test]
fn reservations_of_permits_that_expire_or_are_revoked_unused_are_released() {
    let mut l = Ledger::new();
    attach(&mut l, &EffectsConfig::default());
    let run = l.executing_run();
    grant_all(&l, "agent:a");
    global_calls(&l, 2);
    let write = |path: &str| {
        let input = ProposalInput {
            run: Some(run.clone()),
            action: "fs.write".into(),
            resource: format!("file:{path}"),
            args: format!(r#"{{"path":"{path}","content":"x"}}"#),
            cost_estimate: ice_core::Cost::of(ice_core::Dimension::Calls, 1),
            ..ProposalInput::default()
        };
        l.rt.propose(&l.agent("agent:a"), &input).unwrap().decision.verdict
    };
    use ice_core::decision::Verdict;
    assert_eq!(write("a"), Verdict::Allow);
    assert_eq!(write("b"), Verdict::Allow);
    assert_eq!(write("c"), Verdict::Deny, "both calls are reserved");
    // The permits expire unused: their reservations are released, nothing was spent.
    l.clock.advance(16 * 60 * 1_000_000);
    let swept = l.rt.reconcile().unwrap();
    assert_eq!(swept.iter().filter(|e| e.kind == EventKind::BudgetReleased).count(), 2);
    assert!(l.rt.reconcile().unwrap().is_empty(), "released once");
    assert_eq!(write("d"), Verdict::Allow);
    // Suspending the agent revokes the new permit and releases its reservation in the same append.
    let agent: Principal = "agent:a".parse().unwrap();
    l.rt.suspend_agent(&l.alice, &agent, "test").unwrap();
    assert_eq!(l.events(EventKind::BudgetReleased).len(), 3);
    l.rt.reconfigure_agent(&l.alice, &agent, "test").unwrap();
    l.rt.resume_agent(&l.alice, &agent, "test").unwrap();
    assert_eq!(write("e"), Verdict::Allow);
    assert_eq!(write("f"), Verdict::Allow);
    assert_eq!(write("g"), Verdict::Deny);
    l.fold_from_scratch();
}

/// The deadline after which other machines may presume an effect's outcome unknown is the starting instance's
/// configured one, recorded with the effect.
#[test]
fn the_outcome_deadline_is_configurable_and_recorded() {
    let mut l = Ledger::new();
    attach(&mut l, &EffectsConfig::default());
    l.rt.set_outcome_deadline_secs(42);
    let run = l.executing_run();
    grant_all(&l, "agent:a");
    let o = propose(&l, &run, "agent:a", "fs.write", "file:d.txt", r#"{"path":"d.txt","content":"x"}"#);
    let permit = o.events.iter().find(|e| e.kind == EventKind::PermitIssued).unwrap().event_id;
    let out = l.rt.execute(&l.agent("agent:a"), &ExecInput { permit: permit.to_string(), args: None }).unwrap();
    let started: EffectStarted = serde_json::from_str(out.started.payload.as_str()).unwrap();
    assert_eq!(started.deadline.0 - out.started.time.0, 42_000_000);
    assert_eq!(started.journal, None, "a file effect is recognised in the file, not in a journal");
}

/// A proposer that stops waiting withdraws its proposal: the pending approval closes (an approver can no longer
/// grant it), an unused permit is revoked with its reservation released; only the proposer may, only while
/// something is open, and the fold reproduces it.
#[test]
fn a_proposer_withdraws_a_waiting_approval_or_an_unused_permit() {
    let mut l = Ledger::new();
    attach(&mut l, &EffectsConfig::default());
    let run = l.executing_run();
    grant_all(&l, "agent:a");
    global_calls(&l, 1);
    let o = propose(&l, &run, "agent:a", "fs.delete", "file:x.txt", r#"{"path":"x.txt"}"#);
    let proposal = o.proposal.event_id;
    let approval = l.rt.with_state(|s| s.effects().approval_for(proposal).map(|a| a.id)).unwrap().unwrap();
    let other = l.agent("agent:b");
    let err = l.rt.withdraw(&other, proposal, "not mine").unwrap_err();
    assert_eq!(err.code(), ice_core::ErrorCode::ActAsNotAllowed);
    let events = l.rt.withdraw(&l.agent("agent:a"), proposal, "stopped waiting").unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::ProposalWithdrawn, EventKind::ApprovalExpired]);
    assert_eq!(events[0].origin.to_string(), "agent:a");
    let bob = l.human("human:bob", Roles::of(&[Role::Approver]));
    assert_eq!(l.rt.approve(&bob, approval, None, None).unwrap_err().code(), ice_core::ErrorCode::ApprovalClosed);
    let again = l.rt.withdraw(&l.agent("agent:a"), proposal, "twice").unwrap_err();
    assert_eq!(again.code(), ice_core::ErrorCode::ApprovalClosed, "nothing is open any more");

    // An allowed proposal's unused permit: revoked, and the one call it reserved is free again.
    let write = ProposalInput {
        run: Some(run.clone()),
        action: "fs.write".into(),
        resource: "file:a.txt".into(),
        args: r#"{"path":"a.txt","content":"x"}"#.into(),
        cost_estimate: ice_core::Cost::of(ice_core::Dimension::Calls, 1),
        ..ProposalInput::default()
    };
    let allowed = l.rt.propose(&l.agent("agent:a"), &write).unwrap();
    assert_eq!(l.rt.propose(&l.agent("agent:a"), &write).unwrap().decision.verdict, ice_core::decision::Verdict::Deny);
    let events = l.rt.withdraw(&l.agent("agent:a"), allowed.proposal.event_id, "changed my mind").unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::ProposalWithdrawn, EventKind::PermitRevoked, EventKind::BudgetReleased]);
    assert_eq!(l.rt.propose(&l.agent("agent:a"), &write).unwrap().decision.verdict, ice_core::decision::Verdict::Allow);
    l.fold_from_scratch();
}
