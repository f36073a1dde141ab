//! dosod: real-time open-set object detection (DOSOD).
//!
//! Layers, each depending only on those below it:
//! - [`engine`]: decode → letterbox → infer → boxes → NMS on one model bundle (no HTTP, no text);
//! - [`vocab`]: text encoders, vocabulary specs, the store of named and built vocabularies;
//! - `service`: the composition root, the batching scheduler and the one detection path;
//! - frontends, thin adapters over the service: `server` (HTTP), `stream` (cameras),
//!   `ros2` (the ROS 2 node), `eval` (COCO evaluation) and [`cli`].

// First: `config` defines the `section!` macro every configured module uses.
#[macro_use]
mod config;
pub mod cli;
pub mod engine;
mod eval;
/// Entry points for `cargo fuzz` (fuzz/): empty unless built with `--cfg fuzzing`.
#[allow(unexpected_cfgs)]
pub mod fuzzing;
mod ros2;
mod server;
mod service;
mod stream;
pub mod vocab;

pub use engine::error::EngineError;
pub use engine::postprocess::DetectParams;
pub use engine::{Detection, Engine, EngineOptions, Timings};
pub use vocab::Vocabulary;
