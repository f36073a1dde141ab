//! Vocabularies at run time: the phrase-embedding cache, the registry by name and by hash,
//! built-in vocabularies, and persistence of named ones.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::engine::error::{EngineError, Result};
use crate::vocab::encoder::TextEncoder;
use crate::vocab::spec::{Classes, Synonyms, VocabLimits, VocabLimitsArgs, VocabSpec};
use crate::vocab::{TextEmbeddings, Vocabulary};

/// Names of the built-in vocabularies and their files under `builtin_dir`.
pub const BUILTINS: [(&str, &str); 3] = [
    ("coco", "coco_class_texts.json"),
    ("lvis", "lvis_v1_class_texts.json"),
    ("objects365", "obj365v1_class_texts.json"),
];

section! {
    /// `[vocabulary]`: caches, persistence and built-in vocabularies.
    pub struct VocabOptions, flags VocabOptionsArgs (global = true) {
        /// Memory cap of the phrase-embedding cache, in bytes.
        cache_bytes: usize = 64 << 20 => "vocab-cache-bytes", "DOSOD_VOCAB_CACHE_BYTES";
        /// Built vocabularies kept by hash (unnamed ones from requests).
        max_built: usize = 64 => "max-built-vocabularies", "DOSOD_MAX_BUILT_VOCABULARIES";
        /// Where named vocabularies persist with `store = "file"` (DIR/vocabularies/NAME.json);
        /// empty: memory only.
        data_dir: PathBuf = PathBuf::from("data") => "data-dir", "DOSOD_DATA_DIR";
        /// `file` (named vocabularies in `data_dir`, one box), or `redis://[:PASSWORD@]HOST:PORT/DB`
        /// shared by every replica (docs/deploy.md).
        store: String = "file".into() => "vocab-store", "DOSOD_VOCAB_STORE", hide_env_values = true;
        /// With a Redis store: start even when Redis cannot be reached (a warning, and not ready
        /// until it answers) instead of failing.
        store_tolerate_unavailable: bool = false => "vocab-store-tolerate-unavailable", "DOSOD_VOCAB_STORE_TOLERATE_UNAVAILABLE";
        /// Directory of the built-in vocabulary files (coco, lvis, objects365).
        builtin_dir: PathBuf = PathBuf::from("configs/vocabularies") => "builtin-vocab-dir", "DOSOD_BUILTIN_VOCAB_DIR";
    }
    sections {
        limits: VocabLimits, VocabLimitsArgs;
    }
}

impl VocabOptions {
    /// Where named vocabularies persist, if anywhere.
    pub fn data_dir(&self) -> Option<&Path> {
        Some(self.data_dir.as_path()).filter(|d| !d.as_os_str().is_empty())
    }
}

/// Where named vocabularies persist: what `[vocabulary] store` and `data_dir` say.
enum Backend {
    /// Nowhere: they live as long as the process.
    Memory,
    /// `DIR/vocabularies/NAME.json`, one file each, written atomically.
    File(PathBuf),
    /// One Redis hash that every replica follows.
    Redis(crate::vocab::redis::RedisStore),
}

/// The state of the named-vocabulary store, for `/health/ready` and `/v1/info`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreState {
    /// `memory`, `file` or `redis`.
    pub kind: &'static str,
    /// Whether named vocabularies can be served: false only for a Redis store that has never
    /// been loaded.
    pub ready: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    redis: Option<crate::vocab::redis::RedisState>,
}

impl StoreState {
    /// Whether a write would reach the store now (a file store: always; Redis: connected).
    pub fn writable(&self) -> bool {
        self.redis.as_ref().is_none_or(|r| r.connected)
    }

    /// Why the store is not ready, in words (`redis://…: Connection refused`).
    pub fn why_not_ready(&self) -> String {
        match &self.redis {
            Some(r) => format!(
                "the vocabulary store {} has not been loaded yet: {}",
                r.target,
                r.error.as_deref().unwrap_or("connecting")
            ),
            None => format!("the {} vocabulary store is not ready", self.kind),
        }
    }
}

