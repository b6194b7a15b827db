//! Stable error codes and the validation error type.
//!
//! Every refusal a user can see carries an [`ErrorCode`]: a stable `ICE-Exxxx` string that scripts can match on,
//! a message saying what was wrong with which input, and a hint for the fix. Codes are never renumbered; new ones
//! are appended. The table is documented in `README.md`.

use std::fmt;

/// A stable, user-facing error code. The string form (`ICE-E0101`) never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The payload is not valid JSON.
    MalformedJson,
    /// The payload is valid JSON but violates a structural rule (not an object, too deep, too large, unsafe number).
    BadPayloadStructure,
    /// An envelope field (id, principal, time, cause) could not be parsed.
    BadEnvelopeField,
    /// The event kind is not in the closed taxonomy.
    UnknownKind,
    /// The origin principal may not emit this kind of event.
    OriginNotAuthorized,
    /// A declared time is earlier than the ledger head's time.
    TimeWentBackwards,
    /// A declared time is further in the future than the allowed clock skew.
    TimeInFuture,
    /// A causal parent named by the event is not in the ledger.
    UnknownCause,
    /// The event names a run that does not exist.
    UnknownRun,
    /// The event kind needs a run id but none was given (or the reverse).
    RunScopeMismatch,
    /// The run lifecycle refuses this transition.
    IllegalTransition,
    /// The run is already terminated; nothing more may happen to it.
    RunTerminated,
    /// A reason is required for this transition.
    ReasonRequired,
    /// The ledger head moved since the caller read it (optimistic concurrency).
    HeadConflict,
    /// The store could not be opened, read or written.
    StoreUnavailable,
    /// The store schema is newer than this binary or a migration failed.
    SchemaMismatch,
    /// The store refused a write that would modify history.
    AppendOnlyViolation,
    /// Chain verification: the stored hash does not match the recomputed hash.
    HashMismatch,
    /// Chain verification: prev_hash does not point at the previous event.
    BrokenLink,
    /// Chain verification: a sequence number is missing or out of order.
    SequenceGap,
    /// Chain verification: an event's time is earlier than its predecessor's.
    TimeRegression,
    /// Chain verification: the chain does not end where the recorded head says it does (truncation).
    HeadMismatch,
    /// A checkpoint's signature, Merkle root, covered range or state root does not match.
    CheckpointInvalid,
    /// A checkpoint is signed by a key that is not trusted.
    UntrustedKey,
    /// No `.ice/` directory was found.
    NotInitialized,
    /// `ice init` on a directory that already has a ledger.
    AlreadyInitialized,
    /// The configuration file is invalid.
    BadConfig,
    /// The requested event or run was not found.
    NotFound,
    /// A command-line argument has an invalid value.
    BadArgument,
    /// The kind has its own command (proposals, grants, policies, budgets) and cannot be emitted raw.
    KindHasOwnCommand,
    /// A policy file does not parse.
    PolicyParse,
    /// A policy does not validate against the schema.
    PolicyValidation,
    /// The policy schema is missing or invalid.
    PolicySchema,
    /// Two policies share an `@id`.
    PolicyDuplicateId,
    /// A policy test case file is invalid.
    PolicyCases,
    /// The policy directory is unreadable or holds no policies.
    PolicyDir,
    /// The action catalog (`policy.toml`) is invalid or does not match the schema.
    PolicyCatalog,
    /// A proposal names an action that is not in the action catalog.
    UnknownAction,
    /// A resource string is not normalised.
    BadResource,
    /// The named grant does not exist.
    UnknownGrant,
    /// The grant cannot be revoked (not revocable, already revoked or expired).
    GrantNotRevocable,
    /// A budget definition is invalid.
    BadBudget,
    /// The named proposal does not exist or has nothing to settle.
    UnknownProposal,
    /// No policy set has been activated.
    NoActivePolicy,
    /// no execution permit for this effect.
    NoPermit,
    /// the permit was already used.
    PermitUsed,
    /// the permit expired.
    PermitExpired,
    /// the arguments differ from the allowed ones.
    ArgsMismatch,
    /// the permit was revoked.
    PermitRevoked,
    /// the path leaves the sandbox.
    SandboxEscape,
    /// not on the effector's allowlist.
    NotAllowlisted,
    /// an effector limit was exceeded.
    EffectLimit,
    /// the effector failed.
    EffectFailed,
    /// the target is not in the state the effect expected.
    EffectConflict,
    /// the effect's outcome is unknown.
    OutcomeUnknown,
    /// the resource does not name the effect's target.
    ResourceMismatch,
    /// no effector for this action.
    NoEffector,
    /// no such approval.
    UnknownApproval,
    /// the approval is no longer pending.
    ApprovalClosed,
    /// this principal may not answer the approval.
    ApproverNotAuthorized,
    /// the agent cannot be resumed.
    ResumeNotAllowed,
    /// nothing to roll back.
    NothingToRollBack,
    /// A manual settlement was attempted while the proposal's permit can still run.
    SettleWhileLive,
    /// Args carry a literal credential where a secret reference belongs.
    LiteralSecret,
    /// A secret reference names a secret that is not configured or cannot be read.
    UnknownSecret,
    /// No credential: the OS user is not mapped in config and no token was given.
    Unauthenticated,
    /// The token is malformed, unknown, or its secret does not match.
    TokenInvalid,
    /// The token was revoked.
    TokenRevoked,
    /// The token expired.
    TokenExpired,
    /// The caller's roles do not include the one this transition needs.
    RoleRequired,
    /// The caller may not act for the named principal.
    ActAsNotAllowed,
    /// `runtime:*`, `effector:*` and `policy:*` principals cannot be claimed by any caller.
    ReservedPrincipal,
    /// Verification has no key to check signatures against: the pinned key is missing or unreadable, or a bundle
    /// was given without `--trust-key`.
    NoPinnedKey,
    /// More events follow the last signed checkpoint (or, with none, the whole ledger) than the configured bound.
    UnsignedTail,
    /// A stored event cannot be decoded, or the ledger's own events cannot be folded (modified outside ICE).
    LedgerCorrupt,
    /// The ledger contradicts a checkpoint a witness cosigned: the event is gone (truncated) or different
    /// (rewritten), or the log's key changed.
    WitnessMismatch,
    /// A witness state file cannot be read, or its cosignature does not verify.
    WitnessStateInvalid,
    /// A non-empty ledger holds no signed checkpoint at all (`ice init` signs one, so one was removed or never taken).
    NoCheckpoint,
    /// An effect made exactly-once by a journal was started against another instance's journal: retrying it here
    /// could run it twice.
    RetryElsewhere,
    /// A token (or, unauthenticated, a client address) sent more requests than its rate allows.
    RateLimited,
    /// A request body is larger than the server accepts.
    RequestTooLarge,
    /// A request did not finish within the server's time limit.
    RequestTimeout,
    /// No endpoint has this path and method.
    NoRoute,
    /// The server is at its concurrency limit and shed the request.
    Overloaded,
    /// An MCP tool's definition (name, description, input schema) differs from the one pinned in the ledger.
    ToolChanged,
    /// An agent loop for this principal and run is already running on this home.
    AgentRunning,
    /// A memory promotion names a source that is not a validated domain event (a completed effect not rolled
    /// back, a granted approval, a run's move to COMMITTED), or a candidate that is not a `MemoryProposed` event.
    MemorySourceNotValidated,
    /// No memory item (or candidate) has this id.
    UnknownMemoryItem,
    /// The memory item is no longer ACTIVE (expired, deprecated, superseded or invalidated): its lifecycle is over.
    MemoryNotActive,
    /// A witness cosignature carried by an audit bundle does not verify with its witness key, or does not match the
    /// bundle's checkpoint it names.
    CosignatureInvalid,
    /// A witness was pinned (`--trust-witness`) but an exported event is not under a checkpoint that witness
    /// cosigned.
    NotWitnessed,
}

