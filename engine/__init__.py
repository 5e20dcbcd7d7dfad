"""SMSR runtime: image I/O, tiling, backends (TensorRT, ONNX Runtime), CLI. No PyTorch needed."""
