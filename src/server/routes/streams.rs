//! Stream routes: thin adapters from HTTP to the stream manager (status, SSE, MJPEG, snapshot,
//! vocabulary, enable / disable) and the `/streams` page.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::engine::error::EngineError;
use crate::server::AppState;
use crate::server::error::ApiError;
use crate::server::input::DetectOptions;
use crate::stream::recorder::ClipConfig;
use crate::stream::rules::RulesConfig;
use crate::stream::{Processed, Stream, StreamMessage, StreamStatus, camera_vocabulary};

#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct StreamList {
    pub streams: Vec<StreamStatus>,
}

fn stream(state: &AppState, name: &str) -> Result<Arc<Stream>, ApiError> {
    state
        .streams
        .get()
        .and_then(|m| m.get(name))
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("unknown stream `{name}`")))
}

/// `GET /v1/streams`
#[utoipa::path(get, path = "/v1/streams", operation_id = "list_streams", tag = "streams",
    responses((status = 200, description = "every configured camera", body = StreamList)))]
pub async fn list(State(state): State<Arc<AppState>>) -> Response {
    let streams = state
        .streams
        .get()
        .map(|m| m.statuses())
        .unwrap_or_default();
    Json(StreamList { streams }).into_response()
}

/// `GET /v1/streams/{name}`
#[utoipa::path(get, path = "/v1/streams/{name}", operation_id = "get_stream", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = StreamStatus), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(stream(&state, &name)?.status()).into_response())
}

/// `PUT /v1/streams/{name}/vocabulary`: the detect options (classes or a vocabulary, and
/// thresholds) of a camera; they apply from the next frame, no restart.
#[utoipa::path(put, path = "/v1/streams/{name}/vocabulary", operation_id = "put_stream_vocabulary", tag = "streams", params(("name" = String, Path)),
    request_body = DetectOptions,
    responses((status = 200, description = "the stream's new status", body = StreamStatus), (status = 400, description = "malformed request", body = crate::server::openapi::ErrorBody), (status = 404, description = "unknown stream or vocabulary", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid vocabulary or threshold", body = crate::server::openapi::ErrorBody)))]
pub async fn put_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = stream(&state, &name)?;
    let body: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON: {e}")))?;
    let options = DetectOptions::from_fields(Vec::new(), body).map_err(ApiError::BadRequest)?;
    if options.annotate.is_some() {
        return Err(ApiError::BadRequest(
            "`annotate` does not apply to a camera: use /mjpeg or /snapshot.jpg".into(),
        ));
    }
    let _changing = target.changing.lock().await;
    let params = options.params(target.params())?;
    let request = options.vocab_request();
    let store = state.service.store.clone();
    let rules = target.rules();
    let asked = request.clone();
    let vocab = tokio::task::spawn_blocking(move || {
        if request.classes.is_none() && request.name.is_none() {
            return Ok::<_, ApiError>(None);
        }
        Ok(Some(camera_vocabulary(&store, &request, &rules.config)?))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    if vocab.is_some() {
        target.set_request(asked);
    }
    let changes_params = options.score_threshold.is_some()
        || options.iou_threshold.is_some()
        || options.max_detections.is_some()
        || options.multi_label.is_some();
    match vocab {
        Some(v) => target.set_vocabulary(v, params),
        None if changes_params => target.set_vocabulary(target.vocabulary(), params),
        None => {
            return Err(ApiError::BadRequest(
                "give `classes`, `vocabulary` or a parameter such as `score_threshold`".into(),
            ));
        }
    }
    Ok(Json(target.status()).into_response())
}

/// `GET /v1/streams/{name}/rules`: the camera's zones, masks and object filters.
#[utoipa::path(get, path = "/v1/streams/{name}/rules", operation_id = "get_stream_rules", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "the rules in force", body = RulesConfig), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn get_rules(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(stream(&state, &name)?.rules().config.clone()).into_response())
}

/// `PUT /v1/streams/{name}/rules`: replaces the camera's zones, masks and object filters from
/// the next frame (no restart; classes its zones ask for join the camera's vocabulary). Bad
/// geometry is a 422 and changes nothing.
#[utoipa::path(put, path = "/v1/streams/{name}/rules", operation_id = "put_stream_rules", tag = "streams", params(("name" = String, Path)),
    request_body = RulesConfig,
    responses((status = 200, description = "the rules now in force", body = RulesConfig), (status = 400, description = "malformed JSON", body = crate::server::openapi::ErrorBody), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid rules (geometry, filters, a zone class the vocabulary lacks)", body = crate::server::openapi::ErrorBody)))]
pub async fn put_rules(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = stream(&state, &name)?;
    let config: RulesConfig = parse_json(&body, "rules")?;
    let rules = config
        .compile()
        .map_err(|e| EngineError::InvalidParameter(format!("rules: {e}")))?;
    let _changing = target.changing.lock().await;
    let store = state.service.store.clone();
    let request = target.request();
    let wanted = config.clone();
    let vocab = tokio::task::spawn_blocking(move || camera_vocabulary(&store, &request, &wanted))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    target.set_rules(rules, vocab);
    Ok(Json(config).into_response())
}

/// `GET /v1/streams/{name}/clips`: the camera's clip settings.
#[utoipa::path(get, path = "/v1/streams/{name}/clips", operation_id = "get_stream_clips", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "the clip settings in force", body = ClipConfig), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn get_clips(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(stream(&state, &name)?.clips()).into_response())
}

/// `PUT /v1/streams/{name}/clips`: switches clips on or off and sets pre / post capture; the
/// recorder starts, stops or restarts within a tick, detection is untouched.
#[utoipa::path(put, path = "/v1/streams/{name}/clips", operation_id = "put_stream_clips", tag = "streams", params(("name" = String, Path)),
    request_body = ClipConfig,
    responses((status = 200, description = "the clip settings now in force", body = ClipConfig), (status = 400, description = "malformed JSON", body = crate::server::openapi::ErrorBody), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid settings, or events are not stored", body = crate::server::openapi::ErrorBody)))]
pub async fn put_clips(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let target = stream(&state, &name)?;
    let clips: ClipConfig = parse_json(&body, "clips")?;
    target
        .set_clips(clips.clone())
        .map_err(|e| EngineError::InvalidParameter(format!("clips: {e}")))?;
    Ok(Json(clips).into_response())
}

/// A JSON body: malformed JSON is a 400, a well-formed body of the wrong shape a 422.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => {
                ApiError::Engine(EngineError::InvalidParameter(format!("{what}: {e}")))
            }
            _ => ApiError::BadRequest(format!("invalid JSON: {e}")),
        }
    })
}

