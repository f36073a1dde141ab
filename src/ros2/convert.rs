//! Conversions between ROS messages and the engine's types: `sensor_msgs/Image` to RGB pixels
//! (with every check a malformed frame needs), detections to `vision_msgs/Detection2DArray`.

use image::RgbImage;

use super::msg::{
    BoundingBox2D, Detection2D, Detection2DArray, Header, Image, ObjectHypothesis,
    ObjectHypothesisWithPose, Point2D, Pose2D,
};
use crate::engine::Detection;
use crate::engine::decode::DecodeLimits;

/// Why a received frame was skipped. Each kind is counted on its own.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// An encoding the node does not read (e.g. `yuv422`, `16UC1`, `bayer_rggb8`).
    #[error("unsupported encoding `{0}` (expected rgb8, bgr8, mono8, rgba8 or bgra8)")]
    Encoding(String),
    /// Width or height is zero.
    #[error("empty image ({0}x{1})")]
    Empty(u32, u32),
    /// `step` and `data` do not describe `height` rows of `width` pixels.
    #[error("{0}")]
    Size(String),
    /// More pixels than `limits.max_pixels` / `limits.max_side` allow.
    #[error("image too large: {0}")]
    TooLarge(String),
    /// A compressed image that does not decode.
    #[error("{0}")]
    Decode(String),
    /// Bytes on the topic that are not the declared message type.
    #[error("undecodable message: {0}")]
    Malformed(String),
}

impl Rejection {
    /// A short stable name, used as the counter's key.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Encoding(_) => "encoding",
            Rejection::Empty(..) => "empty",
            Rejection::Size(_) => "size",
            Rejection::TooLarge(_) => "too_large",
            Rejection::Decode(_) => "decode",
            Rejection::Malformed(_) => "malformed",
        }
    }
}

/// The pixel layouts read: bytes per pixel and where red, green and blue sit in a pixel.
fn layout(encoding: &str) -> Option<(usize, [usize; 3])> {
    Some(match encoding {
        "rgb8" => (3, [0, 1, 2]),
        "bgr8" | "8UC3" => (3, [2, 1, 0]),
        "rgba8" => (4, [0, 1, 2]),
        "bgra8" | "8UC4" => (4, [2, 1, 0]),
        "mono8" | "8UC1" => (1, [0, 0, 0]),
        _ => return None,
    })
}

/// A raw `sensor_msgs/Image` as RGB8. Checks the encoding, the size against `limits` (before
/// allocating) and that `step` and `data` agree with the geometry; padded rows are fine.
pub fn image_to_rgb(msg: Image, limits: &DecodeLimits) -> Result<RgbImage, Rejection> {
    let (w, h) = (msg.width, msg.height);
    let Some((channels, [r, g, b])) = layout(&msg.encoding) else {
        return Err(Rejection::Encoding(msg.encoding));
    };
    if w == 0 || h == 0 {
        return Err(Rejection::Empty(w, h));
    }
    if let Err(e) = limits.check(w, h) {
        return Err(Rejection::TooLarge(e.to_string()));
    }
    let row = w as usize * channels;
    let step = msg.step as usize;
    if step < row {
        return Err(Rejection::Size(format!(
            "step {step} is shorter than a row of {w} {} pixels ({row} bytes)",
            msg.encoding
        )));
    }
    let expected = step as u64 * u64::from(h);
    if msg.data.len() as u64 != expected {
        return Err(Rejection::Size(format!(
            "data holds {} bytes; step {step} x height {h} is {expected}",
            msg.data.len()
        )));
    }
    if msg.encoding == "rgb8" && step == row {
        return RgbImage::from_raw(w, h, msg.data)
            .ok_or_else(|| Rejection::Size("rgb8 buffer does not fit".into()));
    }
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    for line in msg.data.chunks_exact(step) {
        for px in line[..row].chunks_exact(channels) {
            out.extend_from_slice(&[px[r], px[g], px[b]]);
        }
    }
    RgbImage::from_raw(w, h, out).ok_or_else(|| Rejection::Size("buffer does not fit".into()))
}

/// An RGB8 image as a `sensor_msgs/Image` (`rgb8`, unpadded rows).
pub fn rgb_to_image(img: RgbImage, header: Header) -> Image {
    Image {
        header,
        height: img.height(),
        width: img.width(),
        encoding: "rgb8".into(),
        is_bigendian: 0,
        step: img.width() * 3,
        data: img.into_raw(),
    }
}

