//! The class matrix the detector consumes: labels and their `[K, D]` joint-space rows.

use ndarray::Array2;

/// A ready vocabulary: `K` class labels and their `[K, D]` joint-space matrix (the adaptor's
/// output). Shared as `Arc<Vocabulary>`: swapping one never disturbs a detection in flight.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// The registry name, for named vocabularies.
    pub name: Option<String>,
    /// Class labels, in class-id order.
    pub labels: Vec<String>,
    /// `[K, D]` joint-space embeddings.
    pub joint: Array2<f32>,
    /// A stable hash of what produced the matrix (phrases, template, model).
    pub hash: String,
}

impl Vocabulary {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}
