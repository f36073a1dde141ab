"""Writes tests/fixtures/ros2/cdr_golden.json: Cyclone DDS's CDR bytes for sample ROS messages.

dosod's hand-written Rust message types (src/ros2/msg.rs) must produce exactly these bytes for
the same values; the samples use odd-length strings and non-zero covariance ends so that
alignment and field order both matter. Run: .venv/bin/python tests/ros2/make_cdr_golden.py
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import ros_msgs as m  # noqa: E402


def detection(class_id: str, score: float, cx: float, cy: float, w: float, h: float, ident: str) -> m.Detection2D:
    cov = [0.0] * 36
    cov[0], cov[35] = 0.25, -1.5
    return m.Detection2D(
        header=m.Header(m.Time(5, 7), "cam"),
        results=[m.ObjectHypothesisWithPose(
            m.ObjectHypothesis(class_id, score),
            m.PoseWithCovariance(m.Pose(m.Point(1.0, 2.0, 3.0), m.Quaternion(0.0, 0.0, 0.0, 1.0)), cov))],
        bbox=m.BoundingBox2D(m.Pose2D(m.Point2D(cx, cy), 0.0), w, h),
        id=ident,
    )


def main() -> None:
    samples = {
        "detection_array": m.Detection2DArray(m.Header(m.Time(5, 7), "cam"), [
            detection("red apple", 0.45672235, 168.8, 97.16, 96.4, 105.71, "a"),
            detection("pizza", 0.2, 549.0, 264.9, 106.2, 137.7, ""),
        ]),
        "empty_detection_array": m.Detection2DArray(m.Header(m.Time(-1, 999_999_999), ""), []),
        "image": m.Image(m.Header(m.Time(1, 2), "camera_optical"), 2, 2, "bgr8", 0, 7,
                         bytes([3, 2, 1, 6, 5, 4, 0, 3, 2, 1, 6, 5, 4, 9])),
        "compressed_image": m.CompressedImage(m.Header(m.Time(3, 4), "c"), "jpeg", bytes([255, 216, 255])),
        "string": m.String("pizza, rose|pie"),
    }
    out = {name: msg.serialize().hex() for name, msg in samples.items()}
    path = HERE.parent / "fixtures" / "ros2" / "cdr_golden.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
