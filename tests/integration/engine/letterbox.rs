//! The engine's letterboxed tensor against OpenCV's (`dosod_tools.reference.letterbox`: mmyolo
//! 0.6.0 geometry, `INTER_AREA` shrink, `INTER_LINEAR` enlarge) on lossless images of many sizes,
//! thin and odd ones included: the same geometry, and every value within one grey level.

use crate::common::*;
use dosod::engine::bundle::InputSpec;
use dosod::engine::letterbox::letterbox_into;
use serde_json::Value;
use std::process::Command;

#[test]
fn letterboxed_tensors_equal_opencv_within_one_grey_level() {
    let dir = tempfile::tempdir().unwrap();
    let python = root().join(".venv/bin/python");
    let made = Command::new(&python)
        .args(["-m", "dosod_tools.reference.letterbox", "--out"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(made.success(), "the OpenCV reference failed");
    let spec = InputSpec::keep_ratio(640, 640);
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("cases.json")).unwrap())
            .unwrap();
    assert!(cases.len() >= 15);
    let plane = 640 * 640;
    let mut report = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let img = image::open(dir.path().join(format!("{name}.png")))
            .unwrap()
            .to_rgb8();
        let want = std::fs::read(dir.path().join(format!("{name}.rgb"))).unwrap();
        let mut out = vec![0f32; 3 * plane];
        let lb = letterbox_into(&img, &spec, &mut out).unwrap();
        let geometry = [lb.new_w, lb.new_h, lb.left, lb.top];
        let expected: Vec<u32> = ["new_w", "new_h", "left", "top"]
            .iter()
            .map(|k| case[*k].as_u64().unwrap() as u32)
            .collect();
        assert_eq!(geometry.to_vec(), expected, "{name}: geometry");
        let (mut worst, mut off) = (0i32, 0usize);
        for (i, px) in want.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let got = (out[c * plane + i] * 255.0).round() as i32;
                let d = (got - i32::from(px[c])).abs();
                worst = worst.max(d);
                off += usize::from(d > 0);
            }
        }
        report.push(format!("{name}: max {worst}, {off} values off"));
        assert!(worst <= 1, "{name}: {worst} grey levels from OpenCV");
    }
    eprintln!("{}", report.join("\n"));
}