/// The engine's detections as a `Detection2DArray`: every detection carries the image's header,
/// its box as centre and size in pixels, and one hypothesis (label, score).
pub fn detections_to_msg(header: Header, detections: &[Detection]) -> Detection2DArray {
    let detections = detections
        .iter()
        .map(|d| {
            let [x1, y1, x2, y2] = d.bbox.map(f64::from);
            Detection2D {
                header: header.clone(),
                results: vec![ObjectHypothesisWithPose {
                    hypothesis: ObjectHypothesis {
                        class_id: d.label.clone(),
                        score: f64::from(d.score),
                    },
                    pose: Default::default(),
                }],
                bbox: BoundingBox2D {
                    center: Pose2D {
                        position: Point2D {
                            x: (x1 + x2) / 2.0,
                            y: (y1 + y2) / 2.0,
                        },
                        theta: 0.0,
                    },
                    size_x: x2 - x1,
                    size_y: y2 - y1,
                },
                id: String::new(),
            }
        })
        .collect();
    Detection2DArray { header, detections }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(encoding: &str, w: u32, h: u32, step: u32, data: Vec<u8>) -> Image {
        Image {
            encoding: encoding.into(),
            width: w,
            height: h,
            step,
            data,
            ..Default::default()
        }
    }

    #[test]
    fn every_layout_gives_the_same_rgb() {
        let limits = DecodeLimits::default();
        let rgb = image_to_rgb(msg("rgb8", 2, 1, 6, vec![1, 2, 3, 4, 5, 6]), &limits).unwrap();
        assert_eq!(rgb.as_raw(), &[1, 2, 3, 4, 5, 6]);
        // bgr8 with one byte of row padding per row
        let bgr = msg(
            "bgr8",
            2,
            2,
            7,
            vec![3, 2, 1, 6, 5, 4, 0, 3, 2, 1, 6, 5, 4, 9],
        );
        let out = image_to_rgb(bgr, &limits).unwrap();
        assert_eq!(out.as_raw(), &[1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
        let mono = image_to_rgb(msg("mono8", 2, 1, 2, vec![7, 9]), &limits).unwrap();
        assert_eq!(mono.as_raw(), &[7, 7, 7, 9, 9, 9]);
        let bgra = image_to_rgb(msg("bgra8", 1, 1, 4, vec![3, 2, 1, 255]), &limits).unwrap();
        assert_eq!(bgra.as_raw(), &[1, 2, 3]);
    }

    #[test]
    fn malformed_frames_are_rejected_by_kind() {
        let limits = DecodeLimits {
            max_pixels: 100,
            max_side: 50,
        };
        let kind = |m: Image| image_to_rgb(m, &limits).unwrap_err().kind();
        assert_eq!(kind(msg("yuv422", 2, 2, 4, vec![0; 8])), "encoding");
        assert_eq!(kind(msg("rgb8", 0, 2, 0, vec![])), "empty");
        assert_eq!(kind(msg("rgb8", 2, 2, 5, vec![0; 10])), "size");
        assert_eq!(kind(msg("rgb8", 2, 2, 6, vec![0; 11])), "size");
        assert_eq!(kind(msg("rgb8", 2, 2, 6, vec![0; 13])), "size");
        assert_eq!(kind(msg("mono8", 11, 10, 11, vec![0; 110])), "too_large");
        assert_eq!(kind(msg("mono8", 60, 1, 60, vec![0; 60])), "too_large");
        // a claimed size far beyond memory is refused before anything is allocated
        let huge = msg("rgb8", u32::MAX, u32::MAX, u32::MAX, vec![]);
        assert_eq!(kind(huge), "too_large");
    }

    #[test]
    fn boxes_become_centre_and_size() {
        let header = Header {
            frame_id: "cam".into(),
            ..Default::default()
        };
        let d = Detection {
            label: "person".into(),
            class_id: 0,
            score: 0.5,
            bbox: [10.0, 20.0, 30.0, 60.0],
        };
        let m = detections_to_msg(header.clone(), &[d]);
        assert_eq!(m.header, header);
        let b = m.detections[0].bbox;
        assert_eq!((b.center.position.x, b.center.position.y), (20.0, 40.0));
        assert_eq!((b.size_x, b.size_y), (20.0, 40.0));
        let h = &m.detections[0].results[0];
        assert_eq!(h.hypothesis.class_id, "person");
        assert_eq!(h.pose.pose.orientation.w, 1.0);
        assert_eq!(m.detections[0].header, header);
    }
}
