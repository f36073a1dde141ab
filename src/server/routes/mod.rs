//! Route handlers, one file per group of URLs: thin adapters from HTTP to the service (one
//! detection path), the vocabulary store and the stream manager.

pub(crate) mod deepstack;
pub(crate) mod detect;
pub(crate) mod operations;
pub(crate) mod streams;
pub(crate) mod vocabularies;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use super::AppState;
use super::error::ApiError;
use super::input::DetectOptions;
use super::types::{DetectResponse, ImageSize, VocabRef};
use crate::engine::Vocabulary;
use crate::engine::postprocess::DetectParams;
use crate::service::{Detected, Frame};

impl AppState {
    /// The vocabulary and parameters a request's options ask for; `fallback` is the route's
    /// configured default vocabulary.
    pub(crate) async fn choose(
        self: &Arc<Self>,
        options: &DetectOptions,
        fallback: &str,
    ) -> Result<(Arc<Vocabulary>, DetectParams), ApiError> {
        let params = options.params(self.service.engine.default_params())?;
        let request = options.vocab_request();
        let store = self.service.store.clone();
        let fallback = fallback.to_string();
        // Encoding a new vocabulary runs the text encoder: off the async threads.
        let vocab = tokio::task::spawn_blocking(move || store.select(&request, &fallback))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok((vocab, params))
    }

    /// One encoded image through the service's detection path.
    pub(crate) async fn detect_one(
        &self,
        bytes: axum::body::Bytes,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
    ) -> Result<(DetectResponse, Detected), ApiError> {
        let detected = self
            .service
            .detect(Frame::Encoded(bytes), vocab.clone(), params)
            .await?;
        let response = DetectResponse {
            detections: detected.detections.clone(),
            image: ImageSize {
                width: detected.image.width(),
                height: detected.image.height(),
            },
            vocabulary: VocabRef::from(vocab.as_ref()),
            timings_ms: detected.timings,
        };
        Ok((response, detected))
    }
}

/// Which image format the client wants back, if any.
pub(crate) fn wants_image(
    headers: &HeaderMap,
    options: &DetectOptions,
) -> Option<image::ImageFormat> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.contains("image/png") {
        Some(image::ImageFormat::Png)
    } else if accept.contains("image/jpeg") || options.annotate == Some(true) {
        Some(image::ImageFormat::Jpeg)
    } else {
        None
    }
}

pub(crate) fn timing_headers(resp: &mut Response, d: &Detected) {
    let h = resp.headers_mut();
    let t = &d.timings;
    for (name, v) in [
        ("x-queue-time", t.queue),
        ("x-inference-time", t.inference),
        ("x-total-time", t.total),
    ] {
        if let Ok(v) = HeaderValue::from_str(&format!("{v:.3}")) {
            h.insert(name, v);
        }
    }
    h.insert("x-batch-size", HeaderValue::from(d.batch_size));
}
