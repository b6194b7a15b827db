//! Property tests for `ice_core::merkle`: every proof verifies, any tampering fails, and the tree shape equals the
//! recursive RFC 6962 definition.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use ice_core::merkle::{
    InclusionProof, MerkleTree, inclusion_proof, leaf_hash, merkle_root, node_hash, root_hash, verify_inclusion,
};
use proptest::prelude::*;

fn leaves(n: usize, salt: u64) -> Vec<[u8; 32]> {
    (0..n as u64)
        .map(|i| {
            let mut buf = [0u8; 16];
            buf[..8].copy_from_slice(&salt.to_be_bytes());
            buf[8..].copy_from_slice(&i.to_be_bytes());
            *blake3::hash(&buf).as_bytes()
        })
        .collect()
}

/// RFC 6962 §2.1 tree hash (with our leaf/node hashes): split at the largest power of two below n.
fn reference_top(l: &[[u8; 32]]) -> [u8; 32] {
    match l {
        [one] => leaf_hash(one),
        _ => {
            let mut k = 1;
            while k * 2 < l.len() {
                k *= 2;
            }
            node_hash(&reference_top(&l[..k]), &reference_top(&l[k..]))
        }
    }
}

fn flip(mut h: [u8; 32], byte: usize) -> [u8; 32] {
    h[byte % 32] ^= 1 << (byte % 8);
    h
}

/// Checks a valid proof and a set of tamperings; `pick` chooses which bytes get flipped.
fn check_index(l: &[[u8; 32]], tree: &MerkleTree, root: &[u8; 32], index: usize, pick: usize) {
    let Some(p) = tree.proof(index) else { panic!("no proof for {index} of {}", l.len()) };
    let leaf = l[index];
    assert!(verify_inclusion(&leaf, &p, root), "index {index} of {}", l.len());
    assert!(!verify_inclusion(&flip(leaf, pick), &p, root), "flipped leaf, index {index}");
    for j in 0..p.path.len() {
        let mut q = p.clone();
        q.path[j] = flip(q.path[j], pick + j);
        assert!(!verify_inclusion(&leaf, &q, root), "flipped path[{j}], index {index}");
    }
    let n = l.len() as u64;
    for other in [p.index.wrapping_sub(1), p.index + 1, p.index ^ 1, u64::MAX] {
        if other != p.index {
            let q = InclusionProof { index: other, ..p.clone() };
            assert!(!verify_inclusion(&leaf, &q, root), "index {index} → {other} of {n}");
        }
    }
    for other in [n - 1, n + 1, n * 2, 0, u64::MAX] {
        if other != n {
            let q = InclusionProof { leaf_count: other, ..p.clone() };
            assert!(!verify_inclusion(&leaf, &q, root), "leaf_count {n} → {other}, index {index}");
        }
    }
    assert!(!verify_inclusion(&leaf, &p, &flip(*root, pick)), "other root, index {index}");
    let mut longer = p.clone();
    longer.path.push(leaf);
    assert!(!verify_inclusion(&leaf, &longer, root), "extra path element, index {index}");
    if !p.path.is_empty() {
        let mut shorter = p.clone();
        shorter.path.pop();
        assert!(!verify_inclusion(&leaf, &shorter, root), "missing path element, index {index}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_proof_verifies_and_tampering_fails(n in 1usize..300, salt in any::<u64>(), pick in 0usize..10_000) {
        let l = leaves(n, salt);
        let tree = MerkleTree::new(&l);
        let root = merkle_root(&l);
        prop_assert_eq!(tree.root(), root);
        let other_root = merkle_root(&leaves(n, salt.wrapping_add(1)));
        for index in 0..n {
            check_index(&l, &tree, &root, index, pick + index);
            let Some(p) = tree.proof(index) else { panic!("proof") };
            prop_assert!(!verify_inclusion(&l[index], &p, &other_root));
        }
    }

    #[test]
    fn shape_matches_rfc6962(n in 1usize..300, salt in any::<u64>()) {
        let l = leaves(n, salt);
        prop_assert_eq!(merkle_root(&l), root_hash(n as u64, Some(&reference_top(&l))));
    }
}

#[test]
fn every_byte_of_every_proof_matters() {
    for n in [1usize, 2, 3, 7, 13, 16, 17] {
        let l = leaves(n, 9);
        let root = merkle_root(&l);
        for (index, leaf) in l.iter().enumerate() {
            let Some(p) = inclusion_proof(&l, index) else { panic!("proof") };
            assert!(verify_inclusion(leaf, &p, &root));
            for byte in 0..32 {
                assert!(!verify_inclusion(&flip(*leaf, byte), &p, &root));
                for j in 0..p.path.len() {
                    let mut q = p.clone();
                    q.path[j] = flip(q.path[j], byte);
                    assert!(!verify_inclusion(leaf, &q, &root), "n {n} index {index} path[{j}] byte {byte}");
                }
            }
        }
    }
}

#[test]
fn a_leaf_proves_only_its_own_position() {
    let l = leaves(11, 3);
    let root = merkle_root(&l);
    for (i, leaf) in l.iter().enumerate() {
        for j in 0..l.len() {
            let Some(p) = inclusion_proof(&l, j) else { panic!("proof") };
            assert_eq!(verify_inclusion(leaf, &p, &root), i == j, "leaf {i} with proof {j}");
        }
    }
}
