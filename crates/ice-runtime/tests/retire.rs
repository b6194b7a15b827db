//! Bounded state: settled records leave memory at each checkpoint, the state root does not move when they do,
//! replay and snapshots agree, and a retired record keeps every single-use rule (it is refused, never reused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{Ledger, write};
use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::{Dimension, ErrorCode, EventKind, LedgerState, RunId};
use ice_effects::{Effectors, EffectsConfig};
use ice_runtime::{ExecInput, GrantInput, ProposalInput, RuntimeError};

/// Live proposals, permits, approvals, effects and runs.
fn live(l: &Ledger) -> [usize; 5] {
    l.rt.with_state(|s| {
        [
            s.authority().proposals().len(),
            s.effects().permits().len(),
            s.effects().approvals().len(),
            s.effects().effects().len(),
            s.runs().count(),
        ]
    })
    .unwrap()
}

fn root(l: &Ledger) -> String {
    l.rt.with_state(|s| s.state_root().unwrap()).unwrap()
}

/// Checkpoints every `every_events` events, with snapshots in `dir`, none pruned.
fn keeping_every_snapshot(dir: &std::path::Path, every_events: u64) -> ice_runtime::checkpoints::CheckpointPolicy {
    ice_runtime::checkpoints::CheckpointPolicy {
        key: common::test_key().into(),
        every_events,
        every_secs: 0,
        snapshot_dir: Some(dir.to_path_buf()),
        keep_snapshots: 1_000,
    }
}

/// An open grant of `action` on `resource` to `who`.
fn grant(l: &Ledger, who: &str, action: &str, resource: &str) {
    let g = GrantInput {
        principal: who.parse().unwrap(),
        run: None,
        actions: vec![action.into()],
        resource: resource.into(),
        ttl_micros: None,
        max_uses: None,
        revocable: true,
    };
    l.rt.issue_grant(&l.alice, &g).unwrap();
}

fn code(r: Result<impl std::fmt::Debug, RuntimeError>) -> ErrorCode {
    r.expect_err("refused").code()
}

#[test]
fn settled_records_retire_at_checkpoints_without_moving_the_root() {
    let mut l = Ledger::new().with_checkpoints(0);
    let effectors = Effectors::new(&EffectsConfig::default(), l.dir(), &l.dir().join("state")).unwrap();
    l.rt.set_effectors(Arc::new(effectors));
    let run = l.executing_run();
    let agent = l.agent("agent:w");
    grant(&l, "agent:w", "fs.write", "file:ok/");
    let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total };
    l.rt.set_budget(&l.alice, key, 100).unwrap();

    // Three denied, three executed, two left holding live permits (and reservations).
    let mut permits = Vec::new();
    for i in 0..8 {
        let dir = if i < 3 { "no" } else { "ok" };
        let out = l.rt.propose(&agent, &write(&run, &format!("{dir}/f{i}.txt"))).unwrap();
        permits.extend(out.events.iter().filter(|e| e.kind == EventKind::PermitIssued).map(|e| e.event_id));
    }
    assert_eq!(permits.len(), 5);
    for p in &permits[..3] {
        l.rt.execute(&agent, &ExecInput { permit: p.to_string(), args: None }).unwrap();
    }
    assert_eq!(live(&l), [8, 5, 0, 3, 1]);
    let before = root(&l);
    let checkpoint = l.rt.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(
        live(&l),
        [2, 2, 0, 3, 1],
        "denied and executed proposals retire with their permits; the run's effects stay while it can roll back"
    );
    assert_eq!(root(&l), before, "retiring does not move the state root");
    assert!(checkpoint.payload.as_str().contains(&before), "the checkpoint signed that root");

    // A retired permit is still single-use.
    let again = l.rt.execute(&agent, &ExecInput { permit: permits[0].to_string(), args: None });
    assert_eq!(code(again), ErrorCode::NoPermit);

    // Terminating the run closes what it left open: live permits revoked, their reservations released.
    let run_id: RunId = run.parse().unwrap();
    let released = l.events(EventKind::BudgetReleased).len();
    l.rt.terminate_run(&l.alice, run_id, Some("done".into())).unwrap();
    assert_eq!(l.events(EventKind::BudgetReleased).len(), released + 2);
    assert!(
        l.rt.with_state(|s| s.authority().budgets().lines().values().all(|b| b.reserved.values().all(|r| *r == 0)))
            .unwrap()
    );
    let before = root(&l);
    let record = l.rt.run(run_id).unwrap().unwrap();
    l.rt.checkpoint().unwrap().expect("a second checkpoint");
    assert_eq!(l.rt.run(run_id).unwrap(), Some(record), "a retired run's record is rebuilt from the ledger");
    assert_eq!(live(&l), [0, 0, 0, 0, 0], "a terminated run retires with everything it held");
    assert_eq!(root(&l), before);
    assert_eq!(l.rt.with_state(LedgerState::retired_runs).unwrap(), 1);

    // The retired run stays terminated: nothing can name it again.
    assert_eq!(code(l.rt.propose(&agent, &write(&run, "ok/late.txt"))), ErrorCode::RunTerminated);
    assert_eq!(code(l.rt.advance_run(&l.alice, run_id, None, None)), ErrorCode::RunTerminated);

    // Replay folds the same retirements and reproduces both signed roots; a fresh fold equals the live state.
    l.fold_from_scratch();
    let report = l.rt.replay(&mut |_, _| {}).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.state_root, report.live_root);

    // The snapshot written with the checkpoint holds only live state and proves against the signed root.
    let snapshots = l.dir().join("snapshots");
    let newest = std::fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let snap = LedgerState::from_snapshot(&std::fs::read_to_string(newest).unwrap()).unwrap();
    assert_eq!(snap.authority().proposals().len(), 0);
    assert_eq!(snap.runs().count(), 0);
    assert_eq!(snap.state_root().unwrap(), before);
}

