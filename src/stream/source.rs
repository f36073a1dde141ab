//! Frame sources: an `ffmpeg` child per camera (or OpenCV's VideoCapture) feeding a newest-frame
//! slot; older frames not yet taken are overwritten and counted as skipped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image::RgbImage;

use super::config::StreamConfig;
use crate::service::mailbox::Mailbox;

/// One decoded frame.
#[derive(Clone)]
pub struct Frame {
    pub image: Arc<RgbImage>,
    /// Seconds since the epoch when the frame was read from the decoder.
    pub time: f64,
    /// Frames read by this source since the daemon started (across restarts).
    pub index: u64,
    pub received: Instant,
}

/// The reason a source gives when its input simply ended.
pub const END_OF_STREAM: &str = "the stream ended";

pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The camera's newest-frame mailbox, with its counters.
#[derive(Default)]
pub struct FrameSlot {
    mailbox: Mailbox<Frame>,
    last_received: Mutex<Option<Instant>>,
    /// Frames read from the decoder.
    pub received: AtomicU64,
    /// Frames overwritten before the detector took them.
    pub skipped: AtomicU64,
    /// Frames dropped as too old to process (`max_frame_age_s`, or left over from a connection
    /// that ended).
    pub stale: AtomicU64,
}

impl FrameSlot {
    /// Puts a frame in, replacing (and counting) one that was never taken.
    pub fn put(&self, image: RgbImage) {
        let index = self.received.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        *self.last_received.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        let frame = Frame {
            image: Arc::new(image),
            time: now_epoch(),
            index,
            received: now,
        };
        if self.mailbox.put(frame).is_some() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes the newest frame, waiting up to `timeout` for one; a frame read more than
    /// `max_age` ago is dropped (counted as stale) instead.
    pub fn take(&self, timeout: Duration, max_age: Duration) -> Option<Frame> {
        let frame = self.mailbox.take(timeout)?;
        if frame.received.elapsed() > max_age {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(frame)
    }

    /// Drops a frame left by a connection that ended (counted as stale): what the next
    /// connection delivers is all the detector may see.
    pub fn clear(&self) {
        if self.mailbox.discard() {
            self.stale.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops a waiting frame (counted as skipped): the fps cap or a disabled camera.
    pub fn discard(&self) {
        if self.mailbox.discard() {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// When the decoder last delivered a frame.
    pub fn last_received(&self) -> Option<Instant> {
        *self.last_received.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes a waiting `take` (state changes).
    pub fn wake(&self) {
        self.mailbox.wake();
    }

    /// No more waiting for frames: the daemon is stopping.
    pub fn close(&self) {
        self.mailbox.close();
    }
}

/// A running source; dropping it stops it.
pub struct RunningSource {
    child: Option<Child>,
    stop: Arc<AtomicBool>,
    /// Set by the reader when the source ends (EOF, error); holds the reason.
    pub ended: Arc<Mutex<Option<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl RunningSource {
    /// Why the source ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Kills the decoder and waits for the reader.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts the configured backend for `cfg`, delivering frames into `slot`.
pub fn start(cfg: &StreamConfig, slot: Arc<FrameSlot>) -> Result<RunningSource, String> {
    match cfg.backend.as_str() {
        "opencv" => start_opencv(cfg, slot),
        _ => start_ffmpeg(cfg, slot),
    }
}

/// The ffmpeg command line for a stream: decode, scale to the detect width, PPM frames on stdout.
pub fn ffmpeg_args(cfg: &StreamConfig) -> Vec<String> {
    let mut args = ffmpeg_input_args(cfg);
    args.extend(["-an".into(), "-sn".into()]);
    if cfg.detect_width > 0 {
        // Area averaging in RGB: within a few grey levels of OpenCV's INTER_AREA (mean 0.01),
        // where ffmpeg's default bicubic is up to 41 levels away. `detect_width = 0` hands the
        // engine full frames, so the model's own area resize applies exactly.
        args.extend([
            "-vf".into(),
            format!(
                "format=rgb24,scale=w='min(iw,{})':h=-2:flags=area",
                cfg.detect_width
            ),
        ]);
    }
    // Frames as they come (no duplicated or dropped frames to fake a constant rate).
    args.extend(["-fps_mode", "passthrough"].map(String::from));
    args.extend(["-f", "image2pipe", "-c:v", "ppm", "pipe:1"].map(String::from));
    args
}

/// ffmpeg's options for reading a stream's source, up to and including `-i URL`: the decoder
/// and the clip recorder open a camera the same way.
pub fn ffmpeg_input_args(cfg: &StreamConfig) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let url = cfg.url.as_str();
    let timeout_us = ((cfg.timeout_s * 1e6) as u64).max(1_000_000).to_string();
    if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
        args.extend(["-rtsp_transport".into(), "tcp".into()]);
        args.extend(["-timeout".into(), timeout_us]);
        // Do not spend ~2 s counting frames to guess the rate: first frame in ~1 s, no burst.
        args.extend(["-fpsprobesize".into(), "0".into()]);
    } else if url.starts_with("http://") || url.starts_with("https://") {
        args.extend(["-rw_timeout".into(), timeout_us]);
    } else if url.starts_with("/dev/video") {
        args.extend(["-f".into(), "v4l2".into()]);
    } else {
        if cfg.loop_file {
            args.extend(["-stream_loop".into(), "-1".into()]);
        }
        if cfg.realtime && cfg.read_rate == 1.0 {
            args.push("-re".into());
        } else if cfg.realtime {
            args.extend(["-readrate".into(), cfg.read_rate.to_string()]);
        }
    }
    args.extend(["-i".into(), url.to_string()]);
    args
}

/// Grows the frame pipe from 64 KiB to 1 MiB (Linux's default most for any user), so a
/// 640x360 frame crosses in one write and one read instead of eleven of each: fewer wake-ups of
/// ffmpeg and the reader, whose CPU the detector shares. Best effort: a smaller pipe only costs
/// those wake-ups.
fn widen_pipe(pipe: &std::process::ChildStdout) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: F_SETPIPE_SZ on a pipe descriptor this function borrows; no memory is passed.
        let _ = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = pipe;
}

fn start_ffmpeg(cfg: &StreamConfig, slot: Arc<FrameSlot>) -> Result<RunningSource, String> {
    let mut child = Command::new(ffmpeg_binary())
        .args(ffmpeg_args(cfg))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start ffmpeg ({}): {e}", ffmpeg_binary()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    widen_pipe(&stdout);
    let stderr = child.stderr.take().expect("piped stderr");
    let stop = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(Mutex::new(None));
    let tail = Arc::new(Mutex::new(String::new()));
    let tail_writer = tail.clone();
    std::thread::Builder::new()
        .name(format!("ffmpeg-err-{}", cfg.name))
        .spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut t = tail_writer.lock().unwrap_or_else(|p| p.into_inner());
                *t = line.chars().take(300).collect();
            }
        })
        .map_err(|e| e.to_string())?;
    let (stop_r, ended_r, name) = (stop.clone(), ended.clone(), cfg.name.clone());
    let reader = std::thread::Builder::new()
        .name(format!("ffmpeg-{}", cfg.name))
        .spawn(move || {
            let mut input = BufReader::with_capacity(1 << 20, stdout);
            let reason = loop {
                match read_ppm(&mut input) {
                    Ok(Some(img)) => slot.put(img),
                    Ok(None) => break END_OF_STREAM.to_string(),
                    Err(e) => break format!("bad frame from ffmpeg: {e}"),
                }
                if stop_r.load(Ordering::Acquire) {
                    break "stopped".to_string();
                }
            };
            // ffmpeg's last error line says why, when it failed.
            std::thread::sleep(Duration::from_millis(50));
            let last = tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let reason = if last.is_empty() {
                reason
            } else {
                format!("{reason}: {last}")
            };
            tracing::debug!(stream = %name, %reason, "source ended");
            *ended_r.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            slot.wake();
        })
        .map_err(|e| e.to_string())?;
    Ok(RunningSource {
        child: Some(child),
        stop,
        ended,
        reader: Some(reader),
    })
}

/// `DOSOD_FFMPEG`, else `ffmpeg` on the PATH.
pub fn ffmpeg_binary() -> String {
    std::env::var("DOSOD_FFMPEG").unwrap_or_else(|_| "ffmpeg".into())
}

/// Reads one binary PPM (P6, maxval 255) frame; `None` at a clean end of stream.
pub fn read_ppm(r: &mut impl BufRead) -> std::io::Result<Option<RgbImage>> {
    use std::io::{Error, ErrorKind};
    let mut fields = Vec::with_capacity(4);
    while fields.len() < 4 {
        let token = match next_token(r)? {
            Some(t) => t,
            None if fields.is_empty() => return Ok(None),
            None => return Err(Error::new(ErrorKind::UnexpectedEof, "truncated PPM header")),
        };
        fields.push(token);
    }
    if fields[0] != "P6" {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("not a binary PPM ({})", fields[0]),
        ));
    }
    let num = |s: &str| -> std::io::Result<u32> {
        s.parse()
            .map_err(|_| Error::new(ErrorKind::InvalidData, format!("bad PPM number {s}")))
    };
    let (w, h, max) = (num(&fields[1])?, num(&fields[2])?, num(&fields[3])?);
    if max != 255 || w == 0 || h == 0 || u64::from(w) * u64::from(h) > 100_000_000 {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("unsupported PPM {w}x{h} maxval {max}"),
        ));
    }
    let mut data = vec![0u8; w as usize * h as usize * 3];
    r.read_exact(&mut data)?;
    Ok(RgbImage::from_raw(w, h, data))
}

