//! `dosod eval`: the engine over a COCO-format dataset, scored with COCO's box AP.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::config::Settings;
use crate::engine::letterbox::Letterbox;
use crate::engine::pipeline::pipelined;
use crate::engine::{Engine, Prepared, RawOutputs};
use crate::eval::coco::{Category, Dataset, DetectionResult, Evaluation, Summary, evaluate};
use crate::service::open_store;
use crate::vocab::spec::{Synonyms, VocabSpec};

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// COCO-format annotations (images, annotations, categories).
    #[arg(long)]
    pub annotations: PathBuf,
    /// Directory the images' `file_name`s are relative to (not needed with --detections).
    #[arg(long, required_unless_present = "detections")]
    pub images: Option<PathBuf>,
    /// Categories to detect and score, by name: "dog face, pizza" [default: all].
    #[arg(long, conflicts_with = "where_")]
    pub classes: Option<String>,
    /// Categories to detect and score, by a field of the category: `split=unseen`.
    #[arg(long = "where", value_name = "KEY=VALUE")]
    pub where_: Option<String>,
    /// Also report AP per value of this category field (e.g. `split`: seen / unseen).
    #[arg(long)]
    pub group_by: Option<String>,
    /// Prompt template for the category names.
    #[arg(long, default_value = "{}")]
    pub template: String,
    /// `official`: the DOSOD / YOLO-World evaluation settings (NMS IoU 0.7, scores down to
    /// 0.001, 300 boxes per image, multi-label, each class embedded from its first phrase);
    /// `bundle`: NMS IoU from the bundle, synonyms averaged.
    #[arg(long, value_enum, default_value_t = Protocol::Bundle)]
    pub protocol: Protocol,
    /// The class texts, one phrase list per category of the annotations in their order: a JSON
    /// file like the official `lvis_v1_class_texts.json`, or a built-in vocabulary (`lvis`,
    /// `objects365`, `coco`) [default: the category names].
    #[arg(long)]
    pub texts: Option<String>,
    /// How a class's phrases make its embedding [default: first with `--protocol official`,
    /// else mean].
    #[arg(long, value_enum)]
    pub synonyms: Option<Synonyms>,
    /// Score an existing COCO results file instead of running the model.
    #[arg(long)]
    pub detections: Option<PathBuf>,
    /// Write the detections (COCO results format) here.
    #[arg(long)]
    pub save_detections: Option<PathBuf>,
    /// Write the full report (summary, groups, per-class AP) as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Minimum score kept (COCO evaluation wants low-scored detections too).
    #[arg(long, default_value_t = 0.001)]
    pub score_threshold: f32,
    /// NMS IoU threshold [default: 0.7 with `--protocol official`, else the bundle's].
    #[arg(long)]
    pub iou_threshold: Option<f32>,
    /// Detections kept per image (mmyolo's `max_per_img` for YOLOv8 / YOLO-World evaluation;
    /// COCOeval then scores at most 100 per image and class).
    #[arg(long, default_value_t = 300)]
    pub max_detections: usize,
    /// One class per anchor (the default, as mmyolo evaluates, lets an anchor report several).
    #[arg(long)]
    pub single_label: bool,
    /// Images per detector run.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Evaluate only the first N images (by id).
    #[arg(long)]
    pub max_images: Option<usize>,
}

/// Which evaluation settings `dosod eval` starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Bundle,
    Official,
}

/// The official evaluation's NMS IoU (mmyolo's `test_cfg` in the DOSOD / YOLO-World configs).
pub const OFFICIAL_IOU: f32 = 0.7;

/// The settings an evaluation ran with, as the report states them.
#[derive(Debug, Serialize)]
struct EvalSettings {
    protocol: Protocol,
    score_threshold: f32,
    iou_threshold: Option<f32>,
    max_detections: usize,
    multi_label: bool,
    synonyms: Synonyms,
    texts: Option<String>,
}

impl EvalArgs {
    fn iou_threshold(&self) -> Option<f32> {
        match self.protocol {
            Protocol::Official => Some(self.iou_threshold.unwrap_or(OFFICIAL_IOU)),
            Protocol::Bundle => self.iou_threshold,
        }
    }

