//! ROS 2 `sensor_msgs/Image` to RGB (`image_to_rgb`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| dosod::fuzzing::ros2_image(data));
