//! `POST /v1/detect` and `POST /v1/detect/batch`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{timing_headers, wants_image};
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::input::{DetectInput, DetectOptions};
use crate::server::types::BatchItem;

/// `POST /v1/detect`
#[utoipa::path(post, path = "/v1/detect", tag = "detection",
    params(DetectOptions),
    request_body(content = crate::server::openapi::DetectForm, description = "multipart/form-data (field `image`), a raw `image/*` body, or JSON with a base64 `image`", content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "detections, or the annotated image with ?annotate=true / Accept: image/*", body = crate::server::types::DetectResponse),
        (status = 400, description = "malformed request", body = crate::server::openapi::ErrorBody), (status = 401, description = "missing or wrong API key", body = crate::server::openapi::ErrorBody),
        (status = 404, description = "unknown vocabulary or route", body = crate::server::openapi::ErrorBody), (status = 413, description = "body too large", body = crate::server::openapi::ErrorBody),
        (status = 415, description = "unsupported content type", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = crate::server::openapi::ErrorBody),
        (status = 429, description = "queue full: retry after the Retry-After seconds", body = crate::server::openapi::ErrorBody), (status = 503, description = "deadline passed or not ready", body = crate::server::openapi::ErrorBody)))]
pub async fn detect(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    // Overload is refused before the body is read: a refusal costs no upload.
    state.service.check_room(1)?;
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
        .choose(&input.options, &state.settings.default_vocabulary)
        .await?;
    let bytes = input.images.into_iter().next().expect("one image");
    let mut answer = state
        .detect_one(bytes, vocab, params, format.is_some(), None)
        .await?;
    let mut resp = match (format, answer.image.take()) {
        (Some(fmt), Some(img)) => {
            let dets = std::mem::take(&mut answer.response.detections);
            let bytes = tokio::task::spawn_blocking(move || {
                let img = std::sync::Arc::unwrap_or_clone(img);
                crate::engine::annotate::encode(img, &dets, fmt)
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
        _ => Json(&answer.response).into_response(),
    };
    timing_headers(&mut resp, &answer);
    Ok(resp)
}

/// `POST /v1/detect/batch`: several `image` fields, one result each, in order.
#[utoipa::path(post, path = "/v1/detect/batch", tag = "detection",
    params(DetectOptions),
    request_body(content = crate::server::openapi::DetectForm, description = "several `image` fields", content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = crate::server::openapi::BatchResponse), (status = 400, description = "malformed request", body = crate::server::openapi::ErrorBody), (status = 413, description = "more images than `[server] max_batch_images`, or a body over the limit", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = crate::server::openapi::ErrorBody), (status = 429, description = "the batch does not fit in the queue (admitted whole or not at all)", body = crate::server::openapi::ErrorBody)))]
pub async fn detect_batch(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    state.service.check_room(1)?;
    let input = DetectInput::read(req, query.as_deref()).await?;
    let max = state
        .settings
        .max_batch_images
        .min(state.service.batching.queue_size.max(1));
    if input.images.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "{} images in one batch; the limit is {max} ([server] max_batch_images, at most \
             [batching] queue_size)",
            input.images.len()
        )));
    }
    let (vocab, params) = state
        .choose(&input.options, &state.settings.default_vocabulary)
        .await?;
    // Admitted as a whole: an idle server never refuses part of a batch, a busy one all of it.
    let places = state.service.admit(input.images.len())?;
    let futures = input.images.into_iter().zip(places).map(|(bytes, place)| {
        let state = state.clone();
        let (vocab, params) = (vocab.clone(), params.clone());
        async move {
            state
                .detect_one(bytes, vocab, params, false, Some(place))
                .await
        }
    });
    let results = futures_join_all(futures).await;
    let items: Vec<BatchItem> = results
        .into_iter()
        .map(|r| match r {
            Ok(answer) => BatchItem::Ok(answer.response),
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
