"""Activation ranges with ONNX Runtime's calibrators: max (MinMax), percentile and entropy (histograms).

ONNX Runtime adds every tensor of the calibrated op types (their inputs and outputs) as graph outputs and runs the
model on the calibration batches. We feed it one batch per collect call: the histogram calibrators keep all outputs
of a call in memory, and whole images with 64 channels would otherwise need gigabytes.
All ranges are symmetric (|min| = |max|): TensorRT's INT8 Q/DQ needs zero points of 0.
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationMethod, create_calibrator
from onnxruntime.quantization.calibrate import EntropyCalibrater, MinMaxCalibrater, PercentileCalibrater
from onnxruntime.quantization.calibrate import TensorData, TensorsData

from .data import ArrayReader

METHODS = {"max": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
           "entropy": CalibrationMethod.Entropy}
METHOD_NAMES = {v: k for k, v in METHODS.items()}
DEFAULT_PERCENTILE = 99.999


def compute_ranges(model_path: str | Path, batches: Sequence[np.ndarray], method: str = "max",
                   op_types: Sequence[str] | None = ("Conv", "ConvTranspose"), percentile: float = DEFAULT_PERCENTILE,
                   num_bins: int | None = None, input_name: str = "lr",
                   progress: Callable[[int, int], None] | None = None,
                   extra_tensors: Sequence[str] = ()) -> TensorsData:
    """Ranges of the inputs/outputs of every `op_types` node of an FP32 model, and of `extra_tensors` (e.g. SMB
    layer outputs that feed no conv), over `batches`."""
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    if not batches:
        raise ValueError("no calibration batches")
    extra: dict = {"symmetric": True}
    if method == "percentile":
        extra.update(percentile=percentile, num_bins=num_bins or 2048)
    elif method == "entropy":
        extra.update(num_bins=num_bins or 512, num_quantized_bins=128)
    with tempfile.TemporaryDirectory(prefix="smsr_calib_") as tmp:
        calibrator = _calibrator(Path(model_path), list(op_types) if op_types else None, str(Path(tmp) / "aug.onnx"),
                                 method, extra, tuple(extra_tensors))
        for i, batch in enumerate(batches):
            with contextlib.redirect_stdout(io.StringIO()):  # ONNX Runtime prints per-call chatter
                calibrator.collect_data(ArrayReader([batch], input_name))
            if progress:
                progress(i + 1, len(batches))
        with contextlib.redirect_stdout(io.StringIO()):
            data = calibrator.compute_data()
        del calibrator  # holds an InferenceSession on the temporary model
    missing = [t for t in extra_tensors if t not in dict(data.items())]
    if missing:
        raise ValueError(f"tensor(s) {missing[:3]} not found in {model_path} (or not float): cannot calibrate them")
    return data


def _calibrator(model: Path, op_types, augmented: str, method: str, extra: dict, extra_tensors: tuple[str, ...]):
    """create_calibrator, plus `extra_tensors` among the tensors it measures. create_calibrator builds the
    augmented graph right away, so the calibrator is made the same way here with its tensor selection widened
    first (select_tensors_to_calibrate is what every ONNX Runtime calibrator asks)."""
    if not extra_tensors:
        return create_calibrator(model, op_types, augmented_model_path=augmented, calibrate_method=METHODS[method],
                                 extra_options=extra, providers=["CPUExecutionProvider"])
    if method == "max":
        cal = MinMaxCalibrater(model, op_types, augmented, symmetric=True)
    elif method == "percentile":
        cal = PercentileCalibrater(model, op_types, augmented, symmetric=True, num_bins=extra["num_bins"],
                                   percentile=extra["percentile"])
    else:
        cal = EntropyCalibrater(model, op_types, augmented, symmetric=True, num_bins=extra["num_bins"],
                                num_quantized_bins=extra["num_quantized_bins"])
    base = cal.select_tensors_to_calibrate

    def select(m):
        tensors, infos = base(m)
        return tensors | {t for t in extra_tensors if t in infos}, infos
    cal.select_tensors_to_calibrate = select
    cal.augment_graph()
    cal.execution_providers = ["CPUExecutionProvider"]
    cal.create_inference_session()
    return cal


def as_floats(data: TensorsData) -> dict[str, tuple[float, float]]:
    """tensor name -> (lowest, highest) as Python floats (for reports and tests)."""
    out = {}
    for name, td in data.items():
        lo, hi = td.range_value
        out[name] = (float(np.asarray(lo).reshape(-1)[0]), float(np.asarray(hi).reshape(-1)[0]))
    return out


def method_name(data: TensorsData) -> str:
    return METHOD_NAMES[data.calibration_method]


def with_ranges(data: TensorsData, extra: dict[str, TensorData]) -> TensorsData:
    """A copy of `data` with more tensors (same calibration method)."""
    return TensorsData(data.calibration_method, {**dict(data.items()), **extra})
