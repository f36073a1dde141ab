//! Precisions and execution providers: the INT8 demo bundle against float32, OpenVINO against
//! the CPU EP, a missing provider refused, and the graph optimisation level reaching ONNX Runtime.

use crate::common::*;
use std::path::{Path, PathBuf};

type Dets = Vec<(String, f64, [f64; 4])>;

/// The held-out demo scenes committed as a fixture (24 images, seen and unseen classes).
fn scenes() -> (Vec<PathBuf>, String) {
    let data = root().join("tests/fixtures/demo-heldout");
    let gt: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("annotations.json")).unwrap()).unwrap();
    let mut names: Vec<String> = Vec::new();
    for a in gt["annotations"].as_array().unwrap() {
        let cat = gt["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == a["category_id"])
            .unwrap();
        let name = cat["name"].as_str().unwrap().to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let images = gt["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| data.join(i["file_name"].as_str().unwrap()))
        .collect();
    (images, names.join(", "))
}

/// `dosod detect` of every image with `flags` before the subcommand.
fn detect(model: &Path, flags: &[&str], classes: &str, images: &[PathBuf]) -> Vec<Dets> {
    let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
    args.extend(["--model".into(), path_str(model).into(), "detect".into()]);
    args.extend(["--classes".into(), classes.into()]);
    args.extend(["--score-threshold".into(), "0.1".into()]);
    args.extend(images.iter().map(|p| path_str(p).to_string()));
    json_lines(&dosod(&args)).iter().map(detections).collect()
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter).max(1e-9)
}

/// How `got` reproduces `want`: of `want`'s detections scoring at least `floor` (clear of the
/// threshold, where a tiny score change flips a box in or out), the share with a partner of
/// the same label at IoU >= 0.5, and over those partners the largest coordinate shift (px, and
/// as a share of the box's longer side) and score change.
struct Agreement {
    considered: usize,
    matched: usize,
    max_shift: f64,
    max_relative_shift: f64,
    max_score_change: f64,
}

impl Agreement {
    fn of(got: &[Dets], want: &[Dets], floor: f64) -> Agreement {
        let mut a = Agreement {
            considered: 0,
            matched: 0,
            max_shift: 0.0,
            max_relative_shift: 0.0,
            max_score_change: 0.0,
        };
        for (g, w) in got.iter().zip(want) {
            for d in w.iter().filter(|d| d.1 >= floor) {
                a.considered += 1;
                let best = g
                    .iter()
                    .filter(|x| x.0 == d.0)
                    .max_by(|x, y| iou(&x.2, &d.2).total_cmp(&iou(&y.2, &d.2)));
                if let Some(p) = best.filter(|p| iou(&p.2, &d.2) >= 0.5) {
                    a.matched += 1;
                    let shift = (0..4).map(|i| (p.2[i] - d.2[i]).abs()).fold(0.0, f64::max);
                    a.max_shift = a.max_shift.max(shift);
                    let side = (d.2[2] - d.2[0]).max(d.2[3] - d.2[1]).max(1.0);
                    a.max_relative_shift = a.max_relative_shift.max(shift / side);
                    a.max_score_change = a.max_score_change.max((p.1 - d.1).abs());
                }
            }
        }
        a
    }

    fn rate(&self) -> f64 {
        self.matched as f64 / self.considered.max(1) as f64
    }
}

/// Bounds on an [`Agreement`] in both directions: match rate, box shift as a share of the box,
/// score change, and the fewest detections that make the comparison mean something.
#[derive(Clone, Copy)]
struct Tolerance {
    min_detections: usize,
    rate: f64,
    shift: f64,
    score: f64,
}

/// Prints how `got` reproduces `want` (and back) and asserts `t`.
fn agree_within(what: &str, got: &[Dets], want: &[Dets], t: Tolerance) {
    let (a, back) = (Agreement::of(got, want, 0.2), Agreement::of(want, got, 0.2));
    eprintln!(
        "{what} on {} images: {}/{} detections (score >= 0.2) matched ({:.3}), max box shift \
         {:.2} px ({:.3} of the box), max score change {:.3}; {}/{} matched back ({:.3})",
        want.len(),
        a.matched,
        a.considered,
        a.rate(),
        a.max_shift,
        a.max_relative_shift,
        a.max_score_change,
        back.matched,
        back.considered,
        back.rate()
    );
    assert!(
        a.considered >= t.min_detections,
        "{what}: too few detections"
    );
    assert!(a.rate() >= t.rate, "{what}: detections lost");
    assert!(back.rate() >= t.rate, "{what}: detections invented");
    assert!(a.max_relative_shift <= t.shift, "{what}: a box moved");
    assert!(a.max_score_change <= t.score, "{what}: a score changed");
}

#[test]
fn int8_demo_bundle_finds_what_float32_finds() {
    let (images, classes) = scenes();
    let fp32 = detect(&root().join("models/demo"), &[], &classes, &images);
    let int8 = detect(&root().join("models/demo-int8"), &[], &classes, &images);
    // INT8 rounds every convolution: boxes of borderline detections may move a little.
    agree_within(
        "INT8 vs float32",
        &int8,
        &fp32,
        Tolerance {
            min_detections: 20,
            rate: 0.9,
            shift: 0.2,
            score: 0.15,
        },
    );
    // The manifest says what it is, and the engine reports it.
    assert_eq!(
        bench_report(&["--model", "models/demo-int8"])["precision"],
        "int8"
    );
}

/// One run of `dosod FLAGS... bench --json`: its report.
fn bench_report(flags: &[&str]) -> serde_json::Value {
    let mut args = flags.to_vec();
    args.extend(["bench", "--runs", "1", "--warmup", "0", "--json"]);
    json_lines(&dosod(&args)).remove(0)
}

/// The OpenVINO build of ONNX Runtime (`make openvino-lib`), when this machine has it.
fn openvino_lib() -> Option<PathBuf> {
    let lib = root().join(".venv-openvino/onnxruntime/capi/libonnxruntime.so.1.24.1");
    if lib.is_file() {
        Some(lib)
    } else {
        eprintln!(
            "SKIPPED: {} is missing (`make openvino-lib`; the wheel exists for Linux x86_64 only)",
            lib.display()
        );
        None
    }
}

#[test]
fn openvino_detects_what_the_cpu_ep_detects() {
    let Some(lib) = openvino_lib() else { return };
    let (images, classes) = scenes();
    let images = &images[..8];
    let ov = [
        "--ort-lib",
        path_str(&lib),
        "--execution-provider",
        "openvino",
    ];
    // float32 is the same arithmetic in another library; INT8 is OpenVINO's own integer
    // kernels and rounding.
    let tolerance = |rate, shift, score| Tolerance {
        min_detections: 5,
        rate,
        shift,
        score,
    };
    for (model, tolerance) in [
        ("models/demo", tolerance(0.99, 0.01, 0.01)),
        ("models/demo-int8", tolerance(0.85, 0.2, 0.15)),
    ] {
        let model = root().join(model);
        let cpu = detect(&model, &[], &classes, images);
        let openvino = detect(&model, &ov, &classes, images);
        let what = format!("{}: OpenVINO vs CPU EP", model.display());
        agree_within(&what, &openvino, &cpu, tolerance);
    }
    // The library in use is reported as such.
    let mut flags = ov.to_vec();
    flags.extend(["--model", "models/demo"]);
    assert_eq!(bench_report(&flags)["execution_provider"], "openvino");
}

#[test]
fn openvino_with_the_plain_wheel_is_a_clear_error() {
    // The default library is the CPU-only `onnxruntime` wheel: asking it for OpenVINO must fail
    // with a reason, never fall back to the CPU.
    let image = fixture("images/bus.jpg");
    let out = dosod([
        "--execution-provider",
        "openvino",
        "detect",
        "--model",
        "models/demo",
        path_str(&image),
    ]);
    assert_clean_failure(&out, "`openvino` is not available");
    assert!(
        stderr(&out).contains("onnxruntime-openvino"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_graph_optimisation_level_reaches_onnx_runtime() {
    // ort's `Level3` is ORT_ENABLE_LAYOUT; the default must be ORT_ENABLE_ALL. Read it back from
    // the graph ONNX Runtime optimised: on a float16 bundle only ALL fuses SiLU (Sigmoid * x)
    // into QuickGelu and leaves few Casts.
    let image = fixture("images/bus.jpg");
    let optimised = |level: Option<&str>| -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--optimized-model-dir", path_str(dir.path())];
        if let Some(level) = level {
            args.extend(["--graph-optimization", level]);
        }
        args.extend(["detect", "--model", "models/generated/random-fp16"]);
        args.extend(["--vocab", "models/generated/random-fp16/vocab.npy"]);
        args.push(path_str(&image));
        let out = dosod(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        std::fs::read(dir.path().join("detector.optimized.onnx")).unwrap()
    };
    let count = |graph: &[u8], op: &[u8]| graph.windows(op.len()).filter(|w| *w == op).count();
    let (default, all, layout) = (
        optimised(None),
        optimised(Some("all")),
        optimised(Some("layout")),
    );
    assert!(
        count(&default, b"QuickGelu") > 0,
        "the default level is not ORT_ENABLE_ALL"
    );
    assert_eq!(count(&default, b"QuickGelu"), count(&all, b"QuickGelu"));
    assert_eq!(count(&layout, b"QuickGelu"), 0);
    assert!(count(&default, b"Cast") < count(&layout, b"Cast"));
}
