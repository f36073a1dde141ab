//! `dosod serve`: the HTTP API on the configured bundle, plus the configured `[[streams]]` and,
//! with `--ros2`, the ROS 2 node — every frontend on one service, so their frames batch together.

use std::sync::Arc;

use anyhow::Result;

use crate::config::Settings;
use crate::server::config::ServerArgs;
use crate::service::Service;
use crate::stream::config::MqttArgs;
use crate::stream::mqtt::MqttPublisher;
use crate::stream::{StreamContext, StreamManager};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub mqtt: MqttArgs,
    /// Run the API without the configured `[[streams]]`.
    #[arg(long, env = "DOSOD_NO_STREAMS")]
    pub no_streams: bool,
    /// Also run the ROS 2 node of `[ros2]` (`dosod ros` flags are not taken here: use the file).
    #[arg(long, env = "DOSOD_SERVE_ROS2")]
    pub ros2: bool,
}

pub fn run(settings: &Settings, args: &ServeArgs) -> Result<std::process::ExitCode> {
    let mut server = settings.server.clone();
    args.server.apply(&mut server);
    let mut mqtt = settings.mqtt.clone();
    args.mqtt.apply(&mut mqtt);
    // HTTP parsing and fast refusals must not starve inference on small CPUs: the async
    // threads get half the cores (decoding runs on the blocking pool, inference on its own).
    let http_threads = match server.http_threads {
        0 => (crate::engine::runtime::physical_cores() / 2).max(1),
        n => n,
    };
    let (runtime, service) = super::start_service(settings, http_threads, "dosod-http")?;
    let streams = if args.no_streams {
        &[][..]
    } else {
        &settings.streams[..]
    };
    let (stop_ros, ros) = start_ros(args.ros2, &service, settings)?;
    let served = runtime.block_on(async {
        let state = crate::server::AppState::new(service.clone(), server)?;
        let manager = if streams.is_empty() {
            None
        } else {
            let ctx = StreamContext {
                service: service.clone(),
                mqtt: start_mqtt(&mqtt)?,
                events: settings.events.clone(),
            };
            let manager = StreamManager::start(streams, ctx)?;
            let _ = state.streams.set(manager.clone());
            Some(manager)
        };
        let served = crate::server::serve(state).await;
        if let Some(m) = manager {
            m.shutdown().await;
        }
        served
    });
    stop_ros.notify_one();
    if let Some(ros) = ros {
        match ros.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("the ROS 2 node panicked"),
        }
    }
    served?;
    Ok(std::process::ExitCode::SUCCESS)
}

type RosThread = std::thread::JoinHandle<Result<()>>;

/// The ROS 2 node on its own thread, stopped through the returned notifier.
fn start_ros(
    on: bool,
    service: &Arc<Service>,
    settings: &Settings,
) -> Result<(Arc<tokio::sync::Notify>, Option<RosThread>)> {
    let stop = Arc::new(tokio::sync::Notify::new());
    if !on {
        return Ok((stop, None));
    }
    #[cfg(feature = "ros2")]
    {
        // `[ros2]` as the file has it, with ROS_DOMAIN_ID when it names no domain, checked.
        let ros = crate::ros2::config::Ros2Args::default()
            .settings(&settings.ros2)
            .map_err(anyhow::Error::msg)?;
        let (service, stopped) = (service.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("dosod-ros2".into())
            .spawn(move || {
                crate::ros2::run(service, &ros, async move { stopped.notified().await })
            })?;
        Ok((stop, Some(thread)))
    }
    #[cfg(not(feature = "ros2"))]
    {
        let _ = (service, settings);
        anyhow::bail!("--ros2: this dosod was built without ROS 2 support")
    }
}

/// The MQTT client when `[mqtt] host` is set (needs a running tokio runtime).
pub fn start_mqtt(
    settings: &crate::stream::config::MqttSettings,
) -> Result<Option<Arc<MqttPublisher>>> {
    settings
        .validate()
        .map_err(|e| anyhow::anyhow!("mqtt: {e}"))?;
    Ok((!settings.host.is_empty()).then(|| {
        Arc::new(MqttPublisher::start(
            settings,
            &tokio::runtime::Handle::current(),
        ))
    }))
}
