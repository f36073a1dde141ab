//! `/v1/detect`, `/v1/detect/batch` and the DeepStack route: input forms, batching, overload.

use super::*;
use crate::common::*;

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
    // `synonyms=first` embeds "dog" alone (the official rule): the same as asking for "dog".
    let ask = |fields: &[(&str, &str)]| {
        json(
            c.post(s.url("/v1/detect"))
                .multipart(form(&img, fields))
                .send()
                .unwrap(),
        )
    };
    let (st, first) = ask(&[
        ("classes", "person, dog|puppy"),
        ("synonyms", "first"),
        ("score_threshold", "0.05"),
    ]);
    assert_eq!(st, 200, "{first}");
    let (_, alone) = ask(&[("classes", "person, dog"), ("score_threshold", "0.05")]);
    let (_, mean) = ask(&[
        ("classes", "person, dog|puppy"),
        ("score_threshold", "0.05"),
    ]);
    assert_eq!(dets(&first), dets(&alone));
    assert_ne!(dets(&first), dets(&mean));
    let (st, bad) = ask(&[("classes", "dog"), ("synonyms", "median")]);
    assert_eq!(st, 400, "{bad}");
    assert!(bad["error"].as_str().unwrap().contains("synonyms"), "{bad}");
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
fn a_batch_is_capped_and_admitted_whole() {
    // A queue of 8 and batches of at most 8: an idle server answers every image of a full
    // batch (none refused by its own siblings); one image more is refused as a whole.
    let s = Server::start("random", &["--queue-size", "8", "--max-batch-images", "8"]);
    let c = client();
    let mut png = Vec::new();
    image::RgbImage::from_pixel(64, 48, image::Rgb([90, 120, 200]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let batch = |n: usize| {
        let mut f = multipart::Form::new();
        for i in 0..n {
            f = f.part(
                "image",
                multipart::Part::bytes(png.clone()).file_name(format!("{i}.png")),
            );
        }
        json(
            c.post(s.url("/v1/detect/batch"))
                .multipart(f)
                .send()
                .unwrap(),
        )
    };
    for _ in 0..3 {
        let (st, v) = batch(8);
        assert_eq!(st, 200, "{v}");
        let results = v["results"].as_array().unwrap();
        assert_eq!(results.len(), 8);
        assert!(
            results.iter().all(|r| r.get("error").is_none()),
            "an idle server refused part of its own batch: {v}"
        );
    }
    let (st, v) = batch(9);
    assert_eq!(
        (st, v["error_type"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    // A cap above the queue is the queue.
    drop(s);
    let s = Server::start("random", &["--queue-size", "4", "--max-batch-images", "8"]);
    let mut f = multipart::Form::new();
    for i in 0..5 {
        f = f.part(
            "image",
            multipart::Part::bytes(png.clone()).file_name(format!("{i}.png")),
        );
    }
    let (st, v) = json(
        c.post(s.url("/v1/detect/batch"))
            .multipart(f)
            .send()
            .unwrap(),
    );
    assert_eq!(st, 413, "{v}");
}
