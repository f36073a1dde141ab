//! `dosod serve`: the HTTP API. Routes are thin adapters over the service (one detection path),
//! the vocabulary store and the stream manager; errors map to statuses in `error.rs` only.

pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod input;
mod listener;
pub(crate) mod openapi;
mod page;
pub(crate) mod routes;
pub(crate) mod types;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::engine::Vocabulary;
use crate::service::Service;
use crate::vocab::store::VocabRequest;
use config::ServerSettings;
use error::{ApiError, FailureReason};
use routes::{detect, events, operations, streams, vocabularies};

/// What every handler shares.
pub(crate) struct AppState {
    pub service: Arc<Service>,
    pub settings: ServerSettings,
    /// Used when a request names no vocabulary (warm-up, `/v1/info`).
    pub default_vocab: Arc<Vocabulary>,
    /// The warm-up forward pass has run: until then `/v1/…` answers 503 (a load balancer
    /// retries elsewhere) while `/health/live` already answers.
    pub warm: AtomicBool,
    /// SIGTERM / Ctrl-C arrived: not ready, in-flight requests finishing.
    pub stopping: AtomicBool,
    /// Bytes of request bodies being received (`[server] max_inflight_body_bytes`).
    body_budget: tokio::sync::Semaphore,
    /// The cameras, when `[[streams]]` are configured (set once, after start-up).
    pub streams: std::sync::OnceLock<Arc<crate::stream::StreamManager>>,
}

impl AppState {
    /// The HTTP frontend over the service; resolves the default vocabulary.
    pub fn new(service: Arc<Service>, settings: ServerSettings) -> anyhow::Result<Arc<AppState>> {
        let default_vocab = service
            .store
            .select(&VocabRequest::default(), &settings.default_vocabulary)?;
        Ok(Arc::new(AppState {
            service,
            default_vocab,
            warm: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            body_budget: tokio::sync::Semaphore::new(
                settings
                    .max_inflight_body_bytes
                    .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
            ),
            streams: std::sync::OnceLock::new(),
            settings,
        }))
    }
}

/// The whole application: routes, middleware and limits.
pub fn router(state: Arc<AppState>) -> Router {
    let s = &state.settings;
    let api = Router::new()
        .route("/v1/detect", post(detect::detect))
        .route("/v1/detect/batch", post(detect::detect_batch))
        .route("/v1/vocabularies", get(vocabularies::list_vocabularies))
        .route(
            "/v1/vocabularies/{name}",
            get(vocabularies::get_vocabulary)
                .put(vocabularies::put_vocabulary)
                .delete(vocabularies::delete_vocabulary),
        )
        .route("/v1/info", get(operations::info))
        .route("/v1/streams", get(streams::list))
        .route("/v1/streams/{name}", get(streams::get))
        .route(
            "/v1/streams/{name}/vocabulary",
            axum::routing::put(streams::put_vocabulary),
        )
        .route(
            "/v1/streams/{name}/rules",
            get(streams::get_rules).put(streams::put_rules),
        )
        .route(
            "/v1/streams/{name}/clips",
            get(streams::get_clips).put(streams::put_clips),
        )
        .route("/v1/events", get(events::list))
        .route("/v1/events/{id}", get(events::get).delete(events::delete))
        .route("/v1/events/{id}/snapshot.jpg", get(events::snapshot))
        .route("/v1/events/{id}/thumbnail.jpg", get(events::thumbnail))
        .route("/v1/events/{id}/clip.mp4", get(events::clip))
        .route("/v1/streams/{name}/enable", post(streams::enable))
        .route("/v1/streams/{name}/disable", post(streams::disable))
        .route("/v1/streams/{name}/events", get(streams::events))
        .route("/v1/streams/{name}/mjpeg", get(streams::mjpeg))
        .route("/v1/streams/{name}/snapshot.jpg", get(streams::snapshot))
        .route_layer(middleware::from_fn_with_state(state.clone(), admit_body))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .route_layer(middleware::from_fn_with_state(state.clone(), until_warm));
    let open = Router::new()
        // DeepStack clients send the key as a form field: the handler checks it.
        .route(
            "/v1/vision/detection",
            post(routes::deepstack::deepstack)
                .route_layer(middleware::from_fn_with_state(state.clone(), admit_body))
                .route_layer(middleware::from_fn_with_state(state.clone(), until_warm)),
        )
        .route("/health/live", get(operations::live))
        .route("/health/ready", get(operations::ready))
        .route("/metrics", get(operations::metrics))
        .merge(page::routes())
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url(
            "/api-doc/openapi.json",
            <openapi::ApiDoc as utoipa::OpenApi>::openapi(),
        ));
    let mut app = api
        .merge(open)
        .fallback(operations::not_found)
        .method_not_allowed_fallback(operations::method_not_allowed)
        .layer(DefaultBodyLimit::max(s.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_declared_oversize,
        ))
        .layer(middleware::from_fn(refuse_large_headers))
        .layer(middleware::map_response(close_after_refused_body))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // Never compress the MJPEG view: gzip would buffer a stream that never ends.
        .layer(CompressionLayer::new().compress_when(
            DefaultPredicate::new().and(NotForContentType::const_new("multipart/x-mixed-replace")),
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), id = %id)
        }))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    if let Some(cors) = cors(&s.cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                "x-api-key".parse().expect("header name"),
            ]),
    )
}

