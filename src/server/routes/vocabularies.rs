//! `/v1/vocabularies` and `/v1/vocabularies/{name}`: named vocabularies.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::server::AppState;
use crate::server::error::ApiError;
use crate::vocab::spec::VocabSpec;

/// `GET /v1/vocabularies`
#[utoipa::path(get, path = "/v1/vocabularies", tag = "vocabularies",
    responses((status = 200, description = "OK", body = crate::server::openapi::VocabularyList)))]
pub async fn list_vocabularies(State(state): State<Arc<AppState>>) -> Response {
    Json(serde_json::json!({ "vocabularies": state.service.store.list() })).into_response()
}

/// `GET /v1/vocabularies/{name}`
#[utoipa::path(get, path = "/v1/vocabularies/{name}", tag = "vocabularies", params(("name" = String, Path, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$", description = "1-64 of A-Z a-z 0-9 _ - ., not starting with .")),
    responses((status = 200, description = "OK", body = crate::server::openapi::VocabularyDetail), (status = 404, description = "unknown vocabulary or route", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid image size, vocabulary or parameter", body = crate::server::openapi::ErrorBody)))]
pub async fn get_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    crate::vocab::store::validate_name(&name)?;
    let spec = state.service.store.spec(&name)?;
    let builtin = crate::vocab::store::BUILTINS
        .iter()
        .any(|(n, _)| *n == name);
    Ok(Json(serde_json::json!({
        "name": name,
        "builtin": builtin,
        "classes": spec.classes,
        "template": spec.template,
    }))
    .into_response())
}

/// `PUT /v1/vocabularies/{name}` with `{"classes": [...], "template": "..."}`
#[utoipa::path(put, path = "/v1/vocabularies/{name}", tag = "vocabularies", params(("name" = String, Path, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$", description = "1-64 of A-Z a-z 0-9 _ - ., not starting with .")),
    request_body = VocabSpec,
    responses((status = 200, description = "OK", body = crate::server::openapi::VocabularyCreated), (status = 400, description = "malformed request", body = crate::server::openapi::ErrorBody), (status = 409, description = "a built-in vocabulary cannot be replaced", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid name or vocabulary (phrases, template, limits)", body = crate::server::openapi::ErrorBody), (status = 500, description = "the vocabulary could not be stored", body = crate::server::openapi::ErrorBody), (status = 503, description = "the shared vocabulary store (Redis) is unavailable: nothing was changed", body = crate::server::openapi::ErrorBody)))]
pub async fn put_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    crate::vocab::store::validate_name(&name)?;
    let spec: VocabSpec = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid vocabulary JSON: {e}")))?;
    let store = state.service.store.clone();
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
#[utoipa::path(delete, path = "/v1/vocabularies/{name}", tag = "vocabularies", params(("name" = String, Path, pattern = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$", description = "1-64 of A-Z a-z 0-9 _ - ., not starting with .")),
    responses((status = 204, description = "deleted"), (status = 404, description = "unknown vocabulary", body = crate::server::openapi::ErrorBody), (status = 409, description = "a built-in vocabulary cannot be deleted", body = crate::server::openapi::ErrorBody), (status = 422, description = "invalid name", body = crate::server::openapi::ErrorBody), (status = 500, description = "the vocabulary could not be removed", body = crate::server::openapi::ErrorBody), (status = 503, description = "the shared vocabulary store (Redis) is unavailable: nothing was changed", body = crate::server::openapi::ErrorBody)))]
pub async fn delete_vocabulary(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let store = state.service.store.clone();
    let lookup = name.clone();
    // A shared (Redis) store answers over the network: off the async threads.
    let deleted = tokio::task::spawn_blocking(move || store.delete(&lookup))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::NotFound(format!("unknown vocabulary `{name}`")))
    }
}
