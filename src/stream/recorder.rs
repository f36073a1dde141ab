//! Clips: for a camera with `[streams.clips] enabled`, ffmpeg copies the camera's own stream (no
//! re-encoding) into short MPEG-TS segments named by their wall-clock start; an ended event's clip
//! is the segments covering `[start − pre_capture, end + post_capture]`, joined by stream copy into
//! an MP4. Segments no event can need are deleted as they age. A failing disk stops recording
//! with an error in the camera's status and is retried; detection never waits on any of it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::config::StreamConfig;
use super::source::{ffmpeg_binary, ffmpeg_input_args, now_epoch};

/// A clip is at most this long: an object parked for days gets the last ten minutes, and the
/// recording buffer never holds more than this (plus `pre_capture`) for one event.
pub const MAX_CLIP_S: f64 = 600.0;
/// Segments are kept this much longer than `pre_capture`, so an object that becomes an event a
/// while after it was first seen (its median score rising slowly) still gets its pre-capture.
const CONFIRM_MARGIN_S: f64 = 30.0;

/// `[streams.clips]`: recording around events (`PUT /v1/streams/{name}/clips` changes it at run
/// time).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ClipConfig {
    pub enabled: bool,
    /// Seconds of video before the object was first seen.
    pub pre_capture: f64,
    /// Seconds after it was last seen.
    pub post_capture: f64,
    /// Length of the recorded segments (cut at keyframes, so at least this): the clip's edges
    /// are this precise.
    pub segment_s: f64,
}

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            pre_capture: 5.0,
            post_capture: 5.0,
            segment_s: 2.0,
        }
    }
}

impl ClipConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("pre_capture", self.pre_capture),
            ("post_capture", self.post_capture),
        ] {
            if !(v.is_finite() && (0.0..=300.0).contains(&v)) {
                return Err(format!("clips.{key} must be 0..300 s"));
            }
        }
        if !(self.segment_s.is_finite() && (2.0..=60.0).contains(&self.segment_s)) {
            return Err("clips.segment_s must be 2..60 s".into());
        }
        Ok(())
    }
}

/// One recorded segment: its wall-clock start and its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: f64,
    /// When it was last written (its end, once closed).
    pub end: f64,
    pub path: PathBuf,
}

/// The segments in `dir`, oldest first (`<epoch seconds>.ts`).
pub fn segments(dir: &Path) -> Vec<Segment> {
    let mut out: Vec<Segment> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let stem = path.file_name()?.to_str()?.strip_suffix(".ts")?;
            let meta = e.metadata().ok()?;
            if meta.len() == 0 {
                return None; // opened on a full disk, or not written yet
            }
            let start: f64 = stem.parse().ok()?;
            let end = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(f64::INFINITY, |d| d.as_secs_f64());
            Some(Segment {
                start,
                end: end.max(start),
                path,
            })
        })
        .collect();
    out.sort_by(|a, b| a.start.total_cmp(&b.start));
    out
}

/// The segments that overlap `[from, to]`: each lasts until the next one starts or until it
/// was last written, whichever is earlier (a recording that stopped leaves a gap, never an old
/// segment standing in for it). The second of slack covers the whole-second names.
pub fn covering(segments: &[Segment], from: f64, to: f64) -> Vec<Segment> {
    segments
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            let next = segments.get(i + 1).map_or(f64::INFINITY, |n| n.start);
            let end = next.min(s.end + 1.0);
            s.start <= to && end > from
        })
        .map(|(_, s)| s.clone())
        .collect()
}

