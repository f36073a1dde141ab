//! A camera's object rules: zones, masks, per-label filters and stationary handling, as
//! configured (`[streams.rules]`, `PUT /v1/streams/{name}/rules`) and checked into the form the
//! worker applies per frame (pure).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::geometry::{Points, Polygon};
use crate::engine::Detection;
use crate::vocab::spec::{ClassSpec, VocabSpec};

/// Which point of a box decides whether an object is in a zone or a mask.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// Where the object stands on the ground (Frigate's rule).
    #[default]
    BottomCenter,
    Center,
    TopCenter,
}

/// A named area of the frame; events say which zones an object is in and has entered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Letters, digits, `-` or `_`; unique per camera (a topic level).
    pub name: String,
    #[schema(value_type = Vec<[f64; 2]>)]
    pub points: Points,
    /// The classes this zone counts, `"forklift, pallet|skid"`; empty: every class of the
    /// camera. Classes the camera's own `classes` lack are added to its vocabulary.
    #[serde(default)]
    pub classes: String,
    /// Consecutive frames inside before an object is in the zone (and outside before it leaves).
    #[serde(default = "default_inertia")]
    pub inertia: u32,
    /// Seconds an object must stay inside before it counts as in the zone (0: at once).
    #[serde(default)]
    pub loitering_time: f64,
}

fn default_inertia() -> u32 {
    3
}

/// An area where detections are discarded before tracking.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaskConfig {
    #[schema(value_type = Vec<[f64; 2]>)]
    pub points: Points,
    /// The labels it hides, `"person, car"`; empty: every label.
    #[serde(default)]
    pub classes: String,
}

/// Per-label filters. Areas are pixels of `frame_size` when it is set, else fractions of the
/// frame's area.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectFilter {
    pub min_area: f64,
    /// 0: no limit.
    pub max_area: f64,
    /// Width / height.
    pub min_ratio: f64,
    /// 0: no limit.
    pub max_ratio: f64,
    /// Detections scoring less are discarded (per frame).
    pub min_score: f32,
    /// The median score of an object's last 10 detections must reach this before it becomes an
    /// event (a true positive).
    pub threshold: f32,
}

/// `[streams.rules]`: zones, masks and filters of one camera; replaceable at run time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// `[width, height]`: coordinates and areas are pixels of this frame size (scaled to the
    /// camera's real size); unset: fractions of the frame.
    pub frame_size: Option<[u32; 2]>,
    pub anchor: Anchor,
    pub zones: Vec<ZoneConfig>,
    pub masks: Vec<MaskConfig>,
    /// Per label; the key is the label (a class's first phrase).
    pub filters: BTreeMap<String, ObjectFilter>,
    /// Seconds an object may stay in place before it is stationary: it then sends no updates
    /// until it moves (0: never stationary).
    pub stationary_s: f64,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            frame_size: None,
            anchor: Anchor::BottomCenter,
            zones: Vec::new(),
            masks: Vec::new(),
            filters: BTreeMap::new(),
            stationary_s: 30.0,
        }
    }
}

/// A zone, checked.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    polygon: Polygon,
    /// `None`: every label.
    labels: Option<HashSet<String>>,
    pub inertia: u32,
    pub loitering_time: f64,
}

#[derive(Debug, Clone)]
struct Mask {
    polygon: Polygon,
    labels: Option<HashSet<String>>,
}

/// Rules checked and in fractions of the frame: what the worker applies per frame.
#[derive(Debug, Clone)]
pub struct Rules {
    pub config: RulesConfig,
    anchor: Anchor,
    pub zones: Vec<Zone>,
    masks: Vec<Mask>,
    /// Areas in fractions of the frame.
    filters: BTreeMap<String, ObjectFilter>,
    pub stationary_s: f64,
}

/// The labels of a class list (`""`: none).
fn class_specs(text: &str) -> Vec<ClassSpec> {
    if text.trim().is_empty() {
        return Vec::new();
    }
    VocabSpec::parse_list(text).classes
}

