//! `ice bench memory`: durable promotions/s through the governed path (candidate, `memory.promote` decided by
//! grant, Cedar and budget, the permit executed) against durable decisions/s of the same build in the same run;
//! search latency of the index over N items against brute-force cosine over the same vectors; and a search through
//! the runtime (scoped, recorded as `MemoryRead`).

use std::time::Instant;

use ice_core::memory::MemoryCandidate;
use ice_core::{EventId, EventKind};
use ice_memory::{Embedder, HashEmbedder, VectorIndex, brute_force};
use ice_runtime::{ExecInput, GrantInput, MemoryQuery, ProposalInput};

use crate::bench::{bench_err, summarize};
use crate::bench_propose::Fixture;
use crate::exit;
use crate::render::CliError;

const WORDS: [&str; 48] = [
    "deploy",
    "key",
    "rotation",
    "monday",
    "staging",
    "database",
    "backup",
    "noon",
    "midnight",
    "pager",
    "rota",
    "incident",
    "postgres",
    "replica",
    "latency",
    "budget",
    "invoice",
    "vendor",
    "certificate",
    "expiry",
    "dns",
    "cache",
    "queue",
    "worker",
    "retry",
    "timeout",
    "customer",
    "refund",
    "policy",
    "approval",
    "release",
    "branch",
    "migration",
    "schema",
    "index",
    "vacuum",
    "alert",
    "threshold",
    "region",
    "failover",
    "token",
    "secret",
    "audit",
    "ledger",
    "checkpoint",
    "witness",
    "runbook",
    "owner",
];

/// A deterministic memory-like text: a few words picked by a small LCG from `seed`.
fn text(seed: u64) -> String {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    let mut words = Vec::with_capacity(9);
    for _ in 0..9 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        words.push(WORDS[((x >> 33) % WORDS.len() as u64) as usize]);
    }
    format!(
        "The {} {} for the {} {} moved to {} after the {} {} with {} {}.",
        words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7], words[8]
    )
}

/// Runs the benchmark.
pub fn run(sizes: &[usize], promotions: usize, queries: usize) -> Result<u8, CliError> {
    if sizes.is_empty() || sizes.contains(&0) || promotions == 0 || queries == 0 {
        return Err(CliError::Coded(
            ice_core::ErrorCode::BadArgument,
            "--items takes positive counts (e.g. 10000,100000); --promotions and --queries are positive".into(),
        ));
    }
    promote(promotions)?;
    let e = HashEmbedder::default();
    println!("\nsearch: embedder {}, k = 5, {queries} queries per size (texts from the items' vocabulary)", e.id());
    for &n in sizes {
        index_search(&e, n, queries)?;
    }
    Ok(exit::OK)
}

fn promote(promotions: usize) -> Result<(), CliError> {
    let bench = Fixture::new("full", 1)?;
    let (rt, agent) = (&bench.rt, &bench.agents[0]);
    // The validated source: one executed fs.write in the sandbox.
    let grant = |actions: &[&str], resource: &str| {
        rt.issue_grant(
            &bench.operator,
            &GrantInput {
                principal: agent.principal().clone(),
                run: None,
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                resource: resource.into(),
                ttl_micros: None,
                max_uses: None,
                revocable: true,
            },
        )
    };
    grant(&["fs.write"], "file:notes/")?;
    grant(&["memory.promote", "memory.read"], "memory:bench")?;
    let write = ProposalInput {
        run: Some(bench.run.to_string()),
        action: "fs.write".into(),
        resource: "file:notes/source.md".into(),
        args: r#"{"path":"notes/source.md","content":"the source"}"#.into(),
        ..ProposalInput::default()
    };
    let d = rt.propose(agent, &write)?;
    let permit = d.events.iter().find(|e| e.kind == EventKind::PermitIssued).map(|e| e.event_id);
    let permit = permit.ok_or_else(|| bench_err("the bench proposal was not allowed"))?;
    let source = rt.execute(agent, &ExecInput { permit: permit.to_string(), args: None })?.outcome.event_id;
    // Baseline: durable decisions (one commit each) of the same runtime.
    let start = Instant::now();
    for i in 0..promotions as u64 {
        rt.propose(agent, &bench.input(i + 1))?;
    }
    let decisions = promotions as f64 / start.elapsed().as_secs_f64();
    let mut samples = Vec::with_capacity(promotions);
    let start = Instant::now();
    for i in 0..promotions as u64 {
        let t = Instant::now();
        promote_one(&bench, source, &text(i))?;
        samples.push(t.elapsed());
    }
    let rate = promotions as f64 / start.elapsed().as_secs_f64();
    let (p50, p99) = summarize(&mut samples);
    println!("ice bench memory: synchronous=FULL, one agent, {promotions} promotions");
    println!("durable decisions (baseline, 1 commit each): {decisions:.0}/s");
    println!(
        "promotions (candidate + decision + executed permit, 3 commits): {rate:.0}/s  p50 {:.2} ms  p99 {:.2} ms  RATIO promotions / decisions {:.2}x",
        p50 / 1000.0,
        p99 / 1000.0,
        rate / decisions
    );
    let mut samples = Vec::with_capacity(200);
    for i in 0..200u64 {
        let q = MemoryQuery { query: text(i * 7 + 3), namespace: Some("bench".into()), k: 5, run: None };
        let t = Instant::now();
        rt.memory_search(agent, &q)?;
        samples.push(t.elapsed());
    }
    let (p50, p99) = summarize(&mut samples);
    println!(
        "runtime search over {promotions} items (grant-scoped, recorded as MemoryRead, 1 commit): p50 {:.2} ms  p99 {:.2} ms",
        p50 / 1000.0,
        p99 / 1000.0
    );
    Ok(())
}