/// Joins `parts` by stream copy into the MP4 `out` (written as `out.part`, then renamed).
pub fn join(parts: &[Segment], out: &Path) -> Result<(), String> {
    if parts.is_empty() {
        return Err("no recording covers the event".into());
    }
    let list = out.with_extension("txt");
    let text: String = parts
        .iter()
        .map(|s| {
            format!(
                "file '{}'\n",
                s.path.display().to_string().replace('\'', "'\\''")
            )
        })
        .collect();
    std::fs::write(&list, text).map_err(|e| format!("writing the clip list: {}", e.kind()))?;
    let tmp = out.with_extension("part.mp4");
    let result = Command::new(ffmpeg_binary())
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "concat", "-safe", "0", "-i"])
        .arg(&list)
        .args(["-map", "0:v:0", "-c", "copy", "-movflags", "+faststart"])
        .arg(&tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let _ = std::fs::remove_file(&list);
    let output = result.map_err(|e| format!("cannot start ffmpeg: {e}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_file(&tmp);
        let err = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "ffmpeg could not join the clip: {}",
            err.lines()
                .last()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        ));
    }
    std::fs::rename(&tmp, out).map_err(|e| format!("saving the clip: {}", e.kind()))
}

/// What the recorder reports in the camera's status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecorderState {
    pub recording: bool,
    pub error: Option<String>,
}

