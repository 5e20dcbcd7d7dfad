"""The plugin library says which GPUs it has kernels for (<lib>.archs, written by CMake), that list is what its
fatbinary really holds, it covers the default TensorRT-RTX targets, and engine builds refuse targets it does not
cover (converters/engine_build/plugin_archs.py). CPU only: no GPU, no TensorRT runtime."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import missing_component

from converters.engine_build import builders
from converters.engine_build.plugin_archs import PluginArchs, read_plugin_archs, sidecar_path
from converters.engine_build.profile import make_profile

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "build"
WANTED = (72, 75, 80, 86, 87, 89, 90, 120)  # the default SMSR_CUDA_ARCHITECTURES (72 only with CUDA 12.x)


@pytest.fixture(scope="module")
def plugin_library() -> Path:
    lib = BUILD / "plugins/smsrSparseBlock/libsmsr_trt_plugin.so"
    if not lib.is_file():
        missing_component(f"TensorRT plugin library {lib} not built (cmake --build build)")
    return lib


def _cmake_cache(name: str) -> str | None:
    cache = BUILD / "CMakeCache.txt"
    if not cache.is_file():
        return None
    m = re.search(rf"^{name}:[A-Z]+=(.*)$", cache.read_text(), re.M)
    return m.group(1) if m else None


def _nvcc_archs() -> set[int] | None:
    """What the build's nvcc can target (CMake records it in CMakeFiles/<version>/CMakeCUDACompiler.cmake)."""
    nvcc = None
    for f in sorted(BUILD.glob("CMakeFiles/*/CMakeCUDACompiler.cmake")):
        m = re.search(r'^set\(CMAKE_CUDA_COMPILER "([^"]+)"\)', f.read_text(), re.M)
        nvcc = m.group(1) if m else nvcc
    if not nvcc or not Path(nvcc).is_file():
        return None
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60).stdout
    return {int(a) for a in re.findall(r"compute_(\d+)", out)}


def _fatbin_entries(library: Path) -> list[tuple[str, int]]:
    """(kind, arch) of every entry of the library's .nv_fatbin section: kind 'sass' or 'ptx'."""
    data = library.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, "expected a 64-bit ELF"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab_off = sections[shstrndx][4]
    entries = []
    for name_off, _, _, _, off, size in sections:
        name = data[strtab_off + name_off:data.index(b"\0", strtab_off + name_off)]
        if name != b".nv_fatbin":
            continue
        pos, end = off, off + size
        while pos + 16 <= end:
            magic, _, header, fat_size = struct.unpack_from("<IHHQ", data, pos)
            if magic != 0xBA55ED50:
                pos += 8  # fatbins are 8-byte aligned in the section
                continue
            e, stop = pos + header, pos + header + fat_size
            while e < stop:
                kind, _, e_header, e_size = struct.unpack_from("<HHIQ", data, e)
                arch, = struct.unpack_from("<I", data, e + 28)
                entries.append(({1: "ptx", 2: "sass"}.get(kind, str(kind)), arch))
                e += e_header + e_size
            pos = stop
    return entries


def test_sidecar_lists_the_architectures_the_library_holds(plugin_library):
    sidecar = sidecar_path(plugin_library)
    assert sidecar.is_file(), f"{sidecar} missing: the plugin's CMakeLists.txt writes it next to the library"
    assert set(json.loads(sidecar.read_text())) >= {"sass", "ptx"}
    archs = read_plugin_archs(plugin_library)
    entries = _fatbin_entries(plugin_library)
    assert entries, "no CUDA fatbinary in the plugin library"
    assert set(archs.sass) == {a for k, a in entries if k == "sass"}
    assert set(archs.ptx) == {a for k, a in entries if k == "ptx"}
    # The self-registering variant carries the same kernels.
    autoreg = plugin_library.with_name("libsmsr_trt_plugin_autoreg.so")
    if autoreg.is_file():
        assert read_plugin_archs(autoreg) == PluginArchs(archs.sass, archs.ptx, archs.cuda, sidecar_path(autoreg))


