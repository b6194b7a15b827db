//! The C2SP tlog-witness protocol, both sides.
//!
//! `ice tlog-witness` is a witness: an HTTP service answering `POST /add-checkpoint` for the logs it is configured
//! with (origin → Ed25519 key). It checks the checkpoint's signature, that the old size is the size it cosigned last
//! for that origin (409 with its size otherwise), and the RFC 6962 consistency proof from that checkpoint (422 when
//! it does not verify); then it records the new size and root — durably, before answering — and answers with a
//! `cosignature/v1` line. Checking and recording happen under one lock, so two requests cannot roll it back.
//!
//! `ice tlog witness --url URL` is the log's side: it submits the ledger's latest signed checkpoint with a
//! consistency proof from whatever size the witness holds (asking first with `old 0`, then with the size a 409
//! names), verifies the cosignature when given the witness's key, and prints the cosigned checkpoint note.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use ice_core::ErrorCode;
use ice_core::checkpoint::from_hex;
use ice_core::tlog::{
    NoteCheckpoint, TreeHash, cosignature_line, cosigned_message, note_key_id, parse_add_checkpoint,
    parse_checkpoint_note, verify_consistency,
};
use ice_runtime::signer::CheckpointSigner;
use serde::{Deserialize, Serialize};

use crate::exit;
use crate::render::CliError;

/// Largest request body.
const MAX_BODY: usize = 64 * 1024;

/// What the witness remembers per log: the latest checkpoint it cosigned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct WitnessState {
    format: String,
    /// origin → (size, base64 root).
    logs: BTreeMap<String, (u64, String)>,
}

const FORMAT: &str = "ice-tlog-witness/1";

struct Witness {
    name: String,
    signer: CheckpointSigner,
    logs: BTreeMap<String, [u8; 32]>,
    path: PathBuf,
    state: tokio::sync::Mutex<WitnessState>,
}

fn bad(message: String) -> CliError {
    CliError::Coded(ErrorCode::BadArgument, message)
}

fn public_key(hex: &str) -> Result<[u8; 32], CliError> {
    from_hex(hex).and_then(|b| b.try_into().ok()).ok_or_else(|| bad(format!("`{hex}` is not a hex ed25519 public key")))
}

/// Runs the witness until interrupted.
pub fn serve(state: &Path, key: Option<&Path>, listen: &str, name: &str, logs: &[String]) -> Result<u8, CliError> {
    let key_path = key.map_or_else(|| state.with_extension("key"), Path::to_path_buf);
    let signer = crate::witness_cmds::load_or_create_key(&key_path)?;
    let mut known = BTreeMap::new();
    for l in logs {
        let (origin, hex) = l.rsplit_once('=').ok_or_else(|| bad(format!("--log `{l}`: give ORIGIN=HEXKEY")))?;
        known.insert(origin.to_owned(), public_key(hex)?);
    }
    if known.is_empty() {
        return Err(bad("give at least one --log ORIGIN=HEXKEY (the logs this witness cosigns)".into()));
    }
    let remembered = match std::fs::read_to_string(state) {
        Ok(text) => {
            serde_json::from_str::<WitnessState>(&text).ok().filter(|s| s.format == FORMAT).ok_or_else(|| {
                CliError::Coded(ErrorCode::WitnessStateInvalid, format!("{} is not a {FORMAT} state", state.display()))
            })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            WitnessState { format: FORMAT.into(), logs: BTreeMap::new() }
        }
        Err(e) => {
            return Err(CliError::Coded(
                ErrorCode::WitnessStateInvalid,
                format!("cannot read {}: {e}", state.display()),
            ));
        }
    };
    let witness = Arc::new(Witness {
        name: name.to_owned(),
        signer,
        logs: known,
        path: state.to_path_buf(),
        state: tokio::sync::Mutex::new(remembered),
    });
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build().map_err(|e| {
            CliError::Coded(ErrorCode::StoreUnavailable, format!("cannot start the async runtime: {e}"))
        })?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CliError::Coded(ErrorCode::BadConfig, format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| bad(e.to_string()))?;
        println!(
            "ice tlog-witness: listening on http://{addr} as {} key {}",
            witness.name,
            witness.signer.public_hex()
        );
        let app = Router::new()
            .route("/add-checkpoint", post(add_checkpoint))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(witness);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("the witness stopped: {e}")))?;
        Ok(exit::OK)
    })
}

