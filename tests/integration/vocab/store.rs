//! Vocabularies through the library and the CLI: synonyms, templates, the phrase cache,
//! persistence across restarts, corrupt files, limits.

use std::path::PathBuf;
use std::sync::Arc;

use crate::common::*;
use dosod::engine::runtime::{Runtime, RuntimeOptions};
use dosod::engine::{Engine, EngineOptions};
use dosod::vocab::spec::{Synonyms, VocabLimits, VocabSpec};
use dosod::vocab::store::{VocabOptions, VocabStore};

fn engine() -> Arc<Engine> {
    let rt = Runtime::init(&RuntimeOptions::default()).unwrap();
    Arc::new(Engine::load(&rt, &bundle("random"), EngineOptions::default()).unwrap())
}

fn store(data: Option<&std::path::Path>) -> VocabStore {
    let options = VocabOptions {
        data_dir: data.map(|p| p.to_path_buf()).unwrap_or_default(),
        builtin_dir: root().join("configs/vocabularies"),
        ..Default::default()
    };
    VocabStore::open(engine(), options).unwrap()
}

#[test]
fn synonyms_average_and_templates_apply() {
    let s = store(None);
    let e = s.engine().clone();
    let v = s
        .build(&VocabSpec::parse_list("dog, puppy|pup"), None)
        .unwrap();
    assert_eq!(v.labels, vec!["dog", "puppy"]);
    // class 1 = adaptor(normalise(mean(embed("puppy"), embed("pup"))))
    let t = s.encode_text(&["puppy".into(), "pup".into()]).unwrap();
    let mut mean = (&t.row(0) + &t.row(1)) / 2.0;
    let n = mean.iter().map(|x| x * x).sum::<f32>().sqrt();
    mean /= n;
    let joint = e
        .adapt(&mean.insert_axis(ndarray::Axis(0)).to_owned())
        .unwrap();
    for (a, b) in joint.row(0).iter().zip(v.joint.row(1)) {
        assert!((a - b).abs() < 1e-5);
    }
    let mut templated = VocabSpec::parse_list("dog, puppy|pup");
    templated.template = "a photo of a {}".into();
    let w = s.build(&templated, None).unwrap();
    assert_ne!(w.hash, v.hash);
    assert_ne!(w.joint, v.joint);
}

#[test]
fn phrase_cache_hits_and_misses() {
    let s = store(None);
    s.build(&VocabSpec::parse_list("dog, cat"), None).unwrap();
    let st = s.cache_stats();
    assert_eq!((st.hits, st.misses, st.entries), (0, 2, 2));
    // same list again: found by hash, the cache is not even asked
    let a = s.build(&VocabSpec::parse_list("dog, cat"), None).unwrap();
    assert_eq!(s.cache_stats().hits, 0);
    // a new list sharing one phrase: one hit, one miss
    s.build(&VocabSpec::parse_list("cat, horse"), None).unwrap();
    let st = s.cache_stats();
    assert_eq!((st.hits, st.misses, st.entries), (1, 3, 3));
    // cached embeddings give the same matrix as fresh ones
    s.clear_built();
    let b = s.build(&VocabSpec::parse_list("dog, cat"), None).unwrap();
    assert_eq!(a.joint, b.joint);
    assert_eq!(s.cache_stats().hits, 3);
}

#[test]
fn named_vocabularies_survive_a_restart_and_corrupt_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let first = store(Some(dir.path()));
    let v = first
        .put(
            "warehouse",
            VocabSpec::parse_list("forklift, person, pallet"),
        )
        .unwrap();
    first.put("tmp", VocabSpec::parse_list("a")).unwrap();
    assert!(first.delete("tmp").unwrap());
    assert!(!first.delete("tmp").unwrap());
    drop(first);
    let vdir = dir.path().join("vocabularies");
    std::fs::write(vdir.join("broken.json"), "{ not json").unwrap();
    std::fs::write(
        vdir.join("other.json"),
        r#"{"name": "mismatch", "classes": ["x"]}"#,
    )
    .unwrap();
    let second = store(Some(dir.path()));
    assert_eq!(second.load_errors().len(), 2, "{:?}", second.load_errors());
    let again = second.resolve("warehouse").unwrap();
    assert_eq!(again.labels, v.labels);
    assert_eq!(again.joint, v.joint);
    assert!(second.resolve("tmp").is_err());
    let names: Vec<String> = second.list().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["warehouse", "coco", "lvis", "objects365"]);
    // no temporary files are left behind
    assert!(
        std::fs::read_dir(&vdir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp"))
    );
}

