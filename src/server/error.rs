//! The HTTP layer's error enum, mapped to a status and a `{"error", "error_type"}` body in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::engine::error::EngineError;
use crate::service::ServiceError;

/// Every way an HTTP request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The request is malformed (missing field, bad number, bad base64...).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Too many or too large header fields.
    #[error("request header fields too large: {0}")]
    HeadersTooLarge(String),
    #[error("missing or wrong API key")]
    Unauthorized,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// The queue is full: try again later.
    #[error("server overloaded: the queue is full")]
    Overloaded { retry_after_s: u64 },
    /// Too many request bodies are being received at once (`[server] max_inflight_body_bytes`).
    #[error("server overloaded: too many request bytes are being received; retry shortly")]
    BodiesInFlight,
    /// The request's deadline passed before its result was ready.
    #[error("{0}")]
    Timeout(String),
    #[error("the server is not ready: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Engine(e) => ApiError::Engine(e),
            ServiceError::Overloaded { retry_after_s } => ApiError::Overloaded { retry_after_s },
            ServiceError::Stopped => ApiError::Unavailable(e.to_string()),
            ServiceError::Timeout(m) => ApiError::Timeout(m),
            ServiceError::Inference(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::stream::event_store::EventStoreError> for ApiError {
    fn from(e: crate::stream::event_store::EventStoreError) -> Self {
        // Its messages name no path.
        ApiError::Internal(e.to_string())
    }
}

impl ApiError {
    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Engine(e) => match e {
                EngineError::Decode(_) => StatusCode::BAD_REQUEST,
                EngineError::TooLarge(_)
                | EngineError::Vocabulary(_)
                | EngineError::InvalidParameter(_) => StatusCode::UNPROCESSABLE_ENTITY,
                EngineError::NotFound(_) => StatusCode::NOT_FOUND,
                EngineError::Conflict(_) => StatusCode::CONFLICT,
                EngineError::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                EngineError::Runtime(_)
                | EngineError::Bundle { .. }
                | EngineError::Inference(_)
                | EngineError::Storage(_)
                | EngineError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded { .. } | ApiError::BodiesInFlight => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable `error_type` of the body; also the failure reason in metrics.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Engine(e) => match e {
                EngineError::Decode(_) => "decode",
                EngineError::TooLarge(_) => "too_large",
                EngineError::Vocabulary(_) | EngineError::InvalidParameter(_) => "validation",
                EngineError::NotFound(_) => "not_found",
                EngineError::Conflict(_) => "conflict",
                EngineError::Storage(_) => "storage",
                EngineError::StoreUnavailable(_) => "store_unavailable",
                EngineError::Runtime(_)
                | EngineError::Bundle { .. }
                | EngineError::Inference(_)
                | EngineError::Io { .. } => "inference",
            },
            ApiError::BadRequest(_) => "validation",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::HeadersTooLarge(_) => "headers_too_large",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Overloaded { .. } | ApiError::BodiesInFlight => "overloaded",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": self.to_string(), "error_type": self.error_type()})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let mut resp = (status, axum::Json(self.body())).into_response();
        match self {
            ApiError::Overloaded { retry_after_s } => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            ApiError::BodiesInFlight => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        if let ApiError::Unauthorized = self {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp.extensions_mut()
            .insert(FailureReason(self.error_type()));
        resp
    }
}

/// Attached to error responses so the metrics middleware can count failures by reason.
#[derive(Debug, Clone, Copy)]
pub struct FailureReason(pub &'static str);

/// Maps an axum body rejection (too large, unreadable) onto our errors.
pub fn from_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge(format!("request body too large: {text}"))
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(text),
        _ => ApiError::BadRequest(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_types() {
        let e = ApiError::from(EngineError::TooLarge("x".into()));
        assert_eq!((e.status().as_u16(), e.error_type()), (422, "too_large"));
        let e = ApiError::from(EngineError::Decode("x".into()));
        assert_eq!((e.status().as_u16(), e.error_type()), (400, "decode"));
        let e = ApiError::Overloaded { retry_after_s: 1 };
        assert_eq!(e.status().as_u16(), 429);
        let r = e.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(ApiError::Timeout("t".into()).status().as_u16(), 503);
    }
}
