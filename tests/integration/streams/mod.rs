//! The camera stream daemon against real processes: ffmpeg decoding a video file and an RTSP
//! stream (GStreamer's RTSP server, tests/streams/rtsp_server.py), mosquitto as the broker and
//! mosquitto_sub as the MQTT client, with the demo model finding the emoji in the clip
//! (tests/fixtures/streams/scenes.mp4, made by dosod_tools.fixtures.make_stream_clip).
//!
//! Needs `ffmpeg`, `mosquitto`, `mosquitto_sub` and the RTSP server's GStreamer packages
//! (scripts/stream_test_deps.sh, run by `make test`). The tests share two CPU cores, so they run
//! one at a time.

mod events;
mod faults;

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn demo_model() -> PathBuf {
    let dir = root().join("models/demo");
    assert!(dir.join("model.toml").is_file(), "models/demo is missing");
    dir
}

fn clip() -> PathBuf {
    fixture("streams/scenes.mp4")
}

/// The class names drawn in the clip.
fn clip_classes() -> Vec<String> {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("streams/scenes.json")).unwrap())
            .unwrap();
    v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// mosquitto on its own port, anonymous, no persistence.
fn start_broker(port: u16, dir: &Path) -> Proc {
    let conf = dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = Command::new("mosquitto")
        .args(["-c", path_str(&conf)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto (scripts/stream_test_deps.sh installs it)");
    wait_for("mosquitto to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Proc(child)
}

/// One MQTT message as mosquitto_sub received it.
#[derive(Clone, Debug)]
struct Message {
    at: Instant,
    topic: String,
    /// The payload as text (lossy: snapshots are JPEG).
    payload: String,
    bytes: Vec<u8>,
}

/// mosquitto_sub's `%x`: each byte as two hex digits.
fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// mosquitto_sub on `dosod/#`, collecting every message.
struct Subscriber {
    _proc: Proc,
    messages: Arc<Mutex<Vec<Message>>>,
}

impl Subscriber {
    fn start(port: u16) -> Subscriber {
        let mut child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "dosod/#"])
            .args(["-t", "homeassistant/#"])
            .args(["-F", "%t\t%x", "-q", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let out = child.stdout.take().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((topic, hex)) = line.split_once('\t') {
                    let bytes = unhex(hex);
                    sink.lock().unwrap().push(Message {
                        at: Instant::now(),
                        topic: topic.to_string(),
                        payload: String::from_utf8_lossy(&bytes).into_owned(),
                        bytes,
                    });
                }
            }
        });
        // mosquitto_sub has subscribed once the broker delivers a retained or new message;
        // a short pause is enough on a local broker.
        std::thread::sleep(Duration::from_millis(300));
        Subscriber {
            _proc: Proc(child),
            messages,
        }
    }

    fn on(&self, topic: &str) -> Vec<Message> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == topic)
            .cloned()
            .collect()
    }

    /// Whether `dosod/available` carried `payload`.
    fn available(&self, payload: &str) -> bool {
        self.on("dosod/available")
            .iter()
            .any(|m| m.payload == payload)
    }

    fn json_on(&self, topic: &str, since: Instant) -> Vec<Value> {
        self.on(topic)
            .into_iter()
            .filter(|m| m.at >= since)
            .map(|m| serde_json::from_str(&m.payload).unwrap())
            .collect()
    }
}

