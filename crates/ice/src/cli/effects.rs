//! The grammar of the effect-boundary commands: `ice exec`, `ice effects`, `ice approvals`, `ice approve|deny`.

use clap::{Args, Subcommand};

/// `ice exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The permit id (printed by `ice propose` on allow, or by `ice approve`).
    pub permit: String,
    /// Args JSON (or @FILE, @- for stdin); default: exactly the proposal's args.
    #[arg(long)]
    pub args: Option<String>,
    /// Who executes (must be the permit's holder, the proposer).
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub actor: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ice effects ...`
#[derive(Debug, Subcommand)]
pub enum EffectsCommand {
    /// List effects with their status.
    List {
        /// Only this run.
        #[arg(long)]
        run: Option<String>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Reconcile, then list effects still running or whose outcome is unknown (exit 1 if any is unknown).
    Pending {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Retry an effect whose outcome is unknown (idempotent: it is never applied twice).
    Retry {
        /// The EffectStarted event id.
        effect: String,
        /// Who retries.
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// Record by hand the outcome of an effect whose outcome is unknown.
    Resolve {
        /// The EffectStarted event id.
        effect: String,
        /// The effect happened.
        #[arg(long, conflicts_with = "failed", required_unless_present = "failed")]
        completed: bool,
        /// The effect did not happen.
        #[arg(long)]
        failed: bool,
        /// What was checked.
        #[arg(long)]
        note: String,
        /// Who resolves (a human).
        #[arg(long = "as", value_name = "PRINCIPAL")]
        actor: Option<String>,
    },
    /// List execution permits.
    Permits {
        /// Include used, revoked and expired permits.
        #[arg(long)]
        all: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// List the effectors and the actions they serve.
    Effectors,
}

/// `ice approvals ...`
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals: pending ones (after expiring overdue ones), or all with --all.
    List {
        /// Include answered and expired approvals.
        #[arg(long)]
        all: bool,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
}

/// `ice approve` / `ice deny`.
#[derive(Debug, Args)]
pub struct AnswerArgs {
    /// The approval id.
    pub approval: String,
    /// A comment recorded with the answer.
    #[arg(long)]
    pub comment: Option<String>,
    /// The args hash you reviewed; the answer is refused if the approval is for other args.
    #[arg(long, value_name = "HASH")]
    pub args_hash: Option<String>,
    /// Who answers (a human listed as approver).
    #[arg(long = "as", value_name = "PRINCIPAL")]
    pub actor: Option<String>,
}