#[test]
fn terminating_a_run_expires_its_pending_approvals() {
    let l = Ledger::new().with_checkpoints(0);
    let run = l.executing_run();
    let agent = l.agent("agent:w");
    grant(&l, "agent:w", "fs.delete", "file:");
    let input = ProposalInput {
        run: Some(run.clone()),
        action: "fs.delete".into(),
        resource: "file:a.txt".into(),
        args: r#"{"path":"a.txt"}"#.into(),
        ..ProposalInput::default()
    };
    let out = l.rt.propose(&agent, &input).unwrap();
    assert_eq!(out.decision.verdict, ice_core::decision::Verdict::RequireApproval);
    let approval = l.rt.with_state(|s| s.effects().approval_for(out.proposal.event_id).map(|a| a.id)).unwrap().unwrap();
    l.rt.terminate_run(&l.alice, run.parse().unwrap(), Some("abandoned".into())).unwrap();
    assert_eq!(l.events(EventKind::ApprovalExpired).len(), 1);
    l.rt.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(live(&l), [0, 0, 0, 0, 0]);
    // The retired approval cannot be answered.
    let approver = l.human("human:bob", ice_core::Roles::of(&[ice_core::Role::Approver]));
    assert_eq!(code(l.rt.approve(&approver, approval, None, None)), ErrorCode::UnknownApproval);
    l.fold_from_scratch();
}

/// Under load, events land between a checkpoint and the moment its snapshot is written: the snapshot must still be
/// written, holding the state exactly at the checkpoint (else every start folds from an old one).
#[test]
fn every_checkpoint_gets_its_snapshot_while_agents_keep_deciding() {
    let mut l = Ledger::new();
    let snapshots = l.dir().join("snapshots");
    l.rt.set_checkpoints(keeping_every_snapshot(&snapshots, 200));
    let run = l.executing_run();
    for t in 0..4 {
        grant(&l, &format!("agent:t{t}"), "fs.write", "file:ok/");
    }
    std::thread::scope(|s| {
        for t in 0..4 {
            let (l, run) = (&l, &run);
            s.spawn(move || {
                let agent = l.agent(&format!("agent:t{t}"));
                // ~1,100 events: five checkpoints, each due a snapshot (as many events as live records since the
                // last: see `snapshots_are_rationed_by_how_much_is_live`): one in five proposals is allowed and
                // leaves its permit live, the others are denied (no grant for `no/`).
                for i in 0..110 {
                    let dir = if i % 5 == 0 { "ok" } else { "no" };
                    l.rt.propose(&agent, &write(run, &format!("{dir}/{t}-{i}.txt"))).unwrap();
                }
            });
        }
    });
    let checkpoints = l.events(EventKind::Checkpoint);
    assert!(checkpoints.len() >= 5, "{} checkpoints", checkpoints.len());
    let files: Vec<_> = std::fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), checkpoints.len(), "one snapshot per checkpoint");
    let newest = files.iter().max().unwrap();
    let snap = LedgerState::from_snapshot(&std::fs::read_to_string(newest).unwrap()).unwrap();
    let last = checkpoints.last().unwrap();
    assert_eq!(snap.last_seq(), last.seq, "the newest snapshot is the latest checkpoint's ({})", newest.display());
    let payload: ice_core::checkpoint::CheckpointPayload = serde_json::from_str(last.payload.as_str()).unwrap();
    assert_eq!(snap.state_root().unwrap(), payload.state_root);
}

