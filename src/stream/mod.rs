//! The camera stream daemon: per camera a supervised source, newest-frame detection through the
//! shared scheduler, tracking, and outputs (MQTT, SSE, MJPEG) — the engine itself is untouched.

pub(crate) mod config;
pub(crate) mod discovery;
pub(crate) mod event_store;
pub(crate) mod events;
pub(crate) mod geometry;
pub(crate) mod mqtt;
pub(crate) mod outbox;
pub(crate) mod recorder;
pub(crate) mod rules;
pub(crate) mod sink;
pub(crate) mod source;
pub(crate) mod tracker;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use image::RgbImage;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::engine::error::EngineError;
use crate::engine::postprocess::DetectParams;
use crate::engine::{Detection, Vocabulary};
use crate::service::metrics::advance;
use crate::service::{Detected, Frame as ServiceFrame, Service, ServiceError};
use crate::vocab::spec::Classes;
use crate::vocab::store::{VocabRequest, VocabStore};
use config::{EventSettings, StreamConfig};
use events::{Counts, Emitted, Lifecycle};
use mqtt::{Kind, MqttPublisher};
use rules::{Rules, RulesConfig};
use sink::EventSink;
use source::{Frame, FrameSlot, RunningSource};

/// The worker loop's longest sleep (how fast it sees state changes and shutdown).
const TICK: Duration = Duration::from_millis(100);
/// Frames of one camera in the service at once: while one infers, the next is letterboxed and
/// queued, so the detector never waits for the worker.
const IN_FLIGHT: usize = 2;
/// How often the watchdog samples the frame counter.
const WATCHDOG_SAMPLE: Duration = Duration::from_millis(250);

/// What SSE clients receive: `event: detections` or `event: event`, data = JSON.
#[derive(Debug, Clone)]
pub enum StreamMessage {
    Detections(Arc<String>),
    Event(Arc<String>),
}

/// The last processed frame with its detections (for snapshots and the MJPEG view).
pub struct Processed {
    pub image: Arc<RgbImage>,
    pub detections: Vec<Detection>,
    /// The annotated JPEG, encoded by the first viewer and shared by the others.
    pub jpeg: std::sync::OnceLock<Vec<u8>>,
}

/// One detection as published: the engine's fields plus the tracker's id.
#[derive(Serialize)]
struct PublishedDetection<'a> {
    label: &'a str,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
    track_id: &'a str,
}

#[derive(Serialize)]
struct DetectionsMessage<'a> {
    camera: &'a str,
    frame_time: f64,
    frame_index: u64,
    width: u32,
    height: u32,
    latency_ms: f64,
    detections: Vec<PublishedDetection<'a>>,
}

/// `GET /v1/streams` entry.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StreamStatus {
    pub name: String,
    /// With any password replaced by `***`.
    pub url: String,
    pub backend: String,
    pub enabled: bool,
    /// `starting` → `connecting` (decoder started, no frame yet) → `running` (frames
    /// processed) → `reconnecting` (the source failed; waiting `retry_in_s`) → `connecting` …;
    /// also `disabled`, and `ended` (a file without `loop` played to its end).
    pub state: String,
    pub last_error: Option<String>,
    /// Seconds until the next connection attempt, while `reconnecting`.
    pub retry_in_s: Option<f64>,
    pub restarts: u64,
    pub frames_received: u64,
    pub frames_processed: u64,
    pub frames_skipped: u64,
    /// Frames dropped as older than `max_frame_age_s` or left over from a lost connection.
    pub frames_stale: u64,
    /// Frames per second over the last few seconds.
    pub input_fps: f64,
    pub fps: f64,
    pub skipped_fps: f64,
    /// Seconds since the decoder last delivered a frame.
    pub last_frame_age_s: Option<f64>,
    /// Frame read to detections published, last frame.
    pub latency_ms: Option<f64>,
    pub vocabulary: Vec<String>,
    pub score_threshold: f32,
    /// Objects that are events now, per label.
    pub objects: BTreeMap<String, usize>,
    /// Whether clips are being recorded (`null`: clips are off for this camera).
    pub recording: Option<bool>,
    /// Why recording stopped (it is retried; detection goes on).
    pub recording_error: Option<String>,
}

