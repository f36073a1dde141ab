//! `[ros2]` settings of the ROS 2 node: node name, topics, QoS, initial parameters; their flags,
//! environment variables and checks, and how topic names resolve against the node.

use serde::{Deserialize, Serialize};

/// `[ros2]`: the node run by `dosod ros`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Ros2Settings {
    pub node_name: String,
    /// Absolute namespace of the node (`/` or `/robot1`).
    pub namespace: String,
    /// DDS domain; unset: `ROS_DOMAIN_ID`, else 0.
    pub domain_id: Option<u16>,
    /// `sensor_msgs/Image` input; empty: none. `~/x` is under the node, `x` under its namespace.
    pub image_topic: String,
    /// `sensor_msgs/CompressedImage` input (JPEG or PNG); empty: none.
    pub compressed_topic: String,
    /// `vision_msgs/Detection2DArray` output.
    pub detections_topic: String,
    /// Annotated `sensor_msgs/Image` (rgb8) output for debugging; empty: none.
    pub annotated_topic: String,
    /// `std_msgs/String` with a comma-separated class list (`|` between synonyms).
    pub vocabulary_topic: String,
    /// Replaces the image's `header.frame_id` in the output; empty: copied.
    pub frame_id: String,
    /// QoS of the image subscriptions: `best_effort` (matches every camera) or `reliable`.
    pub image_reliability: String,
    /// History depth of the image subscriptions (1: only the newest frame).
    pub image_depth: usize,
    /// QoS of the detection and annotated publishers.
    pub detections_reliability: String,
    pub detections_depth: usize,
    /// Initial classes ("person, forklift|fork lift"); empty: `vocabulary`, else the bundle's.
    pub classes: String,
    /// Initial named or built-in vocabulary, used when `classes` is empty.
    pub vocabulary: String,
    /// Initial minimum score [default: the bundle's].
    pub score_threshold: Option<f32>,
    /// Initial value of the `enabled` parameter.
    pub enabled: bool,
    /// Seconds between summary log lines (counts, latency); 0: only at exit.
    pub summary_interval_s: f64,
}

impl Default for Ros2Settings {
    fn default() -> Self {
        Self {
            node_name: "dosod".into(),
            namespace: "/".into(),
            domain_id: None,
            image_topic: "/camera/image_raw".into(),
            compressed_topic: String::new(),
            detections_topic: "~/detections".into(),
            annotated_topic: String::new(),
            vocabulary_topic: "~/set_vocabulary".into(),
            frame_id: String::new(),
            image_reliability: "best_effort".into(),
            image_depth: 1,
            detections_reliability: "reliable".into(),
            detections_depth: 10,
            classes: String::new(),
            vocabulary: String::new(),
            score_threshold: None,
            enabled: true,
            summary_interval_s: 30.0,
        }
    }
}

