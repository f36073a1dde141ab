//! What the subcommands share: loading the engine and the vocabulary store, choosing a vocabulary.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::config::Settings;
use crate::engine::{Engine, EngineOptions};
use crate::runtime::Runtime;
use crate::vocab::Vocabulary;
use crate::vocab_spec::VocabSpec;
use crate::vocab_store::VocabStore;

/// How a command names its vocabulary (at most one source; none: the bundle's default).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VocabArgs {
    /// Class names: `,` between classes, `|` between synonyms ("dog, puppy|pup, red car").
    #[arg(long, conflicts_with_all = ["vocab", "vocabulary"])]
    pub classes: Option<String>,
    /// Prompt template applied to every phrase, e.g. "a photo of a {}".
    #[arg(long, default_value = "{}")]
    pub template: String,
    /// A named or built-in vocabulary (coco, lvis, objects365).
    #[arg(long, conflicts_with = "vocab")]
    pub vocabulary: Option<String>,
    /// Precomputed embeddings: `.npz` (names + joint or text) or `.npy` [K, T] (+ --names).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Names for a `.npy` --vocab, one per line [default: FILE.txt].
    #[arg(long, requires = "vocab")]
    pub names: Option<PathBuf>,
}

/// Loads ONNX Runtime and the configured bundle.
pub fn load_engine(settings: &Settings) -> Result<Arc<Engine>> {
    let runtime = Runtime::init(&settings.runtime)?;
    let engine = Engine::load(
        &runtime,
        &settings.model.dir,
        EngineOptions {
            limits: settings.limits,
        },
    )?;
    Ok(Arc::new(engine))
}

/// The engine plus the vocabulary store over it.
pub fn load_store(settings: &Settings) -> Result<Arc<VocabStore>> {
    let engine = load_engine(settings)?;
    let store = VocabStore::open(engine, settings.vocabulary.clone())?;
    for e in store.load_errors() {
        eprintln!("warning: skipped vocabulary file {e}");
    }
    Ok(Arc::new(store))
}

/// The vocabulary a command asked for, else the bundle's default one.
pub fn vocabulary(store: &VocabStore, args: &VocabArgs) -> Result<Arc<Vocabulary>> {
    if let Some(path) = &args.vocab {
        return Ok(store.from_file(path, args.names.as_deref(), None)?);
    }
    if let Some(classes) = &args.classes {
        let mut spec = VocabSpec::parse_list(classes);
        spec.template = args.template.clone();
        return Ok(store.build(&spec, None)?);
    }
    if let Some(name) = &args.vocabulary {
        return Ok(store.resolve(name)?);
    }
    store.default_vocabulary().map_err(|e| {
        anyhow::anyhow!("{e}: pass --classes \"a, b\", --vocabulary NAME or --vocab FILE")
    })
}