/// Counters of the phrase cache.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

/// One line of `list()`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VocabSummary {
    pub name: String,
    pub classes: usize,
    pub builtin: bool,
    pub hash: String,
}

/// Which vocabulary a request asks for (see [`VocabStore::select`]). Every frontend turns its
/// own input — form fields, a JSON body, flags, a config section, a ROS parameter — into this.
#[derive(Debug, Clone, Default)]
pub struct VocabRequest {
    /// Class phrases; with `template` applied to each.
    pub classes: Option<Classes>,
    pub template: Option<String>,
    /// How synonyms combine, overriding the spec's rule (built-ins: `first`).
    pub synonyms: Option<Synonyms>,
    /// A named or built-in vocabulary.
    pub name: Option<String>,
    /// Precomputed embeddings (`.npz`, or `.npy` with `names`): trusted callers only (CLI).
    pub embeddings: Option<PathBuf>,
    pub names: Option<PathBuf>,
}

impl VocabRequest {
    /// From configuration text, where a blank value means "not set".
    pub fn from_settings(classes: &str, name: &str) -> VocabRequest {
        VocabRequest {
            classes: (!classes.trim().is_empty()).then(|| Classes::Text(classes.to_string())),
            name: (!name.is_empty()).then(|| name.to_string()),
            ..Default::default()
        }
    }
}

/// The file a named vocabulary persists as.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    name: String,
    #[serde(flatten)]
    spec: VocabSpec,
}

struct PhraseCache {
    map: LruCache<String, Arc<[f32]>>,
    bytes: usize,
    cap: usize,
}

impl PhraseCache {
    fn cost(phrase: &str, row: &[f32]) -> usize {
        phrase.len() + std::mem::size_of_val(row) + 64
    }

    fn insert(&mut self, phrase: String, row: Arc<[f32]>) {
        self.bytes += Self::cost(&phrase, &row);
        if let Some(old) = self.map.put(phrase.clone(), row) {
            self.bytes -= Self::cost(&phrase, &old);
        }
        while self.bytes > self.cap {
            match self.map.pop_lru() {
                Some((p, r)) => self.bytes -= Self::cost(&p, &r),
                None => break,
            }
        }
    }
}

/// Every vocabulary the process knows. Cheap to share (`Arc<VocabStore>`); all methods take
/// `&self`. A built `Arc<Vocabulary>` is immutable: replacing a name never disturbs a
/// detection holding the old one.
pub struct VocabStore {
    engine: Arc<Engine>,
    /// The bundle's text encoder, or why there is none (precomputed embeddings still work).
    text: std::result::Result<TextEncoder, String>,
    options: VocabOptions,
    scope: String,
    cache: Mutex<PhraseCache>,
    /// Joint-space rows of one-phrase classes, by templated phrase.
    joint_cache: Mutex<PhraseCache>,
    hits: AtomicU64,
    misses: AtomicU64,
    by_hash: Mutex<LruCache<String, Arc<Vocabulary>>>,
    named: crate::vocab::redis::Named,
    backend: Backend,
    /// Held by every write (put, delete) around its file change and its registry change.
    writes: Mutex<()>,
    load_errors: Vec<String>,
}

