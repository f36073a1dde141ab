//! `dosod detect`: images in, one JSON object of detections per image out.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{EmbeddingsArgs, vocabulary};
use crate::config::Settings;
use crate::engine::decode::Decoded;
use crate::engine::pipeline::pipelined;
use crate::engine::{Detection, Prepared, Timings, ms};
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

    // A helper thread reads, decodes and letterboxes the next image while the detector runs.
    // Annotated images are drawn on full-size pixels, so they never use reduced decoding.
    let keep_pixels = args.annotate.is_some();
    let prepare = |(i, path): (usize, &PathBuf)| {
        let prepared = (|| -> Result<(Decoded, Prepared, Timings)> {
            let bytes = std::fs::read(path)?;
            let start = Instant::now();
            let decoded = if keep_pixels {
                engine.decode_with(&bytes, false)?
            } else {
                engine.decode_for_detection(&bytes)?
            };
            let decode = ms(start);
            let start = Instant::now();
            let prepared = engine.prepare_decoded(&decoded)?;
            let timings = Timings {
                decode,
                preprocess: ms(start),
                ..Timings::default()
            };
            Ok((decoded, prepared, timings))
        })();
        (i, prepared)
    };
    let stdout = std::io::stdout();
    let mut failures = 0;
    pipelined(
        args.images.iter().enumerate(),
        1,
        prepare,
        |(i, prepared)| {
            let path = &args.images[i];
            let outcome = prepared.and_then(|(decoded, prepared, mut timings)| {
                let start = Instant::now();
                let raw = engine.infer(&[&prepared], &vocab)?;
                timings.inference = ms(start);
                let start = Instant::now();
                let detections = engine.finish(&raw, 0, &prepared.letterbox, &vocab, &params);
                timings.postprocess = ms(start);
                timings.total =
                    timings.decode + timings.preprocess + timings.inference + timings.postprocess;
                let report = ImageReport {
                    image: path,
                    width: decoded.width,
                    height: decoded.height,
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
                    let mut img = decoded.image;
                    crate::engine::annotate::draw(&mut img, &report.detections);
                    img.save(&target)
                        .with_context(|| format!("writing {}", target.display()))?;
                }
                Ok(())
            });
            if let Err(e) = outcome {
                eprintln!("error: {}: {e:#}", path.display());
                failures += 1;
            }
            Ok::<_, std::convert::Infallible>(())
        },
    )
    .unwrap_or_else(|never| match never {});
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
