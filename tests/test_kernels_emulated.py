"""The SMSRSparseBlock CUDA kernels, executed on the CPU from their own .cu/.cuh source (SIMT layer), via ctest.

Uses the CMake build dir SMSR_BUILD_DIR (default: build/ in the repo); configures it if missing and builds only
the emulation targets (host compiler; nvcc not needed). Skips with the reason when cmake or a C++ compiler is missing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EMU_TARGETS = [
    "smsr_simt_selftest", "smsr_kernels_emu_test", "smsr_kernels_emu_test_plain_wmma",
    "smsr_kernels_emu_test_bug_missing_sync", "smsr_kernels_emu_test_bug_missing_wait",
    "smsr_kernels_emu_test_bug_halo", "smsr_kernels_emu_test_bug_tap_delta",
    "smsr_kernels_emu_test_bug_unmasked_sparse", "smsr_kernels_emu_test_bug_unzeroed_pad",
    "smsr_kernels_emu_test_bug_misaligned_vector",
]
ASAN_TARGETS = ["smsr_simt_selftest_asan", "smsr_kernels_emu_test_asan"]


def _run(cmd: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def build_dir() -> Path:
    if not shutil.which("cmake"):
        pytest.skip("cmake not found: cannot build the emulated kernel tests")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler found: cannot build the emulated kernel tests")
    build = Path(os.environ.get("SMSR_BUILD_DIR", REPO / "build"))
    if not (build / "CMakeCache.txt").is_file():
        r = _run(["cmake", "-S", str(REPO), "-B", str(build)], timeout=300)
        assert r.returncode == 0, f"cmake configure failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    listed = _run(["cmake", "--build", str(build), "--target", "help"], timeout=120).stdout
    targets = [t for t in EMU_TARGETS + ASAN_TARGETS if t in listed]
    missing = [t for t in EMU_TARGETS if t not in targets]
    assert not missing, f"build dir {build} lacks the emulation targets {missing} (plugins/common or kernels not configured?)"
    r = _run(["cmake", "--build", str(build), "-j", "2", "--target", *targets], timeout=1500)
    assert r.returncode == 0, f"building the emulated kernel tests failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return build


def _ctest(build: Path, regex: str, timeout: int = 900) -> str:
    r = _run(["ctest", "--test-dir", str(build), "-R", regex, "--output-on-failure"], timeout=timeout)
    out = r.stdout + r.stderr
    assert "No tests were found" not in out, f"no ctest matches {regex!r} in {build}"
    assert r.returncode == 0, f"ctest -R {regex} failed:\n{out[-6000:]}"
    return out


def test_simt_layer_selftest(build_dir):
    _ctest(build_dir, r"^smsr_simt_selftest$")


@pytest.mark.parametrize("order", ["ascending", "descending", "random"])
def test_kernels_match_reference_in_every_warp_order(build_dir, order):
    out = _ctest(build_dir, rf"^smsr_kernels_emu_{order}$")
    assert "1 tests passed" in out or "100% tests passed" in out


def test_kernels_plain_wmma_path(build_dir):
    """SMSR_PLAIN_WMMA build (GPGPU-Sim / sm_75 path): register-staged copies instead of cp.async."""
    _ctest(build_dir, r"^smsr_kernels_emu_plain_wmma$")


@pytest.mark.parametrize("bug", ["missing_sync", "missing_wait", "halo", "tap_delta", "unmasked_sparse",
                                 "unzeroed_pad", "misaligned_vector"])
def test_injected_bug_is_detected(build_dir, bug):
    _ctest(build_dir, rf"^smsr_kernels_emu_detects_bug_{bug}$")


def test_kernels_under_address_sanitizer(build_dir):
    if not (build_dir / "plugins/smsrSparseBlock/kernels/smsr_kernels_emu_test_asan").exists():
        pytest.skip("compiler without -fsanitize=address,undefined: no ASan build of the emulated kernels")
    _ctest(build_dir, r"^(smsr_kernels_emu_asan|smsr_simt_selftest_asan)$")


def test_kernels_on_official_model_block(build_dir):
    listed = _run(["ctest", "--test-dir", str(build_dir), "-N", "-R", "smsr_kernels_emu_fixture"], timeout=60).stdout
    if "smsr_kernels_emu_fixture" not in listed:
        pytest.skip("real-model block fixture test not registered (weights/Set5/torch missing at configure time)")
    _ctest(build_dir, r"^smsr_kernels_emu_fixture")
