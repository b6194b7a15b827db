//! Nearest-neighbour search over unit vectors: an int8 scan picks candidates, exact dot products rank them.
//!
//! Every row keeps its f32 vector and an int8 copy (per-row scale). A query is quantised the same way; the int8 dot
//! products (a quarter of the memory traffic of f32) select `k × RERANK` candidates, which are then scored exactly.
//! Quantisation error is far below the gap between a true top-k item and the `RERANK·k`-th candidate in practice;
//! `tests` and `ice bench memory` compare the result against [`brute_force`] over the same vectors.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

/// How many candidates per wanted result the int8 scan hands to the exact ranking.
const RERANK: usize = 8;

/// One search result.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit<K> {
    /// The item.
    pub key: K,
    /// Cosine similarity to the query (dot product of unit vectors), in [-1, 1].
    pub score: f32,
}

/// The vectors of the items that may be returned, keyed by item.
#[derive(Debug, Clone)]
pub struct VectorIndex<K> {
    dims: usize,
    keys: Vec<K>,
    rows: Vec<f32>,
    quantised: Vec<i8>,
    scales: Vec<f32>,
    positions: BTreeMap<K, usize>,
}

fn quantise(v: &[f32], out: &mut Vec<i8>) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    out.extend(v.iter().map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8));
    scale
}

fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum()
}

/// Dot product (the cosine of unit vectors).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A min-heap entry: the worst kept candidate is on top.
struct Scored(f32, usize);

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Scored {}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed on score, so the heap's top is the lowest score (ties: the later row is worse).
        other.0.total_cmp(&self.0).then(self.1.cmp(&other.1))
    }
}

/// The `n` best of `scores` (row, score), best first; ties go to the earlier row.
fn top_n(scores: impl Iterator<Item = (usize, f32)>, n: usize) -> Vec<(usize, f32)> {
    let mut heap = BinaryHeap::with_capacity(n + 1);
    for (row, score) in scores {
        heap.push(Scored(score, row));
        if heap.len() > n {
            heap.pop();
        }
    }
    let mut best: Vec<(usize, f32)> = heap.into_iter().map(|Scored(s, r)| (r, s)).collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    best
}

/// Exact top-k by cosine over `(key, vector)` pairs, best first: the baseline [`VectorIndex::search`] is measured
/// and checked against.
pub fn brute_force<'a, K: Clone + 'a>(
    query: &[f32],
    items: impl IntoIterator<Item = (&'a K, &'a [f32])>,
    k: usize,
) -> Vec<Hit<K>> {
    let items: Vec<(&K, &[f32])> = items.into_iter().collect();
    let best = top_n(items.iter().enumerate().map(|(i, (_, v))| (i, cosine(query, v))), k);
    best.into_iter().map(|(i, score)| Hit { key: items[i].0.clone(), score }).collect()
}

impl<K: Ord + Clone> VectorIndex<K> {
    /// An empty index of `dims`-component vectors.
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            keys: Vec::new(),
            rows: Vec::new(),
            quantised: Vec::new(),
            scales: Vec::new(),
            positions: BTreeMap::new(),
        }
    }

    /// Vector length.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether it holds no item.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` is indexed.
    pub fn contains(&self, key: &K) -> bool {
        self.positions.contains_key(key)
    }

    /// The keys, in no particular order.
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// The stored vector of `key`.
    pub fn vector(&self, key: &K) -> Option<&[f32]> {
        let row = *self.positions.get(key)?;
        Some(&self.rows[row * self.dims..(row + 1) * self.dims])
    }

    /// Adds or replaces an item. A vector of the wrong length is refused (`false`).
    pub fn insert(&mut self, key: K, vector: &[f32]) -> bool {
        if vector.len() != self.dims {
            return false;
        }
        self.remove(&key);
        self.positions.insert(key.clone(), self.keys.len());
        self.keys.push(key);
        self.rows.extend_from_slice(vector);
        let scale = quantise(vector, &mut self.quantised);
        self.scales.push(scale);
        true
    }

    /// Removes an item (the last row moves into its place).
    pub fn remove(&mut self, key: &K) -> bool {
        let Some(row) = self.positions.remove(key) else { return false };
        let last = self.keys.len() - 1;
        let d = self.dims;
        if row != last {
            self.keys.swap(row, last);
            self.scales.swap(row, last);
            for i in 0..d {
                self.rows.swap(row * d + i, last * d + i);
                self.quantised.swap(row * d + i, last * d + i);
            }
            self.positions.insert(self.keys[row].clone(), row);
        }
        self.keys.pop();
        self.scales.pop();
        self.rows.truncate(last * d);
        self.quantised.truncate(last * d);
        true
    }

    /// The `k` items nearest to `query` among those `keep` accepts, best first (ties: earlier insertion first).
    pub fn search(&self, query: &[f32], k: usize, keep: impl Fn(&K) -> bool) -> Vec<Hit<K>> {
        if query.len() != self.dims || k == 0 {
            return Vec::new();
        }
        let d = self.dims;
        let mut q = Vec::with_capacity(d);
        let q_scale = quantise(query, &mut q);
        let approx = (0..self.keys.len()).filter(|&r| keep(&self.keys[r])).map(|r| {
            let dot = dot_i8(&q, &self.quantised[r * d..(r + 1) * d]);
            (r, dot as f32 * q_scale * self.scales[r])
        });
        let candidates = top_n(approx, k.saturating_mul(RERANK));
        let exact = candidates.into_iter().map(|(r, _)| (r, cosine(query, &self.rows[r * d..(r + 1) * d])));
        top_n(exact, k).into_iter().map(|(r, score)| Hit { key: self.keys[r].clone(), score }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Embedder, HashEmbedder};

    #[test]
    fn agrees_with_brute_force_and_follows_removals() {
        let e = HashEmbedder::default();
        let texts: Vec<String> =
            (0..2000).map(|i| format!("item {i} about topic {} and detail {}", i % 37, i % 101)).collect();
        let vectors: Vec<Vec<f32>> = texts.iter().map(|t| e.embed(t).unwrap_or_default()).collect();
        let mut index = VectorIndex::new(e.dims());
        for (i, v) in vectors.iter().enumerate() {
            assert!(index.insert(i, v));
        }
        for q in ["topic 5 detail 17", "item 1999", "detail 100 about topic 36"] {
            let qv = e.embed(q).unwrap_or_default();
            let got: Vec<usize> = index.search(&qv, 5, |_| true).into_iter().map(|h| h.key).collect();
            let want: Vec<usize> = brute_force(
                &qv,
                vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (i, v.as_slice()))
                    .collect::<Vec<_>>()
                    .iter()
                    .map(|(i, v)| (i, *v)),
                5,
            )
            .into_iter()
            .map(|h| h.key)
            .collect();
            assert_eq!(got, want, "{q}");
        }
        let qv = e.embed("item 1999").unwrap_or_default();
        let first = index.search(&qv, 1, |_| true)[0].key;
        assert!(index.remove(&first));
        assert!(!index.contains(&first));
        assert!(index.search(&qv, 10, |_| true).iter().all(|h| h.key != first));
        assert!(index.search(&qv, 10, |k| k % 2 == 0).iter().all(|h| h.key % 2 == 0));
        assert_eq!(index.len(), 1999);
        assert!(!index.insert(5000, &[1.0, 0.0]));
    }
}
