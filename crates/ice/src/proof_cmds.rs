//! `ice verify`, `ice replay`, `ice what-if`, `ice checkpoint`, `ice export`, `ice key`: proving what happened.

use std::path::Path;

use ice_core::ErrorCode;
use ice_runtime::policy::PolicyBundle;
use ice_runtime::{IceHome, WhatIfFilter};
use ice_store::{VerifyOptions, verify_ledger_signed};
use serde_json::json;

use crate::commands::resolve_run;
use crate::exit;
use crate::render::CliError;

/// `ice verify` (ledger or bundle).
pub fn verify(
    home: impl FnOnce() -> Result<IceHome, CliError>,
    json_out: bool,
    from_checkpoint: bool,
    bundle: Option<(&Path, &[String])>,
    trust: &[String],
    trust_bundle_key: bool,
    witness: Option<(&Path, Option<&str>)>,
) -> Result<u8, CliError> {
    if let Some((path, witnesses)) = bundle {
        if trust.is_empty() && !trust_bundle_key {
            return Err(CliError::Coded(
                ErrorCode::NoPinnedKey,
                "a bundle carries its own key, so verifying it against that key proves only that it is consistent; \
                 pin the ledger's key with --trust-key HEX (or accept the bundle's key with --trust-bundle-key)"
                    .into(),
            ));
        }
        return crate::bundle_cmds::verify_bundle(path, trust, witnesses, json_out);
    }
    let home = home()?;
    let witnessed = witness.map(|(path, key)| crate::witness_cmds::witnessed_for(&home, path, key)).transpose()?;
    let store = home.open_store()?;
    let started = std::time::Instant::now();
    let result = verify_store(&home, &*store, trust, from_checkpoint, witnessed)?;
    let secs = started.elapsed().as_secs_f64();
    let ok = result.is_ok();
    let code = report_verify(result, json_out, secs)?;
    if let (true, false, Some(w)) = (ok, json_out, witnessed) {
        println!("  the checkpoint a witness cosigned (seq {}) is present and unchanged", w.seq);
    }
    Ok(code)
}

/// Verifies a store's chain and signed checkpoints against the home's pinned keys plus `trust`, with the unsigned
/// tail bound of the home's config (`ice verify`, and `ice migrate` on its source before copying anything).
pub fn verify_store(
    home: &IceHome,
    store: &dyn ice_store::Store,
    trust: &[String],
    from_checkpoint: bool,
    witnessed: Option<ice_store::Witnessed>,
) -> Result<Result<ice_store::SignedSummary, ice_core::VerifyFailure>, CliError> {
    let mut trusted_keys = home.pinned_keys()?;
    trusted_keys.extend(trust.iter().cloned());
    if trusted_keys.is_empty() {
        return Err(CliError::Coded(
            ErrorCode::NoPinnedKey,
            "no key to verify checkpoint signatures against: .ice/keys/ledger.pub is missing and no --trust-key was given"
                .into(),
        ));
    }
    let tail_bound = home.config().runtime.unsigned_tail_bound();
    let options = VerifyOptions { trusted_keys, from_checkpoint, witnessed, from_witnessed: false };
    let bar = crate::bench::progress_bar(store.head()?.map_or(0, |h| h.seq.0), "verifying");
    let result = verify_ledger_signed(store, &options, &mut |p| bar.set_position(p.checked))?;
    bar.finish_and_clear();
    Ok(result.and_then(|s| ice_store::check_signed_coverage(s, tail_bound)))
}

fn report_verify(
    result: Result<ice_store::SignedSummary, ice_core::VerifyFailure>,
    json_out: bool,
    secs: f64,
) -> Result<u8, CliError> {
    match result {
        Ok(s) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": true, "events": s.chain.events, "head_seq": s.chain.head.seq.0,
                        "head_hash": s.chain.head.hash.to_hex(), "checkpoints": s.checkpoints,
                        "started_at_seq": s.started_at, "unsigned_tail": s.unsigned_tail, "seconds": secs})
                );
            } else {
                let from = if s.started_at > 1 {
                    format!(" from seq {} (anchored by a checkpoint)", s.started_at)
                } else {
                    String::new()
                };
                println!(
                    "ok: {} events verified{from} in {:.3}s; head seq {} hash {}",
                    s.chain.events, secs, s.chain.head.seq, s.chain.head.hash
                );
                println!(
                    "  {} signed checkpoint(s) verified; {} event(s) after the last checkpoint (chain only)",
                    s.checkpoints, s.unsigned_tail
                );
            }
            Ok(exit::OK)
        }
        Err(f) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "first_bad_seq": f.seq.0, "code": f.code.as_str(), "reason": f.message})
                );
            } else {
                println!("FAILED at seq {}: [{}] {}", f.seq, f.code, f.message);
                eprintln!("  hint: {}", f.code.hint());
            }
            Ok(exit::CHECK_FAILED)
        }
    }
}

