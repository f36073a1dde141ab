//! The event lifecycle of a camera's objects, in Frigate's shape (`new` / `update` / `end` with
//! `before` and `after`): true positives by median score, zones with inertia and loitering,
//! stationary objects, the best frame for the snapshot, and counts per zone and label (pure:
//! frames in, messages out).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::rules::Rules;
use super::tracker::{Ended, Tracker, TrackerParams};
use crate::engine::Detection;
use crate::engine::postprocess::iou;

/// Frames an object must be detected in before it can be an event (a one-frame blip never is).
pub const MIN_HITS: u32 = 2;
/// The scores whose median decides whether an object is a true positive.
const SCORE_HISTORY: usize = 10;
/// A box overlapping the box where the object came to rest at least this much has not moved.
const STILL_IOU: f32 = 0.85;

/// One object as events report it: Frigate's event object fields (`box`, `region` in pixels
/// `[x1, y1, x2, y2]`; times in seconds since the epoch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EventObject {
    pub id: String,
    pub camera: String,
    /// The frame this state is from.
    pub frame_time: f64,
    pub label: String,
    /// Always null (dosod has no sub-label models); kept for Frigate's consumers.
    pub sub_label: Option<String>,
    pub top_score: f32,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Box area in pixels.
    pub area: f32,
    /// Box width / height.
    pub ratio: f32,
    /// The part of the frame the detector saw: always the whole frame.
    pub region: [f32; 4],
    pub current_zones: Vec<String>,
    pub entered_zones: Vec<String>,
    pub has_snapshot: bool,
    pub has_clip: bool,
    pub start_time: f64,
    pub end_time: Option<f64>,
    pub stationary: bool,
    /// Frames since the object last moved.
    pub motionless_count: u32,
    pub position_changes: u32,
    /// Always false in published events: an object becomes an event when it stops being one.
    pub false_positive: bool,
    /// Not stationary.
    pub active: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    New,
    Update,
    End,
}

/// What `<prefix>/events` carries: the object as last published and as it is now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct EventMessage {
    #[serde(rename = "type")]
    pub kind: EventKind,
    pub before: EventObject,
    pub after: EventObject,
}

/// The best frame of an object so far: what its snapshot shows.
#[derive(Debug, Clone)]
pub struct BestFrame {
    pub image: Arc<RgbImage>,
    pub bbox: [f32; 4],
    pub score: f32,
}

/// A message, with the best frame when it changed since the last message of its object.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub message: EventMessage,
    pub snapshot: Option<BestFrame>,
}

#[derive(Debug, Default, Clone)]
struct ZoneState {
    /// Consecutive frames inside, up to the zone's inertia (counts down outside).
    count: u32,
    /// When the current stay began.
    since: Option<f64>,
    present: bool,
}

struct ObjectState {
    object: EventObject,
    published: Option<EventObject>,
    hits: u32,
    scores: VecDeque<f32>,
    zones: HashMap<String, ZoneState>,
    still_box: [f32; 4],
    still_since: f64,
    best: Option<BestFrame>,
    best_changed: bool,
}

/// Per zone (`None`: the whole frame) and label, the objects that are events now.
pub type Counts = BTreeMap<(Option<String>, String), usize>;

/// One camera's objects: the tracker and what each object's events have said.
pub struct Lifecycle {
    camera: String,
    tracker: Tracker,
    objects: HashMap<String, ObjectState>,
    /// Whether events carry `has_snapshot` (the sink saves the best frame).
    snapshots: bool,
    /// Whether events carry `has_clip` (the camera records clips).
    clips: bool,
}

