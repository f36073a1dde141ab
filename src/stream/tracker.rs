//! Object tracking per camera: IoU matching with constant-velocity prediction, giving stable ids
//! and `new` / `update` / `end` events.
//!
//! Why this tracker: detections come at a few frames per second from a fixed camera, boxes are
//! tight and scores stable, so an association by overlap is enough; what it needs is to survive
//! motion between frames and a missed frame or two. Each track keeps a box and a velocity
//! (pixels per second) updated by an alpha-beta filter — the steady state of a constant-velocity
//! Kalman filter, with two gains instead of noise matrices to tune. Each frame, every track's
//! box is predicted forward by its velocity, then detections and tracks of the same label are
//! paired greedily by decreasing IoU (at least `min_iou`). A track is announced (`new`) after
//! `min_hits` matched frames, so a one-frame false positive never becomes an event; it sends
//! `update` when its best score rises or at most every `update_interval_s` while it moves; it
//! ends (`end`) when unseen for `max_age_s`.

use serde::Serialize;

use crate::engine::Detection;
use crate::engine::postprocess::iou;

#[derive(Debug, Clone, Copy)]
pub struct TrackerParams {
    pub min_iou: f32,
    pub min_hits: u32,
    pub max_age_s: f64,
    pub update_interval_s: f64,
    /// Gain of the position correction (1: trust the detection fully).
    pub alpha: f32,
    /// Gain of the velocity correction.
    pub beta: f32,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            min_iou: 0.2,
            min_hits: 2,
            max_age_s: 2.0,
            update_interval_s: 1.0,
            alpha: 0.85,
            beta: 0.3,
        }
    }
}

/// One tracked object as events report it (Frigate's event fields).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TrackedObject {
    pub id: String,
    pub camera: String,
    pub label: String,
    pub score: f32,
    pub top_score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub start_time: f64,
    pub end_time: Option<f64>,
    /// Frames in which the object was detected.
    pub hits: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

/// A tracker event: `{"type": "new", "id": …, "camera": …, "label": …, …}`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventKind,
    #[serde(flatten)]
    pub object: TrackedObject,
}

struct Track {
    object: TrackedObject,
    velocity: [f32; 4],
    last_seen: f64,
    last_update_sent: f64,
    confirmed: bool,
}

impl Track {
    fn predicted(&self, t: f64) -> [f32; 4] {
        let dt = (t - self.last_seen) as f32;
        std::array::from_fn(|i| self.object.bbox[i] + self.velocity[i] * dt)
    }
}

/// The tracks of one camera.
pub struct Tracker {
    camera: String,
    params: TrackerParams,
    tracks: Vec<Track>,
}

/// A new object's id, unique across cameras and restarts (Frigate's form): the frame time it was
/// first seen, then six random letters or digits, e.g. `1764650000.123456-k3x9q2`.
fn object_id(t: f64) -> String {
    use std::hash::BuildHasher;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // std's randomly keyed SipHash: a fresh key per process and per call.
    let mut bits = std::collections::hash_map::RandomState::new().hash_one(t.to_bits());
    let suffix: String = (0..6)
        .map(|_| {
            let c = ALPHABET[(bits % 36) as usize] as char;
            bits /= 36;
            c
        })
        .collect();
    format!("{t:.6}-{suffix}")
}

impl Tracker {
    pub fn new(camera: &str, params: TrackerParams) -> Tracker {
        Tracker {
            camera: camera.to_string(),
            params,
            tracks: Vec::new(),
        }
    }

