//! The service layer: the one composition root ([`Service::start`]) and the one detection path
//! ([`Service::detect`]) that the HTTP API, the camera streams and the ROS 2 node all call.

pub(crate) mod batcher;
pub(crate) mod config;
pub(crate) mod mailbox;
pub(crate) mod metrics;
pub(crate) mod options;
pub(crate) mod scheduler;

use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::Semaphore;

pub(crate) use self::scheduler::Reservation;
use crate::config::Settings;
use crate::engine::error::EngineError;
use crate::engine::postprocess::DetectParams;
use crate::engine::runtime::Runtime;
use crate::engine::{Detection, Engine, EngineOptions, Timings, Vocabulary, ms};
use crate::vocab::store::VocabStore;
use config::BatchSettings;
use metrics::Metrics;
use scheduler::Scheduler;

/// Why the service could not give detections.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    /// Decoding, letterboxing or the vocabulary failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The queue is full: try again after `retry_after_s`.
    #[error("server overloaded: the queue is full")]
    Overloaded { retry_after_s: u64 },
    /// The deadline passed before the result was ready.
    #[error("{0}")]
    Timeout(String),
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
}

/// A frame as a frontend has it: encoded bytes (HTTP, compressed ROS images) or pixels.
pub(crate) enum Frame {
    /// Encoded bytes. `keep_pixels`: the caller draws on the answer's pixels, so they are
    /// decoded at full size; otherwise `[decode] reduced_jpeg` may decode a JPEG smaller.
    Encoded {
        bytes: bytes::Bytes,
        keep_pixels: bool,
    },
    Pixels(Arc<RgbImage>),
}

/// One frame's detections, with its pixels and where the time went.
pub(crate) struct Detected {
    pub detections: Vec<Detection>,
    /// The decoded pixels: full size unless reduced JPEG decoding applied (see [`Frame`]).
    pub image: Arc<RgbImage>,
    /// The frame's upright size, which the boxes are in.
    pub width: u32,
    pub height: u32,
    pub timings: Timings,
    /// Images in the forward pass this frame ran in.
    pub batch_size: usize,
}

/// The engine, the vocabulary store, the scheduler and the metrics every frontend shares.
pub(crate) struct Service {
    pub engine: Arc<Engine>,
    pub store: Arc<VocabStore>,
    pub scheduler: Scheduler,
    pub metrics: Arc<Metrics>,
    pub batching: BatchSettings,
    /// Frames decoded or letterboxed at the same time.
    prepare_slots: Semaphore,
    /// Where blocking callers (camera and ROS threads) run the async path.
    runtime: tokio::runtime::Handle,
}

impl Service {
    /// The composition root: ONNX Runtime, the bundle, the vocabulary store, the metrics and
    /// the inference worker. Call inside the tokio runtime the frontends run on.
    pub fn start(settings: &Settings) -> anyhow::Result<Arc<Service>> {
        let store = Arc::new(open_store(settings)?);
        let engine = store.engine().clone();
        let metrics = Arc::new(Metrics::new());
        let batching = settings.batching.clone();
        let scheduler = Scheduler::start(engine.clone(), batching.policy(), metrics.clone());
        let slots = match batching.decode_concurrency {
            0 => 2 * crate::engine::runtime::physical_cores(),
            n => n,
        };
        Ok(Arc::new(Service {
            engine,
            store,
            scheduler,
            metrics,
            batching,
            prepare_slots: Semaphore::new(slots),
            runtime: tokio::runtime::Handle::current(),
        }))
    }

    /// The one detection path: admission, decode, letterbox, the shared batching scheduler
    /// (inference and post-processing), all within the configured deadline.
    pub async fn detect(
        &self,
        frame: Frame,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
    ) -> Result<Detected, ServiceError> {
        params.validate()?;
        let place = self.scheduler.reserve()?;
        self.detect_reserved(place, frame, vocab, params).await
    }

    /// Places for `n` frames at once, or an overload refusal for all of them.
    pub fn admit(&self, n: usize) -> Result<Vec<Reservation>, ServiceError> {
        self.scheduler.reserve_many(n)
    }

