//! The API key: required everywhere but health, metrics and the page.

use super::*;
use crate::common::*;
use std::io::{Read, Write};

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
    // Without a key, a malformed DeepStack request is refused as unauthorised, not as
    // malformed (issue 15 item 6: it answered 400 first), whatever its form.
    for (ctype, body) in [
        ("application/json", b"{\"image\": \"not base64!\"}".to_vec()),
        ("image/jpeg", b"not an image".to_vec()),
        ("multipart/form-data; boundary=x", b"--x\r\nbroken".to_vec()),
    ] {
        let (st, v) = json(
            c.post(s.url("/v1/vision/detection"))
                .header("content-type", ctype)
                .body(body)
                .send()
                .unwrap(),
        );
        assert_eq!(
            (st, v["error_type"].as_str()),
            (401, Some("unauthorized")),
            "{ctype}"
        );
    }
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
fn the_bearer_scheme_is_case_insensitive_and_refusals_never_wait_for_the_body() {
    let s = Server::start("random", &["--api-key", "s3cret"]);
    let c = client();
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let r = c
            .get(s.url("/v1/info"))
            .header("authorization", format!("{scheme} s3cret"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{scheme}");
    }
    // A body the server will not take: the refusal comes from the headers alone. The client
    // announces 18 MB and sends only the headers; a server that read the body first would
    // wait for bytes that never come.
    for (key, want) in [("", 401), ("x-api-key: s3cret\r\n", 413)] {
        let addr = s.base.trim_start_matches("http://").to_string();
        let mut tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "POST /v1/detect HTTP/1.1\r\nhost: x\r\n{key}content-type: image/jpeg\r\ncontent-length: {}\r\n\r\n",
            if want == 413 { 1u64 << 40 } else { 18 << 20 }
        );
        tcp.write_all(head.as_bytes()).unwrap();
        let mut answer = String::new();
        let mut buf = [0u8; 4096];
        while !answer.contains("error_type") {
            let n = tcp.read(&mut buf).expect("an answer before the body");
            assert!(n > 0, "closed without an answer: {answer}");
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {want}")),
            "{key:?}: {answer}"
        );
    }
}
