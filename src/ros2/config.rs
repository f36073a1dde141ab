//! `[ros2]` settings of the ROS 2 node: node name, topics, QoS, initial parameters; their flags,
//! environment variables and checks, and how topic names resolve against the node.

section! {
    /// `[ros2]`: the node run by `dosod ros` (or `dosod serve --ros2`).
    pub struct Ros2Settings, flags Ros2Args (global = false) {
        /// Node name.
        node_name: String = "dosod".into() => "node-name", "DOSOD_ROS_NODE_NAME";
        /// Absolute namespace of the node (`/` or `/robot1`).
        namespace: String = "/".into() => "namespace", "DOSOD_ROS_NAMESPACE";
        /// DDS domain; unset: ROS_DOMAIN_ID, else 0.
        domain_id: Option<u16> = None => "domain-id", "DOSOD_ROS_DOMAIN_ID";
        /// sensor_msgs/Image input; empty: none. `~/x` is under the node, `x` under its namespace.
        image_topic: String = "/camera/image_raw".into() => "image-topic", "DOSOD_ROS_IMAGE_TOPIC";
        /// sensor_msgs/CompressedImage input (JPEG or PNG); empty: none.
        compressed_topic: String = String::new() => "compressed-topic", "DOSOD_ROS_COMPRESSED_TOPIC";
        /// vision_msgs/Detection2DArray output.
        detections_topic: String = "~/detections".into() => "detections-topic", "DOSOD_ROS_DETECTIONS_TOPIC";
        /// Annotated sensor_msgs/Image (rgb8) output for debugging; empty: none.
        annotated_topic: String = String::new() => "annotated-topic", "DOSOD_ROS_ANNOTATED_TOPIC";
        /// std_msgs/String input with a comma-separated class list (`|` between synonyms).
        vocabulary_topic: String = "~/set_vocabulary".into() => "vocabulary-topic", "DOSOD_ROS_VOCABULARY_TOPIC";
        /// Replaces the image's header.frame_id in the output; empty: copied.
        frame_id: String = String::new() => "frame-id", "DOSOD_ROS_FRAME_ID";
        /// QoS of the image subscriptions: best_effort (matches every camera) or reliable.
        image_reliability: String = "best_effort".into() => "image-reliability", "DOSOD_ROS_IMAGE_RELIABILITY";
        /// History depth of the image subscriptions (1: only the newest frame).
        image_depth: usize = 1 => "image-depth", "DOSOD_ROS_IMAGE_DEPTH";
        /// QoS of the detection and annotated publishers: reliable or best_effort.
        detections_reliability: String = "reliable".into() => "detections-reliability", "DOSOD_ROS_DETECTIONS_RELIABILITY";
        /// History depth of the detection publisher.
        detections_depth: usize = 10 => "detections-depth", "DOSOD_ROS_DETECTIONS_DEPTH";
        /// Initial classes ("person, forklift|fork lift"); empty: `vocabulary`, else the bundle's.
        classes: String = String::new() => "classes", "DOSOD_ROS_CLASSES";
        /// Initial named or built-in vocabulary, used when `classes` is empty.
        vocabulary: String = String::new() => "vocabulary", "DOSOD_ROS_VOCABULARY";
        /// Initial minimum score; unset: the bundle's.
        score_threshold: Option<f32> = None => "score-threshold", "DOSOD_ROS_SCORE_THRESHOLD";
        /// Initial value of the `enabled` parameter (true/false).
        enabled: bool = true => "enabled", "DOSOD_ROS_ENABLED";
        /// Seconds between summary log lines (counts, latency); 0: only at exit.
        summary_interval_s: f64 = 30.0 => "summary-interval-s", "DOSOD_ROS_SUMMARY_INTERVAL_S";
    }
}

impl Ros2Args {
    /// The file's `[ros2]` with every given flag applied, `ROS_DOMAIN_ID` read when no domain
    /// is set, checked.
    pub fn settings(&self, base: &Ros2Settings) -> Result<Ros2Settings, String> {
        self.settings_with(base, std::env::var("ROS_DOMAIN_ID").ok())
    }

    fn settings_with(
        &self,
        base: &Ros2Settings,
        ros_domain_id: Option<String>,
    ) -> Result<Ros2Settings, String> {
        let mut s = base.clone();
        self.apply(&mut s);
        if s.domain_id.is_none()
            && let Some(v) = ros_domain_id.filter(|v| !v.trim().is_empty())
        {
            let id = v
                .trim()
                .parse()
                .map_err(|_| format!("ROS_DOMAIN_ID `{v}` is not a domain id (0..=232)"))?;
            s.domain_id = Some(id);
        }
        s.validate()?;
        Ok(s)
    }
}

