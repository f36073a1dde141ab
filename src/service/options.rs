//! Detect options: everything a detection request sets besides its images, declared once for
//! the HTTP multipart form, query string and JSON body (serde, OpenAPI) and the CLI (clap).

use serde::{Deserialize, Deserializer};

use crate::engine::error::Result;
use crate::engine::postprocess::DetectParams;
use crate::vocab::spec::{Classes, Synonyms};
use crate::vocab::store::VocabRequest;

/// The options of one detection request. Text forms (query parameters, form fields, flags)
/// and typed JSON values are both accepted for every field.
#[derive(Debug, Clone, Default, Deserialize, clap::Args, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DetectOptions {
    /// Class names: `,` between classes, `|` between synonyms (`person, dog|puppy`), or a JSON
    /// list of phrases / synonym lists.
    #[arg(long)]
    #[param(value_type = Option<String>)]
    pub classes: Option<Classes>,
    /// Prompt template applied to every phrase, with one `{}` ("a photo of a {}").
    #[arg(long)]
    pub template: Option<String>,
    /// A named or built-in vocabulary (coco, lvis, objects365).
    #[arg(long)]
    pub vocabulary: Option<String>,
    /// How a class's synonyms make its embedding: `mean` of all, or `first` only (the
    /// official protocol) [default: mean for classes, first for the built-ins].
    #[arg(long, value_enum)]
    pub synonyms: Option<Synonyms>,
    /// Minimum score, 0-1 [default: the bundle's].
    #[arg(long)]
    #[serde(default, alias = "min_confidence", deserialize_with = "lenient")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    #[param(minimum = 0.0, maximum = 1.0)]
    pub score_threshold: Option<f32>,
    /// NMS IoU threshold, 0-1 [default: the bundle's].
    #[arg(long)]
    #[serde(default, deserialize_with = "lenient")]
    #[schema(minimum = 0.0, maximum = 1.0)]
    #[param(minimum = 0.0, maximum = 1.0)]
    pub iou_threshold: Option<f32>,
    /// Most detections per image, 1-10000 [default: the bundle's].
    #[arg(long)]
    #[serde(default, deserialize_with = "lenient")]
    #[schema(minimum = 1, maximum = 10000)]
    #[param(minimum = 1, maximum = 10000)]
    pub max_detections: Option<usize>,
    /// Let an anchor report every class above the threshold, not only its best one.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(default, deserialize_with = "lenient_bool")]
    pub multi_label: Option<bool>,
    /// Answer with the annotated JPEG instead of JSON (HTTP only).
    #[arg(skip)]
    #[serde(default, deserialize_with = "lenient_bool")]
    pub annotate: Option<bool>,
}

impl DetectOptions {
    /// Reads options from text pairs (query string, form fields) overlaid by typed JSON
    /// fields: later sources win. Unknown names and unparsable values are errors naming them.
    pub fn from_fields(
        text: impl IntoIterator<Item = (String, String)>,
        json: serde_json::Map<String, serde_json::Value>,
    ) -> std::result::Result<DetectOptions, String> {
        let mut all = serde_json::Map::new();
        for (k, v) in text {
            all.insert(k, serde_json::Value::String(v));
        }
        all.extend(json);
        serde_json::from_value(serde_json::Value::Object(all)).map_err(|e| e.to_string())
    }

    /// The vocabulary these options ask for.
    pub fn vocab_request(&self) -> VocabRequest {
        VocabRequest {
            classes: self.classes.clone(),
            template: self.template.clone(),
            synonyms: self.synonyms,
            name: self.vocabulary.clone(),
            ..Default::default()
        }
    }

    /// `base` (the bundle's or a camera's parameters) with these overrides, validated.
    pub fn params(&self, base: DetectParams) -> Result<DetectParams> {
        base.overridden(
            self.score_threshold,
            self.iou_threshold,
            self.max_detections,
            self.multi_label,
        )
    }
}

/// A number given as a JSON number or as text.
fn lenient<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        Native(T),
        Text(String),
    }
    match Option::<Either<T>>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Native(v)) => Ok(Some(v)),
        Some(Either::Text(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a valid number"))),
    }
}

/// A boolean given as JSON or as text (`1/true/yes/on`, `0/false/no/off/""`).
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Native(bool),
        Text(String),
    }
    match Option::<Either>::deserialize(d)? {
        None => Ok(None),
        Some(Either::Native(v)) => Ok(Some(v)),
        Some(Either::Text(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" | "" => Ok(Some(false)),
            _ => Err(serde::de::Error::custom(format!("`{s}` is not a boolean"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn text_and_json_forms_parse_to_the_same_options() {
        let a = DetectOptions::from_fields(
            text(&[("score_threshold", "0.4"), ("annotate", "yes")]),
            Default::default(),
        )
        .unwrap();
        let json = serde_json::json!({"score_threshold": 0.4, "annotate": true});
        let b = DetectOptions::from_fields(vec![], json.as_object().unwrap().clone()).unwrap();
        assert_eq!((a.score_threshold, a.annotate), (Some(0.4), Some(true)));
        assert_eq!((b.score_threshold, b.annotate), (Some(0.4), Some(true)));
        let dc = DetectOptions::from_fields(text(&[("min_confidence", "0.3")]), Default::default());
        assert_eq!(dc.unwrap().score_threshold, Some(0.3));
    }

    #[test]
    fn later_sources_win_and_bad_fields_are_refused() {
        let json = serde_json::json!({"score_threshold": 0.7});
        let o = DetectOptions::from_fields(
            text(&[("score_threshold", "0.2")]),
            json.as_object().unwrap().clone(),
        )
        .unwrap();
        assert_eq!(o.score_threshold, Some(0.7));
        for bad in [
            ("score_threshold", "abc"),
            ("bogus", "1"),
            ("max_detections", "-3"),
            ("annotate", "maybe"),
        ] {
            let e = DetectOptions::from_fields(text(&[bad]), Default::default());
            assert!(e.is_err(), "{bad:?}");
        }
        let e = DetectOptions::from_fields(text(&[("score_treshold", "0.2")]), Default::default())
            .unwrap_err();
        assert!(e.contains("unknown field"), "{e}");
    }
}
