"""SMSR (Wang et al., CVPR 2021) for inference: our own implementation of the official network.

Two formulations of the sparse mask block (SMB) share one set of parameters:
- ``dense_masked``: standard convolutions whose inputs/outputs are masked; exportable to ONNX and
  what the reference graph contains.
- ``sparse``: computes the masked ("sparse") channels only at pixels of the spatial mask
  (gather + GEMM); readable, and the model of what the CPU op and CUDA kernels do.

Exact inference semantics of SMB layer l (hard masks; layer l's input split is layer l-1's channel split):
    z = conv(x[dense_in], W[:, dense_in]) + M * conv(x[sparse_in], W[:, sparse_in])
    z[sparse_out] *= M ;  f_l = ReLU(z)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

RGB_MEAN = (0.4488, 0.4371, 0.4040)
NUM_BLOCKS = 5
NUM_LAYERS = 4
N_FEATS = 64
MIN_INPUT_SIZE = 2  # the mask branch pools by 2: a 1-pixel side has no mask

FORMULATIONS = ("dense_masked", "sparse")


class MeanShift(nn.Conv2d):
    """1x1 conv adding (sign=+1) or subtracting (sign=-1) the RGB mean on the 0..rgb_range scale."""

    def __init__(self, rgb_range: float = 255.0, sign: int = -1):
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(RGB_MEAN))
        for p in self.parameters():
            p.requires_grad = False


@dataclass(frozen=True)
class ChannelSplit:
    """Static dense/sparse split of one SMB layer's output channels."""

    dense: tuple[int, ...]   # channel indices computed at every pixel
    sparse: tuple[int, ...]  # channel indices computed only at masked pixels

    @property
    def permutation(self) -> list[int]:
        """Dense-first channel order used by the deploy op."""
        return list(self.dense) + list(self.sparse)


