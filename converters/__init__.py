"""SMSR converters: checkpoint -> PyTorch model -> ONNX (reference/deploy) -> TensorRT engine."""
