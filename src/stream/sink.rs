//! The event sink: one thread that saves each event's snapshot, thumbnail and row, publishes the
//! snapshot, joins clips once their post-capture has been recorded, and applies retention — so
//! JPEG encoding and the disk never hold a camera back, and a full or failing disk costs events
//! their files, never detection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::config::EventSettings;
use super::event_store::{EventStore, EventStoreError, Media};
use super::events::{BestFrame, Emitted, EventKind, EventObject};
use super::mqtt::{Kind, MqttPublisher, topic_level};
use super::recorder::{self, Recorder};
use super::source::now_epoch;
use crate::engine::Detection;

/// Messages waiting for the sink past which only `new` and `end` are queued, without their
/// snapshots (a stalled disk then costs updates and pictures, never an event's start or end).
const QUEUE: usize = 1024;
/// How long past its due time a clip waits for the segment after its window to appear.
const CLIP_PATIENCE_S: f64 = 60.0;
/// Retention runs at least this often.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Thumbnails are this tall at most.
const THUMBNAIL_HEIGHT: u32 = 175;

pub struct EventSink {
    tx: Mutex<Option<Sender<Emitted>>>,
    /// `dosod_events_store_failures_total`: event states or pictures not stored.
    failures: prometheus::IntCounter,
    /// Messages sent and not yet handled.
    backlog: Arc<AtomicUsize>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    store: Option<Arc<EventStore>>,
}

