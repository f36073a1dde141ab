//! The stream daemon under faults, with the documented defaults: a broker absent at start-up and
//! a broker outage (30 s each), 12 s and 60 s RTSP server outages, `kill -9` of a camera's ffmpeg,
//! SIGTERM while the broker is away, and a daemon restart (event ids never repeat).
//!
//! Three cameras at 5 fps, each from its own GStreamer RTSP server, run headless (`dosod stream`,
//! status lines on stdout). The daemon reaches the real mosquitto through a gate (a TCP relay the
//! test opens and closes) only so that the test's subscriber is listening before the daemon
//! reconnects: the outage itself is the broker process killed and started again.

use super::*;
use std::collections::HashSet;
use std::io::Write;
use std::net::{Shutdown, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A TCP relay to the broker that refuses everyone while closed.
struct Gate {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<TcpStream>>>,
}

impl Gate {
    fn start(upstream: u16) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_open, all) = (open.clone(), links.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if !is_open.load(Ordering::Acquire) {
                    continue; // dropped: the client sees the connection close at once
                }
                let Ok(broker) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut all = all.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(broker.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), broker.try_clone().unwrap()),
                    (broker, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.flush();
                        let _ = from.shutdown(Shutdown::Both);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Gate { port, open, links }
    }

    fn open(&self) {
        self.open.store(true, Ordering::Release);
    }

    fn close(&self) {
        self.open.store(false, Ordering::Release);
        for link in self.links.lock().unwrap().drain(..) {
            let _ = link.shutdown(Shutdown::Both);
        }
    }
}

/// The pid of a child of `parent` whose command line contains `needle`.
fn child_with(parent: u32, needle: &str) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == Some(parent) && String::from_utf8_lossy(&cmdline).contains(needle) {
            return Some(pid);
        }
    }
    None
}

/// The broker back: mosquitto, a subscriber listening, then the gate opens. Returns when the
/// broker started (the outage's end).
fn broker_back(port: u16, dir: &Path, gate: &Gate) -> (Proc, Subscriber, Instant, f64) {
    let broker = start_broker(port, dir);
    let (back, back_epoch) = (Instant::now(), epoch());
    let sub = Subscriber::start(port);
    gate.open();
    (broker, sub, back, back_epoch)
}

/// After the broker's return: `online` is the first message, fresh detections follow within
/// 5 s, and none of them is a frame from before the return. Returns the seconds to the first.
fn check_resumed(sub: &Subscriber, back: Instant, back_epoch: f64, cameras: &[&str]) -> f64 {
    let topics: Vec<String> = cameras
        .iter()
        .map(|c| format!("dosod/{c}/detections"))
        .collect();
    wait_for(
        "detections after the broker's return",
        Duration::from_secs(30),
        || topics.iter().any(|t| !sub.on(t).is_empty()),
    );
    let messages = sub.messages.lock().unwrap().clone();
    assert_eq!(
        (messages[0].topic.as_str(), messages[0].payload.as_str()),
        ("dosod/available", "online"),
        "the first message after the broker's return: {:?}",
        &messages[..messages.len().min(5)]
    );
    let first = messages
        .iter()
        .find(|m| m.topic.ends_with("/detections"))
        .unwrap();
    let after = first.at.duration_since(back).as_secs_f64();
    assert!(
        after <= 5.0,
        "first detections {after:.1} s after the broker's return"
    );
    for m in messages.iter().filter(|m| m.topic.ends_with("/detections")) {
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        let frame_time = v["frame_time"].as_f64().unwrap();
        // (fresh: made after the connection returned, give or take one detector run)
        assert!(
            frame_time > back_epoch - 2.0,
            "a detections message from before the outage was sent after it: {}",
            m.payload
        );
    }
    after
}

