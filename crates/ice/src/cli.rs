//! The command-line grammar (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// ICE: a governed execution runtime for AI agents. Inference proposes; execution decides.
#[derive(Debug, Parser)]
#[command(name = "ice", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// Directory that holds `.ice/` (default: the nearest one at or above the current directory).
    #[arg(long, global = true, env = "ICE_DIR", value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 ok · 1 check failed (verify) · 2 usage · 3 refused (recorded as \
TransitionRejected) · 4 not initialised / not found · 5 store or configuration error";

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
    },
    /// Create and move runs through their lifecycle.
    #[command(subcommand)]
    Run(RunCommand),
    /// Submit one event through the validation pipeline (what an agent does).
    Emit(EmitArgs),
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
    /// Walk the whole hash chain; on failure print the first bad seq and exit 1.
    Verify {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the event kinds of the taxonomy, with their family and who may emit them.
    Kinds,
    /// Run a scripted end-to-end scenario on a temporary ledger and print its audit trail.
    Demo {
        /// Keep the demo ledger in this directory instead of a temporary one.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
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
    /// Emitting principal, KIND:NAME (e.g. agent:planner).
    #[arg(long)]
    pub origin: String,
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

/// `ice bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Durable appends/s with group commit vs raw batched SQLite inserts of the same rows; append latency.
    Append {
        /// Events per measurement.
        #[arg(long, default_value_t = 50_000)]
        events: usize,
        /// Concurrent appending threads for the group-commit measurement.
        #[arg(long, default_value_t = 64)]
        threads: usize,
        /// Sequential single appends for the latency measurement.
        #[arg(long, default_value_t = 2_000)]
        latency_samples: usize,
    },
}

/// `ice debug ...` (hidden)
#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Append agent events from several threads through the runtime; print each acknowledged event id on stdout.
    AppendLoad {
        /// Events to append in total.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Appending threads.
        #[arg(long, default_value_t = 4)]
        threads: usize,
    },
}
