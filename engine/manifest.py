"""Engine manifest: the JSON file written next to a TensorRT engine (`<engine>.json`, e.g. `smsr_x2.engine.json`).

A serialized TensorRT engine only runs with the TensorRT version and GPU it was built for, and fails with an obscure
message (or worse) otherwise, so the runtime checks the manifest first and names the mismatch. build_engine.py writes
manifests with `EngineManifest(...).save(path)`; the runtime reads them with `load_manifest` and `check_compatible`.

Keys (required unless marked optional):
    scale (int), precision ("fp32"|"fp16"|"int8"), graph ("reference"|"deploy"),
    builder ("tensorrt"|"tensorrt-rtx"), builder_version ("10.14.1.48"),
    compute_capabilities (["8.7", ...]) and/or gpu_name (at least one of them),
    profile {"min": [N,3,H,W], "opt": [...], "max": [...]} (the LR input profile),
    plugin_library {"path", "sha256"} (optional; required for deploy graphs), onnx_sha256, checkpoint_sha256,
    created (optional strings), hardware_compatibility ("none"|"ampere+", optional),
    version_compatible (bool, optional), pad_multiple (int, optional: the runtime pads H, W to a multiple of it).
Unknown keys are kept (`extra`) so newer builders can add fields without breaking older runtimes.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ManifestError, PluginLibraryError, ScaleMismatchError

PRECISIONS = ("fp32", "fp16", "int8")
GRAPHS = ("reference", "deploy")
BUILDERS = ("tensorrt", "tensorrt-rtx")
_REQUIRED = ("scale", "precision", "graph", "builder", "builder_version", "profile")


@dataclass
class EngineManifest:
    scale: int
    precision: str
    graph: str
    builder: str
    builder_version: str
    profile: dict
    compute_capabilities: list[str] | None = None
    gpu_name: str | None = None
    plugin_library: dict | None = None
    onnx_sha256: str | None = None
    checkpoint_sha256: str | None = None
    created: str | None = None
    hardware_compatibility: str | None = None
    version_compatible: bool = False
    extra: dict = field(default_factory=dict)
    source: Path | None = field(default=None, compare=False)  # file it was read from (not serialised)

    def __post_init__(self) -> None:
        self.validate()

    # --- validation -------------------------------------------------------------------------------
    def validate(self) -> None:
        where = " in %s" % self.source if self.source else ""
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ManifestError("manifest%s: 'scale' must be a positive integer, got %r" % (where, self.scale))
        for key, allowed in (("precision", PRECISIONS), ("graph", GRAPHS), ("builder", BUILDERS)):
            if getattr(self, key) not in allowed:
                raise ManifestError("manifest%s: %r must be one of %s, got %r"
                                    % (where, key, ", ".join(allowed), getattr(self, key)))
        if not isinstance(self.builder_version, str) or not _version_tuple(self.builder_version):
            raise ManifestError("manifest%s: 'builder_version' must be a version string like '10.14.1', got %r"
                                % (where, self.builder_version))
        if not self.compute_capabilities and not self.gpu_name:
            raise ManifestError("manifest%s: needs 'compute_capabilities' or 'gpu_name'" % where)
        if self.compute_capabilities is not None:
            if not isinstance(self.compute_capabilities, list) or not all(
                    isinstance(c, str) and _cc_tuple(c) for c in self.compute_capabilities):
                raise ManifestError("manifest%s: 'compute_capabilities' must be a list like ['8.7'], got %r"
                                    % (where, self.compute_capabilities))
        if not isinstance(self.profile, dict) or set(("min", "opt", "max")) - set(self.profile):
            raise ManifestError("manifest%s: 'profile' must have 'min', 'opt' and 'max' shapes" % where)
        shapes = {}
        for k in ("min", "opt", "max"):
            s = self.profile[k]
            if not (isinstance(s, list) and len(s) == 4 and all(isinstance(v, int) and v >= 1 for v in s)
                    and s[1] == 3):
                raise ManifestError("manifest%s: profile %r must be [N, 3, H, W] with positive integers, got %r"
                                    % (where, k, s))
            shapes[k] = s
        if not all(a <= b <= c for a, b, c in zip(shapes["min"], shapes["opt"], shapes["max"])):
            raise ManifestError("manifest%s: profile needs min <= opt <= max in every dimension" % where)
        if self.plugin_library is not None and not (isinstance(self.plugin_library, dict)
                                                    and isinstance(self.plugin_library.get("path"), str)):
            raise ManifestError("manifest%s: 'plugin_library' must be {\"path\": ..., \"sha256\": ...}" % where)
        if self.graph == "deploy" and self.plugin_library is None:
            raise ManifestError("manifest%s: a deploy-graph engine needs 'plugin_library'" % where)

    # --- convenience -------------------------------------------------------------------------------
    @property
    def min_shape(self) -> tuple[int, int, int]:
        """(N, H, W) minimum of the profile."""
        n, _, h, w = self.profile["min"]
        return n, h, w

    @property
    def max_shape(self) -> tuple[int, int, int]:
        n, _, h, w = self.profile["max"]
        return n, h, w

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        extra = d.pop("extra")
        d = {k: v for k, v in d.items() if v is not None}
        d.update(extra)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: Path | None = None) -> "EngineManifest":
        if not isinstance(d, dict):
            raise ManifestError("manifest %s: top level must be a JSON object" % (source or ""))
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise ManifestError("manifest %s is missing key(s): %s" % (source or "", ", ".join(missing)))
        known = {f for f in cls.__dataclass_fields__ if f not in ("extra", "source")}
        kw = {k: v for k, v in d.items() if k in known}
        extra = {k: v for k, v in d.items() if k not in known}
        return cls(**kw, extra=extra, source=source)

    def save(self, path) -> Path:
        """Atomic write (temp file + rename), for build_engine.py."""
        from .atomic_write import atomic_write
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        return atomic_write(path, lambda f: f.write(text.encode()))


def manifest_path_for(engine_path) -> Path:
    """`<engine>.json` (e.g. smsr_x2_fp16.engine.json)."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def find_manifest(engine_path) -> Path | None:
    """The manifest of an engine: `<engine>.json`, else `<engine stem>.json`; None when there is none."""
    for cand in (manifest_path_for(engine_path), Path(engine_path).with_suffix(".json")):
        if cand.is_file():
            return cand
    return None


