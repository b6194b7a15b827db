//! Effectors: the only code in ICE that changes the world. Each effector serves a few actions (`fs.write`,
//! `process.exec`, `http.request`, ...), declares their classification, and works in two steps:
//!
//! 1. [`Effector::plan`] validates the call (sandbox, allowlists, resource ↔ args binding, limits) and captures
//!    what rollback needs (the prior content, into the [`BlobStore`]) *without changing anything*. A plan error
//!    means nothing happened; the runtime records it as `EffectRefused`.
//! 2. [`Effector::apply`] performs the effect. It is idempotent per [`EffectCall::idempotency_key`]: a retry after a
//!    crash either finds the effect applied (and says so in [`Evidence::already_applied`]) or applies it once.
//!
//! This crate never decides whether an effect is allowed: the runtime calls it only after consuming a permit
//! bound to the exact canonical args, and every effector re-checks that the args it is handed hash to the
//! permitted `args_hash` (defence in depth: a runtime bug cannot smuggle other args through).
//!
//! # Effectors
//!
//! - [`FsEffector`]: `fs.read`, `fs.list`, `fs.write`, `fs.append`, `fs.delete`, `fs.restore` over the sandbox;
//!   exactly-once by state check (`before` / `expected_after` hashes); prior content kept as a blob for rollback.
//! - [`ProcessEffector`]: `process.exec` of an allowlisted program; exactly-once by journal; irreversible.
//!   Args: `{"argv": [...], "cwd"?: "dir", "stdin"?: "...", "env"?: ["NAME=value", ...]}`.
//! - [`HttpEffector`]: `http.request` to an allowlisted `host:port` (plain http); exactly-once by journal and an
//!   `Idempotency-Key` header; nothing to undo for GET/HEAD, irreversible otherwise.
//!   Args: `{"method": "GET", "url": "http://host:port/path", "body"?: "...", "headers"?: ["Name: value", ...]}`.
//!
//! `env` and `headers` are arrays of strings, not objects, because the policy schema (Cedar) declares them as
//! `Set<String>`: it cannot express maps with arbitrary keys. An entry splits at its first `=` (env) or `:`
//! (headers, spaces and tabs around the value dropped); an object, an empty name or a name given twice is
//! refused with `BadArgument`.
//!
//! # Secrets
//!
//! Proposals are recorded whole in the ledger, so credentials are never args. An arg refers to a secret declared
//! under `[effects.secrets]` as `${secret:NAME}`, e.g. `"Authorization: Bearer ${secret:GITHUB_TOKEN}"` in
//! `http.request` `headers` or `"GH_TOKEN=${secret:GITHUB_TOKEN}"` in `process.exec` `env`:
//!
//! - References are resolved only there (header values, environment values), only in `apply`, and only into the
//!   request on the wire or the child's environment. A reference anywhere else is refused (`NotAllowlisted`), in
//!   every effector's `plan`; so is one naming an undeclared secret (`UnknownSecret`) or a malformed one
//!   (`BadArgument`). A source that cannot be read at apply time (variable unset, file missing, not a regular
//!   file, or open to group or others) fails the effect with `UnknownSecret` before anything is sent or run,
//!   and is not journaled, so the same permit may run once the source is fixed.
//! - The permit, the args hash and the plan are about the args with the references. A header whose value came
//!   from a secret is recorded as `[redacted]` whatever `redact_headers` says, and a response header echoing a
//!   resolved value is redacted too; errors name the secret and its source, never the value. What a server sends
//!   back in a body, or a program prints, is kept as output like any other.
//! - [`Effectors::screen_args`] is the intake check the runtime runs on a proposal before recording it: literal
//!   credentials (in credential headers, credential-named environment variables, URL user info, or anything
//!   shaped like a well-known token or private key) are refused with `LiteralSecret`.
//!
//! [`Effectors`] builds all three from an [`EffectsConfig`] and routes an action to the effector serving it.
//! Paths are relative to the sandbox root; `..`, `.`, empty segments, control characters, backslashes,
//! over-long names and symlinks anywhere along the path are refused with `ICE-E0810`.
//!
//! # Configuration (`[effects]` in `.ice/config.toml`)
//!
//! Every key is optional; unknown keys are refused.
//!
//! ```toml
//! [effects]
//! sandbox = "sandbox"              # relative to the project dir; created when missing
//!
//! [effects.process]
//! allow = []                       # argv[0] values allowed: bare names (found in /usr/bin:/bin) or absolute paths
//! env_allow = []                   # env var names a call may set; the child otherwise gets only PATH=/usr/bin:/bin
//! timeout_ms = 10000               # the process group is killed after this
//! max_output_bytes = 1048576       # kept per stream (stdout, stderr); the rest is read, hashed and discarded
//!
//! [effects.http]
//! allow_hosts = []                 # exact "host:port" entries, e.g. "127.0.0.1:8080" (plain http only)
//! allow_methods = ["GET", "HEAD"]
//! timeout_ms = 10000               # connect + whole exchange
//! max_request_bytes = 1048576      # request body
//! max_response_bytes = 4194304     # response body kept; a longer one is cut and marked truncated
//! redact_headers = ["authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"]
//!
//! [effects.secrets.GITHUB_TOKEN]   # NAME: 1 to 64 of A-Z, 0-9, _; exactly one of env / file
//! env = "GITHUB_TOKEN"             # read from the runtime's environment at each resolution
//! [effects.secrets.DEPLOY_KEY]
//! file = "/etc/ice/deploy.key"     # absolute; a regular file of mode 0600 or 0400; trailing newlines dropped
//! ```
//!
//! State lives under the `.ice` dir: `blobs/` (content-addressed, blake3) and `effects/journal/` (one
//! `<idempotency key>.started` / `.done` / `.failed` file per journaled effect).

