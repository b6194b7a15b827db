//! `ice bench postgres`: durable appends/s into one PostgreSQL ledger from 1, 2 and 4 `ice` processes (each its
//! own pool and group-commit writer, all contending for the chain-head row lock), against raw batched INSERTs of
//! the same rows into a plain copy of the event table on the same server, in the same run.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ice_runtime::{SystemClock, SystemIds};
use ice_store::{EventQuery, Store};
use ice_store_postgres::{PostgresOptions, PostgresStore};

use crate::bench::{Worker, bench_err, concurrent_appends, drafts, micros, percentile};
use crate::exit;
use crate::render::CliError;

fn open(url: &str) -> Result<Arc<PostgresStore>, CliError> {
    let options = PostgresOptions { pool_size: 4, ..PostgresOptions::default() };
    Ok(PostgresStore::open(url, options)?)
}

/// One instance: prepare, say `ready`, wait for `go` on stdin, append, print `done LATENCY_P50_US LATENCY_P99_US`.
pub fn worker(url: &str, events: usize, threads: usize) -> Result<u8, CliError> {
    let store = open(url)?;
    let all = drafts(events, &SystemClock, &SystemIds)?;
    println!("ready");
    std::io::stdout().flush().map_err(bench_err)?;
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).map_err(bench_err)?;
    let store: Arc<dyn Store> = store;
    let mut lat = concurrent_appends(&store, &all, threads, &indicatif::ProgressBar::hidden());
    if lat.len() != events {
        return Err(bench_err(format!("only {} of {events} appends succeeded", lat.len())));
    }
    lat.sort();
    println!("done {:.0} {:.0}", micros(percentile(&lat, 0.5)), micros(percentile(&lat, 0.99)));
    Ok(exit::OK)
}

fn measure(url: &str, instances: usize, events: usize, threads: usize) -> Result<(f64, String), CliError> {
    let exe = std::env::current_exe().map_err(bench_err)?;
    let per = events / instances;
    let mut workers = Vec::new();
    for _ in 0..instances {
        let mut cmd = Command::new(&exe);
        cmd.args(["bench", "postgres-worker", "--url", url]).args([
            "--events",
            &per.to_string(),
            "--threads",
            &threads.to_string(),
        ]);
        workers.push(Worker::start(cmd)?);
    }
    let start = Instant::now();
    for w in &mut workers {
        w.go()?;
    }
    let mut latencies = Vec::new();
    for w in workers {
        latencies.push(w.finish()?.replace(' ', "/"));
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(((per * instances) as f64 / secs, latencies.join(", ")))
}

/// Runs the benchmark.
pub fn run(url: &str, events: usize, threads: usize) -> Result<u8, CliError> {
    println!("ice bench postgres: {events} events per measurement, {threads} appending threads per instance");
    let store = open(url)?;
    println!("ledger: {} (head seq {})", store.describe(), store.head()?.map_or(0, |h| h.seq.0));
    // Warm-up (not reported): the server's caches, the table's first pages, the catalog.
    measure(url, 1, events / 10, threads)?;
    let mut rates = Vec::new();
    for instances in [1, 2, 4] {
        let (rate, lat) = measure(url, instances, events, threads)?;
        println!("{instances} instance(s): {rate:.0} events/s  (append latency p50/p99 µs per instance: {lat})");
        rates.push((instances, rate));
    }
    let head = store.head()?.map_or(0, |h| h.seq.0);
    let after = ice_core::Seq(head.saturating_sub(events as u64));
    let rows = store.read(&EventQuery { after, limit: events, ..EventQuery::default() })?;
    // At most `threads` single-event requests are queued per instance, so its group-commit transactions hold at most
    // that many events: raw inserts at that batch size are the like-for-like baseline.
    let raw_same = store.raw_insert_baseline(&rows, threads)?;
    let raw_100 = store.raw_insert_baseline(&rows, 100)?;
    let raw_1000 = store.raw_insert_baseline(&rows, 1000)?;
    println!("raw batched INSERT, same rows, {threads} per transaction:    {raw_same:.0} rows/s");
    println!("raw batched INSERT, same rows, 100 per transaction:   {raw_100:.0} rows/s");
    println!("raw batched INSERT, same rows, 1,000 per transaction: {raw_1000:.0} rows/s");
    for (instances, rate) in rates {
        println!(
            "  RATIO {instances} instance(s) / raw: {:.2}x ({threads}-row batches), {:.2}x (100), {:.2}x (1,000)",
            rate / raw_same,
            rate / raw_100,
            rate / raw_1000
        );
    }
    match ice_store::verify_ledger(&*store, &mut |_| {})? {
        Ok(s) => println!("ledger verified: {} events, head seq {}", s.events, s.head.seq),
        Err(f) => println!("ledger FAILED verification at seq {}: {}", f.seq, f.message),
    }
    Ok(exit::OK)
}
