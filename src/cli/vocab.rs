//! `dosod vocab`: encode vocabularies to files, manage named ones, and time building them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::bench::Stat;
use crate::config::Settings;
use crate::engine::ms;
use crate::service::open_store;
use crate::vocab::import::{VocabArchive, write_npz};
use crate::vocab::spec::{Synonyms, VocabSpec};

#[derive(Debug, clap::Subcommand)]
pub enum VocabCommand {
    /// Encode classes to a `.npz` (names + joint matrix) usable with `detect --vocab`.
    Encode(EncodeArgs),
    /// List named and built-in vocabularies.
    List,
    /// Create or replace a named vocabulary (persisted in the vocabulary store: data/ or Redis).
    Put(PutArgs),
    /// Delete a named vocabulary.
    Delete { name: String },
    /// Time building vocabularies: COCO cold and warm, LVIS cold.
    Bench(VocabBenchArgs),
}

/// Where the classes come from: a list on the command line or a file.
#[derive(Debug, clap::Args)]
pub struct SpecArgs {
    /// `,` between classes, `|` between synonyms.
    #[arg(long, conflicts_with = "file")]
    pub classes: Option<String>,
    /// JSON: `{"classes": [...], "template": "..."}`, or an LVIS-style `[["a", "b"], ...]`;
    /// any other file: one class per line, `|` between synonyms.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Prompt template (overrides the file's).
    #[arg(long)]
    pub template: Option<String>,
    /// How a class's synonyms make its embedding (overrides the file's) [default: mean].
    #[arg(long, value_enum)]
    pub synonyms: Option<Synonyms>,
    /// Keep classes that repeat another's phrases (the official first-phrase LVIS list);
    /// their labels get an occurrence number (`bow (2)`).
    #[arg(long)]
    pub allow_repeats: bool,
}

impl SpecArgs {
    fn spec(&self) -> Result<VocabSpec> {
        let mut spec = match (&self.classes, &self.file) {
            (Some(c), _) => VocabSpec::parse_list(c),
            (None, Some(f)) => {
                let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
                parse_file(&text).with_context(|| f.display().to_string())?
            }
            (None, None) => bail!("pass --classes or --file"),
        };
        if let Some(t) = &self.template {
            spec.template = t.clone();
        }
        spec.synonyms = self.synonyms.unwrap_or(spec.synonyms);
        spec.allow_repeats |= self.allow_repeats;
        Ok(spec)
    }
}

fn parse_file(text: &str) -> Result<VocabSpec> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        return Ok(serde_json::from_str(text)?);
    }
    if trimmed.starts_with('[') {
        let lists: Vec<Vec<String>> = serde_json::from_str(text)?;
        return Ok(VocabSpec::from_phrase_lists(lists));
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Ok(VocabSpec::parse_list(&lines.join(",")))
}

#[derive(Debug, clap::Args)]
pub struct EncodeArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Output `.npz`.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PutArgs {
    pub name: String,
    #[command(flatten)]
    pub spec: SpecArgs,
}

#[derive(Debug, clap::Args)]
pub struct VocabBenchArgs {
    /// Timed repetitions of each measurement.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    encoder: String,
    coco_classes: usize,
    coco_cold_ms: Stat,
    coco_warm_ms: Stat,
    /// the same list again: found by hash, nothing encoded
    coco_repeat_ms: Stat,
    lvis_classes: usize,
    lvis_cold_ms: Stat,
}

pub fn run(settings: &Settings, cmd: &VocabCommand) -> Result<std::process::ExitCode> {
    let store = open_store(settings)?;
    match cmd {
        VocabCommand::Encode(a) => {
            let spec = a.spec.spec()?;
            let vocab = store.build(&spec, None)?;
            write_npz(
                &a.out,
                &VocabArchive {
                    names: vocab.labels.clone(),
                    joint: Some(vocab.joint.clone()),
                    text: None,
                },
            )?;
            println!(
                "{}",
                serde_json::json!({"out": a.out, "classes": vocab.len(), "dim": vocab.joint.ncols(), "hash": vocab.hash})
            );
        }
        VocabCommand::List => {
            for v in store.list() {
                println!("{}", serde_json::to_string(&v)?);
            }
        }
        VocabCommand::Put(a) => {
            let vocab = store.put(&a.name, a.spec.spec()?)?;
            println!(
                "{}",
                serde_json::json!({"name": a.name, "classes": vocab.len(), "hash": vocab.hash})
            );
        }
        VocabCommand::Delete { name } => {
            if !store.delete(name)? {
                bail!("unknown vocabulary `{name}`");
            }
        }
        VocabCommand::Bench(a) => {
            anyhow::ensure!(a.runs > 0, "--runs must be at least 1");
            let coco = store.spec("coco")?;
            // Every synonym encoded (mean), the heavier case the documented figures time.
            let mut lvis = store.spec("lvis")?;
            lvis.synonyms = Synonyms::Mean;
            let time = |spec: &VocabSpec, cold: bool| -> Result<Vec<f64>> {
                // one untimed build so the sessions are warm either way
                store.clear_caches();
                store.build(spec, None)?;
                let mut out = Vec::new();
                for _ in 0..a.runs {
                    store.clear_caches();
                    if !cold {
                        // phrases cached, vocabulary not: the path of a new list of known words
                        store.build(spec, None)?;
                        store.clear_built();
                    }
                    let t = Instant::now();
                    store.build(spec, None)?;
                    out.push(ms(t));
                }
                Ok(out)
            };
            let report = BenchReport {
                encoder: store
                    .text_encoder()
                    .map_or("none".into(), |e| e.config().name.clone()),
                coco_classes: coco.classes.len(),
                coco_cold_ms: Stat::of(&time(&coco, true)?),
                coco_warm_ms: Stat::of(&time(&coco, false)?),
                coco_repeat_ms: {
                    store.build(&coco, None)?;
                    let mut out = Vec::new();
                    for _ in 0..a.runs {
                        let t = Instant::now();
                        store.build(&coco, None)?;
                        out.push(ms(t));
                    }
                    Stat::of(&out)
                },
                lvis_classes: lvis.classes.len(),
                lvis_cold_ms: Stat::of(&time(&lvis, true)?),
            };
            if a.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!("text encoder {}", report.encoder);
                for (what, s) in [
                    (
                        format!("COCO-{} cold", report.coco_classes),
                        report.coco_cold_ms,
                    ),
                    (
                        format!("COCO-{} warm", report.coco_classes),
                        report.coco_warm_ms,
                    ),
                    (
                        format!("COCO-{} again", report.coco_classes),
                        report.coco_repeat_ms,
                    ),
                    (
                        format!("LVIS-{} cold", report.lvis_classes),
                        report.lvis_cold_ms,
                    ),
                ] {
                    println!(
                        "{what:<16} median {:>10.4} ms   p90 {:>10.4} ms",
                        s.median, s.p90
                    );
                }
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
