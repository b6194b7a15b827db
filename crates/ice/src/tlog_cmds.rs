//! `ice tlog`: the ledger as an RFC 6962 transparency log with C2SP checkpoints (see `ice_core::tlog`).

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use ice_core::ErrorCode;
use ice_core::checkpoint::from_hex;
use ice_core::tlog::{
    TreeHash, checkpoint_body, consistency_proof, leaf_hash, note_key_id, parse_checkpoint_note, signed_note,
    tree_hash, verify_consistency,
};
use ice_runtime::{IceHome, Runtime};

use crate::cli::TlogCommand;
use crate::exit;
use crate::render::CliError;

/// Runs an `ice tlog` command.
pub fn run(home: &IceHome, cmd: TlogCommand) -> Result<u8, CliError> {
    let rt = home.open_runtime()?;
    match cmd {
        TlogCommand::Checkpoint { size, origin } => checkpoint(home, &rt, size, origin),
        TlogCommand::Consistency { from, to, witness_request } => consistency(home, &rt, from, to, witness_request),
        TlogCommand::Verify { note, key } => verify(home, &rt, &note, key.as_deref()),
        TlogCommand::Witness { url, witness_key, witness_name } => {
            witness(home, &rt, &url, witness_key.as_deref(), witness_name.as_deref())
        }
    }
}

/// Submits the latest signed checkpoint to the witness at `url` and prints the note with its cosignature.
fn witness(home: &IceHome, rt: &Runtime, url: &str, key: Option<&str>, name: Option<&str>) -> Result<u8, CliError> {
    let size = rt
        .with_state(|s| s.last_checkpoint().map(|m| m.to_seq))?
        .ok_or_else(|| bad("no signed checkpoint yet: run `ice checkpoint`".into()))?;
    let all = leaves(rt, size)?;
    let root = tree_hash(&all);
    let note = signed_checkpoint(home, rt, None, size, &root)?;
    let proof_from = |old: u64| -> Result<Vec<TreeHash>, CliError> {
        if old > size {
            return Err(CliError::Coded(
                ErrorCode::WitnessMismatch,
                format!(
                    "the witness holds a tree of {old} events; this ledger's checkpoint covers {size} (truncated?)"
                ),
            ));
        }
        let m = usize::try_from(old).map_err(|_| bad("size too large".into()))?;
        Ok(if m == 0 { Vec::new() } else { consistency_proof(m, &all) })
    };
    let lines = match crate::tlog_witness::submit(url, &note, &proof_from)? {
        Ok(lines) => lines,
        Err(why) => {
            println!("FAILED: the witness refused the checkpoint of {size} events ({why})");
            return Ok(exit::CHECK_FAILED);
        }
    };
    if let (Some(key), Some(name)) = (key, name) {
        let public: [u8; 32] = from_hex(key)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad(format!("`{key}` is not a hex ed25519 public key")))?;
        let body = checkpoint_body(&parse_checkpoint_note(&note).map(|n| n.origin).unwrap_or_default(), size, &root);
        let verified = ice_core::tlog::find_cosignature(&lines, name, &public).is_some_and(|(t, sig)| {
            VerifyingKey::from_bytes(&public).is_ok_and(|k| {
                k.verify(ice_core::tlog::cosigned_message(t, &body).as_bytes(), &Signature::from_bytes(&sig)).is_ok()
            })
        });
        if !verified {
            println!("FAILED: no cosignature by {name} with key {key} verifies");
            return Ok(exit::CHECK_FAILED);
        }
    }
    print!("{note}{lines}");
    Ok(exit::OK)
}

fn bad(message: String) -> CliError {
    CliError::Coded(ErrorCode::BadArgument, message)
}

fn head(rt: &Runtime) -> Result<u64, CliError> {
    Ok(rt.store().head()?.map_or(0, |h| h.seq.0))
}

/// The RFC 6962 leaves of events `1..=size`.
fn leaves(rt: &Runtime, size: u64) -> Result<Vec<TreeHash>, CliError> {
    let top = head(rt)?;
    if size > top {
        return Err(bad(format!("tree size {size} is beyond the ledger's head (seq {top})")));
    }
    Ok(rt.range_hashes(1, size)?.iter().map(|h| leaf_hash(h)).collect())
}

fn checkpoint(home: &IceHome, rt: &Runtime, size: Option<u64>, origin: Option<String>) -> Result<u8, CliError> {
    let size = match size {
        Some(s) => s,
        None => rt
            .with_state(|s| s.last_checkpoint().map(|m| m.to_seq))?
            .ok_or_else(|| bad("no signed checkpoint yet: pass --size".into()))?,
    };
    let root = tree_hash(&leaves(rt, size)?);
    print!("{}", signed_checkpoint(home, rt, origin, size, &root)?);
    Ok(exit::OK)
}