/// GStreamer's RTSP server looping the clip at rtsp://127.0.0.1:PORT/scenes.
fn start_rtsp(port: u16) -> Proc {
    let mut child = Command::new("/usr/bin/python3")
        .arg(root().join("tests/streams/rtsp_server.py"))
        .args(["--port", &port.to_string(), "--path", "/scenes"])
        .args(["--file", path_str(&clip())])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tests/streams/rtsp_server.py");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("ready ") => break,
            Some(Ok(_)) => continue,
            _ => panic!("the RTSP server exited before it was ready"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Proc(child)
}

fn get_json(url: &str) -> Value {
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

fn stream_status(server: &Server, name: &str) -> Value {
    get_json(&server.url(&format!("/v1/streams/{name}")))
}

fn labels(message: &Value) -> Vec<String> {
    message["detections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["label"].as_str().unwrap().to_string())
        .collect()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("streams.toml");
    std::fs::write(&path, body).unwrap();
    path
}

/// `dosod stream` with its status lines recorded as they arrive.
struct Daemon {
    proc: Proc,
    statuses: Arc<Mutex<Vec<(Instant, Value)>>>,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dosod"))
            .args(["--model", path_str(&demo_model()), "--config"])
            .arg(config)
            .args(["stream", "--status-interval-s", "1"])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let statuses: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
        let sink = statuses.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    sink.lock().unwrap().push((Instant::now(), v));
                }
            }
        });
        Daemon {
            proc: Proc(child),
            statuses,
        }
    }

    /// The newest status of camera `name`, and when it was printed.
    fn status(&self, name: &str) -> Option<(Instant, Value)> {
        let lines = self.statuses.lock().unwrap();
        let (at, line) = lines.last()?;
        let s = line.as_array()?.iter().find(|s| s["name"] == name)?;
        Some((*at, s.clone()))
    }

    /// Camera `name`'s frames processed in each status line, with the line's time.
    fn history(&self, name: &str) -> Vec<(Instant, u64)> {
        let lines = self.statuses.lock().unwrap();
        lines
            .iter()
            .filter_map(|(at, l)| {
                let s = l.as_array()?.iter().find(|s| s["name"] == name)?;
                Some((*at, s["frames_processed"].as_u64()?))
            })
            .collect()
    }

    /// Waits until camera `name` processes a frame after `since`: the time of the first status
    /// line printed after `since` that shows more frames than every line before `since`.
    fn wait_processing(&self, name: &str, since: Instant, bound: Duration) -> Instant {
        let mut seen = None;
        wait_for(&format!("camera {name} processing"), bound, || {
            let history = self.history(name);
            let before = history
                .iter()
                .filter(|(at, _)| *at <= since)
                .map(|(_, n)| *n)
                .max()
                .unwrap_or(0);
            seen = history
                .iter()
                .find(|(at, n)| *at > since && *n > before)
                .map(|(at, _)| *at);
            seen.is_some()
        });
        seen.unwrap()
    }

    fn terminate_within(mut self, bound: Duration) -> Duration {
        let pid = self.proc.0.id().to_string();
        let start = Instant::now();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        loop {
            if let Some(status) = self.proc.0.try_wait().unwrap() {
                assert!(status.success(), "dosod stream exited with {status}");
                return start.elapsed();
            }
            assert!(
                start.elapsed() < bound,
                "dosod stream still running {bound:?} after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn cameras_publish_detections_recover_and_change_vocabulary() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mqtt_port, rtsp_port, dead_port) = (free_port(), free_port(), free_port());
    let broker = start_broker(mqtt_port, dir.path());
    let sub = Subscriber::start(mqtt_port);
    let rtsp = start_rtsp(rtsp_port);
    let classes = clip_classes();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
keep_alive_s = 5

[[streams]]
name = "file"
url = "{clip}"
loop = true
fps = 4
detect_width = 640
score_threshold = 0.15

[[streams]]
name = "rtsp"
url = "rtsp://127.0.0.1:{rtsp_port}/scenes"
score_threshold = 0.15
fps = 4
watchdog_s = 8
timeout_s = 2
backoff_s = 1
backoff_max_s = 2

[[streams]]
name = "dead"
url = "rtsp://127.0.0.1:{dead_port}/nothing"
timeout_s = 1
backoff_s = 1
backoff_max_s = 2

[[streams]]
name = "once"
url = "{clip}"
realtime = false
fps = 10
"#,
            clip = path_str(&clip())
        ),
    );
    let server = Server::start_at(&demo_model(), &["--config", path_str(&config)]);
    let t0 = Instant::now();

    // 1. Both live sources reach the broker with the clip's objects; `available` says online.
    wait_for(
        "detections of the clip's classes from both cameras on MQTT",
        Duration::from_secs(60),
        || {
            ["dosod/file/detections", "dosod/rtsp/detections"]
                .iter()
                .all(|t| {
                    sub.json_on(t, t0)
                        .iter()
                        .any(|m| labels(m).iter().any(|l| classes.contains(l)))
                })
        },
    );
    assert!(sub.available("online"));
    let first = &sub.json_on("dosod/file/detections", t0)[0];
    for key in [
        "camera",
        "frame_time",
        "frame_index",
        "detections",
        "latency_ms",
    ] {
        assert!(first.get(key).is_some(), "{key} missing in {first}");
    }
    wait_for("a `new` event", Duration::from_secs(30), || {
        sub.json_on("dosod/events", t0).iter().any(|e| {
            e["type"] == "new"
                && e["after"]["camera"] == "file"
                && e["after"]["top_score"].is_number()
        })
    });
    let counts: Vec<Message> = sub
        .messages
        .lock()
        .unwrap()
        .iter()
        .filter(|m| {
            m.topic.starts_with("dosod/file/")
                && !m.topic.ends_with("/detections")
                && !m.topic.ends_with("/snapshot")
        })
        .cloned()
        .collect();
    assert!(
        counts
            .iter()
            .any(|m| m.payload.parse::<usize>().is_ok_and(|n| n >= 1)),
        "per-label counts: {counts:?}"
    );

    // 2. The camera that never connects: reconnecting with its error, nobody else stalls.
    let dead = stream_status(&server, "dead");
    assert!(
        dead["state"] == "reconnecting" || dead["state"] == "connecting",
        "{dead}"
    );
    assert!(dead["restarts"].as_u64().unwrap() >= 1, "{dead}");
    assert!(dead["last_error"].as_str().is_some(), "{dead}");
    let image = std::fs::read(fixture("images/bus.jpg")).unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "image",
            reqwest::blocking::multipart::Part::bytes(image).file_name("bus.jpg"),
        )
        .text("classes", "dog face");
    let resp = reqwest::blocking::Client::new()
        .post(server.url("/v1/detect"))
        .multipart(form)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "the API answers while a camera is down");
    let list = get_json(&server.url("/v1/streams"));
    assert_eq!(list["streams"].as_array().unwrap().len(), 4);
    // A file without `loop` plays once and ends; it is not restarted as a broken camera.
    wait_for(
        "the non-looping file to end",
        Duration::from_secs(60),
        || stream_status(&server, "once")["state"] == "ended",
    );
    let once = stream_status(&server, "once");
    assert!(once["frames_processed"].as_u64().unwrap() > 0, "{once}");
    assert_eq!(once["restarts"], 0, "{once}");
    assert_eq!(once["enabled"], false, "{once}");
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let processed_fps = metrics
        .lines()
        .find_map(|l| l.strip_prefix("dosod_stream_fps{kind=\"processed\",stream=\"file\"} "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        processed_fps.is_some_and(|v| v > 0.0),
        "processed fps: {processed_fps:?}"
    );
    assert!(metrics.contains("dosod_stream_restarts_total{stream=\"dead\"}"));
    // Every `*_total` is a Prometheus counter (issue 15 item 9: they were gauges).
    for name in [
        "stream_frames_total",
        "stream_restarts_total",
        "vocab_cache_hits_total",
        "requests_total",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE dosod_{name} counter")),
            "{name} is not a counter"
        );
    }
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("# TYPE") && l.contains("_total ") && !l.ends_with(" counter")),
        "a *_total metric that is not a counter"
    );

    // 3. Views: SSE, snapshot, MJPEG.
    let mut sse = reqwest::blocking::Client::new()
        .get(server.url("/v1/streams/file/events"))
        .send()
        .unwrap();
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let mut buf = vec![0u8; 4096];
    let mut text = String::new();
    while !text.contains("event: detections") {
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "SSE closed");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    drop(sse);
    let snap = reqwest::blocking::get(server.url("/v1/streams/file/snapshot.jpg")).unwrap();
    assert_eq!(snap.status(), 200);
    let jpeg = snap.bytes().unwrap();
    assert!(image::load_from_memory(&jpeg).is_ok());
    let mut mjpeg = reqwest::blocking::Client::new()
        .get(server.url("/v1/streams/file/mjpeg"))
        .header("accept-encoding", "gzip")
        .send()
        .unwrap();
    assert!(
        mjpeg.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/x-mixed-replace")
    );
    let mut head = vec![0u8; 64];
    mjpeg.read_exact(&mut head).unwrap();
    assert!(String::from_utf8_lossy(&head).starts_with("--frame\r\nContent-Type: image/jpeg"));
    drop(mjpeg);
    let page = reqwest::blocking::get(server.url("/streams")).unwrap();
    assert_eq!(page.status(), 200);

    // 4. A new vocabulary applies to the following frames, without a restart. (The clip's red
    // apple is the object the demo model scores highest.)
    let only = "red apple".to_string();
    assert!(classes.contains(&only));
    let resp = reqwest::blocking::Client::new()
        .put(server.url("/v1/streams/file/vocabulary"))
        .json(&serde_json::json!({"classes": only}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let status: Value = resp.json().unwrap();
    assert_eq!(status["vocabulary"], serde_json::json!([only]));
    let changed = Instant::now();
    wait_for(
        "frames detected with the new vocabulary",
        Duration::from_secs(20),
        || {
            let after = sub.json_on("dosod/file/detections", changed);
            // only the new class from the third frame on, and it is really seen
            after.len() >= 6
                && after[2..]
                    .iter()
                    .all(|m| labels(m).iter().all(|l| *l == only))
                && after[2..].iter().any(|m| labels(m).contains(&only))
        },
    );
    let bad = reqwest::blocking::Client::new()
        .put(server.url("/v1/streams/file/vocabulary"))
        .json(&serde_json::json!({"classes": []}))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16() / 100, 4);
    let body: Value = bad.json().unwrap();
    assert!(body["error"].is_string() && body["error_type"].is_string());
    assert_eq!(
        stream_status(&server, "file")["vocabulary"],
        serde_json::json!([only]),
        "a refused change keeps the old vocabulary"
    );
    let missing = reqwest::blocking::get(server.url("/v1/streams/nope")).unwrap();
    assert_eq!(missing.status(), 404);

    // 5. The RTSP server goes away for 5 s: the camera comes back within 15 s of its return.
    let restarts_before = stream_status(&server, "rtsp")["restarts"].as_u64().unwrap();
    drop(rtsp);
    std::thread::sleep(Duration::from_secs(5));
    let _rtsp = start_rtsp(rtsp_port);
    let back = Instant::now();
    wait_for(
        "RTSP detections after the server returned",
        Duration::from_secs(15),
        || !sub.json_on("dosod/rtsp/detections", back).is_empty(),
    );
    eprintln!(
        "RTSP camera back {:.1} s after its server returned (5 s outage)",
        back.elapsed().as_secs_f64()
    );
    let rtsp_status = stream_status(&server, "rtsp");
    assert!(
        rtsp_status["restarts"].as_u64().unwrap() > restarts_before,
        "{rtsp_status}"
    );
    assert_eq!(rtsp_status["state"], "running");

    // 6. The broker restarts: publishing resumes on the new connection.
    drop(sub);
    drop(broker);
    std::thread::sleep(Duration::from_secs(2));
    let _broker = start_broker(mqtt_port, dir.path());
    let sub = Subscriber::start(mqtt_port);
    let resumed = Instant::now();
    wait_for(
        "detections after the broker restarted",
        Duration::from_secs(20),
        || !sub.json_on("dosod/file/detections", resumed).is_empty(),
    );
    eprintln!(
        "MQTT publishing resumed {:.1} s after the broker restarted",
        resumed.elapsed().as_secs_f64()
    );
    assert!(sub.available("online"));

    // 7. The daemon dies without a goodbye: the broker publishes its last will.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    wait_for("the `offline` last will", Duration::from_secs(15), || {
        sub.available("offline")
    });
}