def load_manifest(path) -> EngineManifest:
    path = Path(path)
    try:
        with open(path) as f:
            d = json.load(f)
    except FileNotFoundError:
        raise ManifestError("engine manifest %s not found (build_engine.py writes it next to the engine)"
                            % path) from None
    except (OSError, ValueError) as e:
        raise ManifestError("engine manifest %s is unreadable: %s" % (path, e)) from None
    return EngineManifest.from_dict(d, source=path)


def _version_tuple(v: str) -> tuple[int, ...]:
    parts = []
    for p in str(v).split("."):
        if not p.isdigit():
            break
        parts.append(int(p))
    return tuple(parts)


def _cc_tuple(cc) -> tuple[int, int] | None:
    try:
        major, minor = str(cc).split(".")
        return int(major), int(minor)
    except ValueError:
        return None


def check_compatible(manifest: EngineManifest, runtime_trt_version: str | None, gpu_cc: str | None,
                     scale: int | None = None, *, runtime_builder: str | None = None,
                     gpu_name: str | None = None) -> None:
    """Raise ManifestError (ScaleMismatchError for the scale) naming the first mismatch between the engine's
    manifest and this machine. `gpu_cc` is like "8.7"; None skips a check whose value is unknown.
    Rules: TensorRT engines need the same TensorRT major.minor.patch (or, with version_compatible, the same major and
    a runtime at least as new); TensorRT-RTX engines need the same major and a runtime at least as new. The GPU's
    compute capability must be listed (hardware_compatibility "ampere+" accepts any cc >= 8.0)."""
    src = " (%s)" % manifest.source if manifest.source else ""
    if scale is not None and manifest.scale != scale:
        raise ScaleMismatchError("engine%s is built for x%d, but x%d was requested"
                                 % (src, manifest.scale, scale))
    if runtime_builder is not None and runtime_builder != manifest.builder:
        raise ManifestError("engine%s was built with %s %s but the runtime is %s"
                            % (src, manifest.builder, manifest.builder_version, runtime_builder))
    if runtime_trt_version is not None:
        built, have = _version_tuple(manifest.builder_version), _version_tuple(runtime_trt_version)
        if manifest.builder == "tensorrt" and not manifest.version_compatible:
            ok = built[:3] == have[:3]
            rule = "the same version"
        else:
            ok = built[:1] == have[:1] and have >= built
            rule = "the same major version and a runtime at least as new"
        if not ok:
            raise ManifestError("engine%s was built with %s %s but this runtime is %s (%s needed); rebuild the "
                                "engine on this machine with converters/build_engine.py"
                                % (src, manifest.builder, manifest.builder_version, runtime_trt_version, rule))
    if gpu_cc is not None and manifest.compute_capabilities:
        have_cc = _cc_tuple(gpu_cc)
        listed = [_cc_tuple(c) for c in manifest.compute_capabilities]
        ok = have_cc in listed or (manifest.hardware_compatibility == "ampere+" and have_cc is not None
                                   and have_cc >= (8, 0))
        if not ok:
            raise ManifestError("engine%s was built for GPU compute capability %s but this GPU is %s%s; rebuild "
                                "the engine for this GPU" % (src, ", ".join(manifest.compute_capabilities), gpu_cc,
                                                             " (%s)" % gpu_name if gpu_name else ""))
    elif gpu_name is not None and manifest.gpu_name and not manifest.compute_capabilities:
        if gpu_name != manifest.gpu_name:
            raise ManifestError("engine%s was built for GPU %r but this GPU is %r; rebuild the engine for this GPU"
                                % (src, manifest.gpu_name, gpu_name))


def file_sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def resolve_plugin_library(manifest: EngineManifest, override: str | os.PathLike | None = None,
                           verify_sha256: bool = True) -> Path:
    """Path of the plugin library the engine needs. A relative manifest path is relative to the manifest's folder.
    `override` (--plugin, or $SMSR_PLUGIN_LIBRARY) wins. Raises PluginLibraryError when it is missing or (unless
    verify_sha256 is False) not the file the engine was built with."""
    if manifest.plugin_library is None and override is None:
        raise PluginLibraryError("engine manifest names no plugin library")
    recorded = manifest.plugin_library or {}
    override = override or os.environ.get("SMSR_PLUGIN_LIBRARY")
    if override:
        path = Path(override)
    else:
        path = Path(recorded["path"])
        if not path.is_absolute() and manifest.source is not None:
            path = manifest.source.parent / path
    if not path.is_file():
        raise PluginLibraryError(
            "TensorRT plugin library %s not found; build it (cmake -S . -B build && cmake --build build) and/or "
            "point --plugin (or SMSR_PLUGIN_LIBRARY) at the SMSRSparseBlock plugin library" % path)
    want = recorded.get("sha256")
    if verify_sha256 and want:
        got = file_sha256(path)
        if got != want:
            raise PluginLibraryError("plugin library %s is not the one the engine was built with (sha256 %s…, "
                                     "manifest says %s…); rebuild the engine or use the matching library"
                                     % (path, got[:12], want[:12]))
    return path
