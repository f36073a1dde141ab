//! The web page end to end in headless Chromium (playwright-core, tests/web/page_test.mjs):
//! load `/`, upload a fixture image, type classes, see boxes drawn. The screenshot is kept in
//! artifacts/page.png.

mod common;

use common::*;

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
