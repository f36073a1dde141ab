//! The ROS 2 node over DDS (ros2-client / RustDDS): topics, QoS, parameter services, the
//! receive loop that feeds the worker, and `~/set_vocabulary`.

use std::sync::Arc;
use std::sync::mpsc::{Sender, channel};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use futures::StreamExt;
use futures::stream::{BoxStream, select_all};
use ros2_client::qos::{History, Reliability, WhenFull};
use ros2_client::{
    COMPILED_ROS_DISTRO, Context, ContextOptions, MessageInfo, MessageTypeName, Name, Node,
    NodeName, ParameterValue, QosProfile,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::Ros2Settings;
use super::control::{Control, list_of};
use super::convert::Rejection;
use super::msg::{self, CompressedImage, Detection2DArray, Image, StringMsg, TypeName};
use super::params::node_options;
use super::stats::Stats;
use super::worker::{Frame, Latest, Payload, Worker, reject};
use crate::service::Service;

/// What the node starts with; parameters change it later.
pub struct Initial {
    pub vocabulary: Arc<crate::vocab::Vocabulary>,
    /// The `vocabulary` parameter's first value.
    pub list: Vec<String>,
    pub score_threshold: f32,
}

/// Runs the node until `stop` completes (SIGINT / SIGTERM for `dosod ros`).
pub fn run(
    service: Arc<Service>,
    settings: &Ros2Settings,
    initial: Initial,
    stop: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let engine = service.engine.clone();
    let store = service.store.clone();
    let domain = settings.domain_id.unwrap_or(0);
    let control = Arc::new(Control::new(
        initial.vocabulary,
        initial.list.clone(),
        engine.default_params(),
        initial.score_threshold,
        settings.enabled,
        settings.frame_id.clone(),
    ));
    let ctx = Context::with_options(ContextOptions::new().domain_id(domain))
        .map_err(|e| anyhow::anyhow!("cannot start DDS on domain {domain}: {e:?}"))?;
    let options = node_options(
        &control,
        &store,
        settings,
        initial.list,
        initial.score_threshold,
    );
    let mut node = ctx
        .new_node(
            NodeName::new(&settings.namespace, &settings.node_name)
                .map_err(|e| anyhow::anyhow!("node name: {e:?}"))?,
            options,
        )
        .map_err(|e| anyhow::anyhow!("cannot create the node: {e:?}"))?;

    let image_qos = qos(&settings.image_reliability, settings.image_depth);
    let out_qos = qos(&settings.detections_reliability, settings.detections_depth);
    let control_qos = qos("reliable", 10);
    let images = optional(&settings.image_topic, |t| {
        subscribe::<Image>(&mut node, settings, t, msg::IMAGE, &image_qos)
    })?;
    let compressed = optional(&settings.compressed_topic, |t| {
        subscribe::<CompressedImage>(&mut node, settings, t, msg::COMPRESSED_IMAGE, &image_qos)
    })?;
    let vocab_sub = subscribe::<StringMsg>(
        &mut node,
        settings,
        &settings.vocabulary_topic,
        msg::STRING,
        &control_qos,
    )?;
    let detections = advertise::<Detection2DArray>(
        &mut node,
        settings,
        &settings.detections_topic,
        msg::DETECTION_2D_ARRAY,
        &out_qos,
    )?;
    // The debug image: reliable (matches every viewer) but keep-last 1, so a slow viewer costs
    // it frames, never the node's memory.
    let annotated = optional(&settings.annotated_topic, |t| {
        advertise::<Image>(&mut node, settings, t, msg::IMAGE, &qos("reliable", 1))
    })?;

    let spinner = node
        .spinner()
        .map_err(|e| anyhow::anyhow!("cannot start the parameter services: {e:?}"))?;
    let spin = std::thread::Builder::new()
        .name("dosod-ros2-spin".into())
        .spawn(move || futures::executor::block_on(spinner.spin()))?;

    let stats = Arc::new(Stats::default());
    let latest = Arc::new(Latest::default());
    let worker = Worker {
        service,
        control: control.clone(),
        stats: stats.clone(),
        latest: latest.clone(),
        detections,
        annotated,
        summary_every: (settings.summary_interval_s > 0.0)
            .then(|| Duration::from_secs_f64(settings.summary_interval_s)),
    };
    let worker = std::thread::Builder::new()
        .name("dosod-ros2-detect".into())
        .spawn(move || worker.run())?;

    let resolve = |t: &str| settings.resolve(t).unwrap_or_default();
    println!(
        "ros2 node {} ready on domain {domain} ({COMPILED_ROS_DISTRO}): {} -> {}",
        node.fully_qualified_name(),
        [&settings.image_topic, &settings.compressed_topic]
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(|t| resolve(t))
            .collect::<Vec<_>>()
            .join(", "),
        resolve(&settings.detections_topic),
    );

    // Vocabulary strings are applied off the receive loop: building one runs the text encoder.
    let node = Arc::new(node);
    let (vocab_tx, vocab_rx) = channel::<String>();
    let applier = {
        let node = node.clone();
        std::thread::Builder::new()
            .name("dosod-ros2-vocab".into())
            .spawn(move || {
                for text in vocab_rx {
                    apply_vocabulary(&node, &text);
                }
            })?
    };

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut incoming: Vec<BoxStream<'_, Incoming>> = Vec::new();
        if let Some(s) = &images {
            incoming.push(
                s.async_stream()
                    .map(|r| r.map(|(m, info)| Incoming::Image(m, receipt(&info))))
                    .map(ok)
                    .boxed(),
            );
        }
        if let Some(s) = &compressed {
            incoming.push(
                s.async_stream()
                    .map(|r| r.map(|(m, info)| Incoming::Compressed(m, receipt(&info))))
                    .map(ok)
                    .boxed(),
            );
        }
        incoming.push(
            vocab_sub
                .async_stream()
                .map(|r| r.map(|(m, _)| Incoming::Vocabulary(m.data)))
                .map(ok)
                .boxed(),
        );
        let mut incoming = select_all(incoming);
        let shutdown = stop;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                item = incoming.next() => match item {
                    Some(item) => handle(item, &vocab_tx, &stats, &latest),
                    None => break,
                },
            }
        }
    });
    // Tear down in order, so every DDS entity is disposed while the participant still runs.
    latest.close();
    let _ = worker.join();
    drop(vocab_tx);
    let _ = applier.join();
    drop((images, compressed, vocab_sub));
    drop(node);
    let _ = spin.join();
    drop(ctx);
    Ok(())
}