#[test]
fn the_first_synonym_rule_embeds_only_the_first_phrase() {
    let s = store(None);
    let mean = s
        .build(&VocabSpec::parse_list("puppy|pup|doggy, cat"), None)
        .unwrap();
    let mut spec = VocabSpec::parse_list("puppy|pup|doggy, cat");
    spec.synonyms = Synonyms::First;
    let first = s.build(&spec, None).unwrap();
    let alone = s.build(&VocabSpec::parse_list("puppy, cat"), None).unwrap();
    assert_eq!(first.labels, mean.labels);
    assert_ne!(first.hash, mean.hash);
    assert_eq!(first.joint, alone.joint, "first = the first phrase alone");
    assert_ne!(first.joint.row(0), mean.joint.row(0), "mean = all phrases");
    assert_eq!(first.joint.row(1), mean.joint.row(1));
    // The built-ins follow the official protocol (first phrase); a request may ask for mean.
    assert_eq!(s.spec("lvis").unwrap().synonyms, Synonyms::First);
    let request = |synonyms| dosod::vocab::store::VocabRequest {
        name: Some("lvis".into()),
        synonyms,
        ..Default::default()
    };
    let official = s.select(&request(None), "").unwrap();
    let averaged = s.select(&request(Some(Synonyms::Mean)), "").unwrap();
    assert_eq!(official.len(), 1203);
    assert_ne!(official.hash, averaged.hash);
    // "aerosol can|spray can": first phrase only, officially.
    let aerosol = s
        .build(&VocabSpec::parse_list("aerosol can"), None)
        .unwrap();
    assert_eq!(official.joint.row(0), aerosol.joint.row(0));
    assert_ne!(averaged.joint.row(0), aerosol.joint.row(0));
}

