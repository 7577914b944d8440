"""Read a .tflite flatbuffer into a small, plain IR.

Everything downstream (analysis, code generation, the compiled runtime) works
on :class:`TfliteModel`, never on flatbuffer objects.  The schema bindings are
the ones shipped inside the ``tflite_micro`` wheel, so reading a model does not
import TensorFlow (``tinygen inspect`` stays fast).

Errors: :func:`read_model` raises :class:`TinygenError` with one line for a
missing, truncated, corrupt or non-TFLite file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.errors import TinygenError

_DTYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
    6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
    11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
    16: "uint16", 17: "int4",
}
_NP = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
       "int64": np.int64, "bool": np.bool_, "int16": np.int16, "int8": np.int8,
       "float64": np.float64, "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16}
ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDINGS = {0: "SAME", 1: "VALID"}


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    data: np.ndarray | None = field(default=None, compare=False, repr=False)
    shape_signature: tuple[int, ...] = ()

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(_NP.get(self.dtype, np.uint8)).itemsize

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1


@dataclass(frozen=True)
class Operator:
    index: int
    opcode: str  # builtin name, e.g. "FULLY_CONNECTED", or "CUSTOM:<name>"
    version: int
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class TfliteModel:
    raw: bytes = field(repr=False)
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    description: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def op_names(self) -> list[str]:
        """Distinct op names in first-use order."""
        seen: list[str] = []
        for op in self.operators:
            if op.opcode not in seen:
                seen.append(op.opcode)
        return seen

    def input_tensor(self, i: int = 0) -> Tensor:
        return self.tensors[self.inputs[i]]

    def output_tensor(self, i: int = 0) -> Tensor:
        return self.tensors[self.outputs[i]]


def _builtin_names() -> dict[int, str]:
    schema = _schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _options_dict(opts) -> dict:
    if opts is None:
        return {}
    out = {}
    for key, value in vars(opts).items():
        if isinstance(value, np.ndarray):
            value = tuple(int(v) for v in value)
        elif isinstance(value, list):
            value = tuple(value)
        if key == "fusedActivationFunction":
            value = ACTIVATIONS.get(value, str(value))
        elif key == "padding":
            value = PADDINGS.get(value, str(value))
        out[key] = value
    return out


def parse_model(raw: bytes, name: str = "model") -> TfliteModel:
    """Parse .tflite bytes. Raises TinygenError on anything that is not a sane TFLite model."""
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise TinygenError(
            f"{name} is not a TFLite flatbuffer (no 'TFL3' identifier); pass a .tflite file "
            "written by the TFLite converter, or a .keras/.h5/SavedModel to convert"
        )
    schema = _schema()
    try:
        m = schema.ModelT.InitFromPackedBuf(raw, 0)
        if not m.subgraphs:
            raise ValueError("no subgraphs")
        g = m.subgraphs[0]
        names = _builtin_names()
        buffers = m.buffers or []
        tensors = []
        for i, t in enumerate(g.tensors or []):
            dtype = _DTYPES.get(t.type, f"type{t.type}")
            shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
            data = None
            buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
            if buf is not None:
                payload = None
                if buf.data is not None and len(buf.data):
                    payload = bytes(np.asarray(buf.data, dtype=np.uint8))
                elif getattr(buf, "offset", 0) > 1:
                    payload = raw[buf.offset: buf.offset + buf.size]
                    if len(payload) != buf.size:
                        raise ValueError("buffer runs past the end of the file")
                if payload is not None and dtype in _NP:
                    arr = np.frombuffer(payload, dtype=_NP[dtype])
                    if arr.size != (int(np.prod(shape)) if shape else 1):
                        raise ValueError(f"tensor {i} buffer size does not match its shape")
                    data = arr.reshape(shape).copy()
                    data.setflags(write=False)
            q = t.quantization
            scale = tuple(float(s) for s in (q.scale if q is not None and q.scale is not None else ()))
            zp = tuple(int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else ()))
            tname = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else str(t.name or f"t{i}")
            sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
            tensors.append(Tensor(i, tname, shape, dtype, scale, zp,
                                  int(q.quantizedDimension) if q is not None else 0, data, sig))
        ops = []
        for i, op in enumerate(g.operators or []):
            code = m.operatorCodes[op.opcodeIndex]
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            opname = names.get(builtin, f"BUILTIN_{builtin}")
            if opname == "CUSTOM":
                cc = code.customCode
                opname = "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc))
            ins = tuple(int(x) for x in (op.inputs if op.inputs is not None else ()))
            outs = tuple(int(x) for x in (op.outputs if op.outputs is not None else ()))
            for x in ins + outs:
                if x >= len(tensors):
                    raise ValueError(f"operator {i} refers to missing tensor {x}")
            ops.append(Operator(i, opname, int(code.version), ins, outs, _options_dict(op.builtinOptions)))
        inputs = tuple(int(x) for x in g.inputs)
        outputs = tuple(int(x) for x in g.outputs)
        desc = m.description.decode("utf-8", "replace") if isinstance(m.description, bytes) else (m.description or "")
    except TinygenError:
        raise
    except Exception as exc:  # flatbuffers raises assorted errors on corrupt input
        raise TinygenError(
            f"{name} is truncated or corrupt ({type(exc).__name__}: {exc}); re-export it with the TFLite converter"
        ) from None
    if len(m.subgraphs) != 1:
        raise TinygenError(f"{name} has {len(m.subgraphs)} subgraphs; tinygen supports single-subgraph models")
    return TfliteModel(raw, tuple(tensors), tuple(ops), inputs, outputs, desc)


def read_model(path: str | Path) -> TfliteModel:
    p = Path(path)
    if not p.exists():
        raise TinygenError(f"model file {p} does not exist; check the path")
    if p.is_dir():
        raise TinygenError(f"{p} is a directory, not a .tflite file")
    return parse_model(p.read_bytes(), name=str(p))
