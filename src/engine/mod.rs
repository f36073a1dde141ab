//! The engine: decode → letterbox → infer → boxes → NMS on one model bundle. It knows nothing
//! of HTTP, cameras, ROS or text; the service layer drives it for every frontend.

/// `fn $name(args) -> R` that runs `$body(args)` compiled for AVX2 where the CPU has it (checked
/// at run time; the compiler then uses 256-bit lanes) and for the baseline elsewhere: the same
/// code, so the same result. `$body` must be `#[inline(always)]` to be compiled into both.
macro_rules! avx2_dispatch {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $(<$($g:ident: $bound:path),*>)?
            ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: this CPU has AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) mod annotate;
pub mod bundle;
pub mod decode;
pub mod error;
pub mod letterbox;
pub(crate) mod pipeline;
pub mod postprocess;
pub mod resize;
pub mod runtime;
pub(crate) mod tensor;
mod vocabulary;

pub use vocabulary::Vocabulary;

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use half::f16;
use image::RgbImage;
use ndarray::Array2;
use ort::session::Session;
use serde::Serialize;

use crate::engine::bundle::{Bundle, Manifest};
use crate::engine::decode::{DecodeLimits, DecodeOptions, Decoded, decode, decode_reduced};
use crate::engine::error::{EngineError, Result};
use crate::engine::letterbox::{Letterbox, letterbox_sized_into};
use crate::engine::postprocess::{DetectParams, postprocess};
use crate::engine::runtime::Runtime;
use crate::engine::tensor::{HostTensor, OutputF32, Precision, output_f32};

