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
        // The built-ins are read-only: a conflict, not a malformed request.
        let (st, v) = json(
            c.put(s.url("/v1/vocabularies/coco"))
                .json(&serde_json::json!({"classes": ["x"]}))
                .send()
                .unwrap(),
        );
        assert_eq!(
            (st, v["error_type"].as_str()),
            (409, Some("conflict")),
            "{v}"
        );
        let (st, v) = json(c.delete(s.url("/v1/vocabularies/lvis")).send().unwrap());
        assert_eq!(
            (st, v["error_type"].as_str()),
            (409, Some("conflict")),
            "{v}"
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

/// What `GET /v1/vocabularies/{name}` says of each name: its classes, or absent.
fn served(c: &reqwest::blocking::Client, s: &Server, names: &[String]) -> Vec<Option<Value>> {
    names
        .iter()
        .map(|n| {
            let (st, v) = json(
                c.get(s.url(&format!("/v1/vocabularies/{n}")))
                    .send()
                    .unwrap(),
            );
            assert!(st == 200 || st == 404, "{st} {v}");
            (st == 200).then(|| v["classes"].clone())
        })
        .collect()
}

#[test]
fn concurrent_puts_and_deletes_of_one_name_are_never_lost() {
    // Four clients PUT and DELETE the same names at once; every answer is a success (no
    // storage race), and what the server serves afterwards is exactly what a restart reads back.
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path()).to_string();
    let names: Vec<String> = (0..3).map(|i| format!("shared{i}")).collect();
    let (before, after) = {
        let s = Server::start("random", &["--data-dir", &data]);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (s, names) = (&s, &names);
                scope.spawn(move || {
                    let c = client();
                    for i in 0..40 {
                        let name = &names[(t + i) % names.len()];
                        let url = s.url(&format!("/v1/vocabularies/{name}"));
                        if (t + i) % 3 == 0 {
                            let st = c.delete(&url).send().unwrap().status().as_u16();
                            assert!(st == 204 || st == 404, "DELETE {name}: {st}");
                        } else {
                            let (st, v) = json(
                                c.put(&url)
                                    .json(&serde_json::json!({"classes": [format!("c{t} {i}")]}))
                                    .send()
                                    .unwrap(),
                            );
                            assert_eq!(st, 200, "PUT {name}: {v}");
                        }
                    }
                });
            }
        });
        let c = client();
        let before = served(&c, &s, &names);
        assert_eq!(s.terminate().code(), Some(0));
        let s = Server::start("random", &["--data-dir", &data]);
        (before, served(&c, &s, &names))
    };
    assert_eq!(
        before, after,
        "served before the restart vs read back after it"
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("vocabularies"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}
