//! The node's detection worker: takes the newest received frame, converts raw pixels, runs it
//! through the service's one detection path (batched with HTTP and camera frames), publishes
//! the detections (and the annotated image), and logs the periodic summary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ros2_client::Publisher;

use super::control::Control;
use super::convert::{Rejection, detections_to_msg, image_to_rgb, rgb_to_image};
use super::msg::{CompressedImage, Detection2DArray, Header, Image, Time};
use super::stats::{Stats, Summary};
use crate::engine::error::EngineError;
use crate::engine::ms;
use crate::service::mailbox::Mailbox;
use crate::service::{Frame as ServiceFrame, Service, ServiceError};

/// A received image, raw or compressed, with the moment it arrived.
pub struct Frame {
    pub payload: Payload,
    pub received: Instant,
}

pub enum Payload {
    Raw(Image),
    Compressed(CompressedImage),
}

impl Frame {
    fn header(&self) -> &Header {
        match &self.payload {
            Payload::Raw(m) => &m.header,
            Payload::Compressed(m) => &m.header,
        }
    }
}

/// The newest received frame, waiting for the worker.
pub type Latest = Mailbox<Frame>;

/// Everything the worker thread owns or shares.
pub struct Worker {
    pub service: Arc<Service>,
    pub control: Arc<Control>,
    pub stats: Arc<Stats>,
    pub latest: Arc<Latest>,
    pub detections: Publisher<Detection2DArray>,
    pub annotated: Option<Publisher<Image>>,
    pub summary_every: Option<Duration>,
}

impl Worker {
    /// Runs until the mailbox is closed; ends with a summary of the whole run.
    pub fn run(self) {
        let mut last_summary = Instant::now();
        while !self.latest.is_closed() {
            if let Some(frame) = self.latest.take(Duration::from_millis(200)) {
                let run = std::panic::AssertUnwindSafe(|| self.process(frame));
                if std::panic::catch_unwind(run).is_err() {
                    self.stats.failed();
                    tracing::error!("detection panicked; the frame was skipped");
                }
            }
            if let Some(every) = self.summary_every
                && last_summary.elapsed() >= every
            {
                log_summary("periodic", &self.stats.summary(false));
                last_summary = Instant::now();
            }
        }
        log_summary("final", &self.stats.summary(true));
    }

    fn process(&self, frame: Frame) {
        let header = frame.header();
        let span = tracing::info_span!(
            "ros2_frame",
            frame_id = %header.frame_id,
            stamp = %format_args!("{}.{:09}", header.stamp.sec, header.stamp.nanosec),
            latency_ms = tracing::field::Empty,
            detections = tracing::field::Empty,
        );
        let _in = span.enter();
        if !self.control.enabled() {
            self.stats.disabled();
            return;
        }
        let received = frame.received;
        let wait_ms = ms(received);
        let mut header = frame.header().clone();
        let frame_id = self.control.frame_id();
        if !frame_id.is_empty() {
            header.frame_id = frame_id;
        }
        let start = Instant::now();
        let (input, format) = match frame.payload {
            Payload::Raw(m) => match image_to_rgb(m, self.service.engine.limits()) {
                Ok(img) => (ServiceFrame::Pixels(Arc::new(img)), None),
                Err(r) => return reject(&self.stats, &r),
            },
            Payload::Compressed(m) => (
                ServiceFrame::Encoded {
                    bytes: m.data.into(),
                    // The annotated topic draws on the pixels: decode them whole.
                    keep_pixels: self.annotated.is_some(),
                },
                Some(m.format),
            ),
        };
        let convert_ms = ms(start);
        let vocab = self.control.vocabulary();
        let params = self.control.params();
        let detected = match self.service.detect_blocking(input, vocab, params) {
            Ok(d) => d,
            Err(ServiceError::Engine(EngineError::TooLarge(msg))) => {
                return reject(&self.stats, &Rejection::TooLarge(msg));
            }
            Err(ServiceError::Engine(EngineError::Decode(msg))) => {
                let format = format.unwrap_or_default();
                return reject(
                    &self.stats,
                    &Rejection::Decode(format!("compressed image ({format}): {msg}")),
                );
            }
            Err(e) => {
                self.stats.failed();
                tracing::warn!("detection failed: {e}");
                return;
            }
        };
        let (dets, timings) = (&detected.detections, detected.timings);
        let count = dets.len();
        if let Err(e) = self
            .detections
            .publish(detections_to_msg(header.clone(), dets))
        {
            self.stats.failed();
            tracing::warn!("publishing detections failed: {e:?}");
            return;
        }
        let latency_ms = ms(received);
        let age_ms = age_ms(&header.stamp);
        self.stats.published(latency_ms, age_ms);
        span.record("latency_ms", latency_ms);
        span.record("detections", count);
        tracing::debug!(
            latency_ms,
            age_ms,
            wait_ms,
            convert_ms,
            decode_ms = timings.decode,
            queue_ms = timings.queue,
            preprocess_ms = timings.preprocess,
            inference_ms = timings.inference,
            postprocess_ms = timings.postprocess,
            detections = count,
            "published"
        );
        if let Some(publisher) = &self.annotated {
            let mut img = Arc::unwrap_or_clone(detected.image);
            crate::engine::annotate::draw(&mut img, &detected.detections);
            if let Err(e) = publisher.publish(rgb_to_image(img, header)) {
                tracing::warn!("publishing the annotated image failed: {e:?}");
            }
        }
    }
}

/// Counts a bad frame and logs it at the 1st, 10th, 100th … time of its kind.
pub fn reject(stats: &Stats, r: &Rejection) {
    let n = stats.rejected(r.kind());
    let mut m = n;
    while m >= 10 && m.is_multiple_of(10) {
        m /= 10;
    }
    if m == 1 {
        tracing::warn!(kind = r.kind(), count = n, "skipped a frame: {r}");
    }
}

/// Milliseconds from `stamp` to now on the system clock, if within a minute (else the camera
/// runs on another clock, e.g. simulation time, and the figure would mean nothing).
fn age_ms(stamp: &Time) -> Option<f64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64();
    let age = (now - (f64::from(stamp.sec) + f64::from(stamp.nanosec) * 1e-9)) * 1e3;
    (-60_000.0..60_000.0).contains(&age).then_some(age)
}

fn log_summary(which: &str, s: &Summary) {
    let l = &s.latency_ms;
    let a = &s.age_ms;
    tracing::info!(
        which,
        received = s.received,
        published = s.published,
        stale = s.stale,
        disabled = s.disabled,
        failed = s.failed,
        rejected = %serde_json::to_string(&s.rejected).unwrap_or_default(),
        latency_frames = l.frames,
        latency_mean_ms = l.mean,
        latency_p50_ms = l.p50,
        latency_p90_ms = l.p90,
        latency_p99_ms = l.p99,
        latency_max_ms = l.max,
        age_frames = a.frames,
        age_p50_ms = a.p50,
        age_p90_ms = a.p90,
        "ros2 summary"
    );
}
