"""INT8 calibration for SMSR: calibration images -> activation ranges -> explicit Q/DQ ONNX graphs -> report.

    data.py    deterministic calibration batches from a folder of images (whole images or LR patches)
    ranges.py  activation ranges with ONNX Runtime's calibrators (max, percentile, entropy)
    qdq.py     Q/DQ insertion (onnxruntime.quantization, QDQ format, TensorRT-style symmetric INT8),
               reference and deploy graphs from one set of ranges
    int8_block.py   the INT8 SMSRSparseBlock contract in numpy (bit-exact reference) + converter helpers
    int8_graph.py   INT8 SMSRSparseBlock nodes in the Q/DQ deploy graph (converter) and their validator
    int8_emulate.py the INT8 blocks as standard ONNX ops (stock ONNX Runtime, bit-exact)
    report.py  calibration report: ranges, quantized / excluded layers, INT8 blocks, accuracy against FP32
    layerwise.py    per-tensor and per-block-layer SQNR (where INT8 loses)
    sample_images.py  calibration photos from scikit-image's sample data (development only)
"""
