//! `ice bench propose`: durable governed decisions per second from concurrent agents, through the whole path a
//! caller takes (intake, grant, Cedar, budget, the pipelined commit, fsync'd before the answer), against the
//! in-memory decide rate of the same runtime in the same run.

use std::time::{Duration, Instant};

use ice_core::budget::{BudgetKey, BudgetScope, Period};
use ice_core::decision::Verdict;
use ice_core::{Cost, Dimension, Principal};
use ice_runtime::{Caller, GrantInput, IceHome, Presented, ProposalInput, Runtime};

use crate::bench::{bench_err, summarize};
use crate::bench_cpu::CpuWindow;
use crate::exit;
use crate::render::CliError;

/// Runs the benchmark at each concurrency level, with checkpoints signed in the committing callers' threads
/// (`inline`) or by a housekeeping thread as `ice serve` does.
pub fn run(levels: &[usize], seconds: f64, synchronous: &str, inline: bool) -> Result<u8, CliError> {
    if levels.is_empty() || levels.contains(&0) || !seconds.is_finite() || seconds <= 0.0 {
        return Err(CliError::Coded(
            ice_core::ErrorCode::BadArgument,
            "--agents takes positive counts (e.g. 1,16,64) and --seconds a positive number".into(),
        ));
    }
    let most = levels.iter().copied().max().unwrap_or(1);
    let bench = Fixture::new(synchronous, most)?;
    let (rt, agents) = (&bench.rt, &bench.agents);
    let input = |i: u64| bench.input(i);
    let in_memory = in_memory_rate(&bench, seconds)?;
    rt.set_inline_checkpoints(inline);
    println!(
        "ice bench propose: fs.write allowed by grant + Cedar + budget, 5 events per decision, synchronous={}, \
         checkpoints {}",
        bench.synchronous.pragma(),
        if inline { "inline (in the committing caller's thread)" } else { "in a housekeeping thread (as ice serve)" }
    );
    println!(
        "in-memory decide (baseline, 1 thread, nothing recorded): {in_memory:.0} decisions/s, {:.0} µs of CPU each",
        1e6 / in_memory
    );
    for &n in levels {
        let before = rt.pipeline_stats();
        let cpu = CpuWindow::start();
        let (rate, p50, p99, failures) = if inline {
            level(rt, &agents[..n], seconds, &input)?
        } else {
            with_housekeeping(rt, || level(rt, &agents[..n], seconds, &input))?
        };
        let used = cpu.finish();
        let after = rt.pipeline_stats();
        let flights = after.flights - before.flights;
        let per_flight = (after.bundles - before.bundles) as f64 / flights.max(1) as f64;
        println!(
            "{n:>3} agents: {rate:>8.0} durable decisions/s  p50 {:>7.2} ms  p99 {:>7.2} ms  {per_flight:>5.1} decisions per commit  RATIO durable / in-memory {:.2}x{}",
            p50 / 1000.0,
            p99 / 1000.0,
            rate / in_memory,
            if failures > 0 { format!("  ({failures} failed)") } else { String::new() }
        );
        let ms_per_commit = |after: u64, before: u64| (after - before) as f64 / 1000.0 / flights.max(1) as f64;
        println!(
            "      pipeline: {flights} commits, {} conflicts, {} decisions redone; per commit {:.2} ms at the store, \
             {:.2} ms from its answer to landing, {:.2} ms from landing to the next commit leaving",
            after.conflicts - before.conflicts,
            after.retried - before.retried,
            ms_per_commit(after.store_micros, before.store_micros),
            ms_per_commit(after.landing_wait_micros, before.landing_wait_micros),
            ms_per_commit(after.relaunch_micros, before.relaunch_micros),
        );
        if let Some(line) = used.describe(after.bundles - before.bundles) {
            println!("      {line}");
        }
    }
    Ok(exit::OK)
}

/// Runs `f` while a housekeeping thread signs due checkpoints a few times a second, as `ice serve` does.
fn with_housekeeping<T>(rt: &Runtime, f: impl FnOnce() -> T) -> T {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
                rt.sign_due_checkpoint();
            }
        });
        let out = f();
        done.store(true, std::sync::atomic::Ordering::Release);
        out
    })
}

/// Checks the bench proposal is allowed, then measures the baseline: the in-memory decide of the same runtime
/// (grant + Cedar + budget; nothing recorded), one thread, in decisions/s.
pub fn in_memory_rate(bench: &Fixture, seconds: f64) -> Result<f64, CliError> {
    let verdict = bench.rt.propose(&bench.agents[0], &bench.input(0))?.decision.verdict;
    if verdict != Verdict::Allow {
        return Err(bench_err(format!("the bench proposal was decided {}, not allow", verdict.as_str())));
    }
    let prepared = bench.rt.prepare_proposal(&bench.agents[0], &bench.input(1))?;
    let start = Instant::now();
    let mut decided = 0u64;
    while start.elapsed().as_secs_f64() < seconds.min(2.0) {
        for _ in 0..100 {
            std::hint::black_box(bench.rt.decide_prepared(&prepared).ok());
        }
        decided += 100;
    }
    Ok(decided as f64 / start.elapsed().as_secs_f64())
}

