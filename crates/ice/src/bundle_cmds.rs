//! `ice export` and `ice verify --bundle`: portable audit bundles (format: docs/audit-bundle.md).

use std::path::Path;

use ice_core::ErrorCode;
use ice_core::bundle::{BundleReport, KeySource, verify_bundle_witnessed};
use ice_runtime::{ExportSelection, IceHome};
use serde_json::json;

use crate::commands::resolve_run;
use crate::exit;
use crate::render::CliError;

fn parse_range(text: &str) -> Result<(u64, u64), CliError> {
    let bad = || CliError::Coded(ErrorCode::BadArgument, format!("--range `{text}` is not A..B (seqs, A <= B)"));
    let (a, b) = text.split_once("..").ok_or_else(bad)?;
    let (a, b) = (a.trim().parse::<u64>().map_err(|_| bad())?, b.trim().parse::<u64>().map_err(|_| bad())?);
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// How much of a verified bundle a witness covers, for the summary line.
fn witnessing(r: &BundleReport) -> String {
    match r.witness_keys_from {
        None => String::new(),
        Some(from) => format!(
            "; {} of {} event(s) under a checkpoint a witness cosigned ({} cosignature(s), witness key{})",
            r.events_witnessed,
            r.events_verified,
            r.cosignatures_verified,
            if from == KeySource::Pinned { " pinned" } else { " from the bundle: pass --trust-witness to pin" }
        ),
    }
}

/// `ice export`.
pub fn export(
    home: &IceHome,
    run: Option<&str>,
    range: Option<&str>,
    output: &Path,
    witness: Option<(&Path, Option<&str>)>,
) -> Result<u8, CliError> {
    let logs = home.pinned_keys()?;
    let witness = witness.map(|(path, key)| ice_runtime::read_witness(path, key, &logs)).transpose()?;
    let rt = home.open_runtime()?;
    let selection = match (run, range) {
        (Some(r), _) => ExportSelection::Run(resolve_run(&rt, r)?),
        (None, Some(text)) => {
            let (a, b) = parse_range(text)?;
            ExportSelection::Range(a, b)
        }
        (None, None) => return Err(CliError::Coded(ErrorCode::BadArgument, "pass --run RUN or --range A..B".into())),
    };
    let bundle = rt.export_bundle(selection, home.trusted_keys()?, witness)?;
    let report = verify_bundle_witnessed(&bundle, &home.trusted_keys()?, &[])
        .map_err(|e| CliError::Coded(e.code, e.to_string()))?;
    let tmp = output.with_extension("tmp");
    std::fs::write(&tmp, bundle.to_jsonl())
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot write {}: {e}", output.display())))?;
    println!(
        "wrote {}: {} events (seq {}..={}), {} checkpoint(s), Merkle proofs, public key{}; verify offline with \
         `ice verify --bundle {}`",
        output.display(),
        report.events_verified,
        report.first_seq.unwrap_or(0),
        report.last_seq.unwrap_or(0),
        report.checkpoints_verified,
        witnessing(&report),
        output.display()
    );
    Ok(exit::OK)
}

/// `ice verify --bundle FILE`: offline, no ledger needed.
pub fn verify_bundle(path: &Path, trust: &[String], witnesses: &[String], json_out: bool) -> Result<u8, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Coded(ErrorCode::NotFound, format!("cannot read {}: {e}", path.display())))?;
    let result =
        ice_core::bundle::Bundle::from_jsonl(&text).and_then(|b| verify_bundle_witnessed(&b, trust, witnesses));
    match result {
        Ok(r) => {
            if json_out {
                println!("{}", json!({"ok": true, "report": r}));
            } else {
                println!(
                    "ok: {} events and {} checkpoint(s) verified offline (seq {}..={}); {} chain link(s); keys from {}{}{}",
                    r.events_verified,
                    r.checkpoints_verified,
                    r.first_seq.unwrap_or(0),
                    r.last_seq.unwrap_or(0),
                    r.links_verified,
                    if r.keys_from == KeySource::Pinned {
                        "--trust-key"
                    } else {
                        "the bundle (pass --trust-key to pin)"
                    },
                    if r.range_complete { "; the range is complete" } else { "" },
                    witnessing(&r)
                );
            }
            Ok(exit::OK)
        }
        Err(e) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "code": e.code.as_str(), "seq": e.seq, "line": e.line, "reason": e.message})
                );
            } else {
                println!("FAILED: [{}] {e}", e.code);
                eprintln!("  hint: {}", e.hint());
            }
            Ok(exit::CHECK_FAILED)
        }
    }
}
