//! A second writer on the same ledger (a shared database, a patched binary) that bypasses the runtime and appends
//! events straight to the store: the fold enforces the caller rules too, so the forged event makes the ledger
//! refuse to fold — on open and in replay — instead of silently granting what no credential allowed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ice_core::effect::ApprovalAnswer;
use ice_core::{Attribution, CanonicalJson, Draft, EventKind, ManualClock, TimeSource, Timestamp};
use ice_runtime::{GrantInput, LocalUser, Presented, ProposalInput, Runtime, RuntimeError};
use ice_store::{AppendRequest, Store};
use ice_store_sqlite::{SqliteOptions, SqliteStore};

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    approval: ice_core::EventId,
    args_hash: String,
    run: ice_core::RunId,
}

fn open(path: &std::path::Path) -> Result<Runtime, RuntimeError> {
    let store: Arc<dyn Store> = SqliteStore::open(path, SqliteOptions::default()).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_900_000_000)));
    let mut rt = Runtime::open(store, clock, Arc::new(ice_runtime::SystemIds))?;
    rt.set_local_users(vec![LocalUser::this_process("human:alice")]);
    Ok(rt)
}

/// A ledger with a pending approval for agent:a's delete.
fn pending_approval() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rt = open(&path).unwrap();
    rt.initialize("00").unwrap();
    let alice = rt.authenticate(&Presented::Local { act_as: None }).unwrap();
    let policies = dir.path().join("policies");
    ice_runtime::policy::write_defaults(&policies).unwrap();
    rt.activate_policy(&alice, &policies).unwrap();
    let run = rt.create_run(&alice, None).unwrap().id;
    for _ in 0..3 {
        rt.advance_run(&alice, run, None, None).unwrap();
    }
    let grant = GrantInput {
        principal: "agent:a".parse().unwrap(),
        run: None,
        actions: vec!["fs.*".into()],
        resource: "file:".into(),
        ttl_micros: None,
        max_uses: None,
        revocable: true,
    };
    rt.issue_grant(&alice, &grant).unwrap();
    let agent = rt.authenticate(&Presented::Local { act_as: Some("agent:a") }).unwrap();
    let input = ProposalInput {
        run: Some(run.to_string()),
        action: "fs.delete".into(),
        resource: "file:x.txt".into(),
        args: r#"{"path":"x.txt"}"#.into(),
        ..ProposalInput::default()
    };
    let d = rt.propose(&agent, &input).unwrap();
    let approval = d.events.iter().find(|e| e.kind == EventKind::ApprovalRequested).unwrap();
    let args_hash = d.proposal.payload.to_value()["args_hash"].as_str().unwrap().to_owned();
    Fixture { approval: approval.event_id, args_hash, run, path, _dir: dir }
}

/// Appends `ApprovalGranted` by `origin` with `acted_by` straight to the store (no runtime, no admission).
fn forge(f: &Fixture, origin: &str, acted_by: Option<&str>) {
    let store: Arc<dyn Store> = SqliteStore::open(&f.path, SqliteOptions::default()).unwrap();
    let answer = ApprovalAnswer { approval_id: f.approval, args_hash: f.args_hash.clone(), comment: None };
    let draft = Draft {
        event_id: ice_core::EventId(uuid::Uuid::now_v7()),
        run_id: Some(f.run),
        kind: EventKind::ApprovalGranted,
        origin: origin.parse().unwrap(),
        acted_by: acted_by.map(|a| a.parse::<Attribution>().unwrap()),
        time: Timestamp::from_secs(1_900_000_001),
        time_source: TimeSource::Clock,
        causes: vec![f.approval],
        payload: CanonicalJson::from_serialize(&answer).unwrap(),
    };
    store.append(AppendRequest::new(vec![draft])).unwrap();
}

fn refuses_to_fold(f: &Fixture) -> String {
    match open(&f.path) {
        Err(RuntimeError::Corrupt { message, .. }) => message,
        Ok(_) => panic!("a forged approval folded"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

#[test]
fn an_approval_by_the_proposer_does_not_fold() {
    let f = pending_approval();
    // The proposer answering its own approval, with an attribution claiming every role.
    forge(&f, "agent:a", Some("agent:a;uid:0;agent,approver,operator,auditor"));
    // Agents may not emit decision events at all; the fold says so just as intake would.
    let why = refuses_to_fold(&f);
    assert!(why.contains("ICE-E0120"), "{why}");
}

#[test]
fn an_approval_without_an_authenticated_caller_does_not_fold() {
    let f = pending_approval();
    forge(&f, "human:mallory", None);
    assert!(refuses_to_fold(&f).contains("ICE-E0901"));
}

#[test]
fn an_approval_by_a_caller_without_the_approver_role_does_not_fold() {
    let f = pending_approval();
    forge(&f, "human:mallory", Some("human:mallory;uid:1000;operator"));
    assert!(refuses_to_fold(&f).contains("ICE-E0905"));
}

#[test]
fn an_approval_through_a_token_that_does_not_exist_does_not_fold() {
    let f = pending_approval();
    forge(&f, "human:mallory", Some("human:mallory;token:01900000-0000-7000-8000-000000000001;approver"));
    assert!(refuses_to_fold(&f).contains("ICE-E0902"));
}

#[test]
fn a_grant_under_the_runtime_s_name_does_not_fold() {
    let f = pending_approval();
    let store: Arc<dyn Store> = SqliteStore::open(&f.path, SqliteOptions::default()).unwrap();
    let grant = ice_core::grant::GrantIssued {
        principal: "agent:a".parse().unwrap(),
        actions: vec!["*".into()],
        resource: "*".into(),
        expires_at: None,
        max_uses: None,
        revocable: false,
    };
    let draft = Draft {
        event_id: ice_core::EventId(uuid::Uuid::now_v7()),
        run_id: None,
        kind: EventKind::GrantIssued,
        origin: ice_core::Principal::runtime(),
        acted_by: None,
        time: Timestamp::from_secs(1_900_000_001),
        time_source: TimeSource::Clock,
        causes: vec![],
        payload: CanonicalJson::from_serialize(&grant).unwrap(),
    };
    store.append(AppendRequest::new(vec![draft])).unwrap();
    drop(store);
    assert!(refuses_to_fold(&f).contains("ICE-E0901"));
}

#[test]
fn an_approval_by_the_runtime_itself_does_not_fold() {
    let f = pending_approval();
    forge(&f, "runtime:ice", None);
    // Approvals exist only on a caller's behalf.
    let why = refuses_to_fold(&f);
    assert!(why.contains("ICE-E0901"), "{why}");
}

#[test]
fn a_genuine_approval_folds_and_replays() {
    let f = pending_approval();
    let mut rt = open(&f.path).unwrap();
    // alice proposed for agent:a, so she may not approve it; bob, a second human with an approver token, may.
    let alice = rt.authenticate(&Presented::Local { act_as: None }).unwrap();
    let refused = rt.approve(&alice, f.approval, None, None).unwrap_err();
    assert_eq!(refused.code(), ice_core::ErrorCode::ApproverNotAuthorized);
    rt.set_token_key([3; 32]);
    let roles = ice_core::Roles::of(&[ice_core::Role::Approver]);
    let (_, secret) = rt.issue_token(&alice, &"human:bob".parse().unwrap(), roles, None, None).unwrap();
    let bob = rt.authenticate(&Presented::Token { secret: &secret, act_as: None }).unwrap();
    rt.approve(&bob, f.approval, None, None).unwrap();
    drop(rt);
    let rt = open(&f.path).unwrap();
    assert!(rt.replay(&mut |_, _| {}).unwrap().ok());
}