impl VocabStore {
    /// Opens the store and loads persisted named vocabularies; a corrupt file is reported
    /// (`load_errors`) and skipped.
    pub fn open(engine: Arc<Engine>, options: VocabOptions) -> Result<VocabStore> {
        let m = engine.manifest();
        let text = crate::vocab::encoder::load_for_bundle(engine.runtime(), engine.bundle())?;
        if let Err(why) = &text {
            tracing::info!(model = %m.model.name, "no text encoder: {why}");
        }
        let scope = format!(
            "{}/{}/{}",
            m.model.name, m.text_encoder.kind, m.text_encoder.name
        );
        let named = crate::vocab::redis::Named::default();
        let mut load_errors = Vec::new();
        let backend = match options.store.as_str() {
            "file" => match options.data_dir() {
                Some(dir) => {
                    let loaded = load_dir(&dir.join("vocabularies"), &options.limits)?;
                    load_errors = loaded.1;
                    *named.write().unwrap_or_else(|p| p.into_inner()) = loaded.0;
                    Backend::File(dir.to_path_buf())
                }
                None => Backend::Memory,
            },
            url if url.starts_with("redis://") => {
                Backend::Redis(crate::vocab::redis::RedisStore::open(
                    url,
                    options.store_tolerate_unavailable,
                    named.clone(),
                    options.limits,
                )?)
            }
            other => {
                return Err(EngineError::InvalidParameter(format!(
                    "[vocabulary] store `{}`: expected `file` or `redis://HOST:PORT/DB`",
                    crate::config::redact_url(other)
                )));
            }
        };
        let cache = PhraseCache {
            map: LruCache::unbounded(),
            bytes: 0,
            cap: options.cache_bytes,
        };
        let max_built = NonZeroUsize::new(options.max_built.max(1)).expect("positive");
        let joint_cache = PhraseCache {
            map: LruCache::unbounded(),
            bytes: 0,
            cap: options.cache_bytes,
        };
        Ok(VocabStore {
            engine,
            text,
            scope,
            cache: Mutex::new(cache),
            joint_cache: Mutex::new(joint_cache),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            by_hash: Mutex::new(LruCache::new(max_built)),
            named,
            backend,
            writes: Mutex::new(()),
            load_errors,
            options,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The bundle's text encoder, if it has a usable one.
    pub fn text_encoder(&self) -> Option<&TextEncoder> {
        self.text.as_ref().ok()
    }

    /// Embeds phrases with the bundle's text encoder: `[P, T]` rows for the adaptor.
    pub fn encode_text(&self, phrases: &[String]) -> Result<Array2<f32>> {
        match &self.text {
            Ok(enc) => enc.encode(phrases),
            Err(why) => Err(EngineError::Vocabulary(format!(
                "class names need a text encoder: {why}"
            ))),
        }
    }

    /// A vocabulary from precomputed text embeddings, through the bundle's adaptor.
    fn adapt_embeddings(&self, emb: &TextEmbeddings, name: Option<&str>) -> Result<Vocabulary> {
        emb.validate()?;
        let joint = self.engine.adapt(&emb.text)?;
        Ok(Vocabulary {
            name: name.map(str::to_string),
            labels: emb.labels.clone(),
            joint,
            hash: emb.hash(),
        })
    }

    pub fn limits(&self) -> &VocabLimits {
        &self.options.limits
    }

    /// Files that could not be loaded at start-up, with the reason.
    pub fn load_errors(&self) -> &[String] {
        &self.load_errors
    }

    pub fn cache_stats(&self) -> CacheStats {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: cache.map.len(),
            bytes: cache.bytes,
        }
    }

    /// Empties the phrase cache and the built vocabularies (benchmarks use it for cold runs).
    pub fn clear_caches(&self) {
        for cache in [&self.cache, &self.joint_cache] {
            let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.map.clear();
            cache.bytes = 0;
        }
        self.clear_built();
    }

    /// Forgets built vocabularies but keeps cached phrase embeddings.
    pub fn clear_built(&self) {
        self.by_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Builds (or finds) the vocabulary for a spec. Phrases already embedded are taken from
    /// the cache; the rest are encoded in one call; a spec seen before is not rebuilt at all.
    pub fn build(&self, spec: &VocabSpec, name: Option<&str>) -> Result<Arc<Vocabulary>> {
        spec.validate(&self.options.limits)?;
        let hash = spec.hash(&self.scope);
        if let Some(v) = self.lookup_built(&hash, name) {
            return Ok(v);
        }
        let prompts = spec.prompts();
        let encoder = self.text_encoder();
        let max_tokens = self
            .options
            .limits
            .max_phrase_tokens
            .min(encoder.map_or(usize::MAX, |e| e.config().max_length));
        // Cache look-ups, and the distinct phrases still to encode.
        let mut rows: Vec<Option<Arc<[f32]>>> = Vec::with_capacity(prompts.len());
        let mut missing: Vec<String> = Vec::new();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for (_, phrase) in &prompts {
                let hit = cache.map.get(phrase).cloned();
                if hit.is_none() && !missing.contains(phrase) {
                    missing.push(phrase.clone());
                }
                rows.push(hit);
            }
        }
        let hits = rows.iter().filter(|r| r.is_some()).count();
        self.hits.fetch_add(hits as u64, Ordering::Relaxed);
        self.misses
            .fetch_add((rows.len() - hits) as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            if let Some(enc) = encoder {
                for p in &missing {
                    let (ids, cut) = enc.tokenize(p)?;
                    if cut || ids.len() > max_tokens {
                        return Err(EngineError::Vocabulary(format!(
                            "phrase `{p}` is longer than {max_tokens} tokens"
                        )));
                    }
                }
            }
            let encoded = self.encode_text(&missing)?;
            let fresh: HashMap<&str, Arc<[f32]>> = missing
                .iter()
                .zip(encoded.outer_iter())
                .map(|(p, r)| (p.as_str(), Arc::from(r.to_vec())))
                .collect();
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            for (p, r) in &fresh {
                cache.insert((*p).to_string(), r.clone());
            }
            for (row, (_, phrase)) in rows.iter_mut().zip(&prompts) {
                if row.is_none() {
                    *row = fresh.get(phrase.as_str()).cloned();
                }
            }
        }
        // Class embedding: the re-normalised mean of its phrases' embeddings, through the
        // adaptor. A one-phrase class's joint row depends on that phrase alone, so it is cached
        // too: a vocabulary of known words then needs no model at all.
        let t = self.engine.manifest().embedding.text_dim;
        let d = self.engine.manifest().embedding.dim;
        let mut joint = Array2::<f32>::zeros((spec.classes.len(), d));
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); spec.classes.len()];
        for (j, (c, _)) in prompts.iter().enumerate() {
            by_class[*c].push(j);
        }
        let mut todo: Vec<usize> = Vec::new();
        {
            let mut cache = self.joint_cache.lock().unwrap_or_else(|p| p.into_inner());
            for (i, class) in spec.classes.iter().enumerate() {
                let cached = (spec.embedded_phrases(class).len() == 1)
                    .then(|| cache.map.get(&prompts[by_class[i][0]].1).cloned())
                    .flatten();
                match cached {
                    Some(row) => joint
                        .row_mut(i)
                        .assign(&ndarray::ArrayView1::from(&row[..])),
                    None => todo.push(i),
                }
            }
        }
        if !todo.is_empty() {
            let mut text = Array2::<f32>::zeros((todo.len(), t));
            for (k, &class) in todo.iter().enumerate() {
                let mut acc = text.row_mut(k);
                for &j in &by_class[class] {
                    let row = rows[j].as_ref().expect("every phrase is cached or encoded");
                    for (a, v) in acc.iter_mut().zip(row.iter()) {
                        *a += v;
                    }
                }
                let norm = acc.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                acc.mapv_inplace(|v| v / norm);
            }
            let adapted = self.engine.adapt(&text)?;
            let mut cache = self.joint_cache.lock().unwrap_or_else(|p| p.into_inner());
            for (k, &class) in todo.iter().enumerate() {
                joint.row_mut(class).assign(&adapted.row(k));
                if spec.embedded_phrases(&spec.classes[class]).len() == 1 {
                    let key = prompts[by_class[class][0]].1.clone();
                    cache.insert(key, Arc::from(adapted.row(k).to_vec()));
                }
            }
        }
        let vocab = Arc::new(Vocabulary {
            name: name.map(str::to_string),
            labels: spec.labels(),
            joint,
            hash: hash.clone(),
        });
        self.by_hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(hash, vocab.clone());
        Ok(vocab)
    }

