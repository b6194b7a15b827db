//! Retrieval quality on a labelled set shaped like an agent team's memory (`tests/data/retrieval.json`: ~300 short
//! items about deployments, services, people, incidents, configuration and procedures, and the queries they
//! answer, most of them paraphrases that share few words with their item).
//!
//! Each embedder's vectors go into a [`VectorIndex`]; a query counts as found when one of its relevant items is in
//! the top 5 (recall@5), and MRR is the mean of 1/rank of the first relevant item. The floors are the measured
//! figures less a margin, so a broken embedder, pooling or index fails here. Print the numbers with
//! `cargo test -p ice-memory --release [--features minilm] --test retrieval -- --nocapture` (the `minilm` tests
//! read the weights from `ICE_MINILM_DIR`, default `models/all-minilm-l6-v2`, filled by `scripts/fetch-minilm`);
//! `ICE_RETRIEVAL_MISSES=1` also lists the queries each embedder misses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test helpers fail by panicking

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use ice_memory::{Embedder, HashEmbedder, VectorIndex};
use serde::Deserialize;

/// hash-v1-384 measured recall@5 0.255 (88/345) and MRR 0.223: it finds the lexical queries and few paraphrases.
/// The floors leave about a dozen queries of slack for edits to the set; a broken index would score near 0.02.
const HASH_RECALL_AT_5_FLOOR: f64 = 0.22;
const HASH_MRR_FLOOR: f64 = 0.19;

#[derive(Deserialize)]
struct Item {
    id: String,
    text: String,
}

#[derive(Deserialize)]
struct Query {
    query: String,
    relevant: Vec<String>,
}

#[derive(Deserialize)]
struct RetrievalSet {
    items: Vec<Item>,
    queries: Vec<Query>,
}

fn load_set() -> RetrievalSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/retrieval.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let set: RetrievalSet =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is malformed: {e}", path.display()));
    // A label that points nowhere would silently count as a miss.
    let ids: BTreeSet<&str> = set.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids.len(), set.items.len(), "duplicate item ids in {}", path.display());
    for q in &set.queries {
        assert!(!q.relevant.is_empty(), "query {:?} has no relevant item", q.query);
        for r in &q.relevant {
            assert!(ids.contains(r.as_str()), "query {:?} names unknown item {r}", q.query);
        }
    }
    assert!(set.items.len() >= 300 && set.queries.len() >= 220, "the set shrank");
    set
}

struct Score {
    recall_at_5: f64,
    mrr: f64,
    texts_per_sec: f64,
}

/// Embeds every item into an index, ranks all items for every query, and prints the figures.
fn evaluate(embedder: &dyn Embedder, set: &RetrievalSet) -> Score {
    let started = Instant::now();
    let mut index = VectorIndex::new(embedder.dims());
    for item in &set.items {
        let v =
            embedder.embed(&item.text).unwrap_or_else(|e| panic!("{}: cannot embed {}: {e}", embedder.id(), item.id));
        assert!(index.insert(item.id.clone(), &v), "{}: vector of {} has the wrong length", embedder.id(), item.id);
    }
    let query_vectors: Vec<Vec<f32>> = set
        .queries
        .iter()
        .map(|q| {
            embedder.embed(&q.query).unwrap_or_else(|e| panic!("{}: cannot embed {:?}: {e}", embedder.id(), q.query))
        })
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let texts = set.items.len() + set.queries.len();

    // ICE_RETRIEVAL_MISSES=1 lists the queries whose relevant item is not in the top 5, and what came first.
    let show_misses = std::env::var_os("ICE_RETRIEVAL_MISSES").is_some();
    let texts_by_id: std::collections::BTreeMap<&str, &str> =
        set.items.iter().map(|i| (i.id.as_str(), i.text.as_str())).collect();
    let mut found = 0usize;
    let mut reciprocal_ranks = 0.0f64;
    for (q, v) in set.queries.iter().zip(&query_vectors) {
        let ranking = index.search(v, set.items.len(), |_| true);
        let rank = ranking.iter().position(|hit| q.relevant.contains(&hit.key));
        if let Some(rank) = rank {
            if rank < 5 {
                found += 1;
            }
            reciprocal_ranks += 1.0 / (rank as f64 + 1.0);
        }
        if show_misses && rank.is_none_or(|r| r >= 5) {
            let first = ranking.first().map_or("", |h| texts_by_id[h.key.as_str()]);
            println!(
                "  miss (rank {:?}): {:?} wants {:?}; first was {first:?}",
                rank.map(|r| r + 1),
                q.query,
                q.relevant
            );
        }
    }
    let n = set.queries.len() as f64;
    let score =
        Score { recall_at_5: found as f64 / n, mrr: reciprocal_ranks / n, texts_per_sec: texts as f64 / elapsed };
    println!(
        "{:<18} recall@5 {:.3} ({found}/{}), MRR {:.3}, {} items; embedded {texts} texts one at a time in {elapsed:.2} s \
         ({:.0} texts/s)",
        embedder.id(),
        score.recall_at_5,
        set.queries.len(),
        score.mrr,
        set.items.len(),
        score.texts_per_sec
    );
    score
}

