//! Operations: health, metrics, model information and the fallback for unknown routes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::types::VocabRef;
use crate::service::metrics::advance;

/// `GET /health/live`
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "OK", body = crate::server::openapi::Status)))]
pub async fn live() -> Response {
    Json(serde_json::json!({"status": "live"})).into_response()
}

/// `GET /health/ready`: 200 once the model is loaded, a warm-up forward pass has run and the
/// named vocabularies are known (a Redis store loaded once); the body reports the store's
/// state, so a Redis outage shows here while detection goes on from the local copy.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses((status = 200, description = "OK", body = crate::server::openapi::Status), (status = 503, description = "deadline passed or not ready", body = crate::server::openapi::ErrorBody)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let store = state.service.store.store_state();
    if !state.warm.load(Ordering::Acquire) {
        ApiError::Unavailable("warming up".into()).into_response()
    } else if state.stopping.load(Ordering::Acquire) {
        ApiError::Unavailable("shutting down".into()).into_response()
    } else if !store.ready {
        ApiError::Unavailable(store.why_not_ready()).into_response()
    } else {
        Json(serde_json::json!({"status": "ready", "store": store})).into_response()
    }
}

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (m, cache) = (&state.service.metrics, state.service.store.cache_stats());
    m.queue_depth.set(state.service.scheduler.depth() as i64);
    m.vocab_cache.set(cache.entries as i64);
    m.vocab_store_up
        .set(i64::from(state.service.store.store_state().writable()));
    advance(&m.vocab_hits, cache.hits);
    advance(&m.vocab_misses, cache.misses);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
        .into_response()
}

/// `GET /v1/info`
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, description = "model, default vocabulary, limits, ONNX Runtime version, execution provider", body = Object)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Response {
    let e = &state.service.engine;
    let m = e.manifest();
    let s = &state.settings;
    Json(serde_json::json!({
        "model": {
            "name": m.model.name,
            "description": m.model.description,
            "input": {"width": m.input.width, "height": m.input.height},
            "embedding_dim": m.embedding.dim,
            "text_encoder": state.service.store.text_encoder().map(|t| t.config().name.clone()),
            "provenance": m.provenance,
            "precision": e.precision(),
            "quantization": (!m.precision.method.is_empty()).then_some(&m.precision),
        },
        "default_vocabulary": VocabRef::from(state.default_vocab.as_ref()),
        "postprocess": m.postprocess,
        "limits": {
            "max_body_bytes": s.max_body_bytes,
            "max_pixels": e.limits().max_pixels,
            "max_side": e.limits().max_side,
            "queue_size": state.service.batching.queue_size,
            "max_batch": state.service.batching.max_batch,
            "deadline_ms": state.service.batching.deadline_ms,
            "vocabulary": state.service.store.limits(),
        },
        "vocabulary_store": state.service.store.store_state(),
        "ort_version": e.runtime().version(),
        "execution_provider": e.runtime().execution_provider().to_string(),
        "intra_threads": e.runtime().threads(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

/// Any route that does not exist.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", req.method(), req.uri().path()))
}

/// A known route asked with a method it does not serve: 405 with the JSON error.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} {}", req.method(), req.uri().path()))
}
