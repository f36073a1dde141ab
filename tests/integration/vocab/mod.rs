//! Text encoders and the vocabulary store, through the library.

mod store;
mod text;
