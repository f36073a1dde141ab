//! Entry points for the `cargo fuzz` targets in `fuzz/`, compiled only under `--cfg fuzzing`.

#[cfg(fuzzing)]
pub use imp::*;

#[cfg(fuzzing)]
mod imp {
    use std::path::PathBuf;

    use crate::engine::decode::DecodeLimits;
    use crate::engine::postprocess::{DetectParams, check_unit};
    use crate::vocab::spec::{Classes, VocabLimits, VocabSpec};

    /// Small limits, so that a fuzzed header cannot make a decoder allocate much.
    const LIMITS: DecodeLimits = DecodeLimits {
        max_pixels: 1 << 20,
        max_side: 4096,
    };

    /// A scratch file path unique to this process (targets that parse through a file).
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dosod-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir.join(name)
    }

    /// Lossy text of fuzz bytes, for parsers whose input is already a `&str`.
    fn text(data: &[u8]) -> String {
        String::from_utf8_lossy(data).into_owned()
    }

    /// Decodes `data` as an image: never panics; a decoded image is non-empty and within limits.
    pub fn decode(data: &[u8]) {
        check_decoded(crate::engine::decode::decode(data, &LIMITS));
    }

    fn check_decoded(r: crate::engine::error::Result<image::RgbImage>) {
        if let Ok(img) = r {
            let (w, h) = img.dimensions();
            assert!(w > 0 && h > 0, "empty image {w}x{h}");
            assert!(LIMITS.check(w, h).is_ok(), "{w}x{h} is over the limits");
            assert_eq!(img.as_raw().len(), w as usize * h as usize * 3);
        }
    }

    /// The content types a detection request is tried with, chosen by the first byte.
    const CONTENT_TYPES: [Option<&str>; 8] = [
        Some("multipart/form-data; boundary=fuzzb"),
        Some("application/json"),
        Some("image/png"),
        Some("application/octet-stream"),
        Some("text/plain"),
        Some("multipart/form-data"),
        Some("Multipart/Form-Data; boundary=\"fuzzb\"; charset=utf-8"),
        None,
    ];

    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime");
    }

    /// A detection request (`DetectInput::read`): byte 0 picks the content type, byte 1 the
    /// query length (0: no query), then the query and the body. Its options go through the
    /// service's validation (`DetectOptions::params`, the vocabulary spec checks).
    pub fn detect_input(data: &[u8]) {
        use crate::server::input::DetectInput;
        let [sel, qlen, rest @ ..] = data else {
            return;
        };
        let qlen = usize::from(*qlen).min(rest.len());
        let (query, body) = rest.split_at(qlen);
        let query = (qlen > 0).then(|| text(query));
        let mut req = axum::http::Request::builder()
            .method("POST")
            .uri("/v1/detect");
        if let Some(ct) = CONTENT_TYPES[usize::from(*sel) % CONTENT_TYPES.len()] {
            req = req.header(axum::http::header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(axum::body::Body::from(body.to_vec()))
            .expect("request");
        let read = RUNTIME.with(|rt| rt.block_on(DetectInput::read(req, query.as_deref())));
        let Ok(input) = read else {
            return;
        };
        assert!(
            !input.images.is_empty(),
            "accepted a request without images"
        );
        let base = DetectParams {
            score_threshold: 0.25,
            iou_threshold: 0.65,
            max_detections: 100,
            multi_label: false,
        };
        if let Ok(p) = input.options.params(base) {
            assert!(check_unit("score_threshold", p.score_threshold).is_ok());
            assert!(check_unit("iou_threshold", p.iou_threshold).is_ok());
            assert!(p.validate().is_ok(), "{p:?}");
        }
        let request = input.options.vocab_request();
        if let Some(classes) = &request.classes {
            check_spec(&classes.spec(request.template.as_deref()));
        }
        for image in &input.images {
            check_decoded(crate::engine::decode::decode(image, &LIMITS));
        }
    }

    /// Validates a spec; a valid one has one label and at least one prompt per class,
    /// a stable hash, and survives a JSON round trip unchanged.
    fn check_spec(spec: &VocabSpec) {
        if spec.validate(&VocabLimits::default()).is_err() {
            return;
        }
        assert_eq!(spec.labels().len(), spec.classes.len());
        let prompts = spec.prompts();
        assert!(prompts.len() >= spec.classes.len());
        assert!(prompts.iter().all(|(i, _)| *i < spec.classes.len()));
        assert_eq!(spec.hash("m"), spec.hash("m"));
        let json = serde_json::to_string(spec).expect("a valid spec serialises");
        let back: VocabSpec = serde_json::from_str(&json).expect("a valid spec parses back");
        assert_eq!(&back, spec, "JSON round trip of {json}");
    }

    /// The persisted form of a named vocabulary (`store::Stored`, which is private).
    #[derive(serde::Deserialize)]
    struct Stored {
        name: String,
        #[serde(flatten)]
        spec: VocabSpec,
    }

    /// Vocabulary specs: byte 0 picks the form — a JSON `VocabSpec`, a stored vocabulary file,
    /// the `classes` text form (then a `\n` and a template), a built-in phrase-list file, JSON
    /// `classes`, or a ROS `vocabulary` string.
    pub fn vocab_spec(data: &[u8]) {
        let [sel, rest @ ..] = data else {
            return;
        };
        match sel % 6 {
            0 => {
                if let Ok(spec) = serde_json::from_slice::<VocabSpec>(rest) {
                    check_spec(&spec);
                }
            }
            1 => {
                if let Ok(stored) = serde_json::from_slice::<Stored>(rest)
                    && crate::vocab::store::validate_name(&stored.name).is_ok()
                {
                    check_spec(&stored.spec);
                }
            }
            2 => {
                let t = text(rest);
                let (classes, template) = match t.split_once('\n') {
                    Some((c, tpl)) => (c, Some(tpl)),
                    None => (t.as_str(), None),
                };
                let request = crate::vocab::store::VocabRequest::from_settings(classes, "x");
                if let Some(c) = &request.classes {
                    check_spec(&c.spec(template));
                }
            }
            3 => {
                if let Ok(lists) = serde_json::from_slice::<Vec<Vec<String>>>(rest) {
                    let mut spec = VocabSpec::from_phrase_lists(lists);
                    spec.synonyms = crate::vocab::spec::Synonyms::First;
                    check_spec(&spec);
                }
            }
            4 => {
                if let Ok(classes) = serde_json::from_slice::<Classes>(rest) {
                    check_spec(&classes.spec(None));
                }
            }
            _ => ros2_vocabulary(&text(rest)),
        }
    }

    /// A ROS `vocabulary` string (parameter or topic) through the node's parsing and the checks.
    #[cfg(feature = "ros2")]
    fn ros2_vocabulary(text: &str) {
        use crate::ros2::control::{list_of, request_of};
        if let Some(c) = &request_of(&list_of(text)).classes {
            check_spec(&c.spec(None));
        }
    }

    /// Without the ROS 2 node there is no vocabulary string to parse.
    #[cfg(not(feature = "ros2"))]
    fn ros2_vocabulary(_text: &str) {}

    /// Embedding files: byte 0 picks a 2-D float `.npy`, a unicode `.npy` (names) or a `.npz`
    /// archive (read through a scratch file, as `read_npz` takes a path).
    pub fn vocab_npy(data: &[u8]) {
        use crate::vocab::import::{parse_f32_matrix, parse_strings, read_npz};
        let [sel, rest @ ..] = data else {
            return;
        };
        match sel % 3 {
            0 => {
                if let Ok(m) = parse_f32_matrix(rest) {
                    assert!(m.len() * 2 <= rest.len(), "more values than bytes");
                }
            }
            1 => {
                if let Ok(names) = parse_strings(rest) {
                    let chars: usize = names.iter().map(|n| n.chars().count()).sum();
                    assert!(chars * 4 <= rest.len(), "more characters than bytes");
                    let _ = crate::vocab::validate_labels(&names);
                }
            }
            _ => {
                let path = scratch("v.npz");
                std::fs::write(&path, rest).expect("scratch write");
                if let Ok(a) = read_npz(&path) {
                    assert!(a.joint.is_some() || a.text.is_some());
                    let _ = crate::vocab::validate_labels(&a.names);
                }
            }
        }
    }

    /// `model.toml`: `Bundle::open` on a scratch directory holding `data` as the manifest; an
    /// accepted manifest satisfies the documented checks.
    pub fn manifest(data: &[u8]) {
        let path = scratch("bundle/model.toml");
        std::fs::create_dir_all(path.parent().expect("parent")).expect("scratch directory");
        std::fs::write(&path, data).expect("scratch write");
        let dir = path.parent().expect("parent");
        let Ok(bundle) = crate::engine::bundle::Bundle::open(dir) else {
            return;
        };
        let m = &bundle.manifest;
        assert!(m.input.width > 0 && m.input.height > 0);
        assert_eq!(m.input.resize, "keep_ratio");
        assert!(!m.input.strides.is_empty() && !m.input.strides.contains(&0));
        assert!(m.embedding.dim > 0 && m.embedding.text_dim > 0);
        assert!(check_unit("s", m.postprocess.score_threshold).is_ok());
        assert!(check_unit("i", m.postprocess.iou_threshold).is_ok());
        if let Some(n) = m.input.anchors {
            assert_eq!(n, m.input.anchors_from_strides());
        }
    }

    /// Reads a little-endian `u32` at `at`, 0 past the end.
    #[cfg(feature = "ros2")]
    fn u32_at(data: &[u8], at: usize) -> u32 {
        let mut b = [0u8; 4];
        for (i, x) in b.iter_mut().enumerate() {
            *x = data.get(at + i).copied().unwrap_or(0);
        }
        u32::from_le_bytes(b)
    }

    /// A raw `sensor_msgs/Image` to RGB (`image_to_rgb`): width, height and step as `u32`
    /// (bytes 0..12), byte 12 the encoding length, then the encoding and the pixel data.
    #[cfg(feature = "ros2")]
    pub fn ros2_image(data: &[u8]) {
        let (width, height, step) = (u32_at(data, 0), u32_at(data, 4), u32_at(data, 8));
        let rest = data.get(12..).unwrap_or_default();
        let (elen, rest) = rest.split_first().unwrap_or((&0, &[][..]));
        let (encoding, pixels) = rest.split_at(usize::from(*elen % 16).min(rest.len()));
        let msg = crate::ros2::msg::Image {
            width,
            height,
            step,
            encoding: text(encoding),
            data: pixels.to_vec(),
            ..Default::default()
        };
        if let Ok(img) = crate::ros2::convert::image_to_rgb(msg, &LIMITS) {
            assert_eq!(img.dimensions(), (width, height));
            assert!(LIMITS.check(width, height).is_ok());
            assert_eq!(img.as_raw().len(), width as usize * height as usize * 3);
        }
    }

    /// A DDS sample as the node's subscriptions decode it: byte 0 picks the message type, then
    /// the serialized payload (4-byte encapsulation header, then CDR). Decoded images go on
    /// through `image_to_rgb` / `decode`, vocabulary strings through the spec checks.
    #[cfg(feature = "ros2")]
    pub fn ros2_cdr(data: &[u8]) {
        use ros2_client::dds::rustdds::RepresentationIdentifier;
        use ros2_client::dds::rustdds::no_key::DeserializerAdapter;
        use ros2_client::dds::rustdds::serialization::CDRDeserializerAdapter;

        use crate::ros2::msg::{CompressedImage, Detection2DArray, Image, StringMsg};

        fn de<M: serde::de::DeserializeOwned>(payload: &[u8]) -> Option<M> {
            let rep = RepresentationIdentifier::from_bytes(payload.get(..2)?).ok()?;
            if !CDRDeserializerAdapter::<M>::supported_encodings().contains(&rep) {
                return None;
            }
            CDRDeserializerAdapter::<M>::from_bytes(payload.get(4..)?, rep).ok()
        }

        let [sel, payload @ ..] = data else {
            return;
        };
        match sel % 4 {
            0 => {
                if let Some(m) = de::<Image>(payload) {
                    let _ = crate::ros2::convert::image_to_rgb(m, &LIMITS);
                }
            }
            1 => {
                if let Some(m) = de::<CompressedImage>(payload) {
                    check_decoded(crate::engine::decode::decode(&m.data, &LIMITS));
                }
            }
            2 => {
                if let Some(m) = de::<StringMsg>(payload) {
                    ros2_vocabulary(&m.data);
                }
            }
            _ => {
                let _ = de::<Detection2DArray>(payload);
            }
        }
    }

    /// Configuration: byte 0 picks a whole config file (loaded and checked as `--config`
    /// does, through a scratch file) or one `[[streams]]` entry (parsed and validated).
    pub fn config(data: &[u8]) {
        let [sel, rest @ ..] = data else {
            return;
        };
        if sel % 2 == 0 {
            let path = scratch("config.toml");
            std::fs::write(&path, rest).expect("scratch write");
            let args = crate::config::ConfigArgs {
                config: Some(path),
                ..Default::default()
            };
            let Ok(s) = args.settings() else {
                return;
            };
            assert!(crate::stream::config::validate_streams(&s.streams).is_ok());
            for stream in &s.streams {
                let _ = (stream.redacted_url(), stream.is_file());
            }
            let _ = s.mqtt.validate();
            if s.ros2.validate().is_ok() {
                let _ = s.ros2.node_fqn();
                let _ = s.ros2.resolve(&s.ros2.detections_topic);
            }
        } else {
            let t = text(rest);
            if let Ok(stream) = toml::from_str::<crate::stream::config::StreamConfig>(&t) {
                let _ = (stream.validate(), stream.redacted_url(), stream.is_file());
            }
        }
    }
}
