//! Post-processing: score thresholds, class-aware NMS and top-k over one image's raw outputs.

use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};

/// Knobs for turning raw scores into detections; every request may set its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectParams {
    /// Keep a class score only if it is at least this.
    pub score_threshold: f32,
    /// Two boxes of one class overlapping more than this: the lower-scored one goes.
    pub iou_threshold: f32,
    /// At most this many detections per image.
    pub max_detections: usize,
    /// An anchor may yield one detection per class above threshold (else only its best class).
    pub multi_label: bool,
}

/// The range of every score and IoU threshold, wherever one is set: `[0, 1]`, finite.
pub fn check_unit(name: &str, v: f32) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(EngineError::InvalidParameter(format!(
            "{name} must be a number in [0, 1], got {v}"
        )))
    }
}

/// Candidates kept before NMS, as mmyolo's `nms_pre`.
pub const MAX_CANDIDATES: usize = 30_000;
/// The largest `max_detections` accepted.
pub const MAX_DETECTIONS_LIMIT: usize = 10_000;

impl DetectParams {
    /// These parameters with a request's overrides applied, validated.
    pub fn overridden(
        mut self,
        score_threshold: Option<f32>,
        iou_threshold: Option<f32>,
        max_detections: Option<usize>,
        multi_label: Option<bool>,
    ) -> Result<DetectParams> {
        self.score_threshold = score_threshold.unwrap_or(self.score_threshold);
        self.iou_threshold = iou_threshold.unwrap_or(self.iou_threshold);
        self.max_detections = max_detections.unwrap_or(self.max_detections);
        self.multi_label = multi_label.unwrap_or(self.multi_label);
        self.validate()?;
        Ok(self)
    }

    /// Checks every knob; a bad one is an `InvalidParameter` naming it.
    pub fn validate(&self) -> Result<()> {
        let unit = check_unit;
        unit("score_threshold", self.score_threshold)?;
        unit("iou_threshold", self.iou_threshold)?;
        if self.max_detections == 0 || self.max_detections > MAX_DETECTIONS_LIMIT {
            return Err(EngineError::InvalidParameter(format!(
                "max_detections must be in 1..={MAX_DETECTIONS_LIMIT}, got {}",
                self.max_detections
            )));
        }
        Ok(())
    }
}

/// One kept box, still in input-tensor pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub anchor: usize,
    pub class_id: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

/// Runs thresholding, class-aware NMS and top-k for one image.
/// `scores` is `[N, K]` row-major, `boxes` is `[N, 4]` (x1, y1, x2, y2).
/// The result is sorted by score, highest first (ties: lower anchor, then lower class first).
pub fn postprocess(
    scores: &[f32],
    boxes: &[f32],
    classes: usize,
    params: &DetectParams,
) -> Vec<Candidate> {
    postprocess_capped(scores, boxes, classes, params, MAX_CANDIDATES)
}

/// [`postprocess`] with the candidate cap as a parameter (tests use small ones).
fn postprocess_capped(
    scores: &[f32],
    boxes: &[f32],
    classes: usize,
    params: &DetectParams,
    cap: usize,
) -> Vec<Candidate> {
    let anchors = boxes.len() / 4;
    debug_assert_eq!(scores.len(), anchors * classes);
    let order = |a: &(usize, usize, f32), b: &(usize, usize, f32)| {
        b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1))
    };
    // A score enters when it is at least the threshold; once `cap` candidates are held and cut
    // back to the best `cap`, only a score above the worst of them can still rank among the best
    // (every later candidate has a higher anchor, or the same anchor and a higher class, so it
    // loses a tie). The floor only rises: rows below it are skipped whole, and at evaluation
    // settings (threshold 0.001, every class) the list never grows past twice the cap.
    let mut floor = params.score_threshold;
    let mut strict = false;
    let enters = |s: f32, floor: f32, strict: bool| if strict { s > floor } else { s >= floor };

    let mut cands = Vec::new();
    for (anchor, row) in scores.chunks_exact(classes).enumerate() {
        // Fast reject first: a branch-free max that the compiler vectorises.
        let row_max = row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        if !enters(row_max, floor, strict) {
            continue;
        }
        if params.multi_label {
            for (k, &s) in row.iter().enumerate() {
                if enters(s, floor, strict) {
                    cands.push((anchor, k, s));
                }
            }
        } else {
            let (mut best_k, mut best) = (0, f32::NEG_INFINITY);
            for (k, &s) in row.iter().enumerate() {
                if s > best {
                    best = s;
                    best_k = k;
                }
            }
            cands.push((anchor, best_k, best));
        }
        if cands.len() >= 2 * cap {
            cands.select_nth_unstable_by(cap - 1, order);
            cands.truncate(cap);
            floor = cands[cap - 1].2;
            strict = true;
        }
    }
    if cands.len() > cap {
        cands.select_nth_unstable_by(cap, order);
        cands.truncate(cap);
    }
    cands.sort_unstable_by(order);

    // Greedy NMS per class; a class stops once it holds max_detections boxes.
    let mut kept_by_class: Vec<Vec<[f32; 4]>> = vec![Vec::new(); classes];
    let mut kept = Vec::new();
    for (anchor, k, score) in cands {
        let b = box_at(boxes, anchor);
        let same = &mut kept_by_class[k];
        if same.len() >= params.max_detections {
            continue;
        }
        if same.iter().any(|o| iou(o, &b) > params.iou_threshold) {
            continue;
        }
        same.push(b);
        kept.push(Candidate {
            anchor,
            class_id: k,
            score,
            bbox: b,
        });
        // Candidates come best first: none after this one can enter the top max_detections.
        if kept.len() == params.max_detections {
            break;
        }
    }
    kept
}

