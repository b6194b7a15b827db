//! Memory as a governed artifact: candidates, promotion decided like any action, recorded reads, the lifecycle,
//! invalidation by rollback, and replay reproducing the memory state root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{HOUR, Ledger};
use ice_core::decision::Verdict;
use ice_core::memory::{MemoryCandidate, MemoryPromoted, MemoryRead, MemoryStatus};
use ice_core::{ErrorCode, Event, EventId, EventKind, Role, Roles};
use ice_effects::{Effectors, EffectsConfig};
use ice_runtime::{Caller, ExecInput, GrantInput, MemoryQuery, ProposalInput, RollbackTarget, RuntimeError};

fn attach(l: &mut Ledger) {
    let effectors = Effectors::new(&EffectsConfig::default(), l.dir(), &l.dir().join("state")).unwrap();
    l.rt.set_effectors(Arc::new(effectors));
}

fn grant(l: &Ledger, who: &str, actions: &[&str], resource: &str) {
    let g = GrantInput {
        principal: who.parse().unwrap(),
        run: None,
        actions: actions.iter().map(|a| a.to_string()).collect(),
        resource: resource.into(),
        ttl_micros: None,
        max_uses: None,
        revocable: true,
    };
    l.rt.issue_grant(&l.alice, &g).unwrap();
}

fn propose(
    l: &Ledger,
    who: &Caller,
    run: &str,
    action: &str,
    resource: &str,
    args: &str,
) -> Result<ice_runtime::DecisionOutcome, RuntimeError> {
    let input = ProposalInput {
        run: Some(run.into()),
        action: action.into(),
        resource: resource.into(),
        args: args.into(),
        ..ProposalInput::default()
    };
    l.rt.propose(who, &input)
}

/// Proposes and executes; returns the outcome event (EffectCompleted).
fn act(l: &Ledger, who: &Caller, run: &str, action: &str, resource: &str, args: &str) -> Event {
    let out = propose(l, who, run, action, resource, args).unwrap();
    assert_eq!(out.decision.verdict, Verdict::Allow, "{:?}", out.decision.reasons);
    let permit = out.events.iter().find(|e| e.kind == EventKind::PermitIssued).unwrap().event_id;
    let done = l.rt.execute(who, &ExecInput { permit: permit.to_string(), args: None }).unwrap();
    assert_eq!(done.outcome.kind, EventKind::EffectCompleted);
    done.outcome
}

fn candidate(ns: &str, text: &str, sources: Vec<EventId>, ttl_secs: Option<u64>) -> MemoryCandidate {
    MemoryCandidate { namespace: ns.into(), text: text.into(), fields: Default::default(), sources, ttl_secs }
}