class SparseMaskBlock(nn.Module):
    """SMB: 4 conv3x3 (no bias) + ReLU with channel/spatial masks, then a 1x1 collect over all 4 outputs."""

    def __init__(self, channels: int = N_FEATS, n_layers: int = NUM_LAYERS):
        super().__init__()
        self.channels = channels
        self.n_layers = n_layers
        # Trained channel-mask logits; hard split = softmax(dim 3).round(), index 0 dense, 1 sparse.
        self.ch_mask = nn.Parameter(torch.rand(1, channels, n_layers, 2))
        self.body = nn.Sequential(*[nn.Conv2d(channels, channels, 3, 1, 1, bias=False) for _ in range(n_layers)])
        self.collect = nn.Conv2d(channels * n_layers, channels, 1, 1, 0)

    # ---- static channel split -------------------------------------------------------------------
    def channel_splits(self) -> list[ChannelSplit]:
        hard = self.ch_mask.detach().softmax(3).round()
        splits = []
        for l in range(self.n_layers):
            d, s = hard[0, :, l, 0], hard[0, :, l, 1]
            if not torch.all(d + s == 1):
                raise ValueError(f"channel mask of layer {l} is ambiguous (softmax tie): cannot split channels")
            splits.append(ChannelSplit(tuple(torch.nonzero(d).flatten().tolist()),
                                       tuple(torch.nonzero(s).flatten().tolist())))
        return splits

    def _load_from_state_dict(self, *args, **kwargs):
        self._plan = None  # new weights: the cached split weights are stale
        super()._load_from_state_dict(*args, **kwargs)

    def inference_plan(self) -> list[dict]:
        """Per layer: weights restricted to dense / sparse input channels and output-channel 0/1 vectors.

        Cached as plain tensors (not parameters), so an ONNX trace embeds them as constants instead of
        recording the softmax/round/multiply that derives them. Call again after changing weights.
        """
        if getattr(self, "_plan", None) is None:
            with torch.no_grad():
                plan, prev = [], None
                for conv, split in zip(self.body, self.channel_splits()):
                    w = conv.weight.detach().clone()
                    d_in = torch.ones(w.shape[1]) if prev is None else _indicator(prev.dense, w.shape[1])
                    plan.append({
                        "w_dense_in": (w * d_in.view(1, -1, 1, 1)) if d_in.any() else None,
                        "w_sparse_in": (w * (1 - d_in).view(1, -1, 1, 1)) if (1 - d_in).any() else None,
                        "dense_out": _indicator(split.dense, w.shape[0]).view(1, -1, 1, 1),
                        "sparse_out": (_indicator(split.sparse, w.shape[0]).view(1, -1, 1, 1)
                                       if split.sparse else None),
                    })
                    prev = split
            self._plan = plan
        return self._plan

    # ---- formulations ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor, formulation: str = "dense_masked") -> torch.Tensor:
        if formulation == "dense_masked":
            return self._forward_dense_masked(x, mask)
        if formulation == "sparse":
            return self._forward_sparse(x, mask)
        raise ValueError(f"unknown formulation {formulation!r}; expected one of {FORMULATIONS}")

    def _forward_dense_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        feats = []
        fea = x
        for layer in self.inference_plan():
            z = 0
            if layer["w_dense_in"] is not None:  # zeroed input channels: the conv sees only dense inputs
                z = F.conv2d(fea, layer["w_dense_in"], padding=1)
            if layer["w_sparse_in"] is not None:
                z = z + F.conv2d(fea, layer["w_sparse_in"], padding=1) * mask
            if layer["sparse_out"] is not None:  # dense outputs everywhere, sparse outputs inside the mask
                z = z * (layer["dense_out"] + layer["sparse_out"] * mask)
            fea = F.relu(z)
            feats.append(fea)
        return self.collect(torch.cat(feats, 1))

    def _forward_sparse(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Gather + GEMM at masked pixels; dense-output channels from dense inputs elsewhere."""
        n, _, h, w = x.shape
        feats = []
        fea = x
        prev: ChannelSplit | None = None
        for l, (conv, split) in enumerate(zip(self.body, self.channel_splits())):
            weight = conv.weight
            d_in = list(range(self.channels)) if prev is None else list(prev.dense)
            out = fea.new_zeros(n, weight.shape[0], h, w)
            if split.dense and d_in:
                out[:, list(split.dense)] = F.conv2d(fea[:, d_in], weight[list(split.dense)][:, d_in], padding=1)
            cols = F.unfold(fea, 3, padding=1)  # N x (Cin*9) x (H*W)
            w2d = weight.reshape(weight.shape[0], -1)
            for b in range(n):
                active = torch.nonzero(mask[b, 0].flatten()).flatten()
                if active.numel() == 0:
                    continue
                z = w2d @ cols[b][:, active]  # all output channels, full input, active pixels only
                out[b].view(weight.shape[0], -1)[:, active] = z
            fea = F.relu(out)
            feats.append(fea)
            prev = split
        return self.collect(torch.cat(feats, 1))


def _indicator(indices, n: int) -> torch.Tensor:
    v = torch.zeros(n)
    v[list(indices)] = 1.0
    return v


class CALayer(nn.Module):
    def __init__(self, channels: int = N_FEATS, reduction: int = 16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(2, 3), keepdim=True))


class SparseMaskModule(nn.Module):
    """SMM: spatial-mask branch + SMB + channel attention + residual."""

    def __init__(self, channels: int = N_FEATS):
        super().__init__()
        c4 = channels // 4
        self.spa_mask = nn.Sequential(
            nn.Conv2d(channels, c4, 3, 1, 1), nn.ReLU(True), nn.AvgPool2d(2),
            nn.Conv2d(c4, c4, 3, 1, 1), nn.ReLU(True),
            nn.ConvTranspose2d(c4, 2, 3, 2, 1, output_padding=1))
        self.body = SparseMaskBlock(channels)
        self.ca = CALayer(channels)

    def spatial_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Hard mask N x 1 x H x W; the branch yields 2*floor(H/2) x 2*floor(W/2), zero-padded bottom/right."""
        logits = self.spa_mask(x)
        mask = (logits[:, 1:] > logits[:, :1]).to(x.dtype)
        pad_h = x.shape[2] - logits.shape[2]
        pad_w = x.shape[3] - logits.shape[3]
        return F.pad(mask, (0, pad_w, 0, pad_h))

    def forward(self, x: torch.Tensor, formulation: str = "dense_masked"):
        mask = self.spatial_mask(x)
        out = self.body(x, mask, formulation)
        return self.ca(out) + x, mask


class SMSR(nn.Module):
    def __init__(self, scale: int = 2, n_feats: int = N_FEATS, rgb_range: float = 255.0):
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"SMSR supports scales 2, 3 and 4, got {scale}")
        self.scale = scale
        self.sub_mean = MeanShift(rgb_range, -1)
        self.add_mean = MeanShift(rgb_range, +1)
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 3, 1, 1), nn.ReLU(True), nn.Conv2d(n_feats, n_feats, 3, 1, 1))
        self.body = nn.ModuleList([SparseMaskModule(n_feats) for _ in range(NUM_BLOCKS)])
        self.collect = nn.Sequential(nn.Conv2d(n_feats * NUM_BLOCKS, n_feats, 1), nn.ReLU(True),
                                     nn.Conv2d(n_feats, n_feats, 3, 1, 1))
        self.tail = nn.Sequential(nn.Conv2d(n_feats, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
        self.formulation = "dense_masked"

    def forward_with_masks(self, lr: torch.Tensor, formulation: str | None = None):
        """lr: N x 3 x H x W RGB on 0..255. Returns (sr N x 3 x sH x sW, masks N x 5 x H x W)."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W RGB tensor, got shape {tuple(lr.shape)}")
        if not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export() and min(lr.shape[2:]) < MIN_INPUT_SIZE:
            raise ValueError(f"input is {lr.shape[2]}x{lr.shape[3]}; SMSR needs at least "
                             f"{MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} pixels")
        formulation = formulation or self.formulation
        x0 = self.sub_mean(lr)
        x = self.head(x0)
        feats, masks = [], []
        fea = x
        for block in self.body:
            fea, mask = block(fea, formulation)
            feats.append(fea)
            masks.append(mask)
        fea = self.collect(torch.cat(feats, 1)) + x
        up = F.interpolate(x0, scale_factor=self.scale, mode="bicubic", align_corners=False)
        sr = self.add_mean(self.tail(fea) + up)
        return sr, torch.cat(masks, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.forward_with_masks(lr)[0]

    def prepare(self) -> "SMSR":
        """Compute every block's cached inference plan (before tracing/exporting)."""
        for block in self.body:
            block.body.inference_plan()
        return self

    def channel_splits(self) -> list[list[ChannelSplit]]:
        return [block.body.channel_splits() for block in self.body]
