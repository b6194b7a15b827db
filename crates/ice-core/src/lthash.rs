//! A homomorphic multiset hash (LtHash), so the state root can commit to records that have left memory.
//!
//! The digest of a multiset of 32-byte element hashes is the lane-wise sum, modulo 2^16, of each element expanded
//! to 1,024 lanes (2,048 bytes of blake3 output in derive-key mode). Adding or removing an element costs one
//! expansion, whatever the size of the set, and the order of additions does not matter. That is what lets derived
//! state *retire* a record: the record leaves memory, its final hash moves from the live sum to the retired sum, and
//! the total — which is what the state root hashes — does not change. Replay folds the same events, retires the same
//! records and reaches the same total.
//!
//! The construction is Bellare and Micciancio's LtHash ("A New Paradigm for Collision-free Hashing", 1997) with the
//! parameters Lewi et al. analyse for update propagation at Facebook ("Securing Update Propagation with Homomorphic
//! Hashing", IACR ePrint 2019/227: n = 1024 lanes of d = 16 bits, estimated at over 200 bits of security).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Number of 16-bit lanes.
pub const LANES: usize = 1024;

/// Derive-key context for expanding an element (changing it changes every state root).
const CONTEXT: &str = "ice 2026-12 state-root lthash16 element";

/// A multiset digest: the lane-wise sum of its elements' expansions.
#[derive(Clone, PartialEq, Eq)]
pub struct LtHash {
    lanes: Box<[u16; LANES]>,
}

impl Default for LtHash {
    fn default() -> Self {
        Self { lanes: Box::new([0; LANES]) }
    }
}

impl std::fmt::Debug for LtHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LtHash({})", &self.checksum().to_hex()[..16])
    }
}

fn expand(element: &[u8; 32]) -> [u16; LANES] {
    let mut bytes = [0u8; LANES * 2];
    blake3::Hasher::new_derive_key(CONTEXT).update(element).finalize_xof().fill(&mut bytes);
    let mut lanes = [0u16; LANES];
    for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
        *lane = u16::from_le_bytes([pair[0], pair[1]]);
    }
    lanes
}

impl LtHash {
    /// The empty multiset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an element.
    pub fn add(&mut self, element: &[u8; 32]) {
        for (lane, x) in self.lanes.iter_mut().zip(expand(element)) {
            *lane = lane.wrapping_add(x);
        }
    }

    /// Removes an element (which must have been added).
    pub fn remove(&mut self, element: &[u8; 32]) {
        for (lane, x) in self.lanes.iter_mut().zip(expand(element)) {
            *lane = lane.wrapping_sub(x);
        }
    }

    /// Adds every element of another digest.
    pub fn combine(&mut self, other: &LtHash) {
        for (lane, x) in self.lanes.iter_mut().zip(other.lanes.iter()) {
            *lane = lane.wrapping_add(*x);
        }
    }

    /// The lanes as little-endian bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.lanes.iter().flat_map(|l| l.to_le_bytes()).collect()
    }

    /// blake3 of the lanes: a short name for the digest.
    pub fn checksum(&self) -> blake3::Hash {
        blake3::hash(&self.to_bytes())
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != LANES * 2 {
            return None;
        }
        let mut lanes = Box::new([0u16; LANES]);
        for (lane, pair) in lanes.iter_mut().zip(bytes.chunks_exact(2)) {
            *lane = u16::from_le_bytes([pair[0], pair[1]]);
        }
        Some(Self { lanes })
    }
}

/// Encoded as the lanes' bytes in hex (empty string for the empty multiset, the common case in snapshots).
impl Serialize for LtHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.lanes.iter().all(|l| *l == 0) {
            return s.serialize_str("");
        }
        s.serialize_str(&crate::checkpoint::to_hex(&self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for LtHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(Self::default());
        }
        crate::checkpoint::from_hex(&text)
            .and_then(|b| Self::from_bytes(&b))
            .ok_or_else(|| serde::de::Error::custom(format!("an LtHash is {} hex digits", LANES * 4)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u8) -> [u8; 32] {
        *blake3::hash(&[n]).as_bytes()
    }

    #[test]
    fn order_does_not_matter_and_removal_undoes_addition() {
        let mut a = LtHash::new();
        a.add(&e(1));
        a.add(&e(2));
        let mut b = LtHash::new();
        b.add(&e(2));
        b.add(&e(1));
        assert_eq!(a, b);
        b.add(&e(3));
        assert_ne!(a, b);
        b.remove(&e(3));
        assert_eq!(a, b);
    }

    #[test]
    fn moving_an_element_between_two_sums_keeps_their_total() {
        let (mut live, mut retired) = (LtHash::new(), LtHash::new());
        for n in 0..10 {
            live.add(&e(n));
        }
        let mut before = live.clone();
        before.combine(&retired);
        live.remove(&e(4));
        retired.add(&e(4));
        let mut after = live.clone();
        after.combine(&retired);
        assert_eq!(before, after);
    }

    #[test]
    fn a_multiset_differs_from_its_set() {
        let mut once = LtHash::new();
        once.add(&e(1));
        let mut twice = once.clone();
        twice.add(&e(1));
        assert_ne!(once, twice);
    }

    #[test]
    fn round_trips_through_its_encoding() {
        let mut a = LtHash::new();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"\"");
        a.add(&e(7));
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<LtHash>(&text).unwrap(), a);
        assert!(serde_json::from_str::<LtHash>("\"abcd\"").is_err());
    }
}