fn promote_args(candidate: EventId, ns: &str, supersedes: Option<EventId>) -> String {
    match supersedes {
        Some(old) => format!(r#"{{"candidate":"{candidate}","namespace":"{ns}","supersedes":"{old}"}}"#),
        None => format!(r#"{{"candidate":"{candidate}","namespace":"{ns}"}}"#),
    }
}

fn code(e: RuntimeError) -> ErrorCode {
    match e {
        RuntimeError::Rejected { rejection, .. } => rejection.code,
        other => panic!("expected a rejection, got {other}"),
    }
}

fn search(l: &Ledger, who: &Caller, query: &str, run: Option<&str>) -> Vec<String> {
    let q = MemoryQuery { query: query.into(), namespace: None, k: 5, run: run.map(str::to_owned) };
    let out = l.rt.memory_search(who, &q).unwrap();
    out.items.iter().map(|i| i["item_id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn promotion_is_governed_reads_are_recorded_and_rollback_invalidates() {
    let mut l = Ledger::new();
    attach(&mut l);
    let run = l.executing_run();
    let scout = l.agent("agent:scout");
    grant(&l, "agent:scout", &["fs.*"], "file:notes/");
    grant(&l, "human:alice", &["fs.restore"], "file:notes/");
    act(&l, &scout, &run, "fs.write", "file:notes/keys.md", r#"{"path":"notes/keys.md","content":"rotate on Friday"}"#);
    let source = act(
        &l,
        &scout,
        &run,
        "fs.write",
        "file:notes/keys.md",
        r#"{"path":"notes/keys.md","content":"rotate on Monday"}"#,
    );

    // A candidate is an agent's note; the proposal that would promote it is decided like any other.
    let c1 =
        l.rt.memory_propose(
            &scout,
            &run,
            &candidate("team/deploys", "The deploy key rotates every Monday.", vec![source.event_id], None),
        )
        .unwrap();
    assert_eq!(c1.kind, EventKind::MemoryProposed);
    assert_eq!(c1.causes, vec![source.event_id]);
    let denied = propose(
        &l,
        &scout,
        &run,
        "memory.promote",
        "memory:team/deploys",
        &promote_args(c1.event_id, "team/deploys", None),
    )
    .unwrap();
    assert_eq!(denied.decision.verdict, Verdict::Deny, "no grant: the agent cannot promote its own candidate");
    assert!(l.events(EventKind::MemoryPromoted).is_empty());

    // A candidate derived from something the ledger never validated is refused before any decision, with a code.
    let proposal_event = denied.proposal.event_id;
    let c2 = l
        .rt
        .memory_propose(&scout, &run, &candidate("team/deploys", "I think the key is old.", vec![proposal_event], None))
        .unwrap();
    grant(&l, "agent:scout", &["memory.promote"], "memory:team/");
    let decisions = l.events(EventKind::DecisionMade).len();
    let err = propose(
        &l,
        &scout,
        &run,
        "memory.promote",
        "memory:team/deploys",
        &promote_args(c2.event_id, "team/deploys", None),
    )
    .unwrap_err();
    assert_eq!(code(err), ErrorCode::MemorySourceNotValidated);
    assert_eq!(l.events(EventKind::DecisionMade).len(), decisions, "refused before deciding");
    // A candidate naming an event that does not exist is refused at once.
    let missing =
        l.rt.memory_propose(
            &scout,
            &run,
            &candidate("team/deploys", "x", vec!["01900000-0000-7000-8000-000000000042".parse().unwrap()], None),
        )
        .unwrap_err();
    assert_eq!(code(missing), ErrorCode::UnknownCause);
    // The resource must be the namespace.
    let wrong =
        propose(&l, &scout, &run, "memory.promote", "memory:other", &promote_args(c1.event_id, "team/deploys", None))
            .unwrap_err();
    assert_eq!(code(wrong), ErrorCode::ResourceMismatch);

    // With a grant, promotion is an executed permit whose outcome is the item, with its provenance.
    let outcome = act(
        &l,
        &scout,
        &run,
        "memory.promote",
        "memory:team/deploys",
        &promote_args(c1.event_id, "team/deploys", None),
    );
    let promoted = l.events(EventKind::MemoryPromoted);
    assert_eq!(promoted.len(), 1);
    let item_id = promoted[0].event_id;
    let p: MemoryPromoted = serde_json::from_str(promoted[0].payload.as_str()).unwrap();
    assert_eq!(p.sources[0].event_id, source.event_id);
    assert_eq!(p.sources[0].kind, EventKind::EffectCompleted);
    assert!(p.sources[0].effect.is_some());
    assert_eq!(p.promoted_by.to_string(), "agent:scout");
    assert_eq!(p.candidate, c1.event_id);
    assert!(outcome.causes.contains(&l.events(EventKind::EffectStarted).last().unwrap().event_id));

    // Reads are scoped by grants and recorded with what they returned.
    let other = l.agent("agent:other");
    assert!(search(&l, &other, "when does the deploy key rotate", None).is_empty(), "no read grant, nothing seen");
    assert_eq!(code(l.rt.memory_show(&other, item_id, None).unwrap_err()), ErrorCode::UnknownMemoryItem);
    grant(&l, "agent:scout", &["memory.read"], "memory:team");
    assert_eq!(search(&l, &scout, "when does the deploy key rotate", Some(&run)), vec![item_id.to_string()]);
    let reads = l.events(EventKind::MemoryRead);
    let read: MemoryRead = serde_json::from_str(reads.last().unwrap().payload.as_str()).unwrap();
    assert_eq!(read.reader.to_string(), "agent:scout");
    assert_eq!(read.items[0].item, item_id);
    assert!(read.index.starts_with("hash-v1-384@"), "{}", read.index);
    assert_eq!(reads.last().unwrap().origin.to_string(), "runtime:ice");
    // The proposal that followed the read is what an audit links to it.
    let next =
        propose(&l, &scout, &run, "fs.write", "file:notes/plan.md", r#"{"path":"notes/plan.md","content":"rotate"}"#)
            .unwrap();
    let auditor = l.human("human:audrey", Roles::of(&[Role::Auditor]));
    let audit = l.rt.memory_reads(&auditor, item_id).unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].followed_by.as_ref().unwrap().event_id, next.proposal.event_id);
    assert_eq!(code(l.rt.memory_reads(&scout, item_id).unwrap_err()), ErrorCode::RoleRequired);

    // Rolling back the effect the item derives from invalidates it in the same commit, with the cause.
    let report = l.rt.rollback(&l.alice, RollbackTarget::Event(source.event_id)).unwrap();
    assert!(matches!(report.items[0].step, ice_runtime::RollbackStep::Compensated { .. }), "{report:?}");
    let invalidated = l.events(EventKind::MemoryInvalidated);
    assert_eq!(invalidated.len(), 1);
    assert_eq!(invalidated[0].origin.to_string(), "runtime:ice");
    let item = l.rt.with_state(|s| s.memory().get(item_id).cloned()).unwrap().unwrap();
    assert_eq!(item.status, MemoryStatus::Invalidated);
    assert!(item.ended.as_ref().unwrap().1.cause.is_some());
    assert!(search(&l, &scout, "when does the deploy key rotate", None).is_empty(), "search never returns it again");
    // And nothing can be promoted from that rolled-back effect any more.
    let c3 =
        l.rt.memory_propose(&scout, &run, &candidate("team/deploys", "Again.", vec![source.event_id], None)).unwrap();
    let err = propose(
        &l,
        &scout,
        &run,
        "memory.promote",
        "memory:team/deploys",
        &promote_args(c3.event_id, "team/deploys", None),
    )
    .unwrap_err();
    assert_eq!(code(err), ErrorCode::MemorySourceNotValidated);

    l.fold_from_scratch();
    let report = l.rt.replay(&mut |_, _| {}).unwrap();
    assert_eq!(report.state_root, report.live_root);
    assert!(report.divergence.is_none());
}

#[test]
fn lifecycle_changes_are_single_and_retire_without_moving_the_root() {
    let mut l = Ledger::new().with_checkpoints(1_000_000);
    attach(&mut l);
    let run = l.executing_run();
    let scout = l.agent("agent:scout");
    grant(&l, "agent:scout", &["fs.*"], "file:notes/");
    grant(&l, "agent:scout", &["memory.promote", "memory.read"], "memory:ops");
    let source = act(&l, &scout, &run, "fs.write", "file:notes/a.md", r#"{"path":"notes/a.md","content":"a"}"#);
    let promote = |text: &str, ttl: Option<u64>, supersedes: Option<EventId>| -> EventId {
        let c = l.rt.memory_propose(&scout, &run, &candidate("ops", text, vec![source.event_id], ttl)).unwrap();
        act(&l, &scout, &run, "memory.promote", "memory:ops", &promote_args(c.event_id, "ops", supersedes));
        l.events(EventKind::MemoryPromoted).last().unwrap().event_id
    };
    let old = promote("The on-call rota lives in the ops wiki.", None, None);
    let new = promote("The on-call rota moved to the pager tool.", None, Some(old));
    let short = promote("The staging database is read-only this week.", Some(3600), None);
    let wrong = promote("Backups run at noon.", None, None);
    let stale = promote("Use the old VPN.", None, None);
    let state = |id: EventId| l.rt.with_state(|s| s.memory().get(id).map(|i| i.status)).unwrap();
    assert_eq!(state(old), Some(MemoryStatus::Superseded), "supersession recorded with the promotion");
    assert_eq!(state(new), Some(MemoryStatus::Active));

    // Operators change the lifecycle; agents cannot; a change needs an ACTIVE item and happens once.
    let err = l.rt.memory_change(&scout, EventKind::MemoryDeprecated, stale, "old", None).unwrap_err();
    assert_eq!(code(err), ErrorCode::OriginNotAuthorized);
    l.rt.memory_change(&l.alice, EventKind::MemoryDeprecated, stale, "we left that VPN", None).unwrap();
    l.rt.memory_change(&l.alice, EventKind::MemoryInvalidated, wrong, "backups run at midnight", None).unwrap();
    let again = l.rt.memory_change(&l.alice, EventKind::MemoryInvalidated, wrong, "twice", None).unwrap_err();
    assert_eq!(code(again), ErrorCode::MemoryNotActive);
    let unknown =
        l.rt.memory_change(
            &l.alice,
            EventKind::MemoryDeprecated,
            "01900000-0000-7000-8000-000000000007".parse().unwrap(),
            "x",
            None,
        )
        .unwrap_err();
    assert_eq!(code(unknown), ErrorCode::UnknownMemoryItem);
    let blank = l.rt.memory_change(&l.alice, EventKind::MemoryDeprecated, new, " ", None).unwrap_err();
    assert_eq!(code(blank), ErrorCode::ReasonRequired);
    // A candidate superseding an item that already left ACTIVE is refused.
    let c =
        l.rt.memory_propose(&scout, &run, &candidate("ops", "Use the new VPN.", vec![source.event_id], None)).unwrap();
    let err = propose(&l, &scout, &run, "memory.promote", "memory:ops", &promote_args(c.event_id, "ops", Some(stale)))
        .unwrap_err();
    assert_eq!(code(err), ErrorCode::MemoryNotActive);

    // The TTL: the item stops being returned at once, and reconciliation records the expiry.
    assert!(search(&l, &scout, "staging database read-only", None).contains(&short.to_string()));
    l.clock.advance(HOUR + 1);
    assert!(!search(&l, &scout, "staging database read-only", None).contains(&short.to_string()));
    l.rt.reconcile().unwrap();
    assert_eq!(state(short), Some(MemoryStatus::Expired));
    assert_eq!(search(&l, &scout, "on-call rota", None), vec![new.to_string()], "only ACTIVE items are searched");

    // Ended items leave memory at the next checkpoint; the root does not move, and they stay listable.
    let root = l.rt.with_state(|s| s.state_root().unwrap()).unwrap();
    l.rt.checkpoint().unwrap().unwrap();
    assert_eq!(state(old), None, "ended items retired");
    assert_eq!(state(new), Some(MemoryStatus::Active));
    let after: String = l.rt.with_state(|s| s.state_root().unwrap()).unwrap();
    assert_eq!(root, after);
    let all = l.rt.memory_list(&l.alice, Some("ops"), None, true).unwrap();
    assert_eq!(all.len(), 5);
    let live = l.rt.memory_list(&l.alice, None, Some(MemoryStatus::Active), false).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(l.rt.memory_show(&scout, old, None).unwrap().items[0]["status"], "SUPERSEDED");
    // A suspended agent is fed nothing.
    l.rt.suspend_agent(&l.alice, &"agent:scout".parse().unwrap(), "under review").unwrap();
    assert!(search(&l, &scout, "on-call rota", None).is_empty());
    l.fold_from_scratch();
    let report = l.rt.replay(&mut |_, _| {}).unwrap();
    assert_eq!(report.state_root, report.live_root);
}

#[test]
fn memory_events_cannot_be_forged_through_submit() {
    let l = Ledger::new();
    let run = l.executing_run();
    for (kind, origin) in
        [("MemoryPromoted", "human:alice"), ("MemoryRead", "human:alice"), ("MemoryPromoted", "agent:scout")]
    {
        let raw = ice_core::RawEvent {
            kind: kind.into(),
            origin: origin.into(),
            run_id: Some(run.clone()),
            payload: "{}".into(),
            ..ice_core::RawEvent::default()
        };
        let who = if origin.starts_with("agent") { l.agent(origin) } else { l.alice.clone() };
        assert!(l.rt.submit(&who, &raw).is_err(), "{kind} from {origin}");
    }
    assert!(l.events(EventKind::MemoryPromoted).is_empty());
}
