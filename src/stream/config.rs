//! Stream settings: the `[[streams]]` cameras and the `[mqtt]` broker, with defaults and checks.

use serde::{Deserialize, Serialize};

use super::recorder::ClipConfig;
use super::rules::RulesConfig;

/// One `[[streams]]` entry: a camera and what to look for in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// Unique; used in topics and URLs (letters, digits, `-`, `_`).
    pub name: String,
    /// `rtsp://…`, `http://…` (MJPEG), a video file, or `/dev/videoN`.
    pub url: String,
    /// `ffmpeg` (default) or `opencv` (needs the cargo feature `opencv`).
    pub backend: String,
    /// Classes: "person, forklift|fork lift". Empty: `vocabulary`, else the bundle's default.
    pub classes: String,
    /// A named or built-in vocabulary, used when `classes` is empty.
    pub vocabulary: String,
    /// Frames processed per second at most (0: as fast as the detector goes).
    pub fps: f64,
    /// Minimum score [default: the bundle's].
    pub score_threshold: Option<f32>,
    pub enabled: bool,
    /// Frames are scaled to this width (aspect kept; never upscaled; area averaging) before
    /// detection; 0: full frames, so the model's own resize (OpenCV's area) applies exactly.
    pub detect_width: u32,
    /// Files: read at their native frame rate, as a camera would deliver them.
    pub realtime: bool,
    /// Files with `realtime`: read at this multiple of the native frame rate (a camera faster
    /// than the clip; benchmarks feed the detector faster than it runs without decoding flat out).
    pub read_rate: f64,
    /// Files: start again at the end.
    #[serde(rename = "loop")]
    pub loop_file: bool,
    /// The watchdog's window: a source that delivers fewer than
    /// `max(1, watchdog_min_fps × watchdog_s)` frames in the last `watchdog_s` seconds (a silent
    /// or a crawling camera) is killed and restarted.
    pub watchdog_s: f64,
    /// The slowest input frame rate the watchdog accepts (0: only silence trips it).
    pub watchdog_min_fps: f64,
    /// First wait before a reconnect; doubles per failure up to `backoff_max_s`, and starts
    /// again from here once the new connection delivers a frame.
    pub backoff_s: f64,
    /// The longest wait between reconnects: a camera back after any outage is running again
    /// within about this plus its connection time.
    pub backoff_max_s: f64,
    /// A frame older than this when the detector would take it is dropped, never processed.
    pub max_frame_age_s: f64,
    /// Network read timeout handed to the decoder.
    pub timeout_s: f64,
    /// Zones, masks, object filters and stationary handling (`PUT /v1/streams/{name}/rules`
    /// replaces them at run time).
    pub rules: RulesConfig,
    /// Recording clips around events (needs `[events] dir`).
    pub clips: ClipConfig,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            backend: "ffmpeg".into(),
            classes: String::new(),
            vocabulary: String::new(),
            fps: 5.0,
            score_threshold: None,
            enabled: true,
            detect_width: 640,
            realtime: true,
            read_rate: 1.0,
            loop_file: false,
            watchdog_s: 10.0,
            watchdog_min_fps: 0.5,
            backoff_s: 1.0,
            backoff_max_s: 8.0,
            max_frame_age_s: 1.0,
            timeout_s: 10.0,
            rules: RulesConfig::default(),
            clips: ClipConfig::default(),
        }
    }
}

impl StreamConfig {
    /// Checks one entry; the message names the stream and the key.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "streams.name `{name}`: 1-64 letters, digits, `-` or `_`"
            ));
        }
        if self.url.trim().is_empty() {
            return Err(format!("streams `{name}`: url is empty"));
        }
        if !matches!(self.backend.as_str(), "ffmpeg" | "opencv") {
            return Err(format!(
                "streams `{name}`: backend `{}` (expected ffmpeg or opencv)",
                self.backend
            ));
        }
        if self.backend == "opencv" && !cfg!(feature = "opencv") {
            return Err(format!(
                "streams `{name}`: backend opencv needs dosod built with `--features opencv`"
            ));
        }
        for (key, v) in [
            ("fps", self.fps),
            ("watchdog_s", self.watchdog_s),
            ("watchdog_min_fps", self.watchdog_min_fps),
            ("max_frame_age_s", self.max_frame_age_s),
            ("backoff_s", self.backoff_s),
            ("backoff_max_s", self.backoff_max_s),
            ("timeout_s", self.timeout_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("streams `{name}`: {key} must be >= 0"));
            }
        }
        if !self.read_rate.is_finite() || self.read_rate <= 0.0 {
            return Err(format!("streams `{name}`: read_rate must be > 0"));
        }
        if self.watchdog_s < 1.0 {
            return Err(format!("streams `{name}`: watchdog_s must be >= 1"));
        }
        if self.max_frame_age_s <= 0.0 {
            return Err(format!("streams `{name}`: max_frame_age_s must be > 0"));
        }
        if self.detect_width != 0 && !(16..=8192).contains(&self.detect_width) {
            return Err(format!(
                "streams `{name}`: detect_width must be 0 (full frames) or 16..8192"
            ));
        }
        if let Some(t) = self.score_threshold {
            crate::engine::postprocess::check_unit("score_threshold", t)
                .map_err(|e| format!("streams `{name}`: {e}"))?;
        }
        self.rules
            .compile()
            .map_err(|e| format!("streams `{name}`: rules: {e}"))?;
        self.clips
            .validate()
            .map_err(|e| format!("streams `{name}`: {e}"))?;
        Ok(())
    }

    /// A local video file (not a network URL or a V4L2 device).
    pub fn is_file(&self) -> bool {
        !self.url.contains("://") && !self.url.starts_with("/dev/video")
    }

    /// The URL with any password replaced, for status pages and logs.
    pub fn redacted_url(&self) -> String {
        crate::config::redact_url(&self.url)
    }
}