/// Camera `name`, whose RTSP server came back at `back` after an outage of `outage`, processes
/// frames again within 15 s of that return.
fn recovered_within_15_s(daemon: &Daemon, name: &str, back: Instant, outage: &str) {
    let running = daemon.wait_processing(name, back, Duration::from_secs(60));
    let after = running.duration_since(back).as_secs_f64();
    eprintln!("{outage} RTSP outage: camera running again {after:.1} s after the server's return");
    assert!(
        after <= 15.0,
        "{outage} outage: running again after {after:.1} s"
    );
}

fn new_event_ids(sub: &Subscriber) -> Vec<String> {
    sub.messages
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.topic == "dosod/events")
        .filter_map(|m| serde_json::from_str::<Value>(&m.payload).ok())
        .filter(|e| e["type"] == "new")
        .map(|e| e["after"]["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn cameras_and_mqtt_recover_from_outages_within_their_bounds() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mqtt_port = free_port();
    let gate = Gate::start(mqtt_port);
    let cameras = ["a", "b", "c"];
    let rtsp_ports: Vec<u16> = cameras.iter().map(|_| free_port()).collect();
    let mut rtsp: Vec<Option<Proc>> = rtsp_ports.iter().map(|p| Some(start_rtsp(*p))).collect();
    let mut config = format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nkeep_alive_s = 5\n",
        gate.port
    );
    for (name, port) in cameras.iter().zip(&rtsp_ports) {
        // Defaults for everything that decides recovery (watchdog, back-off, frame age).
        config.push_str(&format!(
            "\n[[streams]]\nname = \"{name}\"\nurl = \"rtsp://127.0.0.1:{port}/scenes\"\n\
             fps = 5\nscore_threshold = 0.15\n"
        ));
    }
    let config = write_config(dir.path(), &config);
    let mut all_ids: Vec<String> = Vec::new();

    // 1. The broker is absent for the first 30 s; the cameras run meanwhile.
    let daemon = Daemon::start(&config);
    let t0 = Instant::now();
    for name in cameras {
        daemon.wait_processing(name, t0, Duration::from_secs(60));
    }
    // Camera b's server goes away for 60 s.
    rtsp[1] = None;
    let b_down = Instant::now();
    std::thread::sleep(Duration::from_secs(30).saturating_sub(t0.elapsed()));
    let (broker, sub, back, back_epoch) = broker_back(mqtt_port, dir.path(), &gate);
    let first = check_resumed(&sub, back, back_epoch, &["a", "c"]);
    eprintln!("broker absent at start-up for 30 s: detections {first:.2} s after its start");

    // 2. A 30 s broker outage; camera a's server is away for 12 s of it.
    all_ids.extend(new_event_ids(&sub));
    drop(sub);
    drop(broker);
    gate.close();
    let outage = Instant::now();
    rtsp[0] = None;
    std::thread::sleep(Duration::from_secs(12));
    rtsp[0] = Some(start_rtsp(rtsp_ports[0]));
    let a_back = Instant::now();
    std::thread::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed()));
    let (broker, sub, back, back_epoch) = broker_back(mqtt_port, dir.path(), &gate);
    let first = check_resumed(&sub, back, back_epoch, &["a", "c"]);
    eprintln!("30 s broker outage: detections {first:.2} s after the broker's return");
    recovered_within_15_s(&daemon, "a", a_back, "12 s");

    std::thread::sleep(Duration::from_secs(60).saturating_sub(b_down.elapsed()));
    rtsp[1] = Some(start_rtsp(rtsp_ports[1]));
    let b_back = Instant::now();
    recovered_within_15_s(&daemon, "b", b_back, "60 s");
    let (_, b) = daemon.status("b").unwrap();
    assert_eq!(b["state"], "running", "{b}");
    assert!(b["restarts"].as_u64().unwrap() >= 1, "{b}");

    // 3. `kill -9` of camera c's ffmpeg, four times: no frame older than 1 s is ever published.
    let kills = Instant::now();
    let pid = daemon.proc.0.id();
    for _ in 0..4 {
        let field = |key: &str| daemon.status("c").and_then(|(_, s)| s[key].as_u64());
        wait_for("camera c running", Duration::from_secs(60), || {
            daemon
                .status("c")
                .is_some_and(|(_, s)| s["state"] == "running")
        });
        let restarts = field("restarts").unwrap();
        let ffmpeg =
            child_with(pid, &format!("127.0.0.1:{}", rtsp_ports[2])).expect("camera c's ffmpeg");
        Command::new("kill")
            .args(["-KILL", &ffmpeg.to_string()])
            .status()
            .unwrap();
        let killed = Instant::now();
        // The first status line that shows the restart counts every frame of the old
        // connection; a higher count is a frame of the new one.
        let mut base = None;
        wait_for("camera c restarted", Duration::from_secs(30), || {
            if field("restarts").unwrap() > restarts {
                base = field("frames_processed");
            }
            base.is_some()
        });
        wait_for("camera c processing again", Duration::from_secs(60), || {
            field("frames_processed") > base
        });
        eprintln!(
            "ffmpeg killed: camera c processing again within {:.1} s",
            killed.elapsed().as_secs_f64()
        );
    }
    let published = sub.json_on("dosod/c/detections", kills);
    assert!(published.len() >= 8, "{} messages", published.len());
    for m in &published {
        let latency = m["latency_ms"].as_f64().unwrap();
        assert!(latency < 1000.0, "a frame {latency} ms old was published");
    }
    let (_, c) = daemon.status("c").unwrap();
    assert!(c["restarts"].as_u64().unwrap() >= 4, "{c}");

    // 4. SIGTERM while the broker is away: a bounded, clean exit.
    all_ids.extend(new_event_ids(&sub));
    drop(sub);
    drop(broker);
    gate.close();
    std::thread::sleep(Duration::from_secs(3));
    let took = daemon.terminate_within(Duration::from_secs(5));
    eprintln!("SIGTERM during a broker outage: exited in {took:.2?}");

    // 5. A restarted daemon never repeats an event id of the first run.
    let (_broker, sub, _, _) = broker_back(mqtt_port, dir.path(), &gate);
    let daemon = Daemon::start(&config);
    wait_for(
        "new objects after the restart",
        Duration::from_secs(60),
        || new_event_ids(&sub).len() >= 3,
    );
    let first_run: HashSet<&String> = all_ids.iter().collect();
    assert_eq!(first_run.len(), all_ids.len(), "ids repeated: {all_ids:?}");
    assert!(!first_run.is_empty());
    for id in new_event_ids(&sub) {
        assert!(!first_run.contains(&id), "{id} was used before the restart");
    }
    daemon.terminate_within(Duration::from_secs(10));
}

