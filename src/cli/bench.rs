//! `dosod bench`: per-stage latency of the pipeline against the bare `session.run`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{EmbeddingsArgs, vocabulary};
use crate::config::Settings;
use crate::engine::ms;
use crate::engine::pipeline::pipelined;
use crate::service::open_store;
use crate::service::options::DetectOptions;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The image to run on.
    #[arg(long, default_value = "tests/fixtures/images/zidane.jpg")]
    pub image: PathBuf,
    /// Timed runs (each is one end-to-end pass and one bare session.run, interleaved).
    #[arg(long, default_value_t = 30)]
    pub runs: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    #[command(flatten)]
    pub options: DetectOptions,
    #[command(flatten)]
    pub embeddings: EmbeddingsArgs,
    /// Also measure batch throughput: forward passes of this many prepared images.
    #[arg(long, default_value_t = 0)]
    pub batch: usize,
    /// Also measure frames/s of the pipelined path (`dosod detect`, `dosod eval`): a helper
    /// thread decodes and letterboxes frame i+1 while the detector runs frame i; `--runs`
    /// frames, next to the serial path and 1 / bare session.run.
    #[arg(long)]
    pub pipeline: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Median and 90th percentile of one stage, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub p90: f64,
}

impl Stat {
    pub fn of(samples: &[f64]) -> Stat {
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
        Stat {
            median: at(0.5),
            p90: at(0.9),
        }
    }
}

#[derive(Serialize)]
struct Report {
    model: String,
    image: PathBuf,
    input: String,
    classes: usize,
    threads: usize,
    execution_provider: String,
    /// The detector's arithmetic: int8, float16 or float32.
    precision: String,
    runs: usize,
    decode: Stat,
    preprocess: Stat,
    inference: Stat,
    postprocess: Stat,
    end_to_end: Stat,
    bare_session_run: Stat,
    /// median end-to-end / median bare session.run
    ratio: f64,
    fps: f64,
    /// The same with reduced JPEG decoding (`[decode] reduced_jpeg`), when it applies to the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    reduced: Option<Reduced>,
    /// Frames/s of the serial and pipelined paths (`--pipeline`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline: Option<Pipeline>,
    /// images/s of `infer` + post-processing on batches of `batch` prepared images
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_throughput: Option<f64>,
    batch: usize,
}

/// Reduced JPEG decoding: the decoded size and the stages it changes.
#[derive(Serialize)]
struct Reduced {
    /// `WxH` the JPEG decodes to (1/2, 1/4 or 1/8 of the full size).
    decoded: String,
    decode: Stat,
    preprocess: Stat,
    end_to_end: Stat,
    /// median end-to-end / median bare session.run
    ratio: f64,
}

/// Frames/s over `runs` frames, each decoded, letterboxed, detected and post-processed.
#[derive(Serialize)]
struct Pipeline {
    /// 1 / median bare session.run
    bare_fps: f64,
    serial_fps: f64,
    pipelined_fps: f64,
    /// pipelined frames/s / (1 / bare)
    pipelined_ratio: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    reduced_serial_fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reduced_pipelined_fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reduced_pipelined_ratio: Option<f64>,
}

