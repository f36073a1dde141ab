//! `dosod eval` against pycocotools' COCOeval (dosod_tools.reference.coco) on the same detections:
//! crafted edge cases (crowd boxes, area ranges, ties, empty images, missing categories) and the
//! demo model's own detections on held-out scenes.

use crate::common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const SUMMARY_KEYS: [&str; 12] = [
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
];

fn pycocotools(gt: &Path, dets: &Path, cat_ids: Option<&str>) -> Value {
    let python = root().join(".venv/bin/python");
    assert!(python.is_file(), "run `make setup` to create .venv");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "dosod_tools.reference.coco"])
        .arg(gt)
        .arg(dets);
    if let Some(ids) = cat_ids {
        cmd.args(["--cat-ids", ids]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "dosod_tools.reference.coco: {}",
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every summary number and every per-class AP of `ours` (a `dosod eval --json` report) equals
/// pycocotools' within 1e-9 (the same arithmetic; the issue's bar is 1e-3).
fn assert_agree(ours: &Value, reference: &Value) {
    let stats = reference["stats"].as_array().unwrap();
    for (key, want) in SUMMARY_KEYS.iter().zip(stats) {
        let got = ours["summary"][key].as_f64().unwrap();
        let want = want.as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-9,
            "{key}: dosod {got}, pycocotools {want}"
        );
    }
    let per_class = ours["per_class"].as_array().unwrap();
    assert_eq!(
        per_class.len(),
        reference["per_class"].as_object().unwrap().len()
    );
    for c in per_class {
        let id = c["id"].as_u64().unwrap().to_string();
        let want = &reference["per_class"][&id];
        for (i, key) in ["ap", "ap50"].iter().enumerate() {
            let (got, want) = (c[key].as_f64().unwrap(), want[i].as_f64().unwrap());
            assert!(
                (got - want).abs() < 1e-9,
                "class {id} {key}: dosod {got}, pycocotools {want}"
            );
        }
    }
}

fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
}

/// A dataset and detections built to hit COCOeval's corners: crowd boxes, all three area ranges,
/// duplicate detections, tied scores, images without detections or without ground truth, a
/// category with no ground truth but detections, one with ground truth but no detections.
fn crafted(seed: u64) -> (Value, Value) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cats: Vec<u64> = vec![1, 2, 3, 5, 8];
    let mut images = Vec::new();
    let mut anns = Vec::new();
    let mut dets = Vec::new();
    let mut ann_id = 1;
    for img in 0..40u64 {
        images.push(
            json!({"id": img, "file_name": format!("{img}.jpg"), "width": 640, "height": 480}),
        );
        let n = if img % 9 == 0 {
            0
        } else {
            rng.random_range(1..8)
        };
        for _ in 0..n {
            // Category 8 never has ground truth.
            let cat = cats[rng.random_range(0..4)];
            let side: f64 = [12.0, 40.0, 70.0, 150.0, 260.0][rng.random_range(0..5)];
            let (w, h) = (
                side * rng.random_range(0.6..1.4),
                side * rng.random_range(0.6..1.4),
            );
            let (x, y) = (
                rng.random_range(0.0..(640.0 - w)),
                rng.random_range(0.0..(480.0 - h)),
            );
            let crowd = rng.random_bool(0.08);
            anns.push(json!({"id": ann_id, "image_id": img, "category_id": cat,
                "bbox": [x, y, w, h], "area": w * h * 0.9, "iscrowd": i32::from(crowd)}));
            ann_id += 1;
            if cat == 5 {
                continue; // ground truth without any detection
            }
            if img % 13 == 5 {
                continue; // an image whose objects are all missed
            }
            for _ in 0..rng.random_range(0..3) {
                let mut jitter = [0.0; 4];
                for v in &mut jitter {
                    *v = rng.random_range(-0.25..0.25);
                }
                let score = (rng.random_range(0..20) as f64) / 20.0; // ties on purpose
                dets.push(json!({"image_id": img, "category_id": cat,
                    "bbox": [x + w * jitter[0], y + h * jitter[1], w * (1.0 + jitter[2]), h * (1.0 + jitter[3])],
                    "score": score}));
            }
        }
        for _ in 0..rng.random_range(0..4) {
            let cat = cats[rng.random_range(0..5)];
            let (w, h) = (rng.random_range(5.0..200.0), rng.random_range(5.0..200.0));
            dets.push(json!({"image_id": img, "category_id": cat,
                "bbox": [rng.random_range(0.0..400.0), rng.random_range(0.0..250.0), w, h],
                "score": rng.random_range(0.0..1.0)}));
        }
    }
    let categories: Vec<Value> = cats
        .iter()
        .map(|&c| json!({"id": c, "name": format!("thing {c}"), "split": if c % 2 == 0 { "even" } else { "odd" }}))
        .collect();
    (
        json!({"images": images, "annotations": anns, "categories": categories}),
        Value::Array(dets),
    )
}