#[test]
fn the_watchdog_restarts_a_source_that_only_crawls() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // One frame every 4 s: never silent for the 10 s window, but 2-3 frames where the default
    // watchdog wants at least 5 (0.5 fps over 10 s).
    let crawl = dir.path().join("crawl.avi");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi"])
        .args([
            "-i",
            "testsrc=size=160x120:rate=0.25",
            "-t",
            "60",
            "-c:v",
            "mjpeg",
        ])
        .arg(&crawl)
        .status()
        .unwrap();
    assert!(made.success());
    let config = write_config(
        dir.path(),
        &format!(
            "[[streams]]\nname = \"crawl\"\nurl = \"{}\"\nfps = 5\n",
            path_str(&crawl)
        ),
    );
    let daemon = Daemon::start(&config);
    let started = Instant::now();
    wait_for(
        "the watchdog to restart the crawling source",
        Duration::from_secs(60),
        || {
            daemon.status("crawl").is_some_and(|(_, s)| {
                s["restarts"].as_u64().unwrap_or(0) >= 1
                    && s["last_error"]
                        .as_str()
                        .is_some_and(|e| e.starts_with("watchdog:"))
            })
        },
    );
    let took = started.elapsed().as_secs_f64();
    eprintln!("a source at 0.25 fps restarted by the watchdog after {took:.1} s");
    let (_, s) = daemon.status("crawl").unwrap();
    assert!(s["frames_received"].as_u64().unwrap() >= 1, "{s}");
    daemon.terminate_within(Duration::from_secs(10));
}
