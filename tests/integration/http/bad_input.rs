//! Bad requests get the right 4xx and a JSON error, and the server survives them.

use super::*;
use crate::common::*;

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
        ("builtin overwrite", 409, "conflict", {
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
fn framework_refusals_405_404_431_carry_the_json_error() {
    let s = Server::start("random", &[]);
    let c = client();
    for (method, path) in [
        ("DELETE", "/v1/detect"),
        ("POST", "/health/live"),
        ("PUT", "/v1/info"),
    ] {
        let r = c
            .request(method.parse().unwrap(), s.url(path))
            .send()
            .unwrap();
        let (st, v) = json(r);
        assert_eq!(st, 405, "{method} {path}: {v}");
        assert_eq!(v["error_type"], "method_not_allowed", "{v}");
        assert!(v["error"].as_str().unwrap().contains(path), "{v}");
    }
    let (st, v) = json(c.get(s.url("/v1/nothing-here")).send().unwrap());
    assert_eq!((st, v["error_type"].as_str()), (404, Some("not_found")));
    // Too many header fields, or one too large: 431 with the JSON error (issue 15 item 6:
    // hyper's own 431 has no body).
    let mut many = c.get(s.url("/v1/info"));
    for i in 0..150 {
        many = many.header(format!("x-h{i}"), "v");
    }
    let big = c
        .get(s.url("/v1/info"))
        .header("x-big", "v".repeat(70 << 10));
    for (what, req) in [("150 fields", many), ("70 KiB field", big)] {
        let (st, v) = json(req.send().unwrap());
        assert_eq!(st, 431, "{what}: {v}");
        assert_eq!(v["error_type"], "headers_too_large", "{what}: {v}");
    }
}