    /// Feeds one frame's detections (frame time `t`, seconds since the epoch). Returns the
    /// events and, per detection, the id of the track it joined.
    pub fn update(&mut self, t: f64, detections: &[Detection]) -> (Vec<Event>, Vec<String>) {
        let p = self.params;
        let mut events = Vec::new();
        // Candidate pairs (IoU with the predicted box), best first.
        let mut pairs = Vec::new();
        for (ti, track) in self.tracks.iter().enumerate() {
            let predicted = track.predicted(t);
            for (di, d) in detections.iter().enumerate() {
                if d.label == track.object.label {
                    let overlap = iou(&predicted, &d.bbox);
                    if overlap >= p.min_iou {
                        pairs.push((overlap, ti, di));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of = vec![None; detections.len()];
        let mut track_taken = vec![false; self.tracks.len()];
        for (_, ti, di) in pairs {
            if track_taken[ti] || track_of[di].is_some() {
                continue;
            }
            track_taken[ti] = true;
            track_of[di] = Some(ti);
        }
        for di in 0..detections.len() {
            let d = &detections[di];
            if let Some(ti) = track_of[di] {
                let track = &mut self.tracks[ti];
                let predicted = track.predicted(t);
                let dt = (t - track.last_seen).max(1e-3) as f32;
                for (i, &guess) in predicted.iter().enumerate() {
                    let residual = d.bbox[i] - guess;
                    track.object.bbox[i] = guess + p.alpha * residual;
                    track.velocity[i] += p.beta * residual / dt;
                }
                track.last_seen = t;
                track.object.hits += 1;
                track.object.score = d.score;
                let rose = d.score > track.object.top_score;
                track.object.top_score = track.object.top_score.max(d.score);
                if !track.confirmed && track.object.hits >= p.min_hits {
                    track.confirmed = true;
                    track.last_update_sent = t;
                    events.push(Event {
                        kind: EventKind::New,
                        object: track.object.clone(),
                    });
                } else if track.confirmed
                    && (rose || t - track.last_update_sent >= p.update_interval_s)
                {
                    track.last_update_sent = t;
                    events.push(Event {
                        kind: EventKind::Update,
                        object: track.object.clone(),
                    });
                }
            } else {
                let id = object_id(t);
                let mut track = Track {
                    object: TrackedObject {
                        id,
                        camera: self.camera.clone(),
                        label: d.label.clone(),
                        score: d.score,
                        top_score: d.score,
                        bbox: d.bbox,
                        start_time: t,
                        end_time: None,
                        hits: 1,
                    },
                    velocity: [0.0; 4],
                    last_seen: t,
                    last_update_sent: t,
                    confirmed: false,
                };
                if p.min_hits <= 1 {
                    track.confirmed = true;
                    events.push(Event {
                        kind: EventKind::New,
                        object: track.object.clone(),
                    });
                }
                track_of[di] = Some(self.tracks.len());
                self.tracks.push(track);
            }
        }
        let ids = track_of
            .iter()
            .map(|ti| {
                self.tracks[ti.expect("every detection has a track")]
                    .object
                    .id
                    .clone()
            })
            .collect();
        events.extend(self.expire(t));
        (events, ids)
    }

    /// Ends tracks unseen for `max_age_s` (also called when no frame arrives).
    pub fn expire(&mut self, t: f64) -> Vec<Event> {
        let max_age = self.params.max_age_s;
        let mut events = Vec::new();
        self.tracks.retain(|track| {
            if t - track.last_seen < max_age {
                return true;
            }
            if track.confirmed {
                let mut object = track.object.clone();
                object.end_time = Some(track.last_seen);
                events.push(Event {
                    kind: EventKind::End,
                    object,
                });
            }
            false
        });
        events
    }

    /// Ends every track now (the camera stopped or its vocabulary changed).
    pub fn end_all(&mut self) -> Vec<Event> {
        self.tracks
            .drain(..)
            .filter(|t| t.confirmed)
            .map(|t| {
                let mut object = t.object;
                object.end_time = Some(t.last_seen);
                Event {
                    kind: EventKind::End,
                    object,
                }
            })
            .collect()
    }

    /// Confirmed objects currently visible, per label.
    pub fn counts(&self) -> std::collections::BTreeMap<String, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for t in self.tracks.iter().filter(|t| t.confirmed) {
            *counts.entry(t.object.label.clone()).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, x: f32, score: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox: [x, 100.0, x + 50.0, 150.0],
        }
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, String)> {
        events
            .iter()
            .map(|e| (e.kind, e.object.id.clone()))
            .collect()
    }

    #[test]
    fn a_moving_object_keeps_its_id_and_ends_once() {
        let mut tr = Tracker::new("cam", TrackerParams::default());
        // 15 px per frame at 5 fps (75 px/s) for a 50 px box.
        let mut ids = Vec::new();
        let mut all = Vec::new();
        for i in 0..10 {
            let t = 1000.0 + i as f64 * 0.2;
            let (events, frame_ids) = tr.update(t, &[det("dog", 15.0 * i as f32, 0.8)]);
            ids.extend(frame_ids);
            all.extend(events);
        }
        let id = ids[0].clone();
        assert!(id.starts_with("1000.000000-"), "{id}");
        assert!(ids.iter().all(|i| *i == id), "{ids:?}");
        assert_eq!(kinds(&all)[0], (EventKind::New, id.clone()));
        assert_eq!(tr.counts().get("dog"), Some(&1));
        let ended = tr.update(1010.0, &[]).0;
        assert_eq!(kinds(&ended), vec![(EventKind::End, id)]);
        assert_eq!(ended[0].object.end_time, Some(1000.0 + 9.0 * 0.2));
        assert!(tr.counts().is_empty());
    }

    #[test]
    fn one_frame_blips_never_become_events() {
        let mut tr = Tracker::new("cam", TrackerParams::default());
        let (events, _) = tr.update(0.0, &[det("cat", 0.0, 0.5)]);
        assert!(events.is_empty());
        let (events, _) = tr.update(5.0, &[]);
        assert!(events.is_empty(), "an unconfirmed track ends silently");
    }

    #[test]
    fn labels_do_not_mix_and_scores_rising_send_updates() {
        let mut tr = Tracker::new("cam", TrackerParams::default());
        tr.update(0.0, &[det("cat", 0.0, 0.5), det("dog", 0.0, 0.5)]);
        let (events, ids) = tr.update(0.1, &[det("cat", 2.0, 0.6), det("dog", 2.0, 0.4)]);
        assert_ne!(ids[0], ids[1]);
        assert_eq!(events.len(), 2);
        let (events, _) = tr.update(0.2, &[det("cat", 4.0, 0.9), det("dog", 4.0, 0.4)]);
        assert_eq!(kinds(&events), vec![(EventKind::Update, ids[0].clone())]);
        assert_eq!(events[0].object.top_score, 0.9);
        let ended = tr.end_all();
        assert_eq!(ended.len(), 2);
    }

    #[test]
    fn object_ids_never_repeat_across_trackers_of_one_camera() {
        // A restarted daemon makes a new tracker for the same camera at the same frame time.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut tr = Tracker::new("cam", TrackerParams::default());
            let (_, ids) = tr.update(5.0, &[det("cat", 0.0, 0.5)]);
            assert!(seen.insert(ids[0].clone()), "{} repeated", ids[0]);
        }
    }
}