fn answer(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

/// Whether one of the note's signatures is `key`'s over its body.
fn signed_by(note: &NoteCheckpoint, key: &[u8; 32]) -> bool {
    let Ok(verifying) = VerifyingKey::from_bytes(key) else { return false };
    note.signatures.iter().any(|(name, id, sig)| {
        *id == note_key_id(name, key)
            && <[u8; 64]>::try_from(sig.as_slice())
                .is_ok_and(|s| verifying.verify(note.body.as_bytes(), &Signature::from_bytes(&s)).is_ok())
    })
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: Bytes) -> Response {
    let Ok(text) = std::str::from_utf8(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the body is not UTF-8\n".into());
    };
    let req = match parse_add_checkpoint(text) {
        Ok(r) => r,
        Err(why) => return answer(StatusCode::BAD_REQUEST, format!("{why}\n")),
    };
    let Some(note) = parse_checkpoint_note(&req.note) else {
        return answer(StatusCode::BAD_REQUEST, "the checkpoint is not a signed tlog-checkpoint note\n".into());
    };
    let Some(key) = w.logs.get(&note.origin) else {
        return answer(StatusCode::NOT_FOUND, format!("unknown log origin `{}`\n", note.origin));
    };
    if !signed_by(&note, key) {
        return answer(StatusCode::FORBIDDEN, "no signature verifies with the log's key\n".into());
    }
    if req.old > note.size {
        return answer(
            StatusCode::BAD_REQUEST,
            format!("old size {} is beyond the checkpoint's {}\n", req.old, note.size),
        );
    }
    // Check and record under one lock: a concurrent request must not roll the recorded size back.
    let mut state = w.state.lock().await;
    let (size, root) = state.logs.get(&note.origin).cloned().unwrap_or((0, String::new()));
    if req.old != size {
        return (StatusCode::CONFLICT, [(header::CONTENT_TYPE, "text/x.tlog.size")], format!("{size}\n"))
            .into_response();
    }
    let known: Option<TreeHash> = B64.decode(&root).ok().and_then(|b| b.try_into().ok());
    let consistent = match (req.old, known) {
        (0, _) => true,
        (old, Some(old_root)) if old == note.size => old_root == note.root,
        (old, Some(old_root)) => verify_consistency(old, note.size, &old_root, &note.root, &req.proof),
        (_, None) => false,
    };
    if !consistent {
        let status = if req.old == note.size { StatusCode::CONFLICT } else { StatusCode::UNPROCESSABLE_ENTITY };
        tracing::warn!(target: "ice_witness", origin = %note.origin, old = req.old, new = note.size, "inconsistent checkpoint refused");
        return answer(status, "the checkpoint is not consistent with the one cosigned before\n".into());
    }
    let mut next = state.clone();
    next.logs.insert(note.origin.clone(), (note.size, B64.encode(note.root)));
    let persisted = serde_json::to_string_pretty(&next)
        .map_err(|e| e.to_string())
        .and_then(|t| crate::witness_cmds::write_private(&w.path, &format!("{t}\n")).map_err(|e| format!("{e:?}")));
    if let Err(e) = persisted {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot record the checkpoint: {e}\n"));
    }
    *state = next;
    let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match w.signer.sign(cosigned_message(timestamp, &note.body).as_bytes()) {
        Ok(sig) => answer(StatusCode::OK, cosignature_line(&w.name, &w.signer.public_key(), timestamp, &sig)),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot sign: {e}\n")),
    }
}

/// The log's side: submits `note` (of `size` with `root`) built by the caller, proving consistency with
/// `proof_from(old)` from whatever size the witness holds; returns the cosignature lines.
pub fn submit(
    url: &str,
    note: &str,
    proof_from: &dyn Fn(u64) -> Result<Vec<TreeHash>, CliError>,
) -> Result<Result<String, String>, CliError> {
    let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
    let send = |old: u64| -> Result<ice_effects::Reply, CliError> {
        let mut body = format!("old {old}\n");
        for h in proof_from(old)? {
            body.push_str(&B64.encode(h));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(note);
        let headers = [("Content-Type".to_owned(), "text/plain".to_owned())];
        ice_effects::post(&endpoint, &headers, body.as_bytes(), std::time::Duration::from_secs(30), 1 << 20)
            .map_err(|e| CliError::Coded(ErrorCode::StoreUnavailable, format!("{endpoint}: {e}")))
    };
    let mut reply = send(0)?;
    if reply.status == 409 {
        let held = String::from_utf8_lossy(&reply.body).trim().parse::<u64>().ok();
        match held {
            Some(old) if old > 0 => reply = send(old)?,
            _ => return Ok(Err(format!("409: {}", String::from_utf8_lossy(&reply.body).trim()))),
        }
    }
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    Ok(if reply.status == 200 { Ok(text) } else { Err(format!("{}: {}", reply.status, text.trim())) })
}
