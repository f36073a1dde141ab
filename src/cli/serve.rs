//! `dosod serve`: the HTTP API on the configured bundle, plus the configured `[[streams]]`.

use std::sync::Arc;

use anyhow::Result;

use super::shared::load_store;
use crate::config::{ServerArgs, Settings};
use crate::stream::mqtt::MqttPublisher;
use crate::stream::{StreamContext, StreamManager};

pub fn run(settings: &Settings, args: &ServerArgs) -> Result<std::process::ExitCode> {
    let mut server = settings.server.clone();
    args.apply(&mut server);
    let mut mqtt = settings.mqtt.clone();
    args.mqtt.apply(&mut mqtt);
    let store = load_store(settings)?;
    // HTTP parsing and fast refusals must not starve inference on small CPUs: the async
    // threads get half the cores (decoding runs on the blocking pool, inference on its own).
    let http_threads = match server.http_threads {
        0 => (crate::runtime::physical_cores() / 2).max(1),
        n => n,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(http_threads)
        .enable_all()
        .thread_name("dosod-http")
        .build()?;
    let streams = if args.no_streams {
        &[][..]
    } else {
        &settings.streams[..]
    };
    runtime.block_on(async {
        let state = crate::server::AppState::new(store.clone(), server)?;
        let manager = if streams.is_empty() {
            None
        } else {
            let ctx = StreamContext {
                engine: state.engine.clone(),
                scheduler: state.scheduler.clone(),
                metrics: state.metrics.clone(),
                mqtt: start_mqtt(&mqtt),
            };
            let manager = StreamManager::start(streams, &store, ctx)?;
            let _ = state.streams.set(manager.clone());
            Some(manager)
        };
        let served = crate::server::serve(state).await;
        if let Some(m) = manager {
            m.shutdown().await;
        }
        served
    })?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The MQTT client when `[mqtt] host` is set (needs a running tokio runtime).
pub fn start_mqtt(settings: &crate::stream::config::MqttSettings) -> Option<Arc<MqttPublisher>> {
    (!settings.host.is_empty()).then(|| {
        Arc::new(MqttPublisher::start(
            settings,
            &tokio::runtime::Handle::current(),
        ))
    })
}
