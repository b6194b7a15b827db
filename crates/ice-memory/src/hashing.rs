//! The deterministic built-in embedder: signed feature hashing of words and character trigrams.
//!
//! No model, no randomness: the same text gives the same vector on every machine and in every version that keeps
//! the id `hash-v1-<dims>`. It captures shared words and word fragments (so "rollback" finds "rolled back" a
//! little), not meaning; the `minilm` feature is the semantic one.

use crate::{EmbedError, Embedder, normalize};

/// Signed feature hashing over lower-cased words (weight 1) and the character trigrams of each word padded with
/// `#` (weight 0.5), blake3-hashed into `dims` buckets with a sign bit; unit length.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dims: usize,
    id: String,
}

impl HashEmbedder {
    /// Default vector length.
    pub const DEFAULT_DIMS: usize = 384;

    /// An embedder of `dims` components (at least 8).
    pub fn new(dims: usize) -> Self {
        let dims = dims.max(8);
        Self { dims, id: format!("hash-v1-{dims}") }
    }

    fn add(&self, v: &mut [f32], feature: &[u8], weight: f32) {
        let h = blake3::hash(feature);
        let b = h.as_bytes();
        let bucket = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let i = usize::try_from(bucket % self.dims as u64).unwrap_or(0);
        v[i] += if b[8] & 1 == 0 { weight } else { -weight };
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DIMS)
    }
}

impl Embedder for HashEmbedder {
    fn id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let mut v = vec![0.0f32; self.dims];
        let lower = text.to_lowercase();
        for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            let mut feature = Vec::with_capacity(word.len() + 2);
            feature.extend_from_slice(b"w:");
            feature.extend_from_slice(word.as_bytes());
            self.add(&mut v, &feature, 1.0);
            let padded: Vec<char> = std::iter::once('#').chain(word.chars()).chain(std::iter::once('#')).collect();
            for tri in padded.windows(3) {
                let s: String = tri.iter().collect();
                self.add(&mut v, format!("t:{s}").as_bytes(), 0.5);
            }
        }
        normalize(&mut v);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosine;

    #[test]
    fn is_deterministic_unit_length_and_lexical() {
        let e = HashEmbedder::default();
        let a = e.embed("The deploy key rotates every Monday").unwrap_or_default();
        assert_eq!(a, e.embed("The deploy key rotates every Monday").unwrap_or_default());
        assert_eq!(a.len(), 384);
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
        let near = e.embed("which day does the deploy key rotate").unwrap_or_default();
        let far = e.embed("quarterly invoice totals for the finance team").unwrap_or_default();
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.2, "{} vs {}", cosine(&a, &near), cosine(&a, &far));
        assert!(e.embed("  ,;  ").unwrap_or_default().iter().all(|x| *x == 0.0));
    }

    #[test]
    fn pins_its_encoding() {
        // A change here changes every stored index version: bump the id (hash-v2) rather than edit silently.
        let v = HashEmbedder::new(8).embed("Ice ice").unwrap_or_default();
        let rounded: Vec<i32> = v.iter().map(|x| (x * 1000.0).round() as i32).collect();
        assert_eq!(rounded, vec![0, 0, -378, 378, 0, 0, 378, 756]);
    }
}
