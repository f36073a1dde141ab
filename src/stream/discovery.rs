//! Home Assistant MQTT discovery (opt-in, `[mqtt] ha_discovery`): per camera a binary sensor
//! ("<label> detected") and a count sensor per label, a count sensor per zone and label, all
//! available while `<prefix>/available` says `online` — so Home Assistant shows them with no YAML
//! (pure: the messages; the publisher sends them retained on every connection).

use serde_json::{Value, json};

/// A label or zone as part of a Home Assistant object id (`[a-zA-Z0-9_-]`).
fn object_id(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// One camera's discovery configs: `(topic, JSON payload)`, retained. `zones` pairs each zone
/// with the labels it counts.
pub fn camera_configs(
    discovery_prefix: &str,
    prefix: &str,
    camera: &str,
    labels: &[String],
    zones: &[(String, Vec<String>)],
) -> Vec<(String, String)> {
    let device = json!({
        "identifiers": [format!("dosod_{}", object_id(camera))],
        "name": camera,
        "manufacturer": "dosod",
        "model": "open-vocabulary camera (DOSOD)",
    });
    let availability = format!("{prefix}/available");
    let common = |name: String, uid: String, state_topic: String| {
        json!({
            "name": name,
            "unique_id": uid,
            "object_id": uid,
            "state_topic": state_topic,
            "availability_topic": availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        })
    };
    let mut out = Vec::new();
    let mut push = |component: &str, uid: &str, mut config: Value, extra: Value| {
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        out.push((
            format!("{discovery_prefix}/{component}/{uid}/config"),
            config.to_string(),
        ));
    };
    let count = json!({"unit_of_measurement": "objects", "state_class": "measurement", "icon": "mdi:counter"});
    let cam = object_id(camera);
    // Each label, then the total (`None`): the count topic's last level and the entity's name.
    let levels = |labels: &[String]| -> Vec<(String, String)> {
        labels
            .iter()
            .map(|l| (super::mqtt::count_level(l), l.clone()))
            .chain([("all".to_string(), "object".to_string())])
            .collect()
    };
    for (level, what) in levels(labels) {
        let state = format!("{prefix}/{camera}/{level}");
        let id = object_id(&level);
        let uid = format!("dosod_{cam}__{id}");
        push(
            "binary_sensor",
            &uid,
            common(format!("{what} detected"), uid.clone(), state.clone()),
            json!({"device_class": "occupancy", "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}"}),
        );
        let uid = format!("dosod_{cam}__{id}_count");
        push(
            "sensor",
            &uid,
            common(format!("{what} count"), uid.clone(), state),
            count.clone(),
        );
    }
    for (zone, zone_labels) in zones {
        for (level, what) in levels(zone_labels) {
            let uid = format!(
                "dosod_{cam}__{}__{}_count",
                object_id(zone),
                object_id(&level)
            );
            push(
                "sensor",
                &uid,
                common(
                    format!("{zone} {what} count"),
                    uid.clone(),
                    format!("{prefix}/{camera}/{zone}/{level}"),
                ),
                count.clone(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_and_zone_gets_valid_configs_on_the_right_topics() {
        let labels = vec!["dog face".to_string(), "person".to_string()];
        let zones = vec![("door".to_string(), vec!["person".to_string()])];
        let configs = camera_configs("homeassistant", "dosod", "dock", &labels, &zones);
        let topics: Vec<&str> = configs.iter().map(|(t, _)| t.as_str()).collect();
        for want in [
            "homeassistant/binary_sensor/dosod_dock__dog_face/config",
            "homeassistant/sensor/dosod_dock__dog_face_count/config",
            "homeassistant/binary_sensor/dosod_dock__all/config",
            "homeassistant/sensor/dosod_dock__door__person_count/config",
            "homeassistant/sensor/dosod_dock__door__all_count/config",
        ] {
            assert!(topics.contains(&want), "{want} missing from {topics:?}");
        }
        assert_eq!(configs.len(), 3 * 2 + 2);
        for (topic, payload) in &configs {
            let v: Value = serde_json::from_str(payload).unwrap();
            assert_eq!(v["availability_topic"], "dosod/available", "{topic}");
            assert!(topic.contains(v["unique_id"].as_str().unwrap()), "{topic}");
            assert!(
                v["state_topic"]
                    .as_str()
                    .unwrap()
                    .starts_with("dosod/dock/")
            );
            assert_eq!(v["device"]["identifiers"][0], "dosod_dock");
        }
        let dog: Value = serde_json::from_str(&configs[0].1).unwrap();
        assert_eq!(dog["state_topic"], "dosod/dock/dog_face");
        assert_eq!(dog["name"], "dog face detected");
        assert_eq!(object_id("crème brûlée/x"), "cr_me_br_l_e_x");
    }
}
