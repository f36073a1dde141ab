//! Bad input through the real binary: a clear one-line error, exit code 1, never a panic.

use crate::common::*;

fn detect_exact(image: &std::path::Path) -> std::process::Output {
    dosod([
        "detect",
        "--model",
        path_str(&bundle("exact")),
        path_str(image),
    ])
}

#[test]
fn broken_images_are_refused() {
    for (rel, needle) in [
        ("odd/empty.jpg", "empty input"),
        ("odd/truncated.jpg", "truncated"),
        ("odd/not_an_image.jpg", "unrecognised format"),
        ("odd/bomb_30000x30000.png", "too large"),
    ] {
        assert_clean_failure(&detect_exact(&fixture(rel)), needle);
    }
}

#[test]
fn missing_image_file() {
    assert_clean_failure(
        &detect_exact(std::path::Path::new("/nonexistent/x.jpg")),
        "x.jpg",
    );
}

#[test]
fn pixel_limit_is_configurable() {
    let o = dosod([
        "detect",
        "--model",
        path_str(&bundle("exact")),
        "--max-pixels",
        "1000",
        path_str(&fixture("images/zidane.jpg")),
    ]);
    assert_clean_failure(&o, "too large");
}

#[test]
fn missing_model_dir() {
    let o = dosod([
        "detect",
        "--model",
        "/nonexistent/bundle",
        path_str(&fixture("images/zidane.jpg")),
    ]);
    assert_clean_failure(&o, "directory not found");
}

#[test]
fn manifest_that_disagrees_with_the_onnx_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = bundle("random");
    for f in ["detector.onnx", "adaptor.onnx", "vocab.npy", "vocab.txt"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let manifest = std::fs::read_to_string(src.join("model.toml")).unwrap();
    std::fs::write(
        dir.path().join("model.toml"),
        manifest.replace("dim = 512", "dim = 256"),
    )
    .unwrap();
    let o = dosod([
        "detect",
        "--model",
        path_str(dir.path()),
        path_str(&fixture("images/zidane.jpg")),
    ]);
    assert_clean_failure(
        &o,
        "tensor `vocab` has shape [?, 512] but model.toml says [?, 256]",
    );
    assert!(stderr(&o).contains("detector.onnx"));
}

#[test]
fn missing_onnx_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = bundle("exact");
    std::fs::copy(src.join("model.toml"), dir.path().join("model.toml")).unwrap();
    let o = dosod([
        "detect",
        "--model",
        path_str(dir.path()),
        path_str(&fixture("images/zidane.jpg")),
    ]);
    assert_clean_failure(&o, "detector file");
}

#[test]
fn empty_and_mismatched_vocabularies() {
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("v.npy");
    let zero = ndarray::Array2::<f32>::zeros((0, 4));
    std::fs::write(&npy, dosod::vocab::import::to_npy_bytes(&zero)).unwrap();
    std::fs::write(dir.path().join("v.txt"), "").unwrap();
    let img = fixture("images/zidane.jpg");
    let model = bundle("exact");
    let o = dosod([
        "detect",
        "--model",
        path_str(&model),
        "--vocab",
        path_str(&npy),
        path_str(&img),
    ]);
    assert_clean_failure(&o, "vocabulary is empty");

    let three = ndarray::Array2::<f32>::eye(3);
    std::fs::write(&npy, dosod::vocab::import::to_npy_bytes(&three)).unwrap();
    std::fs::write(dir.path().join("v.txt"), "a\nb\nc\n").unwrap();
    let o = dosod([
        "detect",
        "--model",
        path_str(&model),
        "--vocab",
        path_str(&npy),
        path_str(&img),
    ]);
    assert_clean_failure(&o, "3 columns but the model's adaptor takes 4");

    std::fs::write(dir.path().join("v.txt"), "a\nb\na\n").unwrap();
    let o = dosod([
        "detect",
        "--model",
        path_str(&model),
        "--vocab",
        path_str(&npy),
        path_str(&img),
    ]);
    assert_clean_failure(&o, "duplicate class name `a`");
}

