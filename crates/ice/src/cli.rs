//! The command-line grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod effects;
mod memory;
mod ops;

pub use effects::{AnswerArgs, ApprovalsCommand, EffectsCommand, ExecArgs};
pub use memory::MemoryCommand;
pub use ops::{BenchCommand, DebugCommand, TlogCommand};

/// ICE: a governed execution runtime for AI agents. Inference proposes; execution decides.
#[derive(Debug, Parser)]
#[command(name = "ice", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Directory that holds `.ice/` (default: the nearest one at or above the current directory).
    #[arg(long, global = true, env = "ICE_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Authenticate with this API token (from `ice token create`) instead of as the local OS user mapped in
    /// `.ice/config.toml` [[users]].
    #[arg(long, global = true, env = "ICE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Run the command against a remote `ice serve` (http://HOST:PORT or https://HOST:PORT) with --token, instead
    /// of a local home.
    #[arg(long, global = true, env = "ICE_SERVER", value_name = "URL")]
    pub server: Option<String>,

    /// With an https:// --server: the PEM certificates to trust (the server's own, or its CA); default: the
    /// system's bundle, /etc/ssl/certs/ca-certificates.crt.
    #[arg(long, global = true, env = "ICE_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 ok (propose: allowed) · 1 check failed (verify, policy test, replay, what-if \
