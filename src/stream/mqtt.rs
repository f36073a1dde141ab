//! MQTT output: one client per process (rumqttc) with `<prefix>/available` as last will, a
//! bounded queue that drops (and counts) when the broker is away, and reconnection forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, Publish, QoS, Request};

use super::config::MqttSettings;

/// Counters visible in `/v1/streams` and in metrics.
#[derive(Debug, Default)]
pub struct MqttStats {
    pub connected: AtomicBool,
    pub published: AtomicU64,
    pub dropped: AtomicU64,
}

/// Publishes to the broker from any thread without blocking.
pub struct MqttPublisher {
    client: AsyncClient,
    prefix: String,
    publish_detections: bool,
    pub stats: Arc<MqttStats>,
    task: tokio::task::JoinHandle<()>,
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
        let (client, mut eventloop) = AsyncClient::new(options, settings.queue.max(1));
        let stats = Arc::new(MqttStats::default());
        let (loop_stats, host) = (
            stats.clone(),
            format!("{}:{}", settings.host, settings.port),
        );
        let task = runtime.spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        loop_stats.connected.store(true, Ordering::Release);
                        tracing::info!(broker = %host, "MQTT connected");
                        // `online` goes out first, ahead of what queued while the broker was
                        // away: a subscriber that waits for it never sees stale data before it.
                        let mut online = Publish::new(&available, QoS::AtLeastOnce, "online");
                        online.retain = true;
                        eventloop.pending.push_front(Request::Publish(online));
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))) => {
                        loop_stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if loop_stats.connected.swap(false, Ordering::AcqRel) {
                            tracing::warn!(broker = %host, error = %e, "MQTT disconnected");
                        } else {
                            tracing::debug!(broker = %host, error = %e, "MQTT connect failed");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        MqttPublisher {
            client,
            prefix,
            publish_detections: settings.publish_detections,
            stats,
            task,
        }
    }

    /// Whether every processed frame goes to `<camera>/detections`.
    pub fn publish_detections(&self) -> bool {
        self.publish_detections
    }

    /// `<prefix>/<subtopic>`.
    pub fn topic(&self, subtopic: &str) -> String {
        format!("{}/{}", self.prefix, subtopic)
    }

    /// Queues a message (QoS 0); when the queue is full the message is dropped and counted.
    pub fn publish(&self, subtopic: &str, payload: Vec<u8>, retain: bool) {
        let topic = self.topic(subtopic);
        if self
            .client
            .try_publish(topic, QoS::AtMostOnce, retain, payload)
            .is_err()
        {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Says `offline` and disconnects (a clean stop does not fire the last will).
    pub async fn shutdown(&self) {
        let available = self.topic("available");
        if self.stats.connected.load(Ordering::Acquire) {
            let _ = self
                .client
                .publish(available, QoS::AtLeastOnce, true, "offline")
                .await;
            let _ = self.client.disconnect().await;
            // Let the event loop flush both.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.task.abort();
    }
}

/// A label as one topic level: MQTT's separators and wildcards replaced.
pub fn topic_level(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            '/' | '+' | '#' | '\0' => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_become_single_topic_levels() {
        assert_eq!(super::topic_level("dog face"), "dog face");
        assert_eq!(super::topic_level("a/b+#"), "a_b__");
    }
}