    fn synonyms(&self) -> Synonyms {
        self.synonyms.unwrap_or(match self.protocol {
            Protocol::Official => Synonyms::First,
            Protocol::Bundle => Synonyms::Mean,
        })
    }

    fn settings(&self) -> EvalSettings {
        EvalSettings {
            protocol: self.protocol,
            score_threshold: self.score_threshold,
            iou_threshold: self.iou_threshold(),
            max_detections: self.max_detections,
            multi_label: !self.single_label,
            synonyms: self.synonyms(),
            texts: self.texts.clone(),
        }
    }
}

#[derive(Serialize)]
struct ClassReport {
    id: u64,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    ground_truth: usize,
    ap: f64,
    ap50: f64,
}

#[derive(Serialize)]
struct GroupReport {
    value: String,
    classes: usize,
    summary: Summary,
}

#[derive(Serialize)]
struct Report {
    annotations: PathBuf,
    images: usize,
    classes: usize,
    detections: usize,
    seconds: f64,
    settings: EvalSettings,
    summary: Summary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    groups: Vec<GroupReport>,
    per_class: Vec<ClassReport>,
}

pub fn run(settings: &Settings, args: &EvalArgs) -> Result<std::process::ExitCode> {
    let text = std::fs::read_to_string(&args.annotations)
        .with_context(|| format!("reading {}", args.annotations.display()))?;
    let mut dataset: Dataset = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a COCO dataset", args.annotations.display()))?;
    dataset.images.sort_by_key(|i| i.id);
    if let Some(n) = args.max_images {
        dataset.images.truncate(n);
        let keep: std::collections::HashSet<u64> = dataset.images.iter().map(|i| i.id).collect();
        dataset.annotations.retain(|a| keep.contains(&a.image_id));
    }
    let selected = select_categories(&dataset.categories, args)?;
    let ids: Vec<u64> = selected.iter().map(|c| c.id).collect();

    let start = Instant::now();
    let (results, detect_seconds) = match &args.detections {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let results: Vec<DetectionResult> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a COCO results list", path.display()))?;
            let known: std::collections::HashSet<u64> =
                dataset.images.iter().map(|i| i.id).collect();
            if let Some(r) = results.iter().find(|r| !known.contains(&r.image_id)) {
                bail!(
                    "{} has detections for image {} which is not in {}",
                    path.display(),
                    r.image_id,
                    args.annotations.display()
                );
            }
            (results, start.elapsed().as_secs_f64())
        }
        None => {
            let images_dir = args.images.as_deref().expect("clap requires --images");
            run_engine(settings, args, &dataset, &selected, images_dir)?
        }
    };
    if let Some(path) = &args.save_detections {
        std::fs::write(path, serde_json::to_vec(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }

    let evaluation = evaluate(&dataset, &results, &ids);
    let report = build_report(
        args,
        &dataset,
        &selected,
        &results,
        &evaluation,
        detect_seconds,
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match print_report(
        &mut std::io::stdout().lock(),
        &report,
        args.detections.is_none(),
    ) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(std::process::ExitCode::SUCCESS),
    }
}

/// The categories named by --classes / --where (all by default), in dataset order.
fn select_categories(categories: &[Category], args: &EvalArgs) -> Result<Vec<Category>> {
    if categories.is_empty() {
        bail!("{} has no categories", args.annotations.display());
    }
    let selected: Vec<Category> = if let Some(list) = &args.classes {
        let by_name: HashMap<&str, &Category> =
            categories.iter().map(|c| (c.name.as_str(), c)).collect();
        let mut out = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name.contains('|') {
                bail!("--classes: \"{name}\": name categories, not synonyms");
            }
            match by_name.get(name) {
                Some(c) if out.iter().any(|o: &Category| o.id == c.id) => {
                    bail!("--classes: \"{name}\" is given twice")
                }
                Some(c) => out.push((*c).clone()),
                None => bail!(
                    "--classes: \"{name}\" is not a category of {}",
                    args.annotations.display()
                ),
            }
        }
        out
    } else if let Some(cond) = &args.where_ {
        let (key, value) = cond
            .split_once('=')
            .with_context(|| format!("--where wants KEY=VALUE, got \"{cond}\""))?;
        categories
            .iter()
            .filter(|c| c.field(key.trim()).as_deref() == Some(value.trim()))
            .cloned()
            .collect()
    } else {
        categories.to_vec()
    };
    if selected.is_empty() {
        bail!("no category of {} matches", args.annotations.display());
    }
    Ok(selected)
}

