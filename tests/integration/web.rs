//! The web page end to end in headless Chromium (playwright-core, tests/web/page_test.mjs):
//! load `/`, upload a fixture image, type classes, see boxes drawn. The screenshot is kept in
//! artifacts/page.png.

use crate::common::*;

#[test]
fn page_uploads_an_image_and_draws_boxes() {
    let web = root().join("tests/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "run `cd tests/web && npm ci` (make test does it)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "Chromium not found at {chromium}: `apt-get install chromium` (.ci/run does it)"
    );
    let s = Server::start("random", &[]);
    let artifacts = root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("page.png");
    let _ = std::fs::remove_file(&shot);
    let out = std::process::Command::new("node")
        .arg(web.join("page_test.mjs"))
        .arg(&s.base)
        .arg(fixture("images/bus.jpg"))
        .arg("person, bus")
        .arg(&shot)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "page test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(report["boxes"].as_u64().unwrap() >= 1, "{report}");
    let png = image::open(&shot).expect("screenshot written");
    assert!(png.width() > 300 && png.height() > 300);

    // An error from the server is shown on the page, not swallowed.
    let out = std::process::Command::new("node")
        .arg(web.join("page_test.mjs"))
        .arg(&s.base)
        .arg(fixture("images/bus.jpg"))
        .arg("dog,,cat")
        .arg(artifacts.join("page-error.png"))
        .args(["--expect-error", "blank phrase"])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn streams_page_shows_a_live_camera_its_events_and_changes_its_vocabulary() {
    let web = root().join("tests/web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "run `cd tests/web && npm ci` (make test does it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streams.toml");
    std::fs::write(
        &config,
        format!(
            "[events]\ndir = \"{}\"\n[[streams]]\nname = \"clip\"\nurl = \"{}\"\nloop = true\nfps = 4\nscore_threshold = 0.15\n\
             [[streams.rules.zones]]\nname = \"left\"\npoints = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]\n\
             [[streams.rules.masks]]\npoints = [[0.9, 0.9], [1, 0.9], [1, 1], [0.9, 1]]\n",
            path_str(&dir.path().join("events")),
            path_str(&fixture("streams/scenes.mp4"))
        ),
    )
    .unwrap();
    let s = Server::start_at(
        &root().join("models/demo"),
        &["--config", path_str(&config)],
    );
    let artifacts = root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = std::process::Command::new("node")
        .arg(web.join("streams_page_test.mjs"))
        .arg(&s.base)
        .arg("clip")
        .arg("red apple, pizza")
        .arg(artifacts.join("streams-page.png"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "streams page test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["state"], "running");
    assert!(report["image_width"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["vocabulary"], "red apple, pizza");
    assert_eq!(
        (report["zones"].as_u64(), report["masks"].as_u64()),
        (Some(1), Some(1)),
        "{report}"
    );
    assert!(report["thumbnail_width"].as_u64().unwrap() > 0, "{report}");
    // The server saw the change too.
    let status: serde_json::Value = reqwest::blocking::get(s.url("/v1/streams/clip"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        status["vocabulary"],
        serde_json::json!(["red apple", "pizza"])
    );
}