/// One camera's recorder: a supervised ffmpeg segmenter, and the events whose clips still need
/// its segments.
pub struct Recorder {
    config: Mutex<ClipConfig>,
    /// Bumped by every change of `config`: a running segmenter restarts with the new one.
    generation: std::sync::atomic::AtomicU64,
    pub dir: PathBuf,
    /// Events in progress or waiting for their clip: id → the earliest time their clip needs,
    /// and whether the event has ended (its clip's start is then fixed).
    holds: Mutex<BTreeMap<String, (f64, bool)>>,
    state: Mutex<RecorderState>,
    /// Off while the camera is disabled: a disabled camera is not recorded.
    camera_on: AtomicBool,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Recorder {
    /// A recorder of `stream` into `dir`, not started yet.
    pub fn new(stream: &StreamConfig, dir: PathBuf) -> Arc<Recorder> {
        Arc::new(Recorder {
            config: Mutex::new(stream.clips.clone()),
            generation: std::sync::atomic::AtomicU64::new(0),
            dir,
            holds: Mutex::new(BTreeMap::new()),
            state: Mutex::new(RecorderState::default()),
            camera_on: AtomicBool::new(stream.enabled),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        })
    }

    /// Starts recording (while the camera is enabled) until [`Recorder::stop`].
    pub fn begin(self: &Arc<Self>, stream: &StreamConfig) {
        let me = self.clone();
        let cfg = stream.clone();
        let thread = std::thread::Builder::new()
            .name(format!("record-{}", stream.name))
            .spawn(move || me.run(&cfg))
            .ok();
        if thread.is_none() {
            self.set_state(false, Some("cannot start the recorder thread".into()));
        }
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = thread;
    }

    /// Records while `on` (the camera is enabled) and clips are enabled.
    pub fn set_active(&self, on: bool) {
        self.camera_on.store(on, Ordering::Release);
    }

    pub fn config(&self) -> ClipConfig {
        self.config
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the clip settings (checked by the caller); recording starts, stops or restarts
    /// with them within a tick.
    pub fn set_config(&self, config: ClipConfig) {
        let mut current = self.config.lock().unwrap_or_else(|p| p.into_inner());
        let restart = current.segment_s != config.segment_s;
        *current = config;
        if restart {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Whether the recorder should be recording and is not failing: a clip then waits for the
    /// segment after its window.
    pub fn healthy(&self) -> bool {
        self.wanted() && self.state().error.is_none()
    }

    fn wanted(&self) -> bool {
        self.camera_on.load(Ordering::Acquire) && self.config().enabled
    }

    pub fn state(&self) -> RecorderState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_state(&self, recording: bool, error: Option<String>) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = RecorderState { recording, error };
    }

    /// Keeps the segments from `from` on until [`Recorder::release`].
    pub fn hold(&self, id: &str, from: f64) {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_insert((from, false));
    }

    /// The event ended: its clip starts at `from`, which pruning now keeps whatever its age.
    pub fn hold_ended(&self, id: &str, from: f64) {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), (from, true));
    }

    pub fn release(&self, id: &str) {
        self.holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }

    fn run(&self, cfg: &StreamConfig) {
        let mut backoff = Duration::from_secs(1);
        while !self.stop.load(Ordering::Acquire) {
            if !self.wanted() {
                self.set_state(false, None);
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            let started = Instant::now();
            match self.record_once(cfg) {
                Ok(()) => continue, // stopped or paused
                Err((shown, raw)) => {
                    let raw = raw.replace(&cfg.url, &cfg.redacted_url());
                    tracing::error!(stream = %cfg.name, error = %raw, retry_in_s = backoff.as_secs(), "recording stopped");
                    self.set_state(false, Some(shown));
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            let until = Instant::now() + backoff;
            while Instant::now() < until && !self.stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(100));
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// Runs the segmenter until it fails (the error for the status, which names no path or
    /// URL, and the raw one for the log) or the recorder stops or pauses (`Ok`).
    fn record_once(&self, cfg: &StreamConfig) -> Result<(), (String, String)> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            let m = format!("cannot create the recordings folder: {}", e.kind());
            (m.clone(), m)
        })?;
        let pattern = self.dir.join("%s.ts");
        let generation = self.generation.load(Ordering::Acquire);
        let segment_s = self.config().segment_s;
        let mut command = Command::new(ffmpeg_binary());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: only prctl, async-signal-safe, between fork and exec. The recorder's ffmpeg
            // has no pipe to notice its parent's death by: the kernel kills it with this thread.
            unsafe {
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child: Child = command
            .args(ffmpeg_input_args(cfg))
            .args(["-map", "0:v:0", "-c", "copy", "-f", "segment"])
            .args(["-segment_time", &segment_s.to_string()])
            .args([
                "-segment_format",
                "mpegts",
                "-reset_timestamps",
                "1",
                "-strftime",
                "1",
            ])
            .arg(&pattern)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let m = format!("cannot start ffmpeg: {}", e.kind());
                (m.clone(), m)
            })?;
        let tail = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = tail.clone();
            let _ = std::thread::Builder::new()
                .name(format!("record-err-{}", cfg.name))
                .spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        *tail.lock().unwrap_or_else(|p| p.into_inner()) =
                            line.chars().take(300).collect();
                    }
                });
        }
        let started = Instant::now();
        let mut running = false;
        let mut pruned = Instant::now();
        loop {
            // The last error stays visible until this run has lasted a few seconds.
            if !running && started.elapsed() >= Duration::from_secs(3) {
                running = true;
                self.set_state(true, None);
            }
            if self.stop.load(Ordering::Acquire)
                || !self.wanted()
                || self.generation.load(Ordering::Acquire) != generation
            {
                let _ = child.kill();
                let _ = child.wait();
                self.set_state(false, None);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                let last = tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Err((shown_error(&last, status, free_bytes(&self.dir)), last));
            }
            if pruned.elapsed() >= Duration::from_secs(2) {
                pruned = Instant::now();
                self.prune(now_epoch());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Deletes segments that end before anything a current or future clip can need.
    fn prune(&self, now: f64) {
        let c = self.config();
        let mut keep_from = now - c.pre_capture - 2.0 * c.segment_s - CONFIRM_MARGIN_S;
        for &(from, ended) in self
            .holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            // No clip is longer than MAX_CLIP_S: an event in progress needs no more than that;
            // an ended one needs exactly from its clip's start.
            let needed = if ended {
                from
            } else {
                from.max(now - MAX_CLIP_S - c.segment_s)
            };
            keep_from = keep_from.min(needed);
        }
        let all = segments(&self.dir);
        for pair in all.windows(2) {
            if pair[1].start < keep_from {
                let _ = std::fs::remove_file(&pair[0].path);
            }
        }
        // Segments opened on a full disk and never written (a live segment of a slow stream
        // can be empty for a while: only well past two segments' time, and never the newest).
        let newest = all.last().map_or(f64::NEG_INFINITY, |s| s.start);
        let stale = Duration::from_secs_f64(2.0 * c.segment_s + CONFIRM_MARGIN_S);
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let stale_empty = e.metadata().is_ok_and(|m| {
                m.len() == 0
                    && m.modified()
                        .is_ok_and(|t| t.elapsed().unwrap_or_default() > stale)
            });
            let path = e.path();
            let start = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<f64>().ok());
            if stale_empty
                && path.extension().is_some_and(|x| x == "ts")
                && start.is_some_and(|s| s < newest)
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Bytes free for this process on the file system holding `dir`, if it can be read.
fn free_bytes(dir: &Path) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        // SAFETY: statvfs writes into the zeroed struct it is given; the path is NUL-terminated.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        None
    }
}