/// A request refused for its size (body or headers) is left unread: the connection cannot
/// carry another request, so say so (`Connection: close`) instead of letting the client reuse
/// it and fail.
async fn close_after_refused_body(mut resp: Response) -> Response {
    if matches!(
        resp.status(),
        axum::http::StatusCode::PAYLOAD_TOO_LARGE
            | axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    ) {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The key a request presents: `Authorization: Bearer KEY` or `x-api-key: KEY`.
pub fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_string())
}

/// `?api_key=KEY`, accepted on the stream views and event media only: browsers cannot set
/// headers on `<img>`, `<video>` and `EventSource`.
fn query_key(req: &Request) -> Option<String> {
    let path = req.uri().path();
    if !(path.starts_with("/v1/streams/") || path.starts_with("/v1/events/")) {
        return None;
    }
    req.uri().query()?.split('&').find_map(|kv| {
        kv.strip_prefix("api_key=")
            .map(|v| v.replace("%20", " ").trim().to_string())
    })
}

async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let key = &state.settings.api_key;
    let presented = presented_key(req.headers()).or_else(|| query_key(&req));
    if key.is_empty() || presented.as_deref() == Some(key.as_str()) {
        next.run(req).await
    } else {
        // Drain (never keep) a little of what the client is still sending, so a small request
        // sees the 401 rather than a reset; anything larger is cut off with the connection.
        let mut resp = ApiError::Unauthorized.into_response();
        // Chunked bodies (no length) are drained up to the same bound.
        let small = declared_length(req.headers()).is_none_or(|n| n <= UNAUTHORIZED_DRAIN_BYTES);
        if !small || !discard_body(req.into_body(), UNAUTHORIZED_DRAIN_BYTES).await {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// Admits a request's body under the budget of bytes being received at once (its declared
/// length, or `max_body_bytes` when chunked): beyond it, 429 before any body byte is read, and
/// the connection is closed.
async fn admit_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let s = &state.settings;
    let cost = match declared_length(req.headers()) {
        Some(n) => n,
        None if req.headers().contains_key(header::TRANSFER_ENCODING) => s.max_body_bytes as u64,
        None => 0,
    };
    if cost == 0 {
        return next.run(req).await;
    }
    // One request of any allowed size fits an empty budget.
    let cost = cost
        .min(s.max_body_bytes as u64)
        .min(s.max_inflight_body_bytes.max(1) as u64);
    let Ok(_permit) = state
        .body_budget
        .try_acquire_many(u32::try_from(cost).unwrap_or(u32::MAX))
    else {
        let mut resp = ApiError::BodiesInFlight.into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    };
    next.run(req).await
}

/// How much of an unauthenticated request's body is read (and dropped, a chunk at a time) before
/// its 401; a larger declared body gets the 401 at once and the connection closes.
const UNAUTHORIZED_DRAIN_BYTES: u64 = 1 << 20;

/// The body length a request declares (`Content-Length`), if any.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The largest oversized body drained before its 413.
const OVERSIZE_DRAIN_BYTES: u64 = 8 << 20;

/// Reads and drops a body up to `limit` bytes, holding one frame at a time; whether it ended.
async fn discard_body(body: axum::body::Body, limit: u64) -> bool {
    use futures_util::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut seen = 0u64;
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(bytes) => {
                seen += bytes.len() as u64;
                if seen > limit {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

/// Most header fields in one request (431 above).
pub(crate) const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values in one request (431 above).
pub(crate) const MAX_HEADER_BYTES: usize = 64 << 10;

/// Too many or too large header fields: 431 with the JSON error (hyper's own refusal, for heads
/// far larger, has no body).
async fn refuse_large_headers(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(format!(
            "{} header fields, {bytes} bytes; the limits are {MAX_HEADERS} fields and \
             {MAX_HEADER_BYTES} bytes",
            headers.len()
        ))
        .into_response();
    }
    next.run(req).await
}

/// A declared `Content-Length` over the body limit is refused at once (413, connection
/// closed), before authentication or any byte of the body is read.
async fn refuse_declared_oversize(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    match declared_length(req.headers()) {
        Some(n) if n > state.settings.max_body_bytes as u64 => {
            let resp = ApiError::PayloadTooLarge(format!(
                "the body ({n} bytes) exceeds the limit of {} bytes",
                state.settings.max_body_bytes
            ))
            .into_response();
            // A body of a few MB is read and dropped (a chunk at a time) so its sender sees
            // the 413 rather than a reset; a larger one is not waited for.
            if n <= OVERSIZE_DRAIN_BYTES {
                discard_body(req.into_body(), OVERSIZE_DRAIN_BYTES).await;
            }
            resp
        }
        _ => next.run(req).await,
    }
}

/// Request timeout, overload refusals paced (`overload_delay_ms`), and request / failure
/// counters by route, status and reason.
async fn observe(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let timeout = Duration::from_millis(state.settings.request_timeout_ms);
    let resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout(format!(
            "request did not finish within {} ms",
            state.settings.request_timeout_ms
        ))
        .into_response(),
    };
    let reason = resp.extensions().get::<FailureReason>().map(|r| r.0);
    if reason == Some("overloaded") && state.settings.overload_delay_ms > 0 {
        // Paces clients that re-send at once; the wait costs no CPU.
        tokio::time::sleep(Duration::from_millis(state.settings.overload_delay_ms)).await;
    }
    let status = resp.status();
    state
        .service
        .metrics
        .requests
        .with_label_values(&[route.as_str(), status.as_str()])
        .inc();
    if let Some(reason) = reason {
        state
            .service
            .metrics
            .failures
            .with_label_values(&[reason])
            .inc();
    }
    resp
}

/// Binds, warms up, serves until SIGTERM / Ctrl-C, then drains in-flight requests within the
/// grace period and returns.
pub async fn serve(state: Arc<AppState>) -> anyhow::Result<()> {
    let s = &state.settings;
    let addr: SocketAddr = format!("{}:{}", s.host, s.port)
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid listen address {}:{}: {e}", s.host, s.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    // Connections are answered from here on (`/health/live`; the API says 503 until warm); a
    // forward pass runs before we call ourselves ready.
    let (failed, warm_up_failed) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let warm = state.clone();
    tokio::spawn(async move {
        let w = warm.clone();
        let done = tokio::task::spawn_blocking(move || w.service.engine.warm_up(&w.default_vocab));
        match done.await {
            Ok(Ok(())) => {
                warm.warm.store(true, Ordering::Release);
                tracing::info!(%local, model = %warm.service.engine.manifest().model.name, "dosod serving");
                // The line tests and scripts wait for.
                println!("listening on http://{local}");
            }
            Ok(Err(e)) => {
                let _ = failed.send(anyhow::anyhow!("warm-up failed: {e}"));
            }
            Err(e) => {
                let _ = failed.send(anyhow::anyhow!("warm-up failed: {e}"));
            }
        }
    });

    let stop = state.clone();
    let limits = listener::ConnectionLimits {
        max_connections: listener::fit_connections(s.max_connections.max(1)),
        header_timeout: Duration::from_millis(s.header_timeout_ms.max(1)),
        grace: Duration::from_millis(s.shutdown_grace_ms),
    };
    let open = state.service.metrics.http_connections.clone();
    let failure = Arc::new(std::sync::Mutex::new(None));
    let failure_seen = failure.clone();
    let delay = Duration::from_millis(s.shutdown_delay_ms);
    listener::serve(listener, router(state.clone()), limits, open, async move {
        tokio::select! {
            _ = shutdown_signal() => {
                stop.stopping.store(true, Ordering::Release);
                if !delay.is_zero() {
                    tracing::info!(?delay, "shutting down: not ready, still serving");
                    tokio::time::sleep(delay).await;
                }
                tracing::info!("shutting down: finishing in-flight requests");
            }
            Ok(e) = warm_up_failed => {
                *failure_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            }
        }
        stop.stopping.store(true, Ordering::Release);
    })
    .await;
    match failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Refuses API requests with 503 until the warm-up forward pass has run.
async fn until_warm(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if state.warm.load(Ordering::Acquire) {
        next.run(req).await
    } else {
        ApiError::Unavailable("warming up".into()).into_response()
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
