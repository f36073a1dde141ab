//! Route handlers, one file per group of URLs: thin adapters from HTTP to the service (one
//! detection path), the vocabulary store and the stream manager.

pub(crate) mod deepstack;
pub(crate) mod detect;
pub(crate) mod events;
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

    /// One encoded image through the service's detection path; its pixels are kept only when
    /// the answer is the annotated image.
    pub(crate) async fn detect_one(
        &self,
        bytes: axum::body::Bytes,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
        keep_image: bool,
        place: Option<crate::service::Reservation>,
    ) -> Result<Answer, ApiError> {
        let frame = Frame::Encoded {
            bytes,
            keep_pixels: keep_image,
        };
        let detected = match place {
            Some(place) => {
                self.service
                    .detect_reserved(place, frame, vocab.clone(), params)
                    .await
            }
            None => self.service.detect(frame, vocab.clone(), params).await,
        };
        let Detected {
            detections,
            image,
            width,
            height,
            timings,
            batch_size,
        } = detected?;
        let response = DetectResponse {
            detections,
            image: ImageSize { width, height },
            vocabulary: VocabRef::from(vocab.as_ref()),
            timings_ms: timings,
        };
        Ok(Answer {
            response,
            batch_size,
            image: keep_image.then_some(image),
        })
    }
}

/// One image's answer as the detection routes send it.
pub(crate) struct Answer {
    pub response: DetectResponse,
    /// Images in the forward pass this one ran in (`x-batch-size`).
    pub batch_size: usize,
    /// The decoded pixels, kept for an annotated answer only.
    pub image: Option<Arc<image::RgbImage>>,
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

/// `x-queue-time`, `x-inference-time`, `x-total-time` (ms) and `x-batch-size`.
pub(crate) fn timing_headers(resp: &mut Response, answer: &Answer) {
    let h = resp.headers_mut();
    let t = &answer.response.timings_ms;
    for (name, v) in [
        ("x-queue-time", t.queue),
        ("x-inference-time", t.inference),
        ("x-total-time", t.total),
    ] {
        if let Ok(v) = HeaderValue::from_str(&format!("{v:.3}")) {
            h.insert(name, v);
        }
    }
    h.insert("x-batch-size", HeaderValue::from(answer.batch_size));
}
