//! Merkle trees over event hashes: the root a [`crate::checkpoint::CheckpointPayload`] signs, and inclusion proofs
//! showing that one event is covered by that root without needing the other events.
//!
//! ## Definition (v1)
//! Input: the 32-byte event hashes `h_0 .. h_{n-1}` of the covered events, in seq order.
//! - leaf: `L(h) = blake3(0x00 || h)`;
//! - node: `N(l, r) = blake3(0x01 || l || r)`;
//! - levels: the leaves form level 0; each next level pairs the nodes left to right. When a level has an odd
//!   number of nodes, its last node is **promoted** to the next level unchanged (it is neither hashed with itself
//!   nor duplicated; duplication would give two different lists the same root). This is the same tree shape as
//!   RFC 6962 §2.1 (split at the largest power of two below `n`), which the tests check against a recursive
//!   reference;
//! - root: `R = blake3(0x02 || n as u64 big-endian || top)`, where `top` is the single node left. For `n = 0`
//!   there is no top and `R = blake3(0x02 || 0u64)`; no inclusion proof verifies against it.
//!
//! The size is bound into the root (unlike RFC 6962, whose signed tree head carries it separately) so that a proof
//! cannot be replayed under another `leaf_count`: without it, a proof for index 4 of 5 leaves also "verifies" as
//! index 2 of 3 against the same root, claiming a different position. With it, a proof is checked by the root
//! alone.

use serde::{Deserialize, Serialize};

const LEAF_PREFIX: u8 = 0x00;
const NODE_PREFIX: u8 = 0x01;
const ROOT_PREFIX: u8 = 0x02;

/// Deepest tree an inclusion proof can describe (`leaf_count` is a u64).
const MAX_DEPTH: usize = 64;

/// `L(h) = blake3(0x00 || h)`: the level-0 node for an event hash.
pub fn leaf_hash(event_hash: &[u8; 32]) -> [u8; 32] {
    let mut buf = [0u8; 33];
    buf[0] = LEAF_PREFIX;
    buf[1..].copy_from_slice(event_hash);
    *blake3::hash(&buf).as_bytes()
}

/// `N(l, r) = blake3(0x01 || l || r)`: the parent of two nodes.
pub fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    // One stack buffer and one call: no allocation and no per-update overhead on this hot path.
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    *blake3::hash(&buf).as_bytes()
}

/// `R = blake3(0x02 || leaf_count u64 BE || top)`: the root committing to the tree's top node and its size
/// (`top` is `None` only for an empty tree).
pub fn root_hash(leaf_count: u64, top: Option<&[u8; 32]>) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(&[ROOT_PREFIX]);
    h.update(&leaf_count.to_be_bytes());
    if let Some(top) = top {
        h.update(top);
    }
    *h.finalize().as_bytes()
}

/// The Merkle root over `leaves` (event hashes in seq order); see the module docs. Allocates one buffer of
/// `leaves.len()` nodes and reduces it in place.
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = leaves.iter().map(leaf_hash).collect();
    let mut width = level.len();
    while width > 1 {
        let half = width / 2;
        for k in 0..half {
            // Writing slot k only after reading slots 2k and 2k+1 (both ≥ k) keeps the in-place reduction sound.
            level[k] = node_hash(&level[2 * k], &level[2 * k + 1]);
        }
        if width % 2 == 1 {
            level[half] = level[width - 1];
        }
        width = width.div_ceil(2);
    }
    root_hash(leaves.len() as u64, level.first())
}

/// Proof that one leaf is in a tree: the sibling nodes from the leaf's level up to the top, skipping the levels
/// where the leaf's ancestor is promoted (it has no sibling there).
///
/// JSON form: `{"index":3,"leaf_count":7,"path":["<64 hex>",...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InclusionProof {
    /// Position of the leaf, from 0.
    pub index: u64,
    /// Number of leaves in the tree.
    pub leaf_count: u64,
    /// Sibling nodes, bottom-up.
    #[serde(with = "hex_path")]
    pub path: Vec<[u8; 32]>,
}

/// A fully built tree, for producing many proofs from one set of leaves without rehashing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerkleTree {
    /// `levels[0]` holds the leaf nodes; the last level holds the single top node (empty tree: one empty level).
    levels: Vec<Vec<[u8; 32]>>,
}

impl MerkleTree {
    /// Builds every level over `leaves` (event hashes in seq order).
    pub fn new(leaves: &[[u8; 32]]) -> Self {
        let mut levels = vec![leaves.iter().map(leaf_hash).collect::<Vec<_>>()];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let mut up: Vec<[u8; 32]> = below.chunks_exact(2).map(|p| node_hash(&p[0], &p[1])).collect();
            if let [.., last] = below.as_slice()
                && below.len() % 2 == 1
            {
                up.push(*last);
            }
            levels.push(up);
        }
        Self { levels }
    }

    /// Number of leaves.
    pub fn leaf_count(&self) -> u64 {
        self.levels.first().map_or(0, Vec::len) as u64
    }

    /// The root, equal to [`merkle_root`] over the same leaves.
    pub fn root(&self) -> [u8; 32] {
        root_hash(self.leaf_count(), self.levels.last().and_then(|l| l.first()))
    }

    /// The inclusion proof for the leaf at `index`, or `None` if there is no such leaf.
    pub fn proof(&self, index: usize) -> Option<InclusionProof> {
        let leaf_count = self.leaf_count();
        if index as u64 >= leaf_count {
            return None;
        }
        let mut path = Vec::new();
        let mut i = index;
        for level in self.levels.iter().take(self.levels.len().saturating_sub(1)) {
            // The sibling of an even position is on its right, of an odd one on its left; a last node at an odd
            // width has none (it is promoted).
            if let Some(sibling) = level.get(i ^ 1) {
                path.push(*sibling);
            }
            i /= 2;
        }
        Some(InclusionProof { index: index as u64, leaf_count, path })
    }
}

