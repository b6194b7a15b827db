//! all-MiniLM-L6-v2 on the CPU: the `minilm` feature's semantic [`Embedder`].
//!
//! The model is read from a local folder that `scripts/fetch-minilm` fills (config.json, tokenizer.json,
//! model.safetensors); nothing is downloaded at run time. Sentence vectors follow sentence-transformers' recipe
//! for this model: WordPiece tokens truncated to 256, the BERT encoder's last hidden states averaged over the
//! attention mask, then scaled to unit length.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{Tokenizer, TruncationParams};

use crate::{EmbedError, Embedder, normalize};

/// The files [`MiniLm::load`] reads from the model folder.
const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";

/// all-MiniLM-L6-v2's sentence-vector length.
const DIMS: usize = 384;

/// The model was trained on sequences of at most 256 tokens (sentence-transformers' `max_seq_length`); longer
/// texts are cut there, as sentence-transformers does.
const MAX_TOKENS: usize = 256;

/// The all-MiniLM-L6-v2 sentence-embedding model (6-layer BERT, 384 dimensions), run on the CPU with candle.
///
/// Inference takes `&self` and keeps no per-call state, so one loaded model can be shared across threads.
pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl std::fmt::Debug for MiniLm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLm").field("id", &Self::ID).field("dims", &DIMS).finish_non_exhaustive()
    }
}

// `Embedder` requires Send + Sync; fail the build here, not at a distant use, if a dependency ever loses either.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MiniLm>();
};

/// The path of `name` in `dir`, or an error that names the missing file and how to get it.
fn required(dir: &Path, name: &str) -> Result<PathBuf, EmbedError> {
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(EmbedError(format!(
            "all-MiniLM-L6-v2: {} is missing (looked in model folder {}); run scripts/fetch-minilm to download the \
             model into models/all-minilm-l6-v2, or pass the folder it was extracted to",
            path.display(),
            dir.display()
        )))
    }
}

/// An error from reading or running the model, saying what was being done.
fn failed(what: &str, path: &Path, err: impl std::fmt::Display) -> EmbedError {
    EmbedError(format!("all-MiniLM-L6-v2: {what} {}: {err}", path.display()))
}

fn inference(err: candle_core::Error) -> EmbedError {
    EmbedError(format!("all-MiniLM-L6-v2: inference failed: {err}"))
}

impl MiniLm {
    /// The [`Embedder::id`] of this model.
    pub const ID: &'static str = "all-minilm-l6-v2";

    /// Loads the model from `dir`, which must hold `config.json`, `tokenizer.json` and `model.safetensors` as
    /// shipped with sentence-transformers/all-MiniLM-L6-v2 (`scripts/fetch-minilm` puts them in
    /// `models/all-minilm-l6-v2`). A missing file is named in the error, with the hint to run the script.
    pub fn load(dir: &Path) -> Result<MiniLm, EmbedError> {
        let config_path = required(dir, CONFIG_FILE)?;
        let tokenizer_path = required(dir, TOKENIZER_FILE)?;
        let weights_path = required(dir, WEIGHTS_FILE)?;

        let config_text = std::fs::read_to_string(&config_path).map_err(|e| failed("cannot read", &config_path, e))?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|e| failed("not a BERT config", &config_path, e))?;
        if config.hidden_size != DIMS {
            return Err(EmbedError(format!(
                "all-MiniLM-L6-v2: {} describes a model with hidden size {}, not {DIMS}: this folder holds another \
                 model; run scripts/fetch-minilm to get all-MiniLM-L6-v2",
                config_path.display(),
                config.hidden_size
            )));
        }

        let mut tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| failed("not a tokenizer file", &tokenizer_path, e))?;
        // The shipped tokenizer.json pads every input to 128 and truncates there; one text needs no padding (batches
        // are padded by hand, with a mask), and the model's own limit is 256.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..TruncationParams::default() }))
            .map_err(|e| failed("cannot set truncation on", &tokenizer_path, e))?;

        let device = Device::Cpu;
        let weights = std::fs::read(&weights_path).map_err(|e| failed("cannot read", &weights_path, e))?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| failed("not a safetensors file", &weights_path, e))?;
        let model = BertModel::load(vb, &config)
            .map_err(|e| failed("weights do not match the BERT config in", &weights_path, e))?;
        Ok(MiniLm { model, tokenizer, device })
    }

    /// Embeds several texts in one forward pass (padded to the longest, pooled over each text's own tokens): the
    /// same vectors as [`Embedder::embed`] on each, up to float rounding, in fewer and larger matrix products.
    pub fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = vec![vec![0.0f32; DIMS]; texts.len()];
        // Texts with nothing to embed stay all zeros (as the trait says) rather than becoming the vector of a bare
        // [CLS] [SEP].
        let wanted: Vec<usize> = (0..texts.len()).filter(|&i| !texts[i].trim().is_empty()).collect();
        if wanted.is_empty() {
            return Ok(out);
        }
        let mut encodings = Vec::with_capacity(wanted.len());
        for &i in &wanted {
            let encoding = self
                .tokenizer
                .encode_fast(texts[i], true)
                .map_err(|e| EmbedError(format!("all-MiniLM-L6-v2: cannot tokenize text {i}: {e}")))?;
            encodings.push(encoding);
        }
        let len = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0);
        let rows = encodings.len();
        let mut ids = vec![0u32; rows * len];
        let mut mask = vec![0u32; rows * len];
        for (r, encoding) in encodings.iter().enumerate() {
            let n = encoding.get_ids().len();
            ids[r * len..r * len + n].copy_from_slice(encoding.get_ids());
            mask[r * len..r * len + n].copy_from_slice(encoding.get_attention_mask());
        }
        let pooled = self.forward(ids, mask, rows, len).map_err(inference)?;
        for (&i, mut v) in wanted.iter().zip(pooled) {
            if v.len() != DIMS {
                return Err(EmbedError(format!("all-MiniLM-L6-v2: the model gave {} components, not {DIMS}", v.len())));
            }
            normalize(&mut v);
            out[i] = v;
        }
        Ok(out)
    }

    /// Mean of the last hidden states over the mask, one row per text (not yet unit length).
    fn forward(&self, ids: Vec<u32>, mask: Vec<u32>, rows: usize, len: usize) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, (rows, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (rows, len), &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?; // (rows, len, DIMS)
        let weights = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (rows, len, 1)
        let summed = hidden.broadcast_mul(&weights)?.sum(1)?; // (rows, DIMS)
        let counts = weights.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (rows, 1)
        summed.broadcast_div(&counts)?.to_vec2::<f32>()
    }
}

impl Embedder for MiniLm {
    fn id(&self) -> &str {
        Self::ID
    }

    fn dims(&self) -> usize {
        DIMS
    }

    fn embed(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed_batch(&[text])?
            .pop()
            .ok_or_else(|| EmbedError("all-MiniLM-L6-v2: the model returned no vector".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_names_the_file_and_the_script() {
        let dir = std::env::temp_dir().join("ice-memory-no-such-minilm-folder");
        let err = MiniLm::load(&dir).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains("scripts/fetch-minilm"), "{err}");
    }
}
