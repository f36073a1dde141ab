//! What the ROS 2 node counts: frames in, processed, skipped (stale, disabled, rejected by
//! kind) and the latency from image receipt to publication, reported as one summary line.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Latencies kept for the run's percentiles (older ones are dropped beyond this).
const MAX_SAMPLES: usize = 100_000;

/// Counters shared by the receive loop and the worker.
#[derive(Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    received: u64,
    published: u64,
    stale: u64,
    disabled: u64,
    failed: u64,
    rejected: BTreeMap<&'static str, u64>,
    latencies_ms: Vec<f64>,
    /// Index into `latencies_ms` where the current summary window starts.
    window_start: usize,
    /// Header stamp to publication, for frames stamped by a clock close to ours.
    ages_ms: Vec<f64>,
    age_window_start: usize,
}

/// Percentiles of image-receipt-to-publication latency, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub frames: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// One summary: counts since start, latency over `window` (since the last summary, or the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub received: u64,
    pub published: u64,
    /// Replaced by a newer frame before the detector got to them.
    pub stale: u64,
    /// Arrived while the `enabled` parameter was false.
    pub disabled: u64,
    /// The detector failed on them.
    pub failed: u64,
    /// Malformed frames by kind (`encoding`, `size`, `empty`, `too_large`, `decode`, `malformed`).
    pub rejected: BTreeMap<&'static str, u64>,
    /// Image receipt to publication of its detections.
    pub latency_ms: Latency,
    /// The image's `header.stamp` to publication (capture to detections, when the camera's
    /// clock agrees with ours; frames stamped more than a minute away are left out).
    pub age_ms: Latency,
}

impl Stats {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn received(&self) {
        self.with(|s| s.received += 1);
    }

    pub fn stale(&self) {
        self.with(|s| s.stale += 1);
    }

    pub fn disabled(&self) {
        self.with(|s| s.disabled += 1);
    }

    pub fn failed(&self) {
        self.with(|s| s.failed += 1);
    }

    /// Counts a rejected frame; returns how many of this kind so far (for throttled logging).
    pub fn rejected(&self, kind: &'static str) -> u64 {
        self.with(|s| {
            let n = s.rejected.entry(kind).or_default();
            *n += 1;
            *n
        })
    }

    pub fn published(&self, latency_ms: f64, age_ms: Option<f64>) {
        self.with(|s| {
            s.published += 1;
            push(&mut s.latencies_ms, &mut s.window_start, latency_ms);
            if let Some(age) = age_ms {
                push(&mut s.ages_ms, &mut s.age_window_start, age);
            }
        })
    }

    /// Counts so far with the latency of the frames since the last call (`whole_run`: of all).
    pub fn summary(&self, whole_run: bool) -> Summary {
        self.with(|s| {
            let from = if whole_run { 0 } else { s.window_start };
            let latency_ms = latency(&s.latencies_ms[from..]);
            s.window_start = s.latencies_ms.len();
            let from = if whole_run { 0 } else { s.age_window_start };
            let age_ms = latency(&s.ages_ms[from..]);
            s.age_window_start = s.ages_ms.len();
            Summary {
                received: s.received,
                published: s.published,
                stale: s.stale,
                disabled: s.disabled,
                failed: s.failed,
                rejected: s.rejected.clone(),
                latency_ms,
                age_ms,
            }
        })
    }
}

/// Appends a sample, dropping the oldest half when full.
fn push(samples: &mut Vec<f64>, window_start: &mut usize, v: f64) {
    if samples.len() >= MAX_SAMPLES {
        let drop = MAX_SAMPLES / 2;
        samples.drain(..drop);
        *window_start = window_start.saturating_sub(drop);
    }
    samples.push(v);
}

fn latency(samples: &[f64]) -> Latency {
    if samples.is_empty() {
        return Latency::default();
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Latency {
        frames: v.len(),
        mean: v.iter().sum::<f64>() / v.len() as f64,
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_whole_run() {
        let s = Stats::default();
        for ms in [1.0, 2.0, 3.0, 4.0] {
            s.received();
            s.published(ms, (ms > 2.0).then_some(ms * 10.0));
        }
        assert_eq!(s.rejected("size"), 1);
        assert_eq!(s.rejected("size"), 2);
        let first = s.summary(false);
        assert_eq!((first.received, first.published), (4, 4));
        assert_eq!(first.latency_ms.frames, 4);
        assert_eq!((first.latency_ms.p50, first.latency_ms.max), (3.0, 4.0));
        assert_eq!(first.rejected["size"], 2);
        assert_eq!((first.age_ms.frames, first.age_ms.max), (2, 40.0));
        s.published(10.0, None);
        let second = s.summary(false);
        assert_eq!((second.latency_ms.frames, second.latency_ms.p50), (1, 10.0));
        assert_eq!(s.summary(false).latency_ms.frames, 0);
        let all = s.summary(true);
        assert_eq!(all.latency_ms.frames, 5);
        assert_eq!(all.latency_ms.mean, 4.0);
    }
}
