//! `dosod detect` end to end on the hand-built `exact` bundle, whose outputs are known exactly.

use crate::common::*;
use serde_json::Value;

fn expected() -> Value {
    let text = std::fs::read_to_string(generated("exact/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The letterbox inverse written out independently of the engine (docs/model-bundle.md).
fn to_image(b: [f64; 4], w: f64, h: f64) -> [f64; 4] {
    let r = (640.0 / w).min(640.0 / h);
    let nw = (w * r + 0.5).floor().min(640.0);
    let nh = (h * r + 0.5).floor().min(640.0);
    let left = ((640.0 - nw) / 2.0).floor();
    let top = ((640.0 - nh) / 2.0).floor();
    let x = |v: f64| ((v - left) / r).clamp(0.0, w);
    let y = |v: f64| ((v - top) / r).clamp(0.0, h);
    [x(b[0]), y(b[1]), x(b[2]), y(b[3])]
}

fn expected_rows(case: &str) -> Vec<(String, f64, [f64; 4])> {
    detection_rows(&expected()["detections_in_input_pixels"][case])
}

fn assert_same(got: &[(String, f64, [f64; 4])], want: &[(String, f64, [f64; 4])], tol_px: f64) {
    assert_eq!(got.len(), want.len(), "got {got:?}\nwant {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-6, "score {} vs {}", g.1, w.1);
        for i in 0..4 {
            assert!(
                (g.2[i] - w.2[i]).abs() <= tol_px,
                "box {:?} vs {:?}",
                g.2,
                w.2
            );
        }
    }
}

#[test]
fn exact_bundle_gives_known_boxes_on_the_fixture_photos() {
    let model = bundle("exact");
    let images: Vec<_> = ["bus.jpg", "zidane.jpg", "coco_000000162415.jpg"]
        .iter()
        .map(|n| fixture(&format!("images/{n}")))
        .collect();
    let rows = expected_rows("photo");
    assert_eq!(
        rows.len(),
        3,
        "anchor 200 is suppressed by NMS, 7000/7001 stay below threshold"
    );
    // Reduced JPEG decoding (zidane at 1/2, 640x360; the others need their full size at 640)
    // must report the same boxes: the geometry is the full image's whatever size was decoded.
    for reduced in ["false", "true"] {
        let mut args = vec![
            "detect".to_string(),
            "--model".into(),
            path_str(&model).into(),
            "--reduced-jpeg".into(),
            reduced.into(),
        ];
        args.extend(images.iter().map(|p| path_str(p).to_string()));
        let reports = json_lines(&dosod(&args));
        assert_eq!(reports.len(), 3);
        check_photo_reports(&reports, &rows);
    }
}

fn check_photo_reports(reports: &[Value], rows: &[(String, f64, [f64; 4])]) {
    let sizes: Vec<_> = reports
        .iter()
        .map(|r| (r["width"].as_u64().unwrap(), r["height"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes, [(810, 1080), (1280, 720), (536, 640)]);
    for report in reports {
        let (w, h) = (
            report["width"].as_f64().unwrap(),
            report["height"].as_f64().unwrap(),
        );
        let want: Vec<_> = rows
            .iter()
            .map(|(l, s, b)| (l.clone(), *s, to_image(*b, w, h)))
            .collect();
        // the engine computes in f32: allow a thousandth of a pixel
        assert_same(&detections(report), &want, 1e-3);
        for key in ["decode", "preprocess", "inference", "postprocess"] {
            assert!(report["timings_ms"][key].as_f64().unwrap() >= 0.0);
        }
    }
}

#[test]
fn channel_order_and_scaling_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let model = bundle("exact");
    for (name, rgb, case) in [
        ("red.png", [255u8, 0, 0], "pure_red_640"),
        ("blue.png", [0u8, 0, 255], "pure_blue_640"),
    ] {
        let path = dir.path().join(name);
        image::RgbImage::from_pixel(640, 640, image::Rgb(rgb))
            .save(&path)
            .unwrap();
        let reports = json_lines(&dosod([
            "detect",
            "--model",
            path_str(&model),
            path_str(&path),
        ]));
        assert_same(&detections(&reports[0]), &expected_rows(case), 1e-4);
    }
}

#[test]
fn thresholds_top_k_and_multi_label_flags_apply() {
    let model = bundle("exact");
    let img = fixture("images/zidane.jpg");
    let run = |extra: &[&str]| {
        let mut args = vec!["detect", "--model", path_str(&model), path_str(&img)];
        args.extend_from_slice(extra);
        detections(&json_lines(&dosod(&args))[0])
    };
    assert_eq!(run(&[]).len(), 3);
    assert_eq!(run(&["--score-threshold", "0.9"]).len(), 2);
    assert_eq!(run(&["--max-detections", "1"]).len(), 1);
    // IoU threshold 0.9 keeps anchor 200 (IoU 0.836 with anchor 100)
    assert_eq!(run(&["--iou-threshold", "0.9"]).len(), 4);
}

#[test]
fn annotate_writes_an_image_of_the_same_size() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.png");
    let model = bundle("exact");
    let img = fixture("images/bus.jpg");
    let o = dosod([
        "detect",
        "--model",
        path_str(&model),
        path_str(&img),
        "--annotate",
        path_str(&out),
    ]);
    json_lines(&o);
    let annotated = image::open(&out).unwrap();
    let original = image::open(&img).unwrap();
    assert_eq!(annotated.width(), original.width());
    assert_eq!(annotated.height(), original.height());
    assert_ne!(annotated.to_rgb8(), original.to_rgb8(), "boxes were drawn");
}

#[test]
fn unusual_but_valid_images_succeed() {
    let model = bundle("exact");
    let cases = [
        ("odd/one_pixel.png", 1, 1),
        ("odd/thin_3000x40.png", 3000, 40),
        ("odd/grey.png", 96, 64),
        ("odd/rgba.png", 96, 64),
        ("odd/rgb16.png", 96, 64),
        ("odd/cmyk.jpg", 96, 64),
        ("odd/progressive.jpg", 96, 64),
        ("odd/plain.webp", 96, 64),
        ("odd/plain.bmp", 96, 64),
        // stored 96x64 with EXIF orientation 6: reported after rotation
        ("odd/exif_rotated.jpg", 64, 96),
    ];
    for (rel, w, h) in cases {
        let p = fixture(rel);
        let r = &json_lines(&dosod([
            "detect",
            "--model",
            path_str(&model),
            path_str(&p),
        ]))[0];
        assert_eq!(
            (r["width"].as_u64().unwrap(), r["height"].as_u64().unwrap()),
            (w, h),
            "{rel}"
        );
        let dets = detections(r);
        assert_eq!(dets.len(), 3, "{rel}: {dets:?}");
        for (_, _, b) in dets {
            assert!(
                b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w as f64 && b[3] <= h as f64,
                "{rel}: {b:?}"
            );
        }
    }
}

#[test]
fn random_bundle_on_the_shared_photos_gives_valid_json_inside_each_image() {
    let model = bundle("random");
    let mut args = vec![
        "detect".to_string(),
        "--model".into(),
        path_str(&model).into(),
    ];
    for n in ["bus.jpg", "zidane.jpg", "coco_000000162415.jpg"] {
        args.push(path_str(&fixture(&format!("images/{n}"))).into());
    }
    let reports = json_lines(&dosod(&args));
    assert_eq!(reports.len(), 3);
    for r in &reports {
        let (w, h) = (r["width"].as_f64().unwrap(), r["height"].as_f64().unwrap());
        let dets = detections(r);
        assert!(!dets.is_empty());
        for (label, score, b) in dets {
            assert!(!label.is_empty() && (0.25..=1.0).contains(&score));
            assert!(
                b[0] >= 0.0
                    && b[1] >= 0.0
                    && b[2] <= w
                    && b[3] <= h
                    && b[0] <= b[2]
                    && b[1] <= b[3],
                "{b:?}"
            );
        }
    }
}