#[test]
fn eval_equals_pycocotools_on_crafted_detections() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [1, 2, 3] {
        let (gt, dets) = crafted(seed);
        let (gt_path, det_path) = (dir.path().join("gt.json"), dir.path().join("dets.json"));
        write_json(&gt_path, &gt);
        write_json(&det_path, &dets);
        let report = dir.path().join("report.json");
        let out = dosod([
            "eval",
            "--annotations",
            path_str(&gt_path),
            "--detections",
            path_str(&det_path),
            "--group-by",
            "split",
            "--json",
            path_str(&report),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).contains("Average Precision (AP) @[ IoU=0.50:0.95 | area=   all"));
        let ours: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_agree(&ours, &pycocotools(&gt_path, &det_path, None));
        // A group is the same as evaluating only its categories.
        let odd = ours["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["value"] == "odd")
            .unwrap();
        let reference = pycocotools(&gt_path, &det_path, Some("1,3,5"));
        let want = reference["stats"][0].as_f64().unwrap();
        assert!((odd["summary"]["ap"].as_f64().unwrap() - want).abs() < 1e-9);

        // --classes restricts the evaluated categories exactly as COCOeval's catIds.
        let out = dosod([
            "eval",
            "--annotations",
            path_str(&gt_path),
            "--detections",
            path_str(&det_path),
            "--classes",
            "thing 2, thing 8",
            "--json",
            path_str(&report),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let ours: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_agree(&ours, &pycocotools(&gt_path, &det_path, Some("2,8")));
    }
}

#[test]
fn eval_of_the_demo_model_equals_pycocotools_on_its_detections() {
    let model = root().join("models/demo");
    let data = root().join("tests/fixtures/demo-heldout");
    let dir = tempfile::tempdir().unwrap();
    let annotations = data.join("annotations.json");
    // `dosod eval` of the seen classes with `extra` flags: its report, and its detections saved
    let eval = |name: &str, extra: &[&str]| {
        let report = dir.path().join(format!("{name}.report.json"));
        let dets = dir.path().join(format!("{name}.dets.json"));
        let mut args = vec!["--model", path_str(&model), "eval", "--annotations"];
        args.extend([path_str(&annotations), "--images", path_str(&data)]);
        args.extend([
            "--where",
            "split=seen",
            "--save-detections",
            path_str(&dets),
        ]);
        args.extend(["--json", path_str(&report)]);
        args.extend_from_slice(extra);
        let out = dosod(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        (report, dets)
    };
    let (ours, dets) = eval("default", &[]);
    assert_eq!(ours["images"], 24);
    assert_eq!(ours["classes"], 511);
    let detections: Value = serde_json::from_slice(&std::fs::read(&dets).unwrap()).unwrap();
    assert!(!detections.as_array().unwrap().is_empty());
    let gt: Value =
        serde_json::from_slice(&std::fs::read(data.join("annotations.json")).unwrap()).unwrap();
    let seen: Vec<String> = gt["categories"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["split"] == "seen")
        .map(|c| c["id"].to_string())
        .collect();
    let reference = pycocotools(&data.join("annotations.json"), &dets, Some(&seen.join(",")));
    assert_agree(&ours, &reference);
    // The trained model finds the seen objects of scenes it never saw: these 24 scenes give
    // AP@.5 0.275 (docs/demo-model.md); the floor sits just under it, so a changed model or
    // pipeline fails here.
    let ap50 = ours["summary"]["ap50"].as_f64().unwrap();
    assert!(
        ap50 > 0.25,
        "seen-class AP50 {ap50} on the held-out fixture"
    );
    // Batches of 5 over 24 images end with a partial batch; it must be evaluated too.
    let (ours5, dets5) = eval("batch5", &["--batch", "5"]);
    let image_ids = |path: &Path| -> std::collections::BTreeSet<u64> {
        let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|d| d["image_id"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(
        image_ids(&dets5),
        image_ids(&dets),
        "every image detected with --batch 5"
    );
    let ap50_5 = ours5["summary"]["ap50"].as_f64().unwrap();
    assert!(
        (ap50_5 - ap50).abs() < 1e-3,
        "AP50 {ap50_5} with --batch 5 vs {ap50}"
    );
    // The bundle's settings by default; the official protocol's on request, stated in the report.
    assert_eq!(ours["settings"]["protocol"], "bundle");
    assert_eq!(ours["settings"]["iou_threshold"], Value::Null);
    assert_eq!(ours["settings"]["synonyms"], "mean");
    let (official, official_dets) = eval("official", &["--protocol", "official"]);
    let settings = &official["settings"];
    assert_eq!(settings["protocol"], "official");
    assert!((settings["iou_threshold"].as_f64().unwrap() - 0.7).abs() < 1e-6);
    assert!((settings["score_threshold"].as_f64().unwrap() - 0.001).abs() < 1e-6);
    assert_eq!(settings["max_detections"], 300);
    assert_eq!(settings["multi_label"], true);
    assert_eq!(settings["synonyms"], "first");
    // NMS at 0.7 instead of 0.65 keeps other boxes (each image is capped at 300 either way).
    assert_ne!(
        std::fs::read(&official_dets).unwrap(),
        std::fs::read(&dets).unwrap(),
        "the official settings changed nothing"
    );
}

#[test]
fn eval_rejects_bad_input_clearly() {
    // Class texts that do not cover the categories one to one.
    let dir = tempfile::tempdir().unwrap();
    let texts = dir.path().join("texts.json");
    std::fs::write(&texts, r#"[["a"], ["b"]]"#).unwrap();
    let data = root().join("tests/fixtures/demo-heldout");
    let out = dosod([
        "--model",
        path_str(&root().join("models/demo")),
        "eval",
        "--annotations",
        path_str(&data.join("annotations.json")),
        "--images",
        path_str(&data),
        "--texts",
        path_str(&texts),
    ]);
    assert_clean_failure(&out, "2 phrase lists for");
    let dir = tempfile::tempdir().unwrap();
    let (gt, _) = crafted(4);
    let gt_path = dir.path().join("gt.json");
    write_json(&gt_path, &gt);
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, b"{not json").unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, b"[]").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "eval",
                "--annotations",
                path_str(&bad),
                "--detections",
                path_str(&gt_path),
            ],
            "is not a COCO dataset",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--detections",
                path_str(&bad),
            ],
            "is not a COCO results list",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--detections",
                path_str(&gt_path),
            ],
            "is not a COCO results list",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--detections",
                path_str(&empty),
                "--classes",
                "unicorn",
            ],
            "\"unicorn\" is not a category",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--detections",
                path_str(&empty),
                "--classes",
                "thing 1|thing 2",
            ],
            "not synonyms",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--detections",
                path_str(&empty),
                "--classes",
                "thing 1, thing 1",
            ],
            "given twice",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--detections",
                path_str(&empty),
                "--where",
                "split",
            ],
            "--where wants KEY=VALUE",
        ),
        (
            vec![
                "eval",
                "--annotations",
                path_str(&gt_path),
                "--images",
                "/nonexistent",
                "--model",
                "models/dosod-n-random",
            ],
            "reading /nonexistent/0.jpg",
        ),
    ];
    for (args, needle) in cases {
        assert_clean_failure(&dosod(&args), needle);
    }
    let stray = dir.path().join("stray.json");
    write_json(
        &stray,
        &json!([{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]),
    );
    assert_clean_failure(
        &dosod([
            "eval",
            "--annotations",
            path_str(&gt_path),
            "--detections",
            path_str(&stray),
        ]),
        "image 999 which is not in",
    );
}