section! {
    /// `[mqtt]`: where detections and events are published. An empty host turns MQTT off.
    pub struct MqttSettings, flags MqttArgs (global = false) {
        /// MQTT broker host; empty: no MQTT.
        host: String = String::new() => "mqtt-host", "DOSOD_MQTT_HOST";
        port: u16 = 1883 => "mqtt-port", "DOSOD_MQTT_PORT";
        client_id: String = "dosod".into() => "mqtt-client-id", "DOSOD_MQTT_CLIENT_ID";
        /// Topics start with this: `<prefix>/available`, `<prefix>/<camera>/detections`, ….
        topic_prefix: String = "dosod".into() => "mqtt-topic-prefix", "DOSOD_MQTT_TOPIC_PREFIX";
        username: String = String::new() => "mqtt-username", "DOSOD_MQTT_USERNAME";
        password: String = String::new() => "mqtt-password", "DOSOD_MQTT_PASSWORD", hide_env_values = true;
        keep_alive_s: u64 = 15 => "mqtt-keep-alive-s", "DOSOD_MQTT_KEEP_ALIVE_S";
        /// Messages waiting for the broker (the outbox). A camera's detections and each count
        /// topic keep only their newest message; when full, the oldest detections go first.
        queue: usize = 256 => "mqtt-queue", "DOSOD_MQTT_QUEUE";
        /// Detections not sent within this many seconds are dropped (events and counts are kept).
        max_age_s: f64 = 1.0 => "mqtt-max-age-s", "DOSOD_MQTT_MAX_AGE_S";
        /// Publish every processed frame on `<camera>/detections` (events and counts always go).
        publish_detections: bool = true => "mqtt-publish-detections", "DOSOD_MQTT_PUBLISH_DETECTIONS";
        /// Home Assistant MQTT discovery: per camera, "<label> detected" and count sensors per
        /// label and zone, with no YAML (docs/streams.md).
        ha_discovery: bool = false => "mqtt-ha-discovery", "DOSOD_MQTT_HA_DISCOVERY";
        /// Home Assistant's discovery prefix.
        ha_discovery_prefix: String = "homeassistant".into() => "mqtt-ha-discovery-prefix", "DOSOD_MQTT_HA_DISCOVERY_PREFIX";
    }
}

impl MqttSettings {
    /// Checks the values a file or flag can get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.max_age_s.is_finite() && self.max_age_s > 0.0) {
            return Err(format!("max_age_s must be > 0 (got {})", self.max_age_s));
        }
        if self.queue == 0 {
            return Err("queue must be >= 1".into());
        }
        Ok(())
    }
}

section! {
    /// `[events]`: where camera events, their snapshots and clips are kept, and for how long.
    pub struct EventSettings, flags EventArgs (global = true) {
        /// The SQLite database (`events.db`) and the media files; empty: events are published
        /// (MQTT, SSE) but not stored, and `/v1/events` is empty.
        dir: std::path::PathBuf = std::path::PathBuf::from("data/events") => "events-dir", "DOSOD_EVENTS_DIR";
        /// Save each event's best frame and a thumbnail (JPEG), and publish it retained on
        /// `<prefix>/<camera>/<label>/snapshot`.
        snapshots: bool = true => "events-snapshots", "DOSOD_EVENTS_SNAPSHOTS";
        /// Snapshots show the object and its surroundings rather than the whole frame.
        snapshot_crop: bool = false => "events-snapshot-crop", "DOSOD_EVENTS_SNAPSHOT_CROP";
        /// Snapshots have the object's box and label drawn.
        snapshot_boxes: bool = true => "events-snapshot-boxes", "DOSOD_EVENTS_SNAPSHOT_BOXES";
        /// JPEG quality of snapshots and thumbnails (1-100).
        snapshot_quality: u8 = 85 => "events-snapshot-quality", "DOSOD_EVENTS_SNAPSHOT_QUALITY";
        /// Ended events older than this many days are deleted with their files (0: kept).
        retain_days: f64 = 10.0 => "events-retain-days", "DOSOD_EVENTS_RETAIN_DAYS";
        /// When the events' files take more than this, the oldest ended events go first (0: no
        /// limit).
        max_size_mb: u64 = 4096 => "events-max-size-mb", "DOSOD_EVENTS_MAX_SIZE_MB";
    }
}

