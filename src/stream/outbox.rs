//! The MQTT outbox: what waits for the broker, with its drop policy (a pure data structure).
//!
//! Policy, in order of importance:
//! * availability (`online`/`offline`) never enters the outbox: the publisher sends it first on
//!   every connection, so it can never be dropped or queued behind stale data;
//! * a *latest* message (a camera's detections, a per-label count) replaces the unsent one of the
//!   same topic: a subscriber only ever needs the newest value of such a topic;
//! * a message may carry an expiry: detections older than `[mqtt] max_age_s` are never sent
//!   (after a broker outage the first detections are fresh ones, not a backlog);
//! * events queue in order; when the outbox is full the oldest expiring message goes first, else
//!   the oldest message. Every message that is not sent is counted.

use std::collections::VecDeque;
use std::time::Instant;

/// One message for `topic`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outgoing {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// Replaces an unsent message of the same topic.
    pub latest: bool,
    /// Not sent after this instant.
    pub expires: Option<Instant>,
}

/// The bounded queue between the camera workers and the MQTT connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    messages: VecDeque<Outgoing>,
    capacity: usize,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            messages: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Adds a message; returns how many messages were dropped to make room or were replaced.
    pub fn push(&mut self, message: Outgoing) -> u64 {
        let mut dropped = 0;
        if message.latest
            && let Some(i) = self
                .messages
                .iter()
                .position(|m| m.latest && m.topic == message.topic)
        {
            self.messages.remove(i);
            dropped += 1;
        }
        if self.messages.len() >= self.capacity {
            let victim = self
                .messages
                .iter()
                .position(|m| m.expires.is_some())
                .unwrap_or(0);
            self.messages.remove(victim);
            dropped += 1;
        }
        self.messages.push_back(message);
        dropped
    }

    /// The oldest message still worth sending at `now`, and how many expired ones were dropped
    /// on the way to it.
    pub fn pop(&mut self, now: Instant) -> (Option<Outgoing>, u64) {
        let mut expired = 0;
        while let Some(m) = self.messages.pop_front() {
            if m.expires.is_some_and(|at| at <= now) {
                expired += 1;
                continue;
            }
            return (Some(m), expired);
        }
        (None, expired)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.messages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn msg(topic: &str, payload: &str, latest: bool, expires: Option<Instant>) -> Outgoing {
        Outgoing {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
            retain: false,
            latest,
            expires,
        }
    }

    fn drain(outbox: &mut Outbox, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let (Some(m), _) = outbox.pop(now) {
            out.push(format!(
                "{}={}",
                m.topic,
                String::from_utf8_lossy(&m.payload)
            ));
        }
        out
    }

    #[test]
    fn latest_topics_keep_only_their_newest_value_and_events_keep_their_order() {
        let now = Instant::now();
        let mut o = Outbox::new(100);
        assert_eq!(o.push(msg("a/detections", "1", true, None)), 0);
        assert_eq!(o.push(msg("a/events", "new", false, None)), 0);
        assert_eq!(o.push(msg("a/person", "1", true, None)), 0);
        assert_eq!(o.push(msg("a/detections", "2", true, None)), 1);
        assert_eq!(o.push(msg("a/events", "end", false, None)), 0);
        assert_eq!(o.push(msg("a/person", "0", true, None)), 1);
        assert_eq!(
            drain(&mut o, now),
            [
                "a/events=new",
                "a/detections=2",
                "a/events=end",
                "a/person=0"
            ]
        );
    }

    #[test]
    fn expired_messages_are_dropped_and_counted_on_the_way_out() {
        let now = Instant::now();
        let mut o = Outbox::new(100);
        o.push(msg("a/detections", "old", true, Some(now)));
        o.push(msg("b/detections", "old", true, Some(now)));
        o.push(msg("a/events", "new", false, None));
        o.push(msg(
            "c/detections",
            "fresh",
            true,
            Some(now + Duration::from_secs(1)),
        ));
        let (first, expired) = o.pop(now);
        assert_eq!(first.unwrap().topic, "a/events");
        assert_eq!(expired, 2);
        assert_eq!(drain(&mut o, now), ["c/detections=fresh"]);
        assert_eq!(o.pop(now), (None, 0));
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_expiring_message_first() {
        let now = Instant::now();
        let later = Some(now + Duration::from_secs(60));
        let mut o = Outbox::new(3);
        o.push(msg("e", "1", false, None));
        o.push(msg("a/detections", "x", true, later));
        o.push(msg("e", "2", false, None));
        assert_eq!(o.push(msg("e", "3", false, None)), 1);
        assert_eq!(o.len(), 3);
        assert_eq!(drain(&mut o, now), ["e=1", "e=2", "e=3"]);
        // Only events: the oldest goes.
        for i in 0..5 {
            o.push(msg("e", &i.to_string(), false, None));
        }
        assert_eq!(drain(&mut o, now), ["e=2", "e=3", "e=4"]);
    }
}
