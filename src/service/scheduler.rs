//! The inference worker: one thread owns the engine's detector run, fed by a bounded queue;
//! queued requests that share a vocabulary are batched into one forward pass. Admission
//! (queue full → retry later) and deadlines are decided here and nowhere else.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::ServiceError;
use super::batcher::take_joining;
use crate::engine::Vocabulary;
use crate::engine::postprocess::DetectParams;
use crate::engine::{Detection, Engine, Prepared, ms};
use crate::service::metrics::Metrics;

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub queue_size: usize,
    pub max_batch: usize,
    /// How long the worker waits for more same-vocabulary requests once it has one.
    pub max_delay: Duration,
}

/// How long a refused client should wait before trying again (`Retry-After`).
const RETRY_AFTER_S: u64 = 1;

/// One image waiting for inference.
struct Job {
    prepared: Prepared,
    vocab: Arc<Vocabulary>,
    params: DetectParams,
    enqueued: Instant,
    deadline: Instant,
    reply: oneshot::Sender<Result<JobOutput, ServiceError>>,
}

/// What the worker sends back.
#[derive(Debug)]
pub struct JobOutput {
    pub detections: Vec<Detection>,
    pub queue_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
    /// Images in the forward pass this one ran in.
    pub batch_size: usize,
}

/// The handle request handlers use. Cloning is cheap.
#[derive(Clone)]
pub struct Scheduler {
    tx: SyncSender<Job>,
    depth: Arc<AtomicUsize>,
    policy: BatchPolicy,
}

impl Scheduler {
    /// Starts the worker thread. It stops when every `Scheduler` handle is dropped.
    pub fn start(engine: Arc<Engine>, policy: BatchPolicy, metrics: Arc<Metrics>) -> Scheduler {
        let (tx, rx) = sync_channel(policy.queue_size.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            engine,
            rx,
            pending: VecDeque::new(),
            depth: depth.clone(),
            policy,
            metrics,
        };
        std::thread::Builder::new()
            .name("dosod-infer".into())
            .spawn(move || worker.run())
            .expect("spawn the inference worker");
        Scheduler { tx, depth, policy }
    }

    /// A place in the queue, or `Overloaded` at once when it is full: taken before any work
    /// on a request, so a refusal costs nothing.
    pub fn reserve(&self) -> Result<Reservation, ServiceError> {
        Ok(self.reserve_many(1)?.pop().expect("one reservation"))
    }

    /// `n` places at once, or none: a request of several images is admitted as a whole.
    pub fn reserve_many(&self, n: usize) -> Result<Vec<Reservation>, ServiceError> {
        let limit = self.policy.queue_size;
        self.depth
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| {
                (d + n <= limit).then_some(d + n)
            })
            .map_err(|_| ServiceError::Overloaded {
                retry_after_s: RETRY_AFTER_S,
            })?;
        Ok((0..n)
            .map(|_| Reservation {
                scheduler: self.clone(),
                queued: false,
            })
            .collect())
    }

    /// `Overloaded` when `n` places are not free now; reserves nothing (for a refusal before a
    /// request's body is read).
    pub fn check_room(&self, n: usize) -> Result<(), ServiceError> {
        if self.depth() + n <= self.policy.queue_size {
            Ok(())
        } else {
            Err(ServiceError::Overloaded {
                retry_after_s: RETRY_AFTER_S,
            })
        }
    }

    /// Places reserved or queued and not yet taken by the worker (what `queue_size` bounds).
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// A reserved place in the queue; dropped unused, it is given back.
pub struct Reservation {
    scheduler: Scheduler,
    queued: bool,
}