impl EventSink {
    /// Opens the store (`[events] dir`; an unusable folder is a start-up error) and starts the
    /// thread.
    pub fn start(
        settings: &EventSettings,
        mqtt: Option<Arc<MqttPublisher>>,
        recorders: HashMap<String, Arc<Recorder>>,
        failures: prometheus::IntCounter,
    ) -> Result<Arc<EventSink>, EventStoreError> {
        let store = if settings.dir.as_os_str().is_empty() {
            None
        } else {
            Some(Arc::new(EventStore::open(&settings.dir)?))
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            backlog: backlog.clone(),
            failures: failures.clone(),
            settings: settings.clone(),
            store: store.clone(),
            mqtt,
            last_prune: None,
            recorders,
            pending: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("event-sink".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| EventStoreError::Database(format!("starting the event sink: {e}")))?;
        Ok(Arc::new(EventSink {
            tx: Mutex::new(Some(tx)),
            failures,
            backlog,
            thread: Mutex::new(Some(thread)),
            store,
        }))
    }

    pub fn store(&self) -> Option<&Arc<EventStore>> {
        self.store.as_ref()
    }

    /// Hands a message over without waiting. Past [`QUEUE`] waiting messages, updates are
    /// dropped and snapshots left out; `new` and `end` are always kept.
    pub fn send(&self, mut e: Emitted) {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some(tx) = tx.as_ref() else { return };
        if self.backlog.load(Ordering::Acquire) >= QUEUE {
            self.failures.inc();
            if e.message.kind == EventKind::Update {
                tracing::warn!(event = %e.message.after.id, "event sink behind: update not stored");
                return;
            }
            e.snapshot = None;
        }
        self.backlog.fetch_add(1, Ordering::AcqRel);
        if tx.send(e).is_err() {
            self.backlog.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Saves what is queued, then stops the thread.
    pub fn shutdown(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    backlog: Arc<AtomicUsize>,
    /// `dosod_events_store_failures_total`.
    failures: prometheus::IntCounter,
    settings: EventSettings,
    store: Option<Arc<EventStore>>,
    mqtt: Option<Arc<MqttPublisher>>,
    last_prune: Option<Instant>,
    /// Cameras that record clips.
    recorders: HashMap<String, Arc<Recorder>>,
    /// Ended events waiting for their post-capture to be recorded.
    pending: Vec<ClipJob>,
}

/// An ended event's clip, due once `due` (wall clock) has passed.
struct ClipJob {
    due: f64,
    object: EventObject,
}

impl Worker {
    fn run(mut self, rx: Receiver<Emitted>) {
        loop {
            let next_clip = self
                .pending
                .iter()
                .map(|j| j.due - now_epoch())
                .reduce(f64::min)
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 3600.0)));
            let wait = next_clip.map_or(PRUNE_EVERY, |d| d.min(PRUNE_EVERY));
            match rx.recv_timeout(wait) {
                Ok(e) => {
                    self.backlog.fetch_sub(1, Ordering::AcqRel);
                    let ended = e.message.kind == EventKind::End;
                    self.handle(e);
                    if ended {
                        self.prune();
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => self.prune(),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    // Stopping: join what has been recorded of every waiting clip.
                    for job in std::mem::take(&mut self.pending) {
                        self.clip(job, true);
                    }
                    return;
                }
            }
            self.clips(now_epoch());
        }
    }

    /// Joins the clips due by `now`.
    fn clips(&mut self, now: f64) {
        let (due, later): (Vec<ClipJob>, Vec<ClipJob>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|j| j.due <= now);
        self.pending = later;
        for job in due {
            if let Some(job) = self.clip(job, false) {
                self.pending.push(job);
            }
        }
    }

    /// Joins one clip, or gives the job back to wait for the segment after its window (until
    /// [`CLIP_PATIENCE_S`] past due, or at once when `now_or_never`).
    fn clip(&mut self, job: ClipJob, now_or_never: bool) -> Option<ClipJob> {
        let (Some(rec), Some(store)) = (self.recorders.get(&job.object.camera), &self.store) else {
            return None;
        };
        let c = rec.config();
        let to = job.object.end_time.unwrap_or(job.object.frame_time) + c.post_capture;
        let from = (job.object.start_time - c.pre_capture).max(to - recorder::MAX_CLIP_S);
        let all = recorder::segments(&rec.dir);
        let closed = all.iter().any(|s| s.start > to);
        let now = now_epoch();
        if store.is_deleted(&job.object.id) {
            rec.release(&job.object.id);
            return None;
        }
        if !closed && !now_or_never && now < job.due + CLIP_PATIENCE_S && rec.healthy() {
            return Some(ClipJob {
                due: now + 1.0,
                object: job.object,
            });
        }
        let mut o = job.object;
        let result = store
            .media_path(&o.camera, &o.id, Media::Clip)
            .ok_or_else(|| "invalid event id".to_string())
            .and_then(|path| {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("creating a media folder: {}", e.kind()))?;
                }
                recorder::join(&recorder::covering(&all, from, to), &path)
            });
        rec.release(&o.id);
        if let Err(e) = &result {
            tracing::warn!(event = %o.id, camera = %o.camera, error = %e, "no clip");
            o.has_clip = false;
        }
        if let Err(e) = store.upsert(&o) {
            tracing::error!(event = %o.id, error = %e, "event not stored");
        }
        None
    }

    fn handle(&mut self, e: Emitted) {
        let o = &e.message.after;
        if let Some(rec) = self.recorders.get(&o.camera).filter(|_| o.has_clip) {
            let c = rec.config();
            match e.message.kind {
                EventKind::New => rec.hold(&o.id, o.start_time - c.pre_capture),
                EventKind::End => {
                    let end = o.end_time.unwrap_or(o.frame_time);
                    let to = end + c.post_capture;
                    rec.hold_ended(
                        &o.id,
                        (o.start_time - c.pre_capture).max(to - recorder::MAX_CLIP_S),
                    );
                    self.pending.push(ClipJob {
                        // The segment holding the post-capture's end has then been closed.
                        due: to + c.segment_s + 1.0,
                        object: o.clone(),
                    });
                }
                EventKind::Update => {}
            }
        }
        if self.store.as_ref().is_some_and(|s| s.is_deleted(&o.id)) {
            return; // deleted through the API while in view: no more files for it
        }
        let result = (|| {
            if let Some(best) = &e.snapshot {
                let (snapshot, thumbnail) = self.render(o, best)?;
                if let Some(store) = &self.store {
                    store.write_media(&o.camera, &o.id, Media::Snapshot, &snapshot)?;
                    store.write_media(&o.camera, &o.id, Media::Thumbnail, &thumbnail)?;
                }
                if let Some(m) = &self.mqtt {
                    m.publish(
                        &format!("{}/{}/snapshot", o.camera, topic_level(&o.label)),
                        snapshot,
                        Kind::Retained,
                    );
                }
            }
            if let Some(store) = &self.store {
                store.upsert(o)?;
            }
            Ok::<_, EventStoreError>(())
        })();
        match result {
            Ok(()) => {}
            Err(err) => {
                self.failures.inc();
                tracing::error!(event = %o.id, camera = %o.camera, error = %err, "event not stored");
            }
        }
    }

