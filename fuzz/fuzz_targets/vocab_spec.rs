//! Vocabulary specs: JSON, stored files, the classes text form, built-in lists, ROS strings.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::vocab_spec(data));