/// The inclusion proof for `leaves[index]`, or `None` if `index` is out of range. To prove many leaves of the
/// same list, build a [`MerkleTree`] once instead.
pub fn inclusion_proof(leaves: &[[u8; 32]], index: usize) -> Option<InclusionProof> {
    if index >= leaves.len() {
        return None;
    }
    MerkleTree::new(leaves).proof(index)
}

/// Whether `proof` shows that the event hash `leaf` is at `proof.index` of the `proof.leaf_count`-leaf tree whose
/// root is `root`. Needs nothing but the proof: left/right and promoted levels follow from index and leaf count,
/// and every path element must be used exactly once.
pub fn verify_inclusion(leaf: &[u8; 32], proof: &InclusionProof, root: &[u8; 32]) -> bool {
    if proof.index >= proof.leaf_count || proof.path.len() > MAX_DEPTH {
        return false;
    }
    let mut node = leaf_hash(leaf);
    let mut i = proof.index;
    let mut width = proof.leaf_count;
    let mut path = proof.path.iter();
    while width > 1 {
        if i % 2 == 1 {
            let Some(sibling) = path.next() else { return false };
            node = node_hash(sibling, &node);
        } else if i + 1 < width {
            let Some(sibling) = path.next() else { return false };
            node = node_hash(&node, sibling);
        }
        // Otherwise this is the last node of an odd level: promoted unchanged, no path element consumed.
        i /= 2;
        width = width.div_ceil(2);
    }
    path.next().is_none() && root_hash(proof.leaf_count, Some(&node)) == *root
}

/// Serde for the proof path as a list of 64-digit hex strings.
mod hex_path {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ids::EventHash;

    pub fn serialize<S: Serializer>(path: &[[u8; 32]], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(path.iter().map(|h| EventHash(*h).to_hex()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| EventHash::from_hex(s).map(|h| h.0).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<[u8; 32]> {
        (0..n as u32).map(|i| *blake3::hash(&i.to_be_bytes()).as_bytes()).collect()
    }

    #[test]
    fn small_trees_have_the_documented_shape() {
        let l = leaves(3);
        let (a, b, c) = (leaf_hash(&l[0]), leaf_hash(&l[1]), leaf_hash(&l[2]));
        assert_eq!(merkle_root(&l[..1]), root_hash(1, Some(&a)));
        assert_eq!(merkle_root(&l[..2]), root_hash(2, Some(&node_hash(&a, &b))));
        // Three leaves: c is promoted, not paired with itself.
        assert_eq!(merkle_root(&l), root_hash(3, Some(&node_hash(&node_hash(&a, &b), &c))));
        let mut expected = vec![ROOT_PREFIX];
        expected.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(merkle_root(&[]), *blake3::hash(&expected).as_bytes());
    }

    #[test]
    fn tree_and_in_place_root_agree() {
        for n in 0..40 {
            let l = leaves(n);
            let tree = MerkleTree::new(&l);
            assert_eq!(tree.root(), merkle_root(&l), "n = {n}");
            assert_eq!(tree.leaf_count(), n as u64);
        }
    }

    #[test]
    fn out_of_range_proofs_are_none() {
        assert_eq!(inclusion_proof(&[], 0), None);
        assert_eq!(inclusion_proof(&leaves(3), 3), None);
        assert!(inclusion_proof(&leaves(3), 2).is_some());
    }

    #[test]
    fn promoted_levels_add_no_path_element() {
        let l = leaves(5);
        // Index 4 of 5 is promoted twice, then paired with the top of the first four.
        let p = inclusion_proof(&l, 4);
        assert_eq!(p.as_ref().map(|p| p.path.len()), Some(1));
        assert_eq!(inclusion_proof(&l, 0).map(|p| p.path.len()), Some(3));
    }

    #[test]
    fn size_is_bound_into_the_root() {
        // Without the size in the root, (index 4 of 5) and (index 2 of 3) would share path and root.
        let l = leaves(5);
        let root = merkle_root(&l);
        let Some(p) = inclusion_proof(&l, 4) else { panic!("proof") };
        assert!(verify_inclusion(&l[4], &p, &root));
        let replayed = InclusionProof { index: 2, leaf_count: 3, ..p };
        assert!(!verify_inclusion(&l[4], &replayed, &root));
    }

    #[test]
    fn proof_json_uses_hex() {
        let l = leaves(3);
        let Some(p) = inclusion_proof(&l, 1) else { panic!("proof") };
        let v = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(v["index"], 1);
        assert_eq!(v["leaf_count"], 3);
        assert_eq!(v["path"][0].as_str().map(str::len), Some(64));
        let back: InclusionProof = serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, p);
        let bad = serde_json::json!({"index": 0, "leaf_count": 1, "path": ["zz"]});
        assert!(serde_json::from_value::<InclusionProof>(bad).is_err());
    }
}
