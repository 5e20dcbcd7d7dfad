"""Dense baseline for the SMSRSparseBlock benchmark: the same block computed densely with PyTorch/cuDNN.

    python tests/gpu/bench_dense_torch.py --shape 1,64,720,1280 [--type fp16] [--iters 300] [--graph] [--label L]

Block = 4 x (conv3x3 64->64, no bias, ReLU) + concat + conv1x1 256->64 with bias: what the sparse op computes when
the mask is all ones and every channel is dense. FP16 (or FP32), channels-last, cudnn.benchmark, optional CUDA graph;
every iteration timed with its own CUDA events; prints one JSON line (same keys as smsr_kernels_bench).
"""
from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", required=True, help="N,C,H,W")
    ap.add_argument("--type", choices=("fp16", "fp32"), default="fp16")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--graph", action="store_true", help="replay one captured CUDA graph per iteration")
    ap.add_argument("--label", default="")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("bench_dense_torch: no CUDA device visible to PyTorch", file=sys.stderr)
        return 2
    n, c, h, w = (int(v) for v in args.shape.split(","))
    dt = torch.float16 if args.type == "fp16" else torch.float32
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    convs = torch.nn.ModuleList(torch.nn.Conv2d(c, c, 3, 1, 1, bias=False) for _ in range(4))
    collect = torch.nn.Conv2d(4 * c, c, 1)
    block = torch.nn.ModuleDict({"convs": convs, "collect": collect}).to(dev, dt).to(memory_format=torch.channels_last)
    x = torch.randn(n, c, h, w, device=dev, dtype=dt).contiguous(memory_format=torch.channels_last)

    def forward(inp):
        feats = []
        for conv in block["convs"]:
            inp = torch.relu(conv(inp))
            feats.append(inp)
        return block["collect"](torch.cat(feats, 1))

    with torch.inference_mode():
        for _ in range(args.warmup):
            forward(x)
        torch.cuda.synchronize()
        run = lambda: forward(x)  # noqa: E731
        if args.graph:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    forward(x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                forward(x)
            run = g.replay
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(args.iters)]
        for i in range(args.iters):
            starts[i].record()
            run()
            ends[i].record()
        torch.cuda.synchronize()
    ms = sorted(s.elapsed_time(e) for s, e in zip(starts, ends))
    k = len(ms)
    print(json.dumps({"impl": "torch_dense_cudnn", "label": args.label, "device": torch.cuda.get_device_name(),
                      "type": args.type, "graph": args.graph, "N": n, "C": c, "H": h, "W": w, "density": 1.0,
                      "iters": k, "median_ms": ms[k // 2], "p10_ms": ms[k // 10], "p90_ms": ms[k * 9 // 10],
                      "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
