//! `ice bench`: benchmarks that print a ratio against a baseline measured in the same run on the same machine.
//!
//! `append`: durable appends/s through the SQLite store with group commit (many concurrent appenders, each
//! acknowledged only after its transaction commits) against raw rusqlite inserts of the *same rows* into an
//! identical table, in transactions of the same mean size the group commit achieved; plus single-append latency.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ice_core::{CanonicalJson, Draft, ErrorCode, Event, EventKind, IdSource, Principal, TimeSource};
use ice_runtime::{SystemClock, SystemIds};
use ice_store::{AppendRequest, EventQuery, Store};
use ice_store_sqlite::{SqliteOptions, SqliteStore, Synchronous, schema::EVENTS_DDL};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::BenchCommand;
use crate::exit;
use crate::render::CliError;

/// A progress bar on stderr for long work; hidden for short work and when stderr is not a terminal.
pub fn progress_bar(total: u64, message: &'static str) -> ProgressBar {
    if total < 200_000 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total).with_message(message);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})") {
        bar.set_style(style);
    }
    bar
}

/// Runs a benchmark command.
pub fn run(cmd: BenchCommand) -> Result<u8, CliError> {
    match cmd {
        BenchCommand::Append { events, threads, latency_samples } => append(events, threads, latency_samples),
        BenchCommand::Decide { iterations, policies } => decide(iterations, policies),
        BenchCommand::History { events, points, agents } => crate::bench_history::run(events, points, agents),
        BenchCommand::Propose { agents, seconds, synchronous, instances, store, .. } if !instances.is_empty() => {
            let [agents] = agents[..] else {
                return Err(CliError::Coded(
                    ErrorCode::BadArgument,
                    "with --instances, --agents is one count (agents per instance)".into(),
                ));
            };
            crate::bench_instances::run(store.as_deref(), &instances, agents, seconds, &synchronous)
        }
        BenchCommand::Propose { agents, seconds, synchronous, checkpoints, .. } => {
            crate::bench_propose::run(&agents, seconds, &synchronous, checkpoints == "inline")
        }
        BenchCommand::ProposeWorker { run, first, agents, seconds } => {
            let dir = std::env::current_dir().map_err(bench_err)?;
            crate::bench_instances::worker(&dir, &run, first, agents, seconds)
        }
        BenchCommand::Memory { items, promotions, queries } => crate::bench_memory::run(&items, promotions, queries),
        BenchCommand::Serve { rates, seconds, clients } => crate::bench_serve::run(&rates, seconds, clients),
        BenchCommand::Mcp { calls, server_everything } => crate::bench_mcp::run(calls, server_everything.as_deref()),
        BenchCommand::Verify { events } => crate::bench_proof::verify(events),
        BenchCommand::Replay { events, proposals } => crate::bench_proof::replay(events, proposals),
        #[cfg(feature = "postgres")]
        BenchCommand::Postgres { url, events, threads } => crate::bench_pg::run(&url, events, threads),
        #[cfg(feature = "postgres")]
        BenchCommand::PostgresWorker { url, events, threads } => crate::bench_pg::worker(&url, events, threads),
        #[cfg(not(feature = "postgres"))]
        BenchCommand::Postgres { .. } | BenchCommand::PostgresWorker { .. } => {
            Err(CliError::Coded(ErrorCode::BadConfig, "this ice was built without the `postgres` feature".into()))
        }
    }
}

/// A benchmark's worker process that has said `ready` on stdout and waits for `go` on stdin.
pub struct Worker {
    child: std::process::Child,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Worker {
    /// Starts `cmd` (stdin and stdout piped, stderr inherited) and waits for its `ready` line.
    pub fn start(mut cmd: std::process::Command) -> Result<Self, CliError> {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().map_err(bench_err)?;
        let out = child.stdout.take().ok_or_else(|| bench_err("no stdout"))?;
        let mut lines = std::io::BufReader::new(out).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => Ok(Self { child, lines }),
            other => Err(bench_err(format!("a worker did not get ready: {other:?}"))),
        }
    }

    /// Tells the worker to start.
    pub fn go(&mut self) -> Result<(), CliError> {
        use std::io::Write;
        writeln!(self.child.stdin.as_mut().ok_or_else(|| bench_err("no stdin"))?, "go").map_err(bench_err)
    }

    /// Waits for the worker's `done …` line and its exit; returns what follows `done `.
    pub fn finish(mut self) -> Result<String, CliError> {
        let line = self.lines.next().and_then(Result::ok).unwrap_or_default();
        let status = self.child.wait().map_err(bench_err)?;
        match line.strip_prefix("done ") {
            Some(rest) if status.success() => Ok(rest.to_owned()),
            _ => Err(bench_err(format!("a worker failed: {status} {line}"))),
        }
    }
}