#[test]
fn newest_frame_policy_keeps_latency_bounded_when_frames_come_too_fast() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let _broker = start_broker(mqtt_port, dir.path());
    let sub = Subscriber::start(mqtt_port);
    // The file decoded as fast as ffmpeg goes (hundreds of frames per second), no fps cap:
    // far more frames than the detector can take. Headless `dosod stream`.
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}

[[streams]]
name = "fast"
url = "{clip}"
loop = true
realtime = false
fps = 0
"#,
            clip = path_str(&clip())
        ),
    );
    let daemon = Daemon::start(&config);
    let start = Instant::now();
    wait_for("40 processed frames", Duration::from_secs(90), || {
        sub.json_on("dosod/fast/detections", start).len() >= 40
    });
    let messages = sub.json_on("dosod/fast/detections", start);
    let mut latencies: Vec<f64> = messages
        .iter()
        .map(|m| m["latency_ms"].as_f64().unwrap())
        .collect();
    latencies.sort_by(f64::total_cmp);
    // With a queue instead of a newest-frame slot, latency would grow by the decoder's lead
    // every frame (seconds within this test); with it, it stays near one detector run.
    let worst = latencies[latencies.len() - 1];
    assert!(worst < 3000.0, "latency grew: {latencies:?}");
    wait_for(
        "a status line with skipped frames",
        Duration::from_secs(10),
        || {
            daemon.statuses.lock().unwrap().iter().any(|(_, s)| {
                let s = &s[0];
                s["frames_skipped"].as_u64().unwrap_or(0) > 0
                    && s["frames_received"].as_u64().unwrap_or(0)
                        > 2 * s["frames_processed"].as_u64().unwrap_or(u64::MAX / 2)
            })
        },
    );
    // Frame indexes jump: the detector always took the newest frame.
    let indexes: Vec<u64> = messages
        .iter()
        .map(|m| m["frame_index"].as_u64().unwrap())
        .collect();
    assert!(indexes.windows(2).all(|w| w[1] > w[0]));
    assert!(indexes.windows(2).any(|w| w[1] > w[0] + 1), "{indexes:?}");
    // SIGTERM: a clean stop says offline (not through the last will) and exits 0.
    daemon.terminate_within(Duration::from_secs(30));
    wait_for("offline after a clean stop", Duration::from_secs(5), || {
        sub.available("offline")
    });
}

