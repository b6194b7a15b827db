//! The process effector: runs an allowlisted program with a clean environment inside the sandbox.
//!
//! A process's effects cannot be observed or undone by ICE, so it is journaled: a retry after a crash returns
//! the recorded evidence, and a start without a recorded end is reported as `OutcomeUnknown` rather than run
//! again. A non-zero exit is a completed effect with its exit code, not an error. Note what an allowlist entry
//! grants: the program runs with the runtime user's rights; the working directory is in the sandbox, the program
//! is not confined to it.
//!
//! Args: `{"argv": ["prog", ...], "cwd"?: "dir", "stdin"?: "...", "env"?: ["NAME=value", ...]}`; each env name
//! must be in `effects.process.env_allow`.
//!
//! Environment values may reference declared secrets (`"GH_TOKEN=${secret:GITHUB_TOKEN}"`); they are resolved in
//! `apply`, after the journal says the process is to run, and only into the child's environment. The evidence
//! never lists the environment; what the program itself prints is its output, kept as such. A reference anywhere
//! else (argv, stdin, cwd) is refused.

mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ice_core::{Access, Classification, EffectScope, ErrorCode, Risk};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::call::{no_effector, parse_args, present, string_entries};
use crate::journal::{Begin, Journal};
use crate::sandbox::{Node, Sandbox};
use crate::secrets::Secrets;
use crate::secrets::screen::{entries, is_credential_env_name, literal, refuse_references_outside};
use crate::{BlobStore, Compensation, EffectCall, EffectError, Effector, Evidence, Plan, ProcessConfig, RetryMode};
use crate::{check_args_hash, content_hash};

use self::run::{DEFAULT_PATH, Finished, RunError, Spec};

const ACTIONS: &[&str] = &["process.exec"];

/// Where this effector resolves secret references, as said in refusals.
const RESOLVED_IN: &str = "args.env values";

/// The process effector.
#[derive(Debug, Clone)]
pub struct ProcessEffector {
    allow: BTreeSet<String>,
    env_allow: BTreeSet<String>,
    timeout: Duration,
    max_output: u64,
    sandbox: Sandbox,
    blobs: BlobStore,
    journal: Journal,
    secrets: Secrets,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecArgs {
    argv: Vec<String>,
    #[serde(default)]
    cwd: Option<String>,
    /// `["NAME=value", ...]`: Cedar's schema has no maps with arbitrary keys, so the environment is a
    /// `Set<String>`; an object is refused.
    #[serde(default, deserialize_with = "present")]
    env: Option<Value>,
    #[serde(default)]
    stdin: Option<String>,
}

/// A validated call.
struct Prepared {
    program: PathBuf,
    argv: Vec<String>,
    cwd: PathBuf,
    /// References unresolved.
    env: BTreeMap<String, String>,
    stdin: String,
}

impl ProcessEffector {
    /// A process effector running in `sandbox_root` (created when missing), keeping outputs in `blobs` and its
    /// journal in `journal_dir`.
    pub fn new(
        config: &ProcessConfig,
        sandbox_root: &Path,
        blobs: BlobStore,
        journal_dir: &Path,
    ) -> Result<Self, EffectError> {
        Ok(Self {
            allow: config.allow.iter().cloned().collect(),
            env_allow: config.env_allow.iter().cloned().collect(),
            timeout: Duration::from_millis(config.timeout_ms),
            max_output: config.max_output_bytes,
            sandbox: Sandbox::new(sandbox_root)?,
            blobs,
            journal: Journal::open(journal_dir)?,
            secrets: Secrets::default(),
        })
    }

    /// The secrets its environment values may reference (none by default: every reference is `UnknownSecret`).
    #[must_use]
    pub(crate) fn with_secrets(mut self, secrets: Secrets) -> Self {
        self.secrets = secrets;
        self
    }

