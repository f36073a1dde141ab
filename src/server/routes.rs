//! Route handlers: thin adapters from HTTP to the engine, the scheduler and the vocabulary store.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::oneshot;

use super::AppState;
use super::error::ApiError;
use super::input::{DetectInput, DetectOptions};
use crate::engine::{Detection, ms};
use crate::postprocess::DetectParams;
use crate::scheduler::Job;
use crate::vocab::Vocabulary;
use crate::vocab_spec::VocabSpec;

/// Per-stage milliseconds of one image.
#[derive(Debug, Clone, Copy, Serialize, Default, utoipa::ToSchema)]
pub struct StageTimings {
    pub queue: f64,
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub postprocess: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VocabRef {
    pub name: Option<String>,
    pub hash: String,
    pub classes: Vec<String>,
}

impl From<&Vocabulary> for VocabRef {
    fn from(v: &Vocabulary) -> Self {
        VocabRef {
            name: v.name.clone(),
            hash: v.hash.clone(),
            classes: v.labels.clone(),
        }
    }
}

/// The answer of `POST /v1/detect`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DetectResponse {
    pub detections: Vec<Detection>,
    pub image: ImageSize,
    pub vocabulary: VocabRef,
    pub timings_ms: StageTimings,
}

/// One image through the whole pipeline, as every detection route runs it.
pub struct Detected {
    pub response: DetectResponse,
    pub image: Option<image::RgbImage>,
}

impl AppState {
    /// The vocabulary and parameters a request's options ask for.
    async fn resolve(
        self: &Arc<Self>,
        options: &DetectOptions,
        fallback: &str,
    ) -> Result<(Arc<Vocabulary>, DetectParams), ApiError> {
        let params = self.engine.default_params().overridden(
            options.score_threshold,
            options.iou_threshold,
            options.max_detections,
            options.multi_label,
        )?;
        let state = self.clone();
        let options = options.clone();
        let fallback = fallback.to_string();
        // Encoding a new vocabulary runs the text encoder: off the async threads.
        let vocab = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            if let Some(classes) = &options.classes {
                return Ok(state
                    .store
                    .build(&classes.spec(options.template.as_deref()), None)?);
            }
            let name = options.vocabulary.as_deref().unwrap_or(&fallback);
            if name.is_empty() {
                Ok(state.default_vocab.clone())
            } else {
                Ok(state.store.resolve(name)?)
            }
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
        Ok((vocab, params))
    }

    /// Decode, letterbox, queue for inference and wait: the pipeline behind every route.
    /// Fails fast with 429 when the inference queue is full, before any work on the request.
    pub fn admit(&self) -> Result<(), ApiError> {
        if self.scheduler.depth() >= self.scheduler.policy().queue_size {
            return Err(ApiError::Overloaded { retry_after_s: 1 });
        }
        Ok(())
    }

    pub async fn detect_one(
        self: &Arc<Self>,
        bytes: axum::body::Bytes,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
        keep_image: bool,
    ) -> Result<Detected, ApiError> {
        let start = Instant::now();
        self.admit()?;
        let permit = self
            .decode_slots
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable("shutting down".into()))?;
        let engine = self.engine.clone();
        let (img, prepared, decode_ms, preprocess_ms) =
            tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let t = Instant::now();
                let img = engine.decode(&bytes)?;
                let decode_ms = ms(t);
                let t = Instant::now();
                let prepared = engine.prepare(&img)?;
                Ok((img, prepared, decode_ms, ms(t)))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        drop(permit);
        self.metrics.observe_stage("decode", decode_ms);
        self.metrics.observe_stage("preprocess", preprocess_ms);
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_millis(self.settings.deadline_ms);
        self.scheduler.submit(Job {
            prepared,
            vocab: vocab.clone(),
            params,
            enqueued: Instant::now(),
            deadline,
            reply: tx,
        })?;
        let out = match tokio::time::timeout_at(deadline.into(), rx).await {
            Ok(Ok(result)) => result?,
            Ok(Err(_)) => {
                return Err(ApiError::Internal(
                    "the inference worker dropped the request".into(),
                ));
            }
            Err(_) => {
                return Err(ApiError::Timeout(format!(
                    "no result within the {} ms deadline",
                    self.settings.deadline_ms
                )));
            }
        };
        let response = DetectResponse {
            detections: out.detections,
            image: ImageSize {
                width: img.width(),
                height: img.height(),
            },
            vocabulary: VocabRef::from(vocab.as_ref()),
            timings_ms: StageTimings {
                queue: out.queue_ms,
                decode: decode_ms,
                preprocess: preprocess_ms,
                inference: out.inference_ms,
                postprocess: out.postprocess_ms,
                total: ms(start),
            },
        };
        Ok(Detected {
            response,
            image: keep_image.then_some(img),
        })
    }
}