    fn lookup_built(&self, hash: &str, name: Option<&str>) -> Option<Arc<Vocabulary>> {
        let mut built = self.by_hash.lock().unwrap_or_else(|p| p.into_inner());
        let found = built.get(hash)?.clone();
        if found.name.as_deref() == name {
            return Some(found);
        }
        // Same matrix, another name: share the embeddings, not the label.
        Some(Arc::new(Vocabulary {
            name: name.map(str::to_string),
            ..(*found).clone()
        }))
    }

    /// The vocabulary a request uses — the one place every frontend decides it: precomputed
    /// embeddings, else `classes` (with the template), else the named or built-in `name`, else
    /// `fallback` (a frontend's configured default) when not empty, else the bundle's default.
    /// Naming both classes and a vocabulary is refused.
    pub fn select(&self, req: &VocabRequest, fallback: &str) -> Result<Arc<Vocabulary>> {
        if let Some(path) = &req.embeddings {
            return self.from_file(path, req.names.as_deref(), None);
        }
        match (&req.classes, req.name.as_deref()) {
            (Some(_), Some(_)) => Err(EngineError::InvalidParameter(
                "give classes or a vocabulary name, not both".into(),
            )),
            (Some(classes), None) => {
                let mut spec = classes.spec(req.template.as_deref());
                spec.synonyms = req.synonyms.unwrap_or(spec.synonyms);
                self.build(&spec, None)
            }
            (None, Some(name)) => match req.synonyms {
                Some(rule) => {
                    let mut spec = self.spec(name)?;
                    spec.synonyms = rule;
                    self.build(&spec, Some(name))
                }
                None => self.resolve(name),
            },
            (None, None) if !fallback.is_empty() => self.resolve(fallback),
            (None, None) => self.default_vocabulary(),
        }
    }

