//! Memory's semantic side: turning text into vectors ([`Embedder`]) and finding the nearest ACTIVE items
//! ([`VectorIndex`]).
//!
//! What memory *is* — candidates, promotion, lifecycle, recorded reads — is governed state: it lives in the ledger
//! and its fold (`ice_core::memory`) and is changed only through the runtime. This crate holds no state of record:
//! an index is rebuilt from the folded ACTIVE items whenever they change, so it can never return an item the
//! ledger says is expired, deprecated, superseded or invalidated, and a search result is only ever an input to a
//! proposal, never a decision.
//!
//! Two embedders ship: [`HashEmbedder`], deterministic and model-free (the default, and what tests use), and,
//! behind the `minilm` cargo feature, all-MiniLM-L6-v2 on candle (weights fetched ahead of time by
//! `scripts/fetch-minilm`; nothing is downloaded at run time).

mod hashing;
mod index;
#[cfg(feature = "minilm")]
mod minilm;

pub use hashing::HashEmbedder;
pub use index::{Hit, VectorIndex, brute_force, cosine};
#[cfg(feature = "minilm")]
pub use minilm::MiniLm;

/// Turns text into a unit-length vector whose dot product with another measures how alike the texts are.
pub trait Embedder: Send + Sync {
    /// A stable identifier of the model and its settings (`hash-v1-384`, `all-minilm-l6-v2`): part of every
    /// recorded read's index version, so an audit can say which model ranked what a model was shown.
    fn id(&self) -> &str;
    /// Vector length.
    fn dims(&self) -> usize;
    /// Embeds one text. The result has [`Embedder::dims`] components and unit length (or is all zeros for a
    /// text with nothing to embed).
    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError>;
}

/// An embedder whose model loads on first use (so that opening a runtime that never searches costs nothing); a load
/// that fails is reported by every `embed` and retried by none.
pub struct Lazy {
    id: String,
    dims: usize,
    load: Box<dyn Fn() -> Result<std::sync::Arc<dyn Embedder>, EmbedError> + Send + Sync>,
    loaded: std::sync::OnceLock<Result<std::sync::Arc<dyn Embedder>, EmbedError>>,
}

impl Lazy {
    /// An embedder `id` of `dims` components that `load` builds when first asked to embed.
    pub fn new(
        id: &str,
        dims: usize,
        load: impl Fn() -> Result<std::sync::Arc<dyn Embedder>, EmbedError> + Send + Sync + 'static,
    ) -> Self {
        Self { id: id.to_owned(), dims, load: Box::new(load), loaded: std::sync::OnceLock::new() }
    }
}

impl Embedder for Lazy {
    fn id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        match self.loaded.get_or_init(|| (self.load)()) {
            Ok(e) => e.embed(text),
            Err(e) => Err(e.clone()),
        }
    }
}

/// An embedder that could not embed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EmbedError(pub String);

/// Scales `v` to unit length in place (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
}