/// A throwaway home with a run in EXECUTING, a large global budget and `agents` agents each holding an `fs.write`
/// grant: the state every proposal benchmark starts from.
pub struct Fixture {
    /// The runtime over the home's ledger.
    pub rt: Runtime,
    /// One caller per agent (the local operator acting for `agent:bench-N`).
    pub agents: Vec<Caller>,
    /// The run the proposals name.
    pub run: ice_core::RunId,
    /// The local operator (creates runs and grants).
    pub operator: Caller,
    /// The ledger's durability.
    pub synchronous: ice_store_sqlite::Synchronous,
    /// The directory holding `.ice/`.
    pub dir: tempfile::TempDir,
}

impl Fixture {
    /// Builds the fixture on the embedded SQLite ledger with the given durability (`full`, `normal`, `off`).
    pub fn new(synchronous: &str, agents: usize) -> Result<Self, CliError> {
        Self::new_on(None, synchronous, agents)
    }

    /// Builds the fixture on the ledger at `store` (a URL; the embedded SQLite ledger when `None`).
    pub fn new_on(store: Option<&str>, synchronous: &str, agents: usize) -> Result<Self, CliError> {
        let sync: ice_store_sqlite::Synchronous =
            synchronous.parse().map_err(|e: String| CliError::Coded(ice_core::ErrorCode::BadArgument, e))?;
        let dir = tempfile::tempdir().map_err(bench_err)?;
        let (home, rt) = IceHome::init(dir.path(), store)?;
        let rt = if sync == ice_store_sqlite::Synchronous::Full {
            rt
        } else {
            drop(rt);
            let config = home.dir().join("config.toml");
            let text = std::fs::read_to_string(&config).map_err(bench_err)?;
            let edited =
                text.replace("synchronous = \"full\"", &format!("synchronous = \"{}\"", sync.pragma().to_lowercase()));
            std::fs::write(&config, edited).map_err(bench_err)?;
            IceHome::discover(Some(dir.path()), dir.path())?.open_runtime()?
        };
        let operator = rt.authenticate(&Presented::Local { act_as: None })?;
        let run = rt.create_run(&operator, Some("bench".into()))?;
        for _ in 0..3 {
            rt.advance_run(&operator, run.id, None, None)?;
        }
        rt.set_budget(
            &operator,
            BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Total },
            1 << 50,
        )?;
        let mut callers = Vec::with_capacity(agents);
        for i in 0..agents {
            let name = format!("agent:bench-{i}");
            let principal: Principal = name.parse()?;
            rt.issue_grant(
                &operator,
                &GrantInput {
                    principal,
                    run: None,
                    actions: vec!["fs.write".into()],
                    resource: "file:/sandbox/".into(),
                    ttl_micros: None,
                    max_uses: None,
                    revocable: true,
                },
            )?;
            callers.push(rt.authenticate(&Presented::Local { act_as: Some(&name) })?);
        }
        Ok(Self { rt, agents: callers, run: run.id, operator, synchronous: sync, dir })
    }

    /// The `i`-th proposal: an allowed `fs.write` in the sandbox, in the fixture's run.
    pub fn input(&self, i: u64) -> ProposalInput {
        Self::input_in(self.run, i)
    }

    /// The `i`-th proposal in `run`.
    pub fn input_in(run: ice_core::RunId, i: u64) -> ProposalInput {
        ProposalInput {
            run: Some(run.to_string()),
            action: "fs.write".into(),
            resource: format!("file:/sandbox/out-{}.md", i % 64),
            args: format!(r#"{{"path":"/sandbox/out-{}.md","content":"line {i}"}}"#, i % 64),
            purpose: "bench".into(),
            cost_estimate: Cost::of(Dimension::Calls, 1),
            ..ProposalInput::default()
        }
    }
}

/// One concurrency level: each agent proposes in a loop on its own thread for `seconds`; returns decisions/s,
/// p50 and p99 latency (µs) and the number of failed proposals.
pub fn level(
    rt: &Runtime,
    agents: &[Caller],
    seconds: f64,
    input: &(dyn Fn(u64) -> ProposalInput + Sync),
) -> Result<(f64, f64, f64, usize), CliError> {
    let deadline = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = agents
            .iter()
            .enumerate()
            .map(|(k, agent)| {
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut failed = 0;
                    let mut i = (k as u64) << 32;
                    while start.elapsed() < deadline {
                        let t = Instant::now();
                        match rt.propose(agent, &input(i)) {
                            Ok(o) if o.decision.verdict == Verdict::Allow => lat.push(t.elapsed()),
                            _ => failed += 1,
                        }
                        i += 1;
                    }
                    (lat, failed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let failures = results.iter().map(|r| r.1).sum();
    let mut all: Vec<Duration> = results.into_iter().flat_map(|r| r.0).collect();
    let rate = all.len() as f64 / elapsed;
    let (p50, p99) = summarize(&mut all);
    Ok((rate, p50, p99, failures))
}
