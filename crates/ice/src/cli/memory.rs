//! `ice memory ...`: candidates, governed promotion, reads, lifecycle and the audit of reads.

use clap::Subcommand;

/// `ice memory ...`
#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Record a memory candidate (an agent's note; only `memory promote` makes it memory).
    Propose {
        /// Run id (or unique prefix/suffix).
        #[arg(long)]
        run: String,
        /// Namespace, e.g. team/deploys (a-z 0-9 . _ - /).
        #[arg(long)]
        namespace: String,
        /// The fact, in words.
        #[arg(long)]
        text: String,
        /// A structured field, KEY=VALUE (repeatable; VALUE is JSON if it parses, else a string).
        #[arg(long = "field", value_name = "KEY=VALUE")]
        fields: Vec<String>,
        /// An event it derives from (repeatable): a completed effect, a granted approval, a run's COMMITTED.
        #[arg(long = "source", value_name = "EVENT_ID", required = true)]
        sources: Vec<String>,
        /// How long it stays ACTIVE once promoted, in seconds.
        #[arg(long, value_name = "SECS")]
        ttl: Option<u64>,
        /// Act as this principal (usually agent:NAME).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Promote a candidate: proposes `memory.promote` (decided by grant, policy, budget and approval) and, once
    /// permitted, executes the permit. Run it again after an approval to execute the approved permit.
    Promote {
        /// The candidate id (a MemoryProposed event id).
        candidate: String,
        /// The ACTIVE item it replaces (same namespace).
        #[arg(long, value_name = "ITEM")]
        supersedes: Option<String>,
        /// Run to propose in (default: the candidate's run; required with --server).
        #[arg(long)]
        run: Option<String>,
        /// The candidate's namespace (default: read from the candidate; required with --server).
        #[arg(long)]
        namespace: Option<String>,
        /// Act as this principal.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List memory items (operator, auditor, approver).
    List {
        /// Only this namespace and those below it.
        #[arg(long)]
        namespace: Option<String>,
        /// Only this status: active, expired, deprecated, superseded, invalidated.
        #[arg(long)]
        status: Option<String>,
        /// Every item ever promoted (read from the ledger), not only the live ones.
        #[arg(long)]
        all: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one item with its provenance (recorded as a read).
    Show {
        /// Item id.
        item: String,
        /// The reader's run (the read is recorded in it).
        #[arg(long)]
        run: Option<String>,
        /// Act as this principal.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search ACTIVE memory you may read (recorded as a read, with the items returned).
    Search {
        /// What to look for.
        query: String,
        /// Only this namespace and those below it.
        #[arg(long)]
        namespace: Option<String>,
        /// Results wanted (1-50).
        #[arg(short, long, default_value_t = 5)]
        k: usize,
        /// The reader's run (the read is recorded in it).
        #[arg(long)]
        run: Option<String>,
        /// Act as this principal.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take an ACTIVE item out of use (operator).
    Deprecate {
        /// Item id.
        item: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Mark an ACTIVE item replaced by a newer ACTIVE item of its namespace (operator).
    Supersede {
        /// Item id.
        item: String,
        /// The newer item.
        #[arg(long, value_name = "ITEM")]
        by: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Mark an ACTIVE item wrong (operator).
    Invalidate {
        /// Item id.
        item: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
    },
    /// Every recorded read of an item and the reader's next proposal (auditor, operator).
    Reads {
        /// Item id.
        item: String,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}