mod blob;
mod call;
mod config;
mod durable;
mod fs;
mod http;
mod journal;
mod process;
mod registry;
mod sandbox;
mod secrets;

pub use blob::BlobStore;
pub use call::{OwnedCall, check_args_hash, content_hash};
pub use config::{EffectsConfig, HttpConfig, ProcessConfig, SecretSource};
pub use fs::{FsEffector, MAX_FILE_BYTES};
pub use http::{HttpEffector, Reply, post};
pub use journal::{Begin, Journal};
pub use process::ProcessEffector;
pub use registry::Effectors;
pub use secrets::resolve_references;

use ice_core::Classification;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One call into an effector: what the permit allowed, exactly.
#[derive(Debug, Clone, Copy)]
pub struct EffectCall<'a> {
    /// The action, e.g. `fs.write`.
    pub action: &'a str,
    /// The resource the decision was about, e.g. `file:notes/a.md`; must name the args' target.
    pub resource: &'a str,
    /// The canonical args, parsed.
    pub args: &'a Value,
    /// The canonical args text (RFC 8785) whose blake3 the permit is bound to.
    pub canonical_args: &'a str,
    /// Hex blake3 of `canonical_args`, as recorded in the permit.
    pub args_hash: &'a str,
    /// Stable across retries of the same permitted effect (the runtime uses the permit id).
    pub idempotency_key: &'a str,
}

/// What an effect will do, decided before it does anything; recorded in `EffectStarted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The target in effector terms: a sandbox-relative path, a program, a URL.
    pub target: String,
    /// Hex blake3 of what will be written or sent (file content, argv + stdin, request body).
    pub input_hash: String,
    /// Content hash of the target before the effect (`fs`); `None` when it did not exist or does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// Content hash the target will have after the effect (`fs` writes); `None` for deletes and non-fs effects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_after: Option<String>,
    /// How to undo the effect.
    pub compensation: Compensation,
    /// How a retry after a crash stays exactly-once.
    pub retry: RetryMode,
}