fn run_engine(
    settings: &Settings,
    args: &EvalArgs,
    dataset: &Dataset,
    selected: &[Category],
    images_dir: &Path,
) -> Result<(Vec<DetectionResult>, f64)> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let store = open_store(settings)?;
    let engine = store.engine().clone();
    let texts = match &args.texts {
        None => selected.iter().map(|c| vec![c.name.clone()]).collect(),
        Some(source) => {
            let all = class_texts(&store, source)?;
            if all.len() != dataset.categories.len() {
                bail!(
                    "--texts {source}: {} phrase lists for {} categories",
                    all.len(),
                    dataset.categories.len()
                );
            }
            let index: HashMap<u64, usize> = dataset
                .categories
                .iter()
                .enumerate()
                .map(|(i, c)| (c.id, i))
                .collect();
            selected.iter().map(|c| all[index[&c.id]].clone()).collect()
        }
    };
    let mut spec = VocabSpec::from_phrase_lists(texts);
    spec.template = args.template.clone();
    spec.synonyms = args.synonyms();
    // The official first-phrase LVIS list names five pairs of categories alike.
    spec.allow_repeats = true;
    let vocab = store
        .build(&spec, None)
        .context("building the vocabulary from the category names")?;
    let params = engine.default_params().overridden(
        Some(args.score_threshold),
        args.iou_threshold(),
        Some(args.max_detections),
        Some(!args.single_label),
    )?;

    let progress = indicatif::ProgressBar::new(dataset.images.len() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} images {per_sec} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    // Three stages on three threads: a helper reads, decodes and letterboxes the next images,
    // this thread runs the detector, another thresholds, suppresses and maps back the boxes of
    // the batch before (at evaluation settings, NMS over every class is not small).
    let mut batch: Vec<(u64, Prepared)> = Vec::with_capacity(args.batch);
    let engine_ref: &Engine = &engine;
    let prepare = |info: &crate::eval::coco::ImageInfo| -> Result<(u64, Prepared)> {
        let path = images_dir.join(&info.file_name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let prepared = engine_ref
            .decode_for_detection(&bytes)
            .and_then(|d| engine_ref.prepare_decoded(&d))
            .with_context(|| format!("decoding {}", path.display()))?;
        Ok((info.id, prepared))
    };
    // Timed from the first image read to the last detection (model and vocabulary already loaded).
    let start = Instant::now();
    let results = std::thread::scope(|scope| -> Result<Vec<DetectionResult>> {
        let (to_post, inferred) = mpsc::sync_channel::<(Vec<(u64, Letterbox)>, RawOutputs)>(2);
        let (vocab_ref, params_ref, progress_ref) = (&vocab, &params, &progress);
        let post = scope.spawn(move || {
            let mut results = Vec::new();
            for (items, raw) in inferred {
                for (i, (image_id, letterbox)) in items.iter().enumerate() {
                    for d in engine_ref.finish(&raw, i, letterbox, vocab_ref, params_ref) {
                        let [x1, y1, x2, y2] = d.bbox.map(f64::from);
                        results.push(DetectionResult {
                            image_id: *image_id,
                            category_id: selected[d.class_id].id,
                            bbox: [x1, y1, x2 - x1, y2 - y1],
                            score: f64::from(d.score),
                        });
                    }
                }
                progress_ref.inc(items.len() as u64);
            }
            results
        });
        let run_batch = |batch: &mut Vec<(u64, Prepared)>| -> Result<()> {
            let refs: Vec<&Prepared> = batch.iter().map(|(_, p)| p).collect();
            let raw = engine_ref.infer(&refs, &vocab)?;
            let items = batch.drain(..).map(|(id, p)| (id, p.letterbox)).collect();
            to_post
                .send((items, raw))
                .map_err(|_| anyhow::anyhow!("the post-processing thread stopped"))
        };
        pipelined(&dataset.images, 2 * args.batch, prepare, |item| {
            batch.push(item?);
            if batch.len() == args.batch {
                run_batch(&mut batch)?;
            }
            Ok::<_, anyhow::Error>(())
        })?;
        if !batch.is_empty() {
            run_batch(&mut batch)?;
        }
        drop(to_post);
        post.join()
            .map_err(|_| anyhow::anyhow!("the post-processing thread panicked"))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    progress.finish_and_clear();
    Ok((results, seconds))
}

/// Phrase lists per category: a built-in vocabulary's, or a JSON file of phrase lists.
fn class_texts(store: &crate::vocab::store::VocabStore, source: &str) -> Result<Vec<Vec<String>>> {
    let path = Path::new(source);
    if !path.exists()
        && let Ok(spec) = store.spec(source)
    {
        return Ok(spec.classes.iter().map(|c| c.phrases().to_vec()).collect());
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("--texts {source}"))?;
    serde_json::from_str(&text)
        .with_context(|| format!("--texts {source}: expected a JSON list of phrase lists"))
}

fn build_report(
    args: &EvalArgs,
    dataset: &Dataset,
    selected: &[Category],
    results: &[DetectionResult],
    evaluation: &Evaluation,
    seconds: f64,
) -> Report {
    let by_id: HashMap<u64, &Category> = selected.iter().map(|c| (c.id, c)).collect();
    let group_of = |c: &Category| args.group_by.as_ref().and_then(|k| c.field(k));
    let per_class: Vec<ClassReport> = evaluation
        .category_ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            let c = by_id[id];
            let (ap, ap50) = evaluation.class_ap(k);
            ClassReport {
                id: *id,
                name: c.name.clone(),
                group: group_of(c),
                ground_truth: evaluation.gt_counts[k],
                ap,
                ap50,
            }
        })
        .collect();
    let mut groups: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    if args.group_by.is_some() {
        for c in selected {
            let value = group_of(c).unwrap_or_else(|| "(none)".into());
            groups.entry(value).or_default().push(c.id);
        }
    }
    Report {
        annotations: args.annotations.clone(),
        images: dataset.images.len(),
        classes: selected.len(),
        detections: results.len(),
        seconds,
        settings: args.settings(),
        summary: evaluation.summary(),
        groups: groups
            .into_iter()
            .map(|(value, ids)| GroupReport {
                classes: ids.len(),
                summary: evaluation.summary_for(&ids),
                value,
            })
            .collect(),
        per_class,
    }
}

