//! `[server]`: the HTTP API's listener, limits, keys and defaults.

section! {
    /// `[server]`: the HTTP API.
    pub(crate) struct ServerSettings, flags ServerArgs (global = false) {
        host: String = "127.0.0.1".into() => "host", "DOSOD_HOST";
        port: u16 = 8080 => "port", "DOSOD_PORT";
        /// Largest request body (413 above).
        max_body_bytes: usize = 20 << 20 => "max-body-bytes", "DOSOD_MAX_BODY_BYTES";
        /// The whole request must finish within this, else 503.
        request_timeout_ms: u64 = 30_000 => "request-timeout-ms", "DOSOD_REQUEST_TIMEOUT_MS";
        /// Async threads serving HTTP (0: half the physical cores, at least one).
        http_threads: usize = 0 => "http-threads", "DOSOD_HTTP_THREADS";
        /// Required on every route but health, metrics, the page, the OpenAPI document and `/docs`
        /// (DeepStack also takes it as a form field); empty: none.
        api_key: String = String::new() => "api-key", "DOSOD_API_KEY", hide_env_values = true;
        /// Origins allowed by CORS, comma-separated; empty: CORS off; `*`: any.
        cors_origins: Vec<String> = Vec::new() => "cors-origins", "DOSOD_CORS_ORIGINS", value_delimiter = ',';
        /// The vocabulary used when a request names none; empty: the bundle's default.
        default_vocabulary: String = String::new() => "default-vocabulary", "DOSOD_DEFAULT_VOCABULARY";
        /// The vocabulary of the DeepStack-compatible route; empty: the default one.
        deepstack_vocabulary: String = String::new() => "deepstack-vocabulary", "DOSOD_DEEPSTACK_VOCABULARY";
        /// Most images in one `/v1/detect/batch` request (413 above); `[batching] queue_size`
        /// when that is smaller, since a batch is admitted whole or refused whole (429).
        max_batch_images: usize = 32 => "max-batch-images", "DOSOD_MAX_BATCH_IMAGES";
        /// Most open client connections; more wait in the kernel's backlog. Kept below the
        /// open-file limit, which is raised to its hard value at start.
        max_connections: usize = 4096 => "max-connections", "DOSOD_MAX_CONNECTIONS";
        /// A request's headers must arrive within this, counted on a kept-alive connection from
        /// the end of the previous response (so it is also the idle timeout); else closed.
        header_timeout_ms: u64 = 10_000 => "header-timeout-ms", "DOSOD_HEADER_TIMEOUT_MS";
        /// Request bodies being received at once, in bytes (each counts its declared length, or
        /// `max_body_bytes` when chunked); beyond it, 429 before any body byte is read.
        max_inflight_body_bytes: usize = 256 << 20 => "max-inflight-body-bytes", "DOSOD_MAX_INFLIGHT_BODY_BYTES";
        /// A 429 for overload is sent after this delay: clients that re-send at once (ignoring
        /// `Retry-After`) then cannot take the CPU from inference. 0: at once.
        overload_delay_ms: u64 = 200 => "overload-delay-ms", "DOSOD_OVERLOAD_DELAY_MS";
        /// On SIGTERM / Ctrl-C, in-flight requests get this long to finish.
        shutdown_grace_ms: u64 = 10_000 => "shutdown-grace-ms", "DOSOD_SHUTDOWN_GRACE_MS";
        /// On SIGTERM, keep accepting (and serving) this long with `/health/ready` at 503
        /// before the listener closes, so a load balancer or Kubernetes stops sending first.
        shutdown_delay_ms: u64 = 0 => "shutdown-delay-ms", "DOSOD_SHUTDOWN_DELAY_MS";
    }
}