/// Appends `all` one event per request from `threads` threads (each its share, in order) and returns each
/// acknowledged append's latency; a thread stops at its first failure, so fewer latencies than drafts means some
/// appends failed.
pub fn concurrent_appends(store: &Arc<dyn Store>, all: &[Draft], threads: usize, bar: &ProgressBar) -> Vec<Duration> {
    let per = all.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(per)
            .map(|chunk| {
                let store = Arc::clone(store);
                let bar = bar.clone();
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(chunk.len());
                    for d in chunk {
                        let t = Instant::now();
                        if store.append(AppendRequest::new(vec![d.clone()])).is_err() {
                            break;
                        }
                        lat.push(t.elapsed());
                        bar.inc(1);
                    }
                    lat
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap_or_default()).collect()
    })
}

/// A benchmark failure.
pub fn bench_err(e: impl std::fmt::Display) -> CliError {
    CliError::Coded(ErrorCode::StoreUnavailable, format!("benchmark failed: {e}"))
}

/// `n` ~200-byte agent observations for one new run.
pub fn drafts(n: usize, clock: &SystemClock, ids: &SystemIds) -> Result<Vec<Draft>, CliError> {
    let run = ids.run_id();
    (0..n)
        .map(|i| {
            // ~200-byte payload, the size DESIGN.md's SQLite figures were measured with.
            let payload = CanonicalJson::parse(&format!(
                r#"{{"i":{i},"note":"benchmark observation with a payload of typical size","tool":"fs.read","path":"/sandbox/reports/q3/summary.md","bytes":18231}}"#
            ))?;
            Ok(Draft {
                event_id: ids.event_id(),
                run_id: Some(run),
                kind: EventKind::ObservationRecorded,
                origin: Principal::new(ice_core::PrincipalKind::Agent, "bench")?,
                acted_by: None,
                time: ice_core::Clock::now(clock),
                time_source: TimeSource::Clock,
                causes: Vec::new(),
                payload,
            })
        })
        .collect()
}

