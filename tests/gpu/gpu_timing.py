"""Timing on the GPU for tests/gpu (METHOD.md): warm-up, then every call timed by its own pair of CUDA events;
median with p10/p90. CUDA-graph variant: one captured call, replayed. Without CUDA (the CPU smoke tests of the
scripts) calls are timed with the host clock and there is no graph or profiler."""
from __future__ import annotations

import time

import torch


def _stats(ms: list[float]) -> dict:
    ms = sorted(ms)
    k = len(ms)
    return {"median_ms": ms[k // 2], "p10_ms": ms[k // 10], "p90_ms": ms[(k * 9) // 10], "iters": k}


def time_calls(fn, iters: int = 30, warmup: int = 5) -> dict:
    """fn() enqueues work on the current stream; returns its per-call device time statistics."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():
        ms = []
        for _ in range(iters):
            t = time.perf_counter()
            fn()
            ms.append(1e3 * (time.perf_counter() - t))
        return _stats(ms)
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(iters)]
    for a, b in ev:
        a.record()
        fn()
        b.record()
    torch.cuda.synchronize()
    return _stats([a.elapsed_time(b) for a, b in ev])


def capture(fn, warmup: int = 3):
    """A CUDA graph of one fn() call (warmed up on a side stream first, as PyTorch requires)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    torch.cuda.synchronize()
    return g


def time_eager_and_graph(fn, iters: int = 30, warmup: int = 5) -> dict:
    """{'eager': stats, 'graph': stats or {'error': text}} for one call of fn."""
    out = {"eager": time_calls(fn, iters, warmup)}
    if not torch.cuda.is_available():
        out["graph"] = {"error": "no CUDA: no graph"}
        return out
    try:
        g = capture(fn)
        out["graph"] = time_calls(g.replay, iters, warmup)
    except RuntimeError as e:  # an op that cannot be captured: say so, keep the eager number
        out["graph"] = {"error": str(e).splitlines()[0][:200]}
    return out


def best_ms(entry: dict) -> float | None:
    """Faster of eager and graph medians."""
    vals = [v["median_ms"] for v in (entry.get("eager", {}), entry.get("graph", {})) if "median_ms" in v]
    return min(vals) if vals else None


def kernel_times(fn, reps: int = 5) -> list[dict]:
    """Per-kernel device time of one fn() call, in launch order (mean of `reps` calls; PyTorch profiler/CUPTI)."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    kernels = sorted((e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
                     key=lambda e: e.time_range.start)
    if not kernels or len(kernels) % reps:
        raise RuntimeError(f"{len(kernels)} device events for {reps} calls: cannot split them per call")
    per = len(kernels) // reps
    out = []
    for i in range(per):
        same = kernels[i::per]
        out.append({"name": same[0].name[:120], "us": sum(e.time_range.elapsed_us() for e in same) / reps})
    return out
