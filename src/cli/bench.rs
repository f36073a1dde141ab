//! `dosod bench`: per-stage latency of the pipeline against the bare `session.run`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{EmbeddingsArgs, vocabulary};
use crate::config::Settings;
use crate::engine::ms;
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
    /// images/s of `infer` + post-processing on batches of `batch` prepared images
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_throughput: Option<f64>,
    batch: usize,
}

pub fn run(settings: &Settings, args: &BenchArgs) -> Result<std::process::ExitCode> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let store = open_store(settings)?;
    let engine = store.engine().clone();
    let vocab = vocabulary(&store, &args.options, &args.embeddings)?;
    let params = args.options.params(engine.default_params())?;
    let bytes = std::fs::read(&args.image).with_context(|| format!("{}", args.image.display()))?;
    let reference = engine.prepare(&engine.decode(&bytes)?)?;

    let mut stages: [Vec<f64>; 6] = Default::default();
    for i in 0..args.warmup + args.runs {
        let t0 = Instant::now();
        let img = engine.decode(&bytes)?;
        let decode = ms(t0);
        let t1 = Instant::now();
        let prepared = engine.prepare(&img)?;
        let preprocess = ms(t1);
        let t2 = Instant::now();
        let raw = engine.infer(&[&prepared], &vocab)?;
        let inference = ms(t2);
        let t3 = Instant::now();
        let dets = engine.finish(&raw, 0, &prepared.letterbox, &vocab, &params);
        let postprocess = ms(t3);
        let total = ms(t0);
        std::hint::black_box(dets);
        let bare = engine.time_session_run(&reference, &vocab)?.as_secs_f64() * 1e3;
        if i >= args.warmup {
            for (v, s) in [decode, preprocess, inference, postprocess, total, bare]
                .into_iter()
                .zip(stages.iter_mut())
            {
                s.push(v);
            }
        }
    }
    let [decode, preprocess, inference, postprocess, end_to_end, bare] =
        stages.map(|s| Stat::of(&s));
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
        runs: args.runs,
        decode,
        preprocess,
        inference,
        postprocess,
        end_to_end,
        bare_session_run: bare,
        ratio: end_to_end.median / bare.median,
        fps: 1e3 / end_to_end.median,
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
        "model {} ({}), {} classes, {} threads, {}, {} runs, image {}",
        r.model,
        r.input,
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
    if let Some(t) = r.batch_throughput {
        println!(
            "batch of {}: {t:.1} images/s (inference + post-processing)",
            r.batch
        );
    }
}
