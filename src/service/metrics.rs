//! Prometheus metrics: requests, failures by reason, queue depth, stage and batch histograms, streams.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub failures: IntCounterVec,
    pub queue_depth: IntGauge,
    pub stages: HistogramVec,
    pub batch_size: Histogram,
    pub vocab_cache: IntGauge,
    /// 1 while the named-vocabulary store can take writes (a file store always; Redis while
    /// connected), else 0.
    pub vocab_store_up: IntGauge,
    pub vocab_hits: IntCounter,
    pub vocab_misses: IntCounter,
    /// Open HTTP client connections.
    pub http_connections: IntGauge,
    /// Per camera: 1 while frames arrive, else 0.
    pub stream_up: IntGaugeVec,
    /// Per camera and `kind` (received, processed, skipped): frames per second.
    pub stream_fps: GaugeVec,
    /// Per camera and `kind` (received, processed, skipped, stale): frames since start.
    pub stream_frames: IntCounterVec,
    pub stream_restarts: IntCounterVec,
    /// Frame read to detections published.
    pub stream_latency: HistogramVec,
    pub mqtt_connected: IntGauge,
    pub mqtt_published: IntCounter,
    pub mqtt_dropped: IntCounter,
    /// Camera events published, per camera and type (new, update, end).
    pub events: IntCounterVec,
    /// Event states or pictures not stored (disk, queue).
    pub events_store_failures: IntCounter,
    /// 1 while a camera's clips are being recorded.
    pub stream_recording: IntGaugeVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("dosod".into()), None).expect("registry");
        let requests = IntCounterVec::new(
            Opts::new("requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "failures_total",
                "failed requests by reason (validation, decode, overloaded, timeout, inference...)",
            ),
            &["reason"],
        )
        .expect("metric");
        let queue_depth = IntGauge::new("queue_depth", "images waiting for the inference worker")
            .expect("metric");
        let stages = HistogramVec::new(
            HistogramOpts::new("stage_seconds", "time per pipeline stage and image").buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["stage"],
        )
        .expect("metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("batch_size", "images per forward pass")
                .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0]),
        )
        .expect("metric");
        let vocab_store_up = IntGauge::new(
            "vocab_store_up",
            "1 while the named-vocabulary store takes writes (Redis: connected), else 0",
        )
        .expect("metric");
        let vocab_cache =
            IntGauge::new("vocab_cache_entries", "phrases in the text-embedding cache")
                .expect("metric");
        let vocab_hits = IntCounter::new(
            "vocab_cache_hits_total",
            "phrase look-ups answered by the text-embedding cache",
        )
        .expect("metric");
        let vocab_misses = IntCounter::new(
            "vocab_cache_misses_total",
            "phrase look-ups that needed the text encoder",
        )
        .expect("metric");
        let http_connections =
            IntGauge::new("http_connections", "open HTTP client connections").expect("metric");
        let stream_up = IntGaugeVec::new(
            Opts::new("stream_up", "1 while the camera delivers frames"),
            &["stream"],
        )
        .expect("metric");
        let stream_fps = GaugeVec::new(
            Opts::new(
                "stream_fps",
                "frames per second received, processed and skipped",
            ),
            &["stream", "kind"],
        )
        .expect("metric");
        let stream_frames = IntCounterVec::new(
            Opts::new(
                "stream_frames_total",
                "frames received, processed, skipped and stale",
            ),
            &["stream", "kind"],
        )
        .expect("metric");
        let stream_restarts = IntCounterVec::new(
            Opts::new(
                "stream_restarts_total",
                "source restarts (errors, watchdog)",
            ),
            &["stream"],
        )
        .expect("metric");
        let stream_latency = HistogramVec::new(
            HistogramOpts::new(
                "stream_latency_seconds",
                "frame read to detections published",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            &["stream"],
        )
        .expect("metric");
        let mqtt_connected =
            IntGauge::new("mqtt_connected", "1 while connected to the broker").expect("metric");
        let mqtt_published =
            IntCounter::new("mqtt_published_total", "MQTT messages sent").expect("metric");
        let mqtt_dropped = IntCounter::new(
            "mqtt_dropped_total",
            "MQTT messages dropped because the queue to the broker was full",
        )
        .expect("metric");
        let events = IntCounterVec::new(
            Opts::new("events_total", "camera events published (new, update, end)"),
            &["stream", "type"],
        )
        .expect("metric");
        let events_store_failures = IntCounter::new(
            "events_store_failures_total",
            "event states or pictures not stored (disk full or failing, sink behind)",
        )
        .expect("metric");
        let stream_recording = IntGaugeVec::new(
            Opts::new(
                "stream_recording",
                "1 while a camera's clips are being recorded",
            ),
            &["stream"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(events.clone()),
            Box::new(events_store_failures.clone()),
            Box::new(stream_recording.clone()),
            Box::new(failures.clone()),
            Box::new(queue_depth.clone()),
            Box::new(stages.clone()),
            Box::new(batch_size.clone()),
            Box::new(vocab_cache.clone()),
            Box::new(vocab_store_up.clone()),
            Box::new(vocab_hits.clone()),
            Box::new(vocab_misses.clone()),
            Box::new(http_connections.clone()),
            Box::new(stream_up.clone()),
            Box::new(stream_fps.clone()),
            Box::new(stream_frames.clone()),
            Box::new(stream_restarts.clone()),
            Box::new(stream_latency.clone()),
            Box::new(mqtt_connected.clone()),
            Box::new(mqtt_published.clone()),
            Box::new(mqtt_dropped.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Metrics {
            registry,
            requests,
            failures,
            queue_depth,
            stages,
            batch_size,
            vocab_cache,
            vocab_store_up,
            vocab_hits,
            vocab_misses,
            http_connections,
            stream_up,
            stream_fps,
            stream_frames,
            stream_restarts,
            stream_latency,
            mqtt_connected,
            mqtt_published,
            mqtt_dropped,
            events,
            events_store_failures,
            stream_recording,
        }
    }
}

/// Moves a counter up to a running total kept elsewhere (never down: a total that restarted
/// from zero resumes counting from where the counter is).
pub(crate) fn advance(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

impl Metrics {
    /// Records one stage duration given in milliseconds.
    pub fn observe_stage(&self, stage: &str, millis: f64) {
        self.stages
            .with_label_values(&[stage])
            .observe(millis / 1e3);
    }

    /// The text exposition format, with the vocabulary cache counters refreshed.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
