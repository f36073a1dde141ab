//! Event routes: thin adapters from HTTP to the event store (`GET /v1/events`, one event, its
//! snapshot, thumbnail and clip, `DELETE`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{Uri, header};
use axum::response::{IntoResponse, Response};

use crate::server::AppState;
use crate::server::error::ApiError;
use crate::stream::event_store::{EventQuery, EventStore, Media};
use crate::stream::events::EventObject;

#[derive(utoipa::ToSchema, serde::Serialize)]
pub struct EventList {
    /// Newest first.
    pub events: Vec<EventObject>,
}

/// The store, or `None` when no camera runs here or `[events] dir` is empty.
fn store(state: &AppState) -> Option<Arc<EventStore>> {
    state.streams.get().and_then(|m| m.event_store()).cloned()
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("no event `{id}`"))
}

/// `GET /v1/events`
#[utoipa::path(get, path = "/v1/events", operation_id = "list_events", tag = "events", params(EventQuery),
    responses((status = 200, description = "stored events, newest first", body = EventList), (status = 400, description = "bad query", body = crate::server::openapi::ErrorBody)))]
pub async fn list(State(state): State<Arc<AppState>>, uri: Uri) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = axum::extract::Query::<EventQuery>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(format!("query: {}", e.body_text())))?;
    if query.limit.is_some_and(|l| !(1..=10_000).contains(&l)) {
        return Err(ApiError::BadRequest("limit must be 1..10000".into()));
    }
    let Some(store) = store(&state) else {
        return Ok(Json(EventList { events: Vec::new() }).into_response());
    };
    let events = blocking(move || Ok(store.list(&query)?)).await?;
    Ok(Json(EventList { events }).into_response())
}

/// `GET /v1/events/{id}`
#[utoipa::path(get, path = "/v1/events/{id}", operation_id = "get_event", tag = "events", params(("id" = String, Path)),
    responses((status = 200, description = "the event's latest state", body = EventObject), (status = 404, description = "unknown event", body = crate::server::openapi::ErrorBody)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = store(&state).ok_or_else(|| not_found(&id))?;
    let key = id.clone();
    let event = blocking(move || Ok(store.get(&key)?)).await?;
    Ok(Json(event.ok_or_else(|| not_found(&id))?).into_response())
}

/// `DELETE /v1/events/{id}`: the event and its files.
#[utoipa::path(delete, path = "/v1/events/{id}", operation_id = "delete_event", tag = "events", params(("id" = String, Path)),
    responses((status = 200, description = "deleted", body = EventObject), (status = 404, description = "unknown event", body = crate::server::openapi::ErrorBody)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = store(&state).ok_or_else(|| not_found(&id))?;
    let key = id.clone();
    let event = blocking(move || {
        let event = store.get(&key)?;
        if event.is_some() {
            store.delete(&key)?;
        }
        Ok(event)
    })
    .await?;
    Ok(Json(event.ok_or_else(|| not_found(&id))?).into_response())
}

/// One of an event's files.
async fn media(state: &AppState, id: String, media: Media) -> Result<Response, ApiError> {
    let store = store(state).ok_or_else(|| not_found(&id))?;
    let key = id.clone();
    let bytes = blocking(move || {
        let Some(event) = store.get(&key)? else {
            return Ok(None);
        };
        let path = store
            .media_path(&event.camera, &event.id, media)
            .ok_or_else(|| not_found(&key))?;
        match std::fs::read(path) {
            Ok(b) => Ok(Some(Ok(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(Err(()))),
            Err(e) => Err(ApiError::Internal(format!(
                "reading an event file: {}",
                e.kind()
            ))),
        }
    })
    .await?;
    let what = match media {
        Media::Snapshot => "snapshot",
        Media::Thumbnail => "thumbnail",
        Media::Clip => "clip",
    };
    match bytes {
        None => Err(not_found(&id)),
        Some(Err(())) => Err(ApiError::NotFound(format!("event `{id}` has no {what}"))),
        Some(Ok(b)) => {
            let kind = if media == Media::Clip {
                "video/mp4"
            } else {
                "image/jpeg"
            };
            Ok(([(header::CONTENT_TYPE, kind)], b).into_response())
        }
    }
}

/// `GET /v1/events/{id}/snapshot.jpg`: the event's best frame.
#[utoipa::path(get, path = "/v1/events/{id}/snapshot.jpg", operation_id = "event_snapshot", tag = "events", params(("id" = String, Path)),
    responses((status = 200, description = "image/jpeg", content_type = "image/jpeg", body = String), (status = 404, description = "unknown event or no snapshot", body = crate::server::openapi::ErrorBody)))]
pub async fn snapshot(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    media(&state, id, Media::Snapshot).await
}

/// `GET /v1/events/{id}/thumbnail.jpg`: the object, at most 175 px tall.
#[utoipa::path(get, path = "/v1/events/{id}/thumbnail.jpg", operation_id = "event_thumbnail", tag = "events", params(("id" = String, Path)),
    responses((status = 200, description = "image/jpeg", content_type = "image/jpeg", body = String), (status = 404, description = "unknown event or no thumbnail", body = crate::server::openapi::ErrorBody)))]
pub async fn thumbnail(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    media(&state, id, Media::Thumbnail).await
}

/// `GET /v1/events/{id}/clip.mp4`: the recording around the event.
#[utoipa::path(get, path = "/v1/events/{id}/clip.mp4", operation_id = "event_clip", tag = "events", params(("id" = String, Path)),
    responses((status = 200, description = "video/mp4", content_type = "video/mp4", body = String), (status = 404, description = "unknown event or no clip", body = crate::server::openapi::ErrorBody)))]
pub async fn clip(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    media(&state, id, Media::Clip).await
}
