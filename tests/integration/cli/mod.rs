//! The command-line tools: `dosod detect`, `bench`, `eval`, and bad input to them.

mod bad_input;
mod bench;
mod detect;
mod eval;
