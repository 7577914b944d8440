"""Read a .tflite flatbuffer into a small, plain IR.

Everything downstream (analysis, code generation, the compiled runtime) works
on :class:`TfliteModel`, never on flatbuffer objects.  The schema bindings are
the ones shipped inside the ``tflite_micro`` wheel, so reading a model does not
import TensorFlow (``tinygen inspect`` stays fast).

Errors: :func:`read_model` raises :class:`TinygenError` with one line for a
missing, truncated, corrupt or non-TFLite file.

Weights stored outside the flatbuffer (``Buffer.offset``/``size``, which the TFLite
converter writes for models over 2 GB and on request) are valid TFLite, which the
TFLite interpreter reads and ``tflite_micro`` does not (it sees no data and computes
with whatever the arena holds).  :func:`parse_model` therefore rewrites such a model
with every buffer inline (16-byte aligned, as the converter aligns them) before
anything else sees it: :attr:`TfliteModel.raw` is that rewrite, so the reference, the
C array and both runtimes all read the same bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.tflite.schema import schema as _schema

if TYPE_CHECKING:  # checks.py imports this module at run time
    from tinygen.tflite.checks import Facts

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


class _Overlap(ValueError):
    pass


class _Budget:
    """Caps the numbers (and tables) read at what the file can hold.

    A well-formed flatbuffer stores every vector and table once, each number in at
    least one byte, so it cannot hold more of them than it has bytes; a hostile file
    whose tables all point at one long vector would otherwise make reading it
    quadratic."""

    def __init__(self, nbytes: int):
        self.left = nbytes + 1024

    def ints(self, arr) -> tuple[int, ...]:
        if isinstance(arr, int):  # the generated accessors return 0 for an absent vector
            return ()
        self.take(len(arr))
        return tuple(int(v) for v in arr.tolist())

    def floats(self, arr) -> tuple[float, ...]:
        if isinstance(arr, int):
            return ()
        self.take(len(arr))
        return tuple(float(v) for v in arr.tolist())

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise _Overlap()


def _inline_buffers(raw: bytes) -> bytes:
    """The model with every out-of-line buffer (``offset`` > 1) moved inside the flatbuffer.

    Called only after :func:`_read` accepted ``raw`` (every offset and size in the file,
    every table bounded), so unpacking the whole model is bounded too.  Everything the
    schema knows is kept through its object API; only where buffers live changes."""
    import flatbuffers

    schema = _schema()
    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(raw, 0))
    bodies = []
    for b in m.buffers or []:
        if b.data is not None and len(b.data):
            bodies.append(np.asarray(b.data, dtype=np.uint8).tobytes())
        elif b.offset > 1:
            bodies.append(raw[int(b.offset): int(b.offset) + int(b.size)])
        else:
            bodies.append(b"")
    m.buffers = [_InlineBuffer(schema, body) for body in bodies]
    builder = flatbuffers.Builder(len(raw) + 16 * len(bodies) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


class _InlineBuffer:
    """A Buffer for ModelT.Pack whose data vector starts 16-byte aligned (the schema's
    ``force_align: 16``, which the generated Python Pack does not honour)."""

    def __init__(self, schema, body: bytes):
        self.schema, self.body = schema, body

    def Pack(self, builder):
        vec = None
        if self.body:
            n = len(self.body)
            builder.StartVector(1, n, 16)
            builder.head -= n
            builder.Bytes[builder.head: builder.head + n] = self.body
            vec = builder.EndVector(n)
        self.schema.BufferStart(builder)
        if vec is not None:
            self.schema.BufferAddData(builder, vec)
        return self.schema.BufferEnd(builder)


def _options_dict(opts, budget: _Budget) -> dict:
    if opts is None:
        return {}
    out = {}
    for key, value in vars(opts).items():
        if isinstance(value, np.ndarray):
            value = budget.ints(value)
        elif isinstance(value, list):
            budget.take(len(value))
            value = tuple(value)
        if key == "fusedActivationFunction":
            value = ACTIVATIONS.get(value, str(value))
        elif key == "padding":
            value = PADDINGS.get(value, str(value))
        out[key] = value
    return out


def _text(value, default: str) -> str:
    if value is None:
        return default
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _elements(shape: tuple[int, ...]) -> int | None:
    """Element count, or None for a shape with a negative dimension (refused by the checks)."""
    n = 1
    for d in shape:
        if d < 0:
            return None
        n *= d
    return n


def _read(raw: bytes, name: str) -> tuple[TfliteModel, Facts]:
    """Read the flatbuffer lazily through the generated accessors: only subgraph 0, only
    what tinygen uses (the object API would also unpack signatures, metadata and any
    number of aliased tables). Raises on malformed offsets; checks come after."""
    from tinygen.tflite.checks import Facts, MAX_ELEMENTS

    schema = _schema()
    budget = _Budget(len(raw))
    root = schema.Model.GetRootAs(raw, 0)
    n_sub = root.SubgraphsLength()
    if n_sub == 0:
        raise ValueError("no subgraphs")
    if n_sub != 1:
        raise TinygenError(f"{name} has {n_sub} subgraphs; tinygen supports single-subgraph models")
    g = root.Subgraphs(0)
    n_buffers = root.BuffersLength()
    facts = Facts(n_buffers=n_buffers, n_opcodes=root.OperatorCodesLength())
    arrays: dict[tuple[int, str], np.ndarray] = {}  # one array per (buffer, dtype), however many tensors share it
    tensors = []
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        dtype = _DTYPES.get(t.Type(), f"type{t.Type()}")
        shape = budget.ints(t.ShapeAsNumpy())
        b = int(t.Buffer())
        facts.buffer[i] = b
        payload = None
        if 0 <= b < n_buffers:
            buf = root.Buffers(b)
            if buf.DataLength():
                payload = (buf, "inline")
            elif buf.Offset() > 1:
                off, size = int(buf.Offset()), int(buf.Size())
                if off + size > len(raw):
                    raise ValueError(f"buffer {b} runs past the end of the file")
                payload = (buf, "offset")
        data = None
        if payload is not None:
            buf, how = payload
            nbytes = buf.DataLength() if how == "inline" else int(buf.Size())
            facts.payload_bytes[i] = nbytes
            count = _elements(shape)
            if dtype in _NP and count is not None and count <= MAX_ELEMENTS \
                    and nbytes == count * np.dtype(_NP[dtype]).itemsize:
                key = (b, dtype)
                if key not in arrays:
                    if how == "inline":
                        body = bytes(buf.DataAsNumpy())
                    else:
                        body = raw[int(buf.Offset()): int(buf.Offset()) + nbytes]
                    arr = np.frombuffer(body, dtype=_NP[dtype])
                    arr.setflags(write=False)
                    arrays[key] = arr
                data = arrays[key].reshape(shape)
        q = t.Quantization()
        scale, zp, qdim = (), (), 0
        if q is not None:
            scale = budget.floats(q.ScaleAsNumpy())
            zp = budget.ints(q.ZeroPointAsNumpy())
            qdim = int(q.QuantizedDimension())
        if t.Sparsity() is not None:
            facts.sparse.add(i)
        if t.IsVariable():
            facts.variable.add(i)
        sig = budget.ints(t.ShapeSignatureAsNumpy()) if not t.ShapeSignatureIsNone() else shape
        tensors.append(Tensor(i, _text(t.Name(), f"t{i}"), shape, dtype, scale, zp, qdim, data, sig))
    names = _builtin_names()
    ops = []
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        idx = int(op.OpcodeIndex())
        ins = budget.ints(op.InputsAsNumpy())
        outs = budget.ints(op.OutputsAsNumpy())
        if not 0 <= idx < facts.n_opcodes:
            facts.bad_opcode[i] = idx
            ops.append(Operator(i, f"opcode index {idx}", 0, ins, outs, {}))
            continue
        code = root.OperatorCodes(idx)
        builtin = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        opname = names.get(builtin)
        if opname is None:
            facts.unknown_builtin[i] = builtin
            opname = f"BUILTIN_{builtin}"
        elif opname == "CUSTOM":
            # The custom name is file text that reaches messages and reports: keep it inert.
            opname = "CUSTOM:" + re.sub(r"[^A-Za-z0-9_.-]", "?", _text(code.CustomCode(), ""))[:64]
        otype = int(op.BuiltinOptionsType())
        facts.options_type[i] = otype
        opts = schema.BuiltinOptionsCreator(otype, op.BuiltinOptions())
        ops.append(Operator(i, opname, int(code.Version()), ins, outs, _options_dict(opts, budget)))
    inputs = budget.ints(g.InputsAsNumpy())
    outputs = budget.ints(g.OutputsAsNumpy())
    desc = _text(root.Description(), "")
    _touch_rest(schema, root, g, budget, facts, len(raw))
    return TfliteModel(raw, tuple(tensors), tuple(ops), inputs, outputs, desc), facts


def _touch_rest(schema, root, g, budget: _Budget, facts: Facts, nbytes: int) -> None:
    """Read every other table the TFLM runtime (or its Python wrapper, which unpacks the
    whole model) may follow, so that a corrupt one is refused here and not found there.
    Each table is charged to the budget before it is unpacked."""
    def each(n: int, get, unpack=None, cost=lambda x: 0):
        for i in range(n):
            item = get(i)
            budget.take(1 + (cost(item) if item is not None else 0))
            if unpack is not None and item is not None:
                unpack(item)

    def buffer(b) -> None:  # the data vector lies in the file; out-of-line data too (counted)
        b.DataAsNumpy()
        if not b.DataLength() and b.Offset() > 1:
            if int(b.Offset()) + int(b.Size()) > nbytes:
                raise ValueError("a buffer runs past the end of the file")
            facts.out_of_line += 1

    each(root.OperatorCodesLength(), root.OperatorCodes, schema.OperatorCodeT.InitFromObj)
    each(root.BuffersLength(), root.Buffers, buffer)
    if not root.MetadataBufferIsNone():
        root.MetadataBufferAsNumpy()
    each(root.MetadataLength(), root.Metadata, schema.MetadataT.InitFromObj)
    each(root.SignatureDefsLength(), root.SignatureDefs, schema.SignatureDefT.InitFromObj,
         lambda sd: sd.InputsLength() + sd.OutputsLength())
    each(root.ExternalBufferGroupsLength(), root.ExternalBufferGroups, schema.ExternalBufferGroupT.InitFromObj)
    each(root.ExternalBuffersLength(), root.ExternalBuffers, schema.ExternalBufferT.InitFromObj)
    g.Name()
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        q = t.Quantization()
        if q is not None:
            schema.QuantizationParametersT.InitFromObj(q)
        each(t.VariantTensorsLength(), t.VariantTensors, schema.VariantSubTypeT.InitFromObj)
    for i in range(g.OperatorsLength()):
        op = g.Operators(i)
        op.CustomOptionsAsNumpy(), op.IntermediatesAsNumpy(), op.MutatingVariableInputsAsNumpy()
        budget.take(1)
        schema.BuiltinOptions2Creator(op.BuiltinOptions2Type(), op.BuiltinOptions2())


def parse_model(raw: bytes, name: str = "model") -> TfliteModel:
    """Parse .tflite bytes and check them (:mod:`tinygen.tflite.checks`).

    Raises TinygenError (exit 2, one line naming the op and field) on anything
    malformed, UnsupportedModel (exit 3) for an op code this TFLite schema does
    not know."""
    from tinygen.tflite.checks import check_model

    raw = bytes(raw)
    if len(raw) < 8 or raw[4:8] != b"TFL3":
        raise TinygenError(
            f"{name} is not a TFLite flatbuffer (no 'TFL3' identifier); pass a .tflite file "
            "written by the TFLite converter, or a .keras/.h5/SavedModel to convert"
        )
    try:
        model, facts = _read(raw, name)
        if facts.out_of_line:  # tflite_micro reads inline data only: give everyone the inlined model
            raw = _inline_buffers(raw)
            model, facts = _read(raw, name)
    except TinygenError:
        raise
    except _Overlap:
        raise TinygenError(f"{name} is not a valid .tflite: its tables overlap (more entries than the file "
                           "can hold); the file is corrupt or hostile, re-export it with the TFLite converter") from None
    except Exception as exc:  # flatbuffers raises assorted errors on corrupt input
        raise TinygenError(
            f"{name} is not a valid .tflite: truncated or corrupt (a table or vector lies outside the file "
            f"or holds impossible values: {type(exc).__name__}); re-export it with the TFLite converter"
        ) from None
    check_model(model, facts, name)
    return model


def read_model(path: str | Path) -> TfliteModel:
    """Read and validate a .tflite file: regular files only, at most MODEL_LIMIT bytes (a FIFO or a
    link to /dev/zero is refused before it is opened for a blocking or unbounded read)."""
    from tinygen.common.userfiles import MODEL_LIMIT, read_user_file

    p = Path(path)
    return parse_model(read_user_file(p, "model", MODEL_LIMIT), name=str(p))
