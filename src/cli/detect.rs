//! `dosod detect`: images in, one JSON object of detections per image out.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{EmbeddingsArgs, vocabulary};
use crate::config::Settings;
use crate::engine::{Detection, Timings};
use crate::service::open_store;
use crate::service::options::DetectOptions;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Image files (JPEG, PNG, WebP, BMP).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    #[command(flatten)]
    pub options: DetectOptions,
    #[command(flatten)]
    pub embeddings: EmbeddingsArgs,
    /// Write annotated images: a file for one image, else a directory.
    #[arg(long)]
    pub annotate: Option<PathBuf>,
}

#[derive(Serialize)]
struct ImageReport<'a> {
    image: &'a Path,
    width: u32,
    height: u32,
    detections: Vec<Detection>,
    timings_ms: Timings,
}

pub fn run(settings: &Settings, args: &DetectArgs) -> Result<std::process::ExitCode> {
    let store = open_store(settings)?;
    let engine = store.engine().clone();
    let vocab = vocabulary(&store, &args.options, &args.embeddings)?;
    let params = args.options.params(engine.default_params())?;

    let annotate_dir = match &args.annotate {
        Some(p) if args.images.len() > 1 || p.extension().is_none() => {
            std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
            Some(p.clone())
        }
        _ => None,
    };

    let stdout = std::io::stdout();
    let mut failures = 0;
    for path in &args.images {
        let outcome = (|| -> Result<()> {
            let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
            let (mut img, detections, timings) = engine
                .detect_bytes(&bytes, &vocab, &params)
                .with_context(|| format!("{}", path.display()))?;
            let report = ImageReport {
                image: path,
                width: img.width(),
                height: img.height(),
                detections,
                timings_ms: timings,
            };
            let mut out = stdout.lock();
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
            out.flush()?;
            if let Some(target) =
                annotation_target(args.annotate.as_deref(), annotate_dir.as_deref(), path)
            {
                crate::engine::annotate::draw(&mut img, &report.detections);
                img.save(&target)
                    .with_context(|| format!("writing {}", target.display()))?;
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            eprintln!("error: {e:#}");
            failures += 1;
        }
    }
    Ok(if failures == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

fn annotation_target(file: Option<&Path>, dir: Option<&Path>, image: &Path) -> Option<PathBuf> {
    match (file, dir) {
        (_, Some(dir)) => {
            let stem = image.file_stem().unwrap_or_default().to_string_lossy();
            Some(dir.join(format!("{stem}.annotated.jpg")))
        }
        (Some(file), None) => Some(file.to_path_buf()),
        (None, None) => None,
    }
}