    /// The vocabulary called `name`: a named one, else a built-in.
    pub fn resolve(&self, name: &str) -> Result<Arc<Vocabulary>> {
        let spec = self.spec(name)?;
        self.build(&spec, Some(name))
    }

    /// The spec of a named or built-in vocabulary.
    pub fn spec(&self, name: &str) -> Result<VocabSpec> {
        if let Some(spec) = self.read_named().get(name) {
            return Ok(spec.clone());
        }
        if let Some((_, file)) = BUILTINS.iter().find(|(n, _)| *n == name) {
            let path = self.options.builtin_dir.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| EngineError::io(&path, e))?;
            let lists: Vec<Vec<String>> = serde_json::from_str(&text)
                .map_err(|e| EngineError::Vocabulary(format!("{}: {e}", path.display())))?;
            // Built-ins follow the official protocol: each class embeds its first phrase.
            let mut spec = VocabSpec::from_phrase_lists(lists);
            spec.synonyms = Synonyms::First;
            return Ok(spec);
        }
        Err(EngineError::NotFound(format!(
            "unknown vocabulary `{name}`"
        )))
    }

    /// Creates or replaces a named vocabulary: built first (so a bad one changes nothing),
    /// then persisted atomically, then visible.
    pub fn put(&self, name: &str, spec: VocabSpec) -> Result<Arc<Vocabulary>> {
        validate_name(name)?;
        if BUILTINS.iter().any(|(n, _)| *n == name) {
            return Err(EngineError::Conflict(format!(
                "`{name}` is a built-in vocabulary and cannot be replaced"
            )));
        }
        let vocab = self.build(&spec, Some(name))?;
        let stored = Stored {
            name: name.to_string(),
            spec: spec.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&stored)
            .map_err(|e| EngineError::Vocabulary(e.to_string()))?;
        // The file and the registry change under one guard, so what is served is what a
        // restart reads back, whatever the interleaving of writers.
        let _writing = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        match &self.backend {
            Backend::Memory => {}
            Backend::File(dir) => {
                let file = format!("{name}.json");
                write_atomic(&dir.join("vocabularies"), &file, &bytes).map_err(|(path, e)| {
                    EngineError::storage(&format!("cannot save vocabulary `{name}`"), &path, &e)
                })?;
            }
            Backend::Redis(redis) => {
                // Redis orders writes: the store applies this one to the local copy by its
                // revision (a newer write from another replica is never undone).
                redis.save(name, &spec)?;
                return Ok(vocab);
            }
        }
        self.named
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), spec);
        Ok(vocab)
    }

    /// Removes a named vocabulary; `false` if there was none.
    pub fn delete(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        if BUILTINS.iter().any(|(n, _)| *n == name) {
            return Err(EngineError::Conflict(format!(
                "`{name}` is a built-in vocabulary and cannot be deleted"
            )));
        }
        let _writing = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if let Backend::Redis(redis) = &self.backend {
            // Redis decides whether it existed: this replica's copy may lag another's write.
            return redis.remove(name);
        }
        if !self.read_named().contains_key(name) {
            return Ok(false);
        }
        if let Backend::File(dir) = &self.backend {
            let vocabularies = dir.join("vocabularies");
            let path = vocabularies.join(format!("{name}.json"));
            let removed = match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                other => other.and_then(|()| std::fs::File::open(&vocabularies)?.sync_all()),
            };
            removed.map_err(|e| {
                EngineError::storage(&format!("cannot delete vocabulary `{name}`"), &path, &e)
            })?;
        }
        self.named
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        Ok(true)
    }

    /// Named vocabularies, then built-ins.
    pub fn list(&self) -> Vec<VocabSummary> {
        let mut out: Vec<VocabSummary> = self
            .read_named()
            .iter()
            .map(|(name, spec)| VocabSummary {
                name: name.clone(),
                classes: spec.classes.len(),
                builtin: false,
                hash: spec.hash(&self.scope),
            })
            .collect();
        for (name, _) in BUILTINS {
            if let Ok(spec) = self.spec(name) {
                out.push(VocabSummary {
                    name: name.to_string(),
                    classes: spec.classes.len(),
                    builtin: true,
                    hash: spec.hash(&self.scope),
                });
            }
        }
        out
    }

    /// The bundle's `[default_vocabulary]`: class phrases, or precomputed embeddings.
    pub fn default_vocabulary(&self) -> Result<Arc<Vocabulary>> {
        let bundle = self.engine.bundle();
        let Some(d) = &bundle.manifest.default_vocabulary else {
            return Err(EngineError::NotFound(format!(
                "model `{}` has no default vocabulary",
                bundle.manifest.model.name
            )));
        };
        if let Some(file) = &d.embeddings {
            let names = d.names.as_deref().map(|n| bundle.path(n));
            return self.from_file(&bundle.path(file), names.as_deref(), Some("default"));
        }
        let spec = VocabSpec::new(
            d.classes
                .iter()
                .cloned()
                .map(crate::vocab::spec::ClassSpec::One)
                .collect(),
        );
        self.build(&spec, Some("default"))
    }

    /// A vocabulary from precomputed embeddings: `.npy` `[K, T]` with a names file (default
    /// `FILE.txt`), or a `.npz` holding `names` and `joint` `[K, D]` (used as is) or `text`.
    pub fn from_file(
        &self,
        path: &Path,
        names: Option<&Path>,
        name: Option<&str>,
    ) -> Result<Arc<Vocabulary>> {
        let is_npz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
        let vocab = if is_npz {
            let a = crate::vocab::import::read_npz(path)?;
            crate::vocab::validate_labels(&a.names)?;
            match (a.joint, a.text) {
                (Some(joint), _) => {
                    if joint.nrows() != a.names.len() {
                        return Err(EngineError::Vocabulary(format!(
                            "{}: {} names but {} rows",
                            path.display(),
                            a.names.len(),
                            joint.nrows()
                        )));
                    }
                    let mut h = crate::vocab::Fnv64::new();
                    joint.iter().for_each(|v| h.write(&v.to_le_bytes()));
                    Vocabulary {
                        name: name.map(str::to_string),
                        labels: a.names,
                        joint,
                        hash: h.hex(),
                    }
                }
                (None, Some(text)) => self.adapt_embeddings(
                    &TextEmbeddings {
                        labels: a.names,
                        text,
                    },
                    name,
                )?,
                (None, None) => unreachable!("read_npz requires one of them"),
            }
        } else {
            let emb = TextEmbeddings::load(path, names)?;
            self.adapt_embeddings(&emb, name)?
        };
        Ok(Arc::new(vocab))
    }

    /// Where named vocabularies persist, and whether they can be served.
    pub fn store_state(&self) -> StoreState {
        match &self.backend {
            Backend::Memory => StoreState {
                kind: "memory",
                ready: true,
                redis: None,
            },
            Backend::File(_) => StoreState {
                kind: "file",
                ready: true,
                redis: None,
            },
            Backend::Redis(r) => {
                let state = r.state();
                StoreState {
                    kind: "redis",
                    ready: state.synced,
                    redis: Some(state),
                }
            }
        }
    }

    fn read_named(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, VocabSpec>> {
        self.named.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Names are 1–64 characters of `A-Z a-z 0-9 _ - .`, not starting with `.`: safe as file names.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidParameter(format!(
            "invalid vocabulary name {name:?}: use 1-64 of A-Z a-z 0-9 _ - . (not starting with .)"
        )))
    }
}

