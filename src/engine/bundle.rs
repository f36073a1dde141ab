//! The model bundle: `model.toml` parsed, and checked against the ONNX files it names.

use std::path::{Path, PathBuf};

use ort::session::Session;
use ort::value::ValueType;
use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};

section! {
    /// `[model]`: which bundle to serve.
    pub struct ModelSettings, flags ModelArgs (global = true) {
        /// Model bundle directory (docs/model-bundle.md).
        dir: PathBuf = PathBuf::from("models/demo") => "model", "DOSOD_MODEL";
    }
}

/// `model.toml`, as documented in `docs/model-bundle.md`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub model: ModelInfo,
    #[serde(default)]
    pub files: Files,
    pub input: InputSpec,
    pub embedding: EmbeddingSpec,
    #[serde(default)]
    pub postprocess: PostprocessDefaults,
    #[serde(default)]
    pub text_encoder: TextEncoderRef,
    #[serde(default)]
    pub default_vocabulary: Option<DefaultVocabulary>,
    #[serde(default)]
    pub provenance: Provenance,
    #[serde(default)]
    pub precision: PrecisionSpec,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Files {
    pub detector: String,
    pub adaptor: String,
}

impl Default for Files {
    fn default() -> Self {
        Self {
            detector: "detector.onnx".into(),
            adaptor: "adaptor.onnx".into(),
        }
    }
}

/// Where the letterbox puts its padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PadPosition {
    /// Half on each side; the odd pixel goes to the bottom / right (mmyolo).
    #[default]
    Center,
    /// Everything at the bottom / right.
    TopLeft,
}

/// Resampling used by the keep-ratio resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Area (box) when shrinking, bilinear when enlarging.
    #[default]
    Auto,
    Area,
    Bilinear,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub width: u32,
    pub height: u32,
    #[serde(default = "keep_ratio")]
    pub resize: String,
    #[serde(default)]
    pub interpolation: Interpolation,
    #[serde(default = "pad_114")]
    pub pad_value: u8,
    #[serde(default)]
    pub pad_position: PadPosition,
    #[serde(default = "default_strides")]
    pub strides: Vec<u32>,
    #[serde(default)]
    pub anchors: Option<usize>,
}

fn keep_ratio() -> String {
    "keep_ratio".into()
}
fn pad_114() -> u8 {
    114
}
fn default_strides() -> Vec<u32> {
    vec![8, 16, 32]
}

impl InputSpec {
    /// A `width × height` keep-ratio input with the defaults a `model.toml` gets (automatic
    /// interpolation, pad 114, centred, strides 8 / 16 / 32).
    pub fn keep_ratio(width: u32, height: u32) -> InputSpec {
        InputSpec {
            width,
            height,
            resize: keep_ratio(),
            interpolation: Interpolation::Auto,
            pad_value: pad_114(),
            pad_position: PadPosition::Center,
            strides: default_strides(),
            anchors: None,
        }
    }

    /// Anchors implied by the strides: `sum((H/s) * (W/s))`.
    pub fn anchors_from_strides(&self) -> usize {
        // Saturating: an absurd manifest gives a count no model has, refused as a mismatch.
        self.strides
            .iter()
            .map(|&s| (self.height / s) as usize)
            .zip(self.strides.iter().map(|&s| (self.width / s) as usize))
            .fold(0usize, |sum, (h, w)| {
                sum.saturating_add(h.saturating_mul(w))
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// D: the joint space.
    pub dim: usize,
    /// T: what the adaptor takes.
    pub text_dim: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostprocessDefaults {
    pub score_threshold: f32,
    pub iou_threshold: f32,
    pub max_detections: usize,
    pub multi_label: bool,
}

impl Default for PostprocessDefaults {
    fn default() -> Self {
        Self {
            score_threshold: 0.25,
            iou_threshold: 0.65,
            max_detections: 100,
            multi_label: false,
        }
    }
}

/// Which text encoder the adaptor expects.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TextEncoderRef {
    /// `minilm`, `clip` or `none`.
    pub kind: String,
    pub name: String,
    /// Encoder directory, relative to the bundle.
    pub dir: Option<String>,
}

/// A vocabulary the bundle ships, used when a request names none.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultVocabulary {
    /// Class phrases, encoded with the text encoder.
    pub classes: Vec<String>,
    /// Precomputed text embeddings `[K, T]` (`.npy`), relative to the bundle.
    pub embeddings: Option<String>,
    /// Names for `embeddings`, one per line.
    pub names: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Provenance {
    pub producer: String,
    pub source: String,
    pub license: String,
    pub created: String,
}

/// `[precision]`: how the detector's arithmetic was made (absent: float as exported).
/// `dosod_tools.bundle.quantize` writes it for INT8 bundles, with the calibration's provenance.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PrecisionSpec {
    /// `int8`, `float16` or `float32`; empty: whatever the ONNX tensors are.
    pub weights: String,
    /// `uint8` / `int8` for quantised activations.
    pub activations: String,
    /// How the quantisation was done (tool, granularity, calibration method).
    pub method: String,
    /// What stayed float.
    pub float: String,
    pub calibration_images: usize,
    pub calibration_source: String,
    /// sha256 over the calibration images' bytes, in order.
    pub calibration_sha256: String,
    pub calibration_vocabulary: String,
    /// The float bundle it was made from.
    pub source_bundle: String,
}

/// A bundle on disk: its directory and parsed manifest.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    /// Reads and sanity-checks `DIR/model.toml`.
    pub fn open(dir: &Path) -> Result<Bundle> {
        if !dir.is_dir() {
            return Err(EngineError::bundle(dir, "directory not found"));
        }
        let path = dir.join("model.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| EngineError::bundle(dir, format!("cannot read model.toml: {e}")))?;
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|e| EngineError::bundle(dir, format!("model.toml: {}", e.message())))?;
        let bundle = Bundle {
            dir: dir.to_path_buf(),
            manifest,
        };
        bundle.check_manifest()?;
        Ok(bundle)
    }

    fn check_manifest(&self) -> Result<()> {
        let m = &self.manifest;
        let bad = |msg: String| Err(EngineError::bundle(&self.dir, format!("model.toml: {msg}")));
        if m.input.width == 0 || m.input.height == 0 {
            return bad("input width and height must be positive".into());
        }
        if m.input.resize != "keep_ratio" {
            return bad(format!(
                "input.resize `{}` is not supported (only keep_ratio)",
                m.input.resize
            ));
        }
        if m.input.strides.is_empty() || m.input.strides.contains(&0) {
            return bad("input.strides must be non-empty and positive".into());
        }
        if let Some(n) = m.input.anchors {
            let implied = m.input.anchors_from_strides();
            if n != implied {
                return bad(format!(
                    "input.anchors = {n} but the strides imply {implied}"
                ));
            }
        }
        if m.embedding.dim == 0 || m.embedding.text_dim == 0 {
            return bad("embedding dims must be positive".into());
        }
        let p = &m.postprocess;
        for (name, v) in [
            ("score_threshold", p.score_threshold),
            ("iou_threshold", p.iou_threshold),
        ] {
            if let Err(e) = crate::engine::postprocess::check_unit(name, v) {
                return bad(format!("[postprocess] {e}"));
            }
        }
        Ok(())
    }

    /// Absolute path of a file named in the manifest.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    pub fn detector_path(&self) -> PathBuf {
        self.path(&self.manifest.files.detector)
    }

