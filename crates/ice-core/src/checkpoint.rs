//! Signed checkpoints: the `Checkpoint` event's payload and the exact bytes its signature covers.
//!
//! A checkpoint covers the events `from_seq..=to_seq` that precede it (the range starts right after the previous
//! checkpoint's range, so consecutive checkpoints tile the ledger). It records the hash of the last covered event,
//! the Merkle root over the covered events' hashes (see [`crate::merkle`]) and the root of the derived state after
//! folding `to_seq`, and is signed with the runtime's ed25519 key. The signature makes a rewritten history
//! detectable even if an attacker re-hashes the whole chain: they cannot re-sign without the key.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};

/// Domain separator of the signed message (version 1).
pub const SIGNING_DOMAIN: &[u8] = b"ice.checkpoint.v1\n";

/// Payload of a `Checkpoint` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPayload {
    /// First covered seq.
    pub from_seq: u64,
    /// Last covered seq (the event just before the checkpoint).
    pub to_seq: u64,
    /// Hex hash of the event at `to_seq`.
    pub to_hash: String,
    /// Hex Merkle root over the hashes of events `from_seq..=to_seq`.
    pub merkle_root: String,
    /// Hex root of the derived state after folding `to_seq`.
    pub state_root: String,
    /// Hex ed25519 public key that signed.
    pub public_key: String,
    /// Hex ed25519 signature over [`CheckpointPayload::signing_message`].
    pub signature: String,
}

impl CheckpointPayload {
    /// The bytes the signature covers: the domain, then every field but the signature, length-prefixed.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(256);
        m.extend_from_slice(SIGNING_DOMAIN);
        m.extend_from_slice(&self.from_seq.to_be_bytes());
        m.extend_from_slice(&self.to_seq.to_be_bytes());
        for field in [&self.to_hash, &self.merkle_root, &self.state_root, &self.public_key] {
            m.extend_from_slice(&(field.len() as u64).to_be_bytes());
            m.extend_from_slice(field.as_bytes());
        }
        m
    }

    /// Checks the signature against the payload's own public key (whether that key is *trusted* is the caller's
    /// question).
    pub fn verify_signature(&self) -> Result<(), Rejection> {
        let bad = |what: &str| Rejection::new(ErrorCode::CheckpointInvalid, format!("checkpoint {what}"));
        let key: [u8; 32] = hex32(&self.public_key).ok_or_else(|| bad("public key is not 32 hex bytes"))?;
        let sig: [u8; 64] = hex_bytes(&self.signature)
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("signature is not 64 hex bytes"))?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| bad("public key is invalid"))?;
        key.verify_strict(&self.signing_message(), &ed25519_dalek::Signature::from_bytes(&sig))
            .map_err(|_| bad("signature does not verify"))
    }
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    hex_bytes(s)?.try_into().ok()
}

/// Lowercase hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lowercase or uppercase hex.
pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    hex_bytes(s)
}