#[test]
fn hash_embedder_recall() {
    let set = load_set();
    let score = evaluate(&HashEmbedder::default(), &set);
    assert!(
        score.recall_at_5 >= HASH_RECALL_AT_5_FLOOR,
        "hash-v1-384 recall@5 {:.3} fell below {HASH_RECALL_AT_5_FLOOR}",
        score.recall_at_5
    );
    assert!(score.mrr >= HASH_MRR_FLOOR, "hash-v1-384 MRR {:.3} fell below {HASH_MRR_FLOOR}", score.mrr);
}

#[cfg(feature = "minilm")]
mod minilm {
    use std::path::PathBuf;
    use std::time::Instant;

    use ice_memory::{Embedder, HashEmbedder, MiniLm, cosine};

    use super::{evaluate, load_set};

    /// all-minilm-l6-v2 measured recall@5 0.855 (295/345) and MRR 0.699 (x86-64); the margin covers float
    /// differences between CPUs (which can swap near-tied ranks) and edits to the set.
    const MINILM_RECALL_AT_5_FLOOR: f64 = 0.80;
    const MINILM_MRR_FLOOR: f64 = 0.65;
    /// How far MiniLM must stay ahead of the hashing embedder on recall@5: the point of shipping a model.
    const MIN_GAIN_OVER_HASH: f64 = 0.15;

    /// `ICE_MINILM_DIR`, or `models/all-minilm-l6-v2` at the workspace root (where scripts/fetch-minilm puts it).
    fn model_dir() -> PathBuf {
        std::env::var_os("ICE_MINILM_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/all-minilm-l6-v2"))
    }

    fn load() -> MiniLm {
        let dir = model_dir();
        MiniLm::load(&dir).unwrap_or_else(|e| {
            panic!("{e}\n(the minilm tests need the weights: run scripts/fetch-minilm, or set ICE_MINILM_DIR)")
        })
    }

    #[test]
    fn minilm_recall_clearly_beats_hashing() {
        let set = load_set();
        let model = load();
        assert_eq!((model.id(), model.dims()), ("all-minilm-l6-v2", 384));
        let hash = evaluate(&HashEmbedder::default(), &set);
        let minilm = evaluate(&model, &set);
        println!(
            "all-minilm-l6-v2 vs hash-v1-384: recall@5 {:+.3}, MRR {:+.3}",
            minilm.recall_at_5 - hash.recall_at_5,
            minilm.mrr - hash.mrr
        );
        assert!(
            minilm.recall_at_5 >= MINILM_RECALL_AT_5_FLOOR,
            "all-minilm-l6-v2 recall@5 {:.3} fell below {MINILM_RECALL_AT_5_FLOOR}",
            minilm.recall_at_5
        );
        assert!(minilm.mrr >= MINILM_MRR_FLOOR, "all-minilm-l6-v2 MRR {:.3} fell below {MINILM_MRR_FLOOR}", minilm.mrr);
        assert!(
            minilm.recall_at_5 >= hash.recall_at_5 + MIN_GAIN_OVER_HASH,
            "all-minilm-l6-v2 recall@5 {:.3} is not {MIN_GAIN_OVER_HASH} above hash-v1-384's {:.3}",
            minilm.recall_at_5,
            hash.recall_at_5
        );
    }

    /// Batching pads texts to the longest and pools over each text's own mask: padding must not leak into the
    /// mean, so a batch gives the vectors one-at-a-time embedding gives.
    #[test]
    fn minilm_batches_match_single_texts_and_are_unit_length() {
        let set = load_set();
        let model = load();
        let texts: Vec<&str> = set.items.iter().map(|i| i.text.as_str()).collect();

        let started = Instant::now();
        let mut batched = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(32) {
            batched.extend(model.embed_batch(chunk).unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "all-minilm-l6-v2   embedded {} texts in batches of 32 in {elapsed:.2} s ({:.0} texts/s)",
            texts.len(),
            texts.len() as f64 / elapsed
        );

        for (text, b) in texts.iter().zip(&batched) {
            let single = model.embed(text).unwrap();
            assert_eq!(single.len(), 384);
            let norm = single.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "not unit length ({norm}): {text}");
            let agreement = cosine(&single, b);
            assert!(agreement > 0.9999, "batched vector differs from the single one (cosine {agreement}): {text}");
        }
        assert!(model.embed(" \n ").unwrap().iter().all(|x| *x == 0.0), "an empty text must give the zero vector");

        // Texts are cut at 256 tokens: an 800-token text embeds (BERT's 512 positions would refuse it uncut), and
        // words past the cut do not change its vector.
        let long = "deploy ".repeat(400);
        let longer = format!("{long} rollback incident postmortem");
        let a = model.embed(&long).unwrap();
        let b = model.embed(&longer).unwrap();
        assert!(cosine(&a, &b) > 0.9999, "text past the 256-token limit changed the vector");
    }
}
