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
    use super::shared::load_store;
    use crate::ros2::control::list_of;
    use crate::ros2::node::{Initial, run};
    use anyhow::Context as _;

    let ros = args
        .ros2
        .apply(&settings.ros2)
        .map_err(anyhow::Error::msg)?;
    let store = load_store(settings)?;
    let classes = list_of(&ros.classes);
    let vocabulary = store
        .choose(&classes.join(", "), &ros.vocabulary)
        .context("the initial vocabulary ([ros2] classes / --classes or vocabulary)")?;
    // The `vocabulary` parameter starts as the classes given, else the vocabulary's labels.
    let list = if classes.is_empty() {
        vocabulary.labels.clone()
    } else {
        classes
    };
    store.engine().warm_up(&vocabulary)?;
    let score_threshold = ros
        .score_threshold
        .unwrap_or(store.engine().default_params().score_threshold);
    run(
        store,
        &ros,
        Initial {
            vocabulary,
            list,
            score_threshold,
        },
    )?;
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(not(feature = "ros2"))]
pub fn run(settings: &Settings, args: &RosArgs) -> Result<std::process::ExitCode> {
    args.ros2
        .apply(&settings.ros2)
        .map_err(anyhow::Error::msg)?;
    anyhow::bail!(
        "this dosod was built without ROS 2 support: rebuild with `--features ros2-jazzy` (or ros2-humble)"
    )
}