def test_default_architectures_cover_the_default_engine_targets(plugin_library):
    archs = read_plugin_archs(plugin_library)
    configured = _cmake_cache("SMSR_CUDA_ARCHITECTURES")
    nvcc = _nvcc_archs()
    if configured is None or nvcc is None:
        missing_component("build/CMakeCache.txt with SMSR_CUDA_ARCHITECTURES and nvcc (the CUDA kernel build)")
    asked = {int(re.match(r"\d+", a).group()) for a in configured.split(";") if a}
    if asked != set(WANTED):
        pytest.skip(f"build configured with a custom SMSR_CUDA_ARCHITECTURES={configured}")
    expected = {a for a in WANTED if a in nvcc}  # what this nvcc can build; the rest is dropped with a message
    assert set(archs.sass) == expected
    assert archs.ptx == (min(expected),)  # oldest PTX: JIT for every newer GPU
    for cc in builders.DEFAULT_RTX_CCS:
        assert archs.covers(cc), f"default TensorRT-RTX target {cc} not covered by {archs.describe()}"
        if int(cc.replace(".", "")) in nvcc:
            assert int(cc.replace(".", "")) in archs.sass, f"no SASS for default target {cc}"


def test_coverage_rules():
    a = PluginArchs(sass=(80, 86, 90), ptx=(90,))
    assert a.covers("8.0") and a.covers("8.6") and a.covers("8.9")  # sm_86 SASS runs on 8.9 (same major)
    assert a.covers("9.0") and a.covers("12.0") and a.via_ptx_only("12.0") and not a.via_ptx_only("8.9")
    assert not a.covers("7.5") and not a.covers("7.2")
    assert PluginArchs(sass=(72,), ptx=()).covers("7.5")  # SASS X.y runs on X.z, z >= y
    assert a.as_list() == ["sm_80", "sm_86", "sm_90", "compute_90"]
    b = PluginArchs(sass=(86,), ptx=())
    assert not b.covers("8.0") and not b.covers("12.0") and b.covers("8.9")
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        a.covers("86")


class _FakeTrt:
    __version__ = "1.7.1.116"

    class ComputeCapability:
        __members__ = {"NONE": 0, "CURRENT": 1, "SM75": 2, "SM80": 3, "SM86": 4, "SM89": 5, "SM120": 6}


def _fake_plugin(tmp_path: Path, sass: list[int], ptx: list[int]) -> Path:
    lib = tmp_path / "libsmsr_trt_plugin.so"
    lib.write_bytes(b"not loaded by these tests")
    sidecar_path(lib).write_text(json.dumps({"sass": [f"sm_{a}" for a in sass],
                                             "ptx": [f"compute_{a}" for a in ptx]}))
    return lib


def test_deploy_build_refuses_targets_without_kernels(tmp_path, monkeypatch):
    monkeypatch.setattr(builders, "detect_gpu", lambda: None)
    lib = _fake_plugin(tmp_path, [80, 86, 89, 90], [90])  # the library as built before: no Turing, PTX 9.0
    rtx = builders.TensorRTRTXAdapter(_FakeTrt)
    opts = builders.BuildOptions(profile=make_profile(2), compute_capabilities=["7.5", "8.6"], plugin_library=lib)
    # build() checks before it touches TensorRT (the fake module has no Builder: reaching it would AttributeError).
    with pytest.raises(builders.PluginTargetError) as exc:
        rtx.build(tmp_path / "deploy.onnx", opts)
    msg = str(exc.value)
    assert f"plugin library {lib} has no kernels for compute capability 7.5 (of the targets 7.5, 8.6)" in msg
    assert "SASS sm_80, sm_86, sm_89, sm_90; PTX compute_90" in msg
    assert "no kernel image" in msg and "--compute-capability 8.6" in msg
    assert '-DSMSR_CUDA_ARCHITECTURES="75;80;86;89;90"' in msg
    assert isinstance(exc.value, builders.BuilderUnavailable)  # build_engine.py: exit 3 with the message
    # Covered targets pass; sm_86 SASS runs on 8.9, PTX 9.0 on 12.0 (JIT).
    opts.compute_capabilities = ["8.6", "8.9", "12.0"]
    archs = rtx.check_plugin_targets(opts, opts.compute_capabilities)
    assert archs.as_list() == ["sm_80", "sm_86", "sm_89", "sm_90", "compute_90"]
    # No targets given and no GPU: the defaults the plugin has kernels for.
    opts.compute_capabilities = None
    assert rtx.resolve_targets(opts) == (["8.6", "8.9", "12.0"], None)
    # The reference graph (no plugin) keeps every default.
    opts.plugin_library = None
    assert rtx.resolve_targets(opts) == (list(builders.DEFAULT_RTX_CCS), None)


