//! dosod: real-time open-set object detection (DOSOD) — the engine and its frontends.

pub mod annotate;
pub mod bundle;
pub mod cli;
pub mod coco_eval;
pub mod config;
pub mod decode;
pub mod engine;
pub mod error;
pub mod letterbox;
pub mod metrics;
pub mod npy;
pub mod postprocess;
pub mod ros2;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod stream;
pub mod tensor;
pub mod text_encoder;
pub mod vocab;
pub mod vocab_spec;
pub mod vocab_store;

pub use engine::{Detection, Engine, EngineOptions, Timings};
pub use error::EngineError;
pub use postprocess::DetectParams;
pub use vocab::Vocabulary;
