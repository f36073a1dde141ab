"""Model bundles without torch: the model.toml writer and the ONNX Runtime checks of written graphs."""
