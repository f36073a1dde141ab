//! The inference worker: one thread owns the engine's detector run, fed by a bounded queue;
//! queued requests that share a vocabulary are batched into one forward pass.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::engine::{Detection, Engine, Prepared, ms};
use crate::metrics::Metrics;
use crate::postprocess::DetectParams;
use crate::vocab::Vocabulary;

/// Why the worker could not give a result.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchedulerError {
    /// The queue is full: try again later.
    #[error("server overloaded: the queue is full")]
    Overloaded,
    #[error("the inference worker has stopped")]
    Stopped,
    /// The job's deadline passed before the worker reached it.
    #[error("{0}")]
    Timeout(String),
    #[error("inference failed: {0}")]
    Inference(String),
}

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub queue_size: usize,
    pub max_batch: usize,
    /// How long the worker waits for more same-vocabulary requests once it has one.
    pub max_delay: Duration,
}

/// One image waiting for inference.
pub struct Job {
    pub prepared: Prepared,
    pub vocab: Arc<Vocabulary>,
    pub params: DetectParams,
    pub enqueued: Instant,
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<JobOutput, SchedulerError>>,
}

/// What the worker sends back.
#[derive(Debug)]
pub struct JobOutput {
    pub detections: Vec<Detection>,
    pub queue_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
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

    /// Queues a job, or refuses at once when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), SchedulerError> {
        match self.tx.try_send(job) {
            Ok(()) => {
                self.depth.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(SchedulerError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(SchedulerError::Stopped),
        }
    }

    /// Jobs queued and not yet taken by the worker.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn policy(&self) -> BatchPolicy {
        self.policy
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
            let _ = job.reply.send(Err(SchedulerError::Timeout(format!(
                "deadline passed after {waited:.0} ms in the queue"
            ))));
            return None;
        }
        Some(job)
    }

    /// Adds queued jobs of the same vocabulary, up to the batch size and the delay.
    fn gather(&mut self, first: Job) -> Vec<Job> {
        let hash = first.vocab.hash.clone();
        let mut batch = vec![first];
        let until = Instant::now() + self.policy.max_delay;
        while batch.len() < self.policy.max_batch {
            if let Some(pos) = self.pending.iter().position(|j| j.vocab.hash == hash) {
                let job = self.pending.remove(pos).expect("position is valid");
                if let Some(job) = self.live(job) {
                    batch.push(job);
                }
                continue;
            }
            let next = match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => self.rx.recv_timeout(left).ok(),
                _ => self.rx.try_recv().ok(),
            };
            let Some(job) = next else { break };
            let job = self.take(job);
            let Some(job) = self.live(job) else { continue };
            if job.vocab.hash == hash {
                batch.push(job);
            } else {
                self.pending.push_back(job);
            }
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
                        .send(Err(SchedulerError::Inference(message.clone())));
                }
            }
        }
    }
}