    fn prepare(&self, call: &EffectCall<'_>) -> Result<Prepared, EffectError> {
        check_args_hash(call)?;
        if call.action != "process.exec" {
            return Err(no_effector("process", call.action));
        }
        Journal::check_key(call.idempotency_key)?;
        let args: ExecArgs = parse_args(call)?;
        refuse_references_outside(call.action, call.args, Some("env"), RESOLVED_IN)?;
        let env = parse_env(args.env)?;
        let Some(program) = args.argv.first() else {
            return Err(bad("args.argv must name a program (argv[0])"));
        };
        let expected = format!("process:{program}");
        if call.resource != expected {
            return Err(EffectError::new(
                ErrorCode::ResourceMismatch,
                format!("process.exec: resource `{}` does not name argv[0]; expected `{expected}`", call.resource),
            ));
        }
        if !self.allow.contains(program) {
            return Err(EffectError::new(
                ErrorCode::NotAllowlisted,
                format!("program `{}` is not in effects.process.allow", program.escape_debug()),
            ));
        }
        if args.argv.iter().any(|a| a.contains('\0')) {
            return Err(bad("args.argv must not contain NUL bytes"));
        }
        for (name, value) in &env {
            if !self.env_allow.contains(name) {
                return Err(EffectError::new(
                    ErrorCode::NotAllowlisted,
                    format!("environment variable `{}` is not in effects.process.env_allow", name.escape_debug()),
                ));
            }
            if value.contains('\0') {
                return Err(bad(format!("the value of args.env entry `{name}` must not contain NUL bytes")));
            }
            self.secrets.check(call.action, &format!("args.env entry `{name}`"), value)?;
        }
        let rel = self.sandbox.check(args.cwd.as_deref().unwrap_or(""), true)?;
        match self.sandbox.resolve(&rel)? {
            Node::Dir(_) => {}
            Node::Missing => {
                return Err(EffectError::new(
                    ErrorCode::NotFound,
                    format!("cwd `{}` does not exist in the sandbox", rel.as_str().escape_debug()),
                ));
            }
            Node::File(_) => return Err(bad(format!("cwd `{}` is not a directory", rel.as_str().escape_debug()))),
        }
        Ok(Prepared {
            program: resolve_program(program)?,
            cwd: self.sandbox.abs(&rel),
            argv: args.argv,
            env,
            stdin: args.stdin.unwrap_or_default(),
        })
    }

    /// The child's extra environment: references resolved now, from their sources (`UnknownSecret` when one
    /// cannot be, or when a value read could not be carried by an environment variable).
    fn resolved_env(&self, action: &str, p: &Prepared) -> Result<BTreeMap<String, String>, EffectError> {
        let mut read = Vec::new();
        p.env
            .iter()
            .map(|(name, value)| {
                let field = format!("args.env entry `{name}`");
                let value = self.secrets.resolve(action, &field, value, &mut read)?;
                if value.expose().contains('\0') {
                    return Err(EffectError::new(
                        ErrorCode::UnknownSecret,
                        format!(
                            "{action}: {field} resolves to a value with a NUL byte, which an environment variable \
                             cannot carry; check the secret's source"
                        ),
                    ));
                }
                Ok((name.clone(), value.expose().to_owned()))
            })
            .collect()
    }

    /// Hash of what the process is given: argv and stdin, as canonical JSON.
    fn input_hash(p: &Prepared) -> Result<String, EffectError> {
        let value = json!({ "argv": p.argv, "stdin": p.stdin });
        let text = serde_json_canonicalizer::to_string(&value)
            .map_err(|e| EffectError::new(ErrorCode::EffectFailed, format!("cannot encode argv: {e}")))?;
        Ok(content_hash(text.as_bytes()))
    }