fn label_set(text: &str) -> Result<Option<HashSet<String>>, String> {
    let specs = class_specs(text);
    if specs.iter().any(|c| c.label().is_empty()) {
        return Err(format!("classes `{text}` has an empty class"));
    }
    Ok((!specs.is_empty()).then(|| specs.iter().map(|c| c.label().to_string()).collect()))
}

impl RulesConfig {
    /// Checks everything; the message names the zone, mask or label at fault.
    pub fn compile(&self) -> Result<Rules, String> {
        if let Some([w, h]) = self.frame_size
            && (w == 0 || h == 0 || w > 16384 || h > 16384)
        {
            return Err(format!("frame_size [{w}, {h}]: 1..16384 pixels each"));
        }
        if !(self.stationary_s.is_finite() && self.stationary_s >= 0.0) {
            return Err("stationary_s must be >= 0".into());
        }
        if self.zones.len() > 64 || self.masks.len() > 64 {
            return Err("at most 64 zones and 64 masks per camera".into());
        }
        let mut zones = Vec::new();
        let mut names = HashSet::new();
        for z in &self.zones {
            let name = &z.name;
            if name.is_empty()
                || name.len() > 64
                || name == "all"
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "zone `{name}`: the name must be 1-64 letters, digits, `-` or `_` (not `all`)"
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(format!("zone `{name}` is defined twice"));
            }
            let at = |e: String| format!("zone `{name}`: {e}");
            if !(z.loitering_time.is_finite() && z.loitering_time >= 0.0) {
                return Err(at("loitering_time must be >= 0".into()));
            }
            if z.inertia == 0 || z.inertia > 100 {
                return Err(at("inertia must be 1..100 frames".into()));
            }
            zones.push(Zone {
                name: name.clone(),
                polygon: z.points.to_polygon(self.frame_size).map_err(at)?,
                labels: label_set(&z.classes).map_err(at)?,
                inertia: z.inertia,
                loitering_time: z.loitering_time,
            });
        }
        let mut masks = Vec::new();
        for (i, m) in self.masks.iter().enumerate() {
            let at = |e: String| format!("mask {i}: {e}");
            masks.push(Mask {
                polygon: m.points.to_polygon(self.frame_size).map_err(at)?,
                labels: label_set(&m.classes).map_err(at)?,
            });
        }
        let frame_area = self
            .frame_size
            .map_or(1.0, |[w, h]| f64::from(w) * f64::from(h));
        let mut filters = BTreeMap::new();
        for (label, f) in &self.filters {
            let at = |what: &str| format!("filters.`{label}`: {what}");
            for (key, v) in [
                ("min_area", f.min_area),
                ("max_area", f.max_area),
                ("min_ratio", f.min_ratio),
                ("max_ratio", f.max_ratio),
            ] {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(at(&format!("{key} must be >= 0")));
                }
            }
            for (key, v) in [("min_score", f.min_score), ("threshold", f.threshold)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(at(&format!("{key} must be in 0..1")));
                }
            }
            if f.max_area > 0.0 && f.max_area < f.min_area {
                return Err(at("max_area is below min_area"));
            }
            if f.max_ratio > 0.0 && f.max_ratio < f.min_ratio {
                return Err(at("max_ratio is below min_ratio"));
            }
            if self.frame_size.is_none() && (f.min_area > 1.0 || f.max_area > 1.0) {
                return Err(at(
                    "areas are fractions of the frame (0-1) unless frame_size is set",
                ));
            }
            filters.insert(
                label.clone(),
                ObjectFilter {
                    min_area: f.min_area / frame_area,
                    max_area: f.max_area / frame_area,
                    ..f.clone()
                },
            );
        }
        Ok(Rules {
            config: self.clone(),
            anchor: self.anchor,
            zones,
            masks,
            filters,
            stationary_s: self.stationary_s,
        })
    }

    /// The classes the zones ask for, each once (by label), in order.
    pub fn zone_classes(&self) -> Vec<ClassSpec> {
        let mut seen = HashSet::new();
        self.zones
            .iter()
            .flat_map(|z| class_specs(&z.classes))
            .filter(|c| seen.insert(c.label().to_string()))
            .collect()
    }
}