fn promote_one(bench: &Fixture, source: EventId, text: &str) -> Result<(), CliError> {
    let (rt, agent) = (&bench.rt, &bench.agents[0]);
    let candidate = MemoryCandidate {
        namespace: "bench".into(),
        text: text.into(),
        fields: Default::default(),
        sources: vec![source],
        ttl_secs: None,
    };
    let c = rt.memory_propose(agent, &bench.run.to_string(), &candidate)?;
    let input = ProposalInput {
        run: Some(bench.run.to_string()),
        action: "memory.promote".into(),
        resource: "memory:bench".into(),
        args: format!(r#"{{"candidate":"{}","namespace":"bench"}}"#, c.event_id),
        ..ProposalInput::default()
    };
    let d = rt.propose(agent, &input)?;
    let permit = d.events.iter().find(|e| e.kind == EventKind::PermitIssued).map(|e| e.event_id);
    let permit =
        permit.ok_or_else(|| bench_err(format!("the promotion was decided {}", d.decision.verdict.as_str())))?;
    rt.execute(agent, &ExecInput { permit: permit.to_string(), args: None })?;
    Ok(())
}

fn index_search(e: &HashEmbedder, n: usize, queries: usize) -> Result<(), CliError> {
    let start = Instant::now();
    let vectors: Vec<Vec<f32>> =
        (0..n as u64).map(|i| e.embed(&text(i))).collect::<Result<_, _>>().map_err(bench_err)?;
    let embed_rate = n as f64 / start.elapsed().as_secs_f64();
    let mut index = VectorIndex::new(e.dims());
    for (i, v) in vectors.iter().enumerate() {
        index.insert(i, v);
    }
    let pairs: Vec<(usize, &[f32])> = vectors.iter().enumerate().map(|(i, v)| (i, v.as_slice())).collect();
    let (mut fast, mut exact) = (Vec::with_capacity(queries), Vec::with_capacity(queries));
    let mut agree = 0usize;
    for q in 0..queries as u64 {
        let qv = e.embed(&text(q * 7919 + 11)).map_err(bench_err)?;
        let t = Instant::now();
        let got = index.search(&qv, 5, |_| true);
        fast.push(t.elapsed());
        let t = Instant::now();
        let want = brute_force(&qv, pairs.iter().map(|(i, v)| (i, *v)), 5);
        exact.push(t.elapsed());
        agree += usize::from(got.iter().map(|h| h.key).eq(want.iter().map(|h| h.key)));
    }
    let (f50, f99) = summarize(&mut fast);
    let (b50, b99) = summarize(&mut exact);
    println!(
        "{n:>7} items: index p50 {:.3} ms  p99 {:.3} ms | brute-force cosine p50 {:.3} ms  p99 {:.3} ms | RATIO brute / index (p50) {:.2}x | same top-5 {agree}/{queries} | embed {embed_rate:.0} texts/s",
        f50 / 1000.0,
        f99 / 1000.0,
        b50 / 1000.0,
        b99 / 1000.0,
        b50 / f50.max(1e-9)
    );
    Ok(())
}
