//! Camera events end to end: zones, masks, filters, stationary objects, snapshots, the events
//! API and its SQLite store across a restart, and rules changed over HTTP — with the RTSP
//! server, ffmpeg and mosquitto.

use super::*;

/// The fields whose change is worth an `update`.
fn changed(before: &Value, after: &Value) -> bool {
    after["top_score"].as_f64() > before["top_score"].as_f64()
        || [
            "current_zones",
            "entered_zones",
            "stationary",
            "has_snapshot",
            "has_clip",
        ]
        .iter()
        .any(|k| before[k] != after[k])
}

/// A clip of the first frame of the test clip, held for 4 s (a scene where nothing moves).
fn still_clip(dir: &Path) -> PathBuf {
    let png = dir.join("still.png");
    let mp4 = dir.join("still.mp4");
    let ok = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-i", path_str(&clip())])
        .args(["-frames:v", "1", path_str(&png)])
        .status()
        .unwrap()
        .success()
        && Command::new("ffmpeg")
            .args([
                "-y",
                "-loglevel",
                "error",
                "-loop",
                "1",
                "-i",
                path_str(&png),
            ])
            .args(["-t", "4", "-r", "10", "-c:v", "mpeg4", "-q:v", "3"])
            .args(["-pix_fmt", "yuv420p", path_str(&mp4)])
            .status()
            .unwrap()
            .success();
    assert!(ok, "ffmpeg could not make the still clip");
    mp4
}

fn events_of(sub: &Subscriber, camera: &str) -> Vec<Value> {
    sub.on("dosod/events")
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap())
        .filter(|e| e["after"]["camera"] == camera)
        .collect()
}