/// The p-th percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// Microseconds as a float.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Inserts the given sealed events with plain rusqlite, `batch` rows per transaction; returns rows/s.
fn raw_insert(path: &Path, events: &[Event], batch: usize) -> Result<f64, CliError> {
    let mut conn = rusqlite::Connection::open(path).map_err(bench_err)?;
    conn.execute_batch(&format!("PRAGMA journal_mode = WAL; PRAGMA synchronous = {};", Synchronous::Full.pragma()))
        .map_err(bench_err)?;
    conn.execute_batch(EVENTS_DDL).map_err(bench_err)?;
    let start = Instant::now();
    for chunk in events.chunks(batch.max(1)) {
        let tx = conn.transaction().map_err(bench_err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events (seq, event_id, run_id, kind, origin, time, causes, payload, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .map_err(bench_err)?;
            for e in chunk {
                stmt.execute(rusqlite::params![
                    e.seq.0 as i64,
                    e.event_id.as_bytes(),
                    e.run_id.as_ref().map(|r| r.as_bytes()),
                    e.kind.as_str(),
                    e.origin.to_string(),
                    e.time.0,
                    Vec::<u8>::new(), // benchmark drafts carry no causes
                    e.payload.as_str(),
                    e.prev_hash.0,
                    e.hash.0,
                ])
                .map_err(bench_err)?;
            }
        }
        tx.commit().map_err(bench_err)?;
    }
    Ok(events.len() as f64 / start.elapsed().as_secs_f64())
}

fn append(events: usize, threads: usize, latency_samples: usize) -> Result<u8, CliError> {
    let dir = tempfile::tempdir().map_err(bench_err)?;
    let (clock, ids) = (SystemClock, SystemIds);
    let threads = threads.max(1);
    println!("ice bench append: {events} events, {threads} appending threads, synchronous=FULL, WAL");
    println!(
        "machine: {} cores; ledger in {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        dir.path().display()
    );

    // 1. Single-append latency: one appender, one event per transaction (an fsync each).
    let store = SqliteStore::open(dir.path().join("latency.db"), SqliteOptions::default())?;
    let mut lat = Vec::with_capacity(latency_samples);
    for d in drafts(latency_samples, &clock, &ids)? {
        let t = Instant::now();
        store.append(AppendRequest::new(vec![d]))?;
        lat.push(t.elapsed());
    }
    lat.sort();
    drop(store);

    // 2. Group commit: many threads, one event per request, each acknowledged after its batch commits.
    let store = SqliteStore::open(dir.path().join("group.db"), SqliteOptions::default())?;
    let all = drafts(events, &clock, &ids)?;
    let bar = progress_bar(events as u64, "group commit");
    let start = Instant::now();
    let shared: Arc<dyn Store> = store.clone();
    let mut loaded = concurrent_appends(&shared, &all, threads, &bar);
    let gc_secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    if loaded.len() != events {
        return Err(bench_err(format!("only {} of {events} appends succeeded", loaded.len())));
    }
    loaded.sort();
    let stats = store.stats();
    let gc_rate = events as f64 / gc_secs;
    let mean_batch = stats.events as f64 / stats.transactions.max(1) as f64;
    let sealed = store.read(&EventQuery { limit: usize::MAX, ..EventQuery::default() })?;
    drop(store);

    // 3. Baseline: the same rows, raw rusqlite, same mean transaction size; and at 1,000 rows for context.
    let batch = mean_batch.round().max(1.0) as usize;
    let raw_same = raw_insert(&dir.path().join("raw-same.db"), &sealed, batch)?;
    let raw_1000 = raw_insert(&dir.path().join("raw-1000.db"), &sealed, 1000)?;

    // 4. Batched API: requests of 1,000 drafts from one caller (sealing + hashing + insert, no waiting).
    let store = SqliteStore::open(dir.path().join("batched.db"), SqliteOptions::default())?;
    let all = drafts(events, &clock, &ids)?;
    let start = Instant::now();
    for chunk in all.chunks(1000) {
        store.append(AppendRequest::new(chunk.to_vec()))?;
    }
    let batched_rate = events as f64 / start.elapsed().as_secs_f64();
    drop(store);

    println!();
    println!(
        "single append, 1 writer (one fsync each): p50 {:.0} µs  p99 {:.0} µs  ({} samples)",
        micros(percentile(&lat, 0.5)),
        micros(percentile(&lat, 0.99)),
        lat.len()
    );
    println!(
        "group commit, {threads} writers: {gc_rate:.0} events/s  ({} transactions, mean {mean_batch:.1} events each)",
        stats.transactions
    );
    println!(
        "  append latency under load: p50 {:.0} µs  p99 {:.0} µs",
        micros(percentile(&loaded, 0.5)),
        micros(percentile(&loaded, 0.99))
    );
    println!("raw rusqlite, same rows, {batch} per transaction: {raw_same:.0} rows/s");
    println!("  RATIO group commit / raw (same batch size): {:.2}x  (goal >= 0.5x)", gc_rate / raw_same);
    println!("batched API, 1,000 per request: {batched_rate:.0} events/s");
    println!("raw rusqlite, same rows, 1,000 per transaction: {raw_1000:.0} rows/s");
    println!("  RATIO batched / raw (1,000 per transaction): {:.2}x", batched_rate / raw_1000);
    Ok(exit::OK)
}

pub fn summarize(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    (micros(percentile(samples, 0.5)), micros(percentile(samples, 0.99)))
}

/// In-process decide (classification + grants + Cedar + budget; nothing appended, so no fsync) against bare
/// `cedar_policy::Authorizer::is_authorized` on the same request, prebuilt, in the same run.
fn decide(iterations: usize, policies: usize) -> Result<u8, CliError> {
    use ice_core::budget::{BudgetKey, BudgetScope, Period};
    use ice_core::{Classification, Cost, Dimension};
    use ice_policy::PolicyRequest;
    use ice_runtime::{GrantInput, IceHome, ProposalInput};

    let dir = tempfile::tempdir().map_err(bench_err)?;
    let (home, rt) = IceHome::init(dir.path(), None)?;
    let alice = rt.authenticate(&ice_runtime::Presented::Local { act_as: None })?;
    // Grow the policy set with realistic guards that are evaluated on every request but do not match it.
    let default_count = rt.active_policy()?.engine.policy_ids().len();
    let extra: String = (0..policies.saturating_sub(default_count))
        .map(|i| match i % 4 {
            0 => format!("@id(\"bench-cost-{i}\") forbid (principal, action, resource) when {{ context.cost.calls > {} }};\n", 1000 + i),
            1 => format!("@id(\"bench-path-{i}\") forbid (principal, action in Ice::Action::\"fs\", resource) when {{ resource.path like \"/restricted-{i}/*\" }};\n"),
            2 => format!("@id(\"bench-agent-{i}\") forbid (principal == Ice::Agent::\"blocked-{i}\", action, resource);\n"),
            _ => format!("@id(\"bench-risk-{i}\") forbid (principal, action, resource) when {{ context.classification.risk_level > 4 && context.time_us < {i} }};\n"),
        })
        .collect();
    if !extra.is_empty() {
        let policy_dir = home.dir().join("policies");
        std::fs::write(policy_dir.join("bench-extra.cedar"), extra).map_err(bench_err)?;
        rt.activate_policy(&alice, &policy_dir)?;
    }
    let run = rt.create_run(&alice, Some("bench".into()))?;
    for _ in 0..3 {
        rt.advance_run(&alice, run.id, None, None)?;
    }
    let agent: Principal = "agent:bench".parse()?;
    // A realistic amount of state: 50 grants for other agents, one for the bench agent, and budgets.
    for i in 0..50 {
        let g = GrantInput {
            principal: format!("agent:other-{i}").parse()?,
            run: None,
            actions: vec!["fs.*".into()],
            resource: "file:/sandbox/".into(),
            ttl_micros: None,
            max_uses: None,
            revocable: true,
        };
        rt.issue_grant(&alice, &g)?;
    }
    let g = GrantInput {
        principal: agent.clone(),
        run: Some(run.id),
        actions: vec!["fs.write".into()],
        resource: "file:/sandbox/".into(),
        ttl_micros: Some(3_600_000_000),
        max_uses: None,
        revocable: true,
    };
    rt.issue_grant(&alice, &g)?;
    rt.set_budget(
        &alice,
        BudgetKey { scope: BudgetScope::Global, dimension: Dimension::Calls, period: Period::Day },
        1_000_000,
    )?;
    rt.set_budget(
        &alice,
        BudgetKey {
            scope: BudgetScope::Agent { principal: agent.clone() },
            dimension: Dimension::Calls,
            period: Period::Total,
        },
        1_000_000,
    )?;

    let bench_agent = rt.authenticate(&ice_runtime::Presented::Local { act_as: Some("agent:bench") })?;
    let input = ProposalInput {
        run: Some(run.id.to_string()),
        action: "fs.write".into(),
        resource: "file:/sandbox/report.md".into(),
        args: r#"{"path":"/sandbox/report.md","content":"quarterly summary"}"#.into(),
        purpose: "write the report".into(),
        cost_estimate: Cost::of(Dimension::Calls, 1),
        ..ProposalInput::default()
    };
    let first = rt.dry_run(&bench_agent, &input)?;
    println!(
        "ice bench decide: {iterations} iterations; {} policies; verdict {}",
        rt.active_policy()?.engine.policy_ids().len(),
        first.verdict.as_str()
    );

    let policy = rt.active_policy()?;
    let args: serde_json::Value = serde_json::from_str(&input.args).map_err(bench_err)?;
    let classification: Classification = policy.catalog.actions["fs.write"];
    let cost = Cost::of(Dimension::Calls, 1);
    let request = PolicyRequest {
        principal: &agent,
        action: "fs.write",
        resource: "file:/sandbox/report.md",
        run_id: Some(run.id),
        run_state: Some(ice_core::RunState::Executing),
        classification,
        cost: &cost,
        time: rt.now(),
        args: &args,
    };
    let prepared = policy.engine.prepare(&request).map_err(bench_err)?;

    let time_it = |f: &mut dyn FnMut()| {
        for _ in 0..iterations.min(1000) {
            f();
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            f();
            samples.push(t.elapsed());
        }
        samples
    };
    let mut bare = time_it(&mut || {
        std::hint::black_box(policy.engine.is_authorized_prepared(&prepared));
    });
    let mut evaluate = time_it(&mut || {
        std::hint::black_box(policy.engine.evaluate(&request));
    });
    let prepared_proposal = rt.prepare_proposal(&bench_agent, &input)?;
    let mut full = time_it(&mut || {
        std::hint::black_box(rt.decide_prepared(&prepared_proposal).ok());
    });
    let (bare50, bare99) = summarize(&mut bare);
    let (ev50, ev99) = summarize(&mut evaluate);
    let (full50, full99) = summarize(&mut full);
    println!("bare cedar is_authorized (prebuilt request):   p50 {bare50:.1} µs  p99 {bare99:.1} µs");
    println!("ice-policy evaluate (builds request + verdict): p50 {ev50:.1} µs  p99 {ev99:.1} µs");
    println!("ice decide (catalog + grants + Cedar + budget): p50 {full50:.1} µs  p99 {full99:.1} µs");
    println!("  RATIO decide / bare cedar (p50): {:.2}x  (goal <= 2x; p50 goal < 25 µs)", full50 / bare50);
    Ok(exit::OK)
}
