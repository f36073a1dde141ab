//! The configuration file and `[[streams]]` entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::config(data));
