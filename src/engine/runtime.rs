//! ONNX Runtime: finding and loading the shared library once, execution providers, sessions.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use crate::engine::error::{EngineError, Result};

/// The ONNX Runtime release the project pins (the PyPI `onnxruntime` wheel installed by `make`).
pub const ORT_RELEASE: &str = "1.32.0";

/// Where ONNX Runtime runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    #[default]
    Cpu,
    Cuda,
    Tensorrt,
    Openvino,
}

impl std::str::FromStr for ExecutionProvider {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "tensorrt" | "trt" => Ok(Self::Tensorrt),
            "openvino" => Ok(Self::Openvino),
            other => Err(format!(
                "unknown execution provider `{other}` (expected cpu, cuda, tensorrt or openvino)"
            )),
        }
    }
}

impl std::fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Tensorrt => "tensorrt",
            Self::Openvino => "openvino",
        })
    }
}

/// How far ONNX Runtime rewrites a graph before running it (`SetSessionGraphOptimizationLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Optimization {
    /// `ORT_DISABLE_ALL`.
    Disable,
    /// `ORT_ENABLE_BASIC`: constant folding, redundant nodes, Conv+Add/Mul/BN.
    Basic,
    /// `ORT_ENABLE_EXTENDED`: the complex fusions (for CPU / CUDA nodes).
    Extended,
    /// `ORT_ENABLE_LAYOUT`: what `ort`'s `Level3` means (a subset of `all`).
    Layout,
    /// `ORT_ENABLE_ALL`: everything, including the NCHWc layout and the fp16 fusions.
    #[default]
    All,
}

impl Optimization {
    const NAMES: [(&'static str, Optimization); 5] = [
        ("disable", Self::Disable),
        ("basic", Self::Basic),
        ("extended", Self::Extended),
        ("layout", Self::Layout),
        ("all", Self::All),
    ];

    fn level(self) -> GraphOptimizationLevel {
        match self {
            Self::Disable => GraphOptimizationLevel::Disable,
            Self::Basic => GraphOptimizationLevel::Level1,
            Self::Extended => GraphOptimizationLevel::Level2,
            Self::Layout => GraphOptimizationLevel::Level3,
            Self::All => GraphOptimizationLevel::All,
        }
    }
}

impl std::str::FromStr for Optimization {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, level)| *level)
            .ok_or_else(|| {
                format!("unknown graph optimisation `{s}` (expected disable, basic, extended, layout or all)")
            })
    }
}

impl std::fmt::Display for Optimization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, l)| l == self)
            .map_or("all", |(n, _)| n);
        f.write_str(name)
    }
}

section! {
    /// `[runtime]`: how ONNX Runtime sessions are built.
    pub struct RuntimeOptions, flags RuntimeArgs (global = true) {
        /// Path of libonnxruntime.so; empty: ORT_DYLIB_PATH, then the .venv that `make` creates.
        ort_lib: PathBuf = PathBuf::new() => "ort-lib", "DOSOD_ORT_LIB";
        /// Intra-op threads per session; 0: the number of physical cores.
        intra_threads: usize = 0 => "intra-threads", "DOSOD_INTRA_THREADS";
        /// cpu, cuda, tensorrt or openvino (the last three need the cargo feature of that name).
        execution_provider: ExecutionProvider = ExecutionProvider::Cpu => "execution-provider", "DOSOD_EXECUTION_PROVIDER";
        /// GPU ordinal for CUDA / TensorRT.
        device_id: i32 = 0 => "device-id", "DOSOD_DEVICE_ID";
        /// OpenVINO device: CPU, GPU, NPU, or a combination such as AUTO:GPU,CPU.
        openvino_device: String = "CPU".to_string() => "openvino-device", "DOSOD_OPENVINO_DEVICE";
        /// Graph optimisation: disable, basic, extended, layout or all.
        graph_optimization: Optimization = Optimization::All => "graph-optimization", "DOSOD_GRAPH_OPTIMIZATION";
        /// Write each session's optimised graph here (`<model>.optimized.onnx`), to inspect what
        /// ONNX Runtime runs; empty: not written.
        optimized_model_dir: PathBuf = PathBuf::new() => "optimized-model-dir", "DOSOD_OPTIMIZED_MODEL_DIR";
        /// Let idle intra-op threads spin before sleeping (true/false). Off by default: on small
        /// CPUs a spinning pool steals the cores that decode and letterbox the next frame.
        spin: bool = false => "spin", "DOSOD_SPIN";
    }
}