/// One detection in original-image pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    pub label: String,
    pub class_id: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]` in original-image pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
}

/// Milliseconds spent in each stage for one image (inference is shared by its batch); the one
/// timing record of every frontend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Waiting for the inference worker (0 when the engine is called directly).
    pub queue: f64,
    pub decode: f64,
    pub preprocess: f64,
    pub inference: f64,
    pub postprocess: f64,
    /// The whole detection, first byte to last box.
    pub total: f64,
}

/// An image ready for the detector: letterboxed pixels in the session's precision.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub pixels: HostTensor,
    pub letterbox: Letterbox,
}

/// The detector's raw outputs for a batch, in `f32` (ONNX Runtime's buffers, not copies).
#[derive(Debug)]
pub struct RawOutputs {
    pub batch: usize,
    pub anchors: usize,
    pub classes: usize,
    /// `[B, N, K]`
    scores: OutputF32,
    /// `[B, N, 4]`
    boxes: OutputF32,
}

impl RawOutputs {
    /// Scores `[N, K]` and boxes `[N, 4]` of batch item `i`.
    pub fn item(&self, i: usize) -> (&[f32], &[f32]) {
        let s = self.anchors * self.classes;
        let b = self.anchors * 4;
        (
            &self.scores.as_slice()[i * s..(i + 1) * s],
            &self.boxes.as_slice()[i * b..(i + 1) * b],
        )
    }
}

/// The element types the bundle's sessions report.
#[derive(Debug, Clone, Copy)]
struct Precisions {
    images: Precision,
    vocab: Precision,
    text: Precision,
}

/// Settings the engine needs beyond the bundle.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub limits: DecodeLimits,
    pub decode: DecodeOptions,
}

/// A loaded model bundle. All methods take `&self`; sessions are locked only while they run.
pub struct Engine {
    bundle: Bundle,
    runtime: Runtime,
    detector: Mutex<Session>,
    adaptor: Mutex<Session>,
    precisions: Precisions,
    options: EngineOptions,
}

impl Engine {
    /// Opens a bundle, builds both sessions and checks them against the manifest.
    pub fn load(runtime: &Runtime, dir: &Path, options: EngineOptions) -> Result<Engine> {
        let bundle = Bundle::open(dir)?;
        let m = &bundle.manifest;
        for (what, path) in [
            ("detector", bundle.detector_path()),
            ("adaptor", bundle.adaptor_path()),
        ] {
            if !path.is_file() {
                return Err(EngineError::bundle(
                    dir,
                    format!("{what} file {} not found", path.display()),
                ));
            }
        }
        let detector = runtime.session(&bundle.detector_path())?;
        let adaptor = runtime.session(&bundle.adaptor_path())?;
        let (h, w) = (i64::from(m.input.height), i64::from(m.input.width));
        let d = m.embedding.dim as i64;
        let t = m.embedding.text_dim as i64;
        let n = m.input.anchors_from_strides() as i64;
        bundle.check_io(
            &bundle.detector_path(),
            &detector,
            &[
                ("images", vec![None, Some(3), Some(h), Some(w)]),
                ("vocab", vec![None, Some(d)]),
            ],
            &[
                ("scores", vec![None, Some(n), None]),
                ("boxes", vec![None, Some(n), Some(4)]),
            ],
        )?;
        bundle.check_io(
            &bundle.adaptor_path(),
            &adaptor,
            &[("text", vec![None, Some(t)])],
            &[("joint", vec![None, Some(d)])],
        )?;
        let precisions = Precisions {
            images: Precision::of(&detector, "images", true)?,
            vocab: Precision::of(&detector, "vocab", true)?,
            text: Precision::of(&adaptor, "text", true)?,
        };
        tracing::info!(
            model = %m.model.name,
            dir = %dir.display(),
            input = format!("{}x{}", m.input.width, m.input.height),
            precision = %m.precision.weights,
            images = ?precisions.images,
            "model bundle loaded"
        );
        Ok(Engine {
            bundle,
            runtime: runtime.clone(),
            detector: Mutex::new(detector),
            adaptor: Mutex::new(adaptor),
            precisions,
            options,
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.bundle.manifest
    }

    /// The detector's arithmetic: `[precision] weights` of the manifest (`int8` for a quantised
    /// bundle), else the element type of its `images` input (`float32` / `float16`).
    pub fn precision(&self) -> String {
        let declared = &self.bundle.manifest.precision.weights;
        if !declared.is_empty() {
            return declared.clone();
        }
        match self.precisions.images {
            Precision::F32 => "float32".into(),
            Precision::F16 => "float16".into(),
        }
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.options.limits
    }

    /// The bundle's post-processing defaults as request parameters.
    pub fn default_params(&self) -> DetectParams {
        let p = &self.bundle.manifest.postprocess;
        DetectParams {
            score_threshold: p.score_threshold,
            iou_threshold: p.iou_threshold,
            max_detections: p.max_detections,
            multi_label: p.multi_label,
        }
    }

    /// Step 1: bytes to an upright RGB image, within the configured limits.
    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        decode(bytes, &self.options.limits)
    }

    /// Step 1 for detection only: as [`Engine::decode`], but with `[decode] reduced_jpeg` a
    /// JPEG is decoded at the smallest 1/2ⁿ scale that still covers the letterboxed size.
    pub fn decode_for_detection(&self, bytes: &[u8]) -> Result<Decoded> {
        self.decode_with(bytes, self.options.decode.reduced_jpeg)
    }

    /// Step 1 with reduced JPEG decoding on or off, whatever the configuration says.
    pub fn decode_with(&self, bytes: &[u8], reduced: bool) -> Result<Decoded> {
        let spec = &self.bundle.manifest.input;
        decode_reduced(bytes, &self.options.limits, |w, h| {
            reduced.then(|| {
                let lb = Letterbox::new(spec, w, h);
                (lb.new_w, lb.new_h)
            })
        })
    }

    /// Step 2: letterbox into a tensor buffer of the detector's input precision.
    pub fn prepare(&self, img: &RgbImage) -> Result<Prepared> {
        self.prepare_sized(img, img.dimensions())
    }

    /// Step 2 for decoded pixels that may be reduced: boxes come back in the full image's pixels.
    pub fn prepare_decoded(&self, decoded: &Decoded) -> Result<Prepared> {
        self.prepare_sized(&decoded.image, (decoded.width, decoded.height))
    }

    fn prepare_sized(&self, img: &RgbImage, size: (u32, u32)) -> Result<Prepared> {
        let spec = &self.bundle.manifest.input;
        let len = 3 * spec.width as usize * spec.height as usize;
        let mut pixels = HostTensor::zeros(len, self.precisions.images);
        let letterbox = match &mut pixels {
            HostTensor::F32(buf) => letterbox_sized_into::<f32>(img, size, spec, buf)?,
            HostTensor::F16(buf) => letterbox_sized_into::<f16>(img, size, spec, buf)?,
        };
        Ok(Prepared { pixels, letterbox })
    }

    /// Step 3: one detector run over a batch of prepared images.
    pub fn infer(&self, batch: &[&Prepared], vocab: &Vocabulary) -> Result<RawOutputs> {
        if batch.is_empty() {
            return Err(EngineError::InvalidParameter("empty batch".into()));
        }
        self.check_vocab(vocab)?;
        let spec = &self.bundle.manifest.input;
        let image_shape = vec![
            batch.len() as i64,
            3,
            i64::from(spec.height),
            i64::from(spec.width),
        ];
        let joined;
        let images = if batch.len() == 1 {
            &batch[0].pixels
        } else {
            joined = concat(batch);
            &joined
        };
        let vocab_data = HostTensor::from_f32(
            vocab.joint.as_standard_layout().iter().copied().collect(),
            self.precisions.vocab,
        );
        let k = vocab.joint.nrows();
        let vocab_shape = vec![k as i64, vocab.joint.ncols() as i64];
        let mut session = self.detector.lock().unwrap_or_else(|p| p.into_inner());
        let mut outputs = session.run(ort::inputs![
            "images" => images.input(image_shape)?,
            "vocab" => vocab_data.input(vocab_shape)?,
        ])?;
        let mut take = |name: &str| {
            outputs.remove(name).ok_or_else(|| {
                EngineError::Inference(format!("the detector has no `{name}` output"))
            })
        };
        let (scores, boxes) = (take("scores")?, take("boxes")?);
        drop(outputs);
        drop(session);
        let (s_shape, scores) = output_f32(scores, "scores")?;
        let (b_shape, boxes) = output_f32(boxes, "boxes")?;
        let (b, n) = (
            batch.len(),
            self.bundle.manifest.input.anchors_from_strides(),
        );
        if s_shape != [b, n, k] || b_shape != [b, n, 4] {
            return Err(EngineError::Inference(format!(
                "detector returned scores {s_shape:?} and boxes {b_shape:?}; expected [{b}, {n}, {k}] and [{b}, {n}, 4]"
            )));
        }
        Ok(RawOutputs {
            batch: b,
            anchors: n,
            classes: k,
            scores,
            boxes,
        })
    }

    /// Step 4: thresholds, NMS, top-k and the inverse letterbox for batch item `i`.
    pub fn finish(
        &self,
        raw: &RawOutputs,
        i: usize,
        letterbox: &Letterbox,
        vocab: &Vocabulary,
        params: &DetectParams,
    ) -> Vec<Detection> {
        let (scores, boxes) = raw.item(i);
        postprocess(scores, boxes, raw.classes, params)
            .into_iter()
            .map(|c| Detection {
                label: vocab.labels[c.class_id].clone(),
                class_id: c.class_id,
                score: c.score,
                bbox: letterbox.to_image(c.bbox),
            })
            .collect()
    }

    /// The whole pipeline for already-decoded images, batched into one detector run.
    pub fn detect_images(
        &self,
        images: &[RgbImage],
        vocab: &Vocabulary,
        params: &DetectParams,
    ) -> Result<Vec<(Vec<Detection>, Timings)>> {
        params.validate()?;
        let mut timings = vec![Timings::default(); images.len()];
        let mut prepared = Vec::with_capacity(images.len());
        for (img, t) in images.iter().zip(&mut timings) {
            let start = Instant::now();
            prepared.push(self.prepare(img)?);
            t.preprocess = ms(start);
        }
        let start = Instant::now();
        let refs: Vec<&Prepared> = prepared.iter().collect();
        let raw = self.infer(&refs, vocab)?;
        let inference = ms(start);
        let mut out = Vec::with_capacity(images.len());
        for (i, (p, mut t)) in prepared.iter().zip(timings).enumerate() {
            let start = Instant::now();
            let dets = self.finish(&raw, i, &p.letterbox, vocab, params);
            t.inference = inference;
            t.postprocess = ms(start);
            t.total = t.preprocess + t.inference + t.postprocess;
            out.push((dets, t));
        }
        Ok(out)
    }

    /// The whole pipeline for one encoded image.
    pub fn detect_bytes(
        &self,
        bytes: &[u8],
        vocab: &Vocabulary,
        params: &DetectParams,
    ) -> Result<(RgbImage, Vec<Detection>, Timings)> {
        let start = Instant::now();
        let img = self.decode(bytes)?;
        let decode_ms = ms(start);
        let mut results = self.detect_images(std::slice::from_ref(&img), vocab, params)?;
        let (dets, mut t) = results.pop().expect("one result per image");
        t.decode = decode_ms;
        t.total = ms(start);
        Ok((img, dets, t))
    }

    /// Runs the adaptor: `[K, T]` text embeddings to the `[K, D]` joint space.
    pub fn adapt(&self, text: &Array2<f32>) -> Result<Array2<f32>> {
        let m = &self.bundle.manifest;
        if text.ncols() != m.embedding.text_dim {
            return Err(EngineError::Vocabulary(format!(
                "text embeddings have {} columns but the model's adaptor takes {}",
                text.ncols(),
                m.embedding.text_dim
            )));
        }
        if text.nrows() == 0 {
            return Err(EngineError::Vocabulary("the vocabulary is empty".into()));
        }
        let data = HostTensor::from_f32(
            text.as_standard_layout().iter().copied().collect(),
            self.precisions.text,
        );
        let shape = vec![text.nrows() as i64, text.ncols() as i64];
        let mut session = self.adaptor.lock().unwrap_or_else(|p| p.into_inner());
        let mut outputs = session.run(ort::inputs!["text" => data.input(shape)?])?;
        let joint = outputs
            .remove("joint")
            .ok_or_else(|| EngineError::Inference("the adaptor has no `joint` output".into()))?;
        let (shape, joint) = output_f32(joint, "joint")?;
        let joint = joint.into_vec();
        if shape != [text.nrows(), m.embedding.dim] {
            return Err(EngineError::Inference(format!(
                "adaptor returned {shape:?}; expected [{}, {}]",
                text.nrows(),
                m.embedding.dim
            )));
        }
        Array2::from_shape_vec((shape[0], shape[1]), joint)
            .map_err(|e| EngineError::Inference(e.to_string()))
    }

    /// Times the bare `session.run` of the detector on an already prepared image: inputs are
    /// built before the clock starts and outputs are not read. The baseline `dosod bench`
    /// compares the whole pipeline with.
    pub fn time_session_run(
        &self,
        prepared: &Prepared,
        vocab: &Vocabulary,
    ) -> Result<std::time::Duration> {
        self.check_vocab(vocab)?;
        let spec = &self.bundle.manifest.input;
        let shape = vec![1, 3, i64::from(spec.height), i64::from(spec.width)];
        let vocab_data = HostTensor::from_f32(
            vocab.joint.as_standard_layout().iter().copied().collect(),
            self.precisions.vocab,
        );
        let vocab_shape = vec![vocab.joint.nrows() as i64, vocab.joint.ncols() as i64];
        let inputs = ort::inputs![
            "images" => prepared.pixels.input(shape)?,
            "vocab" => vocab_data.input(vocab_shape)?,
        ];
        let mut session = self.detector.lock().unwrap_or_else(|p| p.into_inner());
        let start = Instant::now();
        let outputs = session.run(inputs)?;
        let elapsed = start.elapsed();
        drop(outputs);
        Ok(elapsed)
    }

    /// Runs one forward pass so that lazy initialisation is paid before the first request.
    pub fn warm_up(&self, vocab: &Vocabulary) -> Result<()> {
        let spec = &self.bundle.manifest.input;
        let img = RgbImage::from_pixel(spec.width, spec.height, image::Rgb([114, 114, 114]));
        let prepared = self.prepare(&img)?;
        self.infer(&[&prepared], vocab).map(|_| ())
    }

    fn check_vocab(&self, vocab: &Vocabulary) -> Result<()> {
        let d = self.bundle.manifest.embedding.dim;
        if vocab.is_empty() || vocab.joint.nrows() != vocab.len() {
            return Err(EngineError::Vocabulary(format!(
                "{} labels for {} embedding rows",
                vocab.len(),
                vocab.joint.nrows()
            )));
        }
        if vocab.joint.ncols() != d {
            return Err(EngineError::Vocabulary(format!(
                "vocabulary embeddings have {} columns; the detector takes {d}",
                vocab.joint.ncols()
            )));
        }
        Ok(())
    }
}

fn concat(batch: &[&Prepared]) -> HostTensor {
    fn join<'a, T: Copy + 'a>(
        batch: &[&'a Prepared],
        get: impl Fn(&'a HostTensor) -> Option<&'a [T]>,
    ) -> Vec<T> {
        let mut out = Vec::with_capacity(batch.len() * batch[0].pixels.len());
        for p in batch {
            out.extend_from_slice(get(&p.pixels).expect("one engine, one input precision"));
        }
        out
    }
    match &batch[0].pixels {
        HostTensor::F32(_) => HostTensor::F32(join(batch, |t| match t {
            HostTensor::F32(v) => Some(v.as_slice()),
            HostTensor::F16(_) => None,
        })),
        HostTensor::F16(_) => HostTensor::F16(join(batch, |t| match t {
            HostTensor::F16(v) => Some(v.as_slice()),
            HostTensor::F32(_) => None,
        })),
    }
}

/// Milliseconds since `start`.
pub fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}
