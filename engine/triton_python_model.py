"""Triton Python-backend model running our own runtime (copied as <repo>/<model>/1/model.py by export-triton).

It runs inside tritonserver's Python stub, not in this package: `triton_python_backend_utils` comes from the server,
and the engine package is found through the config parameter `engine_path` (or $SMSR_ENGINE_PATH). The custom-op
library copied next to this file is used for deploy graphs. All requests of one dynamic batch are joined into one
ONNX Runtime call (they have equal shapes: the config fixes the tile size).
"""
import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by tritonserver's Python backend


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        root = os.environ.get("SMSR_ENGINE_PATH") or params.get("engine_path")
        if root and root not in sys.path:
            sys.path.insert(0, root)
        lib = os.path.join(here, "libsmsr_ort_ops.so")
        if os.path.isfile(lib):
            os.environ.setdefault("SMSR_ORT_OPS_LIB", lib)
        from engine.backends.onnxruntime import OrtBackend  # noqa: E402 - needs the path set above

        threads = int(params.get("threads") or 0) or None
        self.backend = OrtBackend(os.path.join(here, params.get("onnx_model", "model.onnx")), device="cpu",
                                  threads=threads)
        self.input_name = config["input"][0]["name"]
        self.output_names = [o["name"] for o in config["output"]]

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        wanted = [set(r.requested_output_names()) or set(self.output_names) for r in requests]
        want_masks = len(self.output_names) > 1 and any(self.output_names[1] in w for w in wanted)
        try:
            sr, masks = self.backend.run(np.concatenate(arrays), want_masks=want_masks)
        except Exception as e:  # noqa: BLE001 - reported to every client of this batch, the server keeps running
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(e))) for _ in requests]
        responses, start = [], 0
        for arr, want in zip(arrays, wanted):
            n = arr.shape[0]
            outs = {self.output_names[0]: sr[start:start + n]}
            if masks is not None:
                outs[self.output_names[1]] = masks[start:start + n]
            tensors = [pb_utils.Tensor(k, np.ascontiguousarray(v, np.float32)) for k, v in outs.items() if k in want]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += n
        return responses

    def finalize(self):
        self.backend = None
