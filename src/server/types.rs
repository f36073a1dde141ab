//! The HTTP answers' types, and OpenAPI schemas for the engine's types (which derive none).

use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::{Detection, Timings, Vocabulary};

/// Schema of [`Detection`]: one box in original-image pixels.
#[derive(ToSchema)]
#[schema(as = Detection)]
#[allow(dead_code)]
pub(crate) struct DetectionSchema {
    label: String,
    class_id: usize,
    score: f32,
    /// `[x1, y1, x2, y2]` in original-image pixels.
    #[schema(rename = "box")]
    bbox: [f32; 4],
}

/// Schema of [`Timings`]: per-stage milliseconds of one image.
#[derive(ToSchema)]
#[schema(as = StageTimings)]
#[allow(dead_code)]
pub(crate) struct TimingsSchema {
    queue: f64,
    decode: f64,
    preprocess: f64,
    inference: f64,
    postprocess: f64,
    total: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImageSize {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VocabRef {
    pub name: Option<String>,
    pub hash: String,
    pub classes: Vec<String>,
}

impl From<&Vocabulary> for VocabRef {
    fn from(v: &Vocabulary) -> Self {
        VocabRef {
            name: v.name.clone(),
            hash: v.hash.clone(),
            classes: v.labels.clone(),
        }
    }
}

/// The answer of `POST /v1/detect`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DetectResponse {
    #[schema(value_type = Vec<DetectionSchema>)]
    pub detections: Vec<Detection>,
    pub image: ImageSize,
    pub vocabulary: VocabRef,
    #[schema(value_type = TimingsSchema)]
    pub timings_ms: Timings,
}

/// One entry of the batch answer: a result or that image's error.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum BatchItem {
    Ok(DetectResponse),
    Err {
        error: String,
        error_type: &'static str,
        status: u16,
    },
}