def test_refusals_for_gpu_builds_and_unusable_sidecars(tmp_path, monkeypatch, capsys):
    trt = builders.TensorRTAdapter(_FakeTrt)
    lib = _fake_plugin(tmp_path, [86], [])
    monkeypatch.setattr(builders, "detect_gpu", lambda: builders.GpuInfo("Jetson Xavier", "7.2"))
    opts = builders.BuildOptions(profile=make_profile(2), plugin_library=lib)
    with pytest.raises(builders.PluginTargetError, match="no kernels for compute capability 7.2"):
        trt.build(tmp_path / "deploy.onnx", opts)
    monkeypatch.setattr(builders, "detect_gpu", lambda: builders.GpuInfo("Orin", "8.7"))
    opts.hardware_compatibility = "ampere+"
    with pytest.raises(builders.PluginTargetError, match="ampere\\+.*PTX for compute_80 or lower"):
        trt.build(tmp_path / "deploy.onnx", opts)
    # Nothing the plugin covers among the RTX defaults.
    rtx = builders.TensorRTRTXAdapter(_FakeTrt)
    monkeypatch.setattr(builders, "detect_gpu", lambda: None)
    (tmp_path / "pascal").mkdir()
    opts = builders.BuildOptions(profile=make_profile(2), plugin_library=_fake_plugin(tmp_path / "pascal", [61], []))
    with pytest.raises(builders.PluginTargetError, match="no kernels for compute capability 7.5, 8.6, 8.9, 12.0"):
        rtx.resolve_targets(opts)
    # A broken sidecar is an error naming the file; a missing one only a warning (cannot check).
    sidecar_path(lib).write_text("{not json")
    opts = builders.BuildOptions(profile=make_profile(2), compute_capabilities=["8.6"], plugin_library=lib)
    with pytest.raises(builders.PluginTargetError, match=r"cannot read the plugin's architecture list .*\.archs"):
        rtx.check_plugin_targets(opts, ["8.6"])
    sidecar_path(lib).unlink()
    assert rtx.check_plugin_targets(opts, ["8.6"]) is None
    assert "has no architecture list" in capsys.readouterr().out


def test_build_engine_cli_refuses_uncovered_targets(onnx_graphs, plugin_library, tmp_path):
    """End to end through converters/build_engine.py with TensorRT-RTX: exit 3 and the message, no engine."""
    pytest.importorskip("tensorrt_rtx", reason="TensorRT-RTX not installed")
    lib = tmp_path / plugin_library.name
    shutil.copy(plugin_library, lib)
    sidecar_path(lib).write_text(json.dumps({"sass": ["sm_86"], "ptx": []}))
    args = ["--onnx", onnx_graphs["deploy_fp16"], "--precision", "fp16", "--builder", "tensorrt-rtx",
            "--compute-capability", "7.5", "--plugin", lib, "--out-dir", tmp_path / "out",
            "--min-shape", "1x3x16x16", "--opt-shape", "1x3x32x32", "--max-shape", "1x3x64x64"]
    code = "import sys; from converters.build_engine import main; sys.exit(main(sys.argv[1:]))"
    res = subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert res.returncode == 3, res.stderr
    assert "has no kernels for compute capability 7.5" in res.stderr
    assert not list((tmp_path / "out").glob("*.engine"))
