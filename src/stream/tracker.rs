//! Object tracking per camera: IoU matching with constant-velocity prediction, giving each
//! object a stable id across frames (what its events say is the job of [`super::events`]).
//!
//! Why this tracker: detections come at a few frames per second from a fixed camera, boxes are
//! tight and scores stable, so an association by overlap is enough; what it needs is to survive
//! motion between frames and a missed frame or two. Each track keeps a box and a velocity
//! (pixels per second) updated by an alpha-beta filter — the steady state of a constant-velocity
//! Kalman filter, with two gains instead of noise matrices to tune. Each frame, every track's
//! box is predicted forward by its velocity, then detections and tracks of the same label are
//! paired greedily by decreasing IoU (at least `min_iou`); a track unseen for `max_age_s` ends.

use crate::engine::Detection;
use crate::engine::postprocess::iou;

#[derive(Debug, Clone, Copy)]
pub struct TrackerParams {
    pub min_iou: f32,
    pub max_age_s: f64,
    /// Gain of the position correction (1: trust the detection fully).
    pub alpha: f32,
    /// Gain of the velocity correction.
    pub beta: f32,
}

impl Default for TrackerParams {
    fn default() -> Self {
        Self {
            min_iou: 0.2,
            max_age_s: 2.0,
            alpha: 0.85,
            beta: 0.3,
        }
    }
}

/// A track that ended: its id and when it was last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub id: String,
    pub last_seen: f64,
}

struct Track {
    id: String,
    label: String,
    bbox: [f32; 4],
    velocity: [f32; 4],
    last_seen: f64,
}

impl Track {
    fn predicted(&self, t: f64) -> [f32; 4] {
        let dt = (t - self.last_seen) as f32;
        std::array::from_fn(|i| self.bbox[i] + self.velocity[i] * dt)
    }
}

/// The tracks of one camera.
pub struct Tracker {
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
    pub fn new(params: TrackerParams) -> Tracker {
        Tracker {
            params,
            tracks: Vec::new(),
        }
    }

    /// Feeds one frame's detections (frame time `t`, seconds since the epoch). Returns, per
    /// detection, the id of the track it joined or started, and the tracks that ended.
    pub fn update(&mut self, t: f64, detections: &[Detection]) -> (Vec<String>, Vec<Ended>) {
        let p = self.params;
        // Candidate pairs (IoU with the predicted box), best first.
        let mut pairs = Vec::new();
        for (ti, track) in self.tracks.iter().enumerate() {
            let predicted = track.predicted(t);
            for (di, d) in detections.iter().enumerate() {
                if d.label == track.label {
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
        for (di, d) in detections.iter().enumerate() {
            if let Some(ti) = track_of[di] {
                let track = &mut self.tracks[ti];
                let predicted = track.predicted(t);
                let dt = (t - track.last_seen).max(1e-3) as f32;
                for (i, &guess) in predicted.iter().enumerate() {
                    let residual = d.bbox[i] - guess;
                    track.bbox[i] = guess + p.alpha * residual;
                    track.velocity[i] += p.beta * residual / dt;
                }
                track.last_seen = t;
            } else {
                track_of[di] = Some(self.tracks.len());
                self.tracks.push(Track {
                    id: object_id(t),
                    label: d.label.clone(),
                    bbox: d.bbox,
                    velocity: [0.0; 4],
                    last_seen: t,
                });
            }
        }
        let ids = track_of
            .iter()
            .map(|ti| {
                self.tracks[ti.expect("every detection has a track")]
                    .id
                    .clone()
            })
            .collect();
        (ids, self.expire(t))
    }

    /// Ends tracks unseen for `max_age_s` (also called when no frame arrives).
    pub fn expire(&mut self, t: f64) -> Vec<Ended> {
        let max_age = self.params.max_age_s;
        let mut ended = Vec::new();
        self.tracks.retain(|track| {
            let keep = t - track.last_seen < max_age;
            if !keep {
                ended.push(Ended {
                    id: track.id.clone(),
                    last_seen: track.last_seen,
                });
            }
            keep
        });
        ended
    }

    /// Ends every track now (the camera stopped or its vocabulary changed).
    pub fn end_all(&mut self) -> Vec<Ended> {
        self.tracks
            .drain(..)
            .map(|t| Ended {
                id: t.id,
                last_seen: t.last_seen,
            })
            .collect()
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

    #[test]
    fn a_moving_object_keeps_its_id_and_ends_once() {
        let mut tr = Tracker::new(TrackerParams::default());
        // 15 px per frame at 5 fps (75 px/s) for a 50 px box.
        let mut ids = Vec::new();
        for i in 0..10 {
            let t = 1000.0 + i as f64 * 0.2;
            let (frame_ids, ended) = tr.update(t, &[det("dog", 15.0 * i as f32, 0.8)]);
            assert!(ended.is_empty());
            ids.extend(frame_ids);
        }
        let id = ids[0].clone();
        assert!(id.starts_with("1000.000000-"), "{id}");
        assert!(ids.iter().all(|i| *i == id), "{ids:?}");
        let (_, ended) = tr.update(1010.0, &[]);
        assert_eq!(
            ended,
            vec![Ended {
                id,
                last_seen: 1000.0 + 9.0 * 0.2
            }]
        );
        assert!(tr.end_all().is_empty());
    }

    #[test]
    fn labels_do_not_mix() {
        let mut tr = Tracker::new(TrackerParams::default());
        let (first, _) = tr.update(0.0, &[det("cat", 0.0, 0.5), det("dog", 0.0, 0.5)]);
        let (ids, _) = tr.update(0.1, &[det("dog", 2.0, 0.6), det("cat", 2.0, 0.4)]);
        assert_ne!(first[0], first[1]);
        assert_eq!((&ids[0], &ids[1]), (&first[1], &first[0]));
        assert_eq!(tr.end_all().len(), 2);
    }

    #[test]
    fn object_ids_never_repeat_across_trackers_of_one_camera() {
        // A restarted daemon makes a new tracker for the same camera at the same frame time.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut tr = Tracker::new(TrackerParams::default());
            let (ids, _) = tr.update(5.0, &[det("cat", 0.0, 0.5)]);
            assert!(seen.insert(ids[0].clone()), "{} repeated", ids[0]);
        }
    }
}
