//! Configuration: TOML under `configs/`, every key overridable by a CLI flag and a `DOSOD_*` variable.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::decode::DecodeLimits;
use crate::runtime::{ExecutionProvider, RuntimeOptions};
use crate::stream::config::{MqttSettings, StreamConfig, validate_streams};
use crate::vocab_store::VocabOptions;

/// Everything a `dosod` process reads from its configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub runtime: RuntimeOptions,
    pub model: ModelSettings,
    pub limits: DecodeLimits,
    pub vocabulary: VocabOptions,
    pub server: ServerSettings,
    pub log: LogSettings,
    /// `[[streams]]`: cameras run by `dosod serve` and `dosod stream`.
    pub streams: Vec<StreamConfig>,
    pub mqtt: MqttSettings,
    /// `[ros2]`: the node run by `dosod ros`.
    pub ros2: crate::ros2::config::Ros2Settings,
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    /// Largest request body (413 above).
    pub max_body_bytes: usize,
    /// Images waiting for inference before new ones are refused with 429.
    pub queue_size: usize,
    /// Images per forward pass at most.
    pub max_batch: usize,
    /// How long the worker waits to fill a batch once it holds one image (0: never waits).
    pub max_queue_delay_us: u64,
    /// Queue + inference must finish within this, else 503.
    pub deadline_ms: u64,
    /// The whole request must finish within this, else 503.
    pub request_timeout_ms: u64,
    /// Images decoded at the same time (0: twice the physical cores).
    pub decode_concurrency: usize,
    /// Async threads serving HTTP (0: half the physical cores, at least one).
    pub http_threads: usize,
    /// Required on every route but health, metrics and the page's assets; empty: none.
    pub api_key: String,
    /// Origins allowed by CORS; empty: CORS off; `*`: any.
    pub cors_origins: Vec<String>,
    /// The vocabulary used when a request names none; empty: the bundle's default.
    pub default_vocabulary: String,
    /// The vocabulary of the DeepStack-compatible route; empty: the default one.
    pub deepstack_vocabulary: String,
    /// On SIGTERM / Ctrl-C, in-flight requests get this long to finish.
    pub shutdown_grace_ms: u64,
}

impl ServerSettings {
    /// How the inference worker batches, from `queue_size`, `max_batch`, `max_queue_delay_us`.
    pub fn batch_policy(&self) -> crate::scheduler::BatchPolicy {
        crate::scheduler::BatchPolicy {
            queue_size: self.queue_size.max(1),
            max_batch: self.max_batch.max(1),
            max_delay: std::time::Duration::from_micros(self.max_queue_delay_us),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            max_body_bytes: 20 << 20,
            queue_size: 64,
            max_batch: 8,
            max_queue_delay_us: 0,
            deadline_ms: 10_000,
            request_timeout_ms: 30_000,
            decode_concurrency: 0,
            http_threads: 0,
            api_key: String::new(),
            cors_origins: Vec::new(),
            default_vocabulary: String::new(),
            deepstack_vocabulary: String::new(),
            shutdown_grace_ms: 10_000,
        }
    }
}

/// Flags of `dosod serve`; each overrides the `[server]` key of the same name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerArgs {
    #[arg(long, env = "DOSOD_HOST")]
    pub host: Option<String>,
    #[arg(long, env = "DOSOD_PORT")]
    pub port: Option<u16>,
    #[arg(long, env = "DOSOD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    #[arg(long, env = "DOSOD_QUEUE_SIZE")]
    pub queue_size: Option<usize>,
    #[arg(long, env = "DOSOD_MAX_BATCH")]
    pub max_batch: Option<usize>,
    #[arg(long, env = "DOSOD_MAX_QUEUE_DELAY_US")]
    pub max_queue_delay_us: Option<u64>,
    #[arg(long, env = "DOSOD_DEADLINE_MS")]
    pub deadline_ms: Option<u64>,
    #[arg(long, env = "DOSOD_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    #[arg(long, env = "DOSOD_DECODE_CONCURRENCY")]
    pub decode_concurrency: Option<usize>,
    #[arg(long, env = "DOSOD_HTTP_THREADS")]
    pub http_threads: Option<usize>,
    #[arg(long, env = "DOSOD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Comma-separated origins.
    #[arg(long, env = "DOSOD_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Option<Vec<String>>,
    #[arg(long, env = "DOSOD_DEFAULT_VOCABULARY")]
    pub default_vocabulary: Option<String>,
    #[arg(long, env = "DOSOD_DEEPSTACK_VOCABULARY")]
    pub deepstack_vocabulary: Option<String>,
    #[arg(long, env = "DOSOD_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    #[command(flatten)]
    pub mqtt: crate::stream::config::MqttArgs,
    /// Run the API without the configured `[[streams]]`.
    #[arg(long, env = "DOSOD_NO_STREAMS")]
    pub no_streams: bool,
}

