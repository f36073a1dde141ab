//! Vocabularies: class names with their joint-space embedding matrix, as the detector consumes
//! them; the text encoder, specs, the store of named vocabularies and embedding-file import.

pub mod encoder;
pub mod import;
pub(crate) mod redis;
pub mod spec;
pub mod store;

use std::path::{Path, PathBuf};

use ndarray::Array2;

pub use crate::engine::Vocabulary;
use crate::engine::error::{EngineError, Result};

/// Text-encoder embeddings computed elsewhere: `[K, T]` rows plus their labels.
#[derive(Debug, Clone)]
pub struct TextEmbeddings {
    pub labels: Vec<String>,
    pub text: Array2<f32>,
}

impl TextEmbeddings {
    /// Loads `FILE.npy` (`[K, T]` float) and its names: `names` if given, else `FILE.txt`
    /// beside it, one label per line.
    pub fn load(npy: &Path, names: Option<&Path>) -> Result<TextEmbeddings> {
        let text = crate::vocab::import::read_f32_matrix(npy)?;
        let names_path: PathBuf =
            names.map_or_else(|| npy.with_extension("txt"), Path::to_path_buf);
        let raw = std::fs::read_to_string(&names_path).map_err(|e| {
            EngineError::Vocabulary(format!(
                "names file {} for {}: {e}",
                names_path.display(),
                npy.display()
            ))
        })?;
        let labels: Vec<String> = raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let emb = TextEmbeddings { labels, text };
        emb.validate()?;
        Ok(emb)
    }

    /// Checks labels against rows: non-empty, unique, one per row, finite values.
    pub fn validate(&self) -> Result<()> {
        validate_labels(&self.labels)?;
        if self.labels.len() != self.text.nrows() {
            return Err(EngineError::Vocabulary(format!(
                "{} names but {} embedding rows",
                self.labels.len(),
                self.text.nrows()
            )));
        }
        if let Some(i) = self
            .text
            .rows()
            .into_iter()
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(EngineError::Vocabulary(format!(
                "embedding row {i} (`{}`) has a non-finite value",
                self.labels[i]
            )));
        }
        Ok(())
    }

    /// A hash of the labels and the exact embedding bits.
    pub fn hash(&self) -> String {
        let mut h = Fnv64::new();
        for l in &self.labels {
            h.write(l.as_bytes());
            h.write(&[0]);
        }
        for v in &self.text {
            h.write(&v.to_le_bytes());
        }
        h.hex()
    }
}

/// Rejects an empty list, blank labels and duplicates, naming the offending entry.
pub fn validate_labels(labels: &[String]) -> Result<()> {
    if labels.is_empty() {
        return Err(EngineError::Vocabulary("the vocabulary is empty".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, l) in labels.iter().enumerate() {
        if l.trim().is_empty() {
            return Err(EngineError::Vocabulary(format!(
                "class {i} has an empty name"
            )));
        }
        if !seen.insert(l.as_str()) {
            return Err(EngineError::Vocabulary(format!(
                "duplicate class name `{l}`"
            )));
        }
    }
    Ok(())
}

/// 64-bit FNV-1a: a small, stable, dependency-free hash for cache keys.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Fnv64 {
    pub fn new() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rules() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(validate_labels(&s(&["a", "b"])).is_ok());
        assert!(validate_labels(&[]).is_err());
        let e = validate_labels(&s(&["a", " "])).unwrap_err().to_string();
        assert!(e.contains("class 1"), "{e}");
        let e = validate_labels(&s(&["a", "a"])).unwrap_err().to_string();
        assert!(e.contains("duplicate class name `a`"), "{e}");
    }

    #[test]
    fn loads_npy_with_names_and_checks_rows() {
        let dir = tempfile::tempdir().unwrap();
        let npy = dir.path().join("v.npy");
        let m = Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32);
        std::fs::write(&npy, crate::vocab::import::to_npy_bytes(&m)).unwrap();
        std::fs::write(dir.path().join("v.txt"), "cat\ndog\n").unwrap();
        let e = TextEmbeddings::load(&npy, None).unwrap();
        assert_eq!(e.labels, vec!["cat", "dog"]);
        assert_eq!(e.text, m);
        std::fs::write(dir.path().join("v.txt"), "cat\n").unwrap();
        assert!(TextEmbeddings::load(&npy, None).is_err());
    }

    #[test]
    fn fnv_is_stable() {
        let mut h = Fnv64::new();
        h.write(b"a");
        assert_eq!(h.hex(), "af63dc4c8601ec8c");
    }
}
