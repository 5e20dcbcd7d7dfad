"""SASS report of the sparse-block CUDA kernels: registers, spills, shared memory and the main loops' instruction mix.

    python tests/gpu/sass_report.py [KERNEL.cu] [--arch 87 90] [--json] [--check]   (CPU only: nvcc + disassembler)

Compiles the kernel source (default plugins/smsrSparseBlock/kernels/sparseBlockKernels.cu of this tree; give any
tree's file) with nvcc -cubin for each SM architecture, reads registers / spill bytes / static shared memory from
`ptxas -v`, disassembles the cubin (nvdisasm, else cuobjdump -sass, from the pip packages nvidia-cuda-nvdisasm /
nvidia-cuda-cuobjdump, the `dev` extra), and reports for every kernel and every main loop.

What is counted (all from the SASS, statically):
- A loop is the address range [target, branch] of a backward branch (branches to one target merge).
  A *main loop* is a loop that holds an HMMA (tensor core) instruction outside any loop nested in it; a kernel
  without HMMA uses FFMA (the FP32 SIMT kernel). A main loop's counts exclude nested main loops (each is reported
  on its own: e.g. an outer loop around the steady-state K loop, holding the peeled last pipeline stage); nested
  loops without MMA are listed as inner loops and counted once.
- Instructions per HMMA = instructions in the main loop's body (every path, nested loops once) / HMMA in it.
  Limited: every innermost main loop, and every outermost loop nest as a whole (nested main loops once).
  For a straight-line (fully unrolled) main loop this is exactly what one iteration issues per warp. A nested
  loop's trip count cannot be read from the SASS, so with inner loops the figure is a LOWER bound (marked ">=").
- Division sequences: an integer division by a run-time divisor compiles to I2F.RP -> MUFU.RCP -> IADD3 ..
  0xffffffe -> F2I.FTZ.U32.TRUNC -> IMAD.HI.U32 -> correction compares: one I2F.*RP per division, ~20
  instructions. When the divisor is loop-invariant ptxas may hoist the reciprocal and leave IMAD.HI.U32 + IMAD +
  ISETP.*.U32 corrections (~8 instructions) in the loop; that counts as a division as well ("hoisted"). Division by
  a compile-time constant (IMAD.HI by an immediate magic number + shift, 2-3 instructions) is listed as
  `const_div` and not counted as a division sequence: it is cheap and its cost is already in instructions/HMMA.
- Memory instructions by kind and width (LDG/STG/LDS/STS/LDSM/LDGSTS/LDL/STL ..., width 128/64/32/16/8 bits).

Limits (`--check`, and tests/gpu/test_sass_report.py in CI), derived in tests/gpu/perf_model.py's docstring:
- no spill (ptxas spill stores/loads 0 bytes, no LDL/STL in a main loop);
- no division sequence (full or hoisted) in a main loop;
- no inner loop in an HMMA main loop that moves data (loads/stores) or is longer than MAX_CONTROL_LOOP (= 32)
  instructions: its trip count would make instructions/HMMA unknowable (short control-only loops, e.g. skipping
  empty taps, are reported with ">=" and allowed), and instructions per HMMA <= MAX_INSTR_PER_HMMA (= 10);
- INT8 (IMMA) main loops: the same inner-loop rule and instructions per IMMA <= MAX_INSTR_PER_IMMA (= 5.25, from
  the model) on sm_87, <= MAX_INSTR_PER_IMMA_OTHER_ARCH (= 6.0, a regression limit) on other architectures.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = ROOT / "plugins/smsrSparseBlock/kernels/sparseBlockKernels.cu"
DEFAULT_ARCHS = ("87", "90")
NVCC_DEFAULT = "/usr/local/cuda/bin/nvcc"

# Derived in perf_model.py: an HMMA.16816 keeps the SM's tensor pipe busy for 8 cycles on sm_80/87 (2048 MAC /
# 256 MAC per clk per sub-core), so one scheduler can issue 8 instructions per HMMA before the tensor core
# waits; with ~20 % slack for stalls the sub-core stays tensor-bound only below ~6.5, and at 10 it reaches ~80 %
# of the tensor peak. 10 is the CI limit; the model shows the effect of any value.
MAX_INSTR_PER_HMMA = 10.0
# INT8 main loops (IMMA.16816, issue 14): an IMMA.16816 is 2048 MAC at the doubled INT8 rate, 4 cycles of a
# sub-core's tensor pipe on sm_80/87, so above 4 instructions per IMMA the loop is issue-bound. The model target
# (INT8 sparse >= 1.3x dense INT8 at 37 % on Orin) holds up to perf_model.derived_instr_per_imma_limit() (5.27 at
# nominal occupancy): CI's limit on sm_87, the target's architecture, stays under it. Elsewhere (sm_90: L2-bound in
# the model, and dense INT8 there is wgmma's) a regression limit.
MAX_INSTR_PER_IMMA = 5.25
MAX_INSTR_PER_IMMA_OTHER_ARCH = 6.0
IMMA_TARGET_ARCH = "87"
# An inner loop without loads/stores and at most this long (e.g. skipping empty taps of the neighbour map) adds at
# most its size per extra trip and cannot hide per-element work: reported (">=") but allowed.
MAX_CONTROL_LOOP = 32


class ReportError(RuntimeError):
    """A tool is missing or a compile failed: the message says which and why."""


# ----------------------------------------------------------------------------------------------- tools
def find_tool(name: str, env: str) -> str:
    """The binary from $env, PATH, NVIDIA's pip packages (nvidia/cu13/bin, nvidia/cuda_*/bin) or /usr/local/cuda."""
    if os.environ.get(env):
        if not os.access(os.environ[env], os.X_OK):
            raise ReportError(f"{env}={os.environ[env]} is not an executable")
        return os.environ[env]
    found = shutil.which(name)
    if found:
        return found
    try:
        import nvidia  # namespace package of the nvidia-cuda-* wheels
        for base in nvidia.__path__:
            for cand in sorted(Path(base).glob(f"*/bin/{name}")):
                if os.access(cand, os.X_OK):
                    return str(cand)
    except ImportError:
        pass
    cand = Path("/usr/local/cuda/bin") / name
    if cand.exists():
        return str(cand)
    raise ReportError(f"{name} not found (set {env}, or `pip install nvidia-cuda-{name}`: the project's dev extra)")