fn print_report(out: &mut impl Write, report: &Report, ran_model: bool) -> std::io::Result<()> {
    let rate = if ran_model && report.seconds > 0.0 {
        format!(
            ", {:.1} s, {:.1} images/s",
            report.seconds,
            report.images as f64 / report.seconds
        )
    } else {
        String::new()
    };
    writeln!(
        out,
        "{} images, {} classes, {} detections{rate}",
        report.images, report.classes, report.detections
    )?;
    for line in report.summary.lines() {
        writeln!(out, "{line}")?;
    }
    if !report.groups.is_empty() {
        writeln!(out, "\nby group:")?;
        for g in &report.groups {
            writeln!(
                out,
                "  {:<20} {:>4} classes  AP {:.3}  AP50 {:.3}  AP75 {:.3}  AR100 {:.3}",
                g.value, g.classes, g.summary.ap, g.summary.ap50, g.summary.ap75, g.summary.ar100
            )?;
        }
    }
    writeln!(
        out,
        "\nper class (AP@[.5:.95], AP@.5, ground-truth boxes; -1: no ground truth):"
    )?;
    for c in &report.per_class {
        let group = c
            .group
            .as_deref()
            .map(|g| format!(" [{g}]"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {:>6.3} {:>6.3} {:>5}  {}{group}",
            c.ap, c.ap50, c.ground_truth, c.name
        )?;
    }
    Ok(())
}
