//! The text encoder: phrases → tokens → ONNX transformer → pooled, L2-normalised rows `[P, T]`.

use std::path::Path;
use std::sync::Mutex;

use ndarray::Array2;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::engine::bundle::Bundle;
use crate::engine::error::{EngineError, Result};
use crate::engine::runtime::Runtime;

/// How token rows become one phrase embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Attention-masked mean (sentence-transformers).
    Mean,
    /// The row of the first end-of-text token (CLIP).
    Eot,
}

/// `encoder.toml` (docs/model-bundle.md, "Text encoders").
#[derive(Debug, Clone, Deserialize)]
pub struct EncoderConfig {
    pub kind: String,
    pub name: String,
    pub pooling: Pooling,
    pub max_length: usize,
    pub dim: usize,
    #[serde(default = "yes")]
    pub normalize: bool,
    #[serde(default)]
    pub eot_token_id: Option<u32>,
    #[serde(default)]
    pub pad_token_id: u32,
    #[serde(default)]
    pub provenance: toml::Table,
}

fn yes() -> bool {
    true
}

/// A loaded text encoder. `encode` takes `&self`; the session is locked only while it runs.
pub struct TextEncoder {
    config: EncoderConfig,
    tokenizer: Tokenizer,
    session: Mutex<Session>,
}

/// Phrases of one token length are run together, so no batch carries padding; a run holds at
/// most this many phrases.
const MAX_BATCH: usize = 256;

