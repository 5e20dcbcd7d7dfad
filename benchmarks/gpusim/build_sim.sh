#!/usr/bin/env bash
# Builds (or reuses) a private GPGPU-Sim 4.2.0 + CUDA 11.8 toolkit under $GPUSIM_DIR (git-ignored).
# Nothing is installed system-wide: the toolkit's .debs are fetched with a private apt state and unpacked
# with `dpkg -x`; the simulator is built from a patched copy of ../shared/third_party/gpgpu-sim.
# Usage: build_sim.sh [toolkit|sim|all]   (default all; each step is skipped when its stamp exists)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared}"
SIM_SRC="${GPUSIM_SRC:-$SHARED/third_party/gpgpu-sim}"
GPUSIM_DIR="${GPUSIM_DIR:-$ROOT/build-gpusim}"
JOBS="${JOBS:-2}"
PREFIX="$GPUSIM_DIR/prefix"      # unpacked .debs
CUDA_TREE="$GPUSIM_DIR/cuda-11.8" # relocatable CUDA tree built from the prefix
SIM="$GPUSIM_DIR/gpgpu-sim"       # patched simulator copy + its build
STEP="${1:-all}"

die() { echo "build_sim.sh: error: $*" >&2; exit 1; }
[ -d "$SIM_SRC/src/cuda-sim" ] || die "simulator source not found at $SIM_SRC (set SHARED or GPUSIM_SRC)"
mkdir -p "$GPUSIM_DIR"

toolkit() {
  if [ -f "$GPUSIM_DIR/.toolkit-done" ]; then echo "toolkit: reusing $CUDA_TREE"; return; fi
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || die "apt-get and dpkg are needed to fetch the toolkit"
  local apt="$GPUSIM_DIR/apt"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$PREFIX"
  # Debian's own mirror and keyring, plus the non-free component, in a private sources list only.
  local mirror
  mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
  mirror="${mirror:-http://deb.debian.org/debian}"
  cat > "$apt/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main non-free
SRC
  local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o "Debug::NoLocking=1")
  if [ ! -f "$GPUSIM_DIR/.debs-done" ]; then
    echo "toolkit: apt-get update (private lists in $apt)"
    apt-get "${opts[@]}" update -q
    echo "toolkit: downloading the CUDA 11.8 toolkit .debs (~870 MB unpacked)"
    (cd "$apt/debs" && apt-get "${opts[@]}" download nvidia-cuda-toolkit nvidia-cuda-dev libcudart11.0 \
       libnvvm4 bison flex m4 libfl-dev libfl2 xutils-dev)
    for d in "$apt"/debs/*.deb; do dpkg -x "$d" "$PREFIX"; done
    touch "$GPUSIM_DIR/.debs-done"
  fi
  # Relocatable tree: nvcc finds cicc/libdevice/headers relative to itself through nvcc.profile.
  rm -rf "$CUDA_TREE"; mkdir -p "$CUDA_TREE/bin" "$CUDA_TREE/nvvm/bin" "$CUDA_TREE/nvvm/libdevice"
  local b
  # Only the real tools: Debian's gcc/g++ wrappers there would shadow the system compiler.
  cp -L "$PREFIX/usr/lib/nvidia-cuda-toolkit/bin/nvcc" "$CUDA_TREE/bin/"
  cp -rL "$PREFIX/usr/lib/nvidia-cuda-toolkit/bin/crt" "$CUDA_TREE/bin/" 2>/dev/null || true
  for b in ptxas fatbinary nvlink cuobjdump nvdisasm bin2c; do
    [ -e "$PREFIX/usr/bin/$b" ] && cp -L "$PREFIX/usr/bin/$b" "$CUDA_TREE/bin/"
  done
  [ -x "$CUDA_TREE/bin/nvcc" ] || die "no nvcc in the unpacked toolkit ($PREFIX)"
  cat > "$CUDA_TREE/bin/nvcc.profile" <<'PROF'
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH += $(TOP)/lib64:
PATH            += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"
CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
PROF
  local cicc; cicc="$(find "$PREFIX" -name cicc -type f | head -1)"
  local libdev; libdev="$(find "$PREFIX" -name 'libdevice.10.bc' | head -1)"
  [ -n "$cicc" ] && [ -n "$libdev" ] || die "cicc or libdevice missing from the unpacked toolkit"
  ln -sf "$cicc" "$CUDA_TREE/nvvm/bin/cicc"
  ln -sf "$libdev" "$CUDA_TREE/nvvm/libdevice/libdevice.10.bc"
  ln -sfn "$PREFIX/usr/include" "$CUDA_TREE/include"
  ln -sfn "$PREFIX/usr/lib/x86_64-linux-gnu" "$CUDA_TREE/lib64"
  "$CUDA_TREE/bin/nvcc" --version | tail -2
  touch "$GPUSIM_DIR/.toolkit-done"
}

sim() {
  local lib="$SIM/lib/gcc-$(gcc -dumpfullversion)/cuda-11080/release/libcudart.so.11.0"
  [ -f "$GPUSIM_DIR/.toolkit-done" ] || die "toolkit missing: run '$0 toolkit' first"
  if [ ! -d "$SIM/.git" ]; then
    rm -rf "$SIM"; cp -a "$SIM_SRC" "$SIM"
    # The simulator's Makefile calls git log/diff for its build string.
    (cd "$SIM" && git init -q && git add -A && git -c user.name=gpusim -c user.email=gpusim@localhost commit -qm snapshot)
  fi
  local p
  for p in "$HERE"/patches/*.patch; do
    [ -e "$p" ] || continue
    if (cd "$SIM" && git apply --check "$p" 2>/dev/null); then
      echo "sim: applying $(basename "$p")"; (cd "$SIM" && git apply "$p")
      rm -f "$GPUSIM_DIR/.sim-done" # a new patch: rebuild (make rebuilds only what it touches)
    elif (cd "$SIM" && git apply --reverse --check "$p" 2>/dev/null); then
      echo "sim: $(basename "$p") already applied"
    else die "patch $(basename "$p") does not apply to $SIM"; fi
  done
  if [ -f "$GPUSIM_DIR/.sim-done" ] && [ -f "$lib" ]; then echo "sim: reusing $lib"; return; fi
  local bin="$PREFIX/usr/bin"
  export CUDA_INSTALL_PATH="$CUDA_TREE" BISON_PKGDATADIR="$PREFIX/usr/share/bison" M4="$bin/m4"
  export PATH="$bin:$PATH"
  echo "sim: building GPGPU-Sim (make -j$JOBS, ~7 min on 2 cores)"
  (cd "$SIM" && set +u && source setup_environment release >/dev/null && make -j"$JOBS" >"$GPUSIM_DIR/sim-build.log" 2>&1) \
    || die "simulator build failed, see $GPUSIM_DIR/sim-build.log"
  [ -f "$lib" ] || die "simulator built but $lib is missing (see $GPUSIM_DIR/sim-build.log)"
  touch "$GPUSIM_DIR/.sim-done"
  echo "sim: $lib"
}

case "$STEP" in
  toolkit) toolkit ;;
  sim) sim ;;
  all) toolkit; sim ;;
  *) die "unknown step '$STEP' (toolkit|sim|all)" ;;
esac