#[test]
fn bad_stream_configuration_is_refused_with_a_clear_message() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[streams]]\nname = \"a b\"\nurl = \"x.mp4\"\n",
            "streams.name `a b`",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\n[[streams]]\nname = \"a\"\nurl = \"y.mp4\"\n",
            "used twice",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\nwatchdog_s = 0\n",
            "watchdog_s",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\nbackend = \"gst\"\n",
            "backend `gst`",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\nclasses = \"\"\nvocabulary = \"no-such\"\n",
            "no-such",
        ),
        // Zone and mask geometry: a bow tie, a point out of the frame, two points, NaN.
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\n[[streams.rules.zones]]\nname = \"bay\"\npoints = [[0, 0], [1, 1], [1, 0], [0, 1]]\n",
            "zone `bay`: the polygon intersects itself",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\n[[streams.rules.zones]]\nname = \"bay\"\npoints = [[0, 0], [1.2, 0], [1, 1]]\n",
            "out of the frame",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\n[[streams.rules.masks]]\npoints = [[0, 0], [1, 1]]\n",
            "mask 0: a polygon needs at least 3 points",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\n[[streams.rules.masks]]\npoints = [[0, 0], [nan, 1], [1, 0]]\n",
            "point 1 is not a finite number",
        ),
        (
            "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\nclasses = \"\"\nvocabulary = \"coco\"\n[[streams.rules.zones]]\nname = \"bay\"\npoints = [[0, 0], [1, 0], [1, 1]]\nclasses = \"forklift\"\n",
            "a zone counts `forklift`",
        ),
    ];
    for (toml, needle) in cases {
        let config = write_config(dir.path(), toml);
        let out = dosod([
            "--model",
            path_str(&demo_model()),
            "--config",
            path_str(&config),
            "stream",
        ]);
        assert_clean_failure(&out, needle);
    }
    let empty = write_config(dir.path(), "");
    assert_clean_failure(
        &dosod(["--config", path_str(&empty), "stream"]),
        "no [[streams]]",
    );
    let one = write_config(dir.path(), "[[streams]]\nname = \"a\"\nurl = \"x.mp4\"\n");
    for bad in ["2/2", "1", "x/3"] {
        assert_clean_failure(
            &dosod(["--config", path_str(&one), "--stream-shard", bad, "stream"]),
            &format!("stream_shard `{bad}`"),
        );
    }
}