/// Less free space than this when the recorder stops means the disk is full (ffmpeg's own
/// message is then often only "Invalid argument" from the segment muxer).
const FULL_BELOW_BYTES: u64 = 1 << 20;

/// What the status says when the recorder's ffmpeg stops: the kind of failure, never the line
/// itself (it names files and the camera's URL).
fn shown_error(line: &str, status: std::process::ExitStatus, free: Option<u64>) -> String {
    let lower = line.to_lowercase();
    if lower.contains("no space left") || free.is_some_and(|f| f < FULL_BELOW_BYTES) {
        format!(
            "disk full: No space left on device ({} KiB free)",
            free.unwrap_or(0) / 1024
        )
    } else if lower.contains("permission denied") || lower.contains("read-only") {
        "cannot write recordings: permission denied or read-only disk".into()
    } else if lower.contains("connection refused")
        || lower.contains("timed out")
        || lower.contains("end of file")
        || lower.contains("404")
    {
        "cannot read the camera's stream".into()
    } else {
        format!("the recorder's ffmpeg exited ({status}); the log says why")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64) -> Segment {
        Segment {
            start,
            end: f64::INFINITY,
            path: PathBuf::from(format!("{start}.ts")),
        }
    }

    #[test]
    fn the_clip_is_the_segments_overlapping_its_window() {
        let all: Vec<Segment> = [100.0, 102.0, 104.0, 106.0, 108.0].map(seg).to_vec();
        let starts = |v: Vec<Segment>| v.iter().map(|s| s.start).collect::<Vec<_>>();
        assert_eq!(starts(covering(&all, 103.0, 105.0)), [102.0, 104.0]);
        assert_eq!(starts(covering(&all, 104.0, 104.5)), [104.0]);
        // The last segment lasts until now.
        assert_eq!(starts(covering(&all, 120.0, 125.0)), [108.0]);
        assert!(covering(&all, 90.0, 99.0).is_empty());
        assert_eq!(starts(covering(&all, 90.0, 100.0)), [100.0]);
        // A recording that stopped at 109.5: the last segment does not stand in for later.
        let mut stopped = all.clone();
        stopped[4].end = 109.5;
        assert!(covering(&stopped, 120.0, 125.0).is_empty());
        assert_eq!(starts(covering(&stopped, 110.0, 125.0)), [108.0]);
    }

    #[test]
    fn a_disk_that_refuses_writes_is_an_error_in_the_state_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-folder");
        std::fs::write(&file, b"").unwrap();
        let cfg = StreamConfig {
            name: "cam".into(),
            url: "/nonexistent.mp4".into(),
            clips: ClipConfig {
                enabled: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let rec = Recorder::new(&cfg, file.join("recordings"));
        rec.begin(&cfg);
        let start = Instant::now();
        while rec.state().error.is_none() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let state = rec.state();
        assert!(!state.recording);
        let error = state.error.expect("an error");
        assert!(error.contains("recordings folder"), "{error}");
        assert!(
            !error.contains("not-a-folder"),
            "no path in the error: {error}"
        );
        rec.stop();
    }

    #[test]
    fn segments_are_read_oldest_first_and_bad_names_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["200.ts", "100.ts", "x.ts", "150.mp4"] {
            std::fs::write(dir.path().join(name), b"data").unwrap();
        }
        // Opened on a full disk, never written: not a segment.
        std::fs::write(dir.path().join("300.ts"), b"").unwrap();
        let found: Vec<f64> = segments(dir.path()).iter().map(|s| s.start).collect();
        assert_eq!(found, [100.0, 200.0]);
        assert!(
            join(&[], &dir.path().join("a.mp4"))
                .unwrap_err()
                .contains("no recording")
        );
        let bad = ClipConfig {
            segment_s: 1.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("segment_s"));
    }
}
