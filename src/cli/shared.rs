//! What the subcommands share: loading the engine and choosing the vocabulary.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config::Settings;
use crate::engine::{Engine, EngineOptions};
use crate::runtime::Runtime;
use crate::vocab::{TextEmbeddings, Vocabulary};

/// How a command names its vocabulary.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VocabArgs {
    /// Comma-separated class names (needs the bundle's text encoder).
    #[arg(long, conflicts_with = "vocab")]
    pub classes: Option<String>,
    /// Precomputed text embeddings: a `.npy` [K, T] file (names from --names or FILE.txt).
    #[arg(long)]
    pub vocab: Option<PathBuf>,
    /// Names for --vocab, one per line.
    #[arg(long, requires = "vocab")]
    pub names: Option<PathBuf>,
}

/// Loads ONNX Runtime and the configured bundle.
pub fn load_engine(settings: &Settings) -> Result<Engine> {
    let runtime = Runtime::init(&settings.runtime)?;
    let engine = Engine::load(
        &runtime,
        &settings.model.dir,
        EngineOptions {
            limits: settings.limits,
        },
    )?;
    Ok(engine)
}

/// The vocabulary a command asked for, else the bundle's default one.
pub fn vocabulary(engine: &Engine, args: &VocabArgs) -> Result<Vocabulary> {
    if let Some(npy) = &args.vocab {
        let emb = TextEmbeddings::load(npy, args.names.as_deref())?;
        return Ok(engine.vocabulary_from_embeddings(&emb, None)?);
    }
    if let Some(classes) = &args.classes {
        let labels: Vec<String> = classes.split(',').map(|s| s.trim().to_string()).collect();
        crate::vocab::validate_labels(&labels)?;
        bail!(
            "--classes needs a text encoder, which model `{}` does not provide; pass --vocab FILE.npy",
            engine.manifest().model.name
        );
    }
    let bundle = engine.bundle();
    match &bundle.manifest.default_vocabulary {
        Some(d) if d.embeddings.is_some() => {
            let npy = bundle.path(d.embeddings.as_deref().unwrap_or_default());
            let names = d.names.as_deref().map(|n| bundle.path(n));
            let emb = TextEmbeddings::load(&npy, names.as_deref())
                .with_context(|| format!("default vocabulary of {}", bundle.dir.display()))?;
            Ok(engine.vocabulary_from_embeddings(&emb, Some("default".into()))?)
        }
        _ => bail!("no vocabulary given: pass --classes \"a, b\" or --vocab FILE.npy"),
    }
}
