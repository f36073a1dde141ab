//! The command line: subcommands, logging set-up, and the one place errors become exit codes.

mod bench;
mod detect;
mod eval;
mod ros;
mod serve;
mod stream;
mod vocab;

use clap::{Parser, Subcommand};

use crate::config::ConfigArgs;

section! {
    /// `[log]`: what the process logs, and how.
    pub(crate) struct LogSettings, flags LogArgs (global = true) {
        /// Log format: text or json.
        format: String = "text".into() => "log-format", "DOSOD_LOG_FORMAT";
        /// Log filter, e.g. info or dosod=debug.
        level: String = "warn".into() => "log-level", "DOSOD_LOG";
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "dosod",
    version,
    about = "Real-time open-set object detection (DOSOD)"
)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (and the web page) on the configured model.
    Serve(serve::ServeArgs),
    /// Detect objects in images and print one JSON object per image.
    Detect(detect::DetectArgs),
    /// Run the configured `[[streams]]` (cameras) without the HTTP API.
    Stream(stream::StreamArgs),
    /// Run the ROS 2 node: sensor_msgs/Image in, vision_msgs/Detection2DArray out.
    Ros(ros::RosArgs),
    /// Time every stage of the pipeline and the bare model.
    Bench(bench::BenchArgs),
    /// Score the model on a COCO-format dataset (AP@[.5:.95], AP@.5, per-class AP).
    Eval(eval::EvalArgs),
    /// Vocabularies: encode to a file, list, put, delete, benchmark.
    #[command(subcommand)]
    Vocab(vocab::VocabCommand),
}

/// Precomputed embeddings instead of class names (the CLI's own vocabulary source).
#[derive(Debug, Clone, Default, clap::Args)]
struct EmbeddingsArgs {
    /// Precomputed embeddings: `.npz` (names + joint or text) or `.npy` [K, T] (+ --names).
    #[arg(long, conflicts_with_all = ["classes", "vocabulary"])]
    vocab: Option<std::path::PathBuf>,
    /// Names for a `.npy` --vocab, one per line [default: FILE.txt].
    #[arg(long, requires = "vocab")]
    names: Option<std::path::PathBuf>,
}

/// The vocabulary a command asked for (flags), else the bundle's default.
fn vocabulary(
    store: &crate::vocab::store::VocabStore,
    options: &crate::service::options::DetectOptions,
    embeddings: &EmbeddingsArgs,
) -> anyhow::Result<std::sync::Arc<crate::engine::Vocabulary>> {
    let mut request = options.vocab_request();
    request.embeddings = embeddings.vocab.clone();
    request.names = embeddings.names.clone();
    let nothing_asked = request.classes.is_none() && request.name.is_none();
    store.select(&request, "").map_err(|e| {
        if nothing_asked {
            anyhow::anyhow!("{e}: pass --classes \"a, b\", --vocabulary NAME or --vocab FILE")
        } else {
            e.into()
        }
    })
}

/// A tokio runtime of `threads` async threads for a frontend, and the service started on it:
/// every long-running subcommand's composition root.
fn start_service(
    settings: &crate::config::Settings,
    threads: usize,
    name: &str,
) -> anyhow::Result<(
    tokio::runtime::Runtime,
    std::sync::Arc<crate::service::Service>,
)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .thread_name(name)
        .build()?;
    let service = {
        let _in = runtime.enter();
        crate::service::Service::start(settings)?
    };
    trim_freed_memory_periodically();
    Ok((runtime, service))
}

/// glibc keeps the frame, tensor and batch buffers a service frees in its arenas, fragmented,
/// so a long-running process only grows (a 30-minute soak: +594 MB/h after warm-up; a fixed
/// mmap threshold instead cost 15 % throughput; docs/reliability.md). Every 10 s the free
/// pages are handed back.
fn trim_freed_memory_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    let _ = std::thread::Builder::new()
        .name("dosod-trim".into())
        .spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(10));
                // SAFETY: malloc_trim only returns free memory to the system; it takes the
                // allocator's own locks.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        });
}

/// Runs the CLI; any error is printed as one line and gives exit code 1 (2 for usage errors).
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match cli.config.settings() {
        Ok(s) => s,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    init_logging(&settings.log.format, &settings.log.level);
    if let Ok(Some((i, n))) = settings.cluster.shard() {
        tracing::info!(
            shard = %format!("{i}/{n}"),
            cameras = ?settings.streams.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            "this replica runs its shard's streams"
        );
    }
    let result = match &cli.command {
        Command::Serve(args) => serve::run(&settings, args),
        Command::Detect(args) => detect::run(&settings, args),
        Command::Bench(args) => bench::run(&settings, args),
        Command::Stream(args) => stream::run(&settings, args),
        Command::Ros(args) => ros::run(&settings, args),
        Command::Eval(args) => eval::run(&settings, args),
        Command::Vocab(cmd) => vocab::run(&settings, cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {e:#}");
    std::process::ExitCode::FAILURE
}

fn init_logging(format: &str, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
