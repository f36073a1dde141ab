//! Image decoding (`engine::decode::decode`) with small limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::decode(data));
