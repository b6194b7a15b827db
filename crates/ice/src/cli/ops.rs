//! The grammar of the operational commands: `ice bench`, the hidden `ice debug`, and `ice tlog`.

use std::path::PathBuf;

use clap::Subcommand;

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
    /// Durable governed decisions/s (propose → decide → commit, acknowledged after fsync) from concurrent agents,
    /// with p50/p99 latency, against the in-memory decide rate measured in the same run.
    Propose {
        /// Concurrency levels to measure: one agent (own grant, one thread) per unit.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        agents: Vec<usize>,
        /// Seconds to measure each level.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// SQLite durability: full (fsync every commit, the default users run), normal or off (CPU cost alone).
        #[arg(long, default_value = "full")]
        synchronous: String,
        /// Instead: run this many `ice` processes on one ledger at each level (e.g. 1,2,4), each with `--agents`
        /// agents (one count).
        #[arg(long, value_delimiter = ',')]
        instances: Vec<usize>,
        /// With --instances: the ledger (e.g. a scratch PostgreSQL database's URL; default: a SQLite file).
        #[arg(long, value_name = "URL", requires = "instances")]
        store: Option<String>,
        /// Where checkpoints are signed and snapshots written: `background` (a housekeeping thread, as `ice serve`
        /// runs) or `inline` (in the committing caller's thread, as a one-shot CLI command does).
        #[arg(long, default_value = "background", value_parser = ["background", "inline"])]
        checkpoints: String,
    },
    /// Propose → decision over loopback HTTP (the real server, bearer tokens, keep-alive) at fixed offered rates
    /// and flat out, with p50/p99, against in-process `propose` of the same build in the same run.
    Serve {
        /// Offered rates to measure, requests/s.
        #[arg(long, value_delimiter = ',', default_value = "500,1000,2000")]
        rates: Vec<u32>,
        /// Seconds per step.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Client connections (one agent and token each).
        #[arg(long, default_value_t = 32)]
        clients: usize,
    },
    /// What the MCP gateway adds to one tools/call: the `echo` tool of @modelcontextprotocol/server-everything
    /// called directly and through `ice mcp serve`, p50/p99 (needs node and the npm package).
    Mcp {
        /// Sequential calls measured on each path.
        #[arg(long, default_value_t = 500)]
        calls: usize,
        /// The server's dist/index.js (default: tests-support/mcp, where scripts/test installs it).
        #[arg(long, value_name = "PATH")]
        server_everything: Option<std::path::PathBuf>,
    },
    /// Memory: durable promotions/s through the governed path against durable decisions/s, and search p50/p99 of
    /// the index over N items against brute-force cosine over the same vectors, in the same run.
    Memory {
        /// Index sizes to measure.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        items: Vec<usize>,
        /// Promotions measured (each: candidate, decision, executed permit).
        #[arg(long, default_value_t = 300)]
        promotions: usize,
        /// Queries per index size.
        #[arg(long, default_value_t = 200)]
        queries: usize,
    },
    /// (internal) One instance of `ice bench propose --instances`.
    #[command(hide = true)]
    ProposeWorker {
        /// The run the proposals name.
        #[arg(long)]
        run: String,
        /// First agent number (`agent:bench-N`).
        #[arg(long)]
        first: usize,
        /// Agents (one thread each).
        #[arg(long)]
        agents: usize,
        /// Seconds to propose for.
        #[arg(long)]
        seconds: f64,
    },
    /// Memory and command latency as the ledger grows: RSS, and `ice run list` / `approvals list` / `budget show`
    /// / `log --limit 20` as fresh processes, at evenly spaced points up to `--events`.
    History {
        /// Events to grow the ledger to (decided proposals, 5 events each).
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Measuring points, evenly spaced.
        #[arg(long, default_value_t = 4)]
        points: u64,
        /// Concurrent proposing agents.
        #[arg(long, default_value_t = 16)]
        agents: usize,
    },
    /// PostgreSQL appends/s with 1, 2 and 4 `ice` processes on one ledger vs raw batched INSERTs of the same rows.
    Postgres {
        /// The ledger database (it is appended to; use a scratch database).
        #[arg(long, value_name = "URL")]
        url: String,
        /// Events per measurement (split across the instances).
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Appending threads per instance.
        #[arg(long, default_value_t = 16)]
        threads: usize,
    },
    /// (internal) One instance of `ice bench postgres`.
    #[command(hide = true)]
    PostgresWorker {
        /// The ledger database.
        #[arg(long)]
        url: String,
        /// Events to append.
        #[arg(long)]
        events: usize,
        /// Appending threads.
        #[arg(long)]
        threads: usize,
    },
    /// Chain verification throughput vs raw blake3 over the same envelope bytes; `ice verify` end to end.
    Verify {
        /// Events in the generated ledger.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
    },
    /// Replay throughput (read + fold + re-decide + checkpoint state roots) on a generated ledger.
    Replay {
        /// Events in the generated ledger.
        #[arg(long, default_value_t = 200_000)]
        events: usize,
        /// Decided proposals among them.
        #[arg(long, default_value_t = 2_000)]
        proposals: usize,
    },
    /// In-process decide (grant + Cedar + budget, no fsync) vs bare Cedar is_authorized on the same request.
    Decide {
        /// Decisions to time.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
        /// Size of the policy set: the 4 default policies plus generated ones (DESIGN.md's Cedar figure used ~20).
        #[arg(long, default_value_t = 20)]
        policies: usize,
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
    /// Submit the same proposal many times from several threads; print each verdict on stdout.
    ProposeLoad {
        /// Proposals in total.
        #[arg(long)]
        count: usize,
        /// Proposing threads.
        #[arg(long, default_value_t = 8)]
        threads: usize,
        /// Proposing principal.
        #[arg(long = "as")]
        actor: String,
        /// Run id.
        #[arg(long)]
        run: String,
        /// Action.
        #[arg(long)]
        action: String,
        /// Resource.
        #[arg(long)]
        resource: String,
        /// Args JSON.
        #[arg(long)]
        args: String,
        /// Cost estimate.
        #[arg(long, default_value = "calls=1")]
        cost: String,
    },
}