/// Flags of `dosod ros`; each overrides the `[ros2]` key of the same name.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Ros2Args {
    /// Node name [config: ros2.node_name].
    #[arg(long, env = "DOSOD_ROS_NODE_NAME")]
    pub node_name: Option<String>,
    /// Node namespace, `/` or e.g. `/robot1` [config: ros2.namespace].
    #[arg(long, env = "DOSOD_ROS_NAMESPACE")]
    pub namespace: Option<String>,
    /// DDS domain [config: ros2.domain_id; when neither is set: ROS_DOMAIN_ID, else 0].
    #[arg(long, env = "DOSOD_ROS_DOMAIN_ID")]
    pub domain_id: Option<u16>,
    /// sensor_msgs/Image input; "": none [config: ros2.image_topic].
    #[arg(long, env = "DOSOD_ROS_IMAGE_TOPIC")]
    pub image_topic: Option<String>,
    /// sensor_msgs/CompressedImage input (JPEG, PNG); "": none [config: ros2.compressed_topic].
    #[arg(long, env = "DOSOD_ROS_COMPRESSED_TOPIC")]
    pub compressed_topic: Option<String>,
    /// vision_msgs/Detection2DArray output [config: ros2.detections_topic].
    #[arg(long, env = "DOSOD_ROS_DETECTIONS_TOPIC")]
    pub detections_topic: Option<String>,
    /// Annotated sensor_msgs/Image output; "": none [config: ros2.annotated_topic].
    #[arg(long, env = "DOSOD_ROS_ANNOTATED_TOPIC")]
    pub annotated_topic: Option<String>,
    /// std_msgs/String input with a comma-separated class list [config: ros2.vocabulary_topic].
    #[arg(long, env = "DOSOD_ROS_VOCABULARY_TOPIC")]
    pub vocabulary_topic: Option<String>,
    /// Replaces the image's header.frame_id; "": copied [config: ros2.frame_id].
    #[arg(long, env = "DOSOD_ROS_FRAME_ID")]
    pub frame_id: Option<String>,
    /// Image QoS: best_effort or reliable [config: ros2.image_reliability].
    #[arg(long, env = "DOSOD_ROS_IMAGE_RELIABILITY")]
    pub image_reliability: Option<String>,
    /// Image history depth; 1: newest frame only [config: ros2.image_depth].
    #[arg(long, env = "DOSOD_ROS_IMAGE_DEPTH")]
    pub image_depth: Option<usize>,
    /// Detections QoS: reliable or best_effort [config: ros2.detections_reliability].
    #[arg(long, env = "DOSOD_ROS_DETECTIONS_RELIABILITY")]
    pub detections_reliability: Option<String>,
    /// Detections history depth [config: ros2.detections_depth].
    #[arg(long, env = "DOSOD_ROS_DETECTIONS_DEPTH")]
    pub detections_depth: Option<usize>,
    /// Initial classes, e.g. "person, forklift|fork lift" [config: ros2.classes].
    #[arg(long, env = "DOSOD_ROS_CLASSES")]
    pub classes: Option<String>,
    /// Initial named or built-in vocabulary when --classes is empty [config: ros2.vocabulary].
    #[arg(long, env = "DOSOD_ROS_VOCABULARY")]
    pub vocabulary: Option<String>,
    /// Initial minimum score [config: ros2.score_threshold; default: the bundle's].
    #[arg(long, env = "DOSOD_ROS_SCORE_THRESHOLD")]
    pub score_threshold: Option<f32>,
    /// Initial value of the `enabled` parameter [config: ros2.enabled].
    #[arg(long, env = "DOSOD_ROS_ENABLED")]
    pub enabled: Option<bool>,
    /// Seconds between summary log lines; 0: only at exit [config: ros2.summary_interval_s].
    #[arg(long, env = "DOSOD_ROS_SUMMARY_INTERVAL_S")]
    pub summary_interval_s: Option<f64>,
}

impl Ros2Args {
    /// The file's `[ros2]` with every given flag applied, `ROS_DOMAIN_ID` read when no domain
    /// is set, checked.
    pub fn apply(&self, base: &Ros2Settings) -> Result<Ros2Settings, String> {
        self.apply_with(base, std::env::var("ROS_DOMAIN_ID").ok())
    }

    fn apply_with(
        &self,
        base: &Ros2Settings,
        ros_domain_id: Option<String>,
    ) -> Result<Ros2Settings, String> {
        let mut s = base.clone();
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = &self.$f { s.$f = v.clone(); } )* };
        }
        set!(
            node_name,
            namespace,
            image_topic,
            compressed_topic,
            detections_topic,
            annotated_topic,
            vocabulary_topic,
            frame_id,
            image_reliability,
            image_depth,
            detections_reliability,
            detections_depth,
            classes,
            vocabulary,
            enabled,
            summary_interval_s
        );
        if self.domain_id.is_some() {
            s.domain_id = self.domain_id;
        }
        if s.domain_id.is_none()
            && let Some(v) = ros_domain_id.filter(|v| !v.trim().is_empty())
        {
            let id = v
                .trim()
                .parse()
                .map_err(|_| format!("ROS_DOMAIN_ID `{v}` is not a domain id (0..=232)"))?;
            s.domain_id = Some(id);
        }
        if self.score_threshold.is_some() {
            s.score_threshold = self.score_threshold;
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
            domain_id: Some(7),
            ..Default::default()
        };
        let s = args
            .apply_with(&Ros2Settings::default(), Some("3".into()))
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
            none.apply_with(&file, env.clone()).unwrap().domain_id,
            Some(9)
        );
        let d = Ros2Settings::default();
        assert_eq!(none.apply_with(&d, env).unwrap().domain_id, Some(3));
        assert!(none.apply_with(&d, Some("x".into())).is_err());
        assert_eq!(none.apply_with(&d, None).unwrap().domain_id, None);
        let bad = |a: Ros2Args| a.apply_with(&Ros2Settings::default(), None).unwrap_err();
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
            domain_id: Some(300),
            ..Default::default()
        });
        assert!(e.contains("domain_id"), "{e}");
    }
}
