//! Criterion benchmarks of the CPU stages around the model: JPEG decoding (full and DCT-reduced),
//! the letterbox at 320 and 640, both together, and post-processing. OpenCV's figures for the
//! same steps come from `python -m dosod_tools.bench.frame_path --opencv-stages`
//! (docs/benchmarks.md puts them side by side).

use criterion::{Criterion, criterion_group, criterion_main};
use dosod::engine::bundle::InputSpec;
use dosod::engine::decode::{DecodeLimits, decode, decode_reduced};
use dosod::engine::letterbox::{Letterbox, letterbox_into, letterbox_sized_into};
use dosod::engine::postprocess::{DetectParams, postprocess};
use dosod::engine::resize::area;

/// zidane.jpg: a 1280x720 baseline JPEG.
fn jpeg() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/images/zidane.jpg"
    ))
    .expect("fixture image")
}

fn decoding(c: &mut Criterion) {
    let bytes = jpeg();
    let limits = DecodeLimits::default();
    c.bench_function("decode 1280x720 jpeg (libjpeg-turbo)", |b| {
        b.iter(|| decode(&bytes, &limits).unwrap())
    });
    c.bench_function("decode 1280x720 jpeg (image crate, zune-jpeg)", |b| {
        b.iter(|| image::load_from_memory(&bytes).unwrap().to_rgb8())
    });
    for side in [320, 640] {
        let spec = InputSpec::keep_ratio(side, side);
        let need = |w, h| {
            let lb = Letterbox::new(&spec, w, h);
            Some((lb.new_w, lb.new_h))
        };
        c.bench_function(&format!("decode 1280x720 jpeg reduced for {side}"), |b| {
            b.iter(|| decode_reduced(&bytes, &limits, need).unwrap())
        });
    }
}

fn letterbox(c: &mut Criterion) {
    let bytes = jpeg();
    let limits = DecodeLimits::default();
    let img = decode(&bytes, &limits).unwrap();
    for (w, h) in [(320, 180), (640, 360)] {
        c.bench_function(&format!("area resize 1280x720 -> {w}x{h}"), |b| {
            b.iter(|| area(img.as_raw(), 1280, 720, w, h))
        });
    }
    for side in [320u32, 640] {
        let spec = InputSpec::keep_ratio(side, side);
        let mut out = vec![0f32; 3 * (side * side) as usize];
        c.bench_function(&format!("letterbox 1280x720 -> {side}"), |b| {
            b.iter(|| letterbox_into(&img, &spec, &mut out).unwrap())
        });
        c.bench_function(&format!("decode+letterbox 1280x720 jpeg -> {side}"), |b| {
            b.iter(|| {
                let img = decode(&bytes, &limits).unwrap();
                letterbox_into(&img, &spec, &mut out).unwrap()
            })
        });
        let need = |w, h| {
            let lb = Letterbox::new(&spec, w, h);
            Some((lb.new_w, lb.new_h))
        };
        c.bench_function(
            &format!("decode+letterbox 1280x720 jpeg -> {side}, reduced decoding"),
            |b| {
                b.iter(|| {
                    let d = decode_reduced(&bytes, &limits, need).unwrap();
                    letterbox_sized_into(&d.image, (d.width, d.height), &spec, &mut out).unwrap()
                })
            },
        );
    }
}

fn nms(c: &mut Criterion) {
    // 8400 anchors x 80 classes as a trained detector emits them: background scores below 0.1
    // everywhere, 300 anchor x class pairs above 0.25, their boxes in clusters that NMS merges.
    let (n, k) = (8400, 80);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut scores: Vec<f32> = (0..n * k).map(|_| 0.1 * next()).collect();
    for _ in 0..300 {
        let i = (next() * (n * k) as f32) as usize % (n * k);
        scores[i] = 0.25 + 0.75 * next();
    }
    let centres: Vec<(f32, f32)> = (0..40).map(|_| (next() * 560.0, next() * 560.0)).collect();
    let boxes: Vec<f32> = (0..n)
        .flat_map(|_| {
            let (cx, cy) = centres[(next() * 40.0) as usize % 40];
            let (x, y) = (cx + next() * 20.0, cy + next() * 20.0);
            let (w, h) = (40.0 + next() * 40.0, 40.0 + next() * 40.0);
            [x, y, x + w, y + h]
        })
        .collect();
    let params = DetectParams {
        score_threshold: 0.25,
        iou_threshold: 0.65,
        max_detections: 100,
        multi_label: false,
    };
    c.bench_function("postprocess 8400x80 (deploy: thr 0.25, top 100)", |b| {
        b.iter(|| postprocess(&scores, &boxes, k, &params))
    });
    let eval = DetectParams {
        score_threshold: 0.001,
        iou_threshold: 0.7,
        max_detections: 300,
        multi_label: true,
    };
    c.bench_function(
        "postprocess 8400x80 (eval: thr 0.001, multi-label, top 300)",
        |b| b.iter(|| postprocess(&scores, &boxes, k, &eval)),
    );
}

criterion_group!(benches, decoding, letterbox, nms);
criterion_main!(benches);
