//! The engine against independent references.

mod acceleration;
mod agreement;
mod letterbox;
