//! `ice`: the command-line entry point. Every command goes through `ice-runtime`; this crate only parses
//! arguments, renders output and maps errors to exit codes.

mod agent_run;
mod authority_cmds;
mod bench;
mod bench_cpu;
mod bench_history;
mod bench_instances;
mod bench_mcp;
mod bench_memory;
#[cfg(feature = "postgres")]
mod bench_pg;
mod bench_proof;
mod bench_propose;
mod bench_serve;
mod bundle_cmds;
mod cli;
mod commands;
mod demo;
mod demo_agent;
mod effect_cmds;
mod mcp;
mod memory_cmds;
mod migrate;
mod proof_cmds;
mod remote;
mod render;
mod serve;
mod tlog_cmds;
mod tlog_witness;
mod witness_cmds;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

/// Exit codes (documented in README.md, section Exit codes).
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A check failed: `ice verify` found a broken chain.
    pub const CHECK_FAILED: u8 = 1;
    /// The command line itself is wrong (clap's usage errors).
    pub const USAGE: u8 = 2;
    /// The input was refused by validation or the run lifecycle (recorded as TransitionRejected).
    pub const REFUSED: u8 = 3;
    /// Not initialised, or the named event/run does not exist.
    pub const NOT_FOUND: u8 = 4;
    /// The store or configuration failed (I/O, schema, bad config).
    pub const STORE: u8 = 5;
    /// `ice propose`: the proposal was recorded and denied (or the agent suspended).
    pub const DENIED: u8 = 6;
    /// `ice propose`: the proposal was recorded and needs a human approval.
    pub const APPROVAL_REQUIRED: u8 = 7;
    /// `ice exec`: the effect started and failed (recorded as `EffectFailed`).
    pub const EFFECT_FAILED: u8 = 8;
    /// `ice rollback`: some compensations await approval, were denied or failed.
    pub const INCOMPLETE: u8 = 9;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            render::print_error(&e);
            ExitCode::from(e.exit_code())
        }
    };
    // For `ice bench history`, which measures commands as fresh processes.
    if std::env::var_os(bench_history::REPORT_PEAK_RSS).is_some() {
        eprintln!("peak_rss_kib {}", bench_history::proc_status_kib("VmHWM:"));
    }
    code
}