/// A whitespace-delimited header token; the single whitespace after it is consumed.
fn next_token(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut token = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return Ok((!token.is_empty()).then(|| String::from_utf8_lossy(&token).into()));
        }
        match byte[0] {
            b'#' if token.is_empty() => {
                let mut comment = Vec::new();
                r.read_until(b'\n', &mut comment)?;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                if !token.is_empty() {
                    return Ok(Some(String::from_utf8_lossy(&token).into()));
                }
            }
            b => {
                token.push(b);
                if token.len() > 16 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "PPM header token too long",
                    ));
                }
            }
        }
    }
}

#[cfg(not(feature = "opencv"))]
fn start_opencv(cfg: &StreamConfig, _slot: Arc<FrameSlot>) -> Result<RunningSource, String> {
    Err(format!(
        "stream {}: the opencv backend needs dosod built with `--features opencv`",
        cfg.name
    ))
}

#[cfg(feature = "opencv")]
fn start_opencv(cfg: &StreamConfig, slot: Arc<FrameSlot>) -> Result<RunningSource, String> {
    use opencv::prelude::*;
    use opencv::{core, imgproc, videoio};
    let url = cfg.url.clone();
    let width = cfg.detect_width as i32;
    let realtime = cfg.realtime && !url.contains("://") && !url.starts_with("/dev/video");
    let loop_file = cfg.loop_file;
    let read_rate = cfg.read_rate;
    let stop = Arc::new(AtomicBool::new(false));
    let ended = Arc::new(Mutex::new(None));
    let (stop_r, ended_r) = (stop.clone(), ended.clone());
    let reader = std::thread::Builder::new()
        .name(format!("opencv-{}", cfg.name))
        .spawn(move || {
            let reason = (|| -> Result<String, opencv::Error> {
                let mut cap = videoio::VideoCapture::from_file(&url, videoio::CAP_ANY)?;
                if !cap.is_opened()? {
                    return Ok(format!("OpenCV cannot open {url}"));
                }
                let fps = cap.get(videoio::CAP_PROP_FPS).unwrap_or(0.0);
                let period = (realtime && fps > 0.0)
                    .then(|| Duration::from_secs_f64(1.0 / (fps * read_rate)));
                let mut bgr = core::Mat::default();
                let mut next = Instant::now();
                while !stop_r.load(Ordering::Acquire) {
                    if !cap.read(&mut bgr)? || bgr.empty() {
                        if loop_file && cap.set(videoio::CAP_PROP_POS_FRAMES, 0.0)? {
                            continue;
                        }
                        return Ok(END_OF_STREAM.into());
                    }
                    let mut scaled = core::Mat::default();
                    let src = if width > 0 && bgr.cols() > width {
                        let h = ((bgr.rows() as f64 * width as f64 / bgr.cols() as f64) / 2.0)
                            .round() as i32
                            * 2;
                        imgproc::resize(
                            &bgr,
                            &mut scaled,
                            core::Size::new(width, h.max(2)),
                            0.0,
                            0.0,
                            imgproc::INTER_AREA,
                        )?;
                        &scaled
                    } else {
                        &bgr
                    };
                    let mut rgb = core::Mat::default();
                    imgproc::cvt_color_def(src, &mut rgb, imgproc::COLOR_BGR2RGB)?;
                    let (w, h) = (rgb.cols() as u32, rgb.rows() as u32);
                    let bytes = rgb.data_bytes()?.to_vec();
                    if let Some(img) = RgbImage::from_raw(w, h, bytes) {
                        slot.put(img);
                    }
                    if let Some(p) = period {
                        next += p;
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        } else {
                            next = Instant::now();
                        }
                    }
                }
                Ok("stopped".into())
            })()
            .unwrap_or_else(|e| format!("OpenCV: {e}"));
            *ended_r.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            slot.wake();
        })
        .map_err(|e| e.to_string())?;
    Ok(RunningSource {
        child: None,
        stop,
        ended,
        reader: Some(reader),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_frames_parse_back_to_back() {
        let mut bytes = b"P6\n2 1\n255\n".to_vec();
        bytes.extend([1, 2, 3, 4, 5, 6]);
        bytes.extend(b"P6 # comment\n1 1 255\n");
        bytes.extend([9, 8, 7]);
        let mut r = std::io::Cursor::new(bytes);
        let a = read_ppm(&mut r).unwrap().unwrap();
        assert_eq!((a.width(), a.height()), (2, 1));
        assert_eq!(a.get_pixel(1, 0).0, [4, 5, 6]);
        let b = read_ppm(&mut r).unwrap().unwrap();
        assert_eq!(b.get_pixel(0, 0).0, [9, 8, 7]);
        assert!(read_ppm(&mut r).unwrap().is_none());
        let mut bad = std::io::Cursor::new(b"P5\n1 1\n255\nx".to_vec());
        assert!(read_ppm(&mut bad).is_err());
        let mut short = std::io::Cursor::new(b"P6\n4 4\n255\nabc".to_vec());
        assert!(read_ppm(&mut short).is_err());
    }

    #[test]
    fn the_slot_keeps_the_newest_frame_and_counts_the_rest() {
        let slot = FrameSlot::default();
        for v in 0..3u8 {
            slot.put(RgbImage::from_pixel(1, 1, image::Rgb([v, v, v])));
        }
        let max_age = Duration::from_secs(60);
        let f = slot.take(Duration::from_millis(1), max_age).unwrap();
        assert_eq!(f.image.get_pixel(0, 0).0, [2, 2, 2]);
        assert_eq!(f.index, 2);
        assert_eq!(slot.skipped.load(Ordering::Relaxed), 2);
        assert!(slot.take(Duration::from_millis(1), max_age).is_none());
    }

    #[test]
    fn old_and_left_over_frames_are_dropped_as_stale() {
        let slot = FrameSlot::default();
        slot.put(RgbImage::new(1, 1));
        std::thread::sleep(Duration::from_millis(20));
        let tick = Duration::from_millis(1);
        assert!(slot.take(tick, Duration::from_millis(10)).is_none());
        assert_eq!(slot.stale.load(Ordering::Relaxed), 1);
        slot.put(RgbImage::new(1, 1));
        slot.clear();
        assert!(slot.take(tick, Duration::from_secs(60)).is_none());
        assert_eq!(slot.stale.load(Ordering::Relaxed), 2);
        assert_eq!(slot.skipped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ffmpeg_arguments_per_source_kind() {
        let mut cfg = StreamConfig {
            name: "a".into(),
            url: "rtsp://cam/1".into(),
            ..Default::default()
        };
        let a = ffmpeg_args(&cfg).join(" ");
        assert!(
            a.contains("-rtsp_transport tcp -timeout 10000000 -fpsprobesize 0 -i rtsp://cam/1"),
            "{a}"
        );
        cfg.url = "clip.mp4".into();
        cfg.loop_file = true;
        let a = ffmpeg_args(&cfg).join(" ");
        assert!(a.contains("-stream_loop -1 -re -i clip.mp4"), "{a}");
        assert!(a.ends_with("-f image2pipe -c:v ppm pipe:1"));
        assert!(a.contains("scale=w='min(iw,640)':h=-2:flags=area"), "{a}");
        cfg.detect_width = 0;
        assert!(!ffmpeg_args(&cfg).join(" ").contains("-vf"));
    }
}
