//! `/v1/info`, health, metrics, the page and the OpenAPI document.

use super::*;
use crate::common::*;

#[test]
fn info_health_metrics_and_page() {
    let s = Server::start("random", &[]);
    let c = client();
    let (st, info) = json(c.get(s.url("/v1/info")).send().unwrap());
    assert_eq!(st, 200);
    assert_eq!(info["model"]["name"], "random");
    assert_eq!(info["ort_version"], "1.32.0");
    assert_eq!(info["execution_provider"], "cpu");
    assert_eq!(info["model"]["precision"], "float32");
    assert!(info["model"]["quantization"].is_null());
    assert_eq!(info["default_vocabulary"]["classes"][0], "person");
    assert_eq!(
        json(c.get(s.url("/health/ready")).send().unwrap()).1["status"],
        "ready"
    );
    let page = c.get(s.url("/")).send().unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().unwrap();
    assert!(html.contains("app.js") && html.contains("id=\"view\""));
    c.post(s.url("/v1/detect"))
        .multipart(form(&image_bytes("zidane.jpg"), &[("classes", "person")]))
        .send()
        .unwrap();
    let m = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    for name in [
        "dosod_requests_total{route=\"/v1/detect\",status=\"200\"}",
        "dosod_queue_depth",
        "dosod_stage_seconds_count{stage=\"decode\"}",
        "dosod_stage_seconds_count{stage=\"inference\"}",
        "dosod_batch_size_count",
        "dosod_vocab_cache_misses_total",
    ] {
        assert!(m.contains(name), "{name} missing from\n{m}");
    }
}

#[test]
fn openapi_lists_every_route_and_validates() {
    let s = Server::start("random", &[]);
    let c = client();
    let doc = c
        .get(s.url("/api-doc/openapi.json"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let v: Value = serde_json::from_str(&doc).unwrap();
    let paths: std::collections::BTreeSet<&str> = v["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let want: std::collections::BTreeSet<&str> = [
        "/v1/detect",
        "/v1/detect/batch",
        "/v1/vision/detection",
        "/v1/vocabularies",
        "/v1/vocabularies/{name}",
        "/v1/info",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v1/streams",
        "/v1/streams/{name}",
        "/v1/streams/{name}/vocabulary",
        "/v1/streams/{name}/enable",
        "/v1/streams/{name}/disable",
        "/v1/streams/{name}/events",
        "/v1/streams/{name}/mjpeg",
        "/v1/streams/{name}/snapshot.jpg",
        "/v1/streams/{name}/rules",
        "/v1/streams/{name}/clips",
        "/v1/events",
        "/v1/events/{id}",
        "/v1/events/{id}/snapshot.jpg",
        "/v1/events/{id}/thumbnail.jpg",
        "/v1/events/{id}/clip.mp4",
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, want);
    for (path, method) in [
        ("/v1/vocabularies/{name}", "put"),
        ("/v1/vocabularies/{name}", "delete"),
        ("/v1/detect", "post"),
        ("/v1/streams/{name}/vocabulary", "put"),
        ("/v1/streams/{name}/enable", "post"),
        ("/v1/streams/{name}/rules", "put"),
        ("/v1/events/{id}", "delete"),
    ] {
        assert!(v["paths"][path][method].is_object(), "{method} {path}");
    }
    // Issue 15 item 7: the key is required (and 401 documented) on every operation but the
    // open ones; every operation reading a body documents 413 and 429.
    let open = [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v1/vision/detection",
    ];
    for (path, item) in v["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = &op["responses"];
            if !open.contains(&path.as_str()) {
                assert!(op["security"].is_array(), "{method} {path}: no security");
                assert!(responses["401"].is_object(), "{method} {path}: no 401");
            }
            if op.get("requestBody").is_some() {
                for status in ["413", "429"] {
                    assert!(
                        responses[status].is_object(),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    assert!(v["paths"]["/v1/vision/detection"]["post"]["responses"]["415"].is_object());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let out = std::process::Command::new(root().join(".venv/bin/python"))
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ui = c.get(s.url("/docs/")).send().unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().unwrap().to_lowercase().contains("swagger"));
}
