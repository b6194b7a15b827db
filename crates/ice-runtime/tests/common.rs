//! Shared fixture for runtime tests: a fresh SQLite ledger with the default policy set active, a fake clock,
//! deterministic ids, and authenticated callers (the OS user this process runs as is the operator `human:alice`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::new_without_default, dead_code)]

use std::sync::Arc;

use ice_core::{Event, EventKind, LedgerState, ManualClock, Roles, SequentialIds, Timestamp};
use ice_runtime::{Caller, LocalUser, Presented, Runtime};
use ice_store::{EventQuery, Store};
use ice_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

/// The runtime key of every test ledger (checkpoints are signed with it once enabled).
pub fn test_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[9u8; 32])
}

/// An `fs.write` of `path` in `run` costing one call: the proposal most tests decide.
pub fn write(run: &str, path: &str) -> ice_runtime::ProposalInput {
    ice_runtime::ProposalInput {
        run: Some(run.into()),
        action: "fs.write".into(),
        resource: format!("file:{path}"),
        args: format!(r#"{{"path":"{path}","content":"x"}}"#),
        purpose: "test".into(),
        cost_estimate: ice_core::Cost::of(ice_core::Dimension::Calls, 1),
        ..ice_runtime::ProposalInput::default()
    }
}

/// One hour in microseconds.
pub const HOUR: i64 = 3_600_000_000;

/// A ledger under test.
pub struct Ledger {
    /// The runtime under test.
    pub rt: Runtime,
    /// Its clock (advance it to test expiry).
    pub clock: Arc<ManualClock>,
    /// The operator: the OS user this process runs as, mapped to `human:alice` with every role.
    pub alice: Caller,
    _dir: tempfile::TempDir,
}

impl Ledger {
    /// Durable (synchronous=FULL), as users run it.
    pub fn new() -> Self {
        Self::build(Synchronous::Full, &|c| c.to_owned())
    }

    /// No fsync: for property tests that open hundreds of ledgers.
    pub fn fast() -> Self {
        Self::build(Synchronous::Off, &|c| c.to_owned())
    }

    /// With an edited policy.toml.
    pub fn with_catalog_edit(edit: impl Fn(&str) -> String) -> Self {
        Self::build(Synchronous::Full, &edit)
    }

    fn build(synchronous: Synchronous, edit: &dyn Fn(&str) -> String) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        ice_runtime::policy::write_defaults(&policies).unwrap();
        let catalog = policies.join(ice_runtime::policy::CATALOG_FILE);
        std::fs::write(&catalog, edit(&std::fs::read_to_string(&catalog).unwrap())).unwrap();
        let options = SqliteOptions { synchronous, ..SqliteOptions::default() };
        let store: Arc<dyn Store> = SqliteStore::open(dir.path().join("ledger.db"), options).unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_secs(1_900_000_000)));
        let mut rt = Runtime::open(store, clock.clone(), Arc::new(SequentialIds::new(7))).unwrap();
        rt.set_local_users(vec![LocalUser::this_process("human:alice")]);
        rt.set_token_key([7u8; 32]);
        rt.initialize(&ice_core::checkpoint::to_hex(test_key().verifying_key().as_bytes())).unwrap();
        let alice = rt.authenticate(&Presented::Local { act_as: None }).unwrap();
        rt.activate_policy(&alice, &policies).unwrap();
        Self { rt, clock, alice, _dir: dir }
    }

    /// The operator acting for an agent (`agent:NAME`): it exercises the agent role only.
    pub fn agent(&self, name: &str) -> Caller {
        self.rt.authenticate(&Presented::Local { act_as: Some(name) }).unwrap()
    }

    /// Another human (`human:NAME`) with `roles`, authenticated by a token the operator issues (one
    /// `TokenIssued` event per call).
    pub fn human(&self, name: &str, roles: Roles) -> Caller {
        let (_, secret) = self.rt.issue_token(&self.alice, &name.parse().unwrap(), roles, None, None).unwrap();
        self.rt.authenticate(&Presented::Token { secret: &secret, act_as: None }).unwrap()
    }

    /// Signs a checkpoint every `every` events, with snapshots in the scratch directory.
    pub fn with_checkpoints(mut self, every: u64) -> Self {
        let snapshot_dir = Some(self._dir.path().join("snapshots"));
        self.rt.set_checkpoints(ice_runtime::checkpoints::CheckpointPolicy {
            key: test_key().into(),
            every_events: every,
            every_secs: 0,
            snapshot_dir,
            keep_snapshots: 2,
        });
        self
    }

    /// The ledger's scratch directory (for a sandbox and blob store).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// A run advanced to EXECUTING; returns its id.
    pub fn executing_run(&self) -> String {
        let run = self.rt.create_run(&self.alice, None).unwrap();
        for _ in 0..3 {
            self.rt.advance_run(&self.alice, run.id, None, None).unwrap();
        }
        run.id.to_string()
    }

    /// Every event of a kind.
    pub fn events(&self, kind: EventKind) -> Vec<Event> {
        self.rt.store().read(&EventQuery { kind: Some(kind), limit: usize::MAX, ..EventQuery::default() }).unwrap()
    }

    /// Number of events in the ledger.
    pub fn count(&self) -> usize {
        self.rt.store().read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).unwrap().len()
    }

    /// Folds the whole ledger into fresh state and checks it equals the live state.
    pub fn fold_from_scratch(&self) {
        let mut fresh = LedgerState::new();
        for e in self.rt.store().read(&EventQuery { limit: usize::MAX, ..EventQuery::default() }).unwrap() {
            fresh.apply(&e).unwrap_or_else(|r| panic!("seq {} does not fold: {r}", e.seq));
        }
        assert_eq!(self.rt.with_state(Clone::clone).unwrap(), fresh, "live state equals a fold from scratch");
    }
}
