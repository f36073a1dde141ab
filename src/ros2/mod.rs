//! The ROS 2 perception node: `sensor_msgs/Image` in over DDS, `vision_msgs/Detection2DArray`
//! out, vocabulary changed at run time through parameters or `~/set_vocabulary`.

pub(crate) mod config;
#[cfg(feature = "ros2")]
pub(crate) mod control;
#[cfg(feature = "ros2")]
pub(crate) mod convert;
#[cfg(feature = "ros2")]
pub(crate) mod msg;
#[cfg(feature = "ros2")]
pub(crate) mod stats;

#[cfg(feature = "ros2")]
pub(crate) mod node;
#[cfg(feature = "ros2")]
pub(crate) mod params;
#[cfg(feature = "ros2")]
pub(crate) mod worker;

/// Runs the node on `service` until `stop` completes: the initial vocabulary and threshold
/// from `[ros2]`, then DDS until shutdown. Call from a thread outside any tokio runtime.
#[cfg(feature = "ros2")]
pub(crate) fn run(
    service: std::sync::Arc<crate::service::Service>,
    settings: &config::Ros2Settings,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let classes = control::list_of(&settings.classes);
    let request =
        crate::vocab::store::VocabRequest::from_settings(&classes.join(", "), &settings.vocabulary);
    let vocabulary = service
        .store
        .select(&request, "")
        .context("the initial vocabulary ([ros2] classes / --classes or vocabulary)")?;
    // The `vocabulary` parameter starts as the classes given, else the vocabulary's labels.
    let list = if classes.is_empty() {
        vocabulary.labels.clone()
    } else {
        classes
    };
    service.engine.warm_up(&vocabulary)?;
    let score_threshold = settings
        .score_threshold
        .unwrap_or(service.engine.default_params().score_threshold);
    node::run(
        service,
        settings,
        node::Initial {
            vocabulary,
            list,
            score_threshold,
        },
        stop,
    )
}

#[cfg(all(feature = "ros2-humble", feature = "ros2-jazzy"))]
compile_error!(
    "ros2-humble and ros2-jazzy exclude each other: build with --no-default-features --features ros2-humble"
);