/// A loaded ONNX Runtime: the process-wide environment plus how to build sessions.
#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    options: RuntimeOptions,
    library: PathBuf,
    threads: usize,
}

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

const INSTALL_HINT: &str = "install it with `make setup` (it creates .venv with onnxruntime==1.32.0), \
     or point --ort-lib / DOSOD_ORT_LIB / ORT_DYLIB_PATH at libonnxruntime.so.1.32.0";

impl Runtime {
    /// Loads ONNX Runtime once per process. Later calls return the first result, whatever
    /// their options: one library and one environment serve every session.
    pub fn init(options: &RuntimeOptions) -> Result<Runtime> {
        RUNTIME
            .get_or_init(|| Self::load(options))
            .clone()
            .map_err(EngineError::Runtime)
    }

    fn load(options: &RuntimeOptions) -> std::result::Result<Runtime, String> {
        let library =
            resolve_library(Some(options.ort_lib.as_path()).filter(|p| !p.as_os_str().is_empty()))?;
        // ort panics on a library it cannot open, so check the file ourselves first.
        if !library.is_file() {
            return Err(format!(
                "ONNX Runtime library not found at {}: {INSTALL_HINT}",
                library.display()
            ));
        }
        let builder = ort::init_from(&library).map_err(|e| {
            format!(
                "cannot load ONNX Runtime from {}: {e}; {INSTALL_HINT}",
                library.display()
            )
        })?;
        let env = builder
            .with_name("dosod")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        let threads = match options.intra_threads {
            0 => physical_cores(),
            n => n,
        };
        tracing::debug!(library = %library.display(), threads, ep = %options.execution_provider, "ONNX Runtime loaded");
        Ok(Runtime {
            env,
            options: options.clone(),
            library,
            threads,
        })
    }

    /// The ONNX Runtime version: from the library's file name (`libonnxruntime.so.1.32.0`),
    /// else the build information the library reports.
    pub fn version(&self) -> String {
        let name = self
            .library
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        match name.split_once(".so.") {
            Some((_, v)) if v.chars().next().is_some_and(|c| c.is_ascii_digit()) => v.to_string(),
            _ => ort::info().to_string(),
        }
    }

    /// The execution provider every session uses.
    pub fn execution_provider(&self) -> ExecutionProvider {
        self.options.execution_provider
    }

    /// Intra-op threads per session.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Builds a session for one ONNX file with the configured threads, graph optimisation (by
    /// default `ORT_ENABLE_ALL`; ort's `Level3` is `ORT_ENABLE_LAYOUT`, a subset) and execution
    /// provider. An execution provider that was asked for and cannot be used is an error: never
    /// a silent fallback to the CPU.
    pub fn session(&self, model: &Path) -> Result<Session> {
        let fail = |what: &str, e: String| {
            EngineError::Runtime(format!("{}: {what}: {e}", model.display()))
        };
        let mut builder = Session::builder(&self.env)
            .map_err(|e| fail("session options", e.to_string()))?
            .with_optimization_level(self.options.graph_optimization.level())
            .map_err(|e| fail("optimisation level", e.to_string()))?
            .with_intra_threads(self.threads)
            .map_err(|e| fail("threads", e.to_string()))?
            .with_intra_op_spinning(self.options.spin)
            .map_err(|e| fail("spinning", e.to_string()))?;
        if !self.options.optimized_model_dir.as_os_str().is_empty() {
            let stem = model.file_stem().unwrap_or_default().to_string_lossy();
            let out = self
                .options
                .optimized_model_dir
                .join(format!("{stem}.optimized.onnx"));
            builder = builder
                .with_optimized_model_path(&out)
                .map_err(|e| fail("optimized model path", e.to_string()))?;
        }
        if self.options.execution_provider != ExecutionProvider::Cpu {
            let ep = self.provider()?;
            builder = builder
                .with_execution_providers([ep])
                .map_err(|e| fail("execution provider", e.to_string()))?;
        }
        builder
            .commit_from_file(model)
            .map_err(|e| fail("cannot load model", e.to_string()))
    }