fn median(scores: &VecDeque<f32>) -> f32 {
    let mut v: Vec<f32> = scores.iter().copied().collect();
    v.sort_by(f32::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Lifecycle {
    pub fn new(camera: &str, snapshots: bool, clips: bool) -> Lifecycle {
        Lifecycle {
            camera: camera.to_string(),
            tracker: Tracker::new(TrackerParams::default()),
            objects: HashMap::new(),
            snapshots,
            clips,
        }
    }

    /// One frame's detections (after masks and filters) at frame time `t`. Returns, per
    /// detection, its object id, and the messages the frame causes.
    pub fn frame(
        &mut self,
        t: f64,
        image: &Arc<RgbImage>,
        detections: &[Detection],
        rules: &Rules,
    ) -> (Vec<String>, Vec<Emitted>) {
        let (ids, ended) = self.tracker.update(t, detections);
        let (w, h) = image.dimensions();
        let mut out = Vec::new();
        for (d, id) in detections.iter().zip(&ids) {
            let state = self
                .objects
                .entry(id.clone())
                .or_insert_with(|| ObjectState {
                    object: EventObject {
                        id: id.clone(),
                        camera: self.camera.clone(),
                        frame_time: t,
                        label: d.label.clone(),
                        sub_label: None,
                        top_score: d.score,
                        score: d.score,
                        bbox: d.bbox,
                        area: 0.0,
                        ratio: 0.0,
                        region: [0.0, 0.0, w as f32, h as f32],
                        current_zones: Vec::new(),
                        entered_zones: Vec::new(),
                        has_snapshot: false,
                        has_clip: false,
                        start_time: t,
                        end_time: None,
                        stationary: false,
                        motionless_count: 0,
                        position_changes: 0,
                        false_positive: true,
                        active: true,
                    },
                    published: None,
                    hits: 0,
                    scores: VecDeque::new(),
                    zones: HashMap::new(),
                    still_box: d.bbox,
                    still_since: t,
                    best: None,
                    best_changed: false,
                });
            state.observe(t, image, d, rules);
            if let Some(e) = state.decide(self.snapshots, self.clips, rules) {
                out.push(e);
            }
        }
        out.extend(self.end(ended));
        (ids, out)
    }

    /// Whether new events carry `has_clip` (clips switched on or off at run time).
    pub fn set_clips(&mut self, clips: bool) {
        self.clips = clips;
    }

    /// Ends objects unseen for the tracker's `max_age_s` (when no frame arrives).
    pub fn expire(&mut self, t: f64) -> Vec<Emitted> {
        let ended = self.tracker.expire(t);
        self.end(ended)
    }

    /// Ends every object now (the camera stopped or its vocabulary changed).
    pub fn end_all(&mut self) -> Vec<Emitted> {
        let ended = self.tracker.end_all();
        self.end(ended)
    }

    fn end(&mut self, ended: Vec<Ended>) -> Vec<Emitted> {
        let mut out = Vec::new();
        for e in ended {
            let Some(mut state) = self.objects.remove(&e.id) else {
                continue;
            };
            let Some(before) = state.published.take() else {
                continue; // never an event: ends silently
            };
            state.object.end_time = Some(e.last_seen);
            state.object.active = false;
            out.push(Emitted {
                message: EventMessage {
                    kind: EventKind::End,
                    before,
                    after: state.object.clone(),
                },
                snapshot: state.take_snapshot(self.snapshots),
            });
        }
        out
    }

    /// Objects that are events now, per label and per zone and label.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::new();
        for s in self.objects.values().filter(|s| s.published.is_some()) {
            *counts.entry((None, s.object.label.clone())).or_insert(0) += 1;
            for z in &s.object.current_zones {
                *counts
                    .entry((Some(z.clone()), s.object.label.clone()))
                    .or_insert(0) += 1;
            }
        }
        counts
    }
}

impl ObjectState {
    /// Takes in one detection of this object.
    fn observe(&mut self, t: f64, image: &Arc<RgbImage>, d: &Detection, rules: &Rules) {
        let (w, h) = image.dimensions();
        self.hits += 1;
        if self.scores.len() == SCORE_HISTORY {
            self.scores.pop_front();
        }
        self.scores.push_back(d.score);
        let o = &mut self.object;
        o.frame_time = t;
        o.score = d.score;
        o.top_score = o.top_score.max(d.score);
        o.bbox = d.bbox;
        let (bw, bh) = (
            (d.bbox[2] - d.bbox[0]).max(0.0),
            (d.bbox[3] - d.bbox[1]).max(0.0),
        );
        o.area = bw * bh;
        o.ratio = if bh > 0.0 { bw / bh } else { 0.0 };
        o.region = [0.0, 0.0, w as f32, h as f32];
        if self.best.as_ref().is_none_or(|b| d.score > b.score) {
            self.best = Some(BestFrame {
                image: image.clone(),
                bbox: d.bbox,
                score: d.score,
            });
            self.best_changed = true;
        }
        // Zones: inertia frames inside to enter (and outside to leave), then loitering time.
        let inside = rules.zones_holding(&d.label, &d.bbox, w, h);
        self.zones
            .retain(|name, _| rules.zones.iter().any(|z| &z.name == name));
        for (i, zone) in rules.zones.iter().enumerate() {
            let z = self.zones.entry(zone.name.clone()).or_default();
            if inside.contains(&i) {
                z.count = (z.count + 1).min(zone.inertia);
                let since = *z.since.get_or_insert(t);
                if z.count >= zone.inertia && t - since >= zone.loitering_time {
                    z.present = true;
                }
            } else {
                z.count = z.count.saturating_sub(1);
                if z.count == 0 {
                    z.present = false;
                    z.since = None;
                }
            }
        }
        o.current_zones = rules
            .zones
            .iter()
            .filter(|z| self.zones.get(&z.name).is_some_and(|s| s.present))
            .map(|z| z.name.clone())
            .collect();
        for z in &o.current_zones {
            if !o.entered_zones.contains(z) {
                o.entered_zones.push(z.clone());
            }
        }
        // Stationary: the box stays where the object came to rest for `stationary_s`.
        if iou(&d.bbox, &self.still_box) >= STILL_IOU {
            o.motionless_count += 1;
        } else {
            self.still_box = d.bbox;
            self.still_since = t;
            o.motionless_count = 0;
            o.position_changes += 1;
        }
        o.stationary = rules.stationary_s > 0.0 && t - self.still_since >= rules.stationary_s;
        o.active = !o.stationary;
    }

    /// The message this frame's state calls for, if any.
    fn decide(&mut self, snapshots: bool, clips: bool, rules: &Rules) -> Option<Emitted> {
        let o = &mut self.object;
        let kind = match &self.published {
            None => {
                if self.hits < MIN_HITS || median(&self.scores) < rules.threshold(&o.label) {
                    return None;
                }
                o.false_positive = false;
                o.has_snapshot = snapshots;
                o.has_clip = clips;
                EventKind::New
            }
            Some(p) => {
                let changed = (o.top_score > p.top_score && !(o.stationary && p.stationary))
                    || o.current_zones != p.current_zones
                    || o.entered_zones != p.entered_zones
                    || o.stationary != p.stationary
                    || o.has_snapshot != p.has_snapshot
                    || o.has_clip != p.has_clip;
                if !changed {
                    return None;
                }
                EventKind::Update
            }
        };
        let after = o.clone();
        let before = self
            .published
            .replace(after.clone())
            .unwrap_or(after.clone());
        Some(Emitted {
            message: EventMessage {
                kind,
                before,
                after,
            },
            snapshot: self.take_snapshot(snapshots),
        })
    }

    fn take_snapshot(&mut self, snapshots: bool) -> Option<BestFrame> {
        if !(snapshots && std::mem::take(&mut self.best_changed)) {
            return None;
        }
        self.best.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::rules::RulesConfig;

    fn rules(toml_text: &str) -> Rules {
        toml::from_str::<RulesConfig>(toml_text)
            .unwrap()
            .compile()
            .unwrap()
    }

    fn det(label: &str, x: f32, score: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox: [x, 50.0, x + 20.0, 90.0],
        }
    }

    fn frame() -> Arc<RgbImage> {
        Arc::new(RgbImage::new(200, 100))
    }

    /// Runs frames at 5 fps from t = 100 s; returns every message.
    fn run(lc: &mut Lifecycle, rules: &Rules, frames: &[Vec<Detection>]) -> Vec<EventMessage> {
        let image = frame();
        let mut out = Vec::new();
        for (i, dets) in frames.iter().enumerate() {
            let (_, e) = lc.frame(100.0 + i as f64 * 0.2, &image, dets, rules);
            out.extend(e.into_iter().map(|e| e.message));
        }
        out
    }

    fn kinds(m: &[EventMessage]) -> Vec<EventKind> {
        m.iter().map(|m| m.kind).collect()
    }

    #[test]
    fn entering_a_zone_is_one_new_updates_on_change_and_one_end() {
        // The zone is the right half; the object walks right 10 px per frame (anchor x from
        // 10 to 150), score steady.
        let r = rules(
            r#"
            stationary_s = 0
            [[zones]]
            name = "right"
            points = [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]
            inertia = 2
            "#,
        );
        let mut lc = Lifecycle::new("cam", true, false);
        let frames: Vec<Vec<Detection>> = (0..15)
            .map(|i| vec![det("dog", i as f32 * 10.0, 0.5)])
            .collect();
        let mut m = run(&mut lc, &r, &frames);
        m.extend(lc.expire(200.0).into_iter().map(|e| e.message));
        assert_eq!(
            kinds(&m),
            [EventKind::New, EventKind::Update, EventKind::End],
            "{m:#?}"
        );
        let new = &m[0];
        assert_eq!(new.before, new.after);
        assert!(!new.after.false_positive && new.after.has_snapshot);
        assert!(new.after.entered_zones.is_empty());
        // Anchor x = i·10 + 10 reaches 100 (the zone's edge) at frame 9; inertia 2: in at 10.
        let update = &m[1];
        assert_eq!(update.after.entered_zones, ["right"]);
        assert_eq!(update.after.current_zones, ["right"]);
        assert!(update.before.current_zones.is_empty());
        assert_eq!(update.after.frame_time, 100.0 + 10.0 * 0.2);
        let end = &m[2];
        assert_eq!(end.after.end_time, Some(100.0 + 14.0 * 0.2));
        assert_eq!(
            end.before, update.after,
            "before is what was last published"
        );
        assert!(lc.counts().is_empty());
    }

    #[test]
    fn loitering_delays_the_zone_and_counts_follow_it() {
        let r = rules(
            r#"
            [[zones]]
            name = "all_frame"
            points = [[0, 0], [1, 0], [1, 1], [0, 1]]
            inertia = 1
            loitering_time = 1.0
            "#,
        );
        let mut lc = Lifecycle::new("cam", false, false);
        let image = frame();
        let mut entered_at = None;
        for i in 0..10 {
            let t = 100.0 + f64::from(i) * 0.2;
            let (_, e) = lc.frame(t, &image, &[det("cat", 10.0, 0.5)], &r);
            if e.iter().any(|e| !e.message.after.current_zones.is_empty()) {
                entered_at.get_or_insert(t);
            }
        }
        assert_eq!(entered_at, Some(101.0), "1 s after the first frame inside");
        let counts = lc.counts();
        assert_eq!(counts[&(None, "cat".into())], 1);
        assert_eq!(counts[&(Some("all_frame".into()), "cat".into())], 1);
    }

    #[test]
    fn blips_and_low_median_scores_never_become_events() {
        let r = rules("[filters.dog]\nthreshold = 0.6");
        let mut lc = Lifecycle::new("cam", true, false);
        assert!(
            run(&mut lc, &r, &[vec![det("cat", 0.0, 0.9)]]).is_empty(),
            "one frame"
        );
        assert!(
            lc.expire(200.0).is_empty(),
            "an object that was never an event ends silently"
        );
        // Median of 0.5, 0.5, 0.9 is 0.5 < 0.6; with two more 0.9 it is 0.9.
        let scores = [0.5, 0.5, 0.9, 0.9, 0.9];
        let frames: Vec<Vec<Detection>> =
            scores.iter().map(|&s| vec![det("dog", 0.0, s)]).collect();
        let m = run(&mut lc, &r, &frames);
        assert_eq!(kinds(&m), [EventKind::New]);
        assert_eq!(
            m[0].after.frame_time,
            100.0 + 3.0 * 0.2,
            "median reached at frame 3"
        );
        assert_eq!(m[0].after.top_score, 0.9);
    }

    #[test]
    fn a_stationary_object_stops_updating() {
        let r = rules("stationary_s = 1.0");
        let mut lc = Lifecycle::new("cam", true, false);
        // Still for 3 s with a slowly rising score, then it moves away.
        let mut frames: Vec<Vec<Detection>> = (0..15)
            .map(|i| vec![det("dog", 0.0, 0.3 + 0.01 * i as f32)])
            .collect();
        frames.push(vec![det("dog", 8.0, 0.2)]);
        let m = run(&mut lc, &r, &frames);
        let stationary_at = m
            .iter()
            .position(|m| m.after.stationary)
            .expect("stationary");
        // Frame 5 (1 s after the first): one update saying so, then silence until it moves.
        assert_eq!(m[stationary_at].after.frame_time, 101.0);
        assert_eq!(m[stationary_at].kind, EventKind::Update);
        let after: Vec<&EventMessage> = m[stationary_at + 1..].iter().collect();
        assert_eq!(after.len(), 1, "{after:#?}");
        assert!(!after[0].after.stationary && after[0].before.stationary);
        assert_eq!(after[0].after.position_changes, 1);
    }

    #[test]
    fn the_best_frame_goes_with_the_message_that_follows_it() {
        let r = rules("");
        let mut lc = Lifecycle::new("cam", true, false);
        let image = frame();
        let (_, e) = lc.frame(0.0, &image, &[det("dog", 0.0, 0.4)], &r);
        assert!(e.is_empty());
        let (_, e) = lc.frame(0.2, &image, &[det("dog", 0.0, 0.3)], &r);
        let best = e[0]
            .snapshot
            .as_ref()
            .expect("the new event carries the best frame");
        assert_eq!(best.score, 0.4);
        let (_, e) = lc.frame(0.4, &image, &[det("dog", 0.0, 0.35)], &r);
        assert!(e.is_empty(), "no better frame, no change");
        let (_, e) = lc.frame(0.6, &image, &[det("dog", 0.0, 0.6)], &r);
        assert_eq!(e[0].snapshot.as_ref().map(|b| b.score), Some(0.6));
        let without = {
            let mut lc = Lifecycle::new("cam", false, false);
            lc.frame(0.0, &image, &[det("dog", 0.0, 0.4)], &r);
            lc.frame(0.2, &image, &[det("dog", 0.0, 0.4)], &r).1
        };
        assert!(without[0].snapshot.is_none() && !without[0].message.after.has_snapshot);
    }
}
