//! The OpenAPI document, generated from the handlers' annotations, and the schemas that exist
//! only to describe request forms.

#![allow(dead_code)]

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::routes::{deepstack, detect, events, operations, streams, vocabularies};
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

/// The multipart form of the detection routes: the image(s) and the detect options. Its
/// component is rebuilt by [`Document`] as one closed object (a flattened closed object would
/// make an `allOf` no form satisfies).
#[derive(ToSchema)]
pub struct DetectForm {
    #[schema(format = Binary, value_type = String)]
    pub image: Vec<u8>,
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
    #[schema(minimum = 0.0, maximum = 1.0)]
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
    /// `/health/ready` only: the named-vocabulary store — `kind` (memory, file, redis), `ready`,
    /// and for Redis `target` (no password), `connected`, `synced`, `resyncs`, `error`.
    #[schema(value_type = Option<Object>)]
    pub store: Option<serde_json::Value>,
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
        streams::get_rules,
        streams::put_rules,
        streams::get_clips,
        streams::put_clips,
        events::list,
        events::get,
        events::delete,
        events::snapshot,
        events::thumbnail,
        events::clip,
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
        crate::stream::rules::RulesConfig,
        crate::stream::recorder::ClipConfig,
        crate::stream::rules::ZoneConfig,
        crate::stream::rules::MaskConfig,
        crate::stream::rules::ObjectFilter,
        crate::stream::rules::Anchor,
        crate::stream::events::EventObject,
        crate::stream::events::EventMessage,
        crate::stream::events::EventKind,
        events::EventList,
    )),
    modifiers(&Document)
)]
pub struct ApiDoc;

/// The routes served without an API key (the DeepStack route takes it as a form field too).
pub(crate) const OPEN_PATHS: [&str; 4] = [
    "/health/live",
    "/health/ready",
    "/metrics",
    "/v1/vision/detection",
];

/// Declares the API key (Bearer or `x-api-key`), requires it on every operation but the open
/// ones, adds the refusals every operation of a kind can give (401 where a key is required,
/// 413 and 429 where a body is read) and builds the detection form from the detect options.
struct Document;

impl utoipa::Modify for Document {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
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
        detect_form(components);
        let either_key = vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ];
        for (path, item) in api.paths.paths.iter_mut() {
            let open = OPEN_PATHS.contains(&path.as_str());
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description));
                };
                if !open {
                    add("401", "missing or wrong API key (when the server has one)");
                }
                if op.request_body.is_some() {
                    add("413", "body too large");
                    add("429", "overloaded: retry after the Retry-After seconds");
                }
                if !open {
                    op.security = Some(either_key.clone());
                }
            }
        }
    }
}

/// `DetectForm`: the detect options' properties and `image`, one closed object.
fn detect_form(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{KnownFormat, Object, Schema, SchemaFormat, Type};
    let Some(RefOr::T(Schema::Object(options))) = components.schemas.get("DetectOptions") else {
        return;
    };
    let mut form: Object = options.clone();
    form.description = Some(
        "The multipart form of the detection routes: `image` (several on the batch route) and \
         the detect options."
            .into(),
    );
    let image = Object::builder()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .build();
    form.properties.insert("image".into(), image.into());
    form.required.push("image".into());
    components
        .schemas
        .insert("DetectForm".into(), RefOr::T(Schema::Object(form)));
}

/// A response with the JSON error body.
fn error_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}
