//! `ice bench propose --instances 1,2,4 [--store URL]`: durable governed decisions/s when 1, 2, 4 … `ice` processes
//! decide on one ledger at once (each its own runtime, pipeline and store connection; all share one home, so one
//! policy, one budget and one key), against the in-memory decide rate of the parent in the same run. On PostgreSQL
//! this is how users grow past one machine; on SQLite it is several processes on one file.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use ice_runtime::{IceHome, Presented};

use crate::bench::{Worker, bench_err};
use crate::bench_cpu::{CpuUse, CpuWindow};
use crate::bench_propose::{Fixture, in_memory_rate, level};
use crate::exit;
use crate::render::CliError;

/// What one instance reports: decisions/s, p50 and p99 (µs), failures, conflicts with other writers and decisions
/// its pipeline redid.
struct Report {
    rate: f64,
    p50: f64,
    p99: f64,
    failed: u64,
    conflicts: u64,
    redone: u64,
}

impl Report {
    fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_whitespace().map(str::parse::<f64>);
        let mut next = || f.next().and_then(Result::ok);
        Some(Self {
            rate: next()?,
            p50: next()?,
            p99: next()?,
            failed: next()? as u64,
            conflicts: next()? as u64,
            redone: next()? as u64,
        })
    }
}

/// Runs the benchmark: `agents` agents per instance, `seconds` per level.
pub fn run(
    store: Option<&str>,
    instances: &[usize],
    agents: usize,
    seconds: f64,
    synchronous: &str,
) -> Result<u8, CliError> {
    if instances.is_empty() || instances.contains(&0) || agents == 0 || !seconds.is_finite() || seconds <= 0.0 {
        return Err(CliError::Coded(
            ice_core::ErrorCode::BadArgument,
            "--instances takes positive counts (e.g. 1,2,4), --agents one positive count, --seconds a positive number"
                .into(),
        ));
    }
    let most = instances.iter().copied().max().unwrap_or(1) * agents;
    let bench = Fixture::new_on(store, synchronous, most)?;
    let in_memory = in_memory_rate(&bench, seconds)?;
    println!(
        "ice bench propose: {agents} agents per instance, each its own `ice` process on {} ({}), {seconds} s per level",
        bench.rt.store().describe(),
        if store.is_some() { "shared ledger" } else { "one SQLite file" }
    );
    println!("in-memory decide (baseline, 1 thread, nothing recorded): {in_memory:.0} decisions/s");
    let exe = std::env::current_exe().map_err(bench_err)?;
    for &n in instances {
        let mut workers = Vec::new();
        for k in 0..n {
            let mut cmd = Command::new(&exe);
            cmd.current_dir(bench.dir.path())
                .args(["bench", "propose-worker", "--run", &bench.run.to_string()])
                .args(["--first", &(k * agents).to_string(), "--agents", &agents.to_string()])
                .args(["--seconds", &seconds.to_string()]);
            workers.push(Worker::start(cmd)?);
        }
        let cpu = CpuWindow::start();
        for w in &mut workers {
            w.go()?;
        }
        let mut reports = Vec::new();
        for w in workers {
            let line = w.finish()?;
            reports.push(Report::parse(&line).ok_or_else(|| bench_err(format!("an instance reported `{line}`")))?);
        }
        // The instances are other processes: only the machine-wide figure says anything here.
        let used = CpuUse { process: None, ..cpu.finish() };
        let total: f64 = reports.iter().map(|r| r.rate).sum();
        let each: Vec<String> = reports.iter().map(|r| format!("{:.0}", r.rate)).collect();
        let p50 = reports.iter().map(|r| r.p50).fold(0.0, f64::max);
        let p99 = reports.iter().map(|r| r.p99).fold(0.0, f64::max);
        let (failed, conflicts, redone) =
            reports.iter().fold((0, 0, 0), |(f, c, d), r| (f + r.failed, c + r.conflicts, d + r.redone));
        println!(
            "{n} instance(s): {total:>7.0} durable decisions/s (per instance {})  worst p50 {:.2} ms  p99 {:.2} ms  \
             {conflicts} conflicts, {redone} decisions redone{}  RATIO durable / in-memory {:.2}x",
            each.join(" + "),
            p50 / 1000.0,
            p99 / 1000.0,
            if failed > 0 { format!(", {failed} failed") } else { String::new() },
            total / in_memory
        );
        if let Some(line) = used.describe(0) {
            println!("      {line}");
        }
        std::io::stdout().flush().ok();
    }
    Ok(exit::OK)
}

/// One instance: opens the home's runtime, authenticates agents `first..first+agents`, says `ready`, waits for
/// `go` on stdin, proposes for `seconds` and prints its [`Report`] as one `done …` line.
pub fn worker(dir: &Path, run: &str, first: usize, agents: usize, seconds: f64) -> Result<u8, CliError> {
    let home = IceHome::discover(Some(dir), dir)?;
    let rt = home.open_runtime()?;
    let run: ice_core::RunId = run
        .parse()
        .map_err(|_| CliError::Coded(ice_core::ErrorCode::BadArgument, format!("`{run}` is not a run id")))?;
    let names: Vec<String> = (first..first + agents).map(|i| format!("agent:bench-{i}")).collect();
    let callers =
        names.iter().map(|n| rt.authenticate(&Presented::Local { act_as: Some(n) })).collect::<Result<Vec<_>, _>>()?;
    println!("ready");
    std::io::stdout().flush().map_err(bench_err)?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).map_err(bench_err)?;
    let (rate, p50, p99, failed) = level(&rt, &callers, seconds, &|i| Fixture::input_in(run, i ^ first as u64))?;
    let stats = rt.pipeline_stats();
    println!("done {rate:.1} {p50:.0} {p99:.0} {failed} {} {}", stats.conflicts, stats.retried);
    Ok(exit::OK)
}
