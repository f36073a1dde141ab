//! The OpenAPI document, generated from the handlers' annotations, and the schemas that exist
//! only to describe request forms.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::routes;
use crate::engine::Detection;
use crate::vocab_spec::{ClassSpec, VocabSpec};
use crate::vocab_store::VocabSummary;

/// Every error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// validation, decode, too_large, overloaded, timeout, unauthorized, not_found, ...
    pub error_type: String,
}

/// The multipart form of the detection routes.
#[derive(ToSchema)]
pub struct DetectForm {
    #[schema(format = Binary, value_type = String)]
    pub image: Vec<u8>,
    /// `,` between classes, `|` between synonyms: `person, dog|puppy`.
    pub classes: Option<String>,
    /// Prompt template with one `{}`.
    pub template: Option<String>,
    /// A named or built-in vocabulary.
    pub vocabulary: Option<String>,
    pub score_threshold: Option<f32>,
    pub iou_threshold: Option<f32>,
    pub max_detections: Option<u32>,
    pub multi_label: Option<bool>,
}

/// The same options as query parameters (for raw `image/*` bodies).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetectQuery {
    pub classes: Option<String>,
    pub template: Option<String>,
    pub vocabulary: Option<String>,
    pub score_threshold: Option<f32>,
    pub iou_threshold: Option<f32>,
    pub max_detections: Option<u32>,
    pub multi_label: Option<bool>,
    /// Answer with the annotated JPEG instead of JSON.
    pub annotate: Option<bool>,
}

#[derive(ToSchema)]
pub struct BatchResponse {
    pub results: Vec<routes::BatchItem>,
}

#[derive(ToSchema)]
pub struct DeepStackForm {
    #[schema(format = Binary, value_type = String)]
    pub image: Vec<u8>,
    pub api_key: Option<String>,
    pub min_confidence: Option<f32>,
}

#[derive(ToSchema)]
pub struct DeepStackPrediction {
    pub label: String,
    pub confidence: f32,
    pub x_min: i64,
    pub y_min: i64,
    pub x_max: i64,
    pub y_max: i64,
}

#[derive(ToSchema)]
pub struct DeepStackResponse {
    pub success: bool,
    /// Highest confidence first.
    pub predictions: Vec<DeepStackPrediction>,
}

#[derive(ToSchema)]
pub struct VocabularyList {
    pub vocabularies: Vec<VocabSummary>,
}

#[derive(ToSchema)]
pub struct VocabularyDetail {
    pub name: String,
    pub builtin: bool,
    pub classes: Vec<ClassSpec>,
    pub template: String,
}

#[derive(ToSchema)]
pub struct VocabularyCreated {
    pub name: String,
    pub classes: Vec<String>,
    pub hash: String,
}

#[derive(ToSchema)]
pub struct Status {
    pub status: String,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "dosod", description = "Real-time open-set object detection (DOSOD): boxes for any words, vocabularies swapped at run time."),
    paths(
        routes::detect,
        routes::detect_batch,
        routes::deepstack,
        routes::list_vocabularies,
        routes::get_vocabulary,
        routes::put_vocabulary,
        routes::delete_vocabulary,
        routes::info,
        routes::live,
        routes::ready,
        routes::metrics,
        super::streams::list,
        super::streams::get,
        super::streams::put_vocabulary,
        super::streams::enable,
        super::streams::disable,
        super::streams::events,
        super::streams::mjpeg,
        super::streams::snapshot,
    ),
    components(schemas(
        Detection,
        VocabSpec,
        ClassSpec,
        VocabSummary,
        ErrorBody,
        routes::DetectResponse,
        routes::StageTimings,
        routes::ImageSize,
        routes::VocabRef,
        crate::stream::StreamStatus,
        super::streams::StreamVocabulary,
        super::input::ClassesField,
        super::streams::StreamList,
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// Declares the optional API key (Bearer or `x-api-key`).
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}