/// `[cluster] stream_shard`: three replicas of one configuration run disjoint sets of cameras
/// that together are all of them.
#[test]
fn stream_shards_partition_the_cameras() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let clip = fixture("streams/scenes.mp4");
    let body: String = ["gate", "dock", "yard", "bay", "door"]
        .iter()
        .map(|n| {
            format!(
                "[[streams]]\nname = \"{n}\"\nurl = \"{}\"\nloop = true\nfps = 1\n",
                path_str(&clip)
            )
        })
        .collect();
    let config = write_config(dir.path(), &body);
    let mut seen: Vec<String> = Vec::new();
    for shard in ["0/3", "1/3", "2/3"] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dosod"))
            .args(["--model", path_str(&demo_model()), "--config"])
            .arg(&config)
            .args(["--stream-shard", shard, "stream"])
            .current_dir(root())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        // "running 2 stream(s): bay, yard"
        let names = first
            .trim()
            .split_once(": ")
            .unwrap_or_else(|| panic!("shard {shard}: {first:?}"))
            .1;
        let mine: Vec<String> = names.split(", ").map(str::to_string).collect();
        assert!((1..=2).contains(&mine.len()), "shard {shard} runs {mine:?}");
        seen.extend(mine);
    }
    seen.sort();
    assert_eq!(seen, ["bay", "dock", "door", "gate", "yard"]);
}

#[cfg(feature = "opencv")]
#[test]
fn the_opencv_backend_reads_a_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "[[streams]]\nname = \"cv\"\nurl = \"{}\"\nbackend = \"opencv\"\nfps = 4\nloop = true\n",
            path_str(&clip())
        ),
    );
    let server = Server::start_at(&demo_model(), &["--config", path_str(&config)]);
    wait_for("OpenCV frames processed", Duration::from_secs(60), || {
        stream_status(&server, "cv")["frames_processed"]
            .as_u64()
            .unwrap_or(0)
            >= 5
    });
    let snap = reqwest::blocking::get(server.url("/v1/streams/cv/snapshot.jpg")).unwrap();
    assert_eq!(snap.status(), 200);
}
