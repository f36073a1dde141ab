//! The node's detection worker: takes the newest received frame, converts it, runs the engine,
//! publishes the detections (and the annotated image), and logs the periodic summary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;
use ros2_client::Publisher;

use super::control::Control;
use super::convert::{Rejection, detections_to_msg, image_to_rgb, rgb_to_image};
use super::msg::{CompressedImage, Detection2DArray, Header, Image, Time};
use super::stats::{Stats, Summary};
use crate::engine::{Engine, ms};
use crate::error::EngineError;

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

/// A one-frame mailbox: a new frame replaces one the worker has not taken yet.
#[derive(Default)]
pub struct Latest {
    slot: Mutex<Option<Frame>>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Latest {
    /// Leaves `frame` for the worker; true when it replaced an unprocessed one.
    pub fn put(&self, frame: Frame) -> bool {
        let replaced = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(frame)
            .is_some();
        self.ready.notify_one();
        replaced
    }

    fn take(&self, wait: Duration) -> Option<Frame> {
        let slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, wait, |s| {
                s.is_none() && !self.stop.load(Ordering::Relaxed)
            })
            .unwrap_or_else(|p| p.into_inner());
        slot.take()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.ready.notify_all();
    }
}

/// Everything the worker thread owns or shares.
pub struct Worker {
    pub engine: Arc<Engine>,
    pub control: Arc<Control>,
    pub stats: Arc<Stats>,
    pub latest: Arc<Latest>,
    pub detections: Publisher<Detection2DArray>,
    pub annotated: Option<Publisher<Image>>,
    pub summary_every: Option<Duration>,
}

impl Worker {
    /// Runs until [`Latest::stop`]; ends with a summary of the whole run.
    pub fn run(self) {
        let mut last_summary = Instant::now();
        while !self.latest.stop.load(Ordering::Relaxed) {
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
        let img = match self.to_rgb(frame.payload) {
            Ok(img) => img,
            Err(r) => return reject(&self.stats, &r),
        };
        let convert_ms = ms(start);
        let vocab = self.control.vocabulary();
        let params = self.control.params();
        let result = self
            .engine
            .detect_images(std::slice::from_ref(&img), &vocab, &params);
        let (dets, timings) = match result {
            Ok(mut v) => v.pop().expect("one result per image"),
            Err(e) => {
                self.stats.failed();
                tracing::warn!("detection failed: {e}");
                return;
            }
        };
        let count = dets.len();
        if let Err(e) = self
            .detections
            .publish(detections_to_msg(header.clone(), &dets))
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
            preprocess_ms = timings.preprocess,
            inference_ms = timings.inference,
            postprocess_ms = timings.postprocess,
            detections = count,
            "published"
        );
        if let Some(publisher) = &self.annotated {
            let mut img = img;
            crate::annotate::draw(&mut img, &dets);
            if let Err(e) = publisher.publish(rgb_to_image(img, header)) {
                tracing::warn!("publishing the annotated image failed: {e:?}");
            }
        }
    }

    fn to_rgb(&self, payload: Payload) -> Result<RgbImage, Rejection> {
        match payload {
            Payload::Raw(m) => image_to_rgb(m, self.engine.limits()),
            Payload::Compressed(m) => self.engine.decode(&m.data).map_err(|e| match e {
                EngineError::TooLarge(msg) => Rejection::TooLarge(msg),
                other => Rejection::Decode(format!("compressed image ({}): {other}", m.format)),
            }),
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