/// Which image format the client wants back, if any.
fn wants_image(headers: &HeaderMap, options: &DetectOptions) -> Option<image::ImageFormat> {
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

fn timing_headers(resp: &mut Response, t: &StageTimings) {
    let h = resp.headers_mut();
    for (name, v) in [
        ("x-queue-time", t.queue),
        ("x-inference-time", t.inference),
        ("x-total-time", t.total),
    ] {
        if let Ok(v) = HeaderValue::from_str(&format!("{v:.3}")) {
            h.insert(name, v);
        }
    }
}

/// `POST /v1/detect`
#[utoipa::path(post, path = "/v1/detect", tag = "detection",
    params(super::openapi::DetectQuery),
    request_body(content = super::openapi::DetectForm, description = "multipart/form-data (field `image`), a raw `image/*` body, or JSON with a base64 `image`", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "detections, or the annotated image with ?annotate=true / Accept: image/*", body = DetectResponse),
        (status = 400, description = "malformed request", body = super::openapi::ErrorBody), (status = 401, description = "missing or wrong API key", body = super::openapi::ErrorBody),
        (status = 404, description = "unknown vocabulary or route", body = super::openapi::ErrorBody), (status = 413, description = "body too large", body = super::openapi::ErrorBody),
        (status = 415, description = "unsupported content type", body = super::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = super::openapi::ErrorBody),
        (status = 429, description = "queue full: retry after the Retry-After seconds", body = super::openapi::ErrorBody), (status = 503, description = "deadline passed or not ready", body = super::openapi::ErrorBody)))]
pub async fn detect(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let headers = req.headers().clone();
    let input = DetectInput::read(req, query.as_deref()).await?;
    if input.images.len() != 1 {
        return Err(ApiError::BadRequest(format!(
            "expected one image, got {}; use /v1/detect/batch for several",
            input.images.len()
        )));
    }
    let format = wants_image(&headers, &input.options);
    let (vocab, params) = state
        .resolve(&input.options, &state.settings.default_vocabulary)
        .await?;
    let bytes = input.images.into_iter().next().expect("one image");
    let detected = state
        .detect_one(bytes, vocab, params, format.is_some())
        .await?;
    let timings = detected.response.timings_ms;
    let mut resp = match (format, detected.image) {
        (Some(fmt), Some(img)) => {
            let dets = detected.response.detections;
            let bytes = tokio::task::spawn_blocking(move || {
                crate::annotate::encode(img, &dets, fmt)
                    .map_err(|e| ApiError::Internal(format!("encoding the annotated image: {e}")))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
            let mime = if fmt == image::ImageFormat::Png {
                "image/png"
            } else {
                "image/jpeg"
            };
            ([(header::CONTENT_TYPE, mime)], bytes).into_response()
        }
        _ => Json(detected.response).into_response(),
    };
    timing_headers(&mut resp, &timings);
    Ok(resp)
}

/// One entry of the batch answer: a result or that image's error.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchItem {
    Ok(DetectResponse),
    Err {
        error: String,
        error_type: &'static str,
        status: u16,
    },
}

/// `POST /v1/detect/batch`: several `image` fields, one result each, in order.
#[utoipa::path(post, path = "/v1/detect/batch", tag = "detection",
    params(super::openapi::DetectQuery),
    request_body(content = super::openapi::DetectForm, description = "several `image` fields", content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = super::openapi::BatchResponse), (status = 400, description = "malformed request", body = super::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = super::openapi::ErrorBody)))]
pub async fn detect_batch(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let input = DetectInput::read(req, query.as_deref()).await?;
    let (vocab, params) = state
        .resolve(&input.options, &state.settings.default_vocabulary)
        .await?;
    let futures = input.images.into_iter().map(|bytes| {
        let state = state.clone();
        let (vocab, params) = (vocab.clone(), params.clone());
        async move { state.detect_one(bytes, vocab, params, false).await }
    });
    let results = futures_join_all(futures).await;
    let items: Vec<BatchItem> = results
        .into_iter()
        .map(|r| match r {
            Ok(d) => BatchItem::Ok(d.response),
            Err(e) => BatchItem::Err {
                error: e.to_string(),
                error_type: e.error_type(),
                status: e.status().as_u16(),
            },
        })
        .collect();
    Ok(Json(serde_json::json!({ "results": items })).into_response())
}

/// Runs futures concurrently and returns their outputs in order.
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("detection task panicked"));
    }
    out
}

/// `POST /v1/vision/detection`: DeepStack's object detection API, for Frigate and friends.
#[utoipa::path(post, path = "/v1/vision/detection", tag = "compatibility",
    request_body(content = super::openapi::DeepStackForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = super::openapi::DeepStackResponse), (status = 401, description = "missing or wrong API key", body = super::openapi::ErrorBody), (status = 400, description = "malformed request", body = super::openapi::ErrorBody)))]
