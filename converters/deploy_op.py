"""The SMSRSparseBlock custom op as seen from PyTorch: export symbolic + permuted (dense-first) weights.

Contract (docs: plugins/smsrSparseBlock/README.md): inputs x, mask, w0..w3, wc, bc; attributes
dense_channels, sparse_channels (+ plugin_version/plugin_namespace read by TensorRT's ONNX parser).
Weight layout (plugin_version "2"): w_l is 3 x 3 x Cin_l x Cout_l ("HWIO", element [ky][kx][ci][co]) and wc is
1 x 1 x sum(Cout_l) x C, both channel axes permuted dense-first: the [tap][ci][co] order the kernels read as GEMM
B rows, so no implementation transposes weights per call.
Domain "smsr": ONNX Runtime needs a non-default domain for custom ops, and TensorRT's parser maps any
node it does not know to the plugin registered under the node's op_type, whatever its domain.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .model.smsr import SparseMaskBlock

OP_DOMAIN = "smsr"
OP_TYPE = "SMSRSparseBlock"
OP_VERSION = 1
PLUGIN_VERSION = "2"  # 2: weights in the 3 x 3 x Cin x Cout layout (1 was OIHW)
PLUGIN_NAMESPACE = ""


def permuted_weights(block: SparseMaskBlock) -> tuple[list[torch.Tensor], torch.Tensor, list[int], list[int]]:
    """Layer weights permuted dense-first on both axes, collect weights permuted on the input axis."""
    splits = block.channel_splits()
    weights, collect_cols = [], []
    in_perm = list(range(block.channels))
    offset = 0
    for conv, split in zip(block.body, splits):
        perm = split.permutation
        weights.append(conv.weight.detach()[perm][:, in_perm].contiguous())
        collect_cols += [offset + c for c in perm]
        offset += conv.weight.shape[0]
        in_perm = perm
    wc = block.collect.weight.detach()[:, collect_cols].contiguous()
    return weights, wc, [len(s.dense) for s in splits], [len(s.sparse) for s in splits]


def to_op_layout(w: torch.Tensor) -> torch.Tensor:
    """OIHW (Cout x Cin x kh x kw) -> the op's HWIO layout (kh x kw x Cin x Cout)."""
    return w.permute(2, 3, 1, 0).contiguous()


def from_op_layout(w: torch.Tensor) -> torch.Tensor:
    """The op's HWIO layout -> OIHW, for torch's conv2d."""
    return w.permute(3, 2, 0, 1)


def op_weights(block: SparseMaskBlock) -> tuple[list[torch.Tensor], torch.Tensor, list[int], list[int]]:
    """permuted_weights() in the op's contract layout: w_l 3 x 3 x Cin_l x Cout_l, wc 1 x 1 x sum(Cout_l) x C."""
    weights, wc, dense, sparse = permuted_weights(block)
    return [to_op_layout(w) for w in weights], to_op_layout(wc), dense, sparse


def sparse_block_reference(x, mask, weights, wc, bc, dense, sparse):
    """The op contract in PyTorch, on dense-first OIHW weights (dense-masked formulation)."""
    feats = []
    fea = x
    d_in = x.shape[1]  # layer 0: every input channel is dense
    for w, d_out in zip(weights, dense):
        z = 0
        if d_in > 0:
            z = torch.nn.functional.conv2d(fea[:, :d_in], w[:, :d_in], padding=1)
        if d_in < w.shape[1]:
            z = z + mask * torch.nn.functional.conv2d(fea[:, d_in:], w[:, d_in:], padding=1)
        z = torch.cat([z[:, :d_out], z[:, d_out:] * mask], 1)
        fea = torch.relu(z)
        feats.append(fea)
        d_in = d_out
    return torch.nn.functional.conv2d(torch.cat(feats, 1), wc.reshape(wc.shape[0], -1, 1, 1), bc)


@torch.library.custom_op("smsr::sparse_block", mutates_args=())
def _sparse_block_op(x: torch.Tensor, mask: torch.Tensor, w0: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                     w3: torch.Tensor, wc: torch.Tensor, bc: torch.Tensor, dense: list[int],
                     sparse: list[int]) -> torch.Tensor:
    # inputs in the op's layout (HWIO); the reference convolves OIHW views of them
    return sparse_block_reference(x, mask, [from_op_layout(w) for w in (w0, w1, w2, w3)], from_op_layout(wc), bc,
                                  dense, sparse)


@_sparse_block_op.register_fake
def _(x, mask, w0, w1, w2, w3, wc, bc, dense, sparse):
    return torch.empty_like(x)


def _symbolic(g, x, mask, w0, w1, w2, w3, wc, bc, dense, sparse):
    from torch.onnx import symbolic_helper
    dense = symbolic_helper._maybe_get_const(dense, "is")
    sparse = symbolic_helper._maybe_get_const(sparse, "is")
    out = g.op(f"{OP_DOMAIN}::{OP_TYPE}", x, mask, w0, w1, w2, w3, wc, bc,
               dense_channels_i=list(dense), sparse_channels_i=list(sparse),
               plugin_version_s=PLUGIN_VERSION, plugin_namespace_s=PLUGIN_NAMESPACE)
    out.setType(x.type())
    return out


torch.onnx.register_custom_op_symbolic("smsr::sparse_block", _symbolic, 17)


class DeploySparseBlock(nn.Module):
    """Drop-in for SparseMaskBlock whose ONNX export is one SMSRSparseBlock node."""

    def __init__(self, block: SparseMaskBlock):
        super().__init__()
        weights, wc, self.dense, self.sparse = op_weights(block)
        for i, w in enumerate(weights):
            self.register_buffer(f"w{i}", w)
        self.register_buffer("wc", wc)
        self.register_buffer("bc", block.collect.bias.detach().clone())

    def forward(self, x, mask, formulation=None):
        return _sparse_block_op(x, mask, self.w0, self.w1, self.w2, self.w3, self.wc, self.bc,
                                self.dense, self.sparse)