impl EventSettings {
    /// Checks the values a file or flag can get wrong.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.retain_days.is_finite() && self.retain_days >= 0.0) {
            return Err(format!(
                "retain_days must be >= 0 (got {})",
                self.retain_days
            ));
        }
        if !(1..=100).contains(&self.snapshot_quality) {
            return Err(format!(
                "snapshot_quality must be 1..100 (got {})",
                self.snapshot_quality
            ));
        }
        Ok(())
    }
}

section! {
    /// `[cluster]`: how replicas that share one configuration divide its cameras.
    pub struct ClusterSettings, flags ClusterArgs (global = true) {
        /// `I/N`: this replica is shard I of N (0-based) and runs only the `[[streams]]` of its
        /// shard: the cameras sorted by name, every Nth from the Ith, so each camera runs on
        /// exactly one replica. Empty: every camera (one box). In a StatefulSet, I is the pod's
        /// ordinal (docs/deploy.md).
        stream_shard: String = String::new() => "stream-shard", "DOSOD_STREAM_SHARD";
    }
}

impl ClusterSettings {
    /// `stream_shard` as (I, N), `None` when empty.
    pub fn shard(&self) -> Result<Option<(usize, usize)>, String> {
        let text = self.stream_shard.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let bad = || format!("stream_shard `{text}`: expected I/N with 0 <= I < N (e.g. 0/3)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || i >= n {
            return Err(bad());
        }
        Ok(Some((i, n)))
    }
}

/// The cameras of shard `i` of `n`: sorted by name, every `n`th from the `i`th. Every replica
/// reads the same list, so the shards partition it: each camera on exactly one replica.
pub fn streams_of_shard(streams: &[StreamConfig], i: usize, n: usize) -> Vec<StreamConfig> {
    let mut names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    streams
        .iter()
        .filter(|s| {
            names
                .binary_search(&s.name.as_str())
                .is_ok_and(|rank| rank % n == i)
        })
        .cloned()
        .collect()
}

/// Checks the stream list as a whole (names unique) and each entry.
pub fn validate_streams(streams: &[StreamConfig]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for s in streams {
        s.validate()?;
        if !seen.insert(s.name.as_str()) {
            return Err(format!("streams: the name `{}` is used twice", s.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_cameras() {
        let streams: Vec<StreamConfig> = ["e", "a", "d", "b", "c", "f", "g"]
            .iter()
            .map(|n| StreamConfig {
                name: n.to_string(),
                url: "x.mp4".into(),
                ..Default::default()
            })
            .collect();
        let mut seen: Vec<String> = Vec::new();
        for i in 0..3 {
            let mine = streams_of_shard(&streams, i, 3);
            assert!((2..=3).contains(&mine.len()), "balanced: {}", mine.len());
            seen.extend(mine.into_iter().map(|s| s.name));
        }
        seen.sort();
        assert_eq!(seen, ["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(streams_of_shard(&streams, 0, 1).len(), 7);
        let shard = |s: &str| {
            ClusterSettings {
                stream_shard: s.into(),
            }
            .shard()
        };
        assert_eq!(shard(""), Ok(None));
        assert_eq!(shard(" 2 / 3 "), Ok(Some((2, 3))));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2"] {
            assert!(shard(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn bad_entries_are_named() {
        let ok = StreamConfig {
            name: "door".into(),
            url: "a.mp4".into(),
            ..Default::default()
        };
        assert!(validate_streams(std::slice::from_ref(&ok)).is_ok());
        let dup = validate_streams(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(dup.contains("used twice"), "{dup}");
        let bad = StreamConfig {
            name: "a/b".into(),
            ..ok.clone()
        };
        assert!(bad.validate().unwrap_err().contains("a/b"));
        let bad = StreamConfig {
            fps: -1.0,
            ..ok.clone()
        };
        assert!(bad.validate().unwrap_err().contains("fps"));
        let toml_text = "name = \"x\"\nurl = \"y\"\nloop = true\nfps = 2.5\n";
        let parsed: StreamConfig = toml::from_str(toml_text).unwrap();
        assert!(parsed.loop_file && parsed.fps == 2.5 && parsed.enabled);
    }
}