impl ServerArgs {
    /// Applies the given flags on top of the file's `[server]` section.
    pub fn apply(&self, s: &mut ServerSettings) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { s.$f = v.clone(); } )* };
        }
        set!(
            host,
            port,
            max_body_bytes,
            queue_size,
            max_batch,
            max_queue_delay_us,
            deadline_ms,
            request_timeout_ms,
            decode_concurrency,
            http_threads,
            api_key,
            cors_origins,
            default_vocabulary,
            deepstack_vocabulary,
            shutdown_grace_ms
        );
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// The bundle directory.
    pub dir: PathBuf,
}

impl Default for ModelSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("models/demo"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `dosod=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "warn".into(),
        }
    }
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "configs/default.toml";

/// The configuration layer's errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: String, message: String },
}

impl Settings {
    /// Reads `path`, or `configs/default.toml` when `path` is `None` and that file exists, or
    /// the built-in defaults.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None if Path::new(DEFAULT_CONFIG).is_file() => PathBuf::from(DEFAULT_CONFIG),
            None => return Ok(Settings::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path,
            message: e.message().to_string(),
        })
    }
}

/// Flags shared by every subcommand. Each overrides the file's key of the same name and can
/// also be set with the environment variable shown.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file (TOML) [default: configs/default.toml when present].
    #[arg(long, global = true, env = "DOSOD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model bundle directory [config: model.dir].
    #[arg(long, global = true, env = "DOSOD_MODEL")]
    pub model: Option<PathBuf>,
    /// Path of libonnxruntime.so [config: runtime.ort_lib; also ORT_DYLIB_PATH].
    #[arg(long, global = true, env = "DOSOD_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads per session, 0 = physical cores [config: runtime.intra_threads].
    #[arg(long, global = true, env = "DOSOD_INTRA_THREADS")]
    pub intra_threads: Option<usize>,
    /// cpu, cuda, tensorrt or openvino [config: runtime.execution_provider].
    #[arg(long, global = true, env = "DOSOD_EXECUTION_PROVIDER")]
    pub execution_provider: Option<ExecutionProvider>,
    /// GPU ordinal [config: runtime.device_id].
    #[arg(long, global = true, env = "DOSOD_DEVICE_ID")]
    pub device_id: Option<i32>,
    /// Let idle ONNX Runtime threads spin (true/false) [config: runtime.spin].
    #[arg(long, global = true, env = "DOSOD_SPIN")]
    pub spin: Option<bool>,
    /// Largest decoded image, in pixels [config: limits.max_pixels].
    #[arg(long, global = true, env = "DOSOD_MAX_PIXELS")]
    pub max_pixels: Option<u64>,
    /// Largest decoded width or height [config: limits.max_side].
    #[arg(long, global = true, env = "DOSOD_MAX_SIDE")]
    pub max_side: Option<u32>,
    /// Where named vocabularies persist [config: vocabulary.data_dir].
    #[arg(long, global = true, env = "DOSOD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of the built-in vocabulary files [config: vocabulary.builtin_dir].
    #[arg(long, global = true, env = "DOSOD_BUILTIN_VOCAB_DIR")]
    pub builtin_vocab_dir: Option<PathBuf>,
    /// Memory cap of the phrase-embedding cache, bytes [config: vocabulary.cache_bytes].
    #[arg(long, global = true, env = "DOSOD_VOCAB_CACHE_BYTES")]
    pub vocab_cache_bytes: Option<usize>,
    /// Most classes per vocabulary [config: vocabulary.limits.max_classes].
    #[arg(long, global = true, env = "DOSOD_MAX_CLASSES")]
    pub max_classes: Option<usize>,
    /// Most phrases per class [config: vocabulary.limits.max_phrases_per_class].
    #[arg(long, global = true, env = "DOSOD_MAX_PHRASES_PER_CLASS")]
    pub max_phrases_per_class: Option<usize>,
    /// Most characters per phrase [config: vocabulary.limits.max_phrase_chars].
    #[arg(long, global = true, env = "DOSOD_MAX_PHRASE_CHARS")]
    pub max_phrase_chars: Option<usize>,
    /// Most tokens per phrase [config: vocabulary.limits.max_phrase_tokens].
    #[arg(long, global = true, env = "DOSOD_MAX_PHRASE_TOKENS")]
    pub max_phrase_tokens: Option<usize>,
    /// Log format, text or json [config: log.format].
    #[arg(long, global = true, env = "DOSOD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Log filter, e.g. info or dosod=debug [config: log.level].
    #[arg(long, global = true, env = "DOSOD_LOG")]
    pub log_level: Option<String>,
}

impl ConfigArgs {
    /// The file's settings with every given flag / variable applied on top.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = Settings::load(self.config.as_deref())?;
        if let Some(v) = &self.model {
            s.model.dir = v.clone();
        }
        if let Some(v) = &self.ort_lib {
            s.runtime.ort_lib = Some(v.clone());
        }
        if let Some(v) = self.intra_threads {
            s.runtime.intra_threads = v;
        }
        if let Some(v) = self.execution_provider {
            s.runtime.execution_provider = v;
        }
        if let Some(v) = self.device_id {
            s.runtime.device_id = v;
        }
        if let Some(v) = self.spin {
            s.runtime.spin = v;
        }
        if let Some(v) = self.max_pixels {
            s.limits.max_pixels = v;
        }
        if let Some(v) = self.max_side {
            s.limits.max_side = v;
        }
        let v = &mut s.vocabulary;
        if let Some(d) = &self.data_dir {
            v.data_dir = (!d.as_os_str().is_empty()).then(|| d.clone());
        }
        if let Some(d) = &self.builtin_vocab_dir {
            v.builtin_dir = d.clone();
        }
        if let Some(n) = self.vocab_cache_bytes {
            v.cache_bytes = n;
        }
        if let Some(n) = self.max_classes {
            v.limits.max_classes = n;
        }
        if let Some(n) = self.max_phrases_per_class {
            v.limits.max_phrases_per_class = n;
        }
        if let Some(n) = self.max_phrase_chars {
            v.limits.max_phrase_chars = n;
        }
        if let Some(n) = self.max_phrase_tokens {
            v.limits.max_phrase_tokens = n;
        }
        if let Some(v) = &self.log_format {
            s.log.format = v.clone();
        }
        if let Some(v) = &self.log_level {
            s.log.level = v.clone();
        }
        validate_streams(&s.streams).map_err(|message| ConfigError::Invalid {
            key: "streams".into(),
            message,
        })?;
        if !matches!(s.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid {
                key: "log.format".into(),
                message: format!("`{}` (expected text or json)", s.log.format),
            });
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[model]\ndir = \"a\"\n[runtime]\nintra_threads = 3\n[limits]\nmax_pixels = 10\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(path.clone()),
            intra_threads: Some(1),
            ..Default::default()
        };
        let s = args.settings().unwrap();
        assert_eq!(s.model.dir, PathBuf::from("a"));
        assert_eq!(s.runtime.intra_threads, 1);
        assert_eq!(s.limits.max_pixels, 10);
        assert_eq!(s.limits.max_side, DecodeLimits::default().max_side);
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[model]\ndirr = \"a\"\n").unwrap();
        assert!(Settings::load(Some(&path)).is_err());
        assert!(Settings::load(Some(&dir.path().join("missing.toml"))).is_err());
    }

    #[test]
    fn shipped_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = Settings::load(Some(&root.join(DEFAULT_CONFIG))).unwrap();
        // the file documents the built-in defaults of [ros2]
        assert_eq!(shipped.ros2, crate::ros2::config::Ros2Settings::default());
        let example = Settings::load(Some(&root.join("configs/streams-example.toml"))).unwrap();
        assert_eq!(example.streams.len(), 2);
        validate_streams(&example.streams).unwrap();
        assert_eq!(example.mqtt.host, "127.0.0.1");
    }
}
