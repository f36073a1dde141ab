//! The OpenAPI document, generated from the handlers' annotations, and the schemas that exist
//! only to describe request forms.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::routes::{deepstack, detect, operations, streams, vocabularies};
use super::types::{
    BatchItem, DetectResponse, DetectionSchema, ImageSize, TimingsSchema, VocabRef,
};
use crate::service::options::DetectOptions;
use crate::vocab::spec::{ClassSpec, Classes, VocabSpec};
use crate::vocab::store::VocabSummary;

/// Every error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    /// validation, decode, too_large, overloaded, timeout, unauthorized, not_found, ...
    pub error_type: String,
}

/// The multipart form of the detection routes: the image(s) and the detect options.
#[derive(ToSchema)]
pub struct DetectForm {
    #[schema(format = Binary, value_type = String)]
    pub image: Vec<u8>,
    #[serde(flatten)]
    pub options: DetectOptions,
}

#[derive(ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItem>,
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
        detect::detect,
        detect::detect_batch,
        deepstack::deepstack,
        vocabularies::list_vocabularies,
        vocabularies::get_vocabulary,
        vocabularies::put_vocabulary,
        vocabularies::delete_vocabulary,
        operations::info,
        operations::live,
        operations::ready,
        operations::metrics,
        streams::list,
        streams::get,
        streams::put_vocabulary,
        streams::enable,
        streams::disable,
        streams::events,
        streams::mjpeg,
        streams::snapshot,
    ),
    components(schemas(
        DetectionSchema,
        VocabSpec,
        ClassSpec,
        VocabSummary,
        ErrorBody,
        DetectResponse,
        TimingsSchema,
        ImageSize,
        VocabRef,
        DetectOptions,
        crate::stream::StreamStatus,
        Classes,
        streams::StreamList,
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