impl Ros2Settings {
    /// Checks every key; the message names it.
    pub fn validate(&self) -> Result<(), String> {
        if !is_token(&self.node_name) {
            return Err(format!(
                "ros2.node_name `{}`: letters, digits and `_`, not starting with a digit",
                self.node_name
            ));
        }
        if self.namespace != "/"
            && !(self.namespace.starts_with('/') && self.namespace[1..].split('/').all(is_token))
        {
            return Err(format!(
                "ros2.namespace `{}`: `/` or an absolute name such as `/robot1`",
                self.namespace
            ));
        }
        if let Some(d) = self.domain_id
            && d > 232
        {
            return Err(format!("ros2.domain_id {d}: must be 0..=232"));
        }
        if self.image_topic.is_empty() && self.compressed_topic.is_empty() {
            return Err("ros2: image_topic and compressed_topic are both empty".into());
        }
        for (key, topic, optional) in [
            ("image_topic", &self.image_topic, true),
            ("compressed_topic", &self.compressed_topic, true),
            ("detections_topic", &self.detections_topic, false),
            ("annotated_topic", &self.annotated_topic, true),
            ("vocabulary_topic", &self.vocabulary_topic, false),
        ] {
            if !(optional && topic.is_empty()) {
                self.resolve(topic)
                    .map_err(|e| format!("ros2.{key}: {e}"))?;
            }
        }
        for (key, v) in [
            ("image_reliability", &self.image_reliability),
            ("detections_reliability", &self.detections_reliability),
        ] {
            if !matches!(v.as_str(), "best_effort" | "reliable") {
                return Err(format!("ros2.{key} `{v}`: best_effort or reliable"));
            }
        }
        if self.image_depth == 0 || self.detections_depth == 0 {
            return Err("ros2: image_depth and detections_depth must be >= 1".into());
        }
        if let Some(t) = self.score_threshold {
            crate::engine::postprocess::check_unit("ros2.score_threshold", t)
                .map_err(|e| e.to_string())?;
        }
        if !self.summary_interval_s.is_finite() || self.summary_interval_s < 0.0 {
            return Err("ros2.summary_interval_s must be >= 0".into());
        }
        Ok(())
    }

    /// The node's fully qualified name (`/dosod`, `/robot1/dosod`).
    pub fn node_fqn(&self) -> String {
        join(&self.namespace, &self.node_name)
    }

    /// A topic as an absolute name: `~/x` under the node, `/x` as is, `x` under the namespace.
    pub fn resolve(&self, topic: &str) -> Result<String, String> {
        let full = if let Some(rest) = topic.strip_prefix("~/") {
            join(&self.node_fqn(), rest)
        } else if topic.starts_with('/') {
            topic.to_string()
        } else {
            join(&self.namespace, topic)
        };
        if full.len() < 2 || !full[1..].split('/').all(is_token) {
            return Err(format!(
                "`{topic}` is not a valid topic name (tokens of letters, digits and `_`)"
            ));
        }
        Ok(full)
    }
}

fn join(namespace: &str, name: &str) -> String {
    format!("{}/{name}", namespace.trim_end_matches('/'))
}

/// A ROS name token: `[A-Za-z_][A-Za-z0-9_]*` without a double underscore.
fn is_token(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.contains("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_resolve_against_the_node() {
        let s = Ros2Settings::default();
        assert_eq!(s.resolve("~/detections").unwrap(), "/dosod/detections");
        assert_eq!(s.resolve("/camera/image_raw").unwrap(), "/camera/image_raw");
        assert_eq!(s.resolve("image").unwrap(), "/image");
        let s = Ros2Settings {
            namespace: "/robot1".into(),
            ..Default::default()
        };
        assert_eq!(s.node_fqn(), "/robot1/dosod");
        assert_eq!(
            s.resolve("~/set_vocabulary").unwrap(),
            "/robot1/dosod/set_vocabulary"
        );
        assert_eq!(s.resolve("cam/image").unwrap(), "/robot1/cam/image");
        for bad in ["", "/", "a//b", "/1abc", "a b", "a/", "x__y"] {
            assert!(s.resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_and_bad_values_are_named() {
        let args = Ros2Args {
            image_topic: Some("/front/image".into()),
            domain_id: Some(Some(7)),
            ..Default::default()
        };
        let s = args
            .settings_with(&Ros2Settings::default(), Some("3".into()))
            .unwrap();
        assert_eq!(
            (s.image_topic.as_str(), s.domain_id),
            ("/front/image", Some(7))
        );
        // ROS_DOMAIN_ID counts only when neither the flag nor the file sets a domain
        let none = Ros2Args::default();
        let file = Ros2Settings {
            domain_id: Some(9),
            ..Default::default()
        };
        let env = Some("3".to_string());
        assert_eq!(
            none.settings_with(&file, env.clone()).unwrap().domain_id,
            Some(9)
        );
        let d = Ros2Settings::default();
        assert_eq!(none.settings_with(&d, env).unwrap().domain_id, Some(3));
        assert!(none.settings_with(&d, Some("x".into())).is_err());
        assert_eq!(none.settings_with(&d, None).unwrap().domain_id, None);
        let bad = |a: Ros2Args| a.settings_with(&Ros2Settings::default(), None).unwrap_err();
        let e = bad(Ros2Args {
            image_reliability: Some("sometimes".into()),
            ..Default::default()
        });
        assert!(e.contains("image_reliability"), "{e}");
        let e = bad(Ros2Args {
            detections_topic: Some("a//b".into()),
            ..Default::default()
        });
        assert!(e.contains("detections_topic"), "{e}");
        let e = bad(Ros2Args {
            namespace: Some("robot".into()),
            ..Default::default()
        });
        assert!(e.contains("namespace"), "{e}");
        let e = bad(Ros2Args {
            domain_id: Some(Some(300)),
            ..Default::default()
        });
        assert!(e.contains("domain_id"), "{e}");
    }
}