#[test]
fn the_official_first_phrase_lvis_list_loads_with_its_repeats() {
    // The official first-phrase list names bow, fish, octopus, pan and salmon twice.
    let text =
        std::fs::read_to_string(root().join("configs/vocabularies/lvis_v1_class_texts.json"))
            .unwrap();
    let lists: Vec<Vec<String>> = serde_json::from_str(&text).unwrap();
    let firsts: Vec<Vec<String>> = lists.iter().map(|l| vec![l[0].clone()]).collect();
    let mut spec = VocabSpec::from_phrase_lists(firsts.clone());
    let s = store(None);
    let refused = s.build(&spec, None).unwrap_err().to_string();
    assert!(refused.contains("duplicates class"), "{refused}");
    spec.allow_repeats = true;
    let v = s.build(&spec, None).unwrap();
    assert_eq!(v.len(), 1203);
    let repeated: Vec<&String> = v.labels.iter().filter(|l| l.ends_with(" (2)")).collect();
    assert_eq!(
        repeated,
        [
            "bow (2)",
            "fish (2)",
            "octopus (2)",
            "pan (2)",
            "salmon (2)"
        ],
        "each repeat is its own category with its own label"
    );
    let unique: std::collections::HashSet<&String> = v.labels.iter().collect();
    assert_eq!(unique.len(), 1203);
    // Through the CLI: refused without the flag, encoded with it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lvis_first.json");
    std::fs::write(&file, serde_json::to_string(&firsts).unwrap()).unwrap();
    let model = bundle("random");
    let out_npz = dir.path().join("v.npz");
    let encode = |allow: bool| {
        let mut args = vec!["vocab", "encode", "--model", path_str(&model)];
        args.extend(["--file", path_str(&file), "--out", path_str(&out_npz)]);
        if allow {
            args.push("--allow-repeats");
        }
        dosod(args)
    };
    assert_clean_failure(&encode(false), "duplicates class");
    let o = encode(true);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn builtins_resolve_and_are_read_only() {
    let s = store(None);
    let coco = s.resolve("coco").unwrap();
    assert_eq!(coco.len(), 80);
    assert_eq!(coco.labels[0], "person");
    assert!(s.put("coco", VocabSpec::parse_list("x")).is_err());
    assert!(s.delete("lvis").is_err());
    assert!(matches!(
        s.resolve("nope"),
        Err(dosod::EngineError::NotFound(_))
    ));
}

#[test]
fn limits_and_bad_names() {
    let options = VocabOptions {
        data_dir: PathBuf::new(),
        limits: VocabLimits {
            max_classes: 3,
            max_phrase_tokens: 8,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = VocabStore::open(engine(), options).unwrap();
    let err = |t: &str| {
        s.build(&VocabSpec::parse_list(t), None)
            .unwrap_err()
            .to_string()
    };
    assert!(err("a, b, c, d").contains("4 classes exceed the limit of 3"));
    assert!(err("one two three four five six seven eight").contains("longer than 8 tokens"));
    assert!(s.put("../evil", VocabSpec::parse_list("a")).is_err());
    assert!(s.put("", VocabSpec::parse_list("a")).is_err());
    // a failed put changes nothing
    assert!(s.put("good", VocabSpec::parse_list("a, a")).is_err());
    assert!(s.resolve("good").is_err());
}

#[test]
fn cli_text_path_end_to_end() {
    let img = fixture("images/zidane.jpg");
    let model = bundle("random");
    let r = &json_lines(&dosod([
        "detect",
        "--model",
        path_str(&model),
        "--classes",
        "person, football",
        path_str(&img),
    ]))[0];
    for d in detections(r) {
        assert!(d.0 == "person" || d.0 == "football");
    }
    // encode to a file, then detect with it: the same answer as from the text
    let dir = tempfile::tempdir().unwrap();
    let npz = dir.path().join("v.npz");
    let o = dosod([
        "vocab",
        "encode",
        "--model",
        path_str(&model),
        "--classes",
        "person, dog|puppy, car",
        "--out",
        path_str(&npz),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let from_text = json_lines(&dosod([
        "detect",
        "--model",
        path_str(&model),
        "--classes",
        "person, dog|puppy, car",
        "--score-threshold",
        "0.05",
        path_str(&img),
    ]));
    let from_file = json_lines(&dosod([
        "detect",
        "--model",
        path_str(&model),
        "--vocab",
        path_str(&npz),
        "--score-threshold",
        "0.05",
        path_str(&img),
    ]));
    assert!(!detections(&from_text[0]).is_empty());
    assert_eq!(detections(&from_text[0]), detections(&from_file[0]));
}

#[test]
fn cli_vocab_put_list_delete_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let data = path_str(dir.path());
    let model = bundle("random");
    let m = path_str(&model);
    let o = dosod([
        "vocab",
        "put",
        "--model",
        m,
        "--data-dir",
        data,
        "dock",
        "--classes",
        "forklift, pallet|skid",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&dosod(["vocab", "list", "--model", m, "--data-dir", data]));
    assert!(
        list.lines().next().unwrap().contains("\"name\":\"dock\""),
        "{list}"
    );
    let r = &json_lines(&dosod([
        "detect",
        "--model",
        m,
        "--data-dir",
        data,
        "--vocabulary",
        "dock",
        "--score-threshold",
        "0.01",
        path_str(&fixture("images/bus.jpg")),
    ]))[0];
    assert!(
        detections(r)
            .iter()
            .all(|d| d.0 == "forklift" || d.0 == "pallet")
    );
    assert!(
        dosod(["vocab", "delete", "--model", m, "--data-dir", data, "dock"])
            .status
            .success()
    );
    assert_clean_failure(
        &dosod([
            "detect",
            "--model",
            m,
            "--data-dir",
            data,
            "--vocabulary",
            "dock",
            path_str(&fixture("images/bus.jpg")),
        ]),
        "unknown vocabulary `dock`",
    );
}

#[test]
fn cli_bad_class_lists_are_clear_errors() {
    let img = fixture("images/zidane.jpg");
    let model = bundle("random");
    for (classes, needle) in [
        ("dog, , cat", "class 1 has a blank phrase"),
        ("dog, dog", "duplicates class 0"),
        (",", "blank phrase"),
    ] {
        let o = dosod([
            "detect",
            "--model",
            path_str(&model),
            "--classes",
            classes,
            path_str(&img),
        ]);
        assert_clean_failure(&o, needle);
    }
    let many: String = (0..2001)
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(",");
    let o = dosod([
        "detect",
        "--model",
        path_str(&model),
        "--classes",
        &many,
        path_str(&img),
    ]);
    assert_clean_failure(&o, "2001 classes exceed the limit of 2000");
    // the exact bundle has no text encoder
    let o = dosod([
        "detect",
        "--model",
        path_str(&bundle("exact")),
        "--classes",
        "a",
        path_str(&img),
    ]);
    assert_clean_failure(&o, "declares no text encoder");
}