/// A camera's vocabulary: what it asks for (`request`), with the classes its zones ask for
/// added when it lists its own classes. A zone class missing from a named vocabulary is an
/// error, so a zone never waits for a label the detector cannot give.
pub fn camera_vocabulary(
    store: &VocabStore,
    request: &VocabRequest,
    rules: &RulesConfig,
) -> Result<Arc<Vocabulary>, EngineError> {
    let wanted = rules.zone_classes();
    let mut request = request.clone();
    if let Some(classes) = &request.classes
        && !wanted.is_empty()
    {
        let mut spec = classes.spec(None);
        let labels = spec.labels();
        spec.classes.extend(
            wanted
                .iter()
                .filter(|c| !labels.iter().any(|l| l == c.label()))
                .cloned(),
        );
        request.classes = Some(Classes::List(spec.classes));
    }
    let vocab = store.select(&request, "")?;
    if let Some(missing) = wanted
        .iter()
        .find(|c| !vocab.labels.iter().any(|l| l == c.label()))
    {
        return Err(EngineError::InvalidParameter(format!(
            "a zone counts `{}`, which the camera's vocabulary lacks: list it in the camera's `classes`",
            missing.label()
        )));
    }
    Ok(vocab)
}

/// One camera: its settings, its live state and its output channels.
pub struct Stream {
    pub config: StreamConfig,
    /// What the camera asks for (before its zones' classes are added).
    request: Mutex<VocabRequest>,
    vocab: ArcSwap<Vocabulary>,
    rules: ArcSwap<Rules>,
    recorder: Option<Arc<recorder::Recorder>>,
    /// Held by a change of vocabulary or rules from reading the current state to storing the
    /// new one: two changes at once never lose a zone's classes.
    pub changing: tokio::sync::Mutex<()>,
    params: Mutex<DetectParams>,
    enabled: AtomicBool,
    slot: Arc<FrameSlot>,
    status: Mutex<StreamStatus>,
    retry_at: Mutex<Option<Instant>>,
    messages: broadcast::Sender<StreamMessage>,
    latest: watch::Sender<Option<Arc<Processed>>>,
}

