//! `dosod ros`: the ROS 2 perception node (cargo feature `ros2`).

use anyhow::Result;

use crate::config::Settings;
use crate::ros2::config::Ros2Args;

#[derive(Debug, clap::Args)]
pub struct RosArgs {
    #[command(flatten)]
    pub ros2: Ros2Args,
}

#[cfg(feature = "ros2")]
pub fn run(settings: &Settings, args: &RosArgs) -> Result<std::process::ExitCode> {
    let ros = args
        .ros2
        .settings(&settings.ros2)
        .map_err(anyhow::Error::msg)?;
    // The service's async side (decode, the scheduler's wait) runs on one small runtime; the
    // node itself runs on this thread.
    let (_runtime, service) = super::start_service(settings, 1, "dosod-ros2-rt")?;
    crate::ros2::run(service, &ros, crate::server::shutdown_signal())?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(not(feature = "ros2"))]
pub fn run(settings: &Settings, args: &RosArgs) -> Result<std::process::ExitCode> {
    args.ros2
        .settings(&settings.ros2)
        .map_err(anyhow::Error::msg)?;
    anyhow::bail!(
        "this dosod was built without ROS 2 support: rebuild with `--features ros2-jazzy` (or ros2-humble)"
    )
}