impl ErrorCode {
    /// Every code, in declaration order (the unit tests check the list is complete and the strings unique).
    pub const ALL: [ErrorCode; 91] = [
        ErrorCode::MalformedJson,
        ErrorCode::BadPayloadStructure,
        ErrorCode::BadEnvelopeField,
        ErrorCode::UnknownKind,
        ErrorCode::OriginNotAuthorized,
        ErrorCode::TimeWentBackwards,
        ErrorCode::TimeInFuture,
        ErrorCode::UnknownCause,
        ErrorCode::UnknownRun,
        ErrorCode::RunScopeMismatch,
        ErrorCode::IllegalTransition,
        ErrorCode::RunTerminated,
        ErrorCode::ReasonRequired,
        ErrorCode::HeadConflict,
        ErrorCode::StoreUnavailable,
        ErrorCode::SchemaMismatch,
        ErrorCode::AppendOnlyViolation,
        ErrorCode::HashMismatch,
        ErrorCode::BrokenLink,
        ErrorCode::SequenceGap,
        ErrorCode::TimeRegression,
        ErrorCode::HeadMismatch,
        ErrorCode::CheckpointInvalid,
        ErrorCode::UntrustedKey,
        ErrorCode::NotInitialized,
        ErrorCode::AlreadyInitialized,
        ErrorCode::BadConfig,
        ErrorCode::NotFound,
        ErrorCode::BadArgument,
        ErrorCode::KindHasOwnCommand,
        ErrorCode::PolicyParse,
        ErrorCode::PolicyValidation,
        ErrorCode::PolicySchema,
        ErrorCode::PolicyDuplicateId,
        ErrorCode::PolicyCases,
        ErrorCode::PolicyDir,
        ErrorCode::PolicyCatalog,
        ErrorCode::UnknownAction,
        ErrorCode::BadResource,
        ErrorCode::UnknownGrant,
        ErrorCode::GrantNotRevocable,
        ErrorCode::BadBudget,
        ErrorCode::UnknownProposal,
        ErrorCode::NoActivePolicy,
        ErrorCode::NoPermit,
        ErrorCode::PermitUsed,
        ErrorCode::PermitExpired,
        ErrorCode::ArgsMismatch,
        ErrorCode::PermitRevoked,
        ErrorCode::SandboxEscape,
        ErrorCode::NotAllowlisted,
        ErrorCode::EffectLimit,
        ErrorCode::EffectFailed,
        ErrorCode::EffectConflict,
        ErrorCode::OutcomeUnknown,
        ErrorCode::ResourceMismatch,
        ErrorCode::NoEffector,
        ErrorCode::UnknownApproval,
        ErrorCode::ApprovalClosed,
        ErrorCode::ApproverNotAuthorized,
        ErrorCode::ResumeNotAllowed,
        ErrorCode::NothingToRollBack,
        ErrorCode::SettleWhileLive,
        ErrorCode::LiteralSecret,
        ErrorCode::UnknownSecret,
        ErrorCode::Unauthenticated,
        ErrorCode::TokenInvalid,
        ErrorCode::TokenRevoked,
        ErrorCode::TokenExpired,
        ErrorCode::RoleRequired,
        ErrorCode::ActAsNotAllowed,
        ErrorCode::ReservedPrincipal,
        ErrorCode::NoPinnedKey,
        ErrorCode::UnsignedTail,
        ErrorCode::LedgerCorrupt,
        ErrorCode::WitnessMismatch,
        ErrorCode::WitnessStateInvalid,
        ErrorCode::NoCheckpoint,
        ErrorCode::RetryElsewhere,
        ErrorCode::RateLimited,
        ErrorCode::RequestTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::NoRoute,
        ErrorCode::Overloaded,
        ErrorCode::ToolChanged,
        ErrorCode::AgentRunning,
        ErrorCode::MemorySourceNotValidated,
        ErrorCode::UnknownMemoryItem,
        ErrorCode::MemoryNotActive,
        ErrorCode::CosignatureInvalid,
        ErrorCode::NotWitnessed,
    ];
}

