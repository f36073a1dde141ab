//! Embedding files: .npy matrices, .npy names and .npz archives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::vocab_npy(data));
