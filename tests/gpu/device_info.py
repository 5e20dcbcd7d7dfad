"""What the GPU run ran on: device, driver, runtime (gVisor / Firecracker), PyTorch, cuDNN. One JSON file.

    python tests/gpu/device_info.py --out device.json
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys


def _smi(query: str) -> str:
    try:
        r = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def runtime() -> str:
    """gVisor reports kernel 4.4.0 and says so in dmesg; other kernels here are Firecracker microVMs."""
    try:
        dmesg = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        dmesg = ""
    if "gvisor" in dmesg.lower() or platform.release() == "4.4.0":
        return "gvisor"
    return "firecracker" if "fc" in platform.release() else f"linux {platform.release()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    info = {"name": _smi("name"), "compute_cap": _smi("compute_cap"), "driver": _smi("driver_version"),
            "memory": _smi("memory.total"), "sm_clock_max": _smi("clocks.max.sm"), "runtime": runtime(),
            "kernel": platform.release(), "python": platform.python_version()}
    try:
        import torch
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available())
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info.update(sm_count=p.multi_processor_count, cudnn=torch.backends.cudnn.version(),
                        l2_bytes=getattr(p, "L2_cache_size", None))
    except ImportError:
        info.update(torch=None, cuda_available=False)
    with open(args.out, "w") as f:
        json.dump(info, f, indent=1)
    print(" ".join(f"{k}={v}" for k, v in info.items()))
    return 0 if info.get("cuda_available") else 1


if __name__ == "__main__":
    sys.exit(main())