/// `ice replay`.
pub fn replay(home: &IceHome, json_out: bool) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let total = rt.store().head()?.map_or(0, |h| h.seq.0);
    let bar = crate::bench::progress_bar(total, "replaying");
    let report = rt.replay(&mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    if json_out {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else {
        let rate = report.events as f64 / (report.elapsed_ms.max(1) as f64 / 1000.0);
        println!("replayed {} events in {} ms ({rate:.0} events/s)", report.events, report.elapsed_ms);
        println!("  state root  {}", report.state_root);
        let from = if report.live_started_from > 0 {
            format!(" (loaded from the snapshot at seq {}, then folded)", report.live_started_from)
        } else {
            String::new()
        };
        println!("  live root   {}{from}", report.live_root);
        println!(
            "  {} checkpoint state root(s) compared; {} decision(s) re-evaluated",
            report.checkpoints, report.decisions
        );
        if let Some(d) = &report.divergence {
            println!(
                "DIVERGED: agrees through seq {}, differs by seq {} ({}): expected {}, replayed {}",
                d.agree_through, d.differ_by, d.what, d.expected_root, d.replayed_root
            );
        }
        for m in &report.decision_mismatches {
            println!("DECISION DIFFERS  proposal {} (seq {}): {}", m.proposal_id, m.seq, m.detail);
        }
        if report.ok() {
            println!("ok: replayed state equals the live state; every recorded decision reproduces");
        }
    }
    Ok(if report.ok() { exit::OK } else { exit::CHECK_FAILED })
}

/// `ice what-if`.
pub fn what_if(
    home: &IceHome,
    policies: &Path,
    since: Option<&str>,
    run: Option<&str>,
    json_out: bool,
) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let candidate = PolicyBundle::load_dir(policies)
        .and_then(|b| b.compile())
        .map_err(|r| CliError::Coded(r.code, format!("candidate policies in {}: {}", policies.display(), r.message)))?;
    let since = since.map(|s| crate::commands::parse_time_or_age(s, rt.now())).transpose()?;
    let run = run.map(|r| resolve_run(&rt, r)).transpose()?;
    let total = rt.store().head()?.map_or(0, |h| h.seq.0);
    let bar = crate::bench::progress_bar(total, "evaluating");
    let report = rt.what_if(&candidate, WhatIfFilter { since, run }, &mut |done, _| bar.set_position(done))?;
    bar.finish_and_clear();
    if json_out {
        println!("{}", serde_json::to_value(&report).unwrap_or_default());
    } else {
        println!(
            "candidate policy set {}: {} decision(s) evaluated, {} would change",
            &report.candidate_hash[..16.min(report.candidate_hash.len())],
            report.evaluated,
            report.changes.len()
        );
        for (flip, n) in &report.counts {
            println!("  {flip:<28} {n}");
        }
        for c in &report.changes {
            println!(
                "  {} → {}  proposal {} (seq {})  {} {} {}  [{}]",
                c.recorded.as_str(),
                c.replayed.as_str(),
                c.proposal_id,
                c.seq,
                c.actor,
                c.action,
                c.resource,
                c.policies.join(", ")
            );
        }
    }
    Ok(if report.changes.is_empty() { exit::OK } else { exit::CHECK_FAILED })
}

/// `ice checkpoint`.
pub fn checkpoint(home: &IceHome) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    let who = crate::commands::caller(&rt, None)?;
    rt.require(&who, ice_core::Role::Operator, "checkpoint")?;
    match rt.checkpoint()? {
        Some(e) => {
            let c: ice_core::checkpoint::CheckpointPayload = serde_json::from_str(e.payload.as_str())
                .map_err(|err| CliError::Coded(ErrorCode::CheckpointInvalid, err.to_string()))?;
            println!(
                "checkpoint at seq {}: covers {}..={}, merkle {}…, state {}…, signed by {}…",
                e.seq,
                c.from_seq,
                c.to_seq,
                &c.merkle_root[..16],
                &c.state_root[..16],
                &c.public_key[..16]
            );
        }
        None if home.signing_key()?.is_none() => {
            return Err(CliError::Coded(
                ErrorCode::BadConfig,
                format!(
                    "this process cannot use the signing key ({:?}): run `ice checkpoint` as the user that holds it",
                    home.key_spec()?
                ),
            ));
        }
        None => println!("nothing to checkpoint (or this instance does not hold the ledger's key)"),
    }
    Ok(exit::OK)
}

/// `ice key`.
pub fn key(home: &IceHome, ledger: bool) -> Result<u8, CliError> {
    if ledger {
        let keys = home.trusted_keys()?;
        let first =
            keys.first().cloned().ok_or_else(|| CliError::Coded(ErrorCode::NotFound, "no trusted key".into()))?;
        println!("{first}");
    } else {
        println!("{}", home.public_key()?);
    }
    Ok(exit::OK)
}
