//! The engine layer's error enum: every way loading a model or detecting can fail.

use std::path::PathBuf;

/// What went wrong inside the engine. Frontends map each variant to their own surface
/// (an exit code and one line for the CLI; an HTTP status and `error_type` in
/// `server/error.rs`) in exactly one place.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The ONNX Runtime shared library could not be found or loaded.
    #[error("{0}")]
    Runtime(String),
    /// The model bundle is missing, unreadable or inconsistent with its ONNX files.
    #[error("model bundle {}: {message}", dir.display())]
    Bundle { dir: PathBuf, message: String },
    /// The input bytes are not an image we can decode.
    #[error("cannot decode image: {0}")]
    Decode(String),
    /// The image is larger than the configured limits (checked before any pixel is allocated).
    #[error("image too large: {0}")]
    TooLarge(String),
    /// The vocabulary is empty, malformed or does not fit the model.
    #[error("invalid vocabulary: {0}")]
    Vocabulary(String),
    /// A named thing (a vocabulary) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists (a built-in vocabulary cannot be replaced).
    #[error("{0}")]
    Conflict(String),
    /// A request parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// ONNX Runtime failed while running a model.
    #[error("inference failed: {0}")]
    Inference(String),
    /// Persisting or removing stored state failed. The message names what (a vocabulary), never
    /// a server path; the path goes to the log where the error is made.
    #[error("storage: {0}")]
    Storage(String),
    /// The shared store of named vocabularies (Redis) cannot be reached: a write is refused,
    /// nothing is half-done, and reads go on from the local copy.
    #[error("{0}")]
    StoreUnavailable(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl EngineError {
    pub(crate) fn bundle(dir: &std::path::Path, message: impl Into<String>) -> Self {
        EngineError::Bundle {
            dir: dir.to_path_buf(),
            message: message.into(),
        }
    }

    /// A storage failure of `what` at `path`: logged with the path, reported without it.
    pub(crate) fn storage(what: &str, path: &std::path::Path, source: &std::io::Error) -> Self {
        tracing::error!(path = %path.display(), error = %source, "{what}");
        EngineError::Storage(format!("{what}: {}", io_kind(source)))
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<ort::Error> for EngineError {
    fn from(e: ort::Error) -> Self {
        EngineError::Inference(e.to_string())
    }
}

/// An I/O error as words without any path (`No space left on device`).
fn io_kind(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.kind().to_string(),
    }
}

/// Result alias for the engine layer.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