/// The C2SP checkpoint note for the tree of `size` events with `root`, signed with the ledger's key.
fn signed_checkpoint(
    home: &IceHome,
    rt: &Runtime,
    origin: Option<String>,
    size: u64,
    root: &TreeHash,
) -> Result<String, CliError> {
    // Signing a statement about the ledger with its key is an operator's act, as `ice checkpoint` is.
    let who = crate::commands::caller(rt, None)?;
    rt.require(&who, ice_core::Role::Operator, "tlog checkpoint")?;
    let signer = home.signing_key()?.ok_or_else(|| {
        CliError::Coded(ErrorCode::BadConfig, "this process cannot use the ledger's signing key".into())
    })?;
    let public = signer.public_key();
    let origin = origin.unwrap_or_else(|| format!("ice-ledger/{}", signer.public_hex()));
    let body = checkpoint_body(&origin, size, root);
    let signature = signer.sign(body.as_bytes()).map_err(|e| CliError::Coded(ErrorCode::BadConfig, e))?;
    Ok(signed_note(&body, &origin, &public, &signature))
}

fn consistency(home: &IceHome, rt: &Runtime, from: u64, to: Option<u64>, request: bool) -> Result<u8, CliError> {
    let to = match to {
        Some(t) => t,
        None => head(rt)?,
    };
    if from > to {
        return Err(bad(format!("--from {from} is beyond --to {to}")));
    }
    let all = leaves(rt, to)?;
    let m = usize::try_from(from).map_err(|_| bad("--from is too large".into()))?;
    let (old, new) = (tree_hash(&all[..m]), tree_hash(&all));
    let proof = consistency_proof(m, &all);
    if !verify_consistency(from, to, &old, &new, &proof) {
        return Err(CliError::Coded(ErrorCode::LedgerCorrupt, "the computed proof does not verify".into()));
    }
    if request {
        // tlog-witness add-checkpoint: `old SIZE`, the proof lines, a blank line, the signed checkpoint.
        let note = signed_checkpoint(home, rt, None, to, &new)?;
        println!("old {from}");
        for h in &proof {
            println!("{}", B64.encode(h));
        }
        print!("\n{note}");
        return Ok(exit::OK);
    }
    println!("old {from} {}", B64.encode(old));
    println!("new {to} {}", B64.encode(new));
    for h in &proof {
        println!("{}", B64.encode(h));
    }
    Ok(exit::OK)
}

fn verify(home: &IceHome, rt: &Runtime, path: &Path, key: Option<&str>) -> Result<u8, CliError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
    let note = parse_checkpoint_note(&text)
        .ok_or_else(|| bad(format!("{} is not a signed tlog-checkpoint note", path.display())))?;
    let key_hex =
        match key {
            Some(k) => k.to_owned(),
            None => home.pinned_keys()?.into_iter().next().ok_or_else(|| {
                CliError::Coded(ErrorCode::NoPinnedKey, "no pinned ledger key: pass --key HEX".into())
            })?,
        };
    let public: [u8; 32] = from_hex(&key_hex)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(format!("`{key_hex}` is not a hex ed25519 public key")))?;
    let verifying = VerifyingKey::from_bytes(&public).map_err(|e| bad(format!("the key: {e}")))?;
    let signed = note.signatures.iter().any(|(name, id, sig)| {
        *id == note_key_id(name, &public)
            && <[u8; 64]>::try_from(sig.as_slice())
                .is_ok_and(|s| verifying.verify(note.body.as_bytes(), &Signature::from_bytes(&s)).is_ok())
    });
    if !signed {
        println!("FAILED: no signature on the note verifies with key {key_hex}");
        return Ok(exit::CHECK_FAILED);
    }
    let top = head(rt)?;
    if note.size > top {
        println!("FAILED: the note covers {} events; the ledger's head is seq {top} (truncated?)", note.size);
        return Ok(exit::CHECK_FAILED);
    }
    let root = tree_hash(&leaves(rt, note.size)?);
    if root != note.root {
        println!(
            "FAILED: the note's root for size {} is {}; the ledger's events give {} (rewritten?)",
            note.size,
            B64.encode(note.root),
            B64.encode(root)
        );
        return Ok(exit::CHECK_FAILED);
    }
    println!("ok: {} signed by {key_hex}; the ledger's first {} events give its root", note.origin, note.size);
    Ok(exit::OK)
}
