//! ROS 2 CDR samples as the node's subscriptions decode them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::ros2_cdr(data));
