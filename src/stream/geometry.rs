//! Polygons in frame coordinates: validation (finite, in frame, at least 3 points, simple) and
//! point-in-polygon, for zones and masks (pure).

use serde::{Deserialize, Serialize};

/// A polygon as configured: `[[x, y], …]`, in fractions of the frame (0-1) or, when the camera
/// sets `frame_size`, in pixels of that size.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Points(pub Vec<[f64; 2]>);

/// A checked polygon in fractions of the frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<[f64; 2]>,
}

impl Points {
    /// Checks the points against the frame (`frame_size` in pixels, or fractions when `None`)
    /// and returns the polygon in fractions. The error says what is wrong, for a start-up
    /// message or a 422.
    pub fn to_polygon(&self, frame_size: Option<[u32; 2]>) -> Result<Polygon, String> {
        let p = &self.0;
        if p.len() < 3 {
            return Err(format!(
                "a polygon needs at least 3 points (got {})",
                p.len()
            ));
        }
        if p.len() > 256 {
            return Err(format!(
                "a polygon has at most 256 points (got {})",
                p.len()
            ));
        }
        let (w, h, unit) = match frame_size {
            Some([w, h]) => (f64::from(w), f64::from(h), "pixels of frame_size"),
            None => (1.0, 1.0, "fractions of the frame (0-1)"),
        };
        let mut points = Vec::with_capacity(p.len());
        for (i, &[x, y]) in p.iter().enumerate() {
            if !x.is_finite() || !y.is_finite() {
                return Err(format!("point {i} is not a finite number"));
            }
            if !(0.0..=w).contains(&x) || !(0.0..=h).contains(&y) {
                return Err(format!(
                    "point {i} [{x}, {y}] is out of the frame ({unit}: x 0..{w}, y 0..{h})"
                ));
            }
            points.push([x / w, y / h]);
        }
        let polygon = Polygon { points };
        let first = polygon.points[0];
        let far = polygon
            .points
            .iter()
            .copied()
            .max_by(|a, b| dist2(first, *a).total_cmp(&dist2(first, *b)))
            .unwrap_or(first);
        if polygon
            .points
            .iter()
            .all(|&p| cross(first, far, p).abs() < 1e-12)
        {
            return Err("the polygon has no area (its points are on one line)".into());
        }
        if let Some((a, b)) = polygon.crossing() {
            return Err(format!(
                "the polygon intersects itself (edge {a} crosses edge {b})"
            ));
        }
        if polygon.area() < 1e-9 {
            return Err("the polygon has no area (its points are on one line)".into());
        }
        Ok(polygon)
    }
}

