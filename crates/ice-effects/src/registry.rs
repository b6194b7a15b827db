//! The effector registry: builds the configured effectors over one sandbox, blob store, journal and set of
//! declared secrets, routes an action to the effector serving it, and screens proposals' args at intake. The
//! runtime holds one of these; tests swap in instrumented effectors.

use std::fmt;
use std::path::{Path, PathBuf};

use ice_core::Classification;
use serde_json::Value;

use crate::secrets::Secrets;
use crate::secrets::screen::refuse_credential_shapes;
use crate::{BlobStore, EffectError, Effector, EffectsConfig, FsEffector, HttpEffector, ProcessEffector};

/// The effectors a runtime executes through.
pub struct Effectors {
    /// Later entries win when two serve the same action (see [`Effectors::with`]).
    effectors: Vec<Box<dyn Effector>>,
    blobs: BlobStore,
    sandbox_root: PathBuf,
    /// The journal directory (canonical once created), which only effects started from this home can use.
    journal: PathBuf,
}

impl Effectors {
    /// Builds the fs, process and http effectors. `base_dir` resolves a relative `config.sandbox` (created when
    /// missing); `state_dir` (the `.ice` dir) holds `blobs/` and `effects/journal/`. The config is validated first
    /// (`BadConfig`). The process and http effectors resolve the secrets declared in `config.secrets`; no source
    /// is read here.
    pub fn new(config: &EffectsConfig, base_dir: &Path, state_dir: &Path) -> Result<Self, EffectError> {
        config.validate()?;
        let sandbox = base_dir.join(&config.sandbox);
        let blobs = BlobStore::open(state_dir.join("blobs"))?;
        let journal = state_dir.join("effects").join("journal");
        let fs = FsEffector::new(&sandbox, blobs.clone())?;
        let sandbox_root = fs.sandbox_root().to_owned();
        // An agent that can write the sandbox must not reach ICE's own files (keys, config, journal, blobs).
        let home = state_dir.canonicalize().unwrap_or_else(|_| state_dir.to_owned());
        if sandbox_root.starts_with(&home) || home.starts_with(&sandbox_root) {
            return Err(EffectError::new(
                ice_core::ErrorCode::BadConfig,
                format!(
                    "the sandbox {} overlaps ICE's home {}: agents could read its keys and rewrite its config; \
                     choose a sandbox outside the home (effects.sandbox)",
                    sandbox_root.display(),
                    home.display()
                ),
            ));
        }
        let secrets = Secrets::new(&config.secrets);
        let process = ProcessEffector::new(&config.process, &sandbox_root, blobs.clone(), &journal)?
            .with_secrets(secrets.clone());
        let http = HttpEffector::new(&config.http, blobs.clone(), &journal)?.with_secrets(secrets);
        let journal = journal.canonicalize().unwrap_or(journal);
        Ok(Self { effectors: vec![Box::new(fs), Box::new(process), Box::new(http)], blobs, sandbox_root, journal })
    }

    /// The journal directory process and http effects record exactly-once state in: a retry of such an effect is
    /// safe only against this same directory.
    pub fn journal_dir(&self) -> &Path {
        &self.journal
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
        self.effectors.iter().rev().find(|e| e.serves(action)).map(|e| e.as_ref())
    }

    /// Screens a proposal's args when it is submitted, before anything is recorded or decided: the ledger keeps
    /// args whole and forever, so a credential must be refused before it gets there. Refuses:
    ///
    /// - `LiteralSecret`: a credential given literally. For the action's effector, fields known to carry
    ///   credentials ([`Effector::screen`]: `http.request` headers such as `Authorization`, `Cookie`, `X-Api-Key`
    ///   or any in `[effects.http] redact_headers`, and user info in `args.url`; `process.exec` environment
    ///   variables whose name contains `TOKEN`, `SECRET`, `PASSWORD`, ...) whose value has no `${secret:NAME}`
    ///   reference. For every action, served or not, any string or object key in the args shaped like a
    ///   well-known credential (`Bearer`/`Basic` credentials, GitHub, `sk-`, AWS, Slack tokens, PEM private
    ///   keys).
    /// - `UnknownSecret`: a reference to a secret not declared under `[effects.secrets]`.
    /// - `NotAllowlisted`: a reference where it is not resolved (anywhere but `http.request` header values and
    ///   `process.exec` environment values).
    /// - `BadArgument`: a malformed reference (`${secret:` without a valid `NAME}`).
    ///
    /// Messages name the field, never its value. Other problems with the args are left to `plan`. An action no
    /// effector serves gets only the shape check.
    pub fn screen_args(&self, action: &str, args: &Value) -> Result<(), EffectError> {
        if let Some(effector) = self.for_action(action) {
            effector.screen(action, args)?;
        }
        refuse_credential_shapes(action, args)
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
