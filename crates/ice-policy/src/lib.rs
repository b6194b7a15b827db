//! ICE's policy engine: Cedar policies and their schema, compiled once and evaluated per proposal.
//!
//! A policy directory holds `*.cedar` files and `schema.cedarschema` ([`PolicySource::load_dir`]).
//! [`PolicyEngine::compile`] parses every file, names each policy by its `@id("...")` annotation (default:
//! `<file stem>:<index in file>`), refuses duplicate ids, and validates everything strictly against the schema.
//! [`PolicyEngine::evaluate`] turns a [`PolicyRequest`] into a [`PolicyVerdict`]. This crate knows nothing of
//! grants, budgets or the ledger: policy is one input to the runtime's decision.
//!
//! # Entity model (namespace `Ice`)
//!
//! - principal: `Ice::Agent`, `Ice::Human`, `Ice::Runtime`, `Ice::Policy` or `Ice::Effector` by principal kind;
//!   the entity id is the principal name (`agent:planner` → `Ice::Agent::"planner"`). No attributes.
//! - action: `Ice::Action::"<action name>"`, e.g. `Ice::Action::"fs.write"`. Actions must be declared in the
//!   schema; an undeclared action is an `Error` verdict. Action groups (`action in Ice::Action::"fs"`) work.
//! - resource: `Ice::Resource::"<resource>"` with `scheme` (text before the first `:`, or `""`) and `path` (the
//!   rest): `file:/sandbox/a.md` → scheme `"file"`, path `"/sandbox/a.md"`.
//! - context: `run_id: String` (`""` when none), `run_state: String` (e.g. `"EXECUTING"`, `""` when none),
//!   `classification: { scope, access, risk: String, risk_level: Long }`,
//!   `cost: { wall_ms, tokens, money_micros, calls, bytes: Long }` (all present, 0 when not declared),
//!   `time_us: Long` and `args`: the proposal's args, typed per action by the schema (conversion rules in
//!   [`request`]). A request whose context does not match the action's declared context is not evaluated.
//!
//! # Outcomes
//!
//! A satisfied `forbid` always wins ([`PolicyOutcome::Forbid`]). Otherwise, if any policy errored during
//! evaluation, the outcome is [`PolicyOutcome::Error`] (the erroring policy might have been a forbid). Otherwise a
//! satisfied `permit` gives [`PolicyOutcome::Permit`], or [`PolicyOutcome::RequireApproval`] when any satisfied
//! permit is annotated `@require_approval("why")`; with no satisfied permit, [`PolicyOutcome::NoPermit`].
//!
//! # Policy tests
//!
//! [`run_policy_tests`] runs a TOML case file against a compiled engine:
//!
//! ```toml
//! [[case]]
//! name = "agents may write inside the sandbox"
//! principal = "agent:planner"            # KIND:NAME
//! action = "fs.write"
//! resource = "file:/sandbox/report.md"
//! args = { path = "/sandbox/report.md", content = "hi" }     # optional; default {}
//! classification = { scope = "external", access = "write", risk = "medium" }
//!                                        # optional; each field defaults to internal / read / low
//! cost = { calls = 1 }                   # optional; wall_ms, tokens, money_micros, calls, bytes
//! run_state = "EXECUTING"                # optional
//! run_id = "0190...-..."                 # optional UUID
//! time = "2026-11-01T12:00:00Z"          # optional RFC 3339; default the epoch
//! expect = "permit"                      # permit | forbid | no_permit | require_approval | error
//! expect_policies = ["default-permit"]   # optional: exact determining policy ids, any order
//! ```
//!
//! A case passes when the outcome matches `expect` and, if given, the determining policies match
//! `expect_policies` exactly. A file that cannot be read as cases (bad TOML, unknown or missing field, bad value)
//! is refused with `ICE-E0605`, naming the case and the field.
//!
//! # Performance
//!
//! Policies and the schema are parsed and validated once. Per request, the context is built with Cedar's typed
//! constructors (no JSON text), and the entity store is cached per (principal, resource). For actions whose args
//! type uses only `String`, `Long`, `Bool`, sets and records, ICE checks the args and the principal type itself,
//! exactly as Cedar's request validation would (a differential property test holds it to that), and skips that
//! validation, which costs about as much as evaluating a small policy set; other actions keep Cedar's validation.
//! [`PolicyEngine::prepare`] and [`PolicyEngine::is_authorized_prepared`] expose the bare Cedar call on a prebuilt
//! request for benchmarks.

mod cases;
mod defaults;
mod engine;
mod error;
pub mod request;
mod shape;
mod source;
mod verdict;

pub use cases::{PolicyCase, PolicyCaseResult, PolicyTestReport, parse_policy_cases, run_policy_tests};
pub use defaults::{DEFAULT_POLICIES, DEFAULT_SCHEMA};
pub use engine::{APPROVAL_ANNOTATION, ID_ANNOTATION, NAMESPACE, PolicyEngine};
pub use error::{PolicyError, ValidationIssue};
pub use request::{MAX_ARGS_DEPTH, PolicyRequest, PreparedRequest};
pub use source::{POLICY_EXTENSION, PolicyFile, PolicySource, SCHEMA_FILE};
pub use verdict::{PolicyOutcome, PolicyVerdict};

/// The default policy set as a [`PolicySource`] (what `ice init` writes, read back).
pub fn default_source() -> PolicySource {
    PolicySource {
        files: DEFAULT_POLICIES
            .iter()
            .map(|(name, text)| PolicyFile { name: (*name).to_owned(), text: (*text).to_owned() })
            .collect(),
        schema: DEFAULT_SCHEMA.to_owned(),
    }
}
