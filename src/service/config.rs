//! `[batching]`: the inference queue, batching and deadlines that every frontend shares.

use std::time::Duration;

use super::scheduler::BatchPolicy;

section! {
    /// `[batching]`: how frames from every frontend wait for, and share, forward passes.
    pub(crate) struct BatchSettings, flags BatchArgs (global = true) {
        /// Frames waiting for inference; beyond it new ones are refused (HTTP 429 + Retry-After).
        queue_size: usize = 64 => "queue-size", "DOSOD_QUEUE_SIZE";
        /// Frames per forward pass at most; queued frames with the same vocabulary are batched.
        max_batch: usize = 8 => "max-batch", "DOSOD_MAX_BATCH";
        /// How long the worker waits to fill a batch once it holds one frame (0: never waits).
        max_queue_delay_us: u64 = 0 => "max-queue-delay-us", "DOSOD_MAX_QUEUE_DELAY_US";
        /// Queue + inference must finish within this (HTTP 503 after it; a camera frame is dropped).
        deadline_ms: u64 = 10_000 => "deadline-ms", "DOSOD_DEADLINE_MS";
        /// Frames decoded and letterboxed at the same time (0: twice the physical cores).
        decode_concurrency: usize = 0 => "decode-concurrency", "DOSOD_DECODE_CONCURRENCY";
    }
}

impl BatchSettings {
    /// The scheduler's policy from `queue_size`, `max_batch` and `max_queue_delay_us`.
    pub fn policy(&self) -> BatchPolicy {
        BatchPolicy {
            queue_size: self.queue_size.max(1),
            max_batch: self.max_batch.max(1),
            max_delay: Duration::from_micros(self.max_queue_delay_us),
        }
    }
}
