//! `model.toml` through `Bundle::open` and its checks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::manifest(data));
