"""The builder's own layer information: which types and formats each engine layer got, read from a build log.

With `config.profiling_verbosity = ProfilingVerbosity.DETAILED` and a logger that receives VERBOSE messages,
TensorRT-RTX (checked: 1.7) logs the finished engine's layers in one message that starts with "Layers:", one line
per layer:

    Name: smb0_myl0_2, LayerType: custom_layer, Inputs: [ { Name: ..., Dimensions: [...], ..., Datatype: Int8,
    Format: (Linear) ... }, ...], Constants: [ ... ], Outputs: [ ... ], TacticName: , StreamId: 0,
    Metadata: [ONNX Layer: smb0]

Plugin layers are `custom_layer`s; their inputs that come from initializers are listed as Constants. This is the
only layer information available without a GPU: the engine inspector needs a deserialized engine, and
deserializing needs CUDA (TensorRT-RTX fails with cudaError 35 on a CPU-only machine).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_LAYER = re.compile(r"^Name: (?P<name>[^,]+), LayerType: (?P<type>[^,]+), (?P<rest>.*)$")
_TENSOR = re.compile(r"\{ Name: (?P<name>[^,]+), Dimensions: \[(?P<dims>[^\]]*)\].*?Datatype: (?P<dtype>\w+), "
                     r"Format: (?P<format>[^}]*?)\s*\}")
_ONNX = re.compile(r"\[ONNX Layer: ([^\]]+)\]")
_SECTIONS = ("Inputs", "Constants", "Outputs")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str   # "Int8", "Float", "Half", ...
    format: str  # "(Linear) Row major linear format", ...
    dims: str


@dataclass
class LayerInfo:
    name: str
    type: str
    inputs: list[TensorInfo] = field(default_factory=list)
    constants: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    onnx_nodes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        def ts(v):
            return [{"name": t.name, "dtype": t.dtype, "format": t.format, "dims": t.dims} for t in v]
        return {"name": self.name, "type": self.type, "inputs": ts(self.inputs), "constants": ts(self.constants),
                "outputs": ts(self.outputs), "onnx_nodes": self.onnx_nodes}


def _section(rest: str, key: str) -> str:
    """The bracketed list after 'key: [' (tensor entries hold no brackets deeper than their dims)."""
    start = rest.find(f"{key}: [")
    if start < 0:
        return ""
    i, depth = start + len(key) + 2, 0
    for j in range(i, len(rest)):
        if rest[j] == "[":
            depth += 1
        elif rest[j] == "]":
            depth -= 1
            if depth == 0:
                return rest[i:j + 1]
    return rest[i:]


def parse_layers(messages: list[str]) -> list[LayerInfo]:
    """Every layer line of the "Layers:" messages among `messages` (empty when none was logged)."""
    layers = []
    for msg in messages:
        if not msg.startswith("Layers:"):
            continue
        for line in msg.splitlines()[1:]:
            m = _LAYER.match(line.strip())
            if not m:
                continue
            rest = m.group("rest")
            tensors = {
                key: [TensorInfo(t.group("name"), t.group("dtype"), t.group("format"), t.group("dims"))
                      for t in _TENSOR.finditer(_section(rest, key))]
                for key in _SECTIONS
            }
            meta = rest[rest.find("Metadata:"):] if "Metadata:" in rest else ""
            layers.append(LayerInfo(m.group("name"), m.group("type"), tensors["Inputs"], tensors["Constants"],
                                    tensors["Outputs"], _ONNX.findall(meta)))
    return layers


def plugin_layers(layers: list[LayerInfo], node_names: list[str]) -> dict[str, LayerInfo]:
    """The custom (plugin) layer of each ONNX node in node_names, by node name."""
    wanted = set(node_names)
    out = {}
    for layer in layers:
        if layer.type != "custom_layer":
            continue
        for node in layer.onnx_nodes:
            if node in wanted:
                out[node] = layer
    return out


def int8_problems(layer: LayerInfo) -> list[str]:
    """Why an INT8 SMSRSparseBlock layer is not what the INT8 contract asks for (empty: x and the five weight
    tensors Int8, mask / bc / y one float type, all linear). Inputs are listed in the node's order, with the
    initializers among the Constants."""
    problems = []
    tensors = layer.inputs + layer.constants
    outputs = data_outputs(layer)
    if len(tensors) != 8 or len(outputs) != 1:
        return [f"{layer.name}: expected 8 inputs (inputs + constants) and 1 output, got {len(tensors)} and "
                f"{len(outputs)}"]
    x, mask, *weights, bc = tensors  # network inputs first (x, mask), then the initializers in node order
    if x.dtype != "Int8":
        problems.append(f"{layer.name}: x ({x.name}) is {x.dtype}, not Int8")
    for w in weights:
        if w.dtype != "Int8":
            problems.append(f"{layer.name}: weight {w.name} is {w.dtype}, not Int8")
    y = outputs[0]
    if mask.dtype not in ("Float", "Half") or bc.dtype != mask.dtype or y.dtype != mask.dtype:
        problems.append(f"{layer.name}: mask / bc / y are {mask.dtype} / {bc.dtype} / {y.dtype}, expected one float "
                        "type")
    for t in (x, mask, *weights, bc, y):
        if "Linear" not in t.format:
            problems.append(f"{layer.name}: {t.name} has format {t.format}, expected linear")
    return problems


def summary(layer: LayerInfo) -> dict:
    """Types of an SMSRSparseBlock layer in node order, for the engine manifest: x, mask, weights (w0..w3, wc), bc, y."""
    tensors = layer.inputs + layer.constants
    outputs = data_outputs(layer)
    types = [t.dtype for t in tensors]
    return {"engine_layer": layer.name, "x": types[0] if types else None, "mask": types[1] if len(types) > 1 else None,
            "weights": types[2:7], "bc": types[7] if len(types) > 7 else None,
            "y": outputs[0].dtype if outputs else None}


def data_outputs(layer: LayerInfo) -> list[TensorInfo]:
    """The layer's outputs without its workspace (a plugin with a workspace shows it as an extra UInt8 output
    named <layer>_wksp...)."""
    return [t for t in layer.outputs if "_wksp" not in t.name]