#[inline]
fn box_at(boxes: &[f32], anchor: usize) -> [f32; 4] {
    let b = &boxes[anchor * 4..anchor * 4 + 4];
    [b[0], b[1], b[2], b[3]]
}

/// Intersection over union of two x1,y1,x2,y2 boxes (0 for empty or degenerate boxes).
#[inline]
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    fn params(score: f32, iou: f32, max: usize, multi: bool) -> DetectParams {
        DetectParams {
            score_threshold: score,
            iou_threshold: iou,
            max_detections: max,
            multi_label: multi,
        }
    }

    /// The textbook algorithm: every candidate against every kept one, no shortcuts.
    fn brute_force(
        scores: &[f32],
        boxes: &[f32],
        k: usize,
        p: &DetectParams,
        cap: usize,
    ) -> Vec<(usize, usize, f32)> {
        let n = boxes.len() / 4;
        let mut c = vec![];
        for a in 0..n {
            let row = &scores[a * k..(a + 1) * k];
            if p.multi_label {
                for (j, &s) in row.iter().enumerate() {
                    if s >= p.score_threshold {
                        c.push((a, j, s));
                    }
                }
            } else {
                let mut best = 0;
                for j in 1..k {
                    if row[j] > row[best] {
                        best = j;
                    }
                }
                if row[best] >= p.score_threshold {
                    c.push((a, best, row[best]));
                }
            }
        }
        c.sort_by(|x, y| {
            y.2.partial_cmp(&x.2)
                .unwrap()
                .then(x.0.cmp(&y.0))
                .then(x.1.cmp(&y.1))
        });
        c.truncate(cap);
        let mut keep: Vec<(usize, usize, f32)> = vec![];
        for cand in c {
            let suppressed = keep.iter().any(|kept| {
                kept.1 == cand.1
                    && iou(&box_at(boxes, kept.0), &box_at(boxes, cand.0)) > p.iou_threshold
            });
            if !suppressed {
                keep.push(cand);
            }
        }
        keep.truncate(p.max_detections);
        keep
    }

    #[test]
    fn matches_brute_force_on_random_sets() {
        let mut rng = StdRng::seed_from_u64(7);
        for case in 0..200 {
            let n = rng.random_range(1..300);
            let k = rng.random_range(1..6);
            let mut boxes = Vec::with_capacity(n * 4);
            for _ in 0..n {
                // clustered boxes so that NMS has work to do
                let cx = rng.random_range(0..4) as f32 * 50.0 + rng.random_range(-8.0..8.0);
                let cy = rng.random_range(0..3) as f32 * 50.0 + rng.random_range(-8.0..8.0);
                let (w, h) = (rng.random_range(5.0..60.0), rng.random_range(5.0..60.0));
                boxes.extend([cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]);
            }
            let scores: Vec<f32> = (0..n * k).map(|_| rng.random::<f32>()).collect();
            let p = params(
                rng.random_range(0.0..0.9),
                rng.random_range(0.1..0.9),
                rng.random_range(1..50),
                case % 2 == 0,
            );
            let fast: Vec<(usize, usize, f32)> = postprocess(&scores, &boxes, k, &p)
                .iter()
                .map(|c| (c.anchor, c.class_id, c.score))
                .collect();
            assert_eq!(
                fast,
                brute_force(&scores, &boxes, k, &p, MAX_CANDIDATES),
                "case {case}"
            );
        }
    }

    #[test]
    fn the_candidate_cap_keeps_exactly_the_best_with_ties() {
        // Small caps, scores on a coarse grid (many ties), both label modes: the rising floor
        // must keep exactly the cap best under (score desc, anchor, class).
        let mut rng = StdRng::seed_from_u64(11);
        for case in 0..300 {
            let n = rng.random_range(1..400);
            let k = rng.random_range(1..8);
            let mut boxes = Vec::with_capacity(n * 4);
            for _ in 0..n {
                let (x, y) = (rng.random_range(0.0..200.0), rng.random_range(0.0..200.0));
                boxes.extend([x, y, x + rng.random_range(5.0..40.0), y + 20.0]);
            }
            let scores: Vec<f32> = (0..n * k)
                .map(|_| (rng.random::<f32>() * 8.0).floor() / 8.0)
                .collect();
            let p = params(
                rng.random_range(0.0..0.5),
                rng.random_range(0.3..0.9),
                rng.random_range(1..400),
                case % 2 == 0,
            );
            let cap = rng.random_range(1..60);
            let fast: Vec<(usize, usize, f32)> = postprocess_capped(&scores, &boxes, k, &p, cap)
                .iter()
                .map(|c| (c.anchor, c.class_id, c.score))
                .collect();
            assert_eq!(
                fast,
                brute_force(&scores, &boxes, k, &p, cap),
                "case {case}"
            );
        }
    }

    #[test]
    fn threshold_edges() {
        let boxes = [0.0, 0.0, 10.0, 10.0, 100.0, 100.0, 110.0, 110.0];
        let scores = [0.5, 0.2, 0.25, 0.25];
        // a score equal to the threshold is kept
        let out = postprocess(&scores, &boxes, 2, &params(0.25, 0.5, 10, false));
        assert_eq!(out.len(), 2);
        assert_eq!((out[0].anchor, out[0].class_id), (0, 0));
        // anchor 1 ties between its classes: the lower class id wins
        assert_eq!((out[1].anchor, out[1].class_id), (1, 0));
        // threshold 1.0 keeps nothing below 1
        assert!(postprocess(&scores, &boxes, 2, &params(1.0, 0.5, 10, false)).is_empty());
        // threshold 0 keeps everything (single label: one per anchor)
        assert_eq!(
            postprocess(&scores, &boxes, 2, &params(0.0, 0.5, 10, false)).len(),
            2
        );
        // multi-label keeps both classes of anchor 1 and class 0 of anchor 0
        assert_eq!(
            postprocess(&scores, &boxes, 2, &params(0.25, 0.5, 10, true)).len(),
            3
        );
        // top-k
        let out = postprocess(&scores, &boxes, 2, &params(0.0, 0.5, 1, true));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].score, 0.5);
    }

    #[test]
    fn nms_is_class_aware_and_iou_strict() {
        // two identical boxes, different classes: both kept
        let boxes = [0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 10.0, 10.0];
        let scores = [0.9, 0.0, 0.0, 0.8];
        assert_eq!(
            postprocess(&scores, &boxes, 2, &params(0.25, 0.5, 10, false)).len(),
            2
        );
        // same class: the second goes
        let scores = [0.9, 0.0, 0.8, 0.0];
        assert_eq!(
            postprocess(&scores, &boxes, 2, &params(0.25, 0.5, 10, false)).len(),
            1
        );
        // IoU exactly at the threshold is not suppressed (strictly greater suppresses)
        let boxes = [0.0, 0.0, 10.0, 10.0, 5.0, 0.0, 15.0, 10.0]; // IoU = 50/150
        let scores = [0.9, 0.8];
        let p = params(0.25, 1.0 / 3.0, 10, false);
        assert_eq!(postprocess(&scores, &boxes, 1, &p).len(), 2);
    }

    #[test]
    fn validation() {
        assert!(params(0.25, 0.65, 100, false).validate().is_ok());
        assert!(params(f32::NAN, 0.65, 100, false).validate().is_err());
        assert!(params(-0.1, 0.65, 100, false).validate().is_err());
        assert!(params(0.2, 1.5, 100, false).validate().is_err());
        assert!(params(0.2, 0.5, 0, false).validate().is_err());
    }

    #[test]
    fn iou_basics() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]), 0.0);
    }
}
