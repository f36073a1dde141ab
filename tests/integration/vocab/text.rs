//! The text encoders through the library: MiniLM against sentence-transformers, the CLIP
//! tokenizer against OpenAI's, and the tiny CLIP encoder against a Python reference.

use std::path::Path;

use crate::common::*;
use dosod::engine::runtime::{Runtime, RuntimeOptions};
use dosod::vocab::encoder::TextEncoder;
use ndarray::Array2;
use serde_json::Value;

fn runtime() -> Runtime {
    Runtime::init(&RuntimeOptions::default()).expect("ONNX Runtime (run `make setup`)")
}

fn encoder(dir: &Path) -> TextEncoder {
    TextEncoder::load(&runtime(), dir).unwrap()
}

fn phrases(path: &Path) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn cosines(a: &Array2<f32>, b: &Array2<f32>) -> Vec<f32> {
    assert_eq!(a.dim(), b.dim());
    a.outer_iter()
        .zip(b.outer_iter())
        .map(|(x, y)| {
            let dot: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let nx = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            let ny = y.iter().map(|v| v * v).sum::<f32>().sqrt();
            dot / (nx * ny)
        })
        .collect()
}

#[test]
fn minilm_matches_sentence_transformers() {
    let enc = encoder(&root().join("models/encoders/all-MiniLM-L6-v2"));
    let texts = phrases(&fixture("minilm_reference_phrases.json"));
    assert!(texts.len() >= 50);
    let want = dosod::vocab::import::read_f32_matrix(&fixture("minilm_reference.npy")).unwrap();
    let got = enc.encode(&texts).unwrap();
    for (i, c) in cosines(&got, &want).into_iter().enumerate() {
        assert!(c >= 0.999, "phrase {i} {:?}: cosine {c}", texts[i]);
    }
    // rows are unit length
    for r in got.outer_iter() {
        assert!((r.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
    }
    // the result does not depend on what else is in the batch
    let alone = enc.encode(&texts[3..4]).unwrap();
    assert!(cosines(&alone, &got.slice(ndarray::s![3..4, ..]).to_owned())[0] > 0.99999);
}

#[test]
fn clip_tokenizer_matches_openai_on_every_phrase() {
    let enc = encoder(&root().join("tests/fixtures/clip-tiny"));
    let rows: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("clip_tokens.json")).unwrap())
            .unwrap();
    assert!(rows.len() >= 1000);
    let mut truncated = 0;
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let want: Vec<u32> = row
            .get("ids_truncated")
            .unwrap_or(&row["ids"])
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let (got, cut) = enc.tokenize(text).unwrap();
        assert_eq!(got, want, "token ids differ for {text:?}");
        assert_eq!(cut, row.get("ids_truncated").is_some(), "{text:?}");
        truncated += usize::from(cut);
    }
    assert!(truncated > 0, "the fixture exercises truncation");
}

#[test]
fn tiny_clip_encoder_matches_python_reference() {
    let enc = encoder(&root().join("tests/fixtures/clip-tiny"));
    assert_eq!(enc.config().dim, 512);
    let texts = phrases(&fixture("clip-tiny/reference_phrases.json"));
    let want = dosod::vocab::import::read_f32_matrix(&fixture("clip-tiny/reference.npy")).unwrap();
    let got = enc.encode(&texts).unwrap();
    for (i, c) in cosines(&got, &want).into_iter().enumerate() {
        assert!(c >= 0.9999, "phrase {i} {:?}: cosine {c}", texts[i]);
    }
}
