//! `POST /v1/vision/detection`: the DeepStack-compatible route.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::response::{IntoResponse, Response};

use super::timing_headers;
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::input::DetectInput;

/// `POST /v1/vision/detection`: DeepStack's object detection API, for Frigate and friends.
#[utoipa::path(post, path = "/v1/vision/detection", tag = "compatibility",
    request_body(content = crate::server::openapi::DeepStackForm, content_type = "multipart/form-data"),
    responses((status = 200, description = "OK", body = crate::server::openapi::DeepStackResponse), (status = 401, description = "missing or wrong API key", body = crate::server::openapi::ErrorBody), (status = 400, description = "malformed request", body = crate::server::openapi::ErrorBody),
        (status = 413, description = "body too large", body = crate::server::openapi::ErrorBody), (status = 415, description = "unsupported content type", body = crate::server::openapi::ErrorBody),
        (status = 422, description = "invalid image size or parameter", body = crate::server::openapi::ErrorBody), (status = 429, description = "queue full: retry after the Retry-After seconds", body = crate::server::openapi::ErrorBody),
        (status = 503, description = "deadline passed or not ready", body = crate::server::openapi::ErrorBody)))]
pub async fn deepstack(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let key = state.settings.api_key.as_str();
    let header_ok =
        key.is_empty() || crate::server::presented_key(req.headers()).as_deref() == Some(key);
    // Without a valid header key the key can only come as a form field: anything but a form
    // is refused before its body is read, and a form's key is checked before its errors.
    if !header_ok && !crate::server::input::is_multipart(req.headers()) {
        return Err(ApiError::Unauthorized);
    }
    state.service.check_room(1)?;
    let read = DetectInput::read(req, query.as_deref()).await;
    if !header_ok {
        let form_key = read.as_ref().ok().and_then(|input| {
            input
                .extra
                .iter()
                .find(|(k, _)| k == "api_key")
                .map(|(_, v)| v.as_str())
        });
        if form_key != Some(key) {
            return Err(ApiError::Unauthorized);
        }
    }
    let input = read?;
    let fallback = if state.settings.deepstack_vocabulary.is_empty() {
        &state.settings.default_vocabulary
    } else {
        &state.settings.deepstack_vocabulary
    };
    let (vocab, params) = state.choose(&input.options, fallback).await?;
    let bytes = input.images.into_iter().next().expect("checked non-empty");
    let answer = state.detect_one(bytes, vocab, params, false, None).await?;
    let mut predictions: Vec<serde_json::Value> = answer
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
    timing_headers(&mut resp, &answer);
    Ok(resp)
}
