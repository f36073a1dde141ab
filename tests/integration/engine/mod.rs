//! The engine against independent references.

mod agreement;