/// How an effect can be undone. Rollback turns each into a governed proposal of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Compensation {
    /// Write the blob's content back to the path (`fs.restore` with args `{"path", "blob"}`).
    RestoreFile {
        /// Sandbox-relative path.
        path: String,
        /// Hex blake3 of the prior content, held in the blob store.
        blob: String,
    },
    /// Remove a file the effect created (`fs.delete` with args `{"path"}`).
    DeleteFile {
        /// Sandbox-relative path.
        path: String,
    },
    /// Nothing to undo (a read).
    Nothing,
    /// Cannot be undone; listed as such by rollback, never pretended away.
    Irreversible {
        /// Why.
        reason: String,
    },
}

/// How [`Effector::apply`] stays exactly-once across a crash and a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryMode {
    /// The effect is recognisable in the target's state (`before` / `expected_after` hashes): a retry checks it.
    StateCheck,
    /// A journal entry under the idempotency key records completion; a retry returns the recorded evidence and
    /// refuses (with `OutcomeUnknown`) when the journal shows a start but no completion.
    Journal,
}

/// What an effect did; recorded in `EffectCompleted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// Hex blake3 of the output (content read, stdout, response body); of the empty string when none.
    pub output_hash: String,
    /// Size of the whole output in bytes (before any cap).
    pub output_bytes: u64,
    /// The output (capped) kept in the blob store, when there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_blob: Option<String>,
    /// Content hash of the target afterwards (`fs`); `None` when absent or not applicable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Bytes written or transferred (settled into the `bytes` budget dimension).
    pub bytes: u64,
    /// Effector-specific facts: exit status, HTTP status and redacted headers, listed entries, truncation flags.
    pub detail: Value,
    /// A retry found the effect already applied and did not apply it again.
    pub already_applied: bool,
    /// Tokens the effect consumed, as its provider reported them (model calls); settled into the `tokens` budget
    /// instead of the reserved estimate. `None` for effects that do not measure tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// An effector: serves some actions, declares their classification, plans and applies calls.
pub trait Effector: Send + Sync {
    /// Short name (`fs`, `process`, `http`).
    fn name(&self) -> &'static str;
    /// The actions it serves (listed in `ice effects actions`); an effector whose actions are configured rather
    /// than fixed (MCP tools) lists none here and answers [`Effector::serves`].
    fn actions(&self) -> &'static [&'static str];
    /// Whether it serves `action` (default: `action` is one of [`Effector::actions`]).
    fn serves(&self, action: &str) -> bool {
        self.actions().contains(&action)
    }
    /// The classification it declares for one of its actions.
    fn classification(&self, action: &str) -> Option<Classification>;
    /// Validates the call and captures what rollback needs; changes nothing in the world.
    fn plan(&self, call: &EffectCall<'_>) -> Result<Plan, EffectError>;
    /// Performs the planned effect, exactly once per idempotency key.
    fn apply(&self, call: &EffectCall<'_>, plan: &Plan) -> Result<Evidence, EffectError>;
    /// Screens a proposal's args at intake, before anything is recorded or decided (the ledger keeps args whole):
    /// refuses literal credentials in fields this effector knows carry them (`LiteralSecret`) and secret
    /// references it would not accept in `plan`. Lenient about everything else, which `plan` checks. The default
    /// accepts everything; [`Effectors::screen_args`] adds the credential-shape check for every action.
    fn screen(&self, action: &str, args: &Value) -> Result<(), EffectError> {
        let _ = (action, args);
        Ok(())
    }
}

/// An effector's refusal or failure, with a stable code (`ICE-E08xx`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct EffectError {
    /// Stable code.
    pub code: ice_core::ErrorCode,
    /// What was wrong with which input.
    pub message: String,
}

impl EffectError {
    /// Builds an error.
    pub fn new(code: ice_core::ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The hint for this error's code.
    pub fn hint(&self) -> &'static str {
        self.code.hint()
    }
}
