//! `/v1/vocabularies`: CRUD and persistence across restarts.

use super::*;
use crate::common::*;

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
