//! Reading detection requests: multipart, raw `image/*` bodies with query parameters, or JSON
//! with base64 images — into images and the one `DetectOptions`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header;
use base64::Engine as _;

use super::error::{ApiError, from_rejection};
pub(crate) use crate::service::options::DetectOptions;

/// A detection request: images (one for `/v1/detect`, several for the batch route) and options.
#[derive(Debug, Default)]
pub struct DetectInput {
    pub images: Vec<Bytes>,
    pub options: DetectOptions,
    /// Form fields outside the detection options (DeepStack's `api_key`).
    pub extra: Vec<(String, String)>,
}

const MULTIPART: &str = "multipart/form-data";

/// The request's content type, lower-cased ("" when absent).
fn content_type(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Whether the request body is a multipart form (the only body a DeepStack key can come in).
pub(crate) fn is_multipart(headers: &axum::http::HeaderMap) -> bool {
    content_type(headers).starts_with(MULTIPART)
}

/// Form fields that are not options but are accepted (and returned in `extra`).
const EXTRA_FIELDS: [&str; 1] = ["api_key"];

impl DetectInput {
    /// Reads any of the three request forms. Query parameters apply to every form; the body's
    /// options win over them.
    pub async fn read(req: Request, query: Option<&str>) -> Result<DetectInput, ApiError> {
        let mut input = DetectInput::default();
        let mut text: Vec<(String, String)> = query.map(form_urlencoded).unwrap_or_default();
        let mut json = serde_json::Map::new();
        let ctype = content_type(req.headers());
        if ctype.starts_with(MULTIPART) {
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
                    let value = field
                        .text()
                        .await
                        .map_err(|e| from_rejection(e.status(), e.body_text()))?;
                    if EXTRA_FIELDS.contains(&name.as_str()) {
                        input.extra.push((name, value));
                    } else {
                        text.push((name, value));
                    }
                }
            }
        } else if ctype.starts_with("application/json") {
            let body = Bytes::from_request(req, &())
                .await
                .map_err(|e| from_rejection(e.status(), e.body_text()))?;
            json = serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
            let b64 = base64::engine::general_purpose::STANDARD;
            for (i, s) in base64_images(&mut json)?.iter().enumerate() {
                let s = s.split_once("base64,").map_or(s.as_str(), |(_, d)| d);
                let bytes = b64.decode(s.trim()).map_err(|e| {
                    ApiError::BadRequest(format!("image {i} is not valid base64: {e}"))
                })?;
                input.images.push(Bytes::from(bytes));
            }
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
        input.options = DetectOptions::from_fields(text, json).map_err(ApiError::BadRequest)?;
        if input.images.is_empty() {
            return Err(ApiError::BadRequest("no image in the request".into()));
        }
        Ok(input)
    }
}

/// Takes `image` (a base64 string) and `images` (a list of them) out of a JSON body.
fn base64_images(
    json: &mut serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<String>, ApiError> {
    use serde_json::Value;
    let mut out = Vec::new();
    if let Some(v) = json.remove("image") {
        match v {
            Value::Null => {}
            Value::String(s) => out.push(s),
            _ => {
                return Err(ApiError::BadRequest(
                    "`image` must be a base64 string".into(),
                ));
            }
        }
    }
    if let Some(v) = json.remove("images") {
        let list = match v {
            Value::Null => Vec::new(),
            Value::Array(list) => list,
            _ => return Err(ApiError::BadRequest("`images` must be a list".into())),
        };
        for v in list {
            match v {
                Value::String(s) => out.push(s),
                _ => {
                    return Err(ApiError::BadRequest(
                        "`images` must be a list of base64 strings".into(),
                    ));
                }
            }
        }
    }
    Ok(out)
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
}
