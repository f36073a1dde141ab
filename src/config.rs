//! Configuration: TOML under `configs/`, every key also a CLI flag and a `DOSOD_*` variable.
//! Each section is declared once, with [`section!`], beside the module it configures; this file
//! only composes them and reads the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Declares one configuration section once: the TOML struct (serde, with defaults), its clap
/// flags with their environment variables (`…Args`, every field optional), and `apply`, which
/// lays the flags given over the file's values. Nested sections are flattened the same way.
macro_rules! section {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident, flags $args:ident (global = $global:literal) {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = $default:expr => $flag:literal, $env:literal
                    $(, $extra:ident = $extra_val:literal)*;
            )*
        }
        $(sections { $( $sfield:ident : $sty:ty, $sargs:ty; )* })?
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        $vis struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
            $($( pub $sfield: $sty, )*)?
        }

        impl Default for $name {
            fn default() -> Self {
                Self {
                    $( $field: $default, )*
                    $($( $sfield: <$sty>::default(), )*)?
                }
            }
        }

        #[doc = concat!("The flags of `", stringify!($name), "`: each overrides its key.")]
        #[derive(Debug, Clone, Default, clap::Args)]
        $vis struct $args {
            $(
                $(#[doc = $doc])*
                #[arg(long = $flag, env = $env, global = $global $(, $extra = $extra_val)*)]
                pub $field: Option<$ty>,
            )*
            $($( #[command(flatten)] pub $sfield: $sargs, )*)?
        }

        impl $args {
            /// Lays the flags given over `s`.
            #[allow(dead_code)]
            pub fn apply(&self, s: &mut $name) {
                $( if let Some(v) = &self.$field { s.$field = v.clone(); } )*
                $($( self.$sfield.apply(&mut s.$sfield); )*)?
            }
        }
    };
}

use crate::cli::{LogArgs, LogSettings};
use crate::engine::bundle::{ModelArgs, ModelSettings};
use crate::engine::decode::{DecodeLimits, DecodeLimitsArgs, DecodeOptions, DecodeOptionsArgs};
use crate::engine::runtime::{RuntimeArgs, RuntimeOptions};
use crate::ros2::config::Ros2Settings;
use crate::server::config::ServerSettings;
use crate::service::config::{BatchArgs, BatchSettings};
use crate::stream::config::{
    ClusterArgs, ClusterSettings, EventArgs, EventSettings, MqttSettings, StreamConfig,
    streams_of_shard, validate_streams,
};
use crate::vocab::store::{VocabOptions, VocabOptionsArgs};

/// A URL setting without its password, for logs and errors (`rtsp://user:secret@host/…` →
/// `rtsp://user:***@host/…`, `redis://:secret@host:6379/0` → `redis://:***@host:6379/0`). The
/// credentials run to the last `@`, so a password holding `/` or `@` (base64, say) is masked
/// whole; without a `:` before that `@` there is no password and the URL is kept.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Everything a `dosod` process reads from its configuration file, one field per section.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Settings {
    pub runtime: RuntimeOptions,
    pub model: ModelSettings,
    pub limits: DecodeLimits,
    pub decode: DecodeOptions,
    pub vocabulary: VocabOptions,
    pub batching: BatchSettings,
    pub server: ServerSettings,
    pub log: LogSettings,
    /// `[[streams]]`: cameras run by `dosod serve` and `dosod stream`.
    pub streams: Vec<StreamConfig>,
    pub mqtt: MqttSettings,
    /// `[events]`: camera events' storage.
    pub events: EventSettings,
    /// `[cluster]`: which of the `[[streams]]` this replica runs.
    pub cluster: ClusterSettings,
    /// `[ros2]`: the node run by `dosod ros` (or `dosod serve --ros2`).
    pub ros2: Ros2Settings,
}

/// The file read when `--config` is not given, if it exists.
pub(crate) const DEFAULT_CONFIG: &str = "configs/default.toml";

/// The configuration layer's errors.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
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

/// Keys that moved from `[server]` to `[batching]` (they apply to cameras and ROS 2 too).
const MOVED_TO_BATCHING: [&str; 5] = [
    "queue_size",
    "max_batch",
    "max_queue_delay_us",
    "deadline_ms",
    "decode_concurrency",
];

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
        toml::from_str(&text).map_err(|e| {
            let mut message = e.message().to_string();
            if let Some(key) = MOVED_TO_BATCHING
                .iter()
                .find(|k| message.contains(&format!("unknown field `{k}`")))
            {
                message = format!("`[server] {key}` is now `[batching] {key}`: {message}");
            }
            ConfigError::Parse { path, message }
        })
    }
}

