//! The API key: required everywhere but health, metrics and the page.

use super::*;
use crate::common::*;

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
