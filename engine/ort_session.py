"""ONNX Runtime sessions for SMSR graphs: registers our custom-op library when the graph needs it."""
from __future__ import annotations

import os
from pathlib import Path

CUSTOM_DOMAIN = "smsr"


def graph_needs_custom_ops(model_path: str | os.PathLike) -> bool:
    """True when the model imports the 'smsr' op domain (the deploy graph)."""
    import onnx  # reads only the header-sized protobuf fields we need
    proto = onnx.load(str(model_path), load_external_data=False)
    return any(op.domain == CUSTOM_DOMAIN for op in proto.opset_import)


def create_session(model_path: str | os.PathLike, threads: int | None = None,
                   providers: list[str] | None = None):
    """An InferenceSession for an SMSR graph, on the given providers (default: best available)."""
    import onnxruntime as ort
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {model_path}")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if graph_needs_custom_ops(model_path):
        from .ort_ops import register_custom_ops
        register_custom_ops(opts)
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
