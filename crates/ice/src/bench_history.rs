//! `ice bench history`: how memory and command latency grow with the ledger. Agents work the way a long-lived
//! deployment does: each takes a run to EXECUTING, records `PER_RUN` allowed proposals in it (5 events each, every
//! one leaving a permit and a reservation), then terminates it (which revokes what was not used and releases its
//! reservations) and starts the next. At each measuring point it reports this process's resident memory and runs
//! `ice run list`, `ice approvals list`, `ice budget show` and `ice log --limit 20` as fresh processes against the
//! same home, each with its wall time and peak memory. The baseline in the same run is the first point.

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::bench::bench_err;
use crate::bench_propose::Fixture;
use crate::exit;
use crate::render::CliError;

/// The environment variable that makes `ice` print its peak resident memory (KiB) on stderr at exit.
pub const REPORT_PEAK_RSS: &str = "ICE_REPORT_PEAK_RSS";

const COMMANDS: [&[&str]; 4] =
    [&["run", "list"], &["approvals", "list"], &["budget", "show"], &["log", "--limit", "20"]];

/// A `/proc/self/status` field in KiB (0 where there is no /proc).
pub fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Proposals an agent records in each run before the run ends.
const PER_RUN: u64 = 10;

/// One run's life: created, taken to EXECUTING, `PER_RUN` proposals, terminated.
fn work_one_run(bench: &Fixture, agent: &ice_runtime::Caller, next: &AtomicU64) -> Result<(), CliError> {
    let run = bench.rt.create_run(&bench.operator, Some("history".into()))?;
    for _ in 0..3 {
        bench.rt.advance_run(&bench.operator, run.id, None, None)?;
    }
    for _ in 0..PER_RUN {
        bench.rt.propose(agent, &Fixture::input_in(run.id, next.fetch_add(1, Ordering::Relaxed)))?;
    }
    bench.rt.terminate_run(&bench.operator, run.id, Some("done".into()))?;
    Ok(())
}

/// Runs the benchmark.
pub fn run(events: u64, points: u64, agents: usize) -> Result<u8, CliError> {
    if events == 0 || points == 0 || agents == 0 {
        return Err(CliError::Coded(
            ice_core::ErrorCode::BadArgument,
            "--events, --points and --agents must be positive".into(),
        ));
    }
    // synchronous=off: the figures are about memory and reads, and generating a million events at fsync speed
    // would take the time of the whole benchmark.
    let bench = Fixture::new("off", agents)?;
    let exe = std::env::current_exe().map_err(bench_err)?;
    println!(
        "ice bench history: up to {events} events of runs of {PER_RUN} decided proposals ({agents} agents, \
         synchronous=OFF); commands run as fresh processes; times in ms, memory in MiB"
    );
    println!(
        "{:>10} {:>10} {:>14} {:>16} {:>14} {:>16}",
        "events", "this RSS", "run list", "approvals list", "budget show", "log --limit 20"
    );
    let next = AtomicU64::new(0);
    let mut first: Option<Vec<f64>> = None;
    for p in 1..=points {
        let target = events * p / points;
        std::thread::scope(|s| {
            for agent in &bench.agents {
                let (bench, next) = (&bench, &next);
                s.spawn(move || {
                    while bench.rt.with_state_cached(|st| st.last_seq().0) < target {
                        if work_one_run(bench, agent, next).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let reached = bench.rt.with_state_cached(|st| st.last_seq().0);
        let mut cells = Vec::new();
        let mut times = Vec::new();
        for args in COMMANDS {
            let t = Instant::now();
            let out = Command::new(&exe)
                .arg("--dir")
                .arg(bench.dir.path())
                .args(args)
                .env(REPORT_PEAK_RSS, "1")
                .output()
                .map_err(bench_err)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if !out.status.success() {
                return Err(bench_err(format!(
                    "`ice {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            let peak_kib: u64 = String::from_utf8_lossy(&out.stderr)
                .lines()
                .find_map(|l| l.strip_prefix("peak_rss_kib "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            cells.push(format!("{ms:>7.1} ({:>4})", peak_kib / 1024));
            times.push(ms);
        }
        println!(
            "{reached:>10} {:>10} {:>14} {:>16} {:>14} {:>16}",
            proc_status_kib("VmRSS:") / 1024,
            cells[0],
            cells[1],
            cells[2],
            cells[3]
        );
        std::io::stdout().flush().ok();
        match &first {
            None => first = Some(times),
            Some(base) if p == points => {
                let ratios: Vec<String> =
                    base.iter().zip(&times).map(|(b, t)| format!("{:.1}x", t / b.max(0.001))).collect();
                println!("  RATIO last / first point (command time): {}", ratios.join("  "));
            }
            Some(_) => {}
        }
    }
    if std::env::var_os(KEEP_ENV).is_some() {
        let Fixture { dir, rt, .. } = bench;
        drop(rt);
        println!("kept the home for inspection: {}", dir.keep().display());
    }
    Ok(exit::OK)
}

/// Set to keep the benchmark's home instead of deleting it (to inspect a large ledger).
const KEEP_ENV: &str = "ICE_BENCH_KEEP";