/// One item from any subscription.
enum Incoming {
    Image(Image, Instant),
    Compressed(CompressedImage, Instant),
    Vocabulary(String),
    /// Bytes that did not deserialise as the topic's type.
    Malformed(String),
}

fn ok(r: ros2_client::ReadResult<Incoming>) -> Incoming {
    r.unwrap_or_else(|e| Incoming::Malformed(format!("{e:?}")))
}

/// When DDS received the sample (before it was deserialised), else now.
fn receipt(info: &MessageInfo) -> Instant {
    let now = Instant::now();
    let wall_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64);
    match info.received_timestamp().map(|t| wall_ns - t.to_nanos()) {
        Some(behind) if (0..10_000_000_000).contains(&behind) => now
            .checked_sub(Duration::from_nanos(behind as u64))
            .unwrap_or(now),
        _ => now,
    }
}

fn handle(item: Incoming, vocab: &Sender<String>, stats: &Stats, latest: &Latest) {
    match item {
        Incoming::Image(m, received) => put(
            stats,
            latest,
            Frame {
                payload: Payload::Raw(m),
                received,
            },
        ),
        Incoming::Compressed(m, received) => put(
            stats,
            latest,
            Frame {
                payload: Payload::Compressed(m),
                received,
            },
        ),
        Incoming::Malformed(e) => reject(stats, &Rejection::Malformed(e)),
        Incoming::Vocabulary(text) => {
            let _ = vocab.send(text);
        }
    }
}

/// `~/set_vocabulary`: sets the `vocabulary` parameter, so the same checks run and the change
/// is announced on `/parameter_events`.
fn apply_vocabulary(node: &Node, text: &str) {
    let list = list_of(text);
    if list.is_empty() {
        tracing::warn!("ignored an empty vocabulary on set_vocabulary");
        return;
    }
    if let Err(e) = node.set_parameter("vocabulary", ParameterValue::StringArray(list)) {
        tracing::warn!("vocabulary `{text}` refused: {e}");
    }
}

fn put(stats: &Stats, latest: &Latest, frame: Frame) {
    stats.received();
    if latest.put(frame).is_some() {
        stats.stale();
    }
}

fn qos(reliability: &str, depth: usize) -> QosProfile {
    let reliability = if reliability == "reliable" {
        Reliability::Reliable {
            when_full: WhenFull::Wait(Duration::from_millis(100)),
        }
    } else {
        Reliability::BestEffort
    };
    QosProfile::subscription_default()
        .reliability(reliability)
        .history(History::KeepLast { depth })
}

fn optional<T>(topic: &str, make: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    (!topic.is_empty()).then(|| make(topic)).transpose()
}

fn topic(
    node: &mut Node,
    settings: &Ros2Settings,
    name: &str,
    ty: TypeName,
    qos: &QosProfile,
) -> Result<ros2_client::dds::rustdds::Topic> {
    let full = settings.resolve(name).map_err(anyhow::Error::msg)?;
    let parsed = Name::parse(&full).map_err(|e| anyhow::anyhow!("topic {full}: {e:?}"))?;
    node.create_topic(&parsed, MessageTypeName::new(ty.0, ty.1), qos)
        .map_err(|e| anyhow::anyhow!("topic {full}: {e:?}"))
}

fn subscribe<M: DeserializeOwned + 'static>(
    node: &mut Node,
    settings: &Ros2Settings,
    name: &str,
    ty: TypeName,
    qos: &QosProfile,
) -> Result<ros2_client::Subscription<M>> {
    let t = topic(node, settings, name, ty, qos)?;
    node.create_subscription::<M>(&t, Some(qos.clone()))
        .map_err(|e| anyhow::anyhow!("subscribe {name}: {e:?}"))
        .with_context(|| format!("{}/{}", ty.0, ty.1))
}

fn advertise<M: Serialize>(
    node: &mut Node,
    settings: &Ros2Settings,
    name: &str,
    ty: TypeName,
    qos: &QosProfile,
) -> Result<ros2_client::Publisher<M>> {
    let t = topic(node, settings, name, ty, qos)?;
    node.create_publisher::<M>(&t, Some(qos.clone()))
        .map_err(|e| anyhow::anyhow!("publish {name}: {e:?}"))
}
