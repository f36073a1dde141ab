//! `dosod serve` through real HTTP: every route and input form, batching under concurrency,
//! overload, persistence across restarts, bad input, API keys, shutdown.

mod common;

use std::time::Duration;

use common::*;
use reqwest::blocking::{Client, multipart};
use serde_json::Value;

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn image_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("images/{name}"))).unwrap()
}

fn form(image: &[u8], fields: &[(&str, &str)]) -> multipart::Form {
    let mut f = multipart::Form::new().part(
        "image",
        multipart::Part::bytes(image.to_vec())
            .file_name("x.jpg")
            .mime_str("image/jpeg")
            .unwrap(),
    );
    for (k, v) in fields {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

fn json(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = resp.text().unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")),
    )
}

fn dets(v: &Value) -> Vec<(String, f64, [f64; 4])> {
    detections(v)
}

#[test]
fn detect_in_every_input_form_gives_the_same_answer() {
    let s = Server::start("random", &[]);
    let c = client();
    let img = image_bytes("zidane.jpg");
    let (st, multi) = json(
        c.post(s.url("/v1/detect"))
            .multipart(form(
                &img,
                &[("classes", "person, dog|puppy"), ("score_threshold", "0.1")],
            ))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{multi}");
    assert!(!dets(&multi).is_empty());
    assert_eq!(multi["image"]["width"], 1280);
    assert_eq!(
        multi["vocabulary"]["classes"],
        serde_json::json!(["person", "dog"])
    );
    for k in [
        "queue",
        "decode",
        "preprocess",
        "inference",
        "postprocess",
        "total",
    ] {
        assert!(multi["timings_ms"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
    let raw = c
        .post(s.url("/v1/detect?classes=person%2C+dog%7Cpuppy&score_threshold=0.1"))
        .header("content-type", "image/jpeg")
        .body(img.clone())
        .send()
        .unwrap();
    for h in ["x-queue-time", "x-inference-time", "x-total-time"] {
        assert!(raw.headers().contains_key(h), "{h}");
    }
    let (st, raw) = json(raw);
    assert_eq!(st, 200);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&img);
    let (st, from_json) = json(
        c.post(s.url("/v1/detect"))
            .json(&serde_json::json!({"image": b64, "classes": ["person", ["dog", "puppy"]], "score_threshold": 0.1}))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200, "{from_json}");
    assert_eq!(dets(&multi), dets(&raw));
    assert_eq!(dets(&multi), dets(&from_json));
}

#[test]
fn annotated_answers_are_images() {
    let s = Server::start("random", &[]);
    let c = client();
    let img = image_bytes("bus.jpg");
    let r = c
        .post(s.url("/v1/detect?annotate=true"))
        .multipart(form(&img, &[]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&r.bytes().unwrap()).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (810, 1080));
    let r = c
        .post(s.url("/v1/detect"))
        .header("accept", "image/png")
        .multipart(form(&img, &[]))
        .send()
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(
        image::load_from_memory_with_format(&r.bytes().unwrap(), image::ImageFormat::Png).is_ok()
    );
}

#[test]
fn batch_route_answers_in_order_with_per_image_errors() {
    let s = Server::start("random", &[]);
    let c = client();
    let f = multipart::Form::new()
        .part(
            "image",
            multipart::Part::bytes(image_bytes("zidane.jpg")).file_name("a.jpg"),
        )
        .part(
            "image",
            multipart::Part::bytes(b"not an image".to_vec()).file_name("b.jpg"),
        )
        .part(
            "image",
            multipart::Part::bytes(image_bytes("bus.jpg")).file_name("c.jpg"),
        );
    let (st, v) = json(
        c.post(s.url("/v1/detect/batch"))
            .multipart(f)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["image"]["width"], 1280);
    assert_eq!(results[1]["error_type"], "decode");
    assert_eq!(results[2]["image"]["width"], 810);
}

#[test]
fn deepstack_route_has_the_exact_shape() {
    let s = Server::start("random", &["--deepstack-vocabulary", "coco"]);
    let c = client();
    let f = form(&image_bytes("bus.jpg"), &[("min_confidence", "0.3")]);
    let (st, v) = json(
        c.post(s.url("/v1/vision/detection"))
            .multipart(f)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    assert_eq!(v["success"], true);
    let preds = v["predictions"].as_array().unwrap();
    assert!(!preds.is_empty());
    let mut last = f64::INFINITY;
    for p in preds {
        let keys: std::collections::BTreeSet<&str> =
            p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["confidence", "label", "x_max", "x_min", "y_max", "y_min"]
                .into_iter()
                .collect()
        );
        let conf = p["confidence"].as_f64().unwrap();
        assert!(conf <= last && conf >= 0.3);
        last = conf;
        assert!(p["x_min"].as_i64().unwrap() <= p["x_max"].as_i64().unwrap());
    }
}

#[test]
fn concurrent_requests_over_three_vocabularies_equal_single_answers() {
    let s = Server::start(
        "random",
        &["--max-batch", "8", "--max-queue-delay-us", "2000"],
    );
    let c = client();
    let vocabs = [
        "person, dog",
        "car|automobile, bicycle, bus",
        "traffic light, stop sign",
    ];
    let images = ["zidane.jpg", "bus.jpg", "coco_000000162415.jpg"];
    let single: Vec<Vec<Value>> = vocabs
        .iter()
        .map(|v| {
            images
                .iter()
                .map(|i| {
                    let f = form(
                        &image_bytes(i),
                        &[("classes", v), ("score_threshold", "0.05")],
                    );
                    json(c.post(s.url("/v1/detect")).multipart(f).send().unwrap()).1["detections"]
                        .clone()
                })
                .collect()
        })
        .collect();
    let handles: Vec<_> = (0..64)
        .map(|n| {
            let url = s.url("/v1/detect");
            let (vi, ii) = (n % 3, (n / 3) % 3);
            let body = image_bytes(images[ii]);
            let classes = vocabs[vi].to_string();
            std::thread::spawn(move || {
                let f = form(&body, &[("classes", &classes), ("score_threshold", "0.05")]);
                let (st, v) = json(client().post(url).multipart(f).send().unwrap());
                assert_eq!(st, 200, "{v}");
                (vi, ii, v["detections"].clone())
            })
        })
        .collect();
    for h in handles {
        let (vi, ii, got) = h.join().unwrap();
        let want = &single[vi][ii];
        let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
        assert_eq!(g.len(), w.len(), "vocabulary {vi} image {ii}");
        for (a, b) in g.iter().zip(w) {
            assert_eq!(a["label"], b["label"]);
            assert!((a["score"].as_f64().unwrap() - b["score"].as_f64().unwrap()).abs() < 1e-4);
        }
    }
    // batching happened: the batch-size histogram saw batches larger than one
    let metrics = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    let count_le_1: f64 = metric(&metrics, "dosod_batch_size_bucket{le=\"1\"}");
    let count: f64 = metric(&metrics, "dosod_batch_size_count");
    assert!(
        count < count_le_1 + 64.0 && count_le_1 < count,
        "no batch > 1:\n{metrics}"
    );
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn overload_is_refused_fast_and_the_server_stays_ready() {
    let s = Server::start(
        "random",
        &[
            "--queue-size",
            "4",
            "--max-batch",
            "2",
            "--decode-concurrency",
            "8",
        ],
    );
    let img = image_bytes("zidane.jpg");
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let url = s.url("/v1/detect");
            let body = img.clone();
            std::thread::spawn(move || {
                let r = client()
                    .post(url)
                    .header("content-type", "image/jpeg")
                    .body(body)
                    .send()
                    .unwrap();
                let status = r.status().as_u16();
                let retry = r.headers().get("retry-after").is_some();
                let (_, v) = json(r);
                (status, retry, v)
            })
        })
        .collect();
    let mut counts = std::collections::BTreeMap::new();
    for h in handles {
        let (status, retry, v) = h.join().unwrap();
        *counts.entry(status).or_insert(0) += 1;
        match status {
            200 => assert!(v["detections"].is_array()),
            429 => {
                assert!(retry, "429 without Retry-After");
                assert_eq!(v["error_type"], "overloaded");
            }
            503 => assert_eq!(v["error_type"], "timeout"),
            other => panic!("unexpected status {other}: {v}"),
        }
    }
    assert!(counts.get(&429).copied().unwrap_or(0) > 0, "{counts:?}");
    assert!(counts.get(&200).copied().unwrap_or(0) > 0, "{counts:?}");
    let c = client();
    assert_eq!(c.get(s.url("/health/ready")).send().unwrap().status(), 200);
    let (st, _) = json(
        c.post(s.url("/v1/detect"))
            .multipart(form(&img, &[]))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    // memory stayed bounded: the server's resident set is far below 100 decoded requests' worth
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", s.child.id()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(rss_kb < 1_500_000, "RSS {rss_kb} kB");
}

#[test]
fn vocabulary_crud_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path()).to_string();
    let c = client();
    {
        let s = Server::start("random", &["--data-dir", &data]);
        let (st, v) = json(
            c.put(s.url("/v1/vocabularies/dock"))
                .json(&serde_json::json!({"classes": ["forklift", ["pallet", "skid"]], "template": "a photo of a {}"}))
                .send()
                .unwrap(),
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["classes"], serde_json::json!(["forklift", "pallet"]));
        let (st, list) = json(c.get(s.url("/v1/vocabularies")).send().unwrap());
        assert_eq!(st, 200);
        assert_eq!(list["vocabularies"][0]["name"], "dock");
        let (st, _) = json(
            c.put(s.url("/v1/vocabularies/gone"))
                .json(&serde_json::json!({"classes": ["x"]}))
                .send()
                .unwrap(),
        );
        assert_eq!(st, 200);
        assert_eq!(
            c.delete(s.url("/v1/vocabularies/gone"))
                .send()
                .unwrap()
                .status(),
            204
        );
        assert_eq!(s.terminate().code(), Some(0));
    }
    let s = Server::start("random", &["--data-dir", &data]);
    let (st, v) = json(c.get(s.url("/v1/vocabularies/dock")).send().unwrap());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["template"], "a photo of a {}");
    assert_eq!(
        json(c.get(s.url("/v1/vocabularies/gone")).send().unwrap()).0,
        404
    );
    let (st, r) = json(
        c.post(s.url("/v1/detect"))
            .multipart(form(
                &image_bytes("bus.jpg"),
                &[("vocabulary", "dock"), ("score_threshold", "0.01")],
            ))
            .send()
            .unwrap(),
    );
    assert_eq!(st, 200);
    assert_eq!(r["vocabulary"]["name"], "dock");
    assert!(
        dets(&r)
            .iter()
            .all(|d| d.0 == "forklift" || d.0 == "pallet")
    );
}

#[test]
fn bad_input_gets_the_right_4xx_and_the_server_survives() {
    let s = Server::start(
        "random",
        &["--max-body-bytes", "2000000", "--max-pixels", "4000000"],
    );
    let c = client();
    let img = image_bytes("zidane.jpg");
    let bomb = std::fs::read(fixture("odd/bomb_30000x30000.png")).unwrap();
    let truncated = std::fs::read(fixture("odd/truncated.jpg")).unwrap();
    let many: String = (0..10_000)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    type Req = Box<dyn Fn(&Client) -> reqwest::blocking::Response>;
    let url = |p: &str| s.url(p);
    let cases: Vec<(&str, u16, &str, Req)> = vec![
        ("empty body", 400, "decode", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .header("content-type", "image/jpeg")
                    .body(Vec::new())
                    .send()
                    .unwrap()
            })
        }),
        ("wrong content type", 415, "unsupported_media_type", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .header("content-type", "text/plain")
                    .body("hi")
                    .send()
                    .unwrap()
            })
        }),
        ("no content type", 415, "unsupported_media_type", {
            let u = url("/v1/detect");
            Box::new(move |c| c.post(&u).body("hi").send().unwrap())
        }),
        ("truncated jpeg", 400, "decode", {
            let (u, b) = (url("/v1/detect"), truncated.clone());
            Box::new(move |c| {
                c.post(&u)
                    .header("content-type", "image/jpeg")
                    .body(b.clone())
                    .send()
                    .unwrap()
            })
        }),
        ("non-image bytes", 400, "decode", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(b"GIF89a? no", &[]))
                    .send()
                    .unwrap()
            })
        }),
        ("base64 garbage", 400, "validation", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .json(&serde_json::json!({"image": "%%%not base64%%%"}))
                    .send()
                    .unwrap()
            })
        }),
        ("json without image", 400, "validation", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .json(&serde_json::json!({"classes": "dog"}))
                    .send()
                    .unwrap()
            })
        }),
        ("malformed json", 400, "validation", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .header("content-type", "application/json")
                    .body("{\"image\": ")
                    .send()
                    .unwrap()
            })
        }),
        ("multipart without image", 400, "validation", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .multipart(multipart::Form::new().text("classes", "dog"))
                    .send()
                    .unwrap()
            })
        }),
        ("bomb header", 422, "too_large", {
            let (u, b) = (url("/v1/detect"), bomb.clone());
            Box::new(move |c| {
                c.post(&u)
                    .header("content-type", "image/png")
                    .body(b.clone())
                    .send()
                    .unwrap()
            })
        }),
        ("10k classes", 422, "validation", {
            let (u, b, m) = (url("/v1/detect"), img.clone(), many.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("classes", &m)]))
                    .send()
                    .unwrap()
            })
        }),
        ("NaN threshold", 422, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("score_threshold", "NaN")]))
                    .send()
                    .unwrap()
            })
        }),
        ("negative threshold", 422, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("score_threshold", "-0.5")]))
                    .send()
                    .unwrap()
            })
        }),
        ("iou above one", 422, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("iou_threshold", "1.5")]))
                    .send()
                    .unwrap()
            })
        }),
        ("threshold not a number", 400, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("score_threshold", "high")]))
                    .send()
                    .unwrap()
            })
        }),
        ("zero max detections", 422, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("max_detections", "0")]))
                    .send()
                    .unwrap()
            })
        }),
        ("unknown field", 400, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("colour", "red")]))
                    .send()
                    .unwrap()
            })
        }),
        ("blank class", 422, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("classes", "dog,,cat")]))
                    .send()
                    .unwrap()
            })
        }),
        ("unknown vocabulary", 404, "not_found", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                c.post(&u)
                    .multipart(form(&b, &[("vocabulary", "nope")]))
                    .send()
                    .unwrap()
            })
        }),
        ("path traversal name", 422, "validation", {
            let u = url("/v1/vocabularies/..%2F..%2Fetc");
            Box::new(move |c| {
                c.put(&u)
                    .json(&serde_json::json!({"classes": ["x"]}))
                    .send()
                    .unwrap()
            })
        }),
        ("overlong name", 422, "validation", {
            let u = url(&format!("/v1/vocabularies/{}", "n".repeat(65)));
            Box::new(move |c| {
                c.put(&u)
                    .json(&serde_json::json!({"classes": ["x"]}))
                    .send()
                    .unwrap()
            })
        }),
        ("builtin overwrite", 422, "validation", {
            let u = url("/v1/vocabularies/coco");
            Box::new(move |c| {
                c.put(&u)
                    .json(&serde_json::json!({"classes": ["x"]}))
                    .send()
                    .unwrap()
            })
        }),
        ("bad vocabulary json", 400, "validation", {
            let u = url("/v1/vocabularies/x");
            Box::new(move |c| {
                c.put(&u)
                    .json(&serde_json::json!({"classes": "dog", "extra": 1}))
                    .send()
                    .unwrap()
            })
        }),
        ("oversized body", 413, "payload_too_large", {
            let u = url("/v1/detect");
            Box::new(move |c| {
                c.post(&u)
                    .header("content-type", "image/jpeg")
                    .body(vec![0u8; 3_000_000])
                    .send()
                    .unwrap()
            })
        }),
        ("unknown route", 404, "not_found", {
            let u = url("/v2/nothing");
            Box::new(move |c| c.get(&u).send().unwrap())
        }),
        ("two images on the single route", 400, "validation", {
            let (u, b) = (url("/v1/detect"), img.clone());
            Box::new(move |c| {
                let f = form(&b, &[]).part(
                    "image",
                    multipart::Part::bytes(b.clone()).file_name("y.jpg"),
                );
                c.post(&u).multipart(f).send().unwrap()
            })
        }),
    ];
    assert!(cases.len() >= 20);
    for (what, status, etype, send) in &cases {
        let (st, v) = json(send(&c));
        assert_eq!(st, *status, "{what}: {v}");
        assert_eq!(v["error_type"], *etype, "{what}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{what}: {v}"
        );
        let live = c
            .get(s.url("/health/live"))
            .send()
            .unwrap_or_else(|e| panic!("after {what}: {e:?}"));
        assert_eq!(live.status(), 200, "dead after {what}");
    }
    let metrics = c.get(s.url("/metrics")).send().unwrap().text().unwrap();
    assert!(metric(&metrics, "dosod_failures_total{reason=\"decode\"}") >= 3.0);
    assert!(metric(&metrics, "dosod_failures_total{reason=\"validation\"}") >= 8.0);
}

