"""Which GPUs the SMSRSparseBlock plugin library can run on, from the sidecar file CMake writes next to it.

`<library>.archs` (e.g. libsmsr_trt_plugin.so.archs) is JSON: {"sass": ["sm_75", ...], "ptx": ["compute_75"],
"cuda": "13.0.88"}. Read without a GPU and without loading the library, so an engine build (TensorRT-RTX builds
ahead of time on any machine) can refuse targets the plugin has no kernels for: such an engine would build, then
fail on every enqueue with "no kernel image is available".
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".archs"


class PluginArchError(ValueError):
    """The sidecar file exists but cannot be read as the architecture list."""


@dataclass(frozen=True)
class PluginArchs:
    sass: tuple[int, ...]  # 75, 80, ... (sm_XY)
    ptx: tuple[int, ...]   # compute_XY
    cuda: str | None = None
    source: Path | None = None

    def covers(self, cc: str) -> bool:
        """SASS sm_XY runs on compute capability X.z for z >= y; PTX compute_XY is JIT-compiled by the driver
        for any compute capability >= X.Y."""
        major, minor = _cc(cc)
        value = major * 10 + minor
        if any(s // 10 == major and s % 10 <= minor for s in self.sass):
            return True
        return any(p <= value for p in self.ptx)

    def via_ptx_only(self, cc: str) -> bool:
        major, minor = _cc(cc)
        return self.covers(cc) and not any(s // 10 == major and s % 10 <= minor for s in self.sass)

    def as_list(self) -> list[str]:
        """For the manifest: ["sm_75", ..., "compute_75"]."""
        return [f"sm_{a}" for a in self.sass] + [f"compute_{a}" for a in self.ptx]

    def describe(self) -> str:
        sass = ", ".join(f"sm_{a}" for a in self.sass) or "none"
        ptx = ", ".join(f"compute_{a} (JIT on compute capability >= {a // 10}.{a % 10})" for a in self.ptx) or "none"
        return f"SASS {sass}; PTX {ptx}"


def _cc(cc: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)\.(\d)", cc.strip())
    if not m:
        raise ValueError(f"compute capability {cc!r} is not of the form MAJOR.MINOR (e.g. 8.6)")
    return int(m.group(1)), int(m.group(2))


def sidecar_path(library: Path) -> Path:
    return Path(str(library) + SUFFIX)


def read_plugin_archs(library: Path) -> PluginArchs | None:
    """The architectures the plugin library was compiled for; None when it has no sidecar (e.g. copied alone)."""
    path = sidecar_path(Path(library))
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        sass = tuple(sorted(int(re.fullmatch(r"sm_(\d+)", s).group(1)) for s in data["sass"]))
        ptx = tuple(sorted(int(re.fullmatch(r"compute_(\d+)", s).group(1)) for s in data.get("ptx", [])))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PluginArchError(f"cannot read the plugin's architecture list {path}: {exc} (expected JSON like "
                              '{"sass": ["sm_86"], "ptx": ["compute_75"]}; rebuild the plugin with cmake)') from exc
    return PluginArchs(sass, ptx, data.get("cuda"), path)


def uncovered(archs: PluginArchs, ccs: list[str]) -> list[str]:
    return [c for c in ccs if not archs.covers(c)]


def refusal_message(library: Path, archs: PluginArchs, ccs: list[str], bad: list[str]) -> str:
    sms = ";".join(sorted({f"{_cc(c)[0]}{_cc(c)[1]}" for c in bad} | {str(a) for a in archs.sass}, key=int))
    return (f"the SMSRSparseBlock plugin library {library} has no kernels for compute capability "
            f"{', '.join(bad)} (of the targets {', '.join(ccs)}); it carries {archs.describe()}. An engine for those "
            f"GPUs would fail on every inference with 'no kernel image'. Drop them (--compute-capability "
            f"{' '.join(c for c in ccs if c not in bad) or '<a covered one>'}) or rebuild the plugin for them: "
            f"cmake -S . -B build -DSMSR_CUDA_ARCHITECTURES=\"{sms}\" (with a CUDA toolkit whose "
            "`nvcc --list-gpu-arch` lists them) && cmake --build build")