    /// The snapshot (whole frame or cropped, box drawn or not) and the thumbnail, as JPEG.
    fn render(
        &self,
        o: &EventObject,
        best: &BestFrame,
    ) -> Result<(Vec<u8>, Vec<u8>), EventStoreError> {
        let s = &self.settings;
        let mut image: RgbImage = (*best.image).clone();
        if s.snapshot_boxes {
            crate::engine::annotate::draw(
                &mut image,
                &[Detection {
                    label: o.label.clone(),
                    class_id: 0,
                    score: best.score,
                    bbox: best.bbox,
                }],
            );
        }
        let snapshot = if s.snapshot_crop {
            crop(&image, best.bbox, 1.0)
        } else {
            image.clone()
        };
        let thumb = crop(&image, best.bbox, 0.25);
        let thumb = if thumb.height() > THUMBNAIL_HEIGHT {
            let w = (thumb.width() * THUMBNAIL_HEIGHT / thumb.height()).max(1);
            image::imageops::resize(
                &thumb,
                w,
                THUMBNAIL_HEIGHT,
                image::imageops::FilterType::Triangle,
            )
        } else {
            thumb
        };
        Ok((
            jpeg(&snapshot, s.snapshot_quality)?,
            jpeg(&thumb, s.snapshot_quality)?,
        ))
    }

    fn prune(&mut self) {
        let Some(store) = &self.store else { return };
        if self
            .last_prune
            .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.last_prune = Some(Instant::now());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        match store.prune(
            now,
            self.settings.retain_days,
            self.settings.max_size_mb.saturating_mul(1024 * 1024),
        ) {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "event retention"),
            Err(e) => tracing::warn!(error = %e, "event retention failed"),
        }
    }
}

/// The box grown by `margin` × its size on every side, clamped to the image.
fn crop(image: &RgbImage, bbox: [f32; 4], margin: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    let (bw, bh) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let x1 = (bbox[0] - bw * margin).clamp(0.0, w as f32 - 1.0) as u32;
    let y1 = (bbox[1] - bh * margin).clamp(0.0, h as f32 - 1.0) as u32;
    let x2 = (bbox[2] + bw * margin).clamp(x1 as f32 + 1.0, w as f32) as u32;
    let y2 = (bbox[3] + bh * margin).clamp(y1 as f32 + 1.0, h as f32) as u32;
    image::imageops::crop_imm(image, x1, y1, x2 - x1, y2 - y1).to_image()
}

fn jpeg(image: &RgbImage, quality: u8) -> Result<Vec<u8>, EventStoreError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(image)
        .map_err(|e| EventStoreError::Database(format!("encoding a snapshot: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_stay_inside_the_frame() {
        let image = RgbImage::new(100, 50);
        let c = crop(&image, [90.0, 40.0, 100.0, 50.0], 1.0);
        assert_eq!(c.dimensions(), (20, 20));
        let c = crop(&image, [-5.0, -5.0, 0.0, 0.0], 0.25);
        assert!(c.width() >= 1 && c.height() >= 1);
    }
}
