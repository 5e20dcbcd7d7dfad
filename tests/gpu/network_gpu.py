"""Whole network on the GPU: SMSR x2 in PyTorch FP16 with our block kernels bound as a torch op, against the same
network with PyTorch's dense-masked blocks (the reference formulation), end to end.

    python tests/gpu/network_gpu.py --weights W --set5 SET5_DIR --lib libsmsr_block_capi.so [--size 1280x720]
                                    [--iters 20] --out network.json

1. Set5 x2: PSNR_Y (shave 2, MATLAB conventions, engine.metrics) of both FP16 networks and of the FP32 dense-masked
   one; each image's PSNR of the kernel network must be within 0.01 dB of the dense-masked FP16 network's.
2. One 1280x720 frame (a Set5 image tiled: real content and masks), latency of: the kernel network, the
   dense-masked network and the plain dense network (masks ignored: what a dense engine computes; timing only),
   FP16, channels-last, cudnn.benchmark, eager and CUDA graph, medians.
Exit 1 when the PSNR check fails or the kernel network cannot run.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "torch_ext"))
sys.path.insert(0, str(HERE.parents[1]))

PSNR_TOL_DB = 0.01
SCALE = 2


def build_nets(model, device, dtype, nhwc: bool, kernels: bool = True, dense: bool = False) -> dict:
    """{'dense_masked', 'kernels', 'dense'} -> a copy of `model` on device/dtype with that block computation."""
    import torch
    import smsr_torch as st
    cl = device.type == "cuda"
    nhwc = nhwc and dtype == torch.float16  # the kernels' channels-last I/O is FP16 only
    nets = {"dense_masked": st.move_model(copy.deepcopy(model), device, dtype, channels_last=cl)}
    if kernels:
        nets["kernels"] = st.move_model(st.bind_kernel_blocks(copy.deepcopy(model), nhwc), device, dtype,
                                        channels_last=cl and nhwc)
    if dense:
        nets["dense"] = st.move_model(st.bind_dense_blocks(copy.deepcopy(model)), device, dtype, channels_last=cl)
    for k, net in nets.items():
        net.eval()
        net.channels_last = cl and (k != "kernels" or nhwc)  # the input's layout follows the network's
    return nets


def to_input(lr: np.ndarray, device, dtype, channels_last: bool = False):
    import torch
    t = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1))[None]).to(device=device, dtype=dtype)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def sr_image(net, lr: np.ndarray, device, dtype):
    """(sr H x W x 3 float64 on 0..255, masks N x 5 x h x w as uint8)."""
    import torch
    with torch.inference_mode():
        sr, masks = net.forward_with_masks(to_input(lr, device, dtype, getattr(net, "channels_last", False)))
    return sr[0].permute(1, 2, 0).double().cpu().numpy(), (masks[0] > 0.5).cpu().numpy()


def set5_check(nets: dict, pairs: list, device, dtype, fp32_net=None) -> dict:
    """Per image PSNR_Y of every net (and of fp32_net in float32) + the kernel-vs-dense-masked differences."""
    from engine.metrics import psnr_y, to_uint8
    rows = []
    for name, lr, hr in pairs:
        row = {"image": name, "size": f"{lr.shape[1]}x{lr.shape[0]}"}
        out = {k: sr_image(net, lr, device, dtype) for k, net in nets.items()}
        if fp32_net is not None:
            import torch
            out["dense_masked_fp32"] = sr_image(fp32_net, lr, device, torch.float32)
        for k, (sr, _) in out.items():
            row[f"psnr_{k}"] = psnr_y(to_uint8(sr), hr, SCALE)
        if "kernels" in out:
            (a, ma), (b, mb) = out["kernels"], out["dense_masked"]
            row["delta_db"] = row["psnr_kernels"] - row["psnr_dense_masked"]
            row["max_abs_diff"] = float(np.abs(a - b).max())
            row["mean_abs_diff"] = float(np.abs(a - b).mean())
            row["mask_agreement"] = float((ma == mb).mean())
            row["density"] = float(mb.mean())
        rows.append(row)
    out = {"images": rows}
    if rows and "delta_db" in rows[0]:
        out["max_abs_delta_db"] = max(abs(r["delta_db"]) for r in rows)
        out["agree"] = out["max_abs_delta_db"] <= PSNR_TOL_DB
    return out


def load_pairs(set5: Path, crop: tuple[int, int] | None = None) -> list:
    """[(name, LR uint8 H x W x 3, HR mod-cropped)] (optionally an LR crop at the top left and its HR)."""
    from PIL import Image
    pairs = []
    for lr_path in sorted((set5 / "LR_bicubic" / "X2").glob("*.png")):
        with Image.open(lr_path) as im:
            lr = np.asarray(im.convert("RGB"))
        with Image.open(set5 / "HR" / lr_path.name) as im:
            hr = np.asarray(im.convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % SCALE, : hr.shape[1] - hr.shape[1] % SCALE]
        if crop:
            lr, hr = lr[: crop[0], : crop[1]], hr[: SCALE * crop[0], : SCALE * crop[1]]
        pairs.append((lr_path.stem, lr, hr))
    return pairs


def time_frame(nets: dict, lr: np.ndarray, device, dtype, iters: int, warmup: int = 5) -> dict:
    import torch

    import gpu_timing as timing
    out = {}
    with torch.inference_mode():
        for k, net in nets.items():
            x = to_input(lr, device, dtype, getattr(net, "channels_last", False))
            out[k] = timing.time_eager_and_graph(lambda net=net, x=x: net(x), iters, warmup)
            out[k]["best_ms"] = timing.best_ms(out[k])
            _, masks = net.forward_with_masks(x)
            out[k]["mask_density"] = float(masks.float().mean())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--set5", required=True, help="folder with HR/ and LR_bicubic/X2/")
    ap.add_argument("--lib", required=True)
    ap.add_argument("--size", default="1280x720", help="WxH of the timed LR frame")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cpu", action="store_true", help="smoke test on the CPU (emulated kernels, FP32, --crop)")
    ap.add_argument("--crop", default="", help="HxW LR crop of every Set5 image (smoke tests)")
    args = ap.parse_args(argv)
    import torch

    import smsr_torch as st
    from converters.model import load_smsr
    if not torch.cuda.is_available() and not args.cpu:
        print("network_gpu: PyTorch sees no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # FP32 references in true FP32 (TF32 is PyTorch's default for convs)
    dev, dt = (torch.device("cpu"), torch.float32) if args.cpu else (torch.device("cuda"), torch.float16)
    t0 = time.time()
    lib = st.load_library(args.lib)
    model = load_smsr(args.weights, SCALE)
    nets = build_nets(model, dev, dt, nhwc=lib.supports_nhwc, dense=True)
    fp32 = st.move_model(copy.deepcopy(model), dev, torch.float32)
    pairs = load_pairs(Path(args.set5), tuple(int(v) for v in args.crop.split("x")) if args.crop else None)
    result = {"device": "cpu" if args.cpu else torch.cuda.get_device_name(), "torch": torch.__version__,
              "nhwc": lib.supports_nhwc,
              "weight_layout": st.weight_layout()}
    timed = {k: v for k, v in nets.items() if k != "dense"}
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False):
        result["set5"] = set5_check(timed, pairs, dev, dt, fp32_net=fp32)  # 5 shapes once each: no autotuning
    for r in result["set5"]["images"]:
        print(f"{r['image']:<10} {r['size']:>8}  PSNR_Y kernels {r['psnr_kernels']:.4f}  dense-masked "
              f"{r['psnr_dense_masked']:.4f}  (FP32 {r['psnr_dense_masked_fp32']:.4f})  delta {r['delta_db']:+.4f} dB"
              f"  max|diff| {r['max_abs_diff']:.3f}  masks agree {r['mask_agreement']:.4f}")
    Path(args.out).write_text(json.dumps(result, indent=1))  # the Set5 part survives a timeout of the timing
    w, h = (int(v) for v in args.size.split("x"))
    name, lr, _ = pairs[0]
    frame = np.tile(lr, (-(-h // lr.shape[0]), -(-w // lr.shape[1]), 1))[:h, :w]
    result["frame"] = {"W": w, "H": h, "content": f"{name} tiled", **time_frame(nets, frame, dev, dt, args.iters,
                                                                                  args.warmup)}
    for k in nets:
        f = result["frame"][k]
        print(f"{w}x{h} {k:<13} eager {f['eager']['median_ms']:.3f} ms  graph "
              f"{f['graph'].get('median_ms', float('nan')):.3f} ms  (mask density {f['mask_density']:.3f})")
    result["seconds"] = time.time() - t0
    Path(args.out).write_text(json.dumps(result, indent=1))
    ok = result["set5"].get("agree", False)
    print(f"network_gpu: Set5 PSNR agreement {'ok' if ok else 'FAILED'} (max |delta| "
          f"{result['set5'].get('max_abs_delta_db', float('nan')):.4f} dB <= {PSNR_TOL_DB})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