    fn provider(&self) -> Result<ort::ep::ExecutionProviderDispatch> {
        let ep = self.options.execution_provider;
        let not_built = |feature: &str| {
            EngineError::Runtime(format!(
                "execution provider `{ep}` was requested but dosod was built without it; \
                 rebuild with `cargo build --release --features {feature}`"
            ))
        };
        #[allow(unused_variables)]
        let device = self.options.device_id;
        match ep {
            ExecutionProvider::Cpu => Ok(ort::ep::CPU::default().build().error_on_failure()),
            ExecutionProvider::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    use ort::ep::ExecutionProvider as _;
                    require_available::<ort::ep::CUDA>(ep)?;
                    Ok(ort::ep::CUDA::default()
                        .with_device_id(device)
                        .build()
                        .error_on_failure())
                }
                #[cfg(not(feature = "cuda"))]
                Err(not_built("cuda"))
            }
            ExecutionProvider::Tensorrt => {
                #[cfg(feature = "tensorrt")]
                {
                    require_available::<ort::ep::TensorRT>(ep)?;
                    Ok(ort::ep::TensorRT::default()
                        .with_device_id(device)
                        .build()
                        .error_on_failure())
                }
                #[cfg(not(feature = "tensorrt"))]
                Err(not_built("tensorrt"))
            }
            ExecutionProvider::Openvino => {
                #[cfg(feature = "openvino")]
                {
                    require_available::<ort::ep::OpenVINO>(ep)?;
                    // OpenVINO's own default is 8 threads, whatever the machine has.
                    Ok(ort::ep::OpenVINO::default()
                        .with_device_type(&self.options.openvino_device)
                        .with_num_threads(self.threads)
                        .build()
                        .error_on_failure())
                }
                #[cfg(not(feature = "openvino"))]
                Err(not_built("openvino"))
            }
        }
    }
}

#[cfg(any(feature = "cuda", feature = "tensorrt", feature = "openvino"))]
fn require_available<E: ort::ep::ExecutionProvider>(ep: ExecutionProvider) -> Result<()> {
    match E::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err(EngineError::Runtime(format!(
            "execution provider `{ep}` is not available in the loaded ONNX Runtime library \
             (the CPU wheel has only the CPU provider: use the library of onnxruntime-gpu for cuda / \
             tensorrt, or of onnxruntime-openvino for openvino, docs/acceleration.md)"
        ))),
        Err(e) => Err(EngineError::Runtime(format!(
            "cannot query execution provider `{ep}`: {e}"
        ))),
    }
}

/// The library path: explicit option, then `ORT_DYLIB_PATH`, then a `.venv` next to the working
/// directory or the executable (how `make` installs it).
fn resolve_library(explicit: Option<&Path>) -> std::result::Result<PathBuf, String> {
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut roots = vec![PathBuf::from(".")];
    if let Ok(exe) = std::env::current_exe() {
        // target/release/dosod -> the repository root
        roots.extend(exe.ancestors().skip(1).take(3).map(Path::to_path_buf));
    }
    for root in roots {
        if let Some(found) = find_in_venv(&root.join(".venv")) {
            return Ok(found);
        }
    }
    Err(format!(
        "ONNX Runtime library not configured and not found in .venv: {INSTALL_HINT}"
    ))
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let entries = std::fs::read_dir(&lib).ok()?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("python3") {
            continue;
        }
        let candidate = entry
            .path()
            .join("site-packages/onnxruntime/capi")
            .join(format!("libonnxruntime.so.{ORT_RELEASE}"));
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// Physical cores (not hyper-threads) on Linux; logical CPUs elsewhere.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") else {
        return logical;
    };
    let mut cores = std::collections::HashSet::new();
    let mut physical = "0".to_string();
    for line in info.lines() {
        if let Some((key, value)) = line.split_once(':') {
            match key.trim() {
                "physical id" => physical = value.trim().to_string(),
                "core id" => {
                    cores.insert((physical.clone(), value.trim().to_string()));
                }
                _ => {}
            }
        }
    }
    if cores.is_empty() {
        logical
    } else {
        cores.len().min(logical)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_execution_providers() {
        assert_eq!(
            "CPU".parse::<ExecutionProvider>(),
            Ok(ExecutionProvider::Cpu)
        );
        assert_eq!(
            "trt".parse::<ExecutionProvider>(),
            Ok(ExecutionProvider::Tensorrt)
        );
        assert!("tpu".parse::<ExecutionProvider>().is_err());
    }

    #[test]
    fn optimisation_levels_round_trip() {
        for (name, level) in Optimization::NAMES {
            assert_eq!(name.parse::<Optimization>(), Ok(level));
            assert_eq!(level.to_string(), name);
        }
        assert_eq!(Optimization::default(), Optimization::All);
        assert!("max".parse::<Optimization>().is_err());
    }

    #[test]
    fn physical_cores_is_positive() {
        assert!(physical_cores() >= 1);
    }
}