pub fn run(settings: &Settings, args: &BenchArgs) -> Result<std::process::ExitCode> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let store = open_store(settings)?;
    let engine = store.engine().clone();
    let vocab = vocabulary(&store, &args.options, &args.embeddings)?;
    let params = args.options.params(engine.default_params())?;
    let bytes = std::fs::read(&args.image).with_context(|| format!("{}", args.image.display()))?;
    let reference = engine.prepare(&engine.decode(&bytes)?)?;
    let reduced_decode = engine.decode_with(&bytes, true)?;
    let reduces = reduced_decode.is_reduced();
    let decoded_size = format!(
        "{}x{}",
        reduced_decode.image.width(),
        reduced_decode.image.height()
    );

    // One end-to-end pass with full decoding, one with reduced decoding (when it applies) and
    // one bare session.run, interleaved, so that the machine's load falls on all three alike.
    let mut stages: [Vec<f64>; 6] = Default::default();
    let mut reduced_stages: [Vec<f64>; 3] = Default::default();
    for i in 0..args.warmup + args.runs {
        let timed = i >= args.warmup;
        let t = pass(&engine, &bytes, false, &vocab, &params)?;
        let bare = engine.time_session_run(&reference, &vocab)?.as_secs_f64() * 1e3;
        if timed {
            for (v, s) in t.into_iter().chain([bare]).zip(stages.iter_mut()) {
                s.push(v);
            }
        }
        if reduces {
            let [decode, preprocess, _, _, total] = pass(&engine, &bytes, true, &vocab, &params)?;
            if timed {
                for (v, s) in [decode, preprocess, total]
                    .into_iter()
                    .zip(&mut reduced_stages)
                {
                    s.push(v);
                }
            }
        }
    }
    let [decode, preprocess, inference, postprocess, end_to_end, bare] =
        stages.map(|s| Stat::of(&s));
    let reduced = reduces.then(|| {
        let [decode, preprocess, end_to_end] = reduced_stages.map(|s| Stat::of(&s));
        Reduced {
            decoded: decoded_size,
            decode,
            preprocess,
            end_to_end,
            ratio: end_to_end.median / bare.median,
        }
    });
    let pipeline = if args.pipeline {
        let fps = |ahead: usize, reduced: bool| -> Result<f64> {
            let frames = args.runs.max(1);
            let start = Instant::now();
            pipelined(
                0..frames,
                ahead,
                |_| {
                    engine
                        .decode_with(&bytes, reduced)
                        .and_then(|d| engine.prepare_decoded(&d))
                },
                |prepared| -> Result<()> {
                    let prepared = prepared?;
                    let raw = engine.infer(&[&prepared], &vocab)?;
                    std::hint::black_box(engine.finish(
                        &raw,
                        0,
                        &prepared.letterbox,
                        &vocab,
                        &params,
                    ));
                    Ok(())
                },
            )?;
            Ok(frames as f64 / start.elapsed().as_secs_f64())
        };
        let bare_fps = 1e3 / bare.median;
        let (serial_fps, pipelined_fps) = (fps(0, false)?, fps(1, false)?);
        let (reduced_serial_fps, reduced_pipelined_fps) = if reduces {
            (Some(fps(0, true)?), Some(fps(1, true)?))
        } else {
            (None, None)
        };
        Some(Pipeline {
            bare_fps,
            serial_fps,
            pipelined_fps,
            pipelined_ratio: pipelined_fps / bare_fps,
            reduced_serial_fps,
            reduced_pipelined_fps,
            reduced_pipelined_ratio: reduced_pipelined_fps.map(|f| f / bare_fps),
        })
    } else {
        None
    };
    let batch_throughput = if args.batch > 0 {
        let refs: Vec<&crate::engine::Prepared> = vec![&reference; args.batch];
        engine.infer(&refs, &vocab)?;
        let start = Instant::now();
        for _ in 0..args.runs {
            let raw = engine.infer(&refs, &vocab)?;
            for i in 0..args.batch {
                std::hint::black_box(engine.finish(&raw, i, &reference.letterbox, &vocab, &params));
            }
        }
        Some((args.batch * args.runs) as f64 / start.elapsed().as_secs_f64())
    } else {
        None
    };
    let m = engine.manifest();
    let report = Report {
        model: m.model.name.clone(),
        image: args.image.clone(),
        input: format!("{}x{}", m.input.width, m.input.height),
        classes: vocab.len(),
        threads: engine.runtime().threads(),
        execution_provider: engine.runtime().execution_provider().to_string(),
        precision: engine.precision(),
        runs: args.runs,
        decode,
        preprocess,
        inference,
        postprocess,
        end_to_end,
        bare_session_run: bare,
        ratio: end_to_end.median / bare.median,
        fps: 1e3 / end_to_end.median,
        reduced,
        pipeline,
        batch_throughput,
        batch: args.batch,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_table(&report);
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn print_table(r: &Report) {
    println!(
        "model {} ({}, {}), {} classes, {} threads, {}, {} runs, image {}",
        r.model,
        r.input,
        r.precision,
        r.classes,
        r.threads,
        r.execution_provider,
        r.runs,
        r.image.display()
    );
    println!("{:<18} {:>10} {:>10}", "stage", "median ms", "p90 ms");
    for (name, s) in [
        ("decode", r.decode),
        ("preprocess", r.preprocess),
        ("inference", r.inference),
        ("postprocess", r.postprocess),
        ("end-to-end", r.end_to_end),
        ("bare session.run", r.bare_session_run),
    ] {
        println!("{name:<18} {:>10.3} {:>10.3}", s.median, s.p90);
    }
    println!(
        "end-to-end / bare session.run = {:.3}   ({:.1} frames/s end to end)",
        r.ratio, r.fps
    );
    if let Some(x) = &r.reduced {
        println!(
            "reduced JPEG decoding (to {}): decode {:.3} ms, preprocess {:.3} ms, end-to-end {:.3} ms (p90 {:.3}) = {:.3} x bare",
            x.decoded,
            x.decode.median,
            x.preprocess.median,
            x.end_to_end.median,
            x.end_to_end.p90,
            x.ratio
        );
    }
    if let Some(p) = &r.pipeline {
        println!(
            "frames/s over {} frames: 1 / bare {:.1}, serial {:.1}, pipelined {:.1} = {:.3} x (1 / bare)",
            r.runs, p.bare_fps, p.serial_fps, p.pipelined_fps, p.pipelined_ratio
        );
        if let (Some(s), Some(f), Some(x)) = (
            p.reduced_serial_fps,
            p.reduced_pipelined_fps,
            p.reduced_pipelined_ratio,
        ) {
            println!(
                "  with reduced JPEG decoding: serial {s:.1}, pipelined {f:.1} = {x:.3} x (1 / bare)"
            );
        }
    }
    if let Some(t) = r.batch_throughput {
        println!(
            "batch of {}: {t:.1} images/s (inference + post-processing)",
            r.batch
        );
    }
}

/// One end-to-end pass: decode, preprocess, inference, post-processing and the total, in ms.
fn pass(
    engine: &crate::engine::Engine,
    bytes: &[u8],
    reduced: bool,
    vocab: &crate::engine::Vocabulary,
    params: &crate::engine::postprocess::DetectParams,
) -> Result<[f64; 5]> {
    let t0 = Instant::now();
    let decoded = engine.decode_with(bytes, reduced)?;
    let decode = ms(t0);
    let t1 = Instant::now();
    let prepared = engine.prepare_decoded(&decoded)?;
    let preprocess = ms(t1);
    let t2 = Instant::now();
    let raw = engine.infer(&[&prepared], vocab)?;
    let inference = ms(t2);
    let t3 = Instant::now();
    let dets = engine.finish(&raw, 0, &prepared.letterbox, vocab, params);
    let postprocess = ms(t3);
    let total = ms(t0);
    std::hint::black_box(dets);
    Ok([decode, preprocess, inference, postprocess, total])
}
