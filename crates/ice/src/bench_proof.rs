//! `ice bench verify` and `ice bench replay`: verification throughput against raw blake3 over the same bytes, and
//! replay throughput, on a generated ledger (SQLite, no fsync: the benchmark measures reading and computing, not
//! the disk).

use std::sync::Arc;
use std::time::Instant;

use ice_core::{ChainVerifier, Event, Seq};
use ice_runtime::checkpoints::CheckpointPolicy;
use ice_runtime::{GrantInput, ProposalInput, Runtime, SystemClock, SystemIds};
use ice_store::{AppendRequest, EventQuery, Store, VerifyOptions, verify_ledger_signed};
use ice_store_sqlite::{SqliteOptions, SqliteStore, Synchronous};

use crate::bench::{bench_err, drafts, progress_bar};
use crate::exit;
use crate::render::CliError;

/// A generated ledger: `events` agent observations in batches, with `proposals` decided proposals spread through
/// them, and a signed checkpoint every 10,000 events.
fn ledger(dir: &std::path::Path, events: usize, proposals: usize) -> Result<Runtime, CliError> {
    let options = SqliteOptions { synchronous: Synchronous::Off, ..SqliteOptions::default() };
    let store: Arc<dyn Store> = SqliteStore::open(dir.join("ledger.db"), options).map_err(bench_err)?;
    let mut rt = Runtime::open(store, Arc::new(SystemClock), Arc::new(SystemIds))?;
    rt.set_local_users(vec![ice_runtime::LocalUser::this_process("human:alice")]);
    let key = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    rt.initialize(&ice_core::checkpoint::to_hex(key.verifying_key().as_bytes()))?;
    rt.set_checkpoints(CheckpointPolicy {
        key: key.into(),
        every_events: 10_000,
        every_secs: 0,
        snapshot_dir: None,
        keep_snapshots: 1,
    });
    let policies = dir.join("policies");
    ice_runtime::policy::write_defaults(&policies).map_err(bench_err)?;
    let alice = rt.authenticate(&ice_runtime::Presented::Local { act_as: None })?;
    rt.activate_policy(&alice, &policies)?;
    let run = rt.create_run(&alice, None)?;
    for _ in 0..3 {
        rt.advance_run(&alice, run.id, None, None)?;
    }
    let grant = GrantInput {
        principal: "agent:bench".parse()?,
        run: None,
        actions: vec!["fs.*".into()],
        resource: "file:".into(),
        ttl_micros: None,
        max_uses: None,
        revocable: true,
    };
    rt.issue_grant(&alice, &grant)?;
    let bench_agent = rt.authenticate(&ice_runtime::Presented::Local { act_as: Some("agent:bench") })?;
    let bar = progress_bar(events as u64, "generating");
    let (clock, ids) = (SystemClock, SystemIds);
    let per_proposal = events / proposals.max(1);
    let mut written = 0;
    let mut proposed = 0;
    while written < events {
        let n = 1000.min(events - written);
        let mut batch = drafts(n, &clock, &ids)?;
        for d in &mut batch {
            d.run_id = Some(run.id);
            // Agents' notes carry the credential behind them, as the runtime stamps them (the fold checks it).
            d.acted_by = Some(bench_agent.attribution().clone());
        }
        rt.store().append(AppendRequest::new(batch)).map_err(bench_err)?;
        written += n;
        while proposed < proposals && proposed * per_proposal < written {
            let input = ProposalInput {
                run: Some(run.id.to_string()),
                action: "fs.write".into(),
                resource: format!("file:reports/r{proposed}.md"),
                args: format!(r#"{{"path":"reports/r{proposed}.md","content":"x"}}"#),
                ..ProposalInput::default()
            };
            rt.propose(&bench_agent, &input)?;
            proposed += 1;
        }
        bar.set_position(written as u64);
    }
    bar.finish_and_clear();
    rt.checkpoint()?;
    Ok(rt)
}

/// `ice bench verify`.
pub fn verify(events: usize) -> Result<u8, CliError> {
    let dir = tempfile::tempdir().map_err(bench_err)?;
    println!("ice bench verify: {events} events (~200-byte payloads), checkpoints every 10,000");
    let rt = ledger(dir.path(), events, events / 100)?;
    let all: Vec<Event> = rt
        .store()
        .read(&EventQuery { after: Seq(0), limit: usize::MAX, ..EventQuery::default() })
        .map_err(bench_err)?;
    let bytes: Vec<Vec<u8>> = all.iter().map(Event::envelope_bytes).collect();
    // The baseline must hash exactly what verification hashes.
    if let Some((e, _)) = all.iter().zip(&bytes).find(|(e, b)| blake3::hash(b).as_bytes() != &e.hash.0) {
        return Err(bench_err(format!("envelope bytes of seq {} do not hash to its hash", e.seq)));
    }
    let total_bytes: usize = bytes.iter().map(Vec::len).sum();
    let mut best_raw = f64::MAX;
    let mut best_verify = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let mut acc = 0u8;
        for b in &bytes {
            acc ^= blake3::hash(b).as_bytes()[0];
        }
        std::hint::black_box(acc);
        best_raw = best_raw.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let mut v = ChainVerifier::new();
        for e in &all {
            v.check(e).map_err(bench_err)?;
        }
        best_verify = best_verify.min(t.elapsed().as_secs_f64());
    }
    let n = all.len() as f64;
    let raw_rate = n / best_raw;
    let verify_rate = n / best_verify;
    println!("  raw blake3 over the same {} MiB of envelopes: {:.0} events/s", total_bytes / (1 << 20), raw_rate);
    println!("  chain verification in memory (hash + link + seq + time): {verify_rate:.0} events/s");
    println!("  ratio verify / raw blake3: {:.2}x (goal >= 0.5x, >= 1M events/s)", verify_rate / raw_rate);
    let t = Instant::now();
    let options = VerifyOptions::default();
    let summary = verify_ledger_signed(&**rt.store(), &options, &mut |_| {}).map_err(bench_err)?.map_err(bench_err)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  `ice verify` end to end from SQLite (read + decode + chain + {} checkpoint signatures and Merkle roots): \
         {:.0} events/s",
        summary.checkpoints,
        summary.chain.events as f64 / secs
    );
    Ok(exit::OK)
}

/// `ice bench replay`.
pub fn replay(events: usize, proposals: usize) -> Result<u8, CliError> {
    let dir = tempfile::tempdir().map_err(bench_err)?;
    println!("ice bench replay: {events} events with {proposals} decided proposals, checkpoints every 10,000");
    let rt = ledger(dir.path(), events, proposals)?;
    let mut best: Option<ice_runtime::ReplayReport> = None;
    for _ in 0..3 {
        let r = rt.replay(&mut |_, _| {})?;
        if !r.ok() {
            return Err(bench_err("replay did not reproduce the live state"));
        }
        if best.as_ref().is_none_or(|b| r.elapsed_ms < b.elapsed_ms) {
            best = Some(r);
        }
    }
    let Some(r) = best else { return Err(bench_err("no replay ran")) };
    let rate = r.events as f64 / (r.elapsed_ms.max(1) as f64 / 1000.0);
    println!(
        "  replay (read + fold + {} re-decisions + {} checkpoint state roots): {} events in {} ms = {rate:.0} events/s \
         (goal >= 300k/s)",
        r.decisions, r.checkpoints, r.events, r.elapsed_ms
    );
    println!(
        "  of which re-deciding {} ms, checkpoint state roots {} ms; state root {} = live root",
        r.decide_ms,
        r.checkpoint_ms,
        &r.state_root[..16]
    );
    Ok(exit::OK)
}
