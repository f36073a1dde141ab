//! The ROS 2 message types the node speaks, written by hand to match the ROS IDL exactly.
//!
//! On the wire a ROS 2 message is plain CDR (XCDR1): fields in declaration order, natural
//! alignment, strings and sequences length-prefixed, fixed arrays not. serde serialises a
//! struct's fields in declaration order, so the field order below *is* the wire format. Layouts
//! are those of Humble and Jazzy (common_interfaces, vision_msgs 4.x); they are identical there.

use serde::{Deserialize, Serialize};

/// A ROS type as `(package, name)`: `sensor_msgs::msg::dds_::Image_` on the wire.
pub type TypeName = (&'static str, &'static str);

pub const IMAGE: TypeName = ("sensor_msgs", "Image");
pub const COMPRESSED_IMAGE: TypeName = ("sensor_msgs", "CompressedImage");
pub const DETECTION_2D_ARRAY: TypeName = ("vision_msgs", "Detection2DArray");
pub const STRING: TypeName = ("std_msgs", "String");

/// `builtin_interfaces/Time`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Time {
    pub sec: i32,
    pub nanosec: u32,
}

/// `std_msgs/Header`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub stamp: Time,
    pub frame_id: String,
}

/// `std_msgs/String`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StringMsg {
    pub data: String,
}

/// `sensor_msgs/Image`: `step` is the length of one row in bytes (rows may be padded).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub header: Header,
    pub height: u32,
    pub width: u32,
    pub encoding: String,
    pub is_bigendian: u8,
    pub step: u32,
    /// `uint8[]` as one block of bytes, not element by element (same CDR bytes, far faster).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `sensor_msgs/CompressedImage`: `format` is e.g. `jpeg`, `png` or `bgr8; jpeg compressed bgr8`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompressedImage {
    pub header: Header,
    pub format: String,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `vision_msgs/Point2D`
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point2D {
    pub x: f64,
    pub y: f64,
}

/// `vision_msgs/Pose2D`
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pose2D {
    pub position: Point2D,
    pub theta: f64,
}

/// `vision_msgs/BoundingBox2D`: centre and size in pixels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox2D {
    pub center: Pose2D,
    pub size_x: f64,
    pub size_y: f64,
}

/// `vision_msgs/ObjectHypothesis`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesis {
    pub class_id: String,
    pub score: f64,
}

/// `geometry_msgs/Point`
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    pub z: f64,
}

/// `geometry_msgs/Quaternion` (the IDL default is the identity: `w = 1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quaternion {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub w: f64,
}

impl Default for Quaternion {
    fn default() -> Self {
        Self {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: 1.0,
        }
    }
}

/// `geometry_msgs/Pose`
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pose {
    pub position: Point,
    pub orientation: Quaternion,
}

/// `geometry_msgs/PoseWithCovariance`
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PoseWithCovariance {
    pub pose: Pose,
    pub covariance: Covariance,
}

/// `vision_msgs/ObjectHypothesisWithPose`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectHypothesisWithPose {
    pub hypothesis: ObjectHypothesis,
    pub pose: PoseWithCovariance,
}

/// `vision_msgs/Detection2D`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection2D {
    pub header: Header,
    pub results: Vec<ObjectHypothesisWithPose>,
    pub bbox: BoundingBox2D,
    pub id: String,
}

/// `vision_msgs/Detection2DArray`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection2DArray {
    pub header: Header,
    pub detections: Vec<Detection2D>,
}

/// `float64[36]`: a fixed CDR array (36 doubles, no length prefix). serde implements arrays
/// only up to 32 elements, so this one is written as a 36-tuple by hand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Covariance(pub [f64; 36]);

impl Default for Covariance {
    fn default() -> Self {
        Self([0.0; 36])
    }
}

impl Serialize for Covariance {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple;
        let mut t = s.serialize_tuple(36)?;
        for v in &self.0 {
            t.serialize_element(v)?;
        }
        t.end()
    }
}

impl<'de> Deserialize<'de> for Covariance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Covariance;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("36 doubles")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Covariance, A::Error> {
                let mut out = [0.0; 36];
                for (i, x) in out.iter_mut().enumerate() {
                    *x = a
                        .next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                }
                Ok(Covariance(out))
            }
        }
        d.deserialize_tuple(36, Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byteorder::LittleEndian;

    /// Cyclone DDS's bytes for the same values (dosod_tools.fixtures.make_cdr_golden), without the
    /// 4-byte encapsulation header (`00 01 00 00`: CDR, little-endian).
    fn golden(name: &str) -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ros2/cdr_golden.json"
        );
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let hex = all[name].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(bytes[..4], [0, 1, 0, 0], "{name}: CDR little-endian");
        bytes[4..].to_vec()
    }

    fn round_trip<T>(name: &str, value: &T)
    where
        T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let ours = cdr_encoding::to_vec::<T, LittleEndian>(value).unwrap();
        assert_eq!(ours, golden(name), "{name}: bytes differ from Cyclone DDS");
        let (back, _) = cdr_encoding::from_bytes::<T, LittleEndian>(&golden(name)).unwrap();
        assert_eq!(&back, value, "{name}: decoding Cyclone DDS's bytes");
    }

    fn header(sec: i32, nanosec: u32, frame_id: &str) -> Header {
        Header {
            stamp: Time { sec, nanosec },
            frame_id: frame_id.into(),
        }
    }

    fn detection(class_id: &str, score: f64, b: [f64; 4], id: &str) -> Detection2D {
        let mut cov = [0.0; 36];
        (cov[0], cov[35]) = (0.25, -1.5);
        Detection2D {
            header: header(5, 7, "cam"),
            results: vec![ObjectHypothesisWithPose {
                hypothesis: ObjectHypothesis {
                    class_id: class_id.into(),
                    score,
                },
                pose: PoseWithCovariance {
                    pose: Pose {
                        position: Point {
                            x: 1.0,
                            y: 2.0,
                            z: 3.0,
                        },
                        orientation: Quaternion::default(),
                    },
                    covariance: Covariance(cov),
                },
            }],
            bbox: BoundingBox2D {
                center: Pose2D {
                    position: Point2D { x: b[0], y: b[1] },
                    theta: 0.0,
                },
                size_x: b[2],
                size_y: b[3],
            },
            id: id.into(),
        }
    }

    #[test]
    fn the_wire_format_matches_cyclone_dds() {
        round_trip(
            "detection_array",
            &Detection2DArray {
                header: header(5, 7, "cam"),
                detections: vec![
                    detection("red apple", 0.45672235, [168.8, 97.16, 96.4, 105.71], "a"),
                    detection("pizza", 0.2, [549.0, 264.9, 106.2, 137.7], ""),
                ],
            },
        );
        round_trip(
            "empty_detection_array",
            &Detection2DArray {
                header: header(-1, 999_999_999, ""),
                detections: vec![],
            },
        );
        round_trip(
            "image",
            &Image {
                header: header(1, 2, "camera_optical"),
                height: 2,
                width: 2,
                encoding: "bgr8".into(),
                is_bigendian: 0,
                step: 7,
                data: vec![3, 2, 1, 6, 5, 4, 0, 3, 2, 1, 6, 5, 4, 9],
            },
        );
        round_trip(
            "compressed_image",
            &CompressedImage {
                header: header(3, 4, "c"),
                format: "jpeg".into(),
                data: vec![255, 216, 255],
            },
        );
        round_trip(
            "string",
            &StringMsg {
                data: "pizza, rose|pie".into(),
            },
        );
    }
}
