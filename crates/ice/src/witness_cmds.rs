//! `ice witness` and the witness half of `ice verify --witness` (see `ice_core::witness`).

use std::path::{Path, PathBuf};

use ice_core::checkpoint::{CheckpointPayload, to_hex};
use ice_core::witness::{WitnessState, WitnessedCheckpoint, cosign_message};
use ice_core::{ErrorCode, EventHash, EventKind, Seq};
use ice_runtime::IceHome;
use ice_runtime::signer::{CheckpointSigner, KeySpec, create_key_file};
use ice_store::{EventQuery, Store, VerifyOptions, Witnessed, verify_ledger_signed};

use crate::exit;
use crate::render::CliError;

fn state_error(message: String) -> CliError {
    CliError::Coded(ErrorCode::WitnessStateInvalid, message)
}

/// The witness's signing key from `path` (a hex seed, read as a `file:` signing key is), created with mode 0600
/// when missing.
pub(crate) fn load_or_create_key(path: &Path) -> Result<CheckpointSigner, CliError> {
    let spec = KeySpec::File(path.to_owned());
    match CheckpointSigner::load(&spec).map_err(|e| state_error(e.message))? {
        Some(signer) => Ok(signer),
        None if !path.exists() => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| state_error(format!("no OS randomness for a key: {e}")))?;
            create_key_file(path, seed).map_err(|e| state_error(e.message))
        }
        None => Err(state_error(format!("cannot read the witness key {}", path.display()))),
    }
}

/// Writes `text` to `path` atomically (a temporary file renamed over it), mode 0600.
pub(crate) fn write_private(path: &Path, text: &str) -> Result<(), CliError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let written = opts
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| state_error(format!("cannot write {}: {e}", path.display())))
}

fn read_state(path: &Path) -> Result<Option<WitnessState>, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(WitnessState::parse(&text)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_error(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The key the ledger says its checkpoints are signed with (its `LedgerInitialized`).
fn ledger_key(store: &dyn Store) -> Result<String, CliError> {
    let first = store.read(&EventQuery { limit: 1, ..EventQuery::default() })?;
    let init = first.first().filter(|e| e.kind == EventKind::LedgerInitialized).ok_or_else(|| {
        CliError::Coded(ErrorCode::NotInitialized, "the ledger does not start with LedgerInitialized".into())
    })?;
    let p: ice_core::payloads::LedgerInitialized = serde_json::from_str(init.payload.as_str())
        .map_err(|e| CliError::Coded(ErrorCode::LedgerCorrupt, format!("LedgerInitialized: {e}")))?;
    Ok(p.runtime_public_key)
}

/// `ice witness`.
pub fn witness(home: &IceHome, state_path: &Path, key: Option<&Path>, log_key: Option<&str>) -> Result<u8, CliError> {
    let key_path = key.map_or_else(|| PathBuf::from(format!("{}.key", state_path.display())), Path::to_owned);
    let signing = load_or_create_key(&key_path)?;
    let public = signing.public_hex();
    let mut state = read_state(state_path)?.unwrap_or_else(|| WitnessState::new(public.clone()));
    if state.witness_key != public {
        return Err(state_error(format!(
            "{} was written by witness key {}, not by {} ({})",
            state_path.display(),
            state.witness_key,
            public,
            key_path.display()
        )));
    }
    let store = home.open_store()?;
    let log = ledger_key(&*store)?;
    let mismatch = |message: String| CliError::Coded(ErrorCode::WitnessMismatch, message);
    if let Some(expected) = log_key
        && !expected.eq_ignore_ascii_case(&log)
    {
        return Err(mismatch(format!("the ledger's checkpoints are signed by {log}, not by the log key {expected}")));
    }
    if log_key.is_none() && !state.logs.is_empty() && !state.logs.contains_key(&log) {
        return Err(mismatch(format!(
            "the ledger now names key {log}, which this witness has never seen (it knows {}): if this is a new log, \
             start witnessing it with --log-key {log}",
            state.logs.keys().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let previous = state.verified(&log)?.cloned();
    let witnessed = previous.as_ref().map(witnessed_of).transpose()?;
    let options =
        VerifyOptions { trusted_keys: vec![log.clone()], from_checkpoint: false, witnessed, from_witnessed: true };
    let summary = verify_ledger_signed(&*store, &options, &mut |_| {})?
        .map_err(|f| CliError::Coded(f.code, format!("not cosigning: seq {}: {}", f.seq, f.message)))?;
    let after = Seq(previous.as_ref().map_or(0, |p| p.seq));
    let newer = store.read(&EventQuery {
        after,
        kind: Some(EventKind::Checkpoint),
        limit: usize::MAX,
        ..EventQuery::default()
    })?;
    let Some(latest) = newer.last() else {
        println!(
            "nothing new: {} event(s) checked; the latest signed checkpoint is the one cosigned before{}",
            summary.chain.events,
            previous.map_or_else(String::new, |p| format!(" (seq {})", p.seq))
        );
        return Ok(exit::OK);
    };
    let c: CheckpointPayload = serde_json::from_str(latest.payload.as_str())
        .map_err(|e| CliError::Coded(ErrorCode::CheckpointInvalid, format!("seq {}: {e}", latest.seq)))?;
    let mut cosigned = WitnessedCheckpoint {
        seq: latest.seq.0,
        event_hash: latest.hash.to_hex(),
        to_seq: c.to_seq,
        to_hash: c.to_hash,
        merkle_root: c.merkle_root,
        state_root: c.state_root,
        witnessed_at: ice_core::Clock::now(&ice_runtime::SystemClock),
        cosignature: String::new(),
    };
    let cosignature = signing.sign(&cosign_message(&log, &cosigned)).map_err(state_error)?;
    cosigned.cosignature = to_hex(&cosignature);
    state.logs.insert(log.clone(), cosigned);
    let text = serde_json::to_string_pretty(&state).map_err(|e| state_error(e.to_string()))?;
    write_private(state_path, &format!("{text}\n"))?;
    println!(
        "cosigned the checkpoint at seq {} (covering ..={}) of log {log}; {}",
        latest.seq,
        c.to_seq,
        match &previous {
            Some(p) =>
                format!("it extends seq {} cosigned before ({} event(s) verified since)", p.seq, summary.chain.events),
            None => format!("first sight of this log ({} event(s) verified)", summary.chain.events),
        }
    );
    Ok(exit::OK)
}

fn witnessed_of(c: &WitnessedCheckpoint) -> Result<Witnessed, CliError> {
    let hash = EventHash::from_hex(&c.event_hash)
        .map_err(|_| state_error(format!("the event hash of seq {} is not a hash", c.seq)))?;
    Ok(Witnessed { seq: Seq(c.seq), hash })
}

/// The checkpoint a witness's state (at `path`) cosigned for this home's ledger, its cosignature checked (with
/// `witness_key` when given, else the key the state names).
pub fn witnessed_for(home: &IceHome, path: &Path, witness_key: Option<&str>) -> Result<Witnessed, CliError> {
    witnessed_of(&ice_runtime::read_witness(path, witness_key, &home.pinned_keys()?)?.checkpoint)
}
