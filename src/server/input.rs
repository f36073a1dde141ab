//! Reading detection requests: multipart, raw `image/*` bodies with query parameters, or JSON
//! with a base64 image; and turning their options into a vocabulary and parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use base64::Engine as _;
use serde::Deserialize;

use super::error::{ApiError, from_rejection};
use crate::vocab_spec::{ClassSpec, VocabSpec};

/// Classes as a request may give them: `"dog, puppy|pup"` or `["dog", ["puppy", "pup"]]`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ClassesField {
    Text(String),
    List(Vec<ClassSpec>),
}

impl ClassesField {
    pub fn spec(&self, template: Option<&str>) -> VocabSpec {
        let mut spec = match self {
            ClassesField::Text(t) => VocabSpec::parse_list(t),
            ClassesField::List(l) => VocabSpec {
                classes: l.clone(),
                template: crate::vocab_spec::default_template(),
            },
        };
        if let Some(t) = template {
            spec.template = t.to_string();
        }
        spec
    }
}

/// Everything but the image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectOptions {
    pub classes: Option<ClassesField>,
    pub template: Option<String>,
    pub vocabulary: Option<String>,
    pub score_threshold: Option<f32>,
    pub iou_threshold: Option<f32>,
    pub max_detections: Option<usize>,
    pub multi_label: Option<bool>,
    pub annotate: Option<bool>,
}

impl DetectOptions {
    /// Sets one option from a text form field or query parameter; unknown names are errors.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ApiError> {
        fn num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, ApiError> {
            v.trim()
                .parse()
                .map_err(|_| ApiError::BadRequest(format!("{name}: `{v}` is not a valid number")))
        }
        fn flag(name: &str, v: &str) -> Result<bool, ApiError> {
            match v.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" | "" => Ok(false),
                _ => Err(ApiError::BadRequest(format!(
                    "{name}: `{v}` is not a boolean"
                ))),
            }
        }
        match name {
            "classes" => self.classes = Some(ClassesField::Text(value.to_string())),
            "template" => self.template = Some(value.to_string()),
            "vocabulary" => self.vocabulary = Some(value.to_string()),
            "score_threshold" | "min_confidence" => self.score_threshold = Some(num(name, value)?),
            "iou_threshold" => self.iou_threshold = Some(num(name, value)?),
            "max_detections" => self.max_detections = Some(num(name, value)?),
            "multi_label" => self.multi_label = Some(flag(name, value)?),
            "annotate" => self.annotate = Some(flag(name, value)?),
            other => {
                return Err(ApiError::BadRequest(format!("unknown field `{other}`")));
            }
        }
        Ok(())
    }
}

/// A detection request: images (one for `/v1/detect`, several for the batch route) and options.
#[derive(Debug, Default)]
pub struct DetectInput {
    pub images: Vec<Bytes>,
    pub options: DetectOptions,
    /// Form fields outside the detection options (DeepStack's `api_key`).
    pub extra: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct JsonBody {
    image: Option<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(flatten)]
    options: DetectOptions,
}

/// Form fields that are not options but are accepted (and returned in `extra`).
const EXTRA_FIELDS: [&str; 1] = ["api_key"];

impl DetectInput {
    /// Reads any of the three request forms. Query parameters apply to every form.
    pub async fn read(req: Request, query: Option<&str>) -> Result<DetectInput, ApiError> {
        let mut input = DetectInput::default();
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            for (k, v) in form_urlencoded(q) {
                input.options.set(&k, &v)?;
            }
        }
        let ctype = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ctype.starts_with("multipart/form-data") {
            let mut mp = Multipart::from_request(req, &())
                .await
                .map_err(|e| from_rejection(e.status(), e.body_text()))?;
            while let Some(field) = mp
                .next_field()
                .await
                .map_err(|e| from_rejection(e.status(), e.body_text()))?
            {
                let name = field.name().unwrap_or_default().to_string();
                if name == "image" || name == "images" {
                    let data = field
                        .bytes()
                        .await
                        .map_err(|e| from_rejection(e.status(), e.body_text()))?;
                    input.images.push(data);
                } else {
                    let text = field
                        .text()
                        .await
                        .map_err(|e| from_rejection(e.status(), e.body_text()))?;
                    if EXTRA_FIELDS.contains(&name.as_str()) {
                        input.extra.push((name, text));
                    } else {
                        input.options.set(&name, &text)?;
                    }
                }
            }
        } else if ctype.starts_with("application/json") {
            let body = Bytes::from_request(req, &())
                .await
                .map_err(|e| from_rejection(e.status(), e.body_text()))?;
            let parsed: JsonBody = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            for (i, s) in parsed.image.iter().chain(&parsed.images).enumerate() {
                let s = s.split_once("base64,").map_or(s.as_str(), |(_, d)| d);
                let bytes = b64.decode(s.trim()).map_err(|e| {
                    ApiError::BadRequest(format!("image {i} is not valid base64: {e}"))
                })?;
                input.images.push(Bytes::from(bytes));
            }
            merge(&mut input.options, parsed.options);
        } else if ctype.starts_with("image/") || ctype == "application/octet-stream" {
            let body = Bytes::from_request(req, &())
                .await
                .map_err(|e| from_rejection(e.status(), e.body_text()))?;
            input.images.push(body);
        } else {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type `{ctype}` is not supported: send multipart/form-data (field `image`), \
                 image/* or application/json"
            )));
        }
        if input.images.is_empty() {
            return Err(ApiError::BadRequest("no image in the request".into()));
        }
        Ok(input)
    }
}

/// Options from the body win over the query string.
fn merge(into: &mut DetectOptions, from: DetectOptions) {
    macro_rules! take {
        ($($f:ident),*) => { $( if from.$f.is_some() { into.$f = from.$f; } )* };
    }
    take!(
        classes,
        template,
        vocabulary,
        score_threshold,
        iou_threshold,
        max_detections,
        multi_label,
        annotate
    );
}

/// Decodes `a=b&c=d` (with `+` and percent escapes).
pub fn form_urlencoded(q: &str) -> Vec<(String, String)> {
    fn unescape(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |c: u8| (c as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            form_urlencoded("classes=dog%2C+cat%7Cpuppy&score_threshold=0.3&x"),
            vec![
                ("classes".to_string(), "dog, cat|puppy".to_string()),
                ("score_threshold".to_string(), "0.3".to_string()),
                ("x".to_string(), String::new())
            ]
        );
        assert_eq!(
            form_urlencoded("a=%zz%4"),
            vec![("a".into(), "%zz%4".into())]
        );
        assert_eq!(form_urlencoded("a=%é1"), vec![("a".into(), "%é1".into())]);
    }

    #[test]
    fn options_parse_and_refuse() {
        let mut o = DetectOptions::default();
        o.set("score_threshold", "0.4").unwrap();
        o.set("annotate", "true").unwrap();
        assert_eq!(o.score_threshold, Some(0.4));
        assert!(o.set("score_threshold", "abc").is_err());
        assert!(o.set("bogus", "1").is_err());
        assert!(o.set("max_detections", "-3").is_err());
    }
}
