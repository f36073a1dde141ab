//! The ROS 2 node (`dosod ros`, ros2-client / RustDDS) against an independent DDS: Eclipse
//! Cyclone DDS from the PyPI `cyclonedds` wheel, driven by dosod_tools.ros2.peer with the ROS
//! message types declared in Python. The demo model finds the emoji in a frame of the stream
//! test clip (tests/fixtures/ros2/scene.jpg); what comes back over DDS must be exactly what
//! `dosod detect` finds in the same pixels.
//!
//! Each node gets its own DDS domain; the tests share two CPU cores, so they run one at a time.
#![cfg(feature = "ros2")]

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT_DOMAIN: AtomicU16 = AtomicU16::new(0);

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether the Cyclone DDS peer can run. PyPI has `cyclonedds` wheels for x86_64 (where it
/// must be there: `make setup` installs it) but not for Linux aarch64, where this says so.
fn cyclone_dds() -> bool {
    let python = root().join(".venv/bin/python");
    assert!(python.is_file(), "run `make setup` to create .venv");
    let ok = Command::new(&python)
        .args(["-c", "import cyclonedds"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok && !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: no cyclonedds wheel for this platform, so no DDS peer");
        return false;
    }
    assert!(ok, "cyclonedds is missing from .venv: run `make setup`");
    true
}

fn demo_model() -> PathBuf {
    root().join("models/demo")
}

fn scene() -> PathBuf {
    fixture("ros2/scene.jpg")
}

/// A DDS domain distinct per test in this process, spread at random across runs on one machine.
fn next_domain() -> u16 {
    20 + rand::random_range(0..50u16) * 4 + NEXT_DOMAIN.fetch_add(1, Ordering::SeqCst)
}

/// Runs one Cyclone DDS peer subcommand on `domain` and returns its JSON report; `log` says
/// what the node logged, for the failure message.
fn peer(domain: u16, args: &[&str], log: impl FnOnce() -> String) -> Value {
    let out = Command::new(root().join(".venv/bin/python"))
        .args(["-m", "dosod_tools.ros2.peer"])
        .args(["--domain", &domain.to_string()])
        .args(args)
        .current_dir(root())
        .output()
        .expect("run the Cyclone DDS peer");
    assert!(
        out.status.success(),
        "peer {args:?} failed: {}\n{}\nnode log:\n{}",
        stderr(&out),
        stdout(&out),
        log()
    );
    let text = stdout(&out);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("peer output {text}: {e}"))
}

/// What each DDS test starts with: the serial lock, the peer check, then `dosod ros` with
/// `extra` flags. `None` where no Cyclone DDS peer can run (see [`cyclone_dds`]).
fn node_for_test(extra: &[&str]) -> Option<(MutexGuard<'static, ()>, RosNode)> {
    let guard = serial();
    if !cyclone_dds() {
        return None;
    }
    Some((guard, RosNode::start(extra)))
}

/// A running `dosod ros` on its own DDS domain; killed on drop.
struct RosNode {
    child: Child,
    domain: u16,
    stderr: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RosNode {
    /// Starts the node on the demo model with JSON logs and waits for its `ready` line.
    fn start(extra: &[&str]) -> RosNode {
        let domain = next_domain();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dosod"))
            .args(["--model", path_str(&demo_model()), "--log-format", "json"])
            .args(["--log-level", "warn,dosod=info"])
            .args(["ros", "--domain-id", &domain.to_string()])
            .args(extra)
            .current_dir(root())
            .env_remove("DOSOD_CONFIG")
            .env_remove("ROS_DISTRO")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dosod ros");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        match lines.next() {
            Some(Ok(l)) if l.contains("ready on domain") => {}
            other => {
                let _ = child.kill();
                let _ = reader.join();
                panic!(
                    "dosod ros did not get ready: {other:?}\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        }
        std::thread::spawn(move || for _ in lines {});
        RosNode {
            child,
            domain,
            stderr,
            reader: Some(reader),
        }
    }

    /// Runs one peer subcommand on the node's domain and returns its JSON report.
    fn peer(&self, args: &[&str]) -> Value {
        peer(self.domain, args, || self.log().join("\n"))
    }

    fn log(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then the exit status and the final summary's fields.
    fn stop(mut self) -> (ExitStatus, Value, Vec<String>) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dosod ros did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let log = self.log();
        let summary = log
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["fields"].clone())
            .find(|f| f["message"] == "ros2 summary" && f["which"] == "final")
            .unwrap_or_else(|| panic!("no final summary in:\n{}", log.join("\n")));
        (status, summary, log)
    }
}

impl Drop for RosNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `dosod detect` on the demo model: (label, score, [cx, cy, w, h]).
fn expected(image: &Path, extra: &[&str]) -> Vec<(String, f64, [f64; 4])> {
    let model = demo_model();
    let mut args = vec!["--model", path_str(&model), "detect"];
    args.extend_from_slice(extra);
    args.push(path_str(image));
    let reports = json_lines(&dosod(args));
    detections(&reports[0])
        .into_iter()
        .map(|(l, s, [x1, y1, x2, y2])| {
            (l, s, [(x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1])
        })
        .collect()
}

/// A `Detection2DArray` report from the peer as (class_id, score, [cx, cy, w, h]).
fn received(report: &Value) -> Vec<(String, f64, [f64; 4])> {
    report["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let c = &d["center"];
            let s = &d["size"];
            (
                d["class_id"].as_str().unwrap().to_string(),
                d["score"].as_f64().unwrap(),
                [
                    c[0].as_f64().unwrap(),
                    c[1].as_f64().unwrap(),
                    s[0].as_f64().unwrap(),
                    s[1].as_f64().unwrap(),
                ],
            )
        })
        .collect()
}

fn assert_same(what: &str, got: &[(String, f64, [f64; 4])], want: &[(String, f64, [f64; 4])]) {
    assert!(!want.is_empty(), "{what}: the reference found nothing");
    let labels = |v: &[(String, f64, [f64; 4])]| v.iter().map(|d| d.0.clone()).collect::<Vec<_>>();
    assert_eq!(labels(got), labels(want), "{what}: labels");
    for (g, w) in got.iter().zip(want) {
        assert!((g.1 - w.1).abs() < 1e-5, "{what}: score {} vs {}", g.1, w.1);
        for k in 0..4 {
            assert!(
                (g.2[k] - w.2[k]).abs() < 1e-2,
                "{what}: box {:?} vs {:?}",
                g.2,
                w.2
            );
        }
    }
}

#[test]
fn images_from_cyclone_dds_come_back_as_the_engines_detections() {
    let Some((_serial, node)) = node_for_test(&[
        "--compressed-topic",
        "/camera/image_raw/compressed",
        "--annotated-topic",
        "~/annotated",
    ]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("sent.png");
    let mono = dir.path().join("mono.png");
    let report = node.peer(&[
        "frames",
        "--image",
        path_str(&scene()),
        "--kinds",
        "rgb8,bgr8_padded,jpeg,png",
        "--count",
        "4",
        "--png-out",
        path_str(&png),
        "--mono-png-out",
        path_str(&mono),
        "--annotated-topic",
        "/dosod/annotated",
    ]);
    // The raw kinds carry Pillow's pixels of the JPEG (saved losslessly as `png`); the jpeg kind
    // carries the file itself, which the node decodes as `dosod detect` does.
    let from_pixels = expected(&png, &[]);
    let from_jpeg = expected(&scene(), &[]);
    // The demo model scores grey emoji very low: mono8 frames are compared at a low threshold,
    // set through the parameter service.
    let low = node.peer(&[
        "set-parameters",
        "--param",
        "score_threshold",
        "double",
        "0.005",
    ]);
    assert_eq!(low["results"], serde_json::json!([[true, ""]]));
    let grey = node.peer(&[
        "frames",
        "--image",
        path_str(&scene()),
        "--kinds",
        "mono8",
        "--count",
        "2",
    ]);
    let from_grey = expected(&mono, &["--score-threshold", "0.005"]);
    let results: Vec<&Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .chain(grey["results"].as_array().unwrap())
        .collect();
    assert_eq!(results.len(), 18);
    let mut latencies = Vec::new();
    let mut sends = 0;
    for r in results {
        let kind = r["kind"].as_str().unwrap();
        assert_eq!(r["header"]["stamp"], r["stamp"], "header stamp copied");
        assert_eq!(r["header"]["frame_id"], format!("cam_{kind}"));
        for d in r["detections"].as_array().unwrap() {
            assert_eq!(
                d["header"], r["header"],
                "each detection carries the image header"
            );
            assert_eq!(
                (d["results"].as_u64(), d["theta"].as_f64()),
                (Some(1), Some(0.0))
            );
            assert_eq!(
                (d["orientation_w"].as_f64(), d["id"].as_str()),
                (Some(1.0), Some(""))
            );
        }
        let got = received(r);
        match kind {
            "rgb8" | "bgr8_padded" | "png" => assert_same(kind, &got, &from_pixels),
            "jpeg" => assert_same(kind, &got, &from_jpeg),
            _ => assert_same(kind, &got, &from_grey),
        }
        if kind != "mono8" {
            latencies.push(r["latency_ms"].as_f64().unwrap());
        }
        sends += r["sends"].as_u64().unwrap();
    }
    let a = &report["annotated"];
    assert_eq!(
        (a["width"].as_u64(), a["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(
        (a["encoding"].as_str(), a["step"].as_u64()),
        (Some("rgb8"), Some(1920))
    );
    assert_eq!(
        (a["bytes"].as_u64(), a["frame_id"].as_str()),
        (Some(691_200), Some("cam_rgb8"))
    );
    assert!(
        a["changed_pixels"].as_u64().unwrap() > 500,
        "boxes drawn: {a}"
    );

    let (status, summary, log) = node.stop();
    assert!(status.success(), "exit status {status}");
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
    // a frame lost on the way (best-effort) is resent by the peer: every send is answered once
    assert_eq!(summary["received"].as_u64(), Some(sends));
    assert_eq!(summary["published"].as_u64(), Some(sends));
    assert_eq!(summary["rejected"], "{}");
    latencies.sort_by(f64::total_cmp);
    eprintln!(
        "ros2 latency, demo model, 640x360 frames: peer write -> Detection2DArray read p50 {:.1} ms \
         (max {:.1}); node receipt -> publication p50 {:.1} ms, p90 {:.1} ms, mean {:.1} ms over {} frames",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        summary["latency_p50_ms"].as_f64().unwrap(),
        summary["latency_p90_ms"].as_f64().unwrap(),
        summary["latency_mean_ms"].as_f64().unwrap(),
        summary["latency_frames"],
    );
}

#[test]
fn the_vocabulary_and_parameters_change_from_the_peer() {
    let Some((_serial, node)) = node_for_test(&[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("sent.png");
    let scene = scene();
    let first = node.peer(&[
        "frames",
        "--image",
        path_str(&scene),
        "--png-out",
        path_str(&png),
    ]);
    assert_same(
        "default vocabulary",
        &received(&first["results"][0]),
        &expected(&png, &[]),
    );

    // std_msgs/String on ~/set_vocabulary, for clients without parameter support
    let v = node.peer(&[
        "set-vocabulary",
        "--text",
        "pizza, rose",
        "--image",
        path_str(&scene),
        "--expect",
        "pizza,rose",
    ]);
    assert_same(
        "set_vocabulary",
        &received(&v),
        &expected(&png, &["--classes", "pizza, rose"]),
    );

    // rcl_interfaces/SetParameters: each parameter applied or refused on its own
    let long = format!("[\"{}\"]", "x".repeat(300));
    let p = node.peer(&[
        "set-parameters",
        "--param",
        "vocabulary",
        "string_array",
        "[\"red apple\", \"violin\"]",
        "--param",
        "score_threshold",
        "double",
        "0.3",
        "--param",
        "score_threshold",
        "double",
        "7.0",
        "--param",
        "enabled",
        "string",
        "\"no\"",
        "--param",
        "score_threshold",
        "integer",
        "1",
        "--param",
        "vocabulary",
        "string_array",
        "[\" \"]",
        "--param",
        "vocabulary",
        "string_array",
        &long,
        "--image",
        path_str(&scene),
        "--expect",
        "red apple,violin",
    ]);
    let ok: Vec<bool> = p["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_bool().unwrap())
        .collect();
    assert_eq!(ok, [true, true, false, false, false, false, false], "{p}");
    let reasons = p["results"].to_string();
    for needle in ["[0, 1]", "Cannot change type", "at least one class", "300"] {
        assert!(reasons.contains(needle), "`{needle}` not in {reasons}");
    }
    let want = expected(
        &png,
        &["--classes", "red apple, violin", "--score-threshold", "0.3"],
    );
    assert_same("set_parameters", &received(&p["after"]), &want);

    // enabled=false: frames are dropped, nothing is published; true: back to work
    let off = node.peer(&["set-parameters", "--param", "enabled", "bool", "false"]);
    assert_eq!(off["results"], serde_json::json!([[true, ""]]));
    let silent = node.peer(&[
        "frames",
        "--image",
        path_str(&scene),
        "--expect-none",
        "1.5",
    ]);
    assert_eq!(silent["received"], serde_json::json!([]));
    let on = node.peer(&["set-parameters", "--param", "enabled", "bool", "true"]);
    assert_eq!(on["results"], serde_json::json!([[true, ""]]));
    let back = node.peer(&["frames", "--image", path_str(&scene)]);
    assert_same("enabled again", &received(&back["results"][0]), &want);

    let (status, summary, log) = node.stop();
    assert!(status.success(), "exit status {status}");
    assert!(summary["disabled"].as_u64().unwrap() >= 1, "{summary}");
    assert!(!log.iter().any(|l| l.contains("panicked")));
}

#[test]
fn bad_messages_are_counted_and_never_stop_the_node() {
    let Some((_serial, node)) = node_for_test(&[
        "--max-side",
        "700",
        "--compressed-topic",
        "/camera/image_raw/compressed",
    ]) else {
        return;
    };
    let scene = scene();
    let bad = node.peer(&["bad", "--image", path_str(&scene), "--large", "701", "8"]);
    assert!(
        !received(&bad["good"]).is_empty(),
        "a good frame after the bad ones: {bad}"
    );
    node.peer(&["malformed"]);
    let after = node.peer(&["frames", "--image", path_str(&scene)]);
    assert!(!received(&after["results"][0]).is_empty());

    let (status, summary, log) = node.stop();
    assert!(status.success(), "exit status {status}");
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
    let rejected: Value = serde_json::from_str(summary["rejected"].as_str().unwrap()).unwrap();
    let mut sent = bad["sent"].clone();
    sent["malformed"] = 1.into();
    assert_eq!(rejected, sent, "every bad message counted once, by kind");
    let sends: u64 = [
        &bad["warm_up"][0],
        &bad["warm_up"][1],
        &bad["good"],
        &after["results"][0],
    ]
    .iter()
    .map(|r| r["sends"].as_u64().unwrap())
    .sum();
    assert_eq!(summary["published"].as_u64(), Some(sends));
    // each kind is logged (the 1st, 10th, 100th … time), not only counted
    for kind in [
        "encoding",
        "empty",
        "size",
        "too_large",
        "decode",
        "malformed",
    ] {
        assert!(
            log.iter()
                .any(|l| l.contains("skipped a frame")
                    && l.contains(&format!("\"kind\":\"{kind}\""))),
            "no log line for {kind}"
        );
    }
}

#[test]
fn bad_settings_are_refused_before_dds_starts() {
    let out = dosod(["ros", "--image-reliability", "sometimes"]);
    assert_clean_failure(&out, "image_reliability");
    let out = dosod(["ros", "--detections-topic", "a//b"]);
    assert_clean_failure(&out, "detections_topic");
}

/// Every frontend reaches the engine through the one service: a ROS 2 frame and an HTTP request
/// with the same vocabulary (the bundle's default) wait in the one scheduler and run in one
/// forward pass. The scheduler holds the first frame up to 60 s for a second one.
#[test]
fn a_ros2_frame_and_an_http_request_run_in_one_batch() {
    let _serial = serial();
    if !cyclone_dds() {
        return;
    }
    let domain = next_domain();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        format!("[ros2]\ndomain_id = {domain}\nsummary_interval_s = 0.0\n[vocabulary]\ndata_dir = \"\"\n"),
    )
    .unwrap();
    let server = Server::start_at(
        &demo_model(),
        &[
            "--config",
            path_str(&config),
            "--ros2",
            "--max-batch",
            "2",
            "--max-queue-delay-us",
            "60000000",
        ],
    );
    let image = std::fs::read(scene()).unwrap();
    let url = server.url("/v1/detect");
    let http = std::thread::spawn(move || {
        let resp = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .unwrap()
            .post(url)
            .header("content-type", "image/jpeg")
            .body(image)
            .send()
            .unwrap();
        let batch = resp.headers()["x-batch-size"].to_str().unwrap().to_string();
        (resp.status().as_u16(), batch, resp.json::<Value>().unwrap())
    });
    let report = peer(
        domain,
        &["frames", "--image", path_str(&scene()), "--kinds", "rgb8"],
        || "(dosod serve --ros2)".into(),
    );
    let (status, batch, body) = http.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(batch, "2", "the HTTP request ran alone: {body}");
    let ros = received(&report["results"][0]);
    let http_labels: Vec<&str> = body["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap())
        .collect();
    assert!(!ros.is_empty() && !http_labels.is_empty());
    assert_eq!(server.terminate().code(), Some(0));
}
