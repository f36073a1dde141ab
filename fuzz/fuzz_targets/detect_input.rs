//! A detection request (`DetectInput::read`) and its options' validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::detect_input(data));
