"""Independent Python references the Rust tests compare against (ONNX Runtime, pycocotools)."""