/// Twice the signed area of triangle (a, b, c): > 0 when counter-clockwise.
fn cross(a: [f64; 2], b: [f64; 2], c: [f64; 2]) -> f64 {
    (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
}

fn dist2(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// Whether segments p1p2 and p3p4 share a point.
fn segments_meet(p1: [f64; 2], p2: [f64; 2], p3: [f64; 2], p4: [f64; 2]) -> bool {
    let (d1, d2) = (cross(p3, p4, p1), cross(p3, p4, p2));
    let (d3, d4) = (cross(p1, p2, p3), cross(p1, p2, p4));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return true;
    }
    let on = |a: [f64; 2], b: [f64; 2], p: [f64; 2], d: f64| {
        d == 0.0
            && p[0] >= a[0].min(b[0])
            && p[0] <= a[0].max(b[0])
            && p[1] >= a[1].min(b[1])
            && p[1] <= a[1].max(b[1])
    };
    on(p3, p4, p1, d1) || on(p3, p4, p2, d2) || on(p1, p2, p3, d3) || on(p1, p2, p4, d4)
}

impl Polygon {
    fn edge(&self, i: usize) -> ([f64; 2], [f64; 2]) {
        (self.points[i], self.points[(i + 1) % self.points.len()])
    }

    /// The area (shoelace), in fractions of the frame's area.
    pub fn area(&self) -> f64 {
        let n = self.points.len();
        (0..n)
            .map(|i| {
                let (a, b) = self.edge(i);
                a[0] * b[1] - b[0] * a[1]
            })
            .sum::<f64>()
            .abs()
            / 2.0
    }

    /// The first pair of edges that meet other than at a shared corner (self-intersection), or
    /// two corners that coincide.
    fn crossing(&self) -> Option<(usize, usize)> {
        let n = self.points.len();
        for i in 0..n {
            for j in i + 1..n {
                let adjacent = j == i + 1 || (i == 0 && j == n - 1);
                let (a, b) = self.edge(i);
                let (c, d) = self.edge(j);
                if adjacent {
                    // Neighbours share one corner; they may not fold back onto each other.
                    let (shared, other_i, other_j) = if j == i + 1 { (b, a, d) } else { (a, b, c) };
                    let folds = cross(shared, other_i, other_j) == 0.0
                        && (other_i[0] - shared[0]) * (other_j[0] - shared[0])
                            + (other_i[1] - shared[1]) * (other_j[1] - shared[1])
                            > 0.0;
                    if folds || a == b || c == d {
                        return Some((i, j));
                    }
                } else if segments_meet(a, b, c, d) {
                    return Some((i, j));
                }
            }
        }
        None
    }

    /// Whether the point (fractions of the frame) is inside (even-odd rule; a point on an edge
    /// counts as inside).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let n = self.points.len();
        let mut inside = false;
        for i in 0..n {
            let (a, b) = self.edge(i);
            if cross(a, b, [x, y]) == 0.0
                && x >= a[0].min(b[0])
                && x <= a[0].max(b[0])
                && y >= a[1].min(b[1])
                && y <= a[1].max(b[1])
            {
                return true;
            }
            if (a[1] > y) != (b[1] > y) {
                let at = a[0] + (y - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
                if x < at {
                    inside = !inside;
                }
            }
        }
        inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(p: &[[f64; 2]]) -> Result<Polygon, String> {
        Points(p.to_vec()).to_polygon(None)
    }

    #[test]
    fn bad_geometry_is_named() {
        let err = |p: &[[f64; 2]]| poly(p).unwrap_err();
        assert!(err(&[[0.0, 0.0], [1.0, 0.0]]).contains("at least 3"));
        assert!(err(&[[0.0, 0.0], [f64::NAN, 0.0], [1.0, 1.0]]).contains("finite"));
        assert!(err(&[[0.0, 0.0], [1.5, 0.0], [1.0, 1.0]]).contains("out of the frame"));
        assert!(err(&[[0.0, 0.0], [-0.1, 0.0], [1.0, 1.0]]).contains("out of the frame"));
        assert!(err(&[[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]).contains("no area"));
        // A bow tie.
        let bowtie = err(&[[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]);
        assert!(bowtie.contains("intersects itself"), "{bowtie}");
        // An edge that doubles back on its neighbour.
        let back = err(&[[0.0, 0.0], [0.6, 0.0], [0.3, 0.0], [0.3, 0.5]]);
        assert!(back.contains("intersects itself"), "{back}");
        // A corner repeated.
        let repeated = err(&[[0.0, 0.0], [0.5, 0.0], [0.5, 0.0], [0.5, 0.5]]);
        assert!(repeated.contains("intersects itself"), "{repeated}");
        let px = Points(vec![[0.0, 0.0], [700.0, 0.0], [0.0, 100.0]]).to_polygon(Some([640, 360]));
        assert!(px.unwrap_err().contains("x 0..640"));
    }

    #[test]
    fn points_inside_and_out() {
        // An L shape (concave).
        let l = poly(&[
            [0.1, 0.1],
            [0.5, 0.1],
            [0.5, 0.4],
            [0.9, 0.4],
            [0.9, 0.9],
            [0.1, 0.9],
        ])
        .unwrap();
        assert!(l.contains(0.2, 0.2));
        assert!(l.contains(0.8, 0.8));
        assert!(!l.contains(0.8, 0.2), "the notch of the L");
        assert!(!l.contains(0.95, 0.5));
        assert!(l.contains(0.1, 0.5), "on an edge");
        assert!(l.contains(0.9, 0.9), "on a corner");
        assert!((l.area() - (0.8 * 0.8 - 0.4 * 0.3)).abs() < 1e-12);
        let px = Points(vec![[0.0, 0.0], [640.0, 0.0], [640.0, 180.0], [0.0, 180.0]])
            .to_polygon(Some([640, 360]))
            .unwrap();
        assert!(px.contains(0.5, 0.4) && !px.contains(0.5, 0.6));
    }
}