    /// Refuses at once (`Overloaded`) when the queue has no place for `n` more frames, so an
    /// overloaded server sheds a request before reading its body.
    pub fn check_room(&self, n: usize) -> Result<(), ServiceError> {
        self.scheduler.check_room(n)
    }

    /// [`Service::detect`] with a place already reserved (see [`Service::admit`]).
    pub async fn detect_reserved(
        &self,
        place: Reservation,
        frame: Frame,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
    ) -> Result<Detected, ServiceError> {
        let start = Instant::now();
        params.validate()?;
        let permit = self
            .prepare_slots
            .acquire()
            .await
            .map_err(|_| ServiceError::Stopped)?;
        let engine = self.engine.clone();
        let (image, prepared, decode_ms, preprocess_ms) =
            tokio::task::spawn_blocking(move || -> Result<_, EngineError> {
                let t = Instant::now();
                let decoded = match frame {
                    Frame::Encoded { bytes, keep_pixels } => {
                        if keep_pixels {
                            engine.decode_with(&bytes, false)?
                        } else {
                            engine.decode_for_detection(&bytes)?
                        }
                    }
                    Frame::Pixels(image) => {
                        let t = Instant::now();
                        let prepared = engine.prepare(&image)?;
                        return Ok((image, prepared, 0.0, ms(t)));
                    }
                };
                let decode_ms = ms(t);
                let t = Instant::now();
                let prepared = engine.prepare_decoded(&decoded)?;
                Ok((Arc::new(decoded.image), prepared, decode_ms, ms(t)))
            })
            .await
            .map_err(|e| ServiceError::Inference(format!("preparing the frame: {e}")))??;
        drop(permit);
        self.metrics.observe_stage("decode", decode_ms);
        self.metrics.observe_stage("preprocess", preprocess_ms);
        let deadline = Duration::from_millis(self.batching.deadline_ms);
        let prepared_size = (prepared.letterbox.src_w, prepared.letterbox.src_h);
        let out = place.run(prepared, vocab, params, deadline).await?;
        let (width, height) = (prepared_size.0, prepared_size.1);
        Ok(Detected {
            detections: out.detections,
            image,
            width,
            height,
            timings: Timings {
                queue: out.queue_ms,
                decode: decode_ms,
                preprocess: preprocess_ms,
                inference: out.inference_ms,
                postprocess: out.postprocess_ms,
                total: ms(start),
            },
            batch_size: out.batch_size,
        })
    }

    /// [`Service::detect`] started on the service's runtime without waiting for it: the caller
    /// (a camera worker) prepares its next frame meanwhile and reads the result from the
    /// returned channel; `done` runs once the result is in it.
    pub fn submit(
        self: &Arc<Self>,
        frame: Frame,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
        done: impl FnOnce() + Send + 'static,
    ) -> std::sync::mpsc::Receiver<Result<Detected, ServiceError>> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let service = self.clone();
        self.runtime.spawn(async move {
            let result = service.detect(frame, vocab, params).await;
            // The worker may have moved on (source stopped): nobody to tell.
            let _ = tx.send(result);
            done();
        });
        rx
    }

    /// [`Service::detect`] for callers on plain threads that wait for each frame (the ROS 2
    /// node; cameras use [`Service::submit`]).
    #[cfg(feature = "ros2")]
    pub fn detect_blocking(
        &self,
        frame: Frame,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
    ) -> Result<Detected, ServiceError> {
        self.runtime.block_on(self.detect(frame, vocab, params))
    }
}

/// ONNX Runtime, the configured bundle and the vocabulary store over it (CLI tools that need
/// no scheduler use this alone).
pub(crate) fn open_store(settings: &Settings) -> anyhow::Result<VocabStore> {
    let runtime = Runtime::init(&settings.runtime)?;
    let engine = Engine::load(
        &runtime,
        &settings.model.dir,
        EngineOptions {
            limits: settings.limits,
            decode: settings.decode,
        },
    )?;
    let store = VocabStore::open(Arc::new(engine), settings.vocabulary.clone())?;
    for e in store.load_errors() {
        eprintln!("warning: skipped vocabulary file {e}");
    }
    Ok(store)
}
