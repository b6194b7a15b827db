//! Shared test scaffolding: a project dir with an `.ice` state dir, calls with fresh idempotency keys, and
//! plan-then-apply.

#![allow(dead_code)] // each test crate uses a different part

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ice_effects::{EffectError, Effectors, EffectsConfig, Evidence, OwnedCall, Plan};
use serde_json::Value;
use tempfile::TempDir;

/// A temp project: `<dir>/project` is the base dir, `<dir>/project/.ice` the state dir.
pub struct Env {
    pub dir: TempDir,
    pub effectors: Effectors,
}

impl Env {
    pub fn new(config: &EffectsConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("project");
        std::fs::create_dir(&base).unwrap();
        let effectors = Effectors::new(config, &base, &base.join(".ice")).unwrap();
        Self { dir, effectors }
    }

    pub fn sandbox(&self) -> PathBuf {
        self.effectors.sandbox_root().to_owned()
    }

    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("project/.ice/effects/journal")
    }

    /// Plans the call; on success applies it with that plan.
    pub fn run(&self, call: &OwnedCall) -> Result<(Plan, Evidence), EffectError> {
        let plan = self.plan(call)?;
        let evidence = self.apply(call, &plan)?;
        Ok((plan, evidence))
    }

    pub fn plan(&self, call: &OwnedCall) -> Result<Plan, EffectError> {
        let effector = self.effectors.for_action(&call.action).expect("an effector for the action");
        effector.plan(&call.call())
    }

    pub fn apply(&self, call: &OwnedCall, plan: &Plan) -> Result<Evidence, EffectError> {
        let effector = self.effectors.for_action(&call.action).expect("an effector for the action");
        effector.apply(&call.call(), plan)
    }

    pub fn blob(&self, hash: &str) -> Vec<u8> {
        self.effectors.blobs().get(hash).unwrap()
    }
}

/// A fresh idempotency key (UUID-shaped, unique per process).
pub fn key() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    format!("00000000-0000-7000-8000-{:012x}", N.fetch_add(1, Ordering::Relaxed))
}

pub fn call(action: &str, resource: &str, args: Value) -> OwnedCall {
    OwnedCall::new(action, resource, args, key()).unwrap()
}

pub fn hash(bytes: &[u8]) -> String {
    ice_effects::content_hash(bytes)
}
