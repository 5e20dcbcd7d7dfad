"""Client backend for a model served by Triton Inference Server (`--backend triton --url HOST:PORT
--triton-model NAME`).

The served model takes fixed-size tiles (export-triton writes N×3×T×T -> N×3×sT×sT), so this backend states
min = max = T×T and the pipeline pads, tiles and blends here in the client exactly as for a local backend. Each tile
is one gRPC request; up to `in_flight` run at once (one client per worker thread), so the server's dynamic batcher
can join them, also with other clients' requests. Inference is idempotent: unavailable/timed-out requests are
retried a few times, then the input is reported as failed (nothing is written for it).
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import BackendRunError, BackendUnavailableError, ModelError, UsageError
from .base import Backend, Limits, require_module

_TYPES = {"TYPE_FP32": (np.float32, "FP32"), "TYPE_FP16": (np.float16, "FP16")}
_RETRY_STATUS = ("UNAVAILABLE", "DEADLINE_EXCEEDED")
_SETUP_TIMEOUT = 10.0  # seconds for health/metadata calls (--triton-timeout is per inference request)


def create_triton_backend(remote: dict, log) -> "TritonBackend":
    if not remote.get("url"):
        raise UsageError("--backend triton needs --url HOST:PORT (the server's gRPC port, usually 8001)")
    if not remote.get("model"):
        raise UsageError("--backend triton needs --triton-model NAME (e.g. smsr_x2_py from export-triton)")
    return TritonBackend(remote["url"], remote["model"], in_flight=remote.get("in_flight") or 8,
                         timeout=remote.get("timeout") or 60.0, log=log)


def _status(e) -> str:
    s = e.status() if hasattr(e, "status") else None
    return str(s or "").replace("StatusCode.", "")


def _msg(e) -> str:
    m = e.message() if hasattr(e, "message") else str(e)
    return (m or str(e)).strip().splitlines()[0] if (m or str(e)).strip() else type(e).__name__


def _dims(t: dict) -> list[int]:
    return [int(d) for d in t.get("dims", [])]


class TritonBackend(Backend):
    name = "triton"
    graph = "served"
    align = 2

    def __init__(self, url: str, model: str, in_flight: int = 8, timeout: float = 60.0, retries: int = 2,
                 log=None):
        self._grpc = require_module("tritonclient.grpc", "tritonclient (pip install 'tritonclient[grpc]')")
        from tritonclient.utils import InferenceServerException
        self._exc = InferenceServerException
        self.url, self.model, self.in_flight, self.timeout, self.retries = url, model, in_flight, timeout, retries
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None
        client = self._client()
        try:
            client.is_server_live(client_timeout=_SETUP_TIMEOUT)
        except InferenceServerException as e:
            raise BackendUnavailableError("Triton server at %s is unreachable (%s): is tritonserver running and is "
                                          "%s its gRPC port?" % (url, _msg(e), url)) from None
        self._check_ready(client)
        try:
            cfg = client.get_model_config(model, as_json=True, client_timeout=_SETUP_TIMEOUT)["config"]
        except InferenceServerException as e:
            raise BackendUnavailableError("Triton server at %s: cannot read the config of %r: %s"
                                          % (url, model, _msg(e))) from None
        self._read_config(cfg)
        self.preferred_batch = in_flight

    def _client(self):
        c = getattr(self._local, "client", None)
        if c is None:
            try:
                c = self._grpc.InferenceServerClient(url=self.url)
            except Exception as e:  # noqa: BLE001 - a malformed URL raises from grpc
                raise UsageError("--url %r: %s" % (self.url, e)) from None
            self._local.client = c
        return c

    def _check_ready(self, client) -> None:
        exc = self._exc
        try:
            if client.is_model_ready(self.model, client_timeout=_SETUP_TIMEOUT):
                return
            index = client.get_model_repository_index(as_json=True, client_timeout=_SETUP_TIMEOUT).get("models", [])
        except exc as e:
            raise BackendUnavailableError("Triton server at %s: cannot query model %r: %s"
                                          % (self.url, self.model, _msg(e))) from None
        entry = next((m for m in index if m.get("name") == self.model), None)
        if entry is None:
            names = ", ".join(sorted(m.get("name", "?") for m in index)) or "none"
            raise ModelError("Triton server at %s has no model %r (models: %s)" % (self.url, self.model, names))
        raise BackendUnavailableError("model %r on %s is not ready (state %s%s)"
                                      % (self.model, self.url, entry.get("state", "unknown"),
                                         ": " + entry["reason"] if entry.get("reason") else ""))

    def _read_config(self, cfg: dict) -> None:
        where = "model %r on %s" % (self.model, self.url)
        ins, outs = cfg.get("input", []), cfg.get("output", [])
        if len(ins) != 1 or not outs:
            raise ModelError("%s: expected 1 input and 1-2 outputs, config has %d and %d"
                             % (where, len(ins), len(outs)))
        mb = int(cfg.get("max_batch_size", 0))
        if mb < 1:
            raise ModelError("%s: max_batch_size is %d; the client sends N×3×T×T batches (export-triton "
                             "writes max_batch_size >= 1)" % (where, mb))
        i, o = ins[0], outs[0]
        di, do = _dims(i), _dims(o)
        if len(di) != 3 or di[0] != 3 or min(di[1:]) < 2:
            raise ModelError("%s: input %r has dims %s; expected fixed 3×T×T tiles" % (where, i.get("name"), di))
        if len(do) != 3 or do[0] != 3 or do[1] % di[1] or do[2] % di[2] or do[1] // di[1] != do[2] // di[2]:
            raise ModelError("%s: output %r dims %s are not an integer upscale of input dims %s"
                             % (where, o.get("name"), do, di))
        for t in (i, o):
            if t.get("data_type") not in _TYPES:
                raise ModelError("%s: tensor %r has type %s; float32/float16 expected"
                                 % (where, t.get("name"), t.get("data_type")))
        self.input_name, self.sr_name = i["name"], o["name"]
        self.in_dtype, self.in_wire = _TYPES[i["data_type"]]
        self.masks_name = outs[1]["name"] if len(outs) > 1 else None
        self.has_masks = self.masks_name is not None
        self.scale = do[1] // di[1]
        self.tile_hw = (di[1], di[2])
        self.precision = "fp16" if self.in_wire == "FP16" else "fp32"
        self.server_max_batch = mb
        # One tile per request; the pipeline sends up to `batch` tiles per run() call (no upper bound needed).
        self.limits = Limits(min_hw=self.tile_hw, max_hw=self.tile_hw, max_batch=None)

    def describe(self) -> str:
        return "triton model %s at %s (x%d, %s, %d×%d tiles, %d in flight)" % (
            self.model, self.url, self.scale, self.precision, self.tile_hw[0], self.tile_hw[1], self.in_flight)

    def _infer_one(self, tile: np.ndarray, want_masks: bool):
        g = self._grpc
        names = [self.sr_name] + ([self.masks_name] if want_masks and self.masks_name else [])
        inp = g.InferInput(self.input_name, list(tile.shape), self.in_wire)
        inp.set_data_from_numpy(tile)
        outs = [g.InferRequestedOutput(n) for n in names]
        for attempt in range(self.retries + 1):
            try:
                r = self._client().infer(self.model, [inp], outputs=outs, client_timeout=self.timeout)
                break
            except self._exc as e:
                status = _status(e)
                if status in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                if status == "UNAVAILABLE":
                    raise BackendRunError("Triton server at %s stopped answering (%s) after %d tries"
                                          % (self.url, _msg(e), attempt + 1)) from None
                if status == "DEADLINE_EXCEEDED":
                    raise BackendRunError("Triton request to %s timed out after %.0f s (%d tries); raise "
                                          "--triton-timeout or lower --triton-in-flight"
                                          % (self.url, self.timeout, attempt + 1)) from None
                raise BackendRunError("Triton model %s on %s failed: %s" % (self.model, self.url, _msg(e))) \
                    from None
        sr = r.as_numpy(self.sr_name)
        s, (h, w) = self.scale, tile.shape[2:]
        if sr is None or sr.shape != (1, 3, h * s, w * s):
            raise BackendRunError("Triton model %s returned %s shape %s, expected %s"
                                  % (self.model, self.sr_name, None if sr is None else sr.shape, (1, 3, h * s, w * s)))
        masks = r.as_numpy(self.masks_name) if len(names) > 1 else None
        return sr.astype(np.float32, copy=False), (masks.astype(np.float32, copy=False) if masks is not None
                                                   else None)

    def run(self, x, want_masks=False):
        x = np.ascontiguousarray(x, dtype=self.in_dtype)
        if tuple(x.shape[2:]) != self.tile_hw:
            raise BackendRunError("input %s does not match the served tile size %d×%d"
                                  % ("×".join(map(str, x.shape)), *self.tile_hw))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.in_flight, thread_name_prefix="triton")
        futures = [self._pool.submit(self._infer_one, x[i:i + 1], want_masks) for i in range(x.shape[0])]
        try:
            results = [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        sr = np.concatenate([r[0] for r in results])
        masks = np.concatenate([r[1] for r in results]) if results[0][1] is not None else None
        return sr, masks

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