impl Reservation {
    /// Queues the prepared image and waits for its detections until `deadline`.
    pub async fn run(
        mut self,
        prepared: Prepared,
        vocab: Arc<Vocabulary>,
        params: DetectParams,
        deadline: Duration,
    ) -> Result<JobOutput, ServiceError> {
        let (reply, rx) = oneshot::channel();
        let enqueued = Instant::now();
        let until = enqueued + deadline;
        let job = Job {
            prepared,
            vocab,
            params,
            enqueued,
            deadline: until,
            reply,
        };
        // The reservation holds a place, so the channel has room.
        self.scheduler.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => ServiceError::Overloaded {
                retry_after_s: RETRY_AFTER_S,
            },
            TrySendError::Disconnected(_) => ServiceError::Stopped,
        })?;
        self.queued = true;
        match tokio::time::timeout_at(until.into(), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ServiceError::Stopped),
            Err(_) => Err(ServiceError::Timeout(format!(
                "no result within the {} ms deadline",
                deadline.as_millis()
            ))),
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.queued {
            self.scheduler.depth.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct Worker {
    engine: Arc<Engine>,
    rx: Receiver<Job>,
    /// Jobs taken from the queue that wait for a batch of their own vocabulary.
    pending: VecDeque<Job>,
    depth: Arc<AtomicUsize>,
    policy: BatchPolicy,
    metrics: Arc<Metrics>,
}

impl Worker {
    fn run(mut self) {
        while let Some(first) = self.next_job() {
            let batch = self.gather(first);
            if !batch.is_empty() {
                self.execute(batch);
            }
            self.metrics
                .queue_depth
                .set((self.depth.load(Ordering::Relaxed) + self.pending.len()) as i64);
        }
        tracing::debug!("inference worker stopped");
    }

    fn take(&self, job: Job) -> Job {
        self.depth.fetch_sub(1, Ordering::Relaxed);
        job
    }

    /// The next live job: pending first, then the queue (blocking). `None`: shut down.
    fn next_job(&mut self) -> Option<Job> {
        loop {
            let job = match self.pending.pop_front() {
                Some(j) => j,
                None => {
                    let j = self.rx.recv().ok()?;
                    self.take(j)
                }
            };
            if let Some(job) = self.live(job) {
                return Some(job);
            }
        }
    }

    /// Drops a job whose client has gone, and answers one whose deadline has passed.
    fn live(&self, job: Job) -> Option<Job> {
        if job.reply.is_closed() {
            self.metrics
                .failures
                .with_label_values(&["cancelled"])
                .inc();
            return None;
        }
        if Instant::now() > job.deadline {
            let waited = ms(job.enqueued);
            let _ = job.reply.send(Err(ServiceError::Timeout(format!(
                "deadline passed after {waited:.0} ms in the queue"
            ))));
            return None;
        }
        Some(job)
    }

    /// Adds waiting jobs of the same vocabulary, up to the batch size and the delay.
    fn gather(&mut self, first: Job) -> Vec<Job> {
        let hash = first.vocab.hash.clone();
        let mut batch = vec![first];
        let until = Instant::now() + self.policy.max_delay;
        loop {
            let room = self.policy.max_batch.saturating_sub(batch.len());
            let joining = take_joining(&mut self.pending, room, |j| j.vocab.hash == hash);
            batch.extend(joining.into_iter().filter_map(|j| self.live(j)));
            if batch.len() >= self.policy.max_batch {
                break;
            }
            let next = match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => self.rx.recv_timeout(left).ok(),
                _ => self.rx.try_recv().ok(),
            };
            let Some(job) = next else { break };
            let job = self.take(job);
            self.pending.push_back(job);
        }
        batch
    }

    fn execute(&self, batch: Vec<Job>) {
        let started = Instant::now();
        let vocab = batch[0].vocab.clone();
        let refs: Vec<&Prepared> = batch.iter().map(|j| &j.prepared).collect();
        let result = self.engine.infer(&refs, &vocab);
        let inference_ms = ms(started);
        self.metrics.batch_size.observe(batch.len() as f64);
        self.metrics.observe_stage("inference", inference_ms);
        let n = batch.len();
        match result {
            Ok(raw) => {
                for (i, job) in batch.into_iter().enumerate() {
                    let t = Instant::now();
                    let detections =
                        self.engine
                            .finish(&raw, i, &job.prepared.letterbox, &vocab, &job.params);
                    let postprocess_ms = ms(t);
                    let queue_ms = started.duration_since(job.enqueued).as_secs_f64() * 1e3;
                    self.metrics.observe_stage("queue", queue_ms);
                    self.metrics.observe_stage("postprocess", postprocess_ms);
                    let _ = job.reply.send(Ok(JobOutput {
                        detections,
                        queue_ms,
                        inference_ms,
                        postprocess_ms,
                        batch_size: n,
                    }));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(ServiceError::Inference(message.clone())));
                }
            }
        }
    }
}
