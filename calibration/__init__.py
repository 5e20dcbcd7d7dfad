"""INT8 calibration for SMSR: calibration images -> activation ranges -> explicit Q/DQ ONNX graphs -> report.

    data.py    deterministic calibration batches from a folder of images (whole images or LR patches)
    ranges.py  activation ranges with ONNX Runtime's calibrators (max, percentile, entropy)
    qdq.py     Q/DQ insertion (onnxruntime.quantization, QDQ format, TensorRT-style symmetric INT8),
               reference and deploy graphs from one set of ranges
    report.py  calibration report: ranges, quantized / excluded layers, accuracy against FP32
"""