    fn evidence(&self, p: &Prepared, f: &Finished) -> Evidence {
        let mut detail = Map::new();
        detail.insert("exit_code".into(), f.status.code().map_or(Value::Null, Value::from));
        if let Some(signal) = run::signal_of(&f.status) {
            detail.insert("signal".into(), signal.into());
        }
        detail.insert("stdout_hash".into(), f.stdout.hash.clone().into());
        detail.insert("stderr_hash".into(), f.stderr.hash.clone().into());
        detail.insert("stdout_bytes".into(), f.stdout.total.into());
        detail.insert("stderr_bytes".into(), f.stderr.total.into());
        detail.insert("truncated".into(), json!({ "stdout": f.stdout.truncated, "stderr": f.stderr.truncated }));
        detail.insert("duration_ms".into(), u64::try_from(f.duration.as_millis()).unwrap_or(u64::MAX).into());
        if f.streams_left_open {
            detail.insert("streams_left_open".into(), true.into());
        }
        // The effect happened whatever the blob store says: a failure to keep the output is noted, not raised.
        let mut keep = |name: &str, bytes: &[u8]| -> Option<String> {
            if bytes.is_empty() {
                return None;
            }
            match self.blobs.put(bytes) {
                Ok(hash) => Some(hash),
                Err(e) => {
                    detail.insert(format!("{name}_blob_error"), e.to_string().into());
                    None
                }
            }
        };
        let output_blob = keep("stdout", &f.stdout.kept);
        if let Some(stderr_blob) = keep("stderr", &f.stderr.kept) {
            detail.insert("stderr_blob".into(), stderr_blob.into());
        }
        Evidence {
            output_hash: f.stdout.hash.clone(),
            output_bytes: f.stdout.total,
            output_blob,
            after: None,
            bytes: p.stdin.len() as u64 + f.stdout.total + f.stderr.total,
            detail: Value::Object(detail),
            already_applied: false,
            tokens: None,
        }
    }
}

impl Effector for ProcessEffector {
    fn name(&self) -> &'static str {
        "process"
    }

    fn actions(&self) -> &'static [&'static str] {
        ACTIONS
    }

    fn classification(&self, action: &str) -> Option<Classification> {
        (action == "process.exec").then_some(Classification {
            scope: EffectScope::External,
            access: Access::Irreversible,
            risk: Risk::High,
        })
    }

    fn screen(&self, action: &str, args: &Value) -> Result<(), EffectError> {
        if action != "process.exec" {
            return Ok(());
        }
        refuse_references_outside(action, args, Some("env"), RESOLVED_IN)?;
        for entry in entries(args, "env", '=') {
            if self.secrets.check(action, &entry.label, &entry.value)? {
                continue;
            }
            if !entry.value.is_empty() && is_credential_env_name(&entry.name) {
                return Err(literal(action, &entry.label));
            }
        }
        Ok(())
    }

    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError> {
        let p = self.prepare(call)?;
        Ok(Plan {
            target: p.program.display().to_string(),
            input_hash: Self::input_hash(&p)?,
            before: None,
            expected_after: None,
            compensation: Compensation::Irreversible { reason: "a process's effects cannot be undone by ICE".into() },
            retry: RetryMode::Journal,
        })
    }

    fn apply(&self, call: &EffectCall<'_>, plan: &Plan) -> Result<Evidence, EffectError> {
        let p = self.prepare(call)?;
        if plan.target != p.program.display().to_string()
            || plan.input_hash != Self::input_hash(&p)?
            || plan.retry != RetryMode::Journal
        {
            return Err(EffectError::new(
                ErrorCode::ArgsMismatch,
                "process.exec: the plan handed to apply was not made for these args",
            ));
        }
        if let Begin::Done(evidence) = self.journal.begin(call)? {
            return Ok(evidence);
        }
        let env = match self.resolved_env(call.action, &p) {
            Ok(env) => env,
            Err(e) => {
                // Nothing ran, so a retry (once the source is fixed) may run it.
                self.journal.abandon(call)?;
                return Err(e);
            }
        };
        let spec = Spec {
            program: &p.program,
            argv: &p.argv,
            cwd: &p.cwd,
            env: &env,
            stdin: p.stdin.as_bytes(),
            timeout: self.timeout,
            max_output: self.max_output,
        };
        match run::run(&spec) {
            Ok(finished) => {
                let mut evidence = self.evidence(&p, &finished);
                // The process ran; if its end cannot be journaled, the evidence is still the truth to report.
                // A later retry would then see only the start and answer OutcomeUnknown, which is also true.
                if let Err(e) = self.journal.complete(call, &evidence)
                    && let Value::Object(detail) = &mut evidence.detail
                {
                    detail.insert("journal_error".into(), e.to_string().into());
                }
                Ok(evidence)
            }
            Err(RunError::Spawn(e)) => {
                // Nothing ran, so a retry may run it.
                self.journal.abandon(call)?;
                Err(EffectError::new(ErrorCode::EffectFailed, format!("cannot start `{}`: {e}", p.program.display())))
            }
            Err(RunError::TimedOut(after)) => {
                let error = EffectError::new(
                    ErrorCode::EffectLimit,
                    format!(
                        "`{}` ran for {} ms, over effects.process.timeout_ms = {}; its process group was killed",
                        p.program.display(),
                        after.as_millis(),
                        self.timeout.as_millis()
                    ),
                );
                self.journal.fail(call, &error)?;
                Err(error)
            }
            Err(RunError::Wait(e)) => {
                let error = EffectError::new(
                    ErrorCode::EffectFailed,
                    format!("lost track of `{}` (it was killed): {e}", p.program.display()),
                );
                self.journal.fail(call, &error)?;
                Err(error)
            }
        }
    }
}

