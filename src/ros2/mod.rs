//! The ROS 2 perception node: `sensor_msgs/Image` in over DDS, `vision_msgs/Detection2DArray`
//! out, vocabulary changed at run time through parameters or `~/set_vocabulary`.

pub mod config;
pub mod control;
pub mod convert;
pub mod msg;
pub mod stats;

#[cfg(feature = "ros2")]
pub mod node;
#[cfg(feature = "ros2")]
pub mod params;
#[cfg(feature = "ros2")]
pub mod worker;

#[cfg(all(feature = "ros2-humble", feature = "ros2-jazzy"))]
compile_error!(
    "ros2-humble and ros2-jazzy exclude each other: build with --no-default-features --features ros2-humble"
);
