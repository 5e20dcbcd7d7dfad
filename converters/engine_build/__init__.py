"""Engine building for converters/build_engine.py: optimization profiles, builder adapters (TensorRT 10.x/11.x and
TensorRT-RTX share one code path), GPU detection, progress display, engine naming and manifests.

No TensorRT import at module level: the ONNX steps must work without any TensorRT installed.
"""
