//! Witnesses: someone other than the ledger's host remembers the latest signed checkpoint it saw, checks that every
//! newer one extends it (the event it cosigned is still there, unchanged, and the chain and checkpoints after it
//! verify), and cosigns the newer one. Whoever can write the ledger's disk can delete its tail and re-sign what is
//! left with the genuine key; they cannot make the ledger contain, unchanged, a checkpoint a witness cosigned after
//! the point they rewrote — so `ice verify --witness` turns a silent rewind into a failure naming the seq.
//!
//! The state is one JSON document the witness keeps (off the ledger's host): its public key and, per log (a log is
//! named by the hex public key its checkpoints are signed with), the checkpoint it cosigned last.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::checkpoint::from_hex;
use crate::error::{ErrorCode, Rejection};
use crate::ids::Timestamp;

/// The `format` of a witness state document.
pub const WITNESS_FORMAT: &str = "ice-witness/1";

/// Domain separator of the cosigned message (version 1).
const DOMAIN: &[u8] = b"ice.witness.v1\n";

/// The checkpoint a witness cosigned last for one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessedCheckpoint {
    /// Seq of the `Checkpoint` event.
    pub seq: u64,
    /// Hex hash of the `Checkpoint` event.
    pub event_hash: String,
    /// Last seq the checkpoint covers.
    pub to_seq: u64,
    /// Hex hash of the event at `to_seq`.
    pub to_hash: String,
    /// Hex Merkle root the checkpoint signed.
    pub merkle_root: String,
    /// Hex state root the checkpoint signed.
    pub state_root: String,
    /// When the witness cosigned (its own clock).
    pub witnessed_at: Timestamp,
    /// Hex ed25519 signature by the witness over [`cosign_message`].
    pub cosignature: String,
}

/// What a witness keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessState {
    /// [`WITNESS_FORMAT`].
    pub format: String,
    /// The witness's hex ed25519 public key.
    pub witness_key: String,
    /// Per log (hex public key of its checkpoints), the checkpoint cosigned last.
    pub logs: BTreeMap<String, WitnessedCheckpoint>,
}

/// The bytes a witness signs for `log`'s checkpoint `c`: the domain, then each field length-prefixed (strings) or
/// big-endian (numbers), in declaration order, the cosignature excluded.
pub fn cosign_message(log: &str, c: &WitnessedCheckpoint) -> Vec<u8> {
    let mut m = Vec::with_capacity(512);
    m.extend_from_slice(DOMAIN);
    let mut text = |s: &str| {
        m.extend_from_slice(&(s.len() as u64).to_be_bytes());
        m.extend_from_slice(s.as_bytes());
    };
    text(log);
    text(&c.event_hash);
    text(&c.to_hash);
    text(&c.merkle_root);
    text(&c.state_root);
    m.extend_from_slice(&c.seq.to_be_bytes());
    m.extend_from_slice(&c.to_seq.to_be_bytes());
    m.extend_from_slice(&c.witnessed_at.0.to_be_bytes());
    m
}

fn invalid(message: String) -> Rejection {
    Rejection::new(ErrorCode::WitnessStateInvalid, message)
}

fn key(hex: &str, what: &str) -> Result<VerifyingKey, Rejection> {
    let bytes: [u8; 32] = from_hex(hex)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid(format!("{what} `{hex}` is not a hex ed25519 public key")))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| invalid(format!("{what} is not a valid ed25519 key: {e}")))
}

impl WitnessState {
    /// An empty state for the witness with public key `witness_key` (hex).
    pub fn new(witness_key: String) -> Self {
        Self { format: WITNESS_FORMAT.to_owned(), witness_key, logs: BTreeMap::new() }
    }

    /// Decodes a state document, checking its format.
    pub fn parse(text: &str) -> Result<Self, Rejection> {
        let state: Self =
            serde_json::from_str(text).map_err(|e| invalid(format!("not a witness state document: {e}")))?;
        if state.format != WITNESS_FORMAT {
            return Err(invalid(format!("format `{}`, expected `{WITNESS_FORMAT}`", state.format)));
        }
        Ok(state)
    }

    /// The checkpoint cosigned for `log`, once its cosignature verifies with this state's witness key.
    pub fn verified(&self, log: &str) -> Result<Option<&WitnessedCheckpoint>, Rejection> {
        let Some(c) = self.logs.get(log) else { return Ok(None) };
        check_cosignature(log, &self.witness_key, c).map_err(invalid)?;
        Ok(Some(c))
    }
}

/// Checks that `c.cosignature` is `witness_key`'s (hex) signature over [`cosign_message`] for `log`; the error says
/// what is wrong, for the caller to give a code.
pub fn check_cosignature(log: &str, witness_key: &str, c: &WitnessedCheckpoint) -> Result<(), String> {
    let witness = key(witness_key, "the witness key").map_err(|r| r.message)?;
    let sig: [u8; 64] = from_hex(&c.cosignature)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "the cosignature is not 64 hex bytes".to_owned())?;
    witness
        .verify(&cosign_message(log, c), &Signature::from_bytes(&sig))
        .map_err(|_| format!("the cosignature of seq {} does not verify with the witness key", c.seq))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer, SigningKey};

    use super::*;
    use crate::checkpoint::to_hex;

    fn cosigned(witness: &SigningKey, log: &str) -> WitnessedCheckpoint {
        let mut c = WitnessedCheckpoint {
            seq: 9,
            event_hash: "aa".repeat(32),
            to_seq: 8,
            to_hash: "bb".repeat(32),
            merkle_root: "cc".repeat(32),
            state_root: "dd".repeat(32),
            witnessed_at: Timestamp::from_secs(1_900_000_000),
            cosignature: String::new(),
        };
        c.cosignature = to_hex(&witness.sign(&cosign_message(log, &c)).to_bytes());
        c
    }

    #[test]
    fn a_cosignature_verifies_and_any_change_breaks_it() {
        let witness = SigningKey::from_bytes(&[3; 32]);
        let mut state = WitnessState::new(to_hex(witness.verifying_key().as_bytes()));
        state.logs.insert("log".into(), cosigned(&witness, "log"));
        let text = serde_json::to_string(&state).unwrap();
        let back = WitnessState::parse(&text).unwrap();
        assert_eq!(back.verified("log").unwrap().map(|c| c.seq), Some(9));
        assert_eq!(back.verified("other").unwrap(), None);
        let mut moved = back.clone();
        moved.logs.get_mut("log").unwrap().seq = 7;
        assert_eq!(moved.verified("log").unwrap_err().code, ErrorCode::WitnessStateInvalid);
        let mut rekeyed = back;
        rekeyed.witness_key = to_hex(SigningKey::from_bytes(&[4; 32]).verifying_key().as_bytes());
        assert!(rekeyed.verified("log").is_err());
        assert!(WitnessState::parse(r#"{"format":"x","witness_key":"","logs":{}}"#).is_err());
    }
}