/// `ice tlog ...`.
#[derive(Debug, Subcommand)]
pub enum TlogCommand {
    /// Print a C2SP tlog-checkpoint (signed note) for the RFC 6962 tree over the event hashes 1..=SIZE, signed with
    /// the ledger's key (default size: what the latest signed ICE checkpoint covers).
    Checkpoint {
        /// Tree size (number of events from seq 1).
        #[arg(long)]
        size: Option<u64>,
        /// The origin line (default `ice-ledger/<ledger key>`).
        #[arg(long)]
        origin: Option<String>,
    },
    /// Print the RFC 6962 consistency proof from tree size FROM to tree size TO (base64, one hash per line, after
    /// the two roots), checked before it is printed.
    Consistency {
        /// The older tree size.
        #[arg(long)]
        from: u64,
        /// The newer tree size (default: the ledger's head).
        #[arg(long)]
        to: Option<u64>,
        /// Print instead the body of a C2SP tlog-witness `add-checkpoint` request: `old FROM`, the proof, a blank
        /// line and the signed checkpoint of size TO (operator: it signs with the ledger's key).
        #[arg(long)]
        witness_request: bool,
    },
    /// Check a signed checkpoint note: its signature by KEY, and its root against this ledger's events (exit 1 if
    /// either fails).
    Verify {
        /// The note file (`-` for stdin).
        note: PathBuf,
        /// The signer's public key (hex); default: this home's pinned ledger key.
        #[arg(long, value_name = "HEX")]
        key: Option<String>,
    },
    /// Submit the latest signed checkpoint to a C2SP tlog-witness (`add-checkpoint`, with a consistency proof from
    /// the size the witness holds) and print the checkpoint note with the witness's cosignature (operator; exit 1
    /// if the witness refuses it or, with --witness-key, its cosignature does not verify).
    Witness {
        /// The witness's submission prefix, e.g. http://127.0.0.1:7031.
        #[arg(long)]
        url: String,
        /// The witness's public key (hex): check its cosignature.
        #[arg(long, value_name = "HEX", requires = "witness_name")]
        witness_key: Option<String>,
        /// The witness's name (its cosignature lines' key name).
        #[arg(long)]
        witness_name: Option<String>,
    },
}