/// An allowlisted argv[0] as an absolute path: absolute entries as they are, bare names looked up in the fixed
/// `PATH`, never in the runtime's own environment.
fn resolve_program(program: &str) -> Result<PathBuf, EffectError> {
    if program.starts_with('/') {
        return Ok(PathBuf::from(program));
    }
    DEFAULT_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .ok_or_else(|| {
            EffectError::new(
                ErrorCode::EffectFailed,
                format!("program `{}` is allowlisted but not found in {DEFAULT_PATH}", program.escape_debug()),
            )
        })
}

/// `args.env` entries `NAME=value` (split at the first `=`) as a map; an empty or repeated name is refused.
fn parse_env(value: Option<Value>) -> Result<BTreeMap<String, String>, EffectError> {
    let mut env = BTreeMap::new();
    for entry in string_entries(value, "env", "NAME=value").map_err(bad)? {
        let Some((name, value)) = entry.split_once('=') else {
            return Err(bad(format!("args.env entry `{}` is not of the form \"NAME=value\"", entry.escape_debug())));
        };
        if name.is_empty() {
            return Err(bad(format!("args.env entry `{}` has an empty name", entry.escape_debug())));
        }
        if env.insert(name.to_owned(), value.to_owned()).is_some() {
            return Err(bad(format!("args.env sets `{}` more than once", name.escape_debug())));
        }
    }
    Ok(env)
}

fn bad(message: impl Into<String>) -> EffectError {
    EffectError::new(ErrorCode::BadArgument, format!("process.exec: {}", message.into()))
}

#[cfg(test)]
mod tests {
    use ice_core::ErrorCode;
    use serde_json::json;

    use super::*;

    #[test]
    fn env_entries_split_at_the_first_equals() {
        let env = parse_env(Some(json!(["A=1", "B=x=y", "C="]))).unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("A", "1"), ("B", "x=y"), ("C", "")]);
        assert!(parse_env(None).unwrap().is_empty());
    }

    #[test]
    fn bad_env_entries_are_refused() {
        for (value, says) in [
            (json!({"A": "1"}), "must be an array of \"NAME=value\" strings, not an object"),
            (json!(["A"]), "not of the form"),
            (json!(["=1"]), "empty name"),
            (json!(["A=1", "A=2"]), "more than once"),
            (json!([1]), "entry 0 is a number"),
            (json!(null), "not null"),
        ] {
            let err = parse_env(Some(value.clone())).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadArgument, "{value}");
            assert!(err.message.starts_with("process.exec: ") && err.message.contains(says), "{value}: {err}");
        }
    }
}
