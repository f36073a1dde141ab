//! The engine against independent references.

mod agreement;
mod letterbox;