#[test]
fn out_of_range_parameters() {
    let img = fixture("images/zidane.jpg");
    let model = bundle("exact");
    for (flag, value) in [
        ("--score-threshold", "1.5"),
        ("--score-threshold", "NaN"),
        ("--iou-threshold", "-0.1"),
        ("--max-detections", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let o = dosod(["detect", "--model", path_str(&model), &arg, path_str(&img)]);
        assert_clean_failure(&o, "invalid parameter");
    }
}

#[test]
fn missing_onnx_runtime_library_is_one_line() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_dosod"))
        .args([
            "detect",
            "--model",
            path_str(&bundle("exact")),
            path_str(&fixture("images/zidane.jpg")),
        ])
        .env("DOSOD_ORT_LIB", "/nonexistent/libonnxruntime.so.1.32.0")
        .current_dir(root())
        .output()
        .unwrap();
    assert_clean_failure(
        &o,
        "ONNX Runtime library not found at /nonexistent/libonnxruntime.so.1.32.0",
    );
}

#[test]
fn one_bad_image_among_good_ones_fails_the_run_but_reports_the_rest() {
    let o = dosod([
        "detect",
        "--model",
        path_str(&bundle("exact")),
        path_str(&fixture("images/zidane.jpg")),
        path_str(&fixture("odd/empty.jpg")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).lines().count(), 1);
    assert!(!stderr(&o).contains("panicked"));
}

#[test]
fn a_text_encoder_other_than_the_one_the_adaptor_was_trained_against_is_refused() {
    // The random bundle with its [text_encoder] naming another encoder than the one its `dir`
    // holds (same kind and size, so nothing else would notice).
    let dir = tempfile::tempdir().unwrap();
    let src = bundle("random");
    for entry in std::fs::read_dir(&src).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let encoder = root().join("models/encoders/all-MiniLM-L6-v2");
    let manifest = std::fs::read_to_string(src.join("model.toml")).unwrap();
    let manifest = manifest
        .replace(
            "name = \"all-MiniLM-L6-v2\"",
            "name = \"paraphrase-MiniLM-L6-v2\"",
        )
        .replace(
            "dir = \"../../encoders/all-MiniLM-L6-v2\"",
            &format!("dir = \"{}\"", path_str(&encoder)),
        );
    assert!(manifest.contains("paraphrase-MiniLM-L6-v2"));
    std::fs::write(dir.path().join("model.toml"), manifest).unwrap();
    let out = dosod([
        "detect",
        "--model",
        path_str(dir.path()),
        "--classes",
        "dog",
        path_str(&fixture("images/bus.jpg")),
    ]);
    assert_clean_failure(&out, "trained against");
}

/// `[vocabulary] store`: an unreachable Redis at start-up is an error naming it (its password
/// never printed); anything but `file` or a Redis URL is refused.
#[test]
fn unreachable_or_unknown_vocabulary_stores() {
    let model = bundle("exact");
    // Nothing listens on port 1.
    let out = dosod([
        "--model",
        path_str(&model),
        "--vocab-store",
        "redis://:hunter2@127.0.0.1:1/0",
        "vocab",
        "list",
    ]);
    assert_clean_failure(
        &out,
        "vocabulary store redis://:***@127.0.0.1:1/0 unavailable",
    );
    assert!(!stderr(&out).contains("hunter2"), "{}", stderr(&out));
    for (store, needle) in [
        ("sqlite:///tmp/x", "expected `file` or `redis://"),
        ("redis://127.0.0.1:notaport/0", "is not a Redis URL"),
    ] {
        let out = dosod([
            "--model",
            path_str(&model),
            "--vocab-store",
            store,
            "vocab",
            "list",
        ]);
        assert_clean_failure(&out, needle);
    }
}