impl Default for Rules {
    fn default() -> Self {
        RulesConfig::default()
            .compile()
            .expect("the default rules are valid")
    }
}

impl Rules {
    /// The anchor point of a box, in fractions of a `width` × `height` frame.
    fn anchor_of(&self, bbox: &[f32; 4], width: u32, height: u32) -> (f64, f64) {
        let x = f64::from(bbox[0] + bbox[2]) / 2.0;
        let y = f64::from(match self.anchor {
            Anchor::BottomCenter => bbox[3],
            Anchor::Center => (bbox[1] + bbox[3]) / 2.0,
            Anchor::TopCenter => bbox[1],
        });
        (x / f64::from(width.max(1)), y / f64::from(height.max(1)))
    }

    /// Whether a detection survives the masks and its label's per-frame filters.
    pub fn admit(&self, d: &Detection, width: u32, height: u32) -> bool {
        let (x, y) = self.anchor_of(&d.bbox, width, height);
        let masked = self.masks.iter().any(|m| {
            m.labels.as_ref().is_none_or(|l| l.contains(&d.label)) && m.polygon.contains(x, y)
        });
        if masked {
            return false;
        }
        let Some(f) = self.filters.get(&d.label) else {
            return true;
        };
        let (w, h) = (
            f64::from((d.bbox[2] - d.bbox[0]).max(0.0)),
            f64::from((d.bbox[3] - d.bbox[1]).max(0.0)),
        );
        let area = w * h / (f64::from(width.max(1)) * f64::from(height.max(1)));
        let ratio = if h > 0.0 { w / h } else { f64::INFINITY };
        d.score >= f.min_score
            && area >= f.min_area
            && (f.max_area <= 0.0 || area <= f.max_area)
            && ratio >= f.min_ratio
            && (f.max_ratio <= 0.0 || ratio <= f.max_ratio)
    }