impl ErrorCode {
    /// The stable string form, e.g. `ICE-E0101`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "ICE-E0101",
            Self::BadPayloadStructure => "ICE-E0102",
            Self::BadEnvelopeField => "ICE-E0103",
            Self::UnknownKind => "ICE-E0110",
            Self::OriginNotAuthorized => "ICE-E0120",
            Self::TimeWentBackwards => "ICE-E0130",
            Self::TimeInFuture => "ICE-E0131",
            Self::UnknownCause => "ICE-E0140",
            Self::UnknownRun => "ICE-E0150",
            Self::RunScopeMismatch => "ICE-E0151",
            Self::IllegalTransition => "ICE-E0201",
            Self::RunTerminated => "ICE-E0202",
            Self::ReasonRequired => "ICE-E0203",
            Self::HeadConflict => "ICE-E0301",
            Self::StoreUnavailable => "ICE-E0302",
            Self::SchemaMismatch => "ICE-E0303",
            Self::AppendOnlyViolation => "ICE-E0304",
            Self::NotInitialized => "ICE-E0401",
            Self::AlreadyInitialized => "ICE-E0402",
            Self::BadConfig => "ICE-E0403",
            Self::NotFound => "ICE-E0404",
            Self::BadArgument => "ICE-E0405",
            Self::KindHasOwnCommand => "ICE-E0121",
            Self::PolicyParse => "ICE-E0601",
            Self::PolicyValidation => "ICE-E0602",
            Self::PolicySchema => "ICE-E0603",
            Self::PolicyDuplicateId => "ICE-E0604",
            Self::PolicyCases => "ICE-E0605",
            Self::PolicyDir => "ICE-E0606",
            Self::PolicyCatalog => "ICE-E0607",
            Self::NoActivePolicy => "ICE-E0608",
            Self::UnknownAction => "ICE-E0701",
            Self::BadResource => "ICE-E0702",
            Self::UnknownGrant => "ICE-E0703",
            Self::GrantNotRevocable => "ICE-E0704",
            Self::BadBudget => "ICE-E0705",
            Self::UnknownProposal => "ICE-E0706",
            Self::NoPermit => "ICE-E0801",
            Self::PermitUsed => "ICE-E0802",
            Self::PermitExpired => "ICE-E0803",
            Self::ArgsMismatch => "ICE-E0804",
            Self::PermitRevoked => "ICE-E0805",
            Self::SandboxEscape => "ICE-E0810",
            Self::NotAllowlisted => "ICE-E0811",
            Self::EffectLimit => "ICE-E0812",
            Self::EffectFailed => "ICE-E0813",
            Self::EffectConflict => "ICE-E0814",
            Self::OutcomeUnknown => "ICE-E0815",
            Self::ResourceMismatch => "ICE-E0816",
            Self::NoEffector => "ICE-E0817",
            Self::UnknownApproval => "ICE-E0820",
            Self::ApprovalClosed => "ICE-E0821",
            Self::ApproverNotAuthorized => "ICE-E0822",
            Self::ResumeNotAllowed => "ICE-E0830",
            Self::NothingToRollBack => "ICE-E0840",
            Self::SettleWhileLive => "ICE-E0707",
            Self::LiteralSecret => "ICE-E0850",
            Self::UnknownSecret => "ICE-E0851",
            Self::Unauthenticated => "ICE-E0901",
            Self::TokenInvalid => "ICE-E0902",
            Self::TokenRevoked => "ICE-E0903",
            Self::TokenExpired => "ICE-E0904",
            Self::RoleRequired => "ICE-E0905",
            Self::ActAsNotAllowed => "ICE-E0906",
            Self::ReservedPrincipal => "ICE-E0907",
            Self::NoPinnedKey => "ICE-E0508",
            Self::UnsignedTail => "ICE-E0509",
            Self::LedgerCorrupt => "ICE-E0510",
            Self::WitnessMismatch => "ICE-E0511",
            Self::WitnessStateInvalid => "ICE-E0512",
            Self::NoCheckpoint => "ICE-E0513",
            Self::RetryElsewhere => "ICE-E0818",
            Self::RateLimited => "ICE-E0910",
            Self::RequestTooLarge => "ICE-E0911",
            Self::RequestTimeout => "ICE-E0912",
            Self::NoRoute => "ICE-E0913",
            Self::Overloaded => "ICE-E0914",
            Self::ToolChanged => "ICE-E0708",
            Self::AgentRunning => "ICE-E0709",
            Self::MemorySourceNotValidated => "ICE-E1001",
            Self::UnknownMemoryItem => "ICE-E1002",
            Self::MemoryNotActive => "ICE-E1003",
            Self::CosignatureInvalid => "ICE-E0514",
            Self::NotWitnessed => "ICE-E0515",
            Self::HashMismatch => "ICE-E0501",
            Self::BrokenLink => "ICE-E0502",
            Self::SequenceGap => "ICE-E0503",
            Self::TimeRegression => "ICE-E0504",
            Self::HeadMismatch => "ICE-E0505",
            Self::CheckpointInvalid => "ICE-E0506",
            Self::UntrustedKey => "ICE-E0507",
        }
    }

    /// A short hint telling the user how to fix the problem.
    pub fn hint(self) -> &'static str {
        match self {
            Self::MalformedJson => "pass a JSON object, e.g. --payload '{\"note\":\"hi\"}'",
            Self::BadPayloadStructure => {
                "payloads are JSON objects up to 64 KiB, nested at most 64 deep, with integers within ±(2^53-1); \
                 put larger numbers in strings"
            }
            Self::BadEnvelopeField => {
                "ids are UUIDs, principals are KIND:NAME (agent|human|runtime|policy|effector), times are RFC 3339"
            }
            Self::UnknownKind => "run `ice kinds` to list the event kinds in the taxonomy",
            Self::OriginNotAuthorized => {
                "agents may emit only cognitive events and proposals; runtime-only kinds are emitted by ICE itself"
            }
            Self::TimeWentBackwards => "omit the explicit time to let the runtime clock stamp the event",
            Self::TimeInFuture => {
                "a declared time may not be later than the runtime clock; omit the time to use the clock"
            }
            Self::UnknownCause => "causes must be event ids already in the ledger; check them with `ice inspect ID`",
            Self::UnknownRun => "create the run first with `ice run create`, or check the id with `ice run list`",
            Self::RunScopeMismatch => "run-scoped kinds need --run; ledger-wide kinds must not have one",
            Self::IllegalTransition => {
                "runs move forward only: CREATED → PROVISIONED → CONTEXT_READY → EXECUTING → VALIDATING → \
                 COMMITTED|ABORTED → TERMINATED (EXECUTING may go to ABORTED)"
            }
            Self::RunTerminated => "a terminated run is final; create a new run",
            Self::ReasonRequired => "pass --reason \"...\" saying why",
            Self::HeadConflict => "another writer appended first; retry after catching up",
            Self::StoreUnavailable => "check the ledger path and permissions, and that the disk is not full",
            Self::SchemaMismatch => "upgrade the `ice` binary to the version that wrote this ledger",
            Self::AppendOnlyViolation => "the ledger is append-only; record a new event instead of editing history",
            Self::NotInitialized => "run `ice init` first, or pass --dir / set ICE_DIR to an initialized directory",
            Self::AlreadyInitialized => "this directory already has a ledger; use it, or choose another directory",
            Self::BadConfig => "fix .ice/config.toml (see README.md, section Configuration)",
            Self::NotFound => "list what exists with `ice log` or `ice run list`",
            Self::BadArgument => "see `ice help` for the accepted values",
            Self::KindHasOwnCommand => {
                "submit proposals with `ice propose`; grants, budgets and policies have their own commands"
            }
            Self::PolicyParse => "fix the Cedar syntax at the position shown; `ice policy validate` re-checks",
            Self::PolicyValidation => "make the policy match .ice/policies/schema.cedarschema (or extend the schema)",
            Self::PolicySchema => "provide a valid .ice/policies/schema.cedarschema",
            Self::PolicyDuplicateId => "give every policy a unique @id(\"...\")",
            Self::PolicyCases => "see README.md, section Policy tests, for the case file format",
            Self::PolicyDir => "put *.cedar files, schema.cedarschema and policy.toml in the policy directory",
            Self::PolicyCatalog => "declare every action in policy.toml [actions.NAME] and in the Cedar schema",
            Self::NoActivePolicy => "activate a policy set with `ice policy activate`",
            Self::UnknownAction => {
                "list the actions with `ice policy show`; add new ones to policy.toml and the schema"
            }
            Self::BadResource => "use a normalised resource such as file:/sandbox/report.md (no . or .. segments)",
            Self::UnknownGrant => "list grants with `ice grant list --all`",
            Self::GrantNotRevocable => "only live, revocable grants can be revoked",
            Self::BadBudget => {
                "budgets are --scope run:ID|agent:KIND:NAME|global, --dimension wall_ms|tokens|money_micros|calls|bytes, \
                 --limit N, --period total|day"
            }
            Self::UnknownProposal => "list proposals with `ice log --kind ProposalSubmitted`",
            Self::NoPermit => {
                "execute only what was allowed: `ice propose` must return allow (or an approval must be granted) first; list permits with `ice effects permits`"
            }
            Self::PermitUsed => "a permit is single use; propose again for another execution",
            Self::PermitExpired => "permits expire; propose again (and have it approved again where policy asks)",
            Self::ArgsMismatch => {
                "execute with exactly the arguments that were allowed; changed arguments need a new proposal"
            }
            Self::PermitRevoked => "the permit was revoked (agent suspended or by command); propose again once allowed",
            Self::SandboxEscape => {
                "paths are relative to the sandbox root ([effects] sandbox in config.toml): no `..`, NUL bytes, over-long names or symlinks leading out"
            }
            Self::NotAllowlisted => {
                "add the program, environment variable, method or host to the [effects] allowlists in config.toml"
            }
            Self::EffectLimit => "raise the effector's limit in config.toml ([effects]) or make the request smaller",
            Self::EffectFailed => "see the message for the underlying error; the failure is recorded as EffectFailed",
            Self::EffectConflict => "the target changed since the effect was planned; inspect it and propose again",
            Self::OutcomeUnknown => {
                "the effect may or may not have happened; check the target and record the outcome with `ice effects resolve`"
            }
            Self::ResourceMismatch => {
                "the resource must name the effect's target, e.g. file:notes/a.md for args {\"path\":\"notes/a.md\"}"
            }
            Self::NoEffector => "no effector serves this action; `ice effects effectors` lists what is configured",
            Self::UnknownApproval => "list pending approvals with `ice approvals list`",
            Self::ApprovalClosed => "the approval was already answered or expired; propose again for a new one",
            Self::ApproverNotAuthorized => {
                "approvals are answered by humans listed in [approvals] approvers (or escalate_to once escalated) in \
                 .ice/policies/policy.toml, never by the proposer"
            }
            Self::ResumeNotAllowed => {
                "record what changed with `ice agent reconfigure AGENT --change \"...\"` before `ice agent resume AGENT`"
            }
            Self::NothingToRollBack => {
                "`ice rollback` takes a run id or an EffectCompleted event id; list effects with `ice effects list`"
            }
            Self::SettleWhileLive => {
                "a proposal whose permit can still run is settled by its effect's outcome; revoke the permit or \
                 wait for it to expire, then settle"
            }
            Self::LiteralSecret => {
                "reference the credential by name, e.g. \"Authorization: Bearer ${secret:GITHUB_TOKEN}\", and declare \
                 it under [effects.secrets] in .ice/config.toml; secrets never belong in the ledger"
            }
            Self::UnknownSecret => {
                "declare the secret under [effects.secrets] in .ice/config.toml (from an environment variable or a \
                 0600 file)"
            }
            Self::Unauthenticated => {
                "map your OS user in .ice/config.toml ([[users]] uid, principal, roles) or pass a token with --token \
                 / ICE_TOKEN"
            }
            Self::TokenInvalid => {
                "check the token (it is printed once by `ice token create`); list tokens with `ice token list`"
            }
            Self::TokenRevoked => "the token was revoked; ask an operator for a new one (`ice token create`)",
            Self::TokenExpired => "the token expired; ask an operator for a new one (`ice token create --ttl ...`)",
            Self::RoleRequired => {
                "roles: agent (propose, execute its own permits), approver (answer approvals), operator (grants, \
                 budgets, policy, agents, runs, effects, tokens), auditor (read); ask an operator for a credential \
                 with the role"
            }
            Self::ActAsNotAllowed => {
                "acting for another principal needs act_as for it in your [[users]] entry of .ice/config.toml \
                 (agents only); tokens act only as their own principal"
            }
            Self::NoPinnedKey => {
                "pin the key you expect: keep .ice/keys/ledger.pub readable, list keys in [runtime] trusted_keys, or \
                 pass --trust-key HEX (for a bundle, --trust-bundle-key accepts its own key: consistency only)"
            }
            Self::LedgerCorrupt => {
                "the ledger was modified outside ICE: run `ice verify` to find the first bad seq and restore from a \
                 verified copy"
            }
            Self::WitnessMismatch => {
                "a witness saw this ledger at a later or different point: events it cosigned were deleted or \
                 rewritten (signatures made afterwards, even with the genuine key, cannot hide that); restore the \
                 ledger from a verified copy and investigate who had write access"
            }
            Self::WitnessStateInvalid => {
                "the witness state file is unreadable or its cosignature does not verify: use the file the witness \
                 wrote (keep it off the ledger's host), and pass the witness's public key with --witness-key"
            }
            Self::RetryElsewhere => {
                "run `ice effects retry` from the home named in the message (its journal knows whether the effect \
                 ran); if that home is lost, check the target yourself and record what happened with `ice effects \
                 resolve EFFECT --completed|--failed`"
            }
            Self::RateLimited => {
                "slow down: wait the number of seconds in the Retry-After header; an operator can raise \
                 [server] rate_per_token"
            }
            Self::RequestTooLarge => {
                "send a smaller body (the limit is [server] max_body_bytes); large effect output is fetched by hash, \
                 not sent in a request"
            }
            Self::RequestTimeout => {
                "the request took longer than [server] request_timeout_secs; for approvals pass a shorter `wait` and \
                 poll the proposal, and check whether a write landed before retrying it (GET /v1/events)"
            }
            Self::NoRoute => "see GET /v1/openapi.json for the endpoints and their methods",
            Self::Overloaded => {
                "the server is at [server] max_concurrent_requests; retry after a short pause with backoff"
            }
            Self::MemorySourceNotValidated => {
                "promote only what the ledger validated: name a candidate recorded with `ice memory propose` whose \
                 sources are EffectCompleted events (not rolled back), ApprovalGranted events or a run's \
                 RunTransitioned to COMMITTED (`ice log --kind EffectCompleted` lists them)"
            }
            Self::UnknownMemoryItem => {
                "list memory items with `ice memory list --all` (candidates: `ice log --kind MemoryProposed`)"
            }
            Self::MemoryNotActive => {
                "a memory item's lifecycle ends once it leaves ACTIVE and items are immutable: promote a new item \
                 (with `--supersedes` naming this one) instead"
            }
            Self::CosignatureInvalid => {
                "a witness cosignature in the bundle does not verify with its witness key or names a checkpoint the \
                 bundle does not hold unchanged: the bundle was edited after export; ask for a fresh export"
            }
            Self::NotWitnessed => {
                "the pinned witness cosigned no checkpoint covering these events: export after the witness has \
                 cosigned a checkpoint at or past them (`ice witness`, then `ice export --witness STATE`)"
            }
            Self::AgentRunning => {
                "one `ice agent run` per agent and run: wait for the running one to stop (or stop it), then run again \
                 to resume"
            }
            Self::ToolChanged => {
                "the upstream changed this tool since it was pinned; an operator reviews it with `ice mcp tools` \
                 and accepts it with `ice mcp accept SERVER TOOL HASH`"
            }
            Self::NoCheckpoint => {
                "nothing in this ledger is signed, so nothing proves it was not rewritten: if it is yours and intact \
                 (verify the chain against a copy you trust), sign one with `ice checkpoint`; otherwise restore it \
                 from a verified copy"
            }
            Self::UnsignedTail => {
                "too much of the ledger is covered by no signed checkpoint: run `ice checkpoint` with the ledger's \
                 key; if events were deleted after the last checkpoint, restore the ledger from a verified copy"
            }
            Self::ReservedPrincipal => {
                "runtime, effector and policy principals are ICE's own; no caller can claim them"
            }
            Self::HashMismatch | Self::BrokenLink | Self::SequenceGap | Self::TimeRegression => {
                "the ledger was modified outside ICE; restore it from a verified copy and investigate"
            }
            Self::CheckpointInvalid => {
                "a signed checkpoint does not match the events it covers: the ledger (or the checkpoint) was rewritten; \
                 restore from a verified copy and investigate"
            }
            Self::UntrustedKey => {
                "checkpoints must be signed by the ledger's key (.ice/keys/ledger.pub) or a key in [runtime] \
                 trusted_keys / --trust-key; an unknown key means the history may have been re-signed"
            }
            Self::HeadMismatch => {
                "events after the recorded head are missing (truncation); restore from a verified copy"
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an event was refused by the validation pipeline. Recorded as a `TransitionRejected` event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// Stable code.
    pub code: ErrorCode,
    /// What was wrong with which input.
    pub message: String,
}

impl Rejection {
    /// Builds a rejection with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// The hint for this rejection's code.
    pub fn hint(&self) -> &'static str {
        self.code.hint()
    }
}

