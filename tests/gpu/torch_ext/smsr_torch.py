"""The SMSRSparseBlock kernel library as a PyTorch op, over the C ABI in smsrBlockCapi.cpp (loaded with ctypes).

    lib = load_library("build-gpu/tests/gpu/libsmsr_block_capi.so")   # CUDA kernels: CUDA tensors
    lib = load_library("build/tests/gpu/libsmsr_block_capi_emu.so")   # emulated kernels: CPU tensors (tests)
    y = torch.ops.smsr_gpu.sparse_block(x, mask, w0, w1, w2, w3, wc, bc, dense, sparse, nhwc)
    bind_kernel_blocks(model, nhwc=True)    # every SMB of an SMSR model computed by the kernels

The op launches on PyTorch's current stream and allocates its output and workspace from PyTorch's allocator, so
it runs inside CUDA-graph capture. Converters only (PyTorch needed): this is test tooling, not the runtime.
"""
from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from converters import deploy_op  # noqa: E402
from converters.model.smsr import SparseMaskBlock  # noqa: E402

_I4 = ctypes.c_int32 * 4
_PTR4 = ctypes.c_void_p * 4


class BlockLibrary:
    """ctypes view of libsmsr_block_capi(.emu).so."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"kernel C ABI library not found: {path} (build target smsr_block_capi)")
        self.path = path
        lib = ctypes.CDLL(str(path))
        lib.smsr_capi_emulated.restype = ctypes.c_int32
        lib.smsr_capi_supports_nhwc.restype = ctypes.c_int32
        lib.smsr_capi_validate.restype = ctypes.c_char_p
        lib.smsr_capi_validate.argtypes = [_I4, _I4, _I4, ctypes.c_int32]
        lib.smsr_capi_workspace_size.restype = ctypes.c_size_t
        lib.smsr_capi_workspace_size.argtypes = [_I4, _I4, _I4, ctypes.c_int32, ctypes.c_int32]
        lib.smsr_capi_enqueue.restype = ctypes.c_int32
        lib.smsr_capi_enqueue.argtypes = [_I4, _I4, _I4, ctypes.c_int32, ctypes.c_int32,
                                          ctypes.c_void_p, ctypes.c_void_p, _PTR4, ctypes.c_void_p,
                                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                          ctypes.c_void_p]
        self.supports_int8 = hasattr(lib, "smsr_capi_enqueue_int8")  # libraries built before issue 14 lack it
        if self.supports_int8:
            lib.smsr_capi_int8_workspace_size.restype = ctypes.c_size_t
            lib.smsr_capi_int8_workspace_size.argtypes = [_I4, _I4, _I4, ctypes.c_int32]
            lib.smsr_capi_enqueue_int8.restype = ctypes.c_int32
            lib.smsr_capi_enqueue_int8.argtypes = [_I4, _I4, _I4, ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p,
                                                   _PTR4, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                                   ctypes.c_float, ctypes.c_void_p, ctypes.c_void_p,
                                                   ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                                   ctypes.c_void_p]
        lib.smsr_capi_error_string.restype = ctypes.c_char_p
        lib.smsr_capi_error_string.argtypes = [ctypes.c_int32]
        self._lib = lib
        self.emulated = bool(lib.smsr_capi_emulated())
        self.supports_nhwc = bool(lib.smsr_capi_supports_nhwc())

    def run(self, x, mask, weights, wc, bc, dense, sparse, nhwc: bool) -> torch.Tensor:
        n, c, h, w = x.shape
        dims, d4, s4 = _I4(n, c, h, w), _I4(*dense), _I4(*sparse)
        problem = self._lib.smsr_capi_validate(dims, d4, s4, int(nhwc))
        if problem:
            raise ValueError(f"SMSRSparseBlock: {problem.decode()}")
        fp16 = x.dtype == torch.float16
        if x.dtype not in (torch.float16, torch.float32):
            raise TypeError(f"SMSRSparseBlock takes float16 or float32 tensors, got {x.dtype}")
        want = "cpu" if self.emulated else "cuda"
        tensors = [x, mask, *weights, wc, bc]
        for t in tensors:
            if t.device.type != want or t.dtype != x.dtype:
                raise ValueError(f"SMSRSparseBlock ({'emulated' if self.emulated else 'CUDA'} kernels) needs "
                                 f"{want} tensors of one dtype; got {t.device.type} {t.dtype}")
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        x = x.contiguous(memory_format=fmt)
        mask = mask.contiguous()
        weights = [t.contiguous() for t in weights]
        wc, bc = wc.contiguous(), bc.contiguous()
        y = torch.empty_like(x, memory_format=fmt)
        ws_bytes = int(self._lib.smsr_capi_workspace_size(dims, d4, s4, int(fp16), int(nhwc)))
        ws = torch.empty(max(ws_bytes, 1), dtype=torch.uint8, device=x.device)
        stream = None if self.emulated else torch.cuda.current_stream(x.device).cuda_stream
        rc = self._lib.smsr_capi_enqueue(dims, d4, s4, int(fp16), int(nhwc), x.data_ptr(), mask.data_ptr(),
                                         _PTR4(*(t.data_ptr() for t in weights)), wc.data_ptr(), bc.data_ptr(),
                                         y.data_ptr(), ws.data_ptr(), ws_bytes, stream)
        if rc != 0:
            raise RuntimeError(f"enqueueSparseBlock failed: {self._lib.smsr_capi_error_string(rc).decode()} ({rc})")
        return y


    def run_int8(self, x8, mask, weights8, wc8, bc, dense, sparse, scales) -> torch.Tensor:
        """INT8 block (issue 14): x8 / weights8 / wc8 int8 codes, mask and bc float16/float32 (y's type), NCHW;
        scales = calibration.int8_block.Int8BlockScales (host)."""
        import numpy as np
        if not self.supports_int8:
            raise RuntimeError(f"{self.path} has no INT8 entry point (built before issue 14)")
        n, c, h, w = x8.shape
        dims, d4, s4 = _I4(n, c, h, w), _I4(*dense), _I4(*sparse)
        if x8.dtype != torch.int8 or any(t.dtype != torch.int8 for t in (*weights8, wc8)):
            raise TypeError("SMSRSparseBlock INT8: x, weights and collect weights must be int8 codes")
        if mask.dtype not in (torch.float16, torch.float32) or bc.dtype != mask.dtype:
            raise TypeError("SMSRSparseBlock INT8: mask and bias must share float16 or float32")
        fp16 = mask.dtype == torch.float16
        tensors = [t.contiguous() for t in (x8, mask, *weights8, wc8, bc)]
        x8, mask, weights8, wc8, bc = tensors[0], tensors[1], tensors[2:6], tensors[6], tensors[7]
        y = torch.empty((n, c, h, w), dtype=mask.dtype, device=x8.device)
        ws_bytes = int(self._lib.smsr_capi_int8_workspace_size(dims, d4, s4, int(fp16)))
        if ws_bytes == 0:
            raise ValueError("SMSRSparseBlock INT8: shape not supported by the INT8 kernels")
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=x8.device)
        fs = np.asarray(scales.feature_scales, np.float32)
        wsc = np.ascontiguousarray(scales.weight_scales, np.float32)
        cs = np.ascontiguousarray(scales.collect_scales, np.float32)
        stream = None if self.emulated else torch.cuda.current_stream(x8.device).cuda_stream
        rc = self._lib.smsr_capi_enqueue_int8(dims, d4, s4, int(fp16), x8.data_ptr(), mask.data_ptr(),
                                              _PTR4(*(t.data_ptr() for t in weights8)), wc8.data_ptr(),
                                              bc.data_ptr(), y.data_ptr(), float(scales.x_scale),
                                              fs.ctypes.data, wsc.ctypes.data, cs.ctypes.data, ws.data_ptr(),
                                              ws_bytes, stream)
        if rc != 0:
            raise RuntimeError(f"enqueueSparseBlockInt8 failed: {self._lib.smsr_capi_error_string(rc).decode()} ({rc})")
        return y


_LIB: BlockLibrary | None = None


def load_library(path: str | Path) -> BlockLibrary:
    """Load the C ABI library the op calls (one per process)."""
    global _LIB
    if _LIB is not None and _LIB.path != Path(path):
        raise RuntimeError(f"another kernel library is loaded already: {_LIB.path}")
    _LIB = _LIB or BlockLibrary(path)
    return _LIB


@torch.library.custom_op("smsr_gpu::sparse_block", mutates_args=())
def sparse_block(x: torch.Tensor, mask: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                 w3: torch.Tensor, wc: torch.Tensor, bc: torch.Tensor, dense: list[int], sparse: list[int],
                 nhwc: bool) -> torch.Tensor:
    if _LIB is None:
        raise RuntimeError("smsr_gpu::sparse_block: call load_library() first")
    return _LIB.run(x, mask, [w0, w1, w2, w3], wc, bc, dense, sparse, nhwc)


@sparse_block.register_fake
def _(x, mask, w0, w1, w2, w3, wc, bc, dense, sparse, nhwc):
    return torch.empty_like(x, memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def weight_layout() -> str:
    """The op contract's weight layout: "oihw" (plugin version 1) or "hwio" (version 2, issue 13)."""
    return "oihw" if deploy_op.PLUGIN_VERSION == "1" else "hwio"


def kernel_weights(block: SparseMaskBlock) -> tuple[list[torch.Tensor], torch.Tensor, list[int], list[int]]:
    """w0..w3 and wc in the layout the kernel library reads, from the dense-first permuted OIHW weights.

    hwio: w_l (3, 3, Cin_l, Cout_l) = [ky][kx][ci][co], wc (1, 1, sum Cout_l, C) = [ci][co].
    """
    weights, wc, dense, sparse = deploy_op.permuted_weights(block)
    if weight_layout() == "hwio":
        weights = [w.permute(2, 3, 1, 0).contiguous() for w in weights]
        wc = wc.reshape(wc.shape[0], -1).t().contiguous().reshape(1, 1, -1, wc.shape[0])
    return weights, wc, dense, sparse


class KernelBlock(nn.Module):
    """Drop-in for SparseMaskBlock (same forward signature) computed by the kernel library."""

    def __init__(self, block: SparseMaskBlock, nhwc: bool = False):
        super().__init__()
        weights, wc, self.dense, self.sparse = kernel_weights(block)
        for i, w in enumerate(weights):
            self.register_buffer(f"w{i}", w)
        self.register_buffer("wc", wc)
        self.register_buffer("bc", block.collect.bias.detach().clone())
        self.nhwc = nhwc

    def forward(self, x, mask, formulation=None):
        return torch.ops.smsr_gpu.sparse_block(x, mask.to(x.dtype), self.w0, self.w1, self.w2, self.w3, self.wc,
                                               self.bc, self.dense, self.sparse, self.nhwc)


def bind_kernel_blocks(model: nn.Module, nhwc: bool = False) -> nn.Module:
    """Replace every SMB body of an SMSR model by a KernelBlock (in place; returns the model)."""
    for module in model.body:
        module.body = KernelBlock(module.body, nhwc)
    return model


class DenseBody(nn.Module):
    """The SMB computed densely, masks ignored: what a dense engine runs (timing baseline, not the same function)."""

    def __init__(self, block: SparseMaskBlock):
        super().__init__()
        self.body = block.body
        self.collect = block.collect

    def forward(self, x, mask, formulation=None):
        feats = []
        for conv in self.body:
            x = torch.relu(conv(x))
            feats.append(x)
        return self.collect(torch.cat(feats, 1))


def bind_dense_blocks(model: nn.Module) -> nn.Module:
    """Replace every SMB body by its dense computation (in place; returns the model)."""
    for module in model.body:
        module.body = DenseBody(module.body)
    return model


def move_model(model: nn.Module, device, dtype, channels_last: bool = False) -> nn.Module:
    """model.to(device, dtype[, channels_last]) for any of the bodies above.

    SparseMaskBlock: its cached inference plans are plain tensors that .to() does not move, so they are made on
    the CPU first and moved here. KernelBlock: its weights keep the contract layout (contiguous), channels_last or not.
    """
    for module in model.body:
        if isinstance(module.body, SparseMaskBlock):
            module.body.inference_plan()
    model.to(device=device, dtype=dtype)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if channels_last:
        model.to(memory_format=fmt)
    for module in model.body:
        body = module.body
        if isinstance(body, SparseMaskBlock):
            body._plan = [{k: (v.to(device=device, dtype=dtype, memory_format=fmt if v.dim() == 4 else
                                    torch.preserve_format) if torch.is_tensor(v) else v)
                           for k, v in layer.items()} for layer in body._plan]
        elif isinstance(body, KernelBlock):
            for name, buf in list(body.named_buffers()):
                setattr(body, name, buf.contiguous())
    return model
