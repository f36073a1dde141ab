//! The live values behind the node's run-time parameters (vocabulary, score threshold, enabled,
//! frame id): what a parameter change swaps in and the worker reads on every frame.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::engine::postprocess::DetectParams;
use crate::vocab::Vocabulary;
use crate::vocab::spec::Classes;
use crate::vocab::store::{VocabRequest, VocabStore};

/// The values a parameter change swaps in; the next frame reads them.
pub struct Control {
    vocab: ArcSwap<Vocabulary>,
    /// The `vocabulary` parameter that produced `vocab`.
    list: Mutex<Vec<String>>,
    score_bits: AtomicU32,
    enabled: AtomicBool,
    /// Replaces the image's `header.frame_id` when not empty.
    frame_id: Mutex<String>,
    base: DetectParams,
}

impl Control {
    pub fn new(
        vocab: Arc<Vocabulary>,
        list: Vec<String>,
        base: DetectParams,
        score: f32,
        enabled: bool,
        frame_id: String,
    ) -> Control {
        Control {
            vocab: ArcSwap::new(vocab),
            list: Mutex::new(list),
            score_bits: AtomicU32::new(score.to_bits()),
            enabled: AtomicBool::new(enabled),
            frame_id: Mutex::new(frame_id),
            base,
        }
    }

    pub fn frame_id(&self) -> String {
        self.frame_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_frame_id(&self, id: &str) {
        *self.frame_id.lock().unwrap_or_else(|p| p.into_inner()) = id.to_string();
    }

    pub fn vocabulary(&self) -> Arc<Vocabulary> {
        self.vocab.load_full()
    }

    pub fn score_threshold(&self) -> f32 {
        f32::from_bits(self.score_bits.load(Ordering::Relaxed))
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// The post-processing parameters for the next frame.
    pub fn params(&self) -> DetectParams {
        DetectParams {
            score_threshold: self.score_threshold(),
            ..self.base.clone()
        }
    }

    /// Builds the vocabulary for `list` and swaps it in; an error leaves the old one in place.
    pub fn set_vocabulary(&self, store: &VocabStore, list: &[String]) -> Result<(), String> {
        let mut current = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_slice() == list {
            return Ok(());
        }
        let start = std::time::Instant::now();
        let vocab = store
            .select(&request_of(list), "")
            .map_err(|e| e.to_string())?;
        tracing::info!(
            classes = vocab.len(),
            build_ms = crate::engine::ms(start),
            "vocabulary is now {}",
            list.join(", ")
        );
        self.vocab.store(vocab);
        *current = list.to_vec();
        Ok(())
    }

    pub fn set_score_threshold(&self, v: f64) -> Result<(), String> {
        crate::engine::postprocess::check_unit("score_threshold", v as f32)
            .map_err(|e| e.to_string())?;
        self.score_bits
            .store((v as f32).to_bits(), Ordering::Relaxed);
        Ok(())
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }
}

/// A `vocabulary` parameter as a request: one class per element, `|` between synonyms (an
/// element holding commas is split into several classes).
pub fn request_of(list: &[String]) -> VocabRequest {
    VocabRequest {
        classes: Some(Classes::Text(list.join(","))),
        ..Default::default()
    }
}

/// `"forklift, pallet|skid"` as the list `["forklift", "pallet|skid"]` (blank items dropped).
pub fn list_of(text: &str) -> Vec<String> {
    text.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_specs() {
        assert_eq!(
            list_of(" forklift, ,pallet|skid "),
            ["forklift", "pallet|skid"]
        );
        assert!(list_of(" , ").is_empty());
        let request = request_of(&["forklift".into(), "pallet|skid".into(), "a, b".into()]);
        let spec = request.classes.unwrap().spec(None);
        assert_eq!(spec.labels(), ["forklift", "pallet", "a", "b"]);
    }
}