#[test]
fn api_key_guards_everything_but_health_metrics_and_the_page() {
    let s = Server::start("random", &["--api-key", "s3cret"]);
    let c = client();
    let img = image_bytes("zidane.jpg");
    let (st, v) = json(
        c.post(s.url("/v1/detect"))
            .multipart(form(&img, &[]))
            .send()
            .unwrap(),
    );
    assert_eq!((st, v["error_type"].as_str()), (401, Some("unauthorized")));
    assert_eq!(c.get(s.url("/v1/info")).send().unwrap().status(), 401);
    assert_eq!(
        c.get(s.url("/v1/info"))
            .bearer_auth("wrong")
            .send()
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        c.get(s.url("/v1/info"))
            .bearer_auth("s3cret")
            .send()
            .unwrap()
            .status(),
        200
    );
    let r = c
        .post(s.url("/v1/detect"))
        .header("x-api-key", "s3cret")
        .multipart(form(&img, &[]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // DeepStack clients pass the key as a form field
    let r = c
        .post(s.url("/v1/vision/detection"))
        .multipart(form(&img, &[("api_key", "s3cret")]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(s.url("/v1/vision/detection"))
        .multipart(form(&img, &[]))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    for open in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/",
        "/app.js",
        "/style.css",
    ] {
        assert_eq!(c.get(s.url(open)).send().unwrap().status(), 200, "{open}");
    }
}

#[test]
fn info_health_metrics_and_page() {
    let s = Server::start("random", &[]);
    let c = client();
    let (st, info) = json(c.get(s.url("/v1/info")).send().unwrap());
    assert_eq!(st, 200);
    assert_eq!(info["model"]["name"], "random");
    assert_eq!(info["ort_version"], "1.32.0");
    assert_eq!(info["execution_provider"], "cpu");
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
fn sigterm_finishes_in_flight_requests_then_exits_zero() {
    let s = Server::start("random", &[]);
    let url = s.url("/v1/detect");
    let body = image_bytes("bus.jpg");
    let inflight: Vec<_> = (0..4)
        .map(|_| {
            let (u, b) = (url.clone(), body.clone());
            std::thread::spawn(move || {
                client()
                    .post(u)
                    .header("content-type", "image/jpeg")
                    .body(b)
                    .send()
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    let status = s.terminate();
    assert_eq!(status.code(), Some(0));
    for h in inflight {
        // each request either completed or was never accepted; none saw a broken answer
        if let Ok(code) = h.join().unwrap() {
            assert_eq!(code, 200);
        }
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
    ] {
        assert!(v["paths"][path][method].is_object(), "{method} {path}");
    }
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