/// A snapshot copies the live state, so with much live work it is not taken at every checkpoint: only once as
/// many events as live records have passed since the last. Whatever is written is exact.
#[test]
fn snapshots_are_rationed_by_how_much_is_live() {
    let mut l = Ledger::new();
    let run = l.executing_run();
    grant(&l, "agent:w", "fs.write", "file:ok/");
    let agent = l.agent("agent:w");
    // Much live work first (every permit stays live), then checkpoints every 20 events.
    for i in 0..150 {
        l.rt.propose(&agent, &write(&run, &format!("ok/{i}.txt"))).unwrap();
    }
    let snapshots = l.dir().join("snapshots");
    l.rt.set_checkpoints(keeping_every_snapshot(&snapshots, 20));
    for i in 150..270 {
        l.rt.propose(&agent, &write(&run, &format!("ok/{i}.txt"))).unwrap();
    }
    let checkpoints = l.events(EventKind::Checkpoint);
    let files: Vec<_> = std::fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().path()).collect();
    let live = l.rt.with_state(LedgerState::live_records).unwrap();
    assert!(live >= 300, "every permit is still live: {live}");
    // At least 75 events between snapshots while 300+ records are live, against 20 between checkpoints.
    assert!(
        files.len() * 3 <= checkpoints.len() * 2,
        "{} snapshots for {} checkpoints",
        files.len(),
        checkpoints.len()
    );
    assert!(!files.is_empty());
    for f in &files {
        let snap = LedgerState::from_snapshot(&std::fs::read_to_string(f).unwrap()).unwrap();
        let at = checkpoints.iter().find(|c| c.seq == snap.last_seq()).expect("taken right after a checkpoint");
        let payload: ice_core::checkpoint::CheckpointPayload = serde_json::from_str(at.payload.as_str()).unwrap();
        assert_eq!(snap.state_root().unwrap(), payload.state_root);
    }
}

