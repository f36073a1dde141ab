//! `dosod stream`: the configured `[[streams]]` without the HTTP API (MQTT and logs only).

use std::time::Duration;

use anyhow::{Result, bail};

use super::serve::start_mqtt;
use crate::config::Settings;
use crate::stream::config::MqttArgs;
use crate::stream::{StreamContext, StreamManager};

#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub mqtt: MqttArgs,
    /// Print every stream's status as one JSON line this often (0: never).
    #[arg(long, default_value_t = 0.0, env = "DOSOD_STATUS_INTERVAL_S")]
    pub status_interval_s: f64,
}

pub fn run(settings: &Settings, args: &StreamArgs) -> Result<std::process::ExitCode> {
    if settings.streams.is_empty() {
        bail!(
            "no [[streams]] in the configuration (or in this replica's [cluster] stream_shard): nothing to run"
        );
    }
    let mut mqtt = settings.mqtt.clone();
    args.mqtt.apply(&mut mqtt);
    let (runtime, service) = super::start_service(settings, 1, "dosod-stream")?;
    runtime.block_on(async {
        let ctx = StreamContext {
            service,
            mqtt: start_mqtt(&mqtt)?,
            events: settings.events.clone(),
        };
        let manager = StreamManager::start(&settings.streams, ctx)?;
        println!(
            "running {} stream(s): {}",
            settings.streams.len(),
            settings
                .streams
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let reporter = (args.status_interval_s > 0.0).then(|| {
            let m = manager.clone();
            let every = Duration::from_secs_f64(args.status_interval_s);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Ok(line) = serde_json::to_string(&m.statuses()) {
                        println!("{line}");
                    }
                }
            })
        });
        crate::server::shutdown_signal().await;
        if let Some(r) = reporter {
            r.abort();
        }
        manager.shutdown().await;
        anyhow::Ok(())
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}
