//! The ledger as a transparency log that standard tooling understands: the RFC 6962 Merkle tree over the event
//! hashes (SHA-256, leaf prefix 0x00, node prefix 0x01 — not ICE's own blake3 tree in [`crate::merkle`]),
//! consistency proofs between two tree sizes (RFC 6962 §2.1.2, verified as in RFC 9162 §2.1.4.2), and checkpoints
//! in the C2SP `tlog-checkpoint` form, signed as a C2SP `signed-note` with an Ed25519 key.
//!
//! Leaf `i` (0-based) is the 32-byte hash of the event at seq `i + 1`; a tree of size `n` covers seqs `1..=n`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type TreeHash = [u8; 32];

/// RFC 6962 leaf hash: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> TreeHash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// RFC 6962 interior node hash: SHA-256(0x01 || left || right).
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over already leaf-hashed entries (RFC 6962 §2.1); the empty tree's hash is SHA-256 of nothing.
pub fn tree_hash(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&tree_hash(&leaves[..k]), &tree_hash(&leaves[k..]))
        }
    }
}

/// The consistency proof from the tree of the first `m` leaves to the tree of all of `leaves` (RFC 6962 §2.1.2).
/// Empty when `m` is 0 or the whole tree.
pub fn consistency_proof(m: usize, leaves: &[TreeHash]) -> Vec<TreeHash> {
    fn sub(m: usize, leaves: &[TreeHash], complete: bool, out: &mut Vec<TreeHash>) {
        let n = leaves.len();
        if m == n {
            if !complete {
                out.push(tree_hash(leaves));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, &leaves[..k], complete, out);
            out.push(tree_hash(&leaves[k..]));
        } else {
            sub(m - k, &leaves[k..], false, out);
            out.push(tree_hash(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    if m > 0 && m <= leaves.len() {
        sub(m, leaves, true, &mut out);
    }
    out
}

/// Whether `proof` shows that the tree of size `old` with root `old_root` is a prefix of the tree of size `new` with
/// root `new_root` (RFC 9162 §2.1.4.2).
pub fn verify_consistency(old: u64, new: u64, old_root: &TreeHash, new_root: &TreeHash, proof: &[TreeHash]) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<TreeHash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut fn_, mut sn) = (old - 1, new - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    fr == *old_root && sr == *new_root && sn == 0
}

/// A C2SP key id: the first 4 bytes of SHA-256(name || "\n" || signature type || key).
fn key_id(name: &str, signature_type: u8, public_key: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([signature_type]);
    h.update(public_key);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The C2SP `signed-note` key id of an Ed25519 key (signature type 0x01).
pub fn note_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    key_id(name, 0x01, public_key)
}

/// The body of a C2SP `tlog-checkpoint`: origin, tree size, base64 root hash, each on its own line.
pub fn checkpoint_body(origin: &str, size: u64, root: &TreeHash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// A C2SP signed note: the body, a blank line, and one signature line `— NAME base64(key id || signature)`.
pub fn signed_note(body: &str, name: &str, public_key: &[u8; 32], signature: &[u8; 64]) -> String {
    let mut sig = note_key_id(name, public_key).to_vec();
    sig.extend_from_slice(signature);
    format!("{body}\n\u{2014} {name} {}\n", B64.encode(sig))
}

/// The key id of an Ed25519 *cosigner* (C2SP tlog-cosignature, signature type 0x04).
pub fn cosignature_key_id(name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    key_id(name, 0x04, public_key)
}

/// What a `cosignature/v1` signs: the header line, the timestamp line, and the checkpoint's whole note body.
pub fn cosigned_message(timestamp: u64, body: &str) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{body}")
}

/// A cosignature line: `— NAME base64(key id || timestamp (8 bytes, big-endian) || signature)`, newline-terminated.
pub fn cosignature_line(name: &str, public_key: &[u8; 32], timestamp: u64, signature: &[u8; 64]) -> String {
    let mut raw = cosignature_key_id(name, public_key).to_vec();
    raw.extend_from_slice(&timestamp.to_be_bytes());
    raw.extend_from_slice(signature);
    format!("\u{2014} {name} {}\n", B64.encode(raw))
}

/// The timestamp and signature of `name`'s cosignature (by `public_key`'s key id) among `lines`, if there is one.
pub fn find_cosignature(lines: &str, name: &str, public_key: &[u8; 32]) -> Option<(u64, [u8; 64])> {
    let id = cosignature_key_id(name, public_key);
    lines.lines().find_map(|line| {
        let (n, blob) = line.strip_prefix("\u{2014} ")?.rsplit_once(' ')?;
        let raw = B64.decode(blob).ok()?;
        if n != name || raw.len() != 4 + 8 + 64 || raw[..4] != id {
            return None;
        }
        let timestamp = u64::from_be_bytes(raw[4..12].try_into().ok()?);
        Some((timestamp, raw[12..].try_into().ok()?))
    })
}

/// A tlog-witness `add-checkpoint` request: the old size, the consistency proof, and the checkpoint note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the client believes the witness holds.
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<TreeHash>,
    /// The signed checkpoint note.
    pub note: String,
}

/// Parses an `add-checkpoint` body (`old N`, up to 63 base64 proof lines, an empty line, a checkpoint note); the
/// error says what is wrong (answered with 400).
pub fn parse_add_checkpoint(text: &str) -> Result<AddCheckpoint, String> {
    let (head, note) = text.split_once("\n\n").ok_or("no empty line before the checkpoint")?;
    let mut lines = head.lines();
    let old_text = lines.next().and_then(|l| l.strip_prefix("old ")).ok_or("the first line is not `old SIZE`")?;
    if old_text.starts_with('+') || (old_text.len() > 1 && old_text.starts_with('0')) {
        return Err("the old size has a sign or a leading zero".into());
    }
    let old: u64 = old_text.parse().map_err(|_| "the old size is not a number")?;
    let proof = lines
        .map(|l| B64.decode(l).ok().and_then(|b| TreeHash::try_from(b).ok()).ok_or("a proof line is not a base64 hash"))
        .collect::<Result<Vec<_>, _>>()?;
    if proof.len() > 63 {
        return Err("more than 63 proof lines".into());
    }
    if old == 0 && !proof.is_empty() {
        return Err("the proof must be empty when the old size is 0".into());
    }
    Ok(AddCheckpoint { old, proof, note: note.to_owned() })
}

/// A parsed tlog checkpoint: origin, size and root from its body, and the signature made by `name`'s key, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteCheckpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: TreeHash,
    /// The signed body (what the signature covers).
    pub body: String,
    /// Key id and signature of each signature line, with its key name.
    pub signatures: Vec<(String, [u8; 4], Vec<u8>)>,
}

/// Parses a signed `tlog-checkpoint` note (body lines, a blank line, signature lines); `None` if it is not one.
pub fn parse_checkpoint_note(text: &str) -> Option<NoteCheckpoint> {
    let (body, sigs) = text.split_once("\n\n")?;
    let body = format!("{body}\n");
    let mut lines = body.lines();
    let origin = lines.next().filter(|o| !o.is_empty())?.to_owned();
    let size_text = lines.next()?;
    if size_text.starts_with('+') || (size_text.len() > 1 && size_text.starts_with('0')) {
        return None;
    }
    let size: u64 = size_text.parse().ok()?;
    let root: TreeHash = B64.decode(lines.next()?).ok()?.try_into().ok()?;
    let mut signatures = Vec::new();
    for line in sigs.lines() {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (name, sig) = rest.rsplit_once(' ')?;
        let raw = B64.decode(sig).ok()?;
        let (id, sig) = raw.split_at_checked(4)?;
        signatures.push((name.to_owned(), id.try_into().ok()?, sig.to_vec()));
    }
    (!signatures.is_empty()).then_some(NoteCheckpoint { origin, size, root, body, signatures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_add_checkpoint_example_parses_and_cosignatures_round_trip() {
        // The request body example of c2sp.org/tlog-witness.
        let body = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
            5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\n\
            example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let req = parse_add_checkpoint(body).unwrap();
        assert_eq!((req.old, req.proof.len()), (20_852_014, 4));
        let note = parse_checkpoint_note(&req.note).unwrap();
        assert_eq!((note.origin.as_str(), note.size), ("example.com/behind-the-sofa", 20_852_163));
        for bad in [
            "old 01\n\nx",
            "old 5\nnot base64!\n\nx",
            "old 0\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\nx",
            "new 5\n\nx",
        ] {
            assert!(parse_add_checkpoint(bad).is_err(), "{bad}");
        }
        // The signed message is the spec's: header, time line, whole body.
        assert_eq!(
            cosigned_message(1_679_315_147, &note.body),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        let key = [7u8; 32];
        let line = cosignature_line("witness.example/w1", &key, 1_679_315_147, &[9u8; 64]);
        assert_eq!(find_cosignature(&line, "witness.example/w1", &key), Some((1_679_315_147, [9u8; 64])));
        assert_eq!(find_cosignature(&line, "witness.example/w2", &key), None, "the name is part of the key id");
        assert_ne!(cosignature_key_id("w", &key), note_key_id("w", &key), "0x04, not the note key's 0x01");
    }

    fn hex(h: &TreeHash) -> String {
        crate::checkpoint::to_hex(h)
    }

    fn unhex(s: &str) -> TreeHash {
        crate::checkpoint::from_hex(s).unwrap().try_into().unwrap()
    }

    /// The Certificate Transparency reference inputs (certificate-transparency, merkle_tree_test; also in
    /// transparency-dev/merkle), leaf data in hex.
    const DATA: [&str; 8] =
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn leaves() -> Vec<TreeHash> {
        DATA.iter().map(|d| leaf_hash(&crate::checkpoint::from_hex(d).unwrap())).collect()
    }

    #[test]
    fn tree_heads_match_the_reference() {
        let l = leaves();
        for n in 0..=8 {
            assert_eq!(hex(&tree_hash(&l[..n])), ROOTS[n], "size {n}");
        }
    }

    #[test]
    fn consistency_proofs_match_the_reference_and_verify() {
        let l = leaves();
        let cases: [(usize, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (m, n, expected) in cases {
            let proof = consistency_proof(m, &l[..n]);
            assert_eq!(proof.iter().map(hex).collect::<Vec<_>>(), expected, "{m} -> {n}");
            let (old, new) = (unhex(ROOTS[m]), unhex(ROOTS[n]));
            assert!(verify_consistency(m as u64, n as u64, &old, &new, &proof), "{m} -> {n} verifies");
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_a_forged_one_does_not() {
        let l: Vec<TreeHash> = (0u16..40).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=l.len() {
            let new = tree_hash(&l[..n]);
            for m in 1..=n {
                let old = tree_hash(&l[..m]);
                let proof = consistency_proof(m, &l[..n]);
                assert!(verify_consistency(m as u64, n as u64, &old, &new, &proof), "{m} -> {n}");
                if m < n {
                    let mut forged = proof.clone();
                    forged[0][0] ^= 1;
                    assert!(!verify_consistency(m as u64, n as u64, &old, &new, &forged), "forged {m} -> {n}");
                    let other = tree_hash(&l[1..=m]);
                    assert!(!verify_consistency(m as u64, n as u64, &other, &new, &proof), "other old root");
                    let mut altered = l[..n].to_vec();
                    altered[n - 1][0] ^= 1;
                    let other_new = tree_hash(&altered);
                    assert!(!verify_consistency(m as u64, n as u64, &old, &other_new, &proof), "other new root");
                    assert!(!verify_consistency(m as u64, n as u64, &old, &new, &proof[1..]), "truncated proof");
                }
            }
        }
    }

    /// The published signed-note examples (C2SP signed-note spec; golang.org/x/mod sumdb/note tests): our key id
    /// and signature line reproduce them byte for byte, and their signatures verify.
    #[test]
    fn published_signed_notes_are_reproduced() {
        use ed25519_dalek::{Signature, Verifier, VerifyingKey};
        let cases = [
            (
                "PeterNeumann",
                "ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                [0xc7, 0x4f, 0x20, 0xa3],
                "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n",
                "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
            ),
            (
                "example.com/foo",
                "AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
                [0x53, 0x0d, 0x90, 0x3a],
                "This is an example message.\n",
                "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=",
            ),
        ];
        for (name, vkey, id, text, blob) in cases {
            let typed = B64.decode(vkey).unwrap();
            assert_eq!(typed[0], 1, "Ed25519");
            let public: [u8; 32] = typed[1..].try_into().unwrap();
            assert_eq!(note_key_id(name, &public), id, "{name}");
            let raw = B64.decode(blob).unwrap();
            assert_eq!(raw[..4], id);
            let signature: [u8; 64] = raw[4..].try_into().unwrap();
            let key = VerifyingKey::from_bytes(&public).unwrap();
            assert!(key.verify(text.as_bytes(), &Signature::from_bytes(&signature)).is_ok(), "{name}");
            assert_eq!(signed_note(text, name, &public, &signature), format!("{text}\n\u{2014} {name} {blob}\n"));
        }
    }

    /// The example checkpoint of the C2SP tlog-checkpoint / tlog-witness specs parses as the grammar says.
    #[test]
    fn the_spec_example_checkpoint_parses() {
        let note = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} \
                    example.com/behind-the-sofa \
                    Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let c = parse_checkpoint_note(note).unwrap();
        assert_eq!((c.origin.as_str(), c.size), ("example.com/behind-the-sofa", 20_852_163));
        assert_eq!(B64.encode(c.root), "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
        assert_eq!(c.body, "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n");
        assert_eq!(c.signatures.len(), 1);
        assert_eq!(c.signatures[0].0, "example.com/behind-the-sofa");
        assert_eq!(c.signatures[0].1, [0x03, 0x3d, 0xe0, 0xae]);
        assert_eq!(c.signatures[0].2.len(), 64);
    }

    #[test]
    fn a_signed_checkpoint_note_round_trips() {
        use ed25519_dalek::{Signer, SigningKey};
        let key = SigningKey::from_bytes(&[8; 32]);
        let public = key.verifying_key().to_bytes();
        let root = unhex(ROOTS[8]);
        let body = checkpoint_body("example.com/log", 8, &root);
        assert_eq!(body, "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n");
        let sig = key.sign(body.as_bytes()).to_bytes();
        let note = signed_note(&body, "example.com/log", &public, &sig);
        assert!(note.starts_with(&body) && note.contains("\n\n\u{2014} example.com/log "), "{note}");
        let parsed = parse_checkpoint_note(&note).unwrap();
        assert_eq!(
            (parsed.origin.as_str(), parsed.size, parsed.root, parsed.body.as_str()),
            ("example.com/log", 8, root, body.as_str())
        );
        let (name, id, signature) = &parsed.signatures[0];
        assert_eq!((name.as_str(), *id), ("example.com/log", note_key_id("example.com/log", &public)));
        let signature: [u8; 64] = signature.as_slice().try_into().unwrap();
        use ed25519_dalek::Verifier;
        assert!(
            key.verifying_key()
                .verify(parsed.body.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
                .is_ok()
        );
        for bad in
            ["", "x\n1\nAAAA\n\n", "x\n01\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\u{2014} x AAAAAAAA\n"]
        {
            assert!(parse_checkpoint_note(bad).is_none(), "{bad:?}");
        }
    }
}
