//! The node's ROS parameters: `vocabulary`, `score_threshold`, `enabled` and `frame_id` change
//! the next frame; topic names and QoS are declared too, read-only (they are set at start-up).

use std::sync::Arc;

use ros2_client::{NodeOptions, ParameterValue};

use super::config::Ros2Settings;
use super::control::Control;
use crate::vocab::store::VocabStore;

/// The parameters fixed at start-up, with their values.
fn startup(s: &Ros2Settings) -> Vec<(&'static str, ParameterValue)> {
    let text = |v: &String| ParameterValue::String(v.clone());
    let int = |v: usize| ParameterValue::Integer(v as i64);
    vec![
        ("image_topic", text(&s.image_topic)),
        ("compressed_topic", text(&s.compressed_topic)),
        ("detections_topic", text(&s.detections_topic)),
        ("annotated_topic", text(&s.annotated_topic)),
        ("vocabulary_topic", text(&s.vocabulary_topic)),
        ("image_reliability", text(&s.image_reliability)),
        ("image_depth", int(s.image_depth)),
        ("detections_reliability", text(&s.detections_reliability)),
        ("detections_depth", int(s.detections_depth)),
    ]
}

/// Declares every parameter with its first value; checks and applies each change. A refused
/// change keeps the old value, and the service reply says why.
pub fn node_options(
    control: &Arc<Control>,
    store: &Arc<VocabStore>,
    settings: &Ros2Settings,
    list: Vec<String>,
    score: f32,
) -> NodeOptions {
    let fixed = startup(settings);
    let mut options = NodeOptions::new()
        .enable_rosout(false)
        .declare_parameter("vocabulary", ParameterValue::StringArray(list))
        .declare_parameter("score_threshold", ParameterValue::Double(f64::from(score)))
        .declare_parameter("enabled", ParameterValue::Boolean(settings.enabled))
        .declare_parameter(
            "frame_id",
            ParameterValue::String(settings.frame_id.clone()),
        );
    for (name, value) in &fixed {
        options = options.declare_parameter(name, value.clone());
    }
    let (control, store) = (control.clone(), store.clone());
    options
        .parameter_validator(Box::new(move |name, value| {
            match fixed.iter().find(|(n, _)| *n == name) {
                Some((_, v)) if v == value => Ok(()),
                Some(_) => Err(format!(
                    "{name} is read-only at run time: set it at start-up ([ros2] {name} or --{})",
                    name.replace('_', "-")
                )),
                None => check(name, value),
            }
        }))
        .parameter_set_action(Box::new(move |name, value| match (name, value) {
            ("vocabulary", ParameterValue::StringArray(list)) => {
                control.set_vocabulary(&store, list)
            }
            ("score_threshold", ParameterValue::Double(v)) => control.set_score_threshold(*v),
            ("enabled", ParameterValue::Boolean(on)) => {
                control.set_enabled(*on);
                Ok(())
            }
            ("frame_id", ParameterValue::String(id)) => {
                control.set_frame_id(id);
                Ok(())
            }
            _ => Ok(()),
        }))
}

/// The one range rule of score thresholds, as this module reports errors.
fn unit(v: f64) -> Result<(), String> {
    crate::engine::postprocess::check_unit("score_threshold", v as f32).map_err(|e| e.to_string())
}

/// Type and range checks of a change to a run-time parameter (before anything is built).
fn check(name: &str, value: &ParameterValue) -> Result<(), String> {
    use ParameterValue as V;
    match (name, value) {
        ("vocabulary", V::StringArray(list)) if list.iter().all(|s| s.trim().is_empty()) => {
            Err("vocabulary must name at least one class".into())
        }
        ("score_threshold", V::Double(v)) if unit(*v).is_err() => unit(*v),
        ("vocabulary", V::StringArray(_))
        | ("score_threshold", V::Double(_))
        | ("enabled", V::Boolean(_))
        | ("frame_id", V::String(_)) => Ok(()),
        ("vocabulary", _) => Err("vocabulary must be a string array".into()),
        ("score_threshold", _) => Err("score_threshold must be a double (write 1.0, not 1)".into()),
        ("enabled", _) => Err("enabled must be a boolean".into()),
        ("frame_id", _) => Err("frame_id must be a string".into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_time_parameter_checks() {
        let list =
            |v: &[&str]| ParameterValue::StringArray(v.iter().map(|s| s.to_string()).collect());
        assert!(check("vocabulary", &list(&["forklift"])).is_ok());
        assert!(check("vocabulary", &list(&[" "])).is_err());
        assert!(check("vocabulary", &ParameterValue::String("a".into())).is_err());
        assert!(check("score_threshold", &ParameterValue::Double(0.3)).is_ok());
        assert!(check("score_threshold", &ParameterValue::Double(7.0)).is_err());
        assert!(check("score_threshold", &ParameterValue::Integer(1)).is_err());
        assert!(check("enabled", &ParameterValue::Boolean(false)).is_ok());
        assert!(check("enabled", &ParameterValue::String("no".into())).is_err());
        assert!(check("frame_id", &ParameterValue::String("cam".into())).is_ok());
        assert!(check("use_sim_time", &ParameterValue::Boolean(true)).is_ok());
    }

    #[test]
    fn startup_parameters_mirror_the_settings() {
        let s = Ros2Settings::default();
        let fixed = startup(&s);
        assert_eq!(fixed.len(), 9);
        let image = fixed.iter().find(|(n, _)| *n == "image_topic").unwrap();
        assert_eq!(image.1, ParameterValue::String("/camera/image_raw".into()));
        let depth = fixed.iter().find(|(n, _)| *n == "image_depth").unwrap();
        assert_eq!(depth.1, ParameterValue::Integer(1));
    }
}