/// `POST /v1/streams/{name}/enable`
#[utoipa::path(post, path = "/v1/streams/{name}/enable", operation_id = "enable_stream", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "the stream's status", body = StreamStatus), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn enable(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    switch(&state, &name, true)
}

/// `POST /v1/streams/{name}/disable`: stops the source; the camera's tracks end.
#[utoipa::path(post, path = "/v1/streams/{name}/disable", operation_id = "disable_stream", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "the stream's status", body = StreamStatus), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn disable(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    switch(&state, &name, false)
}

fn switch(state: &AppState, name: &str, on: bool) -> Result<Response, ApiError> {
    let s = stream(state, name)?;
    s.set_enabled(on);
    Ok(Json(s.status()).into_response())
}

/// `GET /v1/streams/{name}/events`: Server-Sent Events, `event: detections` per processed frame
/// and `event: event` per tracker event (`new`, `update`, `end`).
#[utoipa::path(get, path = "/v1/streams/{name}/events", operation_id = "stream_events", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let rx = stream(&state, &name)?.subscribe();
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(StreamMessage::Detections(json)) => {
                SseEvent::default().event("detections").data(json.as_str())
            }
            Ok(StreamMessage::Event(json)) => {
                SseEvent::default().event("event").data(json.as_str())
            }
            // A slow client skips messages rather than holding the camera back.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"skipped\":{n}}}")),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The annotated JPEG of a processed frame, encoded once however many viewers ask.
fn annotated_jpeg(p: &Processed) -> Result<Vec<u8>, ApiError> {
    if let Some(jpeg) = p.jpeg.get() {
        return Ok(jpeg.clone());
    }
    let jpeg = crate::engine::annotate::encode(
        (*p.image).clone(),
        &p.detections,
        image::ImageFormat::Jpeg,
    )
    .map_err(|e| ApiError::Internal(format!("encoding JPEG: {e}")))?;
    Ok(p.jpeg.get_or_init(|| jpeg).clone())
}

/// `GET /v1/streams/{name}/snapshot.jpg`: the last processed frame, annotated.
#[utoipa::path(get, path = "/v1/streams/{name}/snapshot.jpg", operation_id = "stream_snapshot", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "image/jpeg", content_type = "image/jpeg", body = String), (status = 404, description = "unknown stream or no frame yet", body = crate::server::openapi::ErrorBody)))]
pub async fn snapshot(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let latest = stream(&state, &name)?.watch_latest().borrow().clone();
    let Some(p) = latest else {
        return Err(ApiError::NotFound(format!(
            "stream `{name}` has no processed frame yet"
        )));
    };
    let jpeg = tokio::task::spawn_blocking(move || annotated_jpeg(&p))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// `GET /v1/streams/{name}/mjpeg`: the live annotated view (multipart/x-mixed-replace).
#[utoipa::path(get, path = "/v1/streams/{name}/mjpeg", operation_id = "stream_mjpeg", tag = "streams", params(("name" = String, Path)),
    responses((status = 200, description = "multipart/x-mixed-replace; boundary=frame", content_type = "multipart/x-mixed-replace", body = String), (status = 404, description = "unknown stream", body = crate::server::openapi::ErrorBody)))]
pub async fn mjpeg(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let mut rx = stream(&state, &name)?.watch_latest();
    rx.mark_changed();
    let parts = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            let Some(p) = rx.borrow_and_update().clone() else {
                continue;
            };
            let Ok(Ok(jpeg)) = tokio::task::spawn_blocking(move || annotated_jpeg(&p)).await else {
                continue;
            };
            let mut part = format!(
                "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            )
            .into_bytes();
            part.extend_from_slice(&jpeg);
            part.extend_from_slice(b"\r\n");
            return Some((Ok::<_, Infallible>(Bytes::from(part)), rx));
        }
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "multipart/x-mixed-replace; boundary=frame",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::from_stream(parts),
    )
        .into_response())
}
