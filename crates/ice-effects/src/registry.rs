//! The effector registry: builds the configured effectors over one sandbox, blob store and journal, and routes
//! an action to the effector serving it. The runtime holds one of these; tests swap in instrumented effectors.

use std::fmt;
use std::path::{Path, PathBuf};

use ice_core::Classification;

use crate::{BlobStore, EffectError, Effector, EffectsConfig, FsEffector, HttpEffector, ProcessEffector};

/// The effectors a runtime executes through.
pub struct Effectors {
    /// Later entries win when two serve the same action (see [`Effectors::with`]).
    effectors: Vec<Box<dyn Effector>>,
    blobs: BlobStore,
    sandbox_root: PathBuf,
}

impl Effectors {
    /// Builds the fs, process and http effectors. `base_dir` resolves a relative `config.sandbox` (created when
    /// missing); `state_dir` (the `.ice` dir) holds `blobs/` and `effects/journal/`. The config is validated first
    /// (`BadConfig`).
    pub fn new(config: &EffectsConfig, base_dir: &Path, state_dir: &Path) -> Result<Self, EffectError> {
        config.validate()?;
        let sandbox = base_dir.join(&config.sandbox);
        let blobs = BlobStore::open(state_dir.join("blobs"))?;
        let journal = state_dir.join("effects").join("journal");
        let fs = FsEffector::new(&sandbox, blobs.clone())?;
        let sandbox_root = fs.sandbox_root().to_owned();
        let process = ProcessEffector::new(&config.process, &sandbox_root, blobs.clone(), &journal)?;
        let http = HttpEffector::new(&config.http, blobs.clone(), &journal)?;
        Ok(Self { effectors: vec![Box::new(fs), Box::new(process), Box::new(http)], blobs, sandbox_root })
    }

    /// Adds an effector, replacing the one with the same [`Effector::name`] if there is one. Where two effectors
    /// serve one action, the one added last serves it.
    #[must_use]
    pub fn with(mut self, effector: Box<dyn Effector>) -> Self {
        self.insert(effector);
        self
    }

    /// [`Effectors::with`] in place: adds an effector, replacing the one with the same name.
    pub fn insert(&mut self, effector: Box<dyn Effector>) {
        self.effectors.retain(|e| e.name() != effector.name());
        self.effectors.push(effector);
    }

    /// The effector serving `action`, if any (the runtime refuses the rest with `NoEffector`).
    pub fn for_action(&self, action: &str) -> Option<&dyn Effector> {
        self.effectors.iter().rev().find(|e| e.actions().contains(&action)).map(|e| e.as_ref())
    }

    /// The blob store (prior content for rollback, outputs as evidence).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The canonical sandbox root.
    pub fn sandbox_root(&self) -> &Path {
        &self.sandbox_root
    }

    /// Every served action with the name of the effector serving it and the classification it declares, sorted
    /// by action.
    pub fn actions(&self) -> Vec<(&'static str, &'static str, Classification)> {
        let mut out: Vec<(&'static str, &'static str, Classification)> = Vec::new();
        for effector in self.effectors.iter().rev() {
            for &action in effector.actions() {
                if out.iter().any(|(a, _, _)| *a == action) {
                    continue;
                }
                if let Some(class) = effector.classification(action) {
                    out.push((action, effector.name(), class));
                }
            }
        }
        out.sort_by_key(|(action, _, _)| *action);
        out
    }
}

impl fmt::Debug for Effectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Effectors")
            .field("effectors", &self.effectors.iter().map(|e| e.name()).collect::<Vec<_>>())
            .field("blobs", &self.blobs.dir())
            .field("sandbox_root", &self.sandbox_root)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use ice_core::{Access, ErrorCode, Risk};

    use super::*;
    use crate::{EffectCall, Evidence, Plan};

    #[test]
    fn builds_the_three_effectors_and_routes_actions() {
        let dir = tempfile::tempdir().unwrap();
        let effectors = Effectors::new(&EffectsConfig::default(), dir.path(), &dir.path().join(".ice")).unwrap();
        assert!(dir.path().join("sandbox").is_dir());
        assert!(dir.path().join(".ice/blobs").is_dir());
        assert!(dir.path().join(".ice/effects/journal").is_dir());
        assert_eq!(effectors.sandbox_root(), std::fs::canonicalize(dir.path().join("sandbox")).unwrap());
        assert_eq!(effectors.for_action("fs.write").unwrap().name(), "fs");
        assert_eq!(effectors.for_action("process.exec").unwrap().name(), "process");
        assert_eq!(effectors.for_action("http.request").unwrap().name(), "http");
        assert!(effectors.for_action("model.call").is_none());
        let actions = effectors.actions();
        assert_eq!(actions.len(), 8);
        let delete = actions.iter().find(|(a, _, _)| *a == "fs.delete").unwrap();
        assert_eq!((delete.1, delete.2.access, delete.2.risk), ("fs", Access::Irreversible, Risk::High));
    }

    #[test]
    fn a_bad_config_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EffectsConfig::default();
        config.http.allow_hosts = vec!["nohost".into()];
        let err = Effectors::new(&config, dir.path(), &dir.path().join(".ice")).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadConfig);
    }

    struct Fake;

    impl Effector for Fake {
        fn name(&self) -> &'static str {
            "fs"
        }
        fn actions(&self) -> &'static [&'static str] {
            &["fs.read"]
        }
        fn classification(&self, _: &str) -> Option<Classification> {
            None
        }
        fn plan(&self, _: &EffectCall<'_>) -> Result<Plan, EffectError> {
            Err(EffectError::new(ErrorCode::EffectFailed, "fake"))
        }
        fn apply(&self, _: &EffectCall<'_>, _: &Plan) -> Result<Evidence, EffectError> {
            Err(EffectError::new(ErrorCode::EffectFailed, "fake"))
        }
    }

    #[test]
    fn with_replaces_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let effectors = Effectors::new(&EffectsConfig::default(), dir.path(), &dir.path().join(".ice"))
            .unwrap()
            .with(Box::new(Fake));
        assert!(effectors.for_action("fs.write").is_none());
        assert_eq!(effectors.for_action("fs.read").unwrap().name(), "fs");
        assert_eq!(effectors.for_action("process.exec").unwrap().name(), "process");
    }
}