/// Every `NAME.json` of `dir` (absent: none), with the files that could not be read and why.
fn load_dir(
    dir: &Path,
    limits: &VocabLimits,
) -> Result<(BTreeMap<String, VocabSpec>, Vec<String>)> {
    let (mut named, mut errors) = (BTreeMap::new(), Vec::new());
    if !dir.is_dir() {
        return Ok((named, errors));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| EngineError::io(dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        match read_stored(&path, limits) {
            Ok(stored) => {
                named.insert(stored.name, stored.spec);
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), "skipping vocabulary: {e}");
                errors.push(format!("{}: {e}", path.display()));
            }
        }
    }
    Ok((named, errors))
}

fn read_stored(path: &Path, limits: &VocabLimits) -> std::result::Result<Stored, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let stored: Stored = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    validate_name(&stored.name).map_err(|e| e.to_string())?;
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if stem != stored.name {
        return Err(format!(
            "file name does not match its vocabulary name `{}`",
            stored.name
        ));
    }
    stored.spec.validate(limits).map_err(|e| e.to_string())?;
    Ok(stored)
}

/// Writes `dir/name` atomically: a temporary file unique to this write (process and sequence
/// number), fsync, rename, fsync of the directory. A failure names the path it concerns.
pub fn write_atomic(
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::fs::create_dir_all(dir).map_err(|e| (dir.to_path_buf(), e))?;
    let target = dir.join(name);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        (target, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["coco2", "my-vocab_1.v2", "A"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "../etc",
            "a/b",
            ".hidden",
            "a b",
            &"x".repeat(65),
            "naïve",
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phrase_cache_respects_its_memory_cap() {
        let row: Arc<[f32]> = Arc::from(vec![0f32; 100]);
        let cost = PhraseCache::cost("p0", &row);
        let mut c = PhraseCache {
            map: LruCache::unbounded(),
            bytes: 0,
            cap: cost * 3,
        };
        for i in 0..5 {
            c.insert(format!("p{i}"), row.clone());
        }
        assert_eq!(c.map.len(), 3);
        assert!(c.bytes <= c.cap);
        assert!(c.map.contains("p4") && !c.map.contains("p0"));
        c.insert("p4".into(), row.clone());
        assert_eq!(c.bytes, cost * 3);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "a.json", b"1").unwrap();
        write_atomic(dir.path(), "a.json", b"22").unwrap();
        assert_eq!(std::fs::read(dir.path().join("a.json")).unwrap(), b"22");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