/// Flags shared by every subcommand: the file, then one flattened group per section.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Configuration file (TOML) [default: configs/default.toml when present].
    #[arg(long, global = true, env = "DOSOD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub limits: DecodeLimitsArgs,
    #[command(flatten)]
    pub decode: DecodeOptionsArgs,
    #[command(flatten)]
    pub vocabulary: VocabOptionsArgs,
    #[command(flatten)]
    pub batching: BatchArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub events: EventArgs,
}

impl ConfigArgs {
    /// The file's settings with every given flag / variable applied on top, checked.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = Settings::load(self.config.as_deref())?;
        self.model.apply(&mut s.model);
        self.runtime.apply(&mut s.runtime);
        self.limits.apply(&mut s.limits);
        self.decode.apply(&mut s.decode);
        self.vocabulary.apply(&mut s.vocabulary);
        self.batching.apply(&mut s.batching);
        self.log.apply(&mut s.log);
        self.cluster.apply(&mut s.cluster);
        self.events.apply(&mut s.events);
        s.events
            .validate()
            .map_err(|message| ConfigError::Invalid {
                key: "events".into(),
                message,
            })?;
        validate_streams(&s.streams).map_err(|message| ConfigError::Invalid {
            key: "streams".into(),
            message,
        })?;
        // A replica keeps only its shard's cameras: every frontend below sees just those.
        let shard = s.cluster.shard().map_err(|message| ConfigError::Invalid {
            key: "cluster.stream_shard".into(),
            message,
        })?;
        if let Some((i, n)) = shard {
            s.streams = streams_of_shard(&s.streams, i, n);
        }
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
    fn passwords_are_redacted() {
        for (url, shown) in [
            (
                "rtsp://admin:hunter2@10.0.0.5:554/stream1",
                "rtsp://admin:***@10.0.0.5:554/stream1",
            ),
            ("rtsp://10.0.0.5/s", "rtsp://10.0.0.5/s"),
            ("/videos/a.mp4", "/videos/a.mp4"),
            (
                "redis://:s3cret@10.0.0.5:6379/2",
                "redis://:***@10.0.0.5:6379/2",
            ),
            ("redis://app:s3cret@redis", "redis://app:***@redis"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            // base64 secrets hold `/` and `+`; passwords may hold `@`
            (
                "redis://:Zm9v/YmFy+cQ==@10.0.0.5:6379/0",
                "redis://:***@10.0.0.5:6379/0",
            ),
            ("rtsp://a:p@ss@cam/x", "rtsp://a:***@cam/x"),
            // an `@` in a path without credentials
            ("rtsp://cam/stream@1", "rtsp://cam/stream@1"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[model]\ndir = \"a\"\n[runtime]\nintra_threads = 3\n[limits]\nmax_pixels = 10\n",
        )
        .unwrap();
        let mut args = ConfigArgs {
            config: Some(path.clone()),
            ..Default::default()
        };
        args.runtime.intra_threads = Some(1);
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
        std::fs::write(&path, "[server]\nqueue_size = 3\n").unwrap();
        let e = Settings::load(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("[batching] queue_size"), "{e}");
    }

    #[test]
    fn shipped_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let shipped = Settings::load(Some(&root.join(DEFAULT_CONFIG))).unwrap();
        // the file documents the built-in defaults of every section
        assert_eq!(shipped.ros2, Ros2Settings::default());
        assert_eq!(shipped.batching, BatchSettings::default());
        assert_eq!(shipped.server, ServerSettings::default());
        assert_eq!(shipped.runtime, RuntimeOptions::default());
        assert_eq!(shipped.mqtt, MqttSettings::default());
        assert_eq!(shipped.cluster, ClusterSettings::default());
        let example = Settings::load(Some(&root.join("configs/streams-example.toml"))).unwrap();
        assert_eq!(example.streams.len(), 2);
        validate_streams(&example.streams).unwrap();
        assert_eq!(example.mqtt.host, "127.0.0.1");
    }
}
