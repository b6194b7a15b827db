//! A quick timing loop (not a timed test; ignored by default). Run with
//! `cargo test -p ice-policy --release --test timing -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::time::{Duration, Instant};

use ice_core::{Access, Classification, Cost, Dimension, EffectScope, Principal, Risk, RunId, RunState, Timestamp};
use ice_policy::{PolicyEngine, PolicyFile, PolicyRequest, default_source};
use serde_json::json;

fn p50_p99(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    (at(0.5), at(0.99))
}

fn time(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..n.min(2000) {
        f();
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    p50_p99(samples)
}

/// 16 more realistic policies, so the set has 20 like the figure in DESIGN.md.
fn extra_policies() -> String {
    let mut text = String::new();
    for i in 0..8 {
        text.push_str(&format!(
            "@id(\"agent-{i}-no-big-writes\") forbid(principal == Ice::Agent::\"agent-{i}\", action in [Ice::Action::\"fs.write\", Ice::Action::\"fs.append\"], resource) when {{ context.cost.bytes > {} }};\n",
            1000 * (i + 1)
        ));
        text.push_str(&format!(
            "@id(\"tokens-{i}\") forbid(principal, action == Ice::Action::\"model.call\", resource) when {{ context.cost.tokens > {} && context.classification.risk_level >= {} }};\n",
            100_000 * (i + 1),
            i % 4 + 1
        ));
    }
    text
}

#[test]
#[ignore = "timing loop; run in release with --ignored --nocapture"]
fn evaluate_vs_bare_cedar() {
    let n = 20_000;
    let agent: Principal = "agent:bench".parse().unwrap();
    let args = json!({"path": "/sandbox/report.md", "content": "quarterly summary"});
    let cost = Cost::of(Dimension::Calls, 1);
    let request = PolicyRequest {
        principal: &agent,
        action: "fs.write",
        resource: "file:/sandbox/report.md",
        run_id: Some(RunId::from_bytes([1; 16])),
        run_state: Some(RunState::Executing),
        classification: Classification { scope: EffectScope::External, access: Access::Write, risk: Risk::Medium },
        cost: &cost,
        time: Timestamp::from_secs(1_795_000_000),
        args: &args,
    };
    let mut bigger = default_source();
    bigger.files.push(PolicyFile { name: "extra.cedar".into(), text: extra_policies() });
    for (label, source) in [("default set", default_source()), ("default + 16", bigger)] {
        let t = Instant::now();
        let engine = PolicyEngine::compile(&source).unwrap();
        let compile_ms = t.elapsed().as_secs_f64() * 1e3;
        let prepared = engine.prepare(&request).unwrap();
        let bare = time(n, || {
            std::hint::black_box(engine.is_authorized_prepared(&prepared));
        });
        let prep = time(n, || {
            std::hint::black_box(engine.prepare(&request).ok());
        });
        let eval = time(n, || {
            std::hint::black_box(engine.evaluate(&request));
        });
        // Every call a new resource: the entity cache misses (and is emptied every 4,096 entries).
        let mut i = 0u64;
        let resources: Vec<String> = (0..n as u64 + 2000).map(|i| format!("file:/sandbox/{i}.md")).collect();
        let miss = time(n, || {
            let r = PolicyRequest { resource: &resources[i as usize], ..request };
            i += 1;
            std::hint::black_box(engine.evaluate(&r));
        });
        println!(
            "{label} ({} policies, compile {compile_ms:.1} ms): bare is_authorized p50 {:.1} µs p99 {:.1} | \
             prepare p50 {:.1} | evaluate p50 {:.1} µs p99 {:.1} (ratio {:.2}x) | evaluate, entity cache miss p50 {:.1}",
            engine.policy_ids().len(),
            bare.0,
            bare.1,
            prep.0,
            eval.0,
            eval.1,
            eval.0 / bare.0,
            miss.0
        );
    }
}
