//! The Rust engine against an independent Python reference (onnxruntime + numpy letterbox + NMS,
//! `dosod_tools.reference.detect`) and float16 bundles against float32 ones.

use crate::common::*;
use std::process::Command;

type Dets = Vec<(String, f64, [f64; 4])>;

fn reference(model: &str, images: &[std::path::PathBuf]) -> Vec<Dets> {
    let bundle = bundle(model);
    let python = root().join(".venv/bin/python");
    assert!(python.is_file(), "run `make setup` to create .venv");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "dosod_tools.reference.detect"])
        .args(["--model", path_str(&bundle)])
        .args(["--vocab", path_str(&bundle.join("vocab.npy"))])
        .args(["--names", path_str(&bundle.join("vocab.txt"))])
        .args(images);
    json_lines(&cmd.output().unwrap())
        .iter()
        .map(detections)
        .collect()
}

fn rust(model: &str, images: &[std::path::PathBuf]) -> Vec<Dets> {
    let mut args = vec![
        "detect".to_string(),
        "--model".into(),
        path_str(&bundle(model)).into(),
    ];
    args.extend(images.iter().map(|p| path_str(p).to_string()));
    json_lines(&dosod(&args)).iter().map(detections).collect()
}

/// Every detection of `want` scoring at least `margin` above the threshold has a partner in
/// `got` with the same label, a box within `px` and a score within `score_tol` (and vice versa
/// when `margin` is 0: then the lists must be identical in length and order).
fn agree(got: &Dets, want: &Dets, px: f64, score_tol: f64, margin: f64, what: &str) {
    if margin == 0.0 {
        assert_eq!(
            got.len(),
            want.len(),
            "{what}: counts differ\n{got:?}\n{want:?}"
        );
    }
    for w in want.iter().filter(|w| w.1 >= 0.25 + margin) {
        let partner = got.iter().find(|g| {
            g.0 == w.0
                && (0..4).all(|i| (g.2[i] - w.2[i]).abs() <= px)
                && (g.1 - w.1).abs() <= score_tol
        });
        assert!(partner.is_some(), "{what}: no partner for {w:?} in {got:?}");
    }
}

fn pngs(names: &[&str]) -> Vec<std::path::PathBuf> {
    names
        .iter()
        .map(|n| generated(&format!("fixtures-png/{n}")))
        .collect()
}

#[test]
fn rust_equals_python_reference_when_no_resize_is_needed() {
    // Photos already 640 on the long side: letterbox is padding only, so the tensors are
    // bit-identical and so must the detections be.
    let images = pngs(&["bus-640.png", "zidane-640.png", "coco_000000162415-640.png"]);
    let (r, p) = (rust("random", &images), reference("random", &images));
    for ((got, want), img) in r.iter().zip(&p).zip(&images) {
        assert!(!want.is_empty());
        agree(got, want, 1.0, 1e-4, 0.0, &img.display().to_string());
        agree(want, got, 1.0, 1e-4, 0.0, &img.display().to_string());
    }
}

#[test]
fn rust_agrees_with_python_reference_through_the_resize() {
    // Full-size photos (shrunk with OpenCV's INTER_AREA by both: the tensors are equal) and a
    // small crop (enlarged bilinearly: within one grey level): the same detections, boxes within
    // 1 px and scores within 1e-3.
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("bus-small.png");
    image::open(generated("fixtures-png/bus.png"))
        .unwrap()
        .crop_imm(100, 300, 300, 200)
        .save(&small)
        .unwrap();
    let mut images = pngs(&["bus.png", "zidane.png", "coco_000000162415.png"]);
    images.push(small);
    let (r, p) = (rust("random", &images), reference("random", &images));
    for ((got, want), img) in r.iter().zip(&p).zip(&images) {
        assert!(!want.is_empty() || img.ends_with("bus-small.png"));
        agree(got, want, 1.0, 1e-3, 0.0, &img.display().to_string());
        agree(want, got, 1.0, 1e-3, 0.0, &img.display().to_string());
    }
}

#[test]
fn float16_bundle_matches_float32() {
    let images = pngs(&["bus-640.png", "zidane-640.png"]);
    let (full, half) = (rust("random", &images), rust("random-fp16", &images));
    for ((h, f), img) in half.iter().zip(&full).zip(&images) {
        agree(h, f, 1.0, 1e-2, 0.02, &img.display().to_string());
    }
}

#[test]
fn dosod_n_bundle_matches_pytorch_reference_detections() {
    // models/dosod-n-random (exported by dosod_tools.model.export_dosod) against detections computed
    // from the PyTorch network itself (dosod_tools.fixtures.make_dosod_n_fixture).
    let model = root().join("models/dosod-n-random");
    let vocab = fixture("dosod-n/vocab.npy");
    for stem in ["bus", "zidane", "coco_000000162415"] {
        for variant in ["", "-640"] {
            let name = format!("{stem}{variant}");
            let image = generated(&format!("fixtures-png/{name}.png"));
            let want_json: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(fixture(&format!("dosod-n/{name}.json"))).unwrap(),
            )
            .unwrap();
            let want = detections(&want_json);
            let got = detections(
                &json_lines(&dosod([
                    "detect",
                    "--model",
                    path_str(&model),
                    "--vocab",
                    path_str(&vocab),
                    path_str(&image),
                ]))[0],
            );
            assert!(!want.is_empty());
            agree(&got, &want, 1.0, 5e-3, 0.0, &name);
            agree(&want, &got, 1.0, 5e-3, 0.0, &name);
        }
    }
}
