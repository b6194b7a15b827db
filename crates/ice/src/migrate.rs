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
    // Opening a SQLite path creates it: look only at a destination that exists.
    let sqlite_absent = to.strip_prefix("sqlite:").is_some_and(|p| !home.dir().join(p).exists());
    if !sqlite_absent {
        let dest = home.open_store_url(to)?;
        if let Some(h) = dest.head()? {
            return Err(CliError::Coded(
                ErrorCode::BadArgument,
                format!(
                    "the destination {} already holds {} events; migrate into an empty ledger",
                    dest.describe(),
                    h.seq
                ),
            ));
        }
    }
    let Some(source_head) = source.head()? else {
        println!("the source ledger is empty: nothing to copy");
        return Ok(exit::OK);
    };
    // The source must prove itself first (chain, signed checkpoints against the pinned key, unsigned tail): a copy
    // re-seals every event, so copying a rewritten chain would launder it.
    if let Err(f) = crate::proof_cmds::verify_store(home, &*source, &[], false, None)? {
        println!("FAILED: the source does not verify at seq {}: [{}] {}; nothing was copied", f.seq, f.code, f.message);
        eprintln!("  hint: {}", f.code.hint());
        return Ok(exit::CHECK_FAILED);
    }
    // The copy is filled where nobody looks (a temporary file, a staging schema) and moved into place only once
    // proven, so a failed or interrupted copy never leaves a half ledger where the real one is expected.
    let target = Target::new(home, to)?;
    let outcome = copy_and_prove(home, &*source, source_head, target.url());
    target.finish(outcome)
}

/// Where the copy is written until it is proven.
enum Target {
    /// A temporary file beside the destination, renamed into place on success and removed on failure.
    Sqlite { url: String, tmp: std::path::PathBuf, path: std::path::PathBuf },
    /// A staging schema in the destination database, moved into the destination's schema on success and dropped
    /// on failure.
    #[cfg(feature = "postgres")]
    Postgres { url: String, staging: Box<ice_store_postgres::Staging> },
    /// Anything else is opened directly (and refused by the store URL's own check).
    Direct(String),
}

impl Target {
    fn new(home: &IceHome, to: &str) -> Result<Self, CliError> {
        if let Some(path) = to.strip_prefix("sqlite:") {
            let path = home.dir().join(path);
            let tmp = path.with_file_name(format!(
                ".{}.migrating-{}",
                path.file_name().map_or_else(|| "ledger".into(), |n| n.to_string_lossy()),
                std::process::id()
            ));
            return Ok(Self::Sqlite { url: format!("sqlite:{}", tmp.display()), tmp, path });
        }
        #[cfg(feature = "postgres")]
        if to.starts_with("postgres://") || to.starts_with("postgresql://") || to.contains("dbname=") {
            let staging = ice_store_postgres::Staging::create(to, std::time::Duration::from_secs(10))?;
            let url = match staging.url(to) {
                Ok(url) => url,
                Err(e) => {
                    let _ = staging.discard();
                    return Err(e.into());
                }
            };
            return Ok(Self::Postgres { url, staging: Box::new(staging) });
        }
        Ok(Self::Direct(to.to_owned()))
    }

    fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Direct(url) => url,
            #[cfg(feature = "postgres")]
            Self::Postgres { url, .. } => url,
        }
    }

    fn finish(self, outcome: Result<u8, CliError>) -> Result<u8, CliError> {
        let proven = matches!(outcome, Ok(code) if code == exit::OK);
        match self {
            Self::Direct(_) => outcome,
            Self::Sqlite { tmp, path, .. } => {
                let sidecars = |p: &std::path::Path| {
                    ["", "-wal", "-shm"].map(|s| std::path::PathBuf::from(format!("{}{s}", p.display())))
                };
                if proven {
                    for (from, to) in sidecars(&tmp).into_iter().zip(sidecars(&path)) {
                        if from.exists() {
                            std::fs::rename(&from, &to).map_err(|e| {
                                CliError::Coded(
                                    ErrorCode::StoreUnavailable,
                                    format!("cannot move the copy into place: {e}"),
                                )
                            })?;
                        } else {
                            let _ = std::fs::remove_file(&to);
                        }
                    }
                } else {
                    for f in sidecars(&tmp) {
                        let _ = std::fs::remove_file(f);
                    }
                }
                outcome
            }
            #[cfg(feature = "postgres")]
            Self::Postgres { staging, .. } => {
                let schema = staging.schema().to_owned();
                if !proven {
                    staging.discard()?;
                    return outcome;
                }
                match staging.promote() {
                    Ok(dest) => {
                        println!("moved the proven copy from staging schema {schema} into schema {dest}");
                        outcome
                    }
                    Err(e) => {
                        // A failed move changed nothing at the destination; the copy goes with its schema.
                        let _ = staging.discard();
                        Err(e.into())
                    }
                }
            }
        }
    }
}

/// Copies every event, checking each re-sealed hash, then verifies the copy end to end against the source head.
fn copy_and_prove(
    home: &IceHome,
    source: &dyn ice_store::Store,
    source_head: ice_core::ChainHead,
    to: &str,
) -> Result<u8, CliError> {
    let dest = home.open_store_url(to)?;
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
