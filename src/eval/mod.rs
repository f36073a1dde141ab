//! Evaluation: COCO-style AP / AR of detections against ground truth (`dosod eval`).

pub(crate) mod coco;
