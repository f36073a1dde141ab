//! MQTT output: one client per process (rumqttc) with `<prefix>/available` as last will, the
//! [`Outbox`] between the cameras and the connection, and reconnection forever.
//!
//! Two tasks: the *connection* task only drives rumqttc's event loop (it never waits on anything
//! else, so pings and reconnects always run), and the *forwarder* hands the outbox's messages to
//! it one at a time, only while connected. The hand-over channel has no buffer, so nothing older
//! than the outbox's own policy waits inside the client during an outage.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, Publish, QoS, Request};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::config::MqttSettings;
use super::outbox::{self, Outbox};

/// How long shutdown waits for the broker to take `offline` and the disconnect.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(2);
/// How long the forwarder offers one message to a connection that does not take it.
const HANDOVER_BOUND: Duration = Duration::from_millis(500);

/// Counters visible in `/v1/streams` and in metrics.
#[derive(Debug, Default)]
pub struct MqttStats {
    /// Set on the broker's CONNACK, cleared on the first error of that connection.
    pub connected: AtomicBool,
    pub published: AtomicU64,
    /// Messages never sent: replaced by a newer one of their topic, expired, evicted from a
    /// full outbox, or lost with a connection.
    pub dropped: AtomicU64,
}

/// What a message is, which decides how the outbox treats it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `<camera>/detections`: only the newest counts, and only while fresh.
    Detections,
    /// `events`: every one, in order.
    Event,
    /// A retained state (a count, a snapshot, a discovery config): only the newest counts.
    Retained,
}

/// State shared by the publisher and its two tasks.
struct Shared {
    outbox: Mutex<Outbox>,
    /// Retained messages sent on every connection, after `online` (Home Assistant discovery),
    /// per group (a camera): a broker that lost them gets them again.
    on_connect: Mutex<std::collections::BTreeMap<String, Vec<(String, String)>>>,
    wake: Notify,
    stats: MqttStats,
}

impl Shared {
    fn drop_count(&self, n: u64) {
        if n > 0 {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Publishes to the broker from any thread without blocking.
pub struct MqttPublisher {
    client: AsyncClient,
    prefix: String,
    ha_discovery: Option<String>,
    publish_detections: bool,
    max_age: Duration,
    shared: Arc<Shared>,
    connection: Mutex<Option<JoinHandle<()>>>,
    forwarder: JoinHandle<()>,
}

impl MqttPublisher {
    /// Connects in the background on `runtime` (failures are retried every second forever).
    pub fn start(settings: &MqttSettings, runtime: &tokio::runtime::Handle) -> MqttPublisher {
        let prefix = settings.topic_prefix.trim_end_matches('/').to_string();
        let available = format!("{prefix}/available");
        let mut options = MqttOptions::new(&settings.client_id, &settings.host, settings.port);
        options.set_keep_alive(Duration::from_secs(settings.keep_alive_s.max(5)));
        options.set_last_will(LastWill::new(&available, "offline", QoS::AtLeastOnce, true));
        options.set_max_packet_size(16 << 20, 16 << 20);
        if !settings.username.is_empty() {
            options.set_credentials(&settings.username, &settings.password);
        }
        // A rendezvous channel: a message is either taken by the connection or still ours.
        let (client, eventloop) = AsyncClient::new(options, 0);
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::new(settings.queue)),
            on_connect: Mutex::new(std::collections::BTreeMap::new()),
            wake: Notify::new(),
            stats: MqttStats::default(),
        });
        let host = format!("{}:{}", settings.host, settings.port);
        let connection = runtime.spawn(drive(eventloop, shared.clone(), available, host));
        let forwarder = runtime.spawn(forward(client.clone(), shared.clone()));
        MqttPublisher {
            client,
            prefix,
            ha_discovery: settings.ha_discovery.then(|| {
                settings
                    .ha_discovery_prefix
                    .trim_end_matches('/')
                    .to_string()
            }),
            publish_detections: settings.publish_detections,
            max_age: Duration::from_secs_f64(settings.max_age_s),
            shared,
            connection: Mutex::new(Some(connection)),
            forwarder,
        }
    }

    pub fn stats(&self) -> &MqttStats {
        &self.shared.stats
    }

    /// Whether every processed frame goes to `<camera>/detections`.
    pub fn publish_detections(&self) -> bool {
        self.publish_detections
    }