/// A server signs checkpoints in a housekeeping thread from the hashes its pipeline kept as events committed, and
/// writes as each one's snapshot the state the pipeline kept right after it (nothing folded twice, nothing read
/// back): while four agents decide, every checkpoint's Merkle root is the ledger's, every snapshot holds exactly
/// its checkpoint's state, and replay agrees with the live fold.
#[test]
fn background_checkpoints_sign_and_snapshot_what_the_pipeline_kept() {
    let mut l = Ledger::new();
    let snapshots = l.dir().join("snapshots");
    l.rt.set_checkpoints(keeping_every_snapshot(&snapshots, 60));
    l.rt.set_inline_checkpoints(false);
    let run = l.executing_run();
    for t in 0..4 {
        grant(&l, &format!("agent:t{t}"), "fs.write", "file:ok/");
    }
    let deciding = std::sync::atomic::AtomicUsize::new(4);
    std::thread::scope(|s| {
        s.spawn(|| {
            while deciding.load(std::sync::atomic::Ordering::Acquire) > 0 {
                l.rt.checkpoint_if_due().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        for t in 0..4 {
            let (l, run, deciding) = (&l, &run, &deciding);
            s.spawn(move || {
                let agent = l.agent(&format!("agent:t{t}"));
                for i in 0..60 {
                    let dir = if i % 3 == 0 { "ok" } else { "no" };
                    l.rt.propose(&agent, &write(run, &format!("{dir}/{t}-{i}.txt"))).unwrap();
                }
                deciding.fetch_sub(1, std::sync::atomic::Ordering::Release);
            });
        }
    });
    l.rt.checkpoint().unwrap().expect("a final checkpoint");
    let checkpoints = l.events(EventKind::Checkpoint);
    assert!(checkpoints.len() >= 4, "{} checkpoints", checkpoints.len());
    let any_key = ice_store::VerifyOptions {
        trusted_keys: Vec::new(),
        from_checkpoint: false,
        witnessed: None,
        from_witnessed: false,
    };
    let verified = ice_store::verify_ledger_signed(&**l.rt.store(), &any_key, &mut |_| {}).unwrap().unwrap();
    assert_eq!(verified.checkpoints, checkpoints.len() as u64, "every Merkle root and signature checks");
    let files: Vec<_> = std::fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.len() >= 2, "{} snapshots", files.len());
    for f in &files {
        let snap = LedgerState::from_snapshot(&std::fs::read_to_string(f).unwrap()).unwrap();
        let at = checkpoints.iter().find(|c| c.seq == snap.last_seq()).expect("taken right after a checkpoint");
        let payload: ice_core::checkpoint::CheckpointPayload = serde_json::from_str(at.payload.as_str()).unwrap();
        assert_eq!(snap.state_root().unwrap(), payload.state_root, "{}", f.display());
    }
    let report = l.rt.replay(&mut |_, _| {}).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.state_root, report.live_root);
}

/// A server folds its snapshots apart and rations them by the newest one in the directory; a file there named for
/// a seq the ledger has not reached (put there by hand, or left by a replaced ledger) does not stop them.
#[test]
fn a_snapshot_named_for_a_future_seq_does_not_hold_back_the_next() {
    let mut l = Ledger::new();
    let snapshots = l.dir().join("snapshots");
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::write(snapshots.join("09999999999999999999.json"), "{}").unwrap();
    l.rt.set_checkpoints(keeping_every_snapshot(&snapshots, 20));
    l.rt.set_inline_checkpoints(false);
    let run = l.executing_run();
    grant(&l, "agent:w", "fs.write", "file:ok/");
    let agent = l.agent("agent:w");
    for i in 0..10 {
        l.rt.propose(&agent, &write(&run, &format!("ok/{i}.txt"))).unwrap();
    }
    let signed = l.rt.checkpoint_if_due().unwrap().expect("a checkpoint is due after 50 events");
    let written = snapshots.join(format!("{:020}.json", signed.seq.0));
    let snap = LedgerState::from_snapshot(&std::fs::read_to_string(&written).unwrap()).unwrap();
    assert_eq!(snap.last_seq(), signed.seq);
}

/// Looking for settled records scans every live one, so with much live work a checkpoint looks only once as many
/// events as live records have been folded since the last look: settled records then wait, and still retire,
/// and every fold (live, from scratch, replay) retires them at the same checkpoint.
#[test]
fn with_much_live_work_retirement_is_rationed_by_events() {
    let l = Ledger::fast().with_checkpoints(0);
    let run = l.executing_run();
    let agent = l.agent("agent:w");
    grant(&l, "agent:w", "fs.write", "file:ok/");
    let key = BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total };
    l.rt.set_budget(&l.alice, key, 10_000).unwrap();
    // 520 proposals holding live permits: more than 1,000 live records.
    for i in 0..520 {
        l.rt.propose(&agent, &write(&run, &format!("ok/{i}.txt"))).unwrap();
    }
    let deny = |from: usize, n: usize| {
        for i in from..from + n {
            l.rt.propose(&agent, &write(&run, &format!("no/{i}.txt"))).unwrap();
        }
    };
    deny(0, 5);
    l.rt.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(live(&l)[0], 520, "the first checkpoint looked: the denied proposals retired");
    deny(5, 10);
    l.rt.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(live(&l)[0], 530, "too few events since the last look: the ten denied wait");
    // Each denied proposal is two events and, until it retires, one live record: ~1,050 of them pass the live
    // records (~1,060 plus themselves).
    deny(15, 1_100);
    l.rt.checkpoint().unwrap().expect("a checkpoint");
    assert_eq!(live(&l)[0], 520, "enough events since: every settled proposal retired");
    l.fold_from_scratch();
    let report = l.rt.replay(&mut |_, _| {}).unwrap();
    assert!(report.divergence.is_none(), "{:?}", report.divergence);
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.state_root, report.live_root);
}