    pub fn adaptor_path(&self) -> PathBuf {
        self.path(&self.manifest.files.adaptor)
    }

    /// Checks a loaded session's tensors against the shapes the manifest implies.
    /// `expected` lists `(name, dims)` with `None` for a dynamic dimension.
    pub fn check_io(
        &self,
        file: &Path,
        session: &Session,
        inputs: &[(&str, Vec<Option<i64>>)],
        outputs: &[(&str, Vec<Option<i64>>)],
    ) -> Result<()> {
        let io = [
            (session.inputs(), inputs, "input"),
            (session.outputs(), outputs, "output"),
        ];
        for (outlets, expected, direction) in io {
            for (name, dims) in expected {
                let outlet = outlets.iter().find(|o| o.name() == *name).ok_or_else(|| {
                    let have: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
                    EngineError::bundle(
                        &self.dir,
                        format!(
                            "{}: no {direction} tensor `{name}` (it has {have:?})",
                            file.display()
                        ),
                    )
                })?;
                let ValueType::Tensor { shape, .. } = outlet.dtype() else {
                    return Err(EngineError::bundle(
                        &self.dir,
                        format!("{}: `{name}` is not a tensor", file.display()),
                    ));
                };
                let actual: Vec<i64> = shape.iter().copied().collect();
                let compatible = actual.len() == dims.len()
                    && actual
                        .iter()
                        .zip(dims)
                        .all(|(&a, d)| a < 0 || d.is_none_or(|d| d == a));
                if !compatible {
                    return Err(EngineError::bundle(
                        &self.dir,
                        format!(
                            "{}: tensor `{name}` has shape {} but model.toml says {}",
                            file.display(),
                            fmt_dims(actual.iter().map(|&a| (a >= 0).then_some(a))),
                            fmt_dims(dims.iter().copied()),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn fmt_dims(dims: impl Iterator<Item = Option<i64>>) -> String {
    let parts: Vec<String> = dims
        .map(|d| d.map_or("?".to_string(), |d| d.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[model]
name = "t"
[input]
width = 640
height = 640
[embedding]
dim = 512
text_dim = 384
"#;

    #[test]
    fn minimal_manifest_gets_defaults() {
        let m: Manifest = toml::from_str(MINIMAL).unwrap();
        assert_eq!(m.input.pad_value, 114);
        assert_eq!(m.input.strides, vec![8, 16, 32]);
        assert_eq!(m.input.anchors_from_strides(), 8400);
        assert_eq!(m.files.detector, "detector.onnx");
        assert_eq!(m.postprocess.max_detections, 100);
    }

    #[test]
    fn rejects_wrong_anchor_count() {
        let dir = tempfile::tempdir().unwrap();
        let text = MINIMAL.replace("height = 640", "height = 640\nanchors = 100");
        std::fs::write(dir.path().join("model.toml"), text).unwrap();
        let err = Bundle::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("strides imply 8400"), "{err}");
    }

    #[test]
    fn rejects_unknown_keys_and_missing_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("model.toml"),
            format!("{MINIMAL}\n[bogus]\n"),
        )
        .unwrap();
        assert!(Bundle::open(dir.path()).is_err());
        assert!(Bundle::open(&dir.path().join("nope")).is_err());
    }
}
