//! `ice migrate`: copy a ledger into another, empty store and prove the copy.
//!
//! Every event is re-sealed by the destination from its original envelope (same id, run, kind, origin, declared
//! time, causes, payload), so an intact copy reproduces every seq, `prev_hash` and hash exactly. The copy is then
//! proven: the destination chain verifies end to end and its head hash equals the source's.

use ice_core::{Draft, ErrorCode, Seq, TimeSource};
use ice_runtime::IceHome;
use ice_store::{AppendRequest, EventQuery, verify_ledger};

use crate::exit;
use crate::render::CliError;

const BATCH: usize = 1000;

/// Runs the migration.
pub fn run(home: &IceHome, from: Option<&str>, to: &str) -> Result<u8, CliError> {
    // Copying a whole ledger is an operator's act, authenticated against this home's ledger.
    {
        let rt = home.open_runtime()?;
        let who = crate::commands::caller(&rt, None)?;
        rt.require(&who, ice_core::Role::Operator, "migrate")?;
    }
    let source = match from {
        Some(url) => home.open_store_url(url)?,
        None => home.open_store()?,
    };
    let dest = home.open_store_url(to)?;
    if let Some(h) = dest.head()? {
        return Err(CliError::Coded(
            ErrorCode::BadArgument,
            format!("the destination {} already holds {} events; migrate into an empty ledger", dest.describe(), h.seq),
        ));
    }
    let Some(source_head) = source.head()? else {
        println!("the source ledger is empty: nothing to copy");
        return Ok(exit::OK);
    };
    println!("copying {} events from {} to {}", source_head.seq, source.describe(), dest.describe());
    let bar = crate::bench::progress_bar(source_head.seq.0, "copying");
    let mut after = Seq(0);
    while after < source_head.seq {
        let batch =
            source.read(&EventQuery { after, until: Some(source_head.seq), limit: BATCH, ..EventQuery::default() })?;
        let Some(last) = batch.last().map(|e| e.seq) else { break };
        let drafts: Vec<Draft> = batch
            .iter()
            .map(|e| Draft {
                event_id: e.event_id,
                run_id: e.run_id,
                kind: e.kind,
                origin: e.origin.clone(),
                acted_by: e.acted_by.clone(),
                time: e.time,
                time_source: TimeSource::Declared,
                causes: e.causes.clone(),
                payload: e.payload.clone(),
            })
            .collect();
        // Nobody else may write into the destination while it is being filled: a state change by another writer is
        // refused here, and anything else that slipped in shifts the seqs, which the hash comparison below catches.
        let sealed = dest.append(AppendRequest::unchanged_since(drafts, after))?;
        for (original, copy) in batch.iter().zip(&sealed) {
            if original.hash != copy.hash {
                return Err(CliError::Coded(
                    ErrorCode::HashMismatch,
                    format!(
                        "seq {} re-seals to a different hash: the source is not intact (run `ice verify`)",
                        original.seq
                    ),
                ));
            }
        }
        after = last;
        bar.set_position(after.0);
    }
    bar.finish_and_clear();
    match verify_ledger(&*dest, &mut |_| {})? {
        Ok(summary) if summary.head.hash == source_head.hash && summary.head.seq == source_head.seq => {
            println!(
                "ok: {} events copied and verified; head seq {} hash {} matches the source",
                summary.events, summary.head.seq, summary.head.hash
            );
            Ok(exit::OK)
        }
        Ok(summary) => {
            println!(
                "FAILED: the copy ends at seq {} hash {}, the source at seq {} hash {}",
                summary.head.seq, summary.head.hash, source_head.seq, source_head.hash
            );
            Ok(exit::CHECK_FAILED)
        }
        Err(f) => {
            println!("FAILED at seq {}: [{}] {}", f.seq, f.code, f.message);
            Ok(exit::CHECK_FAILED)
        }
    }
}