fn http_json(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

#[test]
fn zones_masks_stationary_snapshots_and_the_events_api() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (mqtt_port, rtsp_port) = (free_port(), free_port());
    let _broker = start_broker(mqtt_port, dir.path());
    let sub = Subscriber::start(mqtt_port);
    let _rtsp = start_rtsp(rtsp_port);
    let still = still_clip(dir.path());
    let events_dir = dir.path().join("events");
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[mqtt]
host = "127.0.0.1"
port = {mqtt_port}
ha_discovery = true

[events]
dir = "{events}"

# The dog walks right through the clip's first 4 s: it enters `right`, which counts only dogs.
# The camera's own classes lack "dog face": the zone adds it to the vocabulary.
[[streams]]
name = "dock"
url = "rtsp://127.0.0.1:{rtsp_port}/scenes"
classes = "cat face, duck"
fps = 5
score_threshold = 0.15
timeout_s = 5
[streams.clips]
enabled = true
pre_capture = 2
post_capture = 2
[streams.rules]
stationary_s = 0
[[streams.rules.zones]]
name = "right"
points = [[0.27, 0], [1, 0], [1, 1], [0.27, 1]]
inertia = 2
classes = "dog face"

# Dogs are masked everywhere; cat faces filtered by score: neither may ever be an event here.
[[streams]]
name = "masked"
url = "{clip}"
loop = true
fps = 5
score_threshold = 0.15
[[streams.rules.masks]]
points = [[0, 0], [1, 0], [1, 1], [0, 1]]
classes = "dog face"
[streams.rules.filters."cat face"]
min_score = 0.99

# Nothing moves: objects become stationary after 1.5 s and then stay silent.
[[streams]]
name = "still"
url = "{still}"
loop = true
fps = 5
score_threshold = 0.15
classes = "dog face"
[streams.rules]
stationary_s = 1.5
"#,
            events = path_str(&events_dir),
            clip = path_str(&clip()),
            still = path_str(&still),
        ),
    );
    let server = Server::start_at(&demo_model(), &["--config", path_str(&config)]);
    let dock = stream_status(&server, "dock");
    let vocab: Vec<&str> = dock["vocabulary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(vocab, ["cat face", "duck", "dog face"], "{dock}");
    assert!(
        stream_status(&server, "masked")["recording"].is_null(),
        "clips are off there"
    );

    // 1. A dog enters the zone: one `new`, updates only on change, one `end`.
    let mut zone_event = String::new();
    wait_for(
        "the dock camera's dog to enter `right` and its event to end",
        Duration::from_secs(120),
        || {
            let found = events_of(&sub, "dock").into_iter().find(|e| {
                e["type"] == "end"
                    && e["after"]["label"] == "dog face"
                    && e["after"]["entered_zones"] == serde_json::json!(["right"])
            });
            if let Some(e) = found {
                zone_event = e["after"]["id"].as_str().unwrap().to_string();
            }
            !zone_event.is_empty()
        },
    );
    let dock_events = events_of(&sub, "dock");
    let mut ids: Vec<&str> = dock_events
        .iter()
        .map(|e| e["after"]["id"].as_str().unwrap())
        .collect();
    ids.dedup();
    for id in ids {
        let of: Vec<&Value> = dock_events
            .iter()
            .filter(|e| e["after"]["id"] == id)
            .collect();
        let kinds: Vec<&str> = of.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds[0], "new", "{id}: {kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == "new").count(),
            1,
            "{id}: {kinds:?}"
        );
        assert!(
            kinds.iter().filter(|k| **k == "end").count() <= 1,
            "{id}: {kinds:?}"
        );
        if let Some(end) = kinds.iter().position(|k| *k == "end") {
            assert_eq!(end, kinds.len() - 1, "{id}: nothing after `end`: {kinds:?}");
        }
        for e in of.iter().filter(|e| e["type"] == "update") {
            assert!(
                changed(&e["before"], &e["after"]),
                "{id}: an update without a change: {e}"
            );
        }
        for pair in of.windows(2) {
            assert_eq!(
                pair[1]["before"], pair[0]["after"],
                "{id}: before = last published"
            );
        }
        assert!(of.iter().all(|e| e["after"]["false_positive"] == false));
    }
    let zone_msgs: Vec<&Value> = dock_events
        .iter()
        .filter(|e| e["after"]["id"] == zone_event.as_str())
        .collect();
    assert!(
        zone_msgs.iter().any(|e| e["type"] == "update"
            && e["after"]["current_zones"] == serde_json::json!(["right"])),
        "the entry is an update: {zone_msgs:?}"
    );
    // Counts per zone, and the `all` totals, went up to at least 1.
    for topic in [
        "dosod/dock/right/dog_face",
        "dosod/dock/right/all",
        "dosod/dock/all",
    ] {
        assert!(
            sub.on(topic)
                .iter()
                .any(|m| m.payload.parse::<u32>().is_ok_and(|n| n >= 1)),
            "{topic}: {:?}",
            sub.on(topic)
        );
    }
    // The snapshot went out retained as a JPEG.
    let snaps = sub.on("dosod/dock/dog_face/snapshot");
    assert!(
        snaps.iter().any(|m| m.bytes.starts_with(&[0xFF, 0xD8])),
        "{} snapshot messages",
        snaps.len()
    );

    // Home Assistant discovery: valid configs on the right topics, and `available` retained.
    let config_of = |topic: &str| -> Value {
        let m = sub.on(topic);
        assert!(!m.is_empty(), "no discovery config on {topic}");
        serde_json::from_str(&m.last().unwrap().payload).unwrap()
    };
    let detected = config_of("homeassistant/binary_sensor/dosod_dock__dog_face/config");
    assert_eq!(detected["state_topic"], "dosod/dock/dog_face");
    assert_eq!(detected["availability_topic"], "dosod/available");
    assert_eq!(detected["device"]["name"], "dock");
    let zone_count = config_of("homeassistant/sensor/dosod_dock__right__dog_face_count/config");
    assert_eq!(zone_count["state_topic"], "dosod/dock/right/dog_face");
    config_of("homeassistant/sensor/dosod_dock__cat_face_count/config");
    config_of("homeassistant/sensor/dosod_masked__all_count/config");
    let retained = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &mqtt_port.to_string()])
        .args([
            "-t",
            "dosod/available",
            "-C",
            "1",
            "-W",
            "10",
            "-F",
            "%r %p",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&retained.stdout).trim(), "1 online");

    // Metrics: events per camera and type, and the recorder's state.
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "dosod_events_total{stream=\"dock\",type=\"new\"}",
        "dosod_events_total{stream=\"dock\",type=\"end\"}",
        "dosod_stream_recording{stream=\"dock\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from /metrics");
    }

    // 2. The events API serves the stored event, its snapshot and thumbnail.
    let client = reqwest::blocking::Client::new();
    let (code, listed) = http_json(
        client
            .get(server.url("/v1/events?camera=dock&zone=right&limit=50"))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200, "{listed}");
    assert!(
        listed["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == zone_event.as_str()),
        "{listed}"
    );
    let (code, stored) = http_json(
        client
            .get(server.url(&format!("/v1/events/{zone_event}")))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200, "{stored}");
    assert_eq!(stored["entered_zones"], serde_json::json!(["right"]));
    assert!(stored["end_time"].as_f64().unwrap() >= stored["start_time"].as_f64().unwrap());
    let snapshot = client
        .get(server.url(&format!("/v1/events/{zone_event}/snapshot.jpg")))
        .send()
        .unwrap();
    assert_eq!(snapshot.status(), 200);
    let snapshot = image::load_from_memory(&snapshot.bytes().unwrap()).unwrap();
    assert_eq!((snapshot.width(), snapshot.height()), (640, 360));
    let thumb = client
        .get(server.url(&format!("/v1/events/{zone_event}/thumbnail.jpg")))
        .send()
        .unwrap();
    assert_eq!(thumb.status(), 200);
    let thumb = image::load_from_memory(&thumb.bytes().unwrap()).unwrap();
    assert!(
        thumb.height() <= 175 && thumb.width() < 640,
        "{}x{}",
        thumb.width(),
        thumb.height()
    );
    assert_eq!(stored["has_clip"], true, "{stored}");
    assert_eq!(stream_status(&server, "dock")["recording"], true);

    // The clip: the camera's own H.264 copied, covering 2 s before and after the event.
    let clip_url = server.url(&format!("/v1/events/{zone_event}/clip.mp4"));
    let mut clip = Vec::new();
    wait_for("the event's clip", Duration::from_secs(60), || {
        let r = client.get(&clip_url).send().unwrap();
        if r.status() == 200 {
            clip = r.bytes().unwrap().to_vec();
        }
        !clip.is_empty()
    });
    let clip_file = dir.path().join("clip.mp4");
    std::fs::write(&clip_file, &clip).unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames:format=duration",
        ])
        .args(["-of", "json", path_str(&clip_file)])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(probe["streams"][0]["codec_name"], "h264", "{probe}");
    let frames: u64 = probe["streams"][0]["nb_read_frames"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let window =
        stored["end_time"].as_f64().unwrap() - stored["start_time"].as_f64().unwrap() + 4.0;
    eprintln!("clip: {duration:.1} s, {frames} frames, for a {window:.1} s window");
    // Segment names are whole seconds and the stream arrives a little late: 1 s of slack.
    assert!(
        duration >= window - 1.0,
        "{duration} s for a {window} s window"
    );
    assert!(
        duration <= window + 8.0,
        "{duration} s for a {window} s window"
    );
    assert!(
        frames as f64 >= duration * 10.0 * 0.9,
        "{frames} frames in {duration} s"
    );
    for (url, want) in [
        ("/v1/events/no-such-event".to_string(), 404),
        ("/v1/events?limit=abc".to_string(), 400),
        ("/v1/events?colour=red".to_string(), 400),
    ] {
        let (code, body) = http_json(client.get(server.url(&url)).send().unwrap());
        assert_eq!(code, want, "{url}: {body}");
        assert!(
            body["error"].is_string() && body["error_type"].is_string(),
            "{url}: {body}"
        );
    }

    // 3. Masked and filtered objects never became events (nor detections); others did.
    wait_for(
        "events of other labels on the masked camera",
        Duration::from_secs(60),
        || !events_of(&sub, "masked").is_empty(),
    );
    let masked = events_of(&sub, "masked");
    for e in &masked {
        let label = e["after"]["label"].as_str().unwrap();
        assert!(label != "dog face" && label != "cat face", "{e}");
    }
    for m in sub.on("dosod/masked/detections") {
        let m: Value = serde_json::from_str(&m.payload).unwrap();
        assert!(
            labels(&m)
                .iter()
                .all(|l| l != "dog face" && l != "cat face"),
            "{m}"
        );
    }

    // 4. The still scene: one update says stationary, then nothing until the object moves.
    let mut still_id = String::new();
    wait_for("a stationary object", Duration::from_secs(60), || {
        if let Some(e) = events_of(&sub, "still")
            .iter()
            .find(|e| e["after"]["stationary"] == true)
        {
            still_id = e["after"]["id"].as_str().unwrap().to_string();
        }
        !still_id.is_empty()
    });
    let processed = |s: &Server| {
        stream_status(s, "still")["frames_processed"]
            .as_u64()
            .unwrap()
    };
    let at = processed(&server);
    wait_for(
        "ten more frames of the still scene",
        Duration::from_secs(60),
        || processed(&server) >= at + 10,
    );
    let of: Vec<Value> = events_of(&sub, "still")
        .into_iter()
        .filter(|e| e["after"]["id"] == still_id.as_str())
        .collect();
    let first = of
        .iter()
        .position(|e| e["after"]["stationary"] == true)
        .unwrap();
    assert_eq!(of[first]["type"], "update");
    assert!(
        of[first + 1..].iter().all(|e| e["type"] == "end"),
        "a stationary object sent updates: {:?}",
        &of[first + 1..]
    );

    // 5. Rules over HTTP: bad geometry is a 422 and changes nothing; good rules apply, and a
    // zone's classes join the vocabulary.
    let rules_url = server.url("/v1/streams/dock/rules");
    let (_, before) = http_json(client.get(&rules_url).send().unwrap());
    assert_eq!(before["zones"][0]["name"], "right", "{before}");
    for (bad, needle) in [
        (
            serde_json::json!({"zones": [{"name": "x", "points": [[0, 0], [1, 1], [1, 0], [0, 1]]}]}),
            "intersects itself",
        ),
        (
            serde_json::json!({"zones": [{"name": "x", "points": [[0, 0], [1, 0]]}]}),
            "at least 3 points",
        ),
        (
            serde_json::json!({"masks": [{"points": [[0, 0], [2, 0], [1, 1]]}]}),
            "out of the frame",
        ),
        (
            serde_json::json!({"zones": [{"name": "x", "points": [[0, 0], ["a", 0], [1, 1]]}]}),
            "rules",
        ),
    ] {
        let (code, body) = http_json(client.put(&rules_url).json(&bad).send().unwrap());
        assert_eq!(code, 422, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{body}");
        assert!(body["error_type"].is_string(), "{body}");
    }
    let (code, body) = http_json(
        client
            .put(&rules_url)
            .body("{\"zones\": [{\"name\": \"x\", \"points\": [[0, 0], [NaN, 0], [1, 1]]}]}")
            .send()
            .unwrap(),
    );
    assert_eq!(code, 400, "NaN is not JSON: {body}");
    let (_, after) = http_json(client.get(&rules_url).send().unwrap());
    assert_eq!(after, before, "a refused change left the rules alone");
    let new_rules = serde_json::json!({
        "stationary_s": 0,
        "zones": [
            {"name": "right", "points": [[0.27, 0], [1, 0], [1, 1], [0.27, 1]], "inertia": 2, "classes": "dog face"},
            {"name": "left", "points": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], "classes": "violin"}
        ]
    });
    let (code, body) = http_json(client.put(&rules_url).json(&new_rules).send().unwrap());
    assert_eq!(code, 200, "{body}");
    let (_, after) = http_json(client.get(&rules_url).send().unwrap());
    assert_eq!(after["zones"][1]["name"], "left", "{after}");
    let vocab = stream_status(&server, "dock")["vocabulary"].clone();
    assert_eq!(
        vocab,
        serde_json::json!(["cat face", "duck", "dog face", "violin"])
    );
    let at = stream_status(&server, "dock")["frames_processed"]
        .as_u64()
        .unwrap();
    wait_for(
        "the dock camera after the change",
        Duration::from_secs(60),
        || {
            stream_status(&server, "dock")["frames_processed"]
                .as_u64()
                .unwrap()
                > at + 5
        },
    );

    // Clips switched on at run time for the masked camera; bad settings are a 422.
    let clips_url = server.url("/v1/streams/masked/clips");
    let (code, body) = http_json(
        client
            .put(&clips_url)
            .json(&serde_json::json!({"enabled": true, "segment_s": 1}))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("segment_s"),
        "{body}"
    );
    assert!(stream_status(&server, "masked")["recording"].is_null());
    let (code, body) = http_json(
        client
            .put(&clips_url)
            .json(&serde_json::json!({"enabled": true, "pre_capture": 1, "post_capture": 1}))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200, "{body}");
    wait_for(
        "the masked camera recording",
        Duration::from_secs(30),
        || stream_status(&server, "masked")["recording"] == true,
    );
    let (_, now) = http_json(client.get(&clips_url).send().unwrap());
    assert_eq!(
        (now["enabled"].as_bool(), now["pre_capture"].as_f64()),
        (Some(true), Some(1.0))
    );

    // 6. DELETE removes an event and its files.
    let other = masked[0]["after"]["id"].as_str().unwrap().to_string();
    let (code, _) = http_json(
        client
            .delete(server.url(&format!("/v1/events/{other}")))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200);
    for path in [
        format!("/v1/events/{other}"),
        format!("/v1/events/{other}/snapshot.jpg"),
    ] {
        let (code, _) = http_json(client.get(server.url(&path)).send().unwrap());
        assert_eq!(code, 404, "{path}");
    }
    let (code, _) = http_json(
        client
            .delete(server.url(&format!("/v1/events/{other}")))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 404, "deleted twice");

    // 7. Events survive a restart; the ones still open at shutdown were ended and stored.
    assert!(server.terminate().success());
    let restarted = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let server = Server::start_at(&demo_model(), &["--config", path_str(&config)]);
    let (code, stored_again) = http_json(
        client
            .get(server.url(&format!("/v1/events/{zone_event}")))
            .send()
            .unwrap(),
    );
    assert_eq!(code, 200);
    assert_eq!(stored_again, stored);
    let (_, all) = http_json(
        client
            .get(server.url("/v1/events?limit=10000"))
            .send()
            .unwrap(),
    );
    let all = all["events"].as_array().unwrap().clone();
    assert!(all.len() >= 3, "{}", all.len());
    for e in all
        .iter()
        .filter(|e| e["start_time"].as_f64().unwrap() < restarted)
    {
        assert!(
            e["end_time"].is_number(),
            "every event ended at shutdown: {e}"
        );
    }
    assert!(server.terminate().success());
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop (the tests run as root, as CI
/// does: `mount` is how a real full disk is made).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        let at = dir.join("small-disk");
        std::fs::create_dir_all(&at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a small tmpfs needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk stops recording with a clear error in the camera's status, and detection goes
/// on.
#[test]
fn a_full_disk_stops_recording_never_detection() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(dir.path(), "320k");
    let rtsp_port = free_port();
    let _rtsp = start_rtsp(rtsp_port);
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[events]
dir = "{events}"

[[streams]]
name = "dock"
url = "rtsp://127.0.0.1:{rtsp_port}/scenes"
fps = 5
score_threshold = 0.15
[streams.clips]
enabled = true
"#,
            events = path_str(&disk.0),
        ),
    );
    let server = Server::start_at(&demo_model(), &["--config", path_str(&config)]);
    let mut last = Value::Null;
    wait_for(
        "the recorder to report the full disk",
        Duration::from_secs(90),
        || {
            last = stream_status(&server, "dock");
            last["recording_error"]
                .as_str()
                .is_some_and(|e| e.contains("disk full"))
        },
    );
    let error = last["recording_error"].as_str().unwrap().to_string();
    assert!(
        !error.contains(path_str(&disk.0)),
        "no path in the status: {error}"
    );
    assert!(!error.contains("rtsp://"), "no URL in the status: {error}");
    let at = last["frames_processed"].as_u64().unwrap();
    wait_for("detection to go on", Duration::from_secs(60), || {
        stream_status(&server, "dock")["frames_processed"]
            .as_u64()
            .unwrap()
            >= at + 10
    });
    let now = stream_status(&server, "dock");
    assert_eq!(now["state"], "running", "{now}");
    assert!(
        server.terminate().success(),
        "a full disk never stops the server"
    );
}