    /// Indices of the zones whose area holds the detection's anchor and which count its label.
    pub fn zones_holding(
        &self,
        label: &str,
        bbox: &[f32; 4],
        width: u32,
        height: u32,
    ) -> Vec<usize> {
        let (x, y) = self.anchor_of(bbox, width, height);
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| {
                z.labels.as_ref().is_none_or(|l| l.contains(label)) && z.polygon.contains(x, y)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Each zone's name and the labels it counts among the camera's `labels`.
    pub fn zone_labels(&self, labels: &[String]) -> Vec<(String, Vec<String>)> {
        self.zones
            .iter()
            .map(|z| {
                let counted = labels
                    .iter()
                    .filter(|l| z.labels.as_ref().is_none_or(|set| set.contains(*l)))
                    .cloned()
                    .collect();
                (z.name.clone(), counted)
            })
            .collect()
    }

    /// The median score an object of `label` needs to become an event.
    pub fn threshold(&self, label: &str) -> f32 {
        self.filters.get(label).map_or(0.0, |f| f.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(label: &str, bbox: [f32; 4], score: f32) -> Detection {
        Detection {
            label: label.into(),
            class_id: 0,
            score,
            bbox,
        }
    }

    fn rules(toml_text: &str) -> Result<Rules, String> {
        toml::from_str::<RulesConfig>(toml_text)
            .map_err(|e| e.to_string())?
            .compile()
    }

    #[test]
    fn masks_and_filters_discard_detections() {
        let r = rules(
            r#"
            frame_size = [100, 100]
            [[masks]]
            points = [[0, 0], [50, 0], [50, 50], [0, 50]]
            [[masks]]
            points = [[50, 50], [100, 50], [100, 100], [50, 100]]
            classes = "car"
            [filters.person]
            min_area = 100
            max_area = 2500
            max_ratio = 1.0
            min_score = 0.3
            "#,
        )
        .unwrap();
        // The anchor (bottom centre) decides: (25, 40) is masked for every label.
        assert!(!r.admit(&det("dog", [20.0, 10.0, 30.0, 40.0], 0.9), 100, 100));
        // The second mask hides cars only.
        assert!(!r.admit(&det("car", [60.0, 60.0, 80.0, 90.0], 0.9), 100, 100));
        assert!(r.admit(&det("dog", [60.0, 60.0, 80.0, 90.0], 0.9), 100, 100));
        // Person filters: area 20×30 = 600 px, ratio 0.67, score 0.5 pass.
        let ok = [60.0, 10.0, 80.0, 40.0];
        assert!(r.admit(&det("person", ok, 0.5), 100, 100));
        assert!(!r.admit(&det("person", ok, 0.2), 100, 100), "min_score");
        assert!(
            !r.admit(&det("person", [60.0, 10.0, 65.0, 20.0], 0.5), 100, 100),
            "min_area"
        );
        assert!(
            !r.admit(&det("person", [50.0, 0.0, 100.0, 55.0], 0.5), 100, 100),
            "max_area"
        );
        assert!(
            !r.admit(&det("person", [60.0, 10.0, 90.0, 30.0], 0.5), 100, 100),
            "max_ratio"
        );
        // Pixel rules scale with the real frame: at 200 × 200 the masked square is 0..100.
        assert!(!r.admit(&det("dog", [40.0, 20.0, 60.0, 80.0], 0.9), 200, 200));
    }

    #[test]
    fn zones_count_their_own_classes_at_the_anchor() {
        let r = rules(
            r#"
            anchor = "bottom_center"
            [[zones]]
            name = "bay"
            points = [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]
            classes = "forklift, pallet|skid"
            [[zones]]
            name = "door"
            points = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
            "#,
        )
        .unwrap();
        let b = [60.0, 10.0, 80.0, 80.0]; // bottom centre (70, 80) in a 100 × 100 frame
        assert_eq!(r.zones_holding("forklift", &b, 100, 100), vec![0]);
        assert!(r.zones_holding("person", &b, 100, 100).is_empty());
        assert_eq!(
            r.zones_holding("person", &[10.0, 10.0, 20.0, 20.0], 100, 100),
            vec![1]
        );
        let labels: Vec<String> = r
            .config
            .zone_classes()
            .iter()
            .map(|c| c.label().to_string())
            .collect();
        assert_eq!(labels, ["forklift", "pallet"]);
        let center = rules(
            r#"
            anchor = "center"
            [[zones]]
            name = "bay"
            points = [[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]
            "#,
        )
        .unwrap();
        assert!(
            center.zones_holding("x", &b, 100, 100).is_empty(),
            "centre (70, 45)"
        );
    }

    #[test]
    fn bad_rules_are_named() {
        let err = |t: &str| rules(t).unwrap_err();
        let e = err("[[zones]]\nname = \"a b\"\npoints = [[0,0],[1,0],[1,1]]");
        assert!(e.contains("zone `a b`"), "{e}");
        let e = err("[[zones]]\nname = \"a\"\npoints = [[0,0],[1,0]]");
        assert!(e.contains("zone `a`") && e.contains("at least 3"), "{e}");
        let e = err(
            "[[zones]]\nname = \"a\"\npoints = [[0,0],[1,0],[1,1]]\n[[zones]]\nname = \"a\"\npoints = [[0,0],[1,0],[1,1]]",
        );
        assert!(e.contains("twice"), "{e}");
        let e = err("[[masks]]\npoints = [[0,0],[1,1],[1,0],[0,1]]");
        assert!(e.contains("mask 0") && e.contains("intersects"), "{e}");
        let e = err("[filters.person]\nmin_area = 5");
        assert!(e.contains("fractions"), "{e}");
        let e = err("[filters.person]\nthreshold = 1.5");
        assert!(e.contains("threshold"), "{e}");
        let e = err("stationary_s = -1");
        assert!(e.contains("stationary_s"), "{e}");
        let e = err("frame_size = [0, 10]");
        assert!(e.contains("frame_size"), "{e}");
        assert!(err("zonez = []").contains("unknown field"));
    }
}