changes, effects pending unknown) · 2 usage · 3 refused (recorded as TransitionRejected, or EffectRefused by exec) · \
4 not initialised / not found · 5 store or configuration error · 6 propose: denied or suspended · 7 propose: \
approval required · 8 exec: the effect failed (recorded as EffectFailed) · 9 rollback: incomplete (approvals \
pending, denied or failed compensations)";

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create `.ice/` (ledger, config, runtime key pair) in DIR (default: the current directory).
    Init {
        /// Directory to initialise.
        dir: Option<PathBuf>,
        /// Store URL (default `sqlite:ledger.db`, relative to `.ice/`).
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// Keep the checkpoint signing key out of `.ice/`: `file:PATH` (created if missing), `fd:N`, or
        /// `command:PROGRAM ARGS...` (an external signer, e.g. `ice signer` run as another OS user).
        #[arg(long, value_name = "SPEC")]
        signing_key: Option<String>,
    },
    /// Act as an external checkpoint signer over a key file: `public-key` prints the public key; `sign` reads a hex
    /// message on stdin and prints the signature (for `signing_key = "command:..."`, e.g. through sudo as another
    /// OS user, so that the key is unreadable to the users agents run as).
    Signer {
        /// The key file (hex ed25519 seed).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// `public-key` or `sign`.
        request: String,
    },
    /// Create and move runs through their lifecycle.
    #[command(subcommand)]
    Run(RunCommand),
    /// Submit one event through the validation pipeline (what an agent does).
    Emit(EmitArgs),
    /// Submit a proposal (an intent to act) and print the decision with its reasons.
    Propose(ProposeArgs),
    /// Issue, revoke and list capability grants.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// Validate, test, activate and show Cedar policy sets.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Show, set and settle budgets.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Create, list and revoke API tokens (operators create and revoke; the secret is shown once).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Suspend, reconfigure, resume and list agents.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Execute a permitted effect: the permit from an allowed (or approved) proposal, with exactly its args.
    Exec(ExecArgs),
    /// List effects, find those awaiting reconciliation, retry or resolve them, list permits.
    #[command(subcommand)]
    Effects(EffectsCommand),
    /// List approvals (pending by default).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Approve a pending approval: issues the execution permit, bound to the approved args.
    Approve(AnswerArgs),
    /// Deny a pending approval.
    Deny(AnswerArgs),
    /// Withdraw a proposal you made (with your token): its pending approval closes, or its unused permit is
    /// revoked and its budget reservation released.
    Withdraw {
        /// The proposal id.
        proposal: String,
        /// Why (recorded).
        #[arg(long, default_value = "withdrawn by the proposer")]
        reason: String,
    },
    /// Memory: candidates, governed promotion, search and reads (recorded), lifecycle, and who read what.
    #[command(subcommand)]
    Memory(MemoryCommand),
    /// Undo the completed effects of a run (or one effect) by governed compensations.
    Rollback {
        /// Run id (or unique prefix) or an EffectStarted / EffectCompleted event id.
        target: String,
        /// Act as this principal (the compensations are its proposals).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the ledger.
    Log(LogArgs),
    /// Show one event (by event id) or one run (by run id or unique prefix) in full.
    Inspect {
        /// Event id, run id, or a unique run-id prefix.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Walk the whole hash chain and check every signed checkpoint; on failure print the first bad seq and exit 1.
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Start at the latest signed checkpoint (its signed head anchors the rest): cost bounded by the events
        /// since it.
        #[arg(long, conflicts_with = "bundle")]
        from_checkpoint: bool,
        /// Verify an audit bundle offline (no ledger needed) instead of the ledger.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// Also trust checkpoints signed by this public key (hex); repeatable.
        #[arg(long = "trust-key", value_name = "HEX")]
        trust_keys: Vec<String>,
        /// With --bundle and no --trust-key: accept the key the bundle carries (proves consistency, not origin).
        #[arg(long, requires = "bundle")]
        trust_bundle_key: bool,
        /// Also check against a witness's state file (`ice witness`): the checkpoint it cosigned must still be in
        /// the ledger, unchanged — which a truncated or rewritten ledger, even re-signed, cannot satisfy.
        #[arg(long, value_name = "STATE", conflicts_with = "bundle")]
        witness: Option<PathBuf>,
        /// With --witness: the witness's public key (hex) its cosignature must verify with.
        #[arg(long, value_name = "HEX", requires = "witness")]
        witness_key: Option<String>,
        /// With --bundle: require every exported event to be under a checkpoint this witness (hex key) cosigned;
        /// repeatable.
        #[arg(long = "trust-witness", value_name = "HEX", requires = "bundle")]
        trust_witnesses: Vec<String>,
    },
    /// The ledger as a standard transparency log: RFC 6962 tree heads as C2SP signed checkpoints, consistency
    /// proofs, and checking a checkpoint note against the ledger.
    #[command(subcommand)]
    Tlog(TlogCommand),
    /// Act as a witness: check that the ledger's latest signed checkpoint extends the one this witness cosigned
    /// before (that checkpoint still there unchanged, every event and checkpoint since verifying), then cosign it
    /// into the state file. Keep the state and key off the ledger's host; exit 1 if the ledger contradicts them.
    /// Run a C2SP tlog-witness: an HTTP service answering `POST /add-checkpoint` for the logs given with --log,
    /// recording the latest checkpoint it cosigned per log in its state file.
    TlogWitness {
        /// Its state file (created on first use).
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// Its ed25519 key (hex seed; created, mode 0600, if missing). Default: STATE with extension `.key`.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7031")]
        listen: String,
        /// Its name (the key name of its cosignatures), e.g. witness.example.com/w1.
        #[arg(long)]
        name: String,
        /// A log it cosigns: ORIGIN=HEXKEY (repeatable), e.g. the origin `ice tlog checkpoint` prints.
        #[arg(long = "log", value_name = "ORIGIN=HEXKEY")]
        logs: Vec<String>,
    },
    Witness {
        /// The witness's state file (created on first use).
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// The witness's ed25519 key (hex seed; created, mode 0600, if missing). Default: STATE.key.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The log's key (hex) to expect; required to start witnessing a second log with the same state.
        #[arg(long, value_name = "HEX")]
        log_key: Option<String>,
    },
    /// Rebuild all derived state from the ledger alone, re-decide every proposal, check every checkpoint's state
    /// root, and prove the result equal to the live state (exit 1 on any divergence).
    Replay {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate recorded history under a candidate policy set and report which decisions would change (exit 1 if
    /// any would: use it to gate policy changes in CI).
    WhatIf {
        /// The candidate policy directory (*.cedar, schema.cedarschema, policy.toml).
        #[arg(long, value_name = "DIR")]
        policies: PathBuf,
        /// Only proposals since: a seq is not accepted here; an RFC 3339 time or an age like 7d.
        #[arg(long)]
        since: Option<String>,
        /// Only proposals in this run.
        #[arg(long)]
        run: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Append a signed checkpoint now (normally taken every N events / T seconds).
    Checkpoint,
    /// Write a portable, offline-verifiable audit bundle (events, checkpoints, Merkle proofs, public key).
    Export {
        /// Export one run's events.
        #[arg(long, conflicts_with = "range", required_unless_present = "range")]
        run: Option<String>,
        /// Export a seq range A..B (inclusive).
        #[arg(long, value_name = "A..B")]
        range: Option<String>,
        /// Output file.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: PathBuf,
        /// Carry the cosignature from this witness's state file (`ice witness`), with the checkpoints that chain
        /// the exported events to the cosigned one.
        #[arg(long, value_name = "STATE")]
        witness: Option<PathBuf>,
        /// With --witness: the witness's public key (hex) its cosignature must verify with.
        #[arg(long, value_name = "HEX", requires = "witness")]
        witness_key: Option<String>,
    },
    /// Print the runtime's public key (hex), which verifies its checkpoint signatures.
    Key {
        /// Print the key this home trusts for the ledger (keys/ledger.pub) instead of its own.
        #[arg(long)]
        ledger: bool,
    },
    /// List the event kinds of the taxonomy, with their family and who may emit them.
    Kinds,
    /// Serve the HTTP + WebSocket API (`/v1`, `/metrics`, `/healthz`) over this home's ledger until SIGTERM/SIGINT.
    Serve {
        /// Address to listen on (default `[server] listen`, `127.0.0.1:7030`).
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
        /// Log as JSON lines (default `[server] log_format`).
        #[arg(long)]
        log_json: bool,
        /// Print the OpenAPI document and exit (no home needed).
        #[arg(long)]
        openapi: bool,
    },
    /// The MCP gateway: serve the tools of the MCP servers in `.ice/mcp.toml`, every call governed.
    #[command(subcommand)]
    Mcp(McpCommand),
    /// Run a scripted end-to-end scenario on a temporary ledger and print its audit trail.
    Demo {
        /// Keep the demo ledger in this directory instead of a temporary one.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Copy a whole ledger to another (empty) store and prove the copy: same events, same hashes, verified.
    Migrate {
        /// Source store URL (default: the configured store).
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// Destination store URL (`sqlite:PATH` or `postgres://...`); must be empty.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Benchmarks (print ratios against a baseline measured in the same run).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Internal tools for tests (load generation for crash tests).
    #[command(subcommand, hide = true)]
    Debug(DebugCommand),
}

/// `ice run ...`
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Create a run (state CREATED); prints its id.
    Create {
        /// Human-readable label.
        #[arg(long)]
        label: Option<String>,
        /// Act as this principal (default: runtime.default_actor from config).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move a run to its next state on the happy path, or to --to.
    Advance {
        /// Run id or unique prefix.
        run: String,
        /// Target state (CREATED, PROVISIONED, CONTEXT_READY, EXECUTING, VALIDATING, COMMITTED, ABORTED, TERMINATED).
        #[arg(long)]
        to: Option<String>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// Act as this principal.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Finish an EXECUTING run: VALIDATING, then COMMITTED if every effect completed, else ABORTED.
    Finish {
        /// Run id or unique prefix.
        run: String,
        /// Act as this principal.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// End a run from any non-terminal state.
    Terminate {
        /// Run id or unique prefix.
        run: String,
        /// Why (required unless the run is COMMITTED or ABORTED).
        #[arg(long)]
        reason: Option<String>,
        /// Act as this principal.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List runs and their states.
    List {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// `ice emit`
#[derive(Debug, Args)]
pub struct EmitArgs {
    /// Event kind (see `ice kinds`).
    #[arg(long)]
    pub kind: String,
    /// Act for this agent (e.g. agent:planner; needs act_as for it in your [[users]] entry). Default: yourself.
    #[arg(long = "as", visible_alias = "origin", value_name = "PRINCIPAL")]
    pub origin: Option<String>,
    /// Run id (or unique prefix) for run-scoped kinds.
    #[arg(long)]
    pub run: Option<String>,
    /// Payload: a JSON object, or @FILE to read it from a file (- for stdin).
    #[arg(long, default_value = "{}")]
    pub payload: String,
    /// Causal parent event id (repeatable).
    #[arg(long = "cause", value_name = "EVENT_ID")]
    pub causes: Vec<String>,
    /// Declared RFC 3339 time (default: the runtime clock).
    #[arg(long)]
    pub time: Option<String>,
    /// Print the sealed event as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ice log`
#[derive(Debug, Args)]
pub struct LogArgs {
    /// JSON lines (one envelope per line) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Only events of this run (id or unique prefix).
    #[arg(long)]
    pub run: Option<String>,
    /// Only events of this kind.
    #[arg(long)]
    pub kind: Option<String>,
    /// From this seq (a number), RFC 3339 time, or age (30s, 10m, 2h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// At most this many events (the most recent ones when not following).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Keep printing new events as they are appended (Ctrl-C to stop).
    #[arg(long, short)]
    pub follow: bool,
}

/// `ice propose`
#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The proposing principal (usually agent:NAME).
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub actor: Option<String>,
    /// Run id (or unique prefix/suffix).
    #[arg(long)]
    pub run: Option<String>,
    /// Action name from the catalog (see `ice policy show`).
    #[arg(long)]
    pub action: Option<String>,
    /// Resource, e.g. file:/sandbox/report.md.
    #[arg(long)]
    pub resource: Option<String>,
    /// Args: a JSON object, or @FILE.
    #[arg(long)]
    pub args: Option<String>,
    /// What it is for.
    #[arg(long)]
    pub purpose: Option<String>,
    /// Cost estimate, e.g. calls=1,tokens=500.
    #[arg(long)]
    pub cost: Option<String>,
    /// Declared nondeterminism: none, low, high.
    #[arg(long)]
    pub nondeterminism: Option<String>,
    /// A JSON proposal file (fields: actor, run, action, resource, args, purpose, cost_estimate,
    /// nondeterminism); flags override its fields.
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ice token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue a token; prints its secret once (only a keyed hash is recorded).
    Create {
        /// The principal it authenticates as (agent:NAME or human:NAME).
        #[arg(long)]
        principal: String,
        /// Role (repeatable, or comma-separated): agent, approver, operator, auditor.
        #[arg(long = "role", value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Time to live: 30s, 10m, 2h, 30d (default: no expiry).
        #[arg(long)]
        ttl: Option<String>,
        /// A label shown in listings.
        #[arg(long)]
        label: Option<String>,
        /// Print JSON (includes the secret).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: every later use is refused.
    Revoke {
        /// Token id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List tokens (live ones; --all for revoked and expired too). Secrets are never shown.
    List {
        /// Include revoked and expired tokens.
        #[arg(long)]
        all: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// `ice grant ...`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Issue a grant.
    Issue {
        /// Who receives it (e.g. agent:planner).
        #[arg(long)]
        to: String,
        /// Action or pattern (repeatable, or comma-separated): fs.write, fs.*, *.
        #[arg(long = "action", value_delimiter = ',', required = true)]
        actions: Vec<String>,
        /// Resource prefix, or a pattern with * (e.g. file:/sandbox/ or file:/sandbox/*.md).
        #[arg(long)]
        resource: String,
        /// Limit the grant to one run.
        #[arg(long)]
        run: Option<String>,
        /// Time to live: 30s, 10m, 2h, 7d.
        #[arg(long)]
        ttl: Option<String>,
        /// Most allowed decisions that may use it.
        #[arg(long)]
        max_uses: Option<u64>,
        /// Make the grant irrevocable.
        #[arg(long)]
        irrevocable: bool,
        /// Issuing authority (a human or the runtime).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a grant (effective for every later decision).
    Revoke {
        /// Grant id.
        id: String,
        /// Why.
        #[arg(long, default_value = "revoked by operator")]
        reason: String,
        /// Revoking authority.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// List grants (live ones; --all for every grant).
    List {
        /// Include expired, used-up and revoked grants.
        #[arg(long)]
        all: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// `ice policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate a policy directory against its schema and catalog (writes nothing).
    Validate {
        /// Policy directory (default .ice/policies).
        policies: Option<PathBuf>,
    },
    /// Run table-driven policy test cases (request → expected outcome) against a policy directory.
    Test {
        /// Case file (TOML).
        cases: PathBuf,
        /// Policy directory (default .ice/policies).
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Validate and activate a policy directory (recorded as PolicyActivated).
    Activate {
        /// Policy directory (default .ice/policies).
        policies: Option<PathBuf>,
        /// Activating authority.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// Show the active policy set: hash, policies, actions and their classification.
    Show {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ice budget ...`
#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Show every budget with its limit, spend and open reservations.
    Show {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Set a budget limit.
    Set {
        /// run:RUN_ID, agent:KIND:NAME or global.
        #[arg(long)]
        scope: String,
        /// wall_ms, tokens, money_micros, calls or bytes.
        #[arg(long)]
        dimension: String,
        /// The limit.
        #[arg(long)]
        limit: u64,
        /// total (default) or day.
        #[arg(long, default_value = "total")]
        period: String,
        /// Setting authority.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// Settle a proposal's reservation with its actual cost (until effectors report outcomes themselves).
    Settle {
        /// Proposal id.
        proposal: String,
        /// Actual cost, e.g. calls=1,tokens=120.
        #[arg(long, default_value = "")]
        actual: String,
        /// Settling authority.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
}

/// `ice agent ...`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Suspend an agent: every later proposal from it is denied.
    Suspend {
        /// The agent (agent:NAME).
        agent: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Suspending authority.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// Record what changed about a suspended agent (required before it can be resumed).
    Reconfigure {
        /// The agent (agent:NAME).
        agent: String,
        /// What changed (policy, prompt, tools, model...).
        #[arg(long)]
        change: String,
        /// Who reconfigured it.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// Resume a suspended agent that has been reconfigured.
    Resume {
        /// The agent (agent:NAME).
        agent: String,
        /// Why it may act again.
        #[arg(long)]
        reason: String,
        /// Resuming authority (a human).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// List suspended agents.
    List {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Run an agent as the principal of ICE_TOKEN: ask its model (each call a governed `model.call`), propose
    /// what the model asks for, execute what is permitted, feed the outcomes back; run again to resume.
    Run {
        /// The agent's configuration (TOML; see `ice_agent::config`).
        #[arg(long)]
        config: std::path::PathBuf,
        /// The run it works in (an operator creates it and advances it to EXECUTING).
        #[arg(long)]
        run: String,
        /// Print how it ended as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `ice mcp ...`.
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Serve the upstream tools to one MCP client on stdin/stdout, every call a governed proposal made as the
    /// principal of --token / ICE_TOKEN.
    Serve {
        /// The run every call is proposed in (an operator creates it: `ice run create`, advanced to EXECUTING).
        #[arg(long, env = "ICE_RUN")]
        run: String,
    },
    /// List the upstream tools with their pins: pinned (served), new (pinned when first served) or changed
    /// (withheld until accepted), with the hashes to review.
    Tools {
        /// Print JSON lines with the full definitions.
        #[arg(long)]
        json: bool,
    },
    /// Declare the upstream tools not yet declared: catalog entries (classified as given; default the cautious
    /// `irreversible` / `high`, which the default policy sends to a human) and Cedar schema actions typed from the
    /// tools' input schemas. Review `.ice/policies`, then `ice policy activate`.
    Declare {
        /// Classification access of the declared actions: read, write or irreversible.
        #[arg(long, default_value = "irreversible")]
        access: String,
        /// Classification risk: low, medium, high or critical.
        #[arg(long, default_value = "high")]
        risk: String,
    },
    /// Pin a tool's current definition (operator): the hash is the one `ice mcp tools` showed, so a definition
    /// that changed again since is refused.
    Accept {
        /// The server's name in mcp.toml.
        server: String,
        /// The tool's upstream name.
        tool: String,
        /// The definition hash reviewed.
        hash: String,
    },
}