impl TextEncoder {
    /// Loads `DIR/encoder.toml`, `DIR/tokenizer.json` and `DIR/text_encoder.onnx`.
    pub fn load(runtime: &Runtime, dir: &Path) -> Result<TextEncoder> {
        let bad = |m: String| EngineError::bundle(dir, m);
        if !dir.is_dir() {
            return Err(bad(
                "text encoder directory not found (make setup builds all-MiniLM-L6-v2; \
                 python -m dosod_tools.textenc.export_clip_text makes CLIP ones)"
                    .into(),
            ));
        }
        let text = std::fs::read_to_string(dir.join("encoder.toml"))
            .map_err(|e| bad(format!("encoder.toml: {e}")))?;
        let config: EncoderConfig =
            toml::from_str(&text).map_err(|e| bad(format!("encoder.toml: {}", e.message())))?;
        if config.pooling == Pooling::Eot && config.eot_token_id.is_none() {
            return Err(bad(
                "encoder.toml: pooling = \"eot\" needs eot_token_id".into()
            ));
        }
        if config.max_length < 2 || config.dim == 0 {
            return Err(bad(
                "encoder.toml: max_length and dim must be positive".into()
            ));
        }
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| bad(format!("tokenizer.json: {e}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: config.max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| bad(format!("tokenizer truncation: {e}")))?;
        tokenizer.with_padding(None);
        let session = runtime.session(&dir.join("text_encoder.onnx"))?;
        Ok(TextEncoder {
            config,
            tokenizer,
            session: Mutex::new(session),
        })
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Token ids of one phrase, special tokens included, truncated to `max_length`.
    /// The second value is true when the phrase had to be cut.
    pub fn tokenize(&self, phrase: &str) -> Result<(Vec<u32>, bool)> {
        let enc = self
            .tokenizer
            .encode(phrase, true)
            .map_err(|e| EngineError::Vocabulary(format!("cannot tokenise `{phrase}`: {e}")))?;
        Ok((enc.get_ids().to_vec(), !enc.get_overflowing().is_empty()))
    }

    /// Embeds phrases: one L2-normalised row of `dim` values per phrase, in order.
    pub fn encode(&self, phrases: &[String]) -> Result<Array2<f32>> {
        let dim = self.config.dim;
        let mut out = Array2::<f32>::zeros((phrases.len(), dim));
        let mut ids = Vec::with_capacity(phrases.len());
        for p in phrases {
            ids.push(self.tokenize(p)?.0);
        }
        // Group by token count: each run is then free of padding.
        let mut order: Vec<usize> = (0..phrases.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        for group in order.chunk_by(|&a, &b| ids[a].len() == ids[b].len()) {
            for chunk in group.chunks(MAX_BATCH) {
                let rows = self.run(chunk.iter().map(|&i| ids[i].as_slice()))?;
                for (&i, row) in chunk.iter().zip(rows.outer_iter()) {
                    out.row_mut(i).assign(&row);
                }
            }
        }
        Ok(out)
    }

    /// One session run over same-length (or right-padded) token rows; returns pooled rows.
    fn run<'a>(
        &self,
        batch: impl ExactSizeIterator<Item = &'a [u32]> + Clone,
    ) -> Result<Array2<f32>> {
        let b = batch.len();
        let s = batch.clone().map(<[u32]>::len).max().unwrap_or(0);
        if b == 0 || s == 0 {
            return Ok(Array2::zeros((b, self.config.dim)));
        }
        let mut input_ids = vec![i64::from(self.config.pad_token_id); b * s];
        let mut mask = vec![0i64; b * s];
        for (r, row) in batch.clone().enumerate() {
            for (c, &id) in row.iter().enumerate() {
                input_ids[r * s + c] = i64::from(id);
                mask[r * s + c] = 1;
            }
        }
        let shape = vec![b as i64, s as i64];
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session.run(ort::inputs![
            "input_ids" => TensorRef::from_array_view((shape.clone(), input_ids.as_slice()))?,
            "attention_mask" => TensorRef::from_array_view((shape, mask.as_slice()))?,
        ])?;
        let (tshape, tok) = outputs["token_embeddings"]
            .try_extract_tensor::<f32>()
            .map_err(|e| EngineError::Inference(format!("text encoder output: {e}")))?;
        let t = self.config.dim;
        if tshape.iter().copied().collect::<Vec<_>>() != [b as i64, s as i64, t as i64] {
            return Err(EngineError::Inference(format!(
                "text encoder returned {tshape:?}; expected [{b}, {s}, {t}]"
            )));
        }
        let mut pooled = Array2::<f32>::zeros((b, t));
        for (r, row) in batch.enumerate() {
            let mut acc = pooled.row_mut(r);
            let token = |c: usize| &tok[(r * s + c) * t..(r * s + c + 1) * t];
            match self.config.pooling {
                Pooling::Mean => {
                    for c in 0..row.len() {
                        for (a, v) in acc.iter_mut().zip(token(c)) {
                            *a += v;
                        }
                    }
                    let n = row.len().max(1) as f32;
                    acc.mapv_inplace(|v| v / n);
                }
                Pooling::Eot => {
                    let eot = self.config.eot_token_id.expect("checked at load");
                    let c = row
                        .iter()
                        .position(|&id| id == eot)
                        .unwrap_or(row.len() - 1);
                    acc.assign(&ndarray::ArrayView1::from(token(c)));
                }
            }
            if self.config.normalize {
                let norm = acc.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                acc.mapv_inplace(|v| v / norm);
            }
        }
        Ok(pooled)
    }
}

/// Loads the encoder a bundle's manifest names. A missing directory leaves the model usable with
/// precomputed embeddings (`Err(reason)`); an encoder that contradicts the manifest is an error.
pub(crate) fn load_for_bundle(
    runtime: &Runtime,
    bundle: &Bundle,
) -> Result<std::result::Result<TextEncoder, String>> {
    let m = &bundle.manifest;
    let te = &m.text_encoder;
    if te.kind.is_empty() || te.kind == "none" {
        return Ok(Err(format!(
            "model `{}` declares no text encoder; pass precomputed embeddings (--vocab FILE.npy)",
            m.model.name
        )));
    }
    let Some(dir) = &te.dir else {
        return Ok(Err(format!(
            "model `{}` names no [text_encoder] dir",
            m.model.name
        )));
    };
    let dir = bundle.path(dir);
    if !dir.is_dir() {
        return Ok(Err(format!(
            "text encoder directory {} not found (make setup builds all-MiniLM-L6-v2)",
            dir.display()
        )));
    }
    let enc = TextEncoder::load(runtime, &dir)?;
    let c = enc.config();
    // The adaptor was trained against one encoder: another of the same kind and size would
    // load and run, and give meaningless class rows.
    if !te.name.is_empty() && c.name != te.name {
        return Err(EngineError::bundle(
            &bundle.dir,
            format!(
                "text encoder {} is `{}`, but model.toml's [text_encoder] name is `{}` (the \
                 encoder the adaptor was trained against); point `dir` at that encoder",
                dir.display(),
                c.name,
                te.name
            ),
        ));
    }
    if c.dim != m.embedding.text_dim || c.kind != te.kind {
        return Err(EngineError::bundle(
            &bundle.dir,
            format!(
                "text encoder {} is a {} of dim {}, but model.toml expects a {} of dim {}",
                dir.display(),
                c.kind,
                c.dim,
                te.kind,
                m.embedding.text_dim
            ),
        ));
    }
    Ok(Ok(enc))
}
