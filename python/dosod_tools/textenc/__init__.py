"""Text-encoder export helpers (no torch): safetensors I/O, the shared transformer ONNX graph
builder, and the writer for the `models/encoders/<name>/` directory described in
docs/model-bundle.md ("Text encoders")."""
