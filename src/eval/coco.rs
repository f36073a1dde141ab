//! COCO box evaluation (AP@[.5:.95], AP@.5, per-class AP, AR), computed as pycocotools' COCOeval.
//!
//! The rules follow `pycocotools.cocoeval.COCOeval` for `iouType="bbox"` step by step, so the
//! numbers agree with it (tests/eval.rs checks this against the real package):
//! detections of an (image, category) sorted by score (stable) and cut to 100; ground truth
//! sorted with ignored boxes (crowd, or area outside the range) last; greedy matching per IoU
//! threshold; crowd boxes matched by `intersection / detection area` and reusable; precision
//! made monotone and sampled at 101 recall points; categories without ground truth left out.
//! One deliberate difference: pycocotools counts a detection matched to an annotation whose
//! `id` is 0 as unmatched (it stores the id and tests it for truth); here a match is a match.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// A COCO-format dataset: the parts box evaluation reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Dataset {
    pub images: Vec<ImageInfo>,
    #[serde(default)]
    pub annotations: Vec<Annotation>,
    pub categories: Vec<Category>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ImageInfo {
    pub id: u64,
    pub file_name: String,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Annotation {
    #[serde(default)]
    pub id: u64,
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    /// Pixel area used for the small / medium / large ranges [default: width × height].
    #[serde(default)]
    pub area: Option<f64>,
    #[serde(default)]
    pub iscrowd: u8,
}

/// A category; extra string fields (e.g. `"split": "unseen"`) can select and group categories.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Category {
    pub id: u64,
    pub name: String,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Category {
    /// The value of an extra field as text (`split` → `"seen"`), if present.
    pub fn field(&self, key: &str) -> Option<String> {
        match self.extra.get(key)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            v => Some(v.to_string()),
        }
    }
}