def nvcc_path() -> str:
    for cand in (os.environ.get("SMSR_NVCC"), shutil.which("nvcc"), NVCC_DEFAULT):
        if cand and Path(cand).exists():
            return cand
    raise ReportError("nvcc not found (set SMSR_NVCC or install CUDA at /usr/local/cuda)")


def include_dirs(source: Path) -> list[Path]:
    """The kernel folder and the tree's plugins/common (simt/simt_portable.h), found upwards from the source."""
    dirs = [source.parent]
    for up in source.parents:
        if (up / "common" / "simt").is_dir():
            dirs.append(up / "common")
            break
        if (up / "plugins" / "common").is_dir():
            dirs.append(up / "plugins" / "common")
            break
    return dirs


def compile_cubin(source: Path, arch: str, out_dir: Path, extra: list[str] | None = None) -> tuple[Path, str]:
    """nvcc -cubin -Xptxas -v: (cubin path, ptxas log)."""
    cubin = out_dir / f"{source.stem}.sm_{arch}.cubin"
    cmd = [nvcc_path(), "-cubin", f"-arch=sm_{arch}", "-std=c++17", "-O3", "--expt-relaxed-constexpr",
           "-Xptxas", "-v", "-o", str(cubin), str(source)]
    for d in include_dirs(source):
        cmd[1:1] = ["-I", str(d)]
    cmd[1:1] = list(extra or [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReportError(f"nvcc failed for {source} (sm_{arch}):\n{proc.stderr.strip()[-4000:]}")
    return cubin, proc.stderr


def disassemble(cubin: Path) -> str:
    try:
        tool = find_tool("nvdisasm", "SMSR_NVDISASM")
        proc = subprocess.run([tool, "-c", str(cubin)], capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout
    except ReportError:
        pass
    tool = find_tool("cuobjdump", "SMSR_CUOBJDUMP")
    proc = subprocess.run([tool, "-sass", str(cubin)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReportError(f"{tool} -sass failed: {proc.stderr.strip()}")
    return proc.stdout


def max_threads(cubin: Path) -> dict[str, int]:
    """Per kernel: threads per block from __launch_bounds__ (EIATTR_MAX_THREADS of the cubin's .nv.info)."""
    try:
        tool = find_tool("cuobjdump", "SMSR_CUOBJDUMP")
    except ReportError:
        return {}
    proc = subprocess.run([tool, "-elf", str(cubin)], capture_output=True, text=True)
    out: dict[str, int] = {}
    cur, want = None, False
    for line in proc.stdout.splitlines():
        m = re.match(r"^\.nv\.info\.(\S+)\s*$", line)
        if m:
            cur, want = m.group(1), False
            continue
        if cur and "EIATTR_MAX_THREADS" in line:
            want = True
        elif cur and want and line.strip().startswith("Value:"):
            dims = [int(v, 16) for v in line.split(":", 1)[1].split()]
            out[cur] = dims[0] * (dims[1] if len(dims) > 1 else 1) * (dims[2] if len(dims) > 2 else 1)
            want = False
    return out


# ----------------------------------------------------------------------------------------------- ptxas
_PTXAS_FN = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+\w*)'")
_PTXAS_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_PTXAS_USED = re.compile(r"Used (\d+) registers(?:, used (\d+) barriers)?(?:, (\d+) bytes smem)?")


def parse_ptxas(log: str) -> dict[str, dict]:
    """Per mangled kernel: registers, barriers, static smem bytes, stack frame, spill store/load bytes."""
    out: dict[str, dict] = {}
    cur = None
    for line in log.splitlines():
        m = _PTXAS_FN.search(line)
        if m:
            cur = out.setdefault(m.group(1), {"registers": 0, "barriers": 0, "smem_static": 0, "stack": 0,
                                              "spill_store_bytes": 0, "spill_load_bytes": 0})
            continue
        if cur is None:
            continue
        m = _PTXAS_SPILL.search(line)
        if m:
            cur["stack"], cur["spill_store_bytes"], cur["spill_load_bytes"] = map(int, m.groups())
        m = _PTXAS_USED.search(line)
        if m:
            cur["registers"] = int(m.group(1))
            cur["barriers"] = int(m.group(2) or 0)
            cur["smem_static"] = int(m.group(3) or 0)
    return out


# ----------------------------------------------------------------------------------------------- SASS
@dataclasses.dataclass
class Instr:
    addr: int
    text: str        # without predicate and trailing ';'
    op: str          # full mnemonic with modifiers, e.g. LDG.E.128
    base: str        # mnemonic without modifiers, e.g. LDG
    operands: list[str]
    target: str | None = None  # branch/call target label or address (as text)


_FN_NVDISASM = re.compile(r"^\.text\.(\S+):\s*$")
_FN_CUOBJDUMP = re.compile(r"^\s*Function : (\S+)\s*$")
_INSTR = re.compile(r"^\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+):")
_PRED = re.compile(r"^@!?U?P[T0-9]+\s+")


def parse_sass(text: str) -> dict[str, list[Instr]]:
    """Function name -> instructions; branch targets resolved to addresses (nvdisasm labels or cuobjdump hex)."""
    funcs: dict[str, list[Instr]] = {}
    labels: dict[str, int] = {}
    pending: list[str] = []
    cur = None
    for line in text.splitlines():
        m = _FN_NVDISASM.match(line) or _FN_CUOBJDUMP.match(line)
        if m:
            cur = funcs.setdefault(m.group(1), [])
            continue
        m = _LABEL.match(line)
        if m:
            pending.append(m.group(1))
            continue
        m = _INSTR.match(line)
        if not m or cur is None:
            continue
        addr = int(m.group(1), 16)
        for lab in pending:
            labels[lab] = addr
        pending = []
        body = _PRED.sub("", m.group(2).strip())
        op, _, rest = body.partition(" ")
        operands = [o.strip() for o in rest.split(",")] if rest.strip() else []
        ins = Instr(addr, body, op, op.split(".")[0], operands)
        if ins.base in ("BRA", "CALL", "BSSY", "BREAK", "SSY", "PBK", "JMP"):
            t = re.search(r"`\((\.L_x_\d+)\)", rest) or re.search(r"(0x[0-9a-f]+)\s*$", rest)
            ins.target = t.group(1) if t else None
        cur.append(ins)
    for ins_list in funcs.values():
        for ins in ins_list:
            if ins.target is not None:
                ins.target = str(labels[ins.target]) if ins.target in labels else str(int(ins.target, 16)) \
                    if ins.target.startswith("0x") else None
    return funcs


def find_loops(instrs: list[Instr]) -> list[tuple[int, int]]:
    """(start index, end index) of every loop: backward branches, merged per target."""
    index = {ins.addr: i for i, ins in enumerate(instrs)}
    ends: dict[int, int] = {}
    for i, ins in enumerate(instrs):
        if ins.base == "BRA" and ins.target is not None and int(ins.target) <= ins.addr:
            s = index.get(int(ins.target))
            if s is not None:
                ends[s] = max(ends.get(s, i), i)
    return sorted(ends.items())


_REG = re.compile(r"\b(U?R\d+|U?P\d+)\b")


def _written(ins: Instr) -> set[str]:
    """Registers an instruction writes (first operand, and a register pair/quad for wide results)."""
    if not ins.operands or ins.base in ("ST", "STG", "STS", "STL", "RED", "BRA", "BAR", "ISETP", "FSETP"):
        # ISETP/FSETP write predicates only (first operands)
        if ins.base in ("ISETP", "FSETP") and ins.operands:
            return {ins.operands[0]}
        return set()
    m = _REG.match(ins.operands[0])
    if not m:
        return set()
    reg = m.group(1)
    # wide results occupy consecutive registers (IMAD.WIDE, 64/128-bit loads, HMMA accumulators)
    width = 4 if (".128" in ins.op or ins.base == "HMMA") else 2 if (".WIDE" in ins.op or ".64" in ins.op) else 1
    prefix, num = re.match(r"(U?[RP])(\d+)", reg).groups()
    return {f"{prefix}{int(num) + i}" for i in range(width)}


def division_stats(instrs: list[Instr]) -> dict[str, int]:
    """Full / hoisted-reciprocal integer divisions and constant (magic number) divisions in a range."""
    full = sum(1 for ins in instrs if ins.base == "I2F" and ".RP" in ins.op)
    written = set()
    for ins in instrs:
        written |= _written(ins)
    hoisted = const = 0
    for i, ins in enumerate(instrs):
        if ins.op not in ("IMAD.HI.U32", "IMAD.HI"):
            continue
        srcs = ins.operands[1:3]
        if any(s.startswith("0x") or s.startswith("-0x") for s in srcs):
            const += 1
            continue
        # quotient estimate q = hi(rcp * n) followed by the n - q*d correction compares
        follow = instrs[i + 1:i + 8]
        if not any(f.base == "ISETP" and ".U32" in f.op for f in follow):
            continue
        regs = [s for s in srcs if _REG.fullmatch(s)]
        if regs and any(r not in written for r in regs) and not any(
                f.base == "I2F" and ".RP" in f.op for f in instrs[max(0, i - 16):i]):
            hoisted += 1
    return {"full": full, "hoisted": hoisted, "const_div": const}


def mem_width(ins: Instr) -> int:
    """Access width in bits of a load/store mnemonic."""
    mods = ins.op.split(".")[1:]
    for mod, bits in (("128", 128), ("64", 64), ("U16", 16), ("S16", 16), ("U8", 8), ("S8", 8)):
        if mod in mods:
            return bits
    if ins.base == "LDSM":
        return 128 if ".4" in ins.op else 64 if ".2" in ins.op else 32
    return 32


MEM_OPS = ("LDG", "STG", "LDS", "STS", "LDSM", "LDGSTS", "LDL", "STL", "LD", "ST", "ATOM", "RED", "ATOMS",
           "UTMALDG", "UBLKCP")

def kind_of(ins: Instr) -> str:
    b = ins.base
    if b in ("HMMA", "HGMMA", "IMMA", "DMMA"):
        return "mma"
    if b in MEM_OPS:
        return "mem"
    if b in ("FFMA", "FADD", "FMUL", "HFMA2", "HADD2", "HMUL2", "FMNMX", "F2F", "F2FP", "I2F", "F2I", "MUFU",
             "FSETP", "FSEL", "HSETP2"):
        return "fp"
    if b in ("BRA", "BSSY", "BSYNC", "BAR", "WARPSYNC", "EXIT", "RET", "CALL", "BREAK", "DEPBAR", "LDGDEPBAR",
             "NOP", "YIELD", "BMOV", "VOTE", "VOTEU", "SHFL", "MEMBAR", "ERRBAR", "CCTL", "SYNCS", "ARRIVES"):
        return "control"
    return "int"


@dataclasses.dataclass
class LoopReport:
    start: int
    end: int
    instructions: int
    mma: int
    mma_op: str
    per_mma: float
    inner_loops: list[dict]
    divisions: dict
    kinds: dict
    memory: dict          # "LDG.128": n, ...
    local_memory: int     # LDL/STL in the loop
    barriers: int
    async_copy: bool      # LDGSTS / TMA in the loop (gathers overlap the MMA)
    lower_bound: bool
    nested_mma_loops: int  # nested loops with MMA (reported separately, excluded from these counts)
    outermost: bool        # not nested in another main loop
    nest_instructions: int  # the whole loop nest, every nested loop once
    nest_mma: int

    @property
    def nest_per_mma(self) -> float:
        return self.nest_instructions / self.nest_mma


def _mem_table(instrs: list[Instr]) -> dict[str, int]:
    table: dict[str, int] = {}
    for ins in instrs:
        if ins.base in MEM_OPS:
            bypass = ".BYPASS" if ".BYPASS" in ins.op else ""  # cp.async.cg: L1 bypassed, every byte from L2
            key = f"{ins.base}{bypass}.{mem_width(ins)}"
            table[key] = table.get(key, 0) + 1
    return dict(sorted(table.items()))


def analyse_kernel(instrs: list[Instr]) -> dict:
    """Main loops and whole-kernel counts of one function."""
    loops = find_loops(instrs)
    mma_bases = ("HMMA", "HGMMA", "IMMA")
    use_mma = any(i.base in mma_bases for i in instrs)
    key_base = mma_bases if use_mma else ("FFMA",)
    reports = []
    has_key = {(a, b): any(i.base in key_base for i in instrs[a:b + 1]) for a, b in loops}

    def is_main(a: int, b: int) -> bool:  # MMA outside every loop nested in [a, b]
        inner = set()
        for c, d in loops:
            if a <= c and d <= b and (c, d) != (a, b):
                inner.update(range(c, d + 1))
        return any(instrs[i].base in key_base for i in range(a, b + 1) if i not in inner)

    main = {lp: is_main(*lp) for lp in loops}
    for s, e in loops:
        nested = [(a, b) for a, b in loops if s <= a and b <= e and (a, b) != (s, e)]
        in_nested = set()
        for a, b in nested:
            in_nested.update(range(a, b + 1))
        direct = [instrs[i] for i in range(s, e + 1) if i not in in_nested and instrs[i].base in key_base]
        if not direct:
            continue
        # nested loops holding MMA are main loops of their own: this loop's figures exclude them (e.g. the
        # peeled last pipeline stage around an inner steady-state loop is measured on its own)
        mma_nested = set()
        for a, b in nested:
            if has_key[(a, b)]:
                mma_nested.update(range(a, b + 1))
        body = [instrs[i] for i in range(s, e + 1) if i not in mma_nested]
        mma = len([i for i in body if i.base in key_base])
        kinds: dict[str, int] = {}
        for i in body:
            k = kind_of(i)
            kinds[k] = kinds.get(k, 0) + 1
        # inner loops without MMA: only outermost ones are listed (their own nests are inside them)
        plain = [(a, b) for a, b in nested if not has_key[(a, b)] and not (set(range(a, b + 1)) & mma_nested)]
        top = [(a, b) for a, b in plain if not any(c <= a and b <= d and (c, d) != (a, b) for c, d in plain)]
        reports.append(LoopReport(
            start=instrs[s].addr, end=instrs[e].addr, instructions=len(body), mma=mma,
            mma_op=next(i.op for i in body if i.base in key_base), per_mma=len(body) / mma,
            inner_loops=[{"start": instrs[a].addr, "end": instrs[b].addr, "instructions": b - a + 1,
                          "moves_data": any(i.base in MEM_OPS for i in instrs[a:b + 1])} for a, b in top],
            divisions=division_stats(body), kinds=dict(sorted(kinds.items())), memory=_mem_table(body),
            local_memory=sum(1 for i in body if i.base in ("LDL", "STL")),
            barriers=sum(1 for i in body if i.base == "BAR"),
            async_copy=any(i.base in ("LDGSTS", "UTMALDG", "UBLKCP") for i in body),
            lower_bound=bool(top), nested_mma_loops=sum(1 for a, b in nested if has_key[(a, b)]),
            outermost=not any(c <= s and e <= d and (c, d) != (s, e) and main[(c, d)] for c, d in loops),
            nest_instructions=e - s + 1, nest_mma=sum(1 for i in instrs[s:e + 1] if i.base in key_base)))
    # a loop nested in another main loop that has direct MMA too is reported on its own; keep all
    return {
        "instructions": len(instrs),
        "mma_instructions": sum(1 for i in instrs if i.base in mma_bases),
        "ffma_instructions": sum(1 for i in instrs if i.base == "FFMA"),
        "loops": len(loops),
        "divisions": division_stats(instrs),
        "memory": _mem_table(instrs),
        "local_memory": sum(1 for i in instrs if i.base in ("LDL", "STL")),
        "calls": sum(1 for i in instrs if i.base == "CALL"),
        "main_loops": [dict(dataclasses.asdict(r), nest_per_mma=r.nest_per_mma) for r in reports],
    }


def demangle(name: str) -> str:
    """Short readable kernel name: smsr::kern::rowGemmKernel<__half> from the Itanium mangling (best effort)."""
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if tool:
        proc = subprocess.run([tool, name], capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip():
            full = proc.stdout.strip()
            m = re.match(r"(?:void )?([\w:]+(?:<[^()]*>)?)\(", full)
            return m.group(1) if m else full
    return name


# ----------------------------------------------------------------------------------------------- report
def report(source: Path, archs=DEFAULT_ARCHS, extra_flags: list[str] | None = None) -> dict:
    """{'source', 'archs': {arch: {kernel: {...}}}} for the given kernel source."""
    source = Path(source).resolve()
    if not source.is_file():
        raise ReportError(f"kernel source not found: {source}")
    out = {"source": str(source), "limits": limits(), "archs": {}}
    with tempfile.TemporaryDirectory(prefix="sass_report_") as tmp:
        for arch in archs:
            cubin, log = compile_cubin(source, str(arch), Path(tmp), extra_flags)
            ptxas = parse_ptxas(log)
            threads = max_threads(cubin)
            funcs = parse_sass(disassemble(cubin))
            kernels = {}
            for name, instrs in funcs.items():
                info = dict(ptxas.get(name, {}))
                info.update(analyse_kernel(instrs))
                info["max_threads"] = threads.get(name)
                info["name"] = demangle(name)
                kernels[name] = info
            out["archs"][str(arch)] = kernels
    return out


def limits() -> dict:
    return {"max_instr_per_hmma": MAX_INSTR_PER_HMMA, "max_instr_per_imma": MAX_INSTR_PER_IMMA,
            "max_instr_per_imma_other_arch": MAX_INSTR_PER_IMMA_OTHER_ARCH,
            "spill_bytes": 0, "main_loop_divisions": 0,
            "main_loop_data_inner_loops": 0, "max_control_inner_loop": MAX_CONTROL_LOOP}


def violations(rep: dict) -> list[str]:
    """Every broken limit, one readable line each (empty = all limits hold)."""
    bad = []
    for arch, kernels in rep["archs"].items():
        for k in kernels.values():
            who = f"sm_{arch} {k['name']}"
            if k.get("spill_store_bytes", 0) or k.get("spill_load_bytes", 0):
                bad.append(f"{who}: spills {k['spill_store_bytes']} B stored / {k['spill_load_bytes']} B loaded")
            for lp in k["main_loops"]:
                where = f"{who} main loop {lp['start']:#x}-{lp['end']:#x}"
                d = lp["divisions"]
                if d["full"] or d["hoisted"]:
                    bad.append(f"{where}: {d['full']} division sequences + {d['hoisted']} hoisted-reciprocal divisions")
                if lp["local_memory"]:
                    bad.append(f"{where}: {lp['local_memory']} local-memory (LDL/STL) instructions")
                if lp["mma_op"].startswith(("HMMA", "HGMMA", "IMMA")):
                    imma_limit = MAX_INSTR_PER_IMMA if str(arch) == IMMA_TARGET_ARCH else MAX_INSTR_PER_IMMA_OTHER_ARCH
                    mma, limit = ("IMMA", imma_limit) if lp["mma_op"].startswith("IMMA") \
                        else ("HMMA", MAX_INSTR_PER_HMMA)
                    heavy = [il for il in lp["inner_loops"]
                             if il["moves_data"] or il["instructions"] > MAX_CONTROL_LOOP]
                    if heavy:
                        bad.append(f"{where}: {len(heavy)} inner loop(s) that move data or exceed "
                                   f"{MAX_CONTROL_LOOP} instructions: instructions/{mma} is only a lower bound "
                                   f"(>= {lp['per_mma']:.1f}); unroll them")
                    worst = max(lp["nest_per_mma"] if lp["outermost"] else 0.0,
                                lp["per_mma"] if not lp["nested_mma_loops"] else 0.0)
                    if worst > limit:
                        bad.append(f"{where}: {worst:.1f} instructions per {mma} > {limit:g}")
    return bad


def format_table(rep: dict) -> str:
    lines = [f"SASS report (static counts) of {rep['source']}", ""]
    hdr = ("| arch | kernel | regs | stack / spill st / ld B | smem static B | main loop | body instr | MMA | instr/MMA "
           "| inner loops | div full/hoisted/const | barriers | async copy | memory ops in the loop |")
    lines += [hdr, "|" + "---|" * (hdr.count("|") - 1)]
    for arch, kernels in rep["archs"].items():
        for k in sorted(kernels.values(), key=lambda v: v["name"]):
            base = (f"| sm_{arch} | {k['name']} | {k.get('registers', '?')} | {k.get('stack', 0)} / "
                    f"{k.get('spill_store_bytes', 0)} / {k.get('spill_load_bytes', 0)} | {k.get('smem_static', 0)} ")
            if not k["main_loops"]:
                mem = " ".join(f"{n}×{c}" for n, c in k["memory"].items())
                d = k["divisions"]
                lines.append(base + f"| (none) | {k['instructions']} (kernel) | 0 | – | – "
                             f"| {d['full']}/{d['hoisted']}/{d['const_div']} (kernel) | – | – | {mem} |")
            for lp in k["main_loops"]:
                d = lp["divisions"]
                mem = " ".join(f"{n}×{c}" for n, c in lp["memory"].items())
                bound = ">=" if lp["lower_bound"] else ""
                lines.append(base + f"| {lp['start']:#x}-{lp['end']:#x} | {lp['instructions']} "
                             f"| {lp['mma']} {lp['mma_op']} | {bound}{lp['per_mma']:.1f} | {len(lp['inner_loops'])} "
                             f"| {d['full']}/{d['hoisted']}/{d['const_div']} | {lp['barriers']} "
                             f"| {'yes' if lp['async_copy'] else 'no'} | {mem} |")
    bad = violations(rep)
    lines += ["", f"Limits: spills 0, divisions in a main loop 0, no data-moving (or > {MAX_CONTROL_LOOP}-instruction) "
                  f"inner loop in an HMMA/IMMA main loop, instructions per HMMA <= {MAX_INSTR_PER_HMMA:g}, "
                  f"per IMMA <= {MAX_INSTR_PER_IMMA:g} (sm_{IMMA_TARGET_ARCH}; "
                  f"{MAX_INSTR_PER_IMMA_OTHER_ARCH:g} elsewhere).",
              "All limits hold." if not bad else f"{len(bad)} limit(s) broken:"]
    lines += [f"  - {b}" for b in bad]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", default=str(DEFAULT_SOURCE), help="kernel .cu file (default: this tree's)")
    ap.add_argument("--arch", nargs="+", default=list(DEFAULT_ARCHS), help="SM architectures (default 87 90)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--check", action="store_true", help="exit 1 when a limit is broken")
    args = ap.parse_args(argv)
    try:
        rep = report(Path(args.source), args.arch)
    except ReportError as exc:
        print(f"sass_report: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rep, indent=1) if args.json else format_table(rep))
    return 1 if args.check and violations(rep) else 0


if __name__ == "__main__":
    sys.exit(main())