impl Stream {
    pub fn status(&self) -> StreamStatus {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.enabled = self.enabled.load(Ordering::Acquire);
        s.vocabulary = self.vocab.load().labels.clone();
        if let Some(r) = self.recorder.as_ref().filter(|r| r.config().enabled) {
            let state = r.state();
            s.recording = Some(state.recording);
            s.recording_error = state.error;
        }
        s.score_threshold = self.params().score_threshold;
        s.last_frame_age_s = self
            .slot
            .last_received()
            .map(|t| (t.elapsed().as_secs_f64() * 1e3).round() / 1e3);
        s.retry_in_s = (s.state == "reconnecting")
            .then(|| *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()))
            .flatten()
            .map(|at| {
                let left = at.saturating_duration_since(Instant::now());
                (left.as_secs_f64() * 10.0).round() / 10.0
            });
        s
    }

    pub fn params(&self) -> DetectParams {
        self.params
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the vocabulary and the post-processing parameters; the next frame uses them
    /// (tracks of the old vocabulary end).
    pub fn set_vocabulary(&self, vocab: Arc<Vocabulary>, params: DetectParams) {
        *self.params.lock().unwrap_or_else(|p| p.into_inner()) = params;
        self.vocab.store(vocab);
        self.slot.wake();
    }

    pub fn vocabulary(&self) -> Arc<Vocabulary> {
        self.vocab.load_full()
    }

    /// What the camera asks for: its classes or vocabulary, without its zones' classes.
    pub fn request(&self) -> VocabRequest {
        self.request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces what the camera asks for; the caller has built `vocab` from it.
    pub fn set_request(&self, request: VocabRequest) {
        *self.request.lock().unwrap_or_else(|p| p.into_inner()) = request;
    }

    /// The clip settings in force.
    pub fn clips(&self) -> recorder::ClipConfig {
        self.recorder
            .as_ref()
            .map_or_else(|| self.config.clips.clone(), |r| r.config())
    }

    /// Replaces the clip settings; refused when events are not stored (`[events] dir` empty).
    pub fn set_clips(&self, clips: recorder::ClipConfig) -> Result<(), String> {
        clips.validate()?;
        match &self.recorder {
            Some(r) => {
                r.set_config(clips);
                Ok(())
            }
            None => Err("clips need [events] dir".into()),
        }
    }

    pub fn rules(&self) -> Arc<Rules> {
        self.rules.load_full()
    }

    /// Replaces the zones, masks and filters (and the vocabulary their zones need); the next
    /// frame uses them. Objects keep their ids; zones that are gone leave their lists.
    pub fn set_rules(&self, rules: Rules, vocab: Arc<Vocabulary>) {
        self.rules.store(Arc::new(rules));
        if vocab.hash != self.vocab.load().hash {
            self.vocab.store(vocab);
        }
        self.slot.wake();
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
        if let Some(r) = &self.recorder {
            r.set_active(on);
        }
        self.slot.wake();
    }

    /// Live detections and events for SSE.
    pub fn subscribe(&self) -> broadcast::Receiver<StreamMessage> {
        self.messages.subscribe()
    }

    /// The last processed frame, updated per frame (for MJPEG and snapshots).
    pub fn watch_latest(&self) -> watch::Receiver<Option<Arc<Processed>>> {
        self.latest.subscribe()
    }

    fn update_status(&self, f: impl FnOnce(&mut StreamStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Moves to `state`, logging the transition.
    fn set_state(&self, state: &str) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if s.state != state {
            tracing::info!(stream = %s.name, from = %s.state, to = state, "stream state");
            s.state = state.to_string();
        }
    }
}

/// The counts' key of the totals: no label can be it (labels have no control characters).
const ALL: &str = "\u{1}all";

/// The last level of a count topic: `all` for the totals (the key `all` that publish_counts
/// adds), else the label's [`mqtt::count_level`].
fn count_topic_level(key: &str) -> String {
    if key == ALL {
        "all".to_string()
    } else {
        mqtt::count_level(key)
    }
}

/// Every configured camera, their worker threads, the event sink and the MQTT client.
pub struct StreamManager {
    streams: Vec<Arc<Stream>>,
    mqtt: Option<Arc<MqttPublisher>>,
    sink: Arc<EventSink>,
    stop: Arc<AtomicBool>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// What the workers share.
#[derive(Clone)]
pub struct StreamContext {
    pub service: Arc<Service>,
    pub mqtt: Option<Arc<MqttPublisher>>,
    pub events: EventSettings,
}

/// What each worker gets: the shared context and the event sink.
#[derive(Clone)]
struct WorkerContext {
    service: Arc<Service>,
    mqtt: Option<Arc<MqttPublisher>>,
    sink: Arc<EventSink>,
    snapshots: bool,
}

impl StreamManager {
    /// Resolves each stream's vocabulary and starts one worker thread per camera.
    pub fn start(
        configs: &[StreamConfig],
        ctx: StreamContext,
    ) -> anyhow::Result<Arc<StreamManager>> {
        let mut streams = Vec::new();
        for cfg in configs {
            let request = VocabRequest::from_settings(&cfg.classes, &cfg.vocabulary);
            let rules = cfg
                .rules
                .compile()
                .map_err(|e| anyhow::anyhow!("stream {}: rules: {e}", cfg.name))?;
            let vocab = camera_vocabulary(&ctx.service.store, &request, &cfg.rules)
                .map_err(|e| anyhow::anyhow!("stream {}: vocabulary: {e}", cfg.name))?;
            let params = ctx.service.engine.default_params().overridden(
                cfg.score_threshold,
                None,
                None,
                None,
            )?;
            // Every camera has a recorder where events are stored: clips can be switched on at
            // run time. It records only while clips are on and the camera is enabled.
            let recorder = if ctx.events.dir.as_os_str().is_empty() {
                if cfg.clips.enabled {
                    anyhow::bail!("stream {}: clips need [events] dir", cfg.name);
                }
                None
            } else {
                let dir = ctx.events.dir.join("recordings").join(&cfg.name);
                Some(recorder::Recorder::new(cfg, dir))
            };
            let (messages, _) = broadcast::channel(256);
            let (latest, _) = watch::channel(None);
            streams.push(Arc::new(Stream {
                config: cfg.clone(),
                request: Mutex::new(request),
                vocab: ArcSwap::new(vocab),
                rules: ArcSwap::from_pointee(rules),
                recorder,
                changing: tokio::sync::Mutex::new(()),
                params: Mutex::new(params),
                enabled: AtomicBool::new(cfg.enabled),
                slot: Arc::new(FrameSlot::default()),
                status: Mutex::new(StreamStatus {
                    name: cfg.name.clone(),
                    url: cfg.redacted_url(),
                    backend: cfg.backend.clone(),
                    enabled: cfg.enabled,
                    state: "starting".into(),
                    last_error: None,
                    retry_in_s: None,
                    restarts: 0,
                    frames_received: 0,
                    frames_processed: 0,
                    frames_skipped: 0,
                    frames_stale: 0,
                    input_fps: 0.0,
                    fps: 0.0,
                    skipped_fps: 0.0,
                    last_frame_age_s: None,
                    latency_ms: None,
                    vocabulary: Vec::new(),
                    score_threshold: 0.0,
                    objects: BTreeMap::new(),
                    recording: None,
                    recording_error: None,
                }),
                retry_at: Mutex::new(None),
                messages,
                latest,
            }));
        }
        let recorders = streams
            .iter()
            .filter_map(|s| Some((s.config.name.clone(), s.recorder.clone()?)))
            .collect();
        let failures = ctx.service.metrics.events_store_failures.clone();
        let sink = EventSink::start(&ctx.events, ctx.mqtt.clone(), recorders, failures)
            .map_err(|e| anyhow::anyhow!("[events] dir: {e}"))?;
        // Every camera checked and the store open: only now does anything start.
        for s in &streams {
            if let Some(r) = &s.recorder {
                r.begin(&s.config);
            }
        }
        let worker_ctx = WorkerContext {
            service: ctx.service.clone(),
            mqtt: ctx.mqtt.clone(),
            sink: sink.clone(),
            snapshots: ctx.events.snapshots,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for stream in &streams {
            let worker = Worker::new(stream.clone(), worker_ctx.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("stream-{}", stream.config.name))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Arc::new(StreamManager {
            streams,
            mqtt: ctx.mqtt,
            sink,
            stop,
            threads: Mutex::new(threads),
        }))
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Stream>> {
        self.streams.iter().find(|s| s.config.name == name)
    }

    pub fn statuses(&self) -> Vec<StreamStatus> {
        self.streams.iter().map(|s| s.status()).collect()
    }

    /// The event database, unless `[events] dir` is empty.
    pub fn event_store(&self) -> Option<&Arc<event_store::EventStore>> {
        self.sink.store()
    }

    /// Stops every camera (their open tracks end with `end` events), then says `offline`.
    pub async fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        for s in &self.streams {
            s.slot.close();
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        // The workers' last `end` events are in the sink: store them before MQTT goes.
        let sink = self.sink.clone();
        let recorders: Vec<_> = self
            .streams
            .iter()
            .filter_map(|s| s.recorder.clone())
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            sink.shutdown();
            for r in recorders {
                r.stop();
            }
        })
        .await;
        if let Some(m) = &self.mqtt {
            m.shutdown().await;
        }
    }
}

/// Rates over the last second, updated once per second.
struct RateMeter {
    at: Instant,
    received: u64,
    processed: u64,
    skipped: u64,
}

/// One camera's loop: supervise the source, take the newest frame, detect, track, publish.
struct Worker {
    stream: Arc<Stream>,
    ctx: WorkerContext,
    stop: Arc<AtomicBool>,
    source: Option<RunningSource>,
    source_started: Instant,
    /// (when, frames received so far), every [`WATCHDOG_SAMPLE`] over the watchdog window.
    samples: VecDeque<(Instant, u64)>,
    retry_at: Instant,
    backoff: Duration,
    last_processed: Option<Instant>,
    was_enabled: bool,
    objects: Lifecycle,
    /// The vocabulary the objects were detected with (a new one ends them).
    objects_vocab: String,
    /// The vocabulary and rules the count topics and discovery configs were announced for.
    announced: Option<(String, Arc<Rules>)>,
    counts: Counts,
    processed: u64,
    restarts: u64,
    meter: RateMeter,
    /// Frames handed to the service, oldest first; published in this order.
    in_flight: VecDeque<InFlight>,
}

/// A frame handed to the service whose detections are not published yet.
struct InFlight {
    frame: Frame,
    vocab: Arc<Vocabulary>,
    result: std::sync::mpsc::Receiver<Result<Detected, ServiceError>>,
}

impl Worker {
    fn new(stream: Arc<Stream>, ctx: WorkerContext, stop: Arc<AtomicBool>) -> Worker {
        let name = stream.config.name.clone();
        let backoff = Duration::from_secs_f64(stream.config.backoff_s);
        let objects_vocab = stream.vocabulary().hash.clone();
        Worker {
            was_enabled: true,
            objects: Lifecycle::new(
                &name,
                ctx.snapshots,
                stream.recorder.as_ref().is_some_and(|r| r.config().enabled),
            ),
            objects_vocab,
            announced: None,
            stream,
            ctx,
            stop,
            source: None,
            source_started: Instant::now(),
            samples: VecDeque::new(),
            retry_at: Instant::now(),
            backoff,
            last_processed: None,
            counts: Counts::new(),
            processed: 0,
            restarts: 0,
            meter: RateMeter {
                at: Instant::now(),
                received: 0,
                processed: 0,
                skipped: 0,
            },
            in_flight: VecDeque::new(),
        }
    }

    fn name(&self) -> &str {
        &self.stream.config.name
    }

    fn run(mut self) {
        while !self.stop.load(Ordering::Acquire) {
            self.tick_rates();
            if !self.stream.enabled.load(Ordering::Acquire) {
                if self.was_enabled {
                    self.was_enabled = false;
                    self.stop_source("disabled", None);
                }
                self.stream.slot.discard();
                std::thread::sleep(TICK);
                continue;
            }
            self.was_enabled = true;
            if self.source.is_none() {
                self.try_start();
                continue;
            }
            if let Some(reason) = self.source.as_ref().and_then(|s| s.ended()) {
                let cfg = &self.stream.config;
                if cfg.is_file() && !cfg.loop_file && reason == source::END_OF_STREAM {
                    // A file played to its end is done, not broken: `enable` plays it again.
                    self.stop_source("ended", None);
                    self.stream.set_enabled(false);
                    self.was_enabled = false;
                    continue;
                }
                self.fail(reason);
                continue;
            }
            if let Some(reason) = self.watchdog() {
                self.fail(reason);
                continue;
            }
            self.publish_done(Duration::ZERO);
            if self.in_flight.len() >= IN_FLIGHT {
                self.publish_done(TICK);
                continue;
            }
            if let Some(wait) = self.fps_wait() {
                if self.in_flight.is_empty() {
                    std::thread::sleep(wait.min(TICK));
                } else {
                    self.publish_done(wait.min(TICK));
                }
                continue;
            }
            // A result coming in wakes this wait (see `submit`).
            let max_age = Duration::from_secs_f64(self.stream.config.max_frame_age_s);
            match self.stream.slot.take(TICK, max_age) {
                Some(frame) => self.submit(frame),
                None if self.in_flight.is_empty() => {
                    let events = self.objects.expire(source::now_epoch());
                    self.publish_events(events);
                    self.publish_counts();
                }
                None => {}
            }
        }
        self.stop_source("stopped", None);
    }

    /// Whether the source is too slow: fewer than `max(1, watchdog_min_fps × watchdog_s)` frames
    /// in the last `watchdog_s` seconds of this connection (silence, or a frozen server that
    /// lets a frame through now and then).
    fn watchdog(&mut self) -> Option<String> {
        let cfg = &self.stream.config;
        let window = Duration::from_secs_f64(cfg.watchdog_s);
        let now = Instant::now();
        let received = self.stream.slot.received.load(Ordering::Relaxed);
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= WATCHDOG_SAMPLE)
        {
            self.samples.push_back((now, received));
        }
        let start = now.checked_sub(window)?;
        // Keep the newest sample at or before the window's start.
        while self.samples.len() >= 2 && self.samples[1].0 <= start {
            self.samples.pop_front();
        }
        if self.source_started > start {
            return None; // this connection is younger than one window
        }
        let frames = received - self.samples.front()?.1;
        let needed = (cfg.watchdog_min_fps * cfg.watchdog_s).floor().max(1.0) as u64;
        (frames < needed).then(|| {
            format!(
                "watchdog: {frames} frame(s) in {:.0} s, at least {needed} expected",
                cfg.watchdog_s
            )
        })
    }

    /// Time left before the fps cap allows the next frame.
    fn fps_wait(&self) -> Option<Duration> {
        let fps = self.stream.config.fps;
        let last = self.last_processed?;
        if fps <= 0.0 {
            return None;
        }
        (last + Duration::from_secs_f64(1.0 / fps)).checked_duration_since(Instant::now())
    }

    fn try_start(&mut self) {
        if let Some(wait) = self.retry_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait.min(TICK));
            return;
        }
        self.stream.set_state("connecting");
        match source::start(&self.stream.config, self.stream.slot.clone()) {
            Ok(src) => {
                self.source = Some(src);
                self.source_started = Instant::now();
                self.samples.clear();
                self.samples.push_back((
                    self.source_started,
                    self.stream.slot.received.load(Ordering::Relaxed),
                ));
                tracing::info!(stream = %self.name(), "source started");
            }
            Err(e) => self.fail(e),
        }
    }

    /// The source failed or went silent: stop it, end tracks, retry after the backoff.
    fn fail(&mut self, reason: String) {
        tracing::warn!(stream = %self.name(), error = %reason, retry_in_s = self.backoff.as_secs_f64(), "source down");
        self.stop_source("reconnecting", Some(reason));
        self.retry_at = Instant::now() + self.backoff;
        *self
            .stream
            .retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(self.retry_at);
        let max = Duration::from_secs_f64(self.stream.config.backoff_max_s);
        self.backoff = (self.backoff * 2).min(max);
        self.restarts += 1;
        let restarts = self.restarts;
        self.stream.update_status(|s| s.restarts = restarts);
        self.ctx
            .service
            .metrics
            .stream_restarts
            .with_label_values(&[self.name()])
            .inc();
    }

    fn stop_source(&mut self, state: &str, error: Option<String>) {
        if let Some(src) = self.source.take() {
            src.stop();
        }
        // Frames of the connection that ended are not published (their tracks end below).
        self.in_flight.clear();
        // The decoder is gone (its reader joined): a frame it left must never be processed
        // after the next connection starts.
        self.stream.slot.clear();
        let events = self.objects.end_all();
        self.publish_events(events);
        self.publish_counts();
        self.stream.set_state(state);
        self.stream.update_status(|s| {
            if error.is_some() {
                s.last_error = error;
            }
            s.objects.clear();
        });
        self.ctx
            .service
            .metrics
            .stream_up
            .with_label_values(&[self.name()])
            .set(0);
    }

    /// Hands a frame to the service without waiting: it is letterboxed and queued while the
    /// frame before it infers.
    fn submit(&mut self, frame: Frame) {
        // A frame of this connection (the slot is cleared when one ends): the next failure
        // starts from the first backoff step.
        self.backoff = Duration::from_secs_f64(self.stream.config.backoff_s);
        self.last_processed = Some(Instant::now());
        let vocab = self.stream.vocabulary();
        let params = self.stream.params();
        let slot = self.stream.slot.clone();
        let result = self.ctx.service.submit(
            ServiceFrame::Pixels(frame.image.clone()),
            vocab.clone(),
            params,
            move || slot.wake(),
        );
        self.in_flight.push_back(InFlight {
            frame,
            vocab,
            result,
        });
    }

    /// Publishes the oldest frames whose detections are in, in order, waiting up to `wait` for
    /// the oldest one.
    fn publish_done(&mut self, wait: Duration) {
        let mut wait = wait;
        while let Some(oldest) = self.in_flight.front() {
            let outcome = match oldest.result.recv_timeout(wait) {
                Ok(outcome) => outcome.map_err(|e| e.to_string()),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    Err("the detection task ended without a result".to_string())
                }
            };
            wait = Duration::ZERO;
            let InFlight { frame, vocab, .. } =
                self.in_flight.pop_front().expect("the oldest frame");
            match outcome {
                Ok(detected) => self.publish(frame, &vocab, detected.detections),
                Err(e) => {
                    tracing::debug!(stream = %self.name(), error = %e, "frame dropped");
                    self.stream.slot.skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Tracks one frame's detections and publishes them and the events they cause.
    fn publish(&mut self, frame: Frame, vocab: &Arc<Vocabulary>, detections: Vec<Detection>) {
        if vocab.hash != self.objects_vocab {
            let events = self.objects.end_all();
            self.publish_events(events);
            self.objects_vocab = vocab.hash.clone();
        }
        if let Some(r) = &self.stream.recorder {
            self.objects.set_clips(r.config().enabled);
        }
        // Masks and per-frame filters first: what they discard is never tracked or shown.
        let rules = self.stream.rules();
        self.announce(vocab, &rules);
        let (width, height) = frame.image.dimensions();
        let detections: Vec<Detection> = detections
            .into_iter()
            .filter(|d| rules.admit(d, width, height))
            .collect();
        let (ids, events) = self
            .objects
            .frame(frame.time, &frame.image, &detections, &rules);
        let latency_ms = frame.received.elapsed().as_secs_f64() * 1e3;
        let message = DetectionsMessage {
            camera: self.name(),
            frame_time: frame.time,
            frame_index: frame.index,
            width: frame.image.width(),
            height: frame.image.height(),
            latency_ms: (latency_ms * 1e3).round() / 1e3,
            detections: detections
                .iter()
                .zip(&ids)
                .map(|(d, id)| PublishedDetection {
                    label: &d.label,
                    score: d.score,
                    bbox: d.bbox,
                    track_id: id,
                })
                .collect(),
        };
        let json = serde_json::to_string(&message).expect("serialisable");
        let to_mqtt = self
            .ctx
            .mqtt
            .as_ref()
            .is_some_and(|m| m.publish_detections());
        self.emit(
            &format!("{}/detections", self.name()),
            Kind::Detections,
            json,
            to_mqtt,
        );
        self.publish_events(events);
        self.publish_counts();
        self.processed += 1;
        let processed = self.processed;
        let objects: BTreeMap<String, usize> = self
            .counts
            .iter()
            .filter(|((zone, label), _)| zone.is_none() && label != ALL)
            .map(|((_, label), n)| (label.clone(), *n))
            .collect();
        self.stream.set_state("running");
        self.stream.update_status(|s| {
            s.frames_processed = processed;
            s.latency_ms = Some((latency_ms * 10.0).round() / 10.0);
            s.objects = objects;
        });
        self.ctx
            .service
            .metrics
            .stream_latency
            .with_label_values(&[self.name()])
            .observe(latency_ms / 1e3);
        self.ctx
            .service
            .metrics
            .stream_up
            .with_label_values(&[self.name()])
            .set(1);
        self.stream.latest.send_replace(Some(Arc::new(Processed {
            image: frame.image,
            detections,
            jpeg: std::sync::OnceLock::new(),
        })));
    }

    /// Each message to `<prefix>/events` (all cameras, Frigate's shape), the camera's SSE
    /// clients, and the event sink (snapshot, database).
    fn publish_events(&self, events: Vec<Emitted>) {
        for e in events {
            let kind = match e.message.kind {
                events::EventKind::New => "new",
                events::EventKind::Update => "update",
                events::EventKind::End => "end",
            };
            self.ctx
                .service
                .metrics
                .events
                .with_label_values(&[self.name(), kind])
                .inc();
            let json = serde_json::to_string(&e.message).expect("serialisable");
            self.emit("events", Kind::Event, json, true);
            self.ctx.sink.send(e);
        }
    }

    /// One JSON message to SSE subscribers and, when `to_mqtt`, to `<prefix>/<topic>`.
    fn emit(&self, topic: &str, kind: Kind, json: String, to_mqtt: bool) {
        if to_mqtt && let Some(m) = &self.ctx.mqtt {
            m.publish(topic, json.as_bytes().to_vec(), kind);
        }
        let json = Arc::new(json);
        let _ = self.stream.messages.send(match kind {
            Kind::Detections => StreamMessage::Detections(json),
            _ => StreamMessage::Event(json),
        });
    }

    /// For a new vocabulary or new rules: a zero for every count topic not yet sent (so a
    /// dashboard has a value before the first object) and, with `[mqtt] ha_discovery`, the
    /// camera's Home Assistant discovery configs.
    fn announce(&mut self, vocab: &Arc<Vocabulary>, rules: &Arc<Rules>) {
        if self
            .announced
            .as_ref()
            .is_some_and(|(hash, r)| *hash == vocab.hash && Arc::ptr_eq(r, rules))
        {
            return;
        }
        self.announced = Some((vocab.hash.clone(), rules.clone()));
        let Some(m) = self.ctx.mqtt.clone() else {
            return;
        };
        let zones = rules.zone_labels(&vocab.labels);
        let all = [ALL.to_string()];
        let mut keys: Vec<(Option<String>, String)> = vocab
            .labels
            .iter()
            .chain(&all)
            .map(|l| (None, l.clone()))
            .collect();
        for (zone, labels) in &zones {
            keys.extend(
                labels
                    .iter()
                    .chain(&all)
                    .map(|l| (Some(zone.clone()), l.clone())),
            );
        }
        for key in keys {
            if self.counts.contains_key(&key) {
                continue;
            }
            let label = count_topic_level(&key.1);
            let topic = match &key.0 {
                Some(zone) => format!("{}/{zone}/{label}", self.name()),
                None => format!("{}/{label}", self.name()),
            };
            m.publish(&topic, b"0".to_vec(), Kind::Retained);
            self.counts.insert(key, 0);
        }
        if let Some(discovery_prefix) = m.ha_discovery() {
            let configs = discovery::camera_configs(
                discovery_prefix,
                m.prefix(),
                self.name(),
                &vocab.labels,
                &zones,
            );
            m.publish_on_connect(self.name(), configs);
        }
    }

    /// Retained counts of the objects that are events now, sent when they change:
    /// `<camera>/<label>`, `<camera>/all`, `<camera>/<zone>/<label>`, `<camera>/<zone>/all`.
    fn publish_counts(&mut self) {
        let mut now = self.objects.counts();
        let totals: Vec<(Option<String>, usize)> = {
            let mut t: BTreeMap<Option<String>, usize> = BTreeMap::new();
            for ((zone, _), n) in &now {
                *t.entry(zone.clone()).or_insert(0) += n;
            }
            t.into_iter().collect()
        };
        for (zone, n) in totals {
            now.insert((zone, ALL.into()), n);
        }
        if now == self.counts {
            return;
        }
        if let Some(m) = &self.ctx.mqtt {
            let keys: std::collections::BTreeSet<&(Option<String>, String)> =
                now.keys().chain(self.counts.keys()).collect();
            for key in keys {
                let (before, after) = (
                    self.counts.get(key).copied().unwrap_or(0),
                    now.get(key).copied().unwrap_or(0),
                );
                if before != after {
                    let label = count_topic_level(&key.1);
                    let topic = match &key.0 {
                        Some(zone) => format!("{}/{zone}/{label}", self.name()),
                        None => format!("{}/{label}", self.name()),
                    };
                    m.publish(&topic, after.to_string().into_bytes(), Kind::Retained);
                }
            }
        }
        self.counts = now;
    }

    /// Once a second: rates and totals into the status and metrics.
    fn tick_rates(&mut self) {
        let dt = self.meter.at.elapsed().as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let slot = &self.stream.slot;
        let received = slot.received.load(Ordering::Relaxed);
        let skipped = slot.skipped.load(Ordering::Relaxed);
        let stale = slot.stale.load(Ordering::Relaxed);
        let processed = self.processed;
        let rate = |now: u64, before: u64| ((now - before) as f64 / dt * 100.0).round() / 100.0;
        let (rin, rproc, rskip) = (
            rate(received, self.meter.received),
            rate(processed, self.meter.processed),
            rate(skipped, self.meter.skipped),
        );
        self.meter = RateMeter {
            at: Instant::now(),
            received,
            processed,
            skipped,
        };
        self.stream.update_status(|s| {
            s.frames_received = received;
            s.frames_skipped = skipped;
            s.frames_stale = stale;
            s.input_fps = rin;
            s.fps = rproc;
            s.skipped_fps = rskip;
        });
        let m = &self.ctx.service.metrics;
        let name = self.stream.config.name.as_str();
        for (kind, fps, total) in [
            ("received", rin, received),
            ("processed", rproc, processed),
            ("skipped", rskip, skipped),
        ] {
            m.stream_fps.with_label_values(&[name, kind]).set(fps);
            advance(&m.stream_frames.with_label_values(&[name, kind]), total);
        }
        advance(&m.stream_frames.with_label_values(&[name, "stale"]), stale);
        if let Some(r) = &self.stream.recorder {
            m.stream_recording
                .with_label_values(&[name])
                .set(i64::from(r.state().recording));
        }
        if let Some(mqtt) = &self.ctx.mqtt {
            let s = mqtt.stats();
            m.mqtt_connected
                .set(i64::from(s.connected.load(Ordering::Relaxed)));
            advance(&m.mqtt_published, s.published.load(Ordering::Relaxed));
            advance(&m.mqtt_dropped, s.dropped.load(Ordering::Relaxed));
        }
    }
}