pub async fn deepstack(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let bearer = super::presented_key(req.headers());
    let input = DetectInput::read(req, query.as_deref()).await?;
    if !state.settings.api_key.is_empty() {
        let form_key = input
            .extra
            .iter()
            .find(|(k, _)| k == "api_key")
            .map(|(_, v)| v.as_str());
        if bearer.as_deref() != Some(state.settings.api_key.as_str())
            && form_key != Some(state.settings.api_key.as_str())
        {
            return Err(ApiError::Unauthorized);
        }
    }
    let fallback = if state.settings.deepstack_vocabulary.is_empty() {
        &state.settings.default_vocabulary
    } else {
        &state.settings.deepstack_vocabulary
    };
    let (vocab, params) = state.resolve(&input.options, fallback).await?;
    let bytes = input.images.into_iter().next().expect("checked non-empty");
    let detected = state.detect_one(bytes, vocab, params, false).await?;
    let mut predictions: Vec<serde_json::Value> = detected
        .response
        .detections
        .iter()
        .map(|d| {
            serde_json::json!({
                "label": d.label,
                "confidence": d.score,
                "x_min": d.bbox[0].round() as i64,
                "y_min": d.bbox[1].round() as i64,
                "x_max": d.bbox[2].round() as i64,
                "y_max": d.bbox[3].round() as i64,
            })
        })
        .collect();
    predictions.sort_by(|a, b| {
        b["confidence"]
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&a["confidence"].as_f64().unwrap_or(0.0))
    });
    let mut resp =
        Json(serde_json::json!({"success": true, "predictions": predictions})).into_response();
    timing_headers(&mut resp, &detected.response.timings_ms);
    Ok(resp)
}

/// `GET /v1/vocabularies`
#[utoipa::path(get, path = "/v1/vocabularies", tag = "vocabularies",
    responses((status = 200, description = "OK", body = super::openapi::VocabularyList)))]
pub async fn list_vocabularies(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({ "vocabularies": state.store.list() })).into_response()
}

/// `GET /v1/vocabularies/{name}`
#[utoipa::path(get, path = "/v1/vocabularies/{name}", tag = "vocabularies", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = super::openapi::VocabularyDetail), (status = 404, description = "unknown vocabulary or route", body = super::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = super::openapi::ErrorBody)))]
pub async fn get_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    crate::vocab_store::validate_name(&name)?;
    let spec = state.store.spec(&name)?;
    let builtin = crate::vocab_store::BUILTINS.iter().any(|(n, _)| *n == name);
    Ok(Json(serde_json::json!({
        "name": name,
        "builtin": builtin,
        "classes": spec.classes,
        "template": spec.template,
    }))
    .into_response())
}

/// `PUT /v1/vocabularies/{name}` with `{"classes": [...], "template": "..."}`
#[utoipa::path(put, path = "/v1/vocabularies/{name}", tag = "vocabularies", params(("name" = String, Path)),
    request_body = VocabSpec,
    responses((status = 200, description = "OK", body = super::openapi::VocabularyCreated), (status = 400, description = "malformed request", body = super::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = super::openapi::ErrorBody)))]
pub async fn put_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::vocab_store::validate_name(&name)?;
    let spec: VocabSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid vocabulary JSON: {e}")))?;
    let store = state.store.clone();
    let vocab = tokio::task::spawn_blocking(move || store.put(&name, spec))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(serde_json::json!({
        "name": vocab.name,
        "classes": vocab.labels,
        "hash": vocab.hash,
    }))
    .into_response())
}

/// `DELETE /v1/vocabularies/{name}`
#[utoipa::path(delete, path = "/v1/vocabularies/{name}", tag = "vocabularies", params(("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown vocabulary or route", body = super::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = super::openapi::ErrorBody)))]
pub async fn delete_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if state.store.delete(&name)? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("unknown vocabulary `{name}`")))
    }
}

/// `GET /health/live`
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, description = "OK", body = super::openapi::Status)))]
pub async fn live() -> Response {
    Json(serde_json::json!({"status": "live"})).into_response()
}

/// `GET /health/ready`: 200 once the model is loaded and a warm-up forward pass has run.
#[utoipa::path(get, path = "/health/ready", tag = "operations", responses((status = 200, description = "OK", body = super::openapi::Status), (status = 503, description = "deadline passed or not ready", body = super::openapi::ErrorBody)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ApiError::Unavailable("warming up or shutting down".into()).into_response()
    }
}

/// `GET /metrics`
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state
        .metrics
        .queue_depth
        .set(state.scheduler.depth() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(state.store.cache_stats()),
    )
        .into_response()
}

/// `GET /v1/info`
#[utoipa::path(get, path = "/v1/info", tag = "operations", responses((status = 200, description = "model, default vocabulary, limits, ONNX Runtime version, execution provider", body = Object)))]
pub async fn info(State(state): State<Arc<AppState>>) -> Response {
    let e = &state.engine;
    let m = e.manifest();
    let s = &state.settings;
    Json(serde_json::json!({
        "model": {
            "name": m.model.name,
            "description": m.model.description,
            "input": {"width": m.input.width, "height": m.input.height},
            "embedding_dim": m.embedding.dim,
            "text_encoder": e.text_encoder().map(|t| t.config().name.clone()),
            "provenance": m.provenance,
        },
        "default_vocabulary": VocabRef::from(state.default_vocab.as_ref()),
        "postprocess": m.postprocess,
        "limits": {
            "max_body_bytes": s.max_body_bytes,
            "max_pixels": e.limits().max_pixels,
            "max_side": e.limits().max_side,
            "queue_size": s.queue_size,
            "max_batch": s.max_batch,
            "deadline_ms": s.deadline_ms,
            "vocabulary": state.store.limits(),
        },
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