    /// `<prefix>/<subtopic>`.
    pub fn topic(&self, subtopic: &str) -> String {
        format!("{}/{}", self.prefix, subtopic)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Home Assistant discovery prefix, when discovery is on.
    pub fn ha_discovery(&self) -> Option<&str> {
        self.ha_discovery.as_deref()
    }

    /// Replaces `group`'s retained messages (full topics), sent now and on every later
    /// connection; a topic the group had and no longer has gets an empty retained message (so
    /// Home Assistant removes that entity).
    pub fn publish_on_connect(&self, group: &str, messages: Vec<(String, String)>) {
        // Locked before `connected` is read: the connection sets `connected`, then reads the
        // groups, so a message is either seen by that read or sent here.
        let mut groups = self
            .shared
            .on_connect
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let old = groups
            .insert(group.to_string(), messages.clone())
            .unwrap_or_default();
        // Withdrawals (empty retained payloads) are kept and sent on every connection too, so
        // one made while the broker was away still reaches it.
        let gone_key = format!("{group}\u{0}gone");
        let mut gone: Vec<(String, String)> = groups.remove(&gone_key).unwrap_or_default();
        gone.extend(old.into_iter().map(|(t, _)| (t, String::new())));
        gone.retain(|(t, _)| !messages.iter().any(|(n, _)| n == t));
        gone.sort();
        gone.dedup();
        if !gone.is_empty() {
            groups.insert(gone_key, gone.clone());
        }
        let connected = self.shared.stats.connected.load(Ordering::Acquire);
        drop(groups);
        let outgoing: Vec<(String, String)> = messages.iter().cloned().chain(gone).collect();
        for (topic, payload) in outgoing.iter().filter(|_| connected) {
            let dropped = self
                .shared
                .outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(outbox::Outgoing {
                    topic: topic.clone(),
                    payload: payload.clone().into_bytes(),
                    retain: true,
                    latest: true,
                    expires: None,
                });
            self.shared.drop_count(dropped);
        }
        self.shared.wake.notify_one();
    }

    /// Queues a message (QoS 0) under the outbox's policy for its kind; never blocks.
    pub fn publish(&self, subtopic: &str, payload: Vec<u8>, kind: Kind) {
        let message = outbox::Outgoing {
            topic: self.topic(subtopic),
            payload,
            retain: kind == Kind::Retained,
            latest: kind != Kind::Event,
            expires: (kind == Kind::Detections).then(|| Instant::now() + self.max_age),
        };
        let dropped = self
            .shared
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(message);
        self.shared.drop_count(dropped);
        self.shared.wake.notify_one();
    }

    /// Says `offline` and disconnects (a clean stop does not fire the last will); bounded by
    /// [`SHUTDOWN_BOUND`] whatever the broker does.
    pub async fn shutdown(&self) {
        self.forwarder.abort();
        let connection = self
            .connection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(mut connection) = connection else {
            return;
        };
        if self.shared.stats.connected.load(Ordering::Acquire) {
            let deadline = tokio::time::Instant::now() + SHUTDOWN_BOUND;
            let offline =
                self.client
                    .publish(self.topic("available"), QoS::AtLeastOnce, true, "offline");
            if tokio::time::timeout_at(deadline, offline).await.is_ok() {
                let _ = tokio::time::timeout_at(deadline, self.client.disconnect()).await;
                // The connection task ends once the disconnect is written.
                let _ = tokio::time::timeout_at(deadline, &mut connection).await;
            }
        }
        connection.abort();
    }
}

/// The connection task: polls the event loop forever; `online` goes first on every connection.
async fn drive(
    mut eventloop: rumqttc::EventLoop,
    shared: Arc<Shared>,
    available: String,
    host: String,
) {
    let stats = &shared.stats;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // Ahead of anything else on this connection: a subscriber that waits for
                // `online` never sees stale data before it.
                let mut online = Publish::new(&available, QoS::AtLeastOnce, "online");
                online.retain = true;
                eventloop.pending.push_front(Request::Publish(online));
                stats.connected.store(true, Ordering::Release);
                let again: Vec<(String, String)> = shared
                    .on_connect
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .flatten()
                    .cloned()
                    .collect();
                for (topic, payload) in again {
                    let mut p = Publish::new(topic, QoS::AtLeastOnce, payload);
                    p.retain = true;
                    eventloop.pending.push_back(Request::Publish(p));
                }
                tracing::info!(broker = %host, "MQTT connected");
                shared.wake.notify_one();
            }
            Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                stats.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                // What the connection had not sent is lost with it (a clean session would drop
                // it on reconnect anyway): count it, and send nothing stale later.
                let lost = eventloop
                    .pending
                    .drain(..)
                    .filter(|r| matches!(r, Request::Publish(p) if p.topic != available))
                    .count();
                shared.drop_count(lost as u64);
                if stats.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(broker = %host, error = %e, "MQTT disconnected");
                } else {
                    tracing::debug!(broker = %host, error = %e, "MQTT connect failed");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The forwarder task: outbox → connection, one message at a time, only while connected.
async fn forward(client: AsyncClient, shared: Arc<Shared>) {
    loop {
        let next = if shared.stats.connected.load(Ordering::Acquire) {
            let (message, expired) = shared
                .outbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop(Instant::now());
            shared.drop_count(expired);
            message
        } else {
            None
        };
        let Some(m) = next else {
            shared.wake.notified().await;
            continue;
        };
        let send = client.publish(m.topic, QoS::AtMostOnce, m.retain, m.payload);
        match tokio::time::timeout(HANDOVER_BOUND, send).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return, // the event loop is gone
            // The connection is stuck or gone: the message would be stale by the time it went.
            Err(_) => shared.drop_count(1),
        }
    }
}

/// A label as one topic level: spaces, MQTT's separators and wildcards become `_`
/// (`dog face` → `dog_face`), so topics need no quoting in shells or Home Assistant.
pub fn topic_level(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            '/' | '+' | '#' | '\0' => '_',
            c if c.is_whitespace() => '_',
            c => c,
        })
        .collect()
}

/// A label as the last level of a count topic: [`topic_level`], and a label that would take a
/// reserved level (`all`, the total; `detections`, the frames) gets a trailing `_`.
pub fn count_level(label: &str) -> String {
    let level = topic_level(label);
    if matches!(level.as_str(), "all" | "detections") {
        format!("{level}_")
    } else {
        level
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_become_single_topic_levels() {
        assert_eq!(super::topic_level("dog face"), "dog_face");
        assert_eq!(super::topic_level("a/b+#"), "a_b__");
        assert_eq!(super::count_level("detections"), "detections_");
        assert_eq!(super::count_level("all"), "all_");
        assert_eq!(super::count_level("dog face"), "dog_face");
    }
}