/// One detection in COCO's result format.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
pub struct DetectionResult {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`.
    pub bbox: [f64; 4],
    pub score: f64,
}

/// Area ranges in the order of COCO's summary: all, small, medium, large.
pub const AREA_RANGES: [(f64, f64); 4] = [
    (0.0, 1e10),
    (0.0, 32.0 * 32.0),
    (32.0 * 32.0, 96.0 * 96.0),
    (96.0 * 96.0, 1e10),
];
/// Detections per image considered, as COCO's `maxDets`.
pub const MAX_DETS: [usize; 3] = [1, 10, 100];

/// `numpy.linspace(start, stop, num)`, bit for bit (the thresholds are compared with `<`).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// The result of an evaluation: COCO's `precision` [T, R, K, A, M] and `recall` [T, K, A, M].
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The evaluated category ids, sorted (the K axis).
    pub category_ids: Vec<u64>,
    pub iou_thresholds: Vec<f64>,
    pub recall_thresholds: Vec<f64>,
    precision: Vec<f64>,
    recall: Vec<f64>,
    /// Non-ignored ground-truth boxes per category (area "all").
    pub gt_counts: Vec<usize>,
}

/// The twelve numbers of COCOeval's `summarize()`, in its order.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub ap: f64,
    pub ap50: f64,
    pub ap75: f64,
    pub ap_small: f64,
    pub ap_medium: f64,
    pub ap_large: f64,
    pub ar1: f64,
    pub ar10: f64,
    pub ar100: f64,
    pub ar_small: f64,
    pub ar_medium: f64,
    pub ar_large: f64,
}

impl Summary {
    pub fn as_array(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }

    /// The summary as pycocotools prints it.
    pub fn lines(&self) -> Vec<String> {
        let rows = [
            ("Average Precision", "(AP)", "0.50:0.95", "   all", 100),
            ("Average Precision", "(AP)", "0.50     ", "   all", 100),
            ("Average Precision", "(AP)", "0.75     ", "   all", 100),
            ("Average Precision", "(AP)", "0.50:0.95", " small", 100),
            ("Average Precision", "(AP)", "0.50:0.95", "medium", 100),
            ("Average Precision", "(AP)", "0.50:0.95", " large", 100),
            ("Average Recall   ", "(AR)", "0.50:0.95", "   all", 1),
            ("Average Recall   ", "(AR)", "0.50:0.95", "   all", 10),
            ("Average Recall   ", "(AR)", "0.50:0.95", "   all", 100),
            ("Average Recall   ", "(AR)", "0.50:0.95", " small", 100),
            ("Average Recall   ", "(AR)", "0.50:0.95", "medium", 100),
            ("Average Recall   ", "(AR)", "0.50:0.95", " large", 100),
        ];
        rows.iter()
            .zip(self.as_array())
            .map(|((title, kind, iou, area, dets), v)| {
                format!(" {title} {kind} @[ IoU={iou} | area={area} | maxDets={dets:>3} ] = {v:.3}")
            })
            .collect()
    }
}

/// Per (image, category, area range): COCOeval's `evaluateImg` output.
struct ImageEval {
    scores: Vec<f64>,
    /// `[T][D]`: matched to a ground-truth box.
    matched: Vec<Vec<bool>>,
    /// `[T][D]`: ignored (matched to an ignored box, or unmatched and outside the area range).
    ignored: Vec<Vec<bool>>,
    gt_ignored: Vec<bool>,
}

struct Gt {
    bbox: [f64; 4],
    area: f64,
    crowd: bool,
}

/// pycocotools' `bbIou`: `[D, G]` IoU of xywh boxes; a crowd box divides by the detection's area.
fn box_ious(dts: &[&DetectionResult], gts: &[&Gt]) -> Vec<Vec<f64>> {
    dts.iter()
        .map(|d| {
            let [dx, dy, dw, dh] = d.bbox;
            let da = dw * dh;
            gts.iter()
                .map(|g| {
                    let [gx, gy, gw, gh] = g.bbox;
                    let w = (dx + dw).min(gx + gw) - dx.max(gx);
                    if w <= 0.0 {
                        return 0.0;
                    }
                    let h = (dy + dh).min(gy + gh) - dy.max(gy);
                    if h <= 0.0 {
                        return 0.0;
                    }
                    let i = w * h;
                    let u = if g.crowd { da } else { da + gw * gh - i };
                    i / u
                })
                .collect()
        })
        .collect()
}

/// Evaluates `results` against `dataset` over `category_ids` (all categories when empty).
pub fn evaluate(
    dataset: &Dataset,
    results: &[DetectionResult],
    category_ids: &[u64],
) -> Evaluation {
    let iou_thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    let cats: Vec<u64> = if category_ids.is_empty() {
        dataset
            .categories
            .iter()
            .map(|c| c.id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    } else {
        category_ids
            .iter()
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let images: Vec<u64> = dataset
        .images
        .iter()
        .map(|i| i.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut gts: HashMap<(u64, u64), Vec<Gt>> = HashMap::new();
    for a in &dataset.annotations {
        gts.entry((a.image_id, a.category_id))
            .or_default()
            .push(Gt {
                bbox: a.bbox,
                area: a.area.unwrap_or(a.bbox[2] * a.bbox[3]),
                crowd: a.iscrowd != 0,
            });
    }
    let mut dts: HashMap<(u64, u64), Vec<&DetectionResult>> = HashMap::new();
    for d in results {
        dts.entry((d.image_id, d.category_id)).or_default().push(d);
    }

    let (t_n, r_n, k_n, a_n, m_n) = (
        iou_thrs.len(),
        rec_thrs.len(),
        cats.len(),
        AREA_RANGES.len(),
        MAX_DETS.len(),
    );
    let mut precision = vec![-1.0; t_n * r_n * k_n * a_n * m_n];
    let mut recall = vec![-1.0; t_n * k_n * a_n * m_n];
    let mut gt_counts = vec![0; k_n];
    let max_det = MAX_DETS[m_n - 1];

    for (k, &cat) in cats.iter().enumerate() {
        // evaluateImg for every image and area range.
        let mut per_area: Vec<Vec<ImageEval>> = (0..a_n).map(|_| Vec::new()).collect();
        for &img in &images {
            let empty_g = Vec::new();
            let empty_d = Vec::new();
            let g = gts.get(&(img, cat)).unwrap_or(&empty_g);
            let d = dts.get(&(img, cat)).unwrap_or(&empty_d);
            if g.is_empty() && d.is_empty() {
                continue;
            }
            let mut d_sorted: Vec<&DetectionResult> = d.clone();
            // Stable sort by descending score, as numpy's mergesort of -score.
            d_sorted.sort_by(|a, b| b.score.total_cmp(&a.score));
            d_sorted.truncate(max_det);
            for (a, &(lo, hi)) in AREA_RANGES.iter().enumerate() {
                per_area[a].push(evaluate_image(g, &d_sorted, lo, hi, &iou_thrs));
            }
        }
        gt_counts[k] = per_area[0]
            .iter()
            .map(|e| e.gt_ignored.iter().filter(|&&x| !x).count())
            .sum();
        // accumulate
        for (a, evals) in per_area.iter().enumerate() {
            for (m, &md) in MAX_DETS.iter().enumerate() {
                let npig: usize = evals
                    .iter()
                    .map(|e| e.gt_ignored.iter().filter(|&&x| !x).count())
                    .sum();
                if npig == 0 {
                    continue;
                }
                // (score, image order, rank) of every detection kept, then a stable sort.
                let mut order: Vec<(f64, usize, usize)> = Vec::new();
                for (e_i, e) in evals.iter().enumerate() {
                    for (j, &s) in e.scores.iter().take(md).enumerate() {
                        order.push((s, e_i, j));
                    }
                }
                order.sort_by(|x, y| y.0.total_cmp(&x.0));
                for t in 0..t_n {
                    let (mut tp, mut fp) = (0.0f64, 0.0f64);
                    let mut rc = Vec::with_capacity(order.len());
                    let mut pr = Vec::with_capacity(order.len());
                    for &(_, e_i, j) in &order {
                        let e = &evals[e_i];
                        if e.ignored[t][j] {
                            // Neither a true nor a false positive; the curve still gets a point.
                        } else if e.matched[t][j] {
                            tp += 1.0;
                        } else {
                            fp += 1.0;
                        }
                        rc.push(tp / npig as f64);
                        pr.push(tp / (fp + tp + f64::EPSILON));
                    }
                    let nd = rc.len();
                    recall[((t * k_n + k) * a_n + a) * m_n + m] =
                        if nd > 0 { rc[nd - 1] } else { 0.0 };
                    for i in (1..nd).rev() {
                        if pr[i] > pr[i - 1] {
                            pr[i - 1] = pr[i];
                        }
                    }
                    for (ri, &r) in rec_thrs.iter().enumerate() {
                        let pi = rc.partition_point(|&x| x < r);
                        let q = if pi < nd { pr[pi] } else { 0.0 };
                        precision[(((t * r_n + ri) * k_n + k) * a_n + a) * m_n + m] = q;
                    }
                }
            }
        }
    }
    Evaluation {
        category_ids: cats,
        iou_thresholds: iou_thrs,
        recall_thresholds: rec_thrs,
        precision,
        recall,
        gt_counts,
    }
}

/// COCOeval's `evaluateImg` for one (image, category) and one area range; `dts` already sorted.
fn evaluate_image(
    gts: &[Gt],
    dts: &[&DetectionResult],
    lo: f64,
    hi: f64,
    iou_thrs: &[f64],
) -> ImageEval {
    let ignore_of = |g: &Gt| g.crowd || g.area < lo || g.area > hi;
    let mut g_order: Vec<usize> = (0..gts.len()).collect();
    g_order.sort_by_key(|&i| ignore_of(&gts[i]));
    let g_sorted: Vec<&Gt> = g_order.iter().map(|&i| &gts[i]).collect();
    let gt_ignored: Vec<bool> = g_sorted.iter().map(|g| ignore_of(g)).collect();
    let ious = box_ious(dts, &g_sorted);
    let t_n = iou_thrs.len();
    let mut matched = vec![vec![false; dts.len()]; t_n];
    let mut ignored = vec![vec![false; dts.len()]; t_n];
    for (t, &thr) in iou_thrs.iter().enumerate() {
        let mut g_taken = vec![false; g_sorted.len()];
        for d in 0..dts.len() {
            let mut best = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for g in 0..g_sorted.len() {
                if g_taken[g] && !g_sorted[g].crowd {
                    continue;
                }
                if let Some(mi) = m
                    && !gt_ignored[mi]
                    && gt_ignored[g]
                {
                    break;
                }
                if ious[d][g] < best {
                    continue;
                }
                best = ious[d][g];
                m = Some(g);
            }
            if let Some(g) = m {
                ignored[t][d] = gt_ignored[g];
                matched[t][d] = true;
                g_taken[g] = true;
            }
        }
    }
    for (d, det) in dts.iter().enumerate() {
        let area = det.bbox[2] * det.bbox[3];
        if area < lo || area > hi {
            for t in 0..t_n {
                if !matched[t][d] {
                    ignored[t][d] = true;
                }
            }
        }
    }
    ImageEval {
        scores: dts.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        gt_ignored,
    }
}

impl Evaluation {
    fn p(&self, t: usize, r: usize, k: usize, a: usize, m: usize) -> f64 {
        let (r_n, k_n, a_n, m_n) = (
            self.recall_thresholds.len(),
            self.category_ids.len(),
            AREA_RANGES.len(),
            MAX_DETS.len(),
        );
        self.precision[(((t * r_n + r) * k_n + k) * a_n + a) * m_n + m]
    }

    fn rcl(&self, t: usize, k: usize, a: usize, m: usize) -> f64 {
        let (k_n, a_n, m_n) = (self.category_ids.len(), AREA_RANGES.len(), MAX_DETS.len());
        self.recall[((t * k_n + k) * a_n + a) * m_n + m]
    }

    /// Mean of the valid entries (> -1), or -1 when there are none (COCOeval's `_summarize`).
    fn mean_valid(values: impl Iterator<Item = f64>) -> f64 {
        let (mut sum, mut n) = (0.0, 0usize);
        for v in values.filter(|&v| v > -1.0) {
            sum += v;
            n += 1;
        }
        if n == 0 { -1.0 } else { sum / n as f64 }
    }

    /// Average precision over the IoU thresholds `ts` and categories `ks`.
    fn ap(&self, ts: &[usize], ks: &[usize], a: usize, m: usize) -> f64 {
        let r_n = self.recall_thresholds.len();
        Self::mean_valid(ts.iter().flat_map(|&t| {
            (0..r_n).flat_map(move |r| ks.iter().map(move |&k| self.p(t, r, k, a, m)))
        }))
    }

    fn ar(&self, ks: &[usize], a: usize, m: usize) -> f64 {
        let t_n = self.iou_thresholds.len();
        Self::mean_valid((0..t_n).flat_map(|t| ks.iter().map(move |&k| self.rcl(t, k, a, m))))
    }

    fn summary_of(&self, ks: &[usize]) -> Summary {
        let all_t: Vec<usize> = (0..self.iou_thresholds.len()).collect();
        let last = MAX_DETS.len() - 1;
        Summary {
            ap: self.ap(&all_t, ks, 0, last),
            ap50: self.ap(&[0], ks, 0, last),
            ap75: self.ap(&[5], ks, 0, last),
            ap_small: self.ap(&all_t, ks, 1, last),
            ap_medium: self.ap(&all_t, ks, 2, last),
            ap_large: self.ap(&all_t, ks, 3, last),
            ar1: self.ar(ks, 0, 0),
            ar10: self.ar(ks, 0, 1),
            ar100: self.ar(ks, 0, last),
            ar_small: self.ar(ks, 1, last),
            ar_medium: self.ar(ks, 2, last),
            ar_large: self.ar(ks, 3, last),
        }
    }

    /// COCOeval's twelve summary numbers over all evaluated categories.
    pub fn summary(&self) -> Summary {
        let ks: Vec<usize> = (0..self.category_ids.len()).collect();
        self.summary_of(&ks)
    }

    /// The summary over a subset of the evaluated categories (equal to evaluating only them).
    pub fn summary_for(&self, category_ids: &[u64]) -> Summary {
        let ks: Vec<usize> = category_ids
            .iter()
            .filter_map(|id| self.category_ids.binary_search(id).ok())
            .collect();
        self.summary_of(&ks)
    }

    /// `(AP@[.5:.95], AP@.5)` of one category (by its position in `category_ids`); -1 without
    /// ground truth.
    pub fn class_ap(&self, k: usize) -> (f64, f64) {
        let all_t: Vec<usize> = (0..self.iou_thresholds.len()).collect();
        let last = MAX_DETS.len() - 1;
        (self.ap(&all_t, &[k], 0, last), self.ap(&[0], &[k], 0, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(anns: Vec<Annotation>, cats: &[u64], images: &[u64]) -> Dataset {
        Dataset {
            images: images
                .iter()
                .map(|&id| ImageInfo {
                    id,
                    file_name: format!("{id}.jpg"),
                    width: 640,
                    height: 480,
                })
                .collect(),
            annotations: anns,
            categories: cats
                .iter()
                .map(|&id| Category {
                    id,
                    name: format!("c{id}"),
                    extra: Default::default(),
                })
                .collect(),
        }
    }

    fn gt(id: u64, image_id: u64, category_id: u64, bbox: [f64; 4]) -> Annotation {
        Annotation {
            id,
            image_id,
            category_id,
            bbox,
            area: None,
            iscrowd: 0,
        }
    }

    fn dt(image_id: u64, category_id: u64, bbox: [f64; 4], score: f64) -> DetectionResult {
        DetectionResult {
            image_id,
            category_id,
            bbox,
            score,
        }
    }

    #[test]
    fn thresholds_match_numpy_linspace() {
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[0], 0.5);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[9], 0.95);
        let r = linspace(0.0, 1.0, 101);
        assert_eq!(r[100], 1.0);
        assert_eq!(r[1], 0.01);
    }

    #[test]
    fn perfect_detections_score_one() {
        let ds = dataset(
            vec![
                gt(1, 1, 7, [10.0, 10.0, 50.0, 40.0]),
                gt(2, 2, 7, [100.0, 80.0, 120.0, 90.0]),
            ],
            &[7],
            &[1, 2],
        );
        let res = vec![
            dt(1, 7, [10.0, 10.0, 50.0, 40.0], 0.9),
            dt(2, 7, [100.0, 80.0, 120.0, 90.0], 0.8),
        ];
        let e = evaluate(&ds, &res, &[]);
        let s = e.summary();
        assert!((s.ap - 1.0).abs() < 1e-12 && (s.ap50 - 1.0).abs() < 1e-12);
        assert_eq!(s.ap_small, -1.0, "no small boxes: -1 as COCO");
    }

    #[test]
    fn a_false_positive_ranked_first_halves_precision_at_the_start() {
        let ds = dataset(vec![gt(1, 1, 3, [0.0, 0.0, 100.0, 100.0])], &[3], &[1]);
        let res = vec![
            dt(1, 3, [300.0, 300.0, 50.0, 50.0], 0.9),
            dt(1, 3, [0.0, 0.0, 100.0, 100.0], 0.5),
        ];
        let e = evaluate(&ds, &res, &[]);
        // One recall step reached at precision 1/2: every sampled recall point has 0.5.
        assert!((e.summary().ap50 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn categories_without_ground_truth_are_left_out_and_missing_detections_count_zero() {
        let ds = dataset(vec![gt(1, 1, 1, [0.0, 0.0, 10.0, 10.0])], &[1, 2], &[1]);
        let res = vec![dt(1, 2, [0.0, 0.0, 10.0, 10.0], 0.9)];
        let e = evaluate(&ds, &res, &[]);
        assert_eq!(e.class_ap(0), (0.0, 0.0));
        assert_eq!(e.class_ap(1), (-1.0, -1.0));
        assert_eq!(e.summary().ap, 0.0);
    }

    #[test]
    fn crowd_boxes_absorb_detections_without_counting() {
        let mut crowd = gt(2, 1, 1, [200.0, 200.0, 100.0, 100.0]);
        crowd.iscrowd = 1;
        let ds = dataset(vec![gt(1, 1, 1, [0.0, 0.0, 50.0, 50.0]), crowd], &[1], &[1]);
        let res = vec![
            dt(1, 1, [210.0, 210.0, 20.0, 20.0], 0.95),
            dt(1, 1, [220.0, 220.0, 20.0, 20.0], 0.94),
            dt(1, 1, [0.0, 0.0, 50.0, 50.0], 0.5),
        ];
        let e = evaluate(&ds, &res, &[]);
        assert!((e.summary().ap - 1.0).abs() < 1e-12);
    }
}