#[cfg(test)]
mod code_table {
    use super::ErrorCode;

    /// Exhaustive over the enum: adding a code without listing it in `ALL` does not compile.
    fn position(c: ErrorCode) -> usize {
        match c {
            ErrorCode::MalformedJson => 0,
            ErrorCode::BadPayloadStructure => 1,
            ErrorCode::BadEnvelopeField => 2,
            ErrorCode::UnknownKind => 3,
            ErrorCode::OriginNotAuthorized => 4,
            ErrorCode::TimeWentBackwards => 5,
            ErrorCode::TimeInFuture => 6,
            ErrorCode::UnknownCause => 7,
            ErrorCode::UnknownRun => 8,
            ErrorCode::RunScopeMismatch => 9,
            ErrorCode::IllegalTransition => 10,
            ErrorCode::RunTerminated => 11,
            ErrorCode::ReasonRequired => 12,
            ErrorCode::HeadConflict => 13,
            ErrorCode::StoreUnavailable => 14,
            ErrorCode::SchemaMismatch => 15,
            ErrorCode::AppendOnlyViolation => 16,
            ErrorCode::HashMismatch => 17,
            ErrorCode::BrokenLink => 18,
            ErrorCode::SequenceGap => 19,
            ErrorCode::TimeRegression => 20,
            ErrorCode::HeadMismatch => 21,
            ErrorCode::CheckpointInvalid => 22,
            ErrorCode::UntrustedKey => 23,
            ErrorCode::NotInitialized => 24,
            ErrorCode::AlreadyInitialized => 25,
            ErrorCode::BadConfig => 26,
            ErrorCode::NotFound => 27,
            ErrorCode::BadArgument => 28,
            ErrorCode::KindHasOwnCommand => 29,
            ErrorCode::PolicyParse => 30,
            ErrorCode::PolicyValidation => 31,
            ErrorCode::PolicySchema => 32,
            ErrorCode::PolicyDuplicateId => 33,
            ErrorCode::PolicyCases => 34,
            ErrorCode::PolicyDir => 35,
            ErrorCode::PolicyCatalog => 36,
            ErrorCode::UnknownAction => 37,
            ErrorCode::BadResource => 38,
            ErrorCode::UnknownGrant => 39,
            ErrorCode::GrantNotRevocable => 40,
            ErrorCode::BadBudget => 41,
            ErrorCode::UnknownProposal => 42,
            ErrorCode::NoActivePolicy => 43,
            ErrorCode::NoPermit => 44,
            ErrorCode::PermitUsed => 45,
            ErrorCode::PermitExpired => 46,
            ErrorCode::ArgsMismatch => 47,
            ErrorCode::PermitRevoked => 48,
            ErrorCode::SandboxEscape => 49,
            ErrorCode::NotAllowlisted => 50,
            ErrorCode::EffectLimit => 51,
            ErrorCode::EffectFailed => 52,
            ErrorCode::EffectConflict => 53,
            ErrorCode::OutcomeUnknown => 54,
            ErrorCode::ResourceMismatch => 55,
            ErrorCode::NoEffector => 56,
            ErrorCode::UnknownApproval => 57,
            ErrorCode::ApprovalClosed => 58,
            ErrorCode::ApproverNotAuthorized => 59,
            ErrorCode::ResumeNotAllowed => 60,
            ErrorCode::NothingToRollBack => 61,
            ErrorCode::SettleWhileLive => 62,
            ErrorCode::LiteralSecret => 63,
            ErrorCode::UnknownSecret => 64,
            ErrorCode::Unauthenticated => 65,
            ErrorCode::TokenInvalid => 66,
            ErrorCode::TokenRevoked => 67,
            ErrorCode::TokenExpired => 68,
            ErrorCode::RoleRequired => 69,
            ErrorCode::ActAsNotAllowed => 70,
            ErrorCode::ReservedPrincipal => 71,
            ErrorCode::NoPinnedKey => 72,
            ErrorCode::UnsignedTail => 73,
            ErrorCode::LedgerCorrupt => 74,
            ErrorCode::WitnessMismatch => 75,
            ErrorCode::WitnessStateInvalid => 76,
            ErrorCode::NoCheckpoint => 77,
            ErrorCode::RetryElsewhere => 78,
            ErrorCode::RateLimited => 79,
            ErrorCode::RequestTooLarge => 80,
            ErrorCode::RequestTimeout => 81,
            ErrorCode::NoRoute => 82,
            ErrorCode::Overloaded => 83,
            ErrorCode::ToolChanged => 84,
            ErrorCode::AgentRunning => 85,
            ErrorCode::MemorySourceNotValidated => 86,
            ErrorCode::UnknownMemoryItem => 87,
            ErrorCode::MemoryNotActive => 88,
            ErrorCode::CosignatureInvalid => 89,
            ErrorCode::NotWitnessed => 90,
        }
    }

    #[test]
    fn every_code_is_listed_once_and_means_one_thing() {
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(position(*c), i, "{c:?} is listed at {i}");
        }
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "{} is used by two codes", c.as_str());
            assert!(!c.hint().is_empty(), "{c:?} has no hint");
        }
    }

    /// The table users and scripts depend on: a code's string never changes and never moves to another meaning.
    #[test]
    fn the_code_table_is_pinned() {
        let table: String = ErrorCode::ALL.iter().map(|c| format!("{} {c:?}\n", c.as_str())).collect();
        let pinned = include_str!("../tests/data/error_codes.txt");
        assert_eq!(table, pinned, "error codes changed; a released code may only be added, never renamed or reused");
    }
}
