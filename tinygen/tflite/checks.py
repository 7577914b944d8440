"""Structural checks of a parsed .tflite, run by :func:`tinygen.tflite.model.parse_model`.

Everything downstream (analysis, the TFLM reference, the compiled runtime and
its C kernels) may then rely on: every index in range, ops in an order where
each input exists before it is read, constant data matching its shape,
quantization that is finite and representable, and shapes / window options
small enough that no index computed in int32 can overflow.

A failure is one line naming the op (index and opcode) and the field, exit 2;
an op code this TFLite schema does not know is exit 3 (unsupported). Tensor
names are never echoed: they come from the file and may be hostile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinygen.common.errors import TinygenError, UnsupportedModel
from tinygen.tflite.schema import schema

# Bounds that keep every index product of the kernels (ours and TFLM's) far below
# 2^31: a tensor holds at most 2^28 elements (so its bytes fit int32 even as int32
# data), and strides, dilations, filter sizes and effective filter extents are at most
# 2^16, so out * stride + extent + padding stays below 2^29 for any dimension.
MAX_ELEMENTS = 1 << 28
MAX_RANK = 8
MAX_WINDOW = 1 << 16

_ITEMSIZE = {"float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2,
             "int8": 1, "float64": 8, "uint64": 8, "uint32": 4, "uint16": 2, "complex64": 8,
             "complex128": 16}
_ZP_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535),
             "int32": (-2**31, 2**31 - 1), "int4": (-8, 7), "int64": (-2**63, 2**63 - 1)}
# Ops whose geometry lives in their options: the options table must be there, of this type.
_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
            "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
            "TRANSPOSE_CONV": "TransposeConvOptions"}
# (inputs that must be present, index of the 4-D/2-D weights or None, weights rank)
_ARITY = {"CONV_2D": (2, 1, 4), "DEPTHWISE_CONV_2D": (2, 1, 4), "FULLY_CONNECTED": (2, 1, 2),
          "TRANSPOSE_CONV": (3, 1, 4), "AVERAGE_POOL_2D": (1, None, 0), "MAX_POOL_2D": (1, None, 0),
          "L2_POOL_2D": (1, None, 0)}


@dataclass
class Facts:
    """What the reader saw that the IR does not keep."""

    n_buffers: int = 0
    n_opcodes: int = 0
    buffer: dict[int, int] = field(default_factory=dict)  # tensor -> buffer index
    payload_bytes: dict[int, int] = field(default_factory=dict)  # tensor -> bytes of constant data
    options_type: dict[int, int] = field(default_factory=dict)  # op -> BuiltinOptions union type
    bad_opcode: dict[int, int] = field(default_factory=dict)  # op -> opcode index out of range
    unknown_builtin: dict[int, int] = field(default_factory=dict)  # op -> builtin code not in the schema
    sparse: set[int] = field(default_factory=set)
    variable: set[int] = field(default_factory=set)
    out_of_line: int = 0  # buffers stored outside the flatbuffer (Buffer.offset)


class _Bad(Exception):
    """(where, what): where names the op/graph field, what the problem."""


def _fail(where: str, what: str):
    raise _Bad(where, what)


def _options_names() -> dict[int, str]:
    return {v: k for k, v in vars(schema().BuiltinOptions).items() if not k.startswith("_")}


def check_model(m, facts: Facts, name: str) -> None:
    for i, code in facts.unknown_builtin.items():
        raise UnsupportedModel(
            f"{name}: op {i} is unsupported op {code} (not a TFLite builtin this tinygen knows); "
            "rebuild the model with standard TFLite ops")
    try:
        _check(m, facts)
    except _Bad as exc:
        where, what = exc.args
        raise TinygenError(f"{name} is not a valid .tflite: {where}: {what}; the file is corrupt "
                           "or was not written by the TFLite converter") from None


def _op_label(op) -> str:
    return f"op {op.index} ({op.opcode})"


def _check(m, facts: Facts) -> None:
    n = len(m.tensors)
    for i, op in enumerate(m.operators):
        if i in facts.bad_opcode:
            _fail(f"op {i}", f"opcode index {facts.bad_opcode[i]} is out of range "
                             f"({facts.n_opcodes} operator codes)")
    for what, seq in (("graph input", m.inputs), ("graph output", m.outputs)):
        if not seq:  # every later stage reads input 0 and output 0
            _fail("the graph", f"has no {what}")
        for k, t in enumerate(seq):
            if not 0 <= t < n:
                _fail(f"{what} {k}", f"tensor index {t} is out of range ({n} tensors)")
    for op in m.operators:
        _check_indices(op, n)
    # Tensor contents, reported at the first place that uses the tensor.
    users: dict[int, str] = {}
    for k, t in enumerate(m.inputs):
        users.setdefault(t, f"graph input {k} (tensor {t})")
    for op in m.operators:
        for k, t in enumerate(op.inputs):
            if t >= 0:
                users.setdefault(t, f"{_op_label(op)} input {k} (tensor {t})")
        for k, t in enumerate(op.outputs):
            users.setdefault(t, f"{_op_label(op)} output {k} (tensor {t})")
    for k, t in enumerate(m.outputs):
        users.setdefault(t, f"graph output {k} (tensor {t})")
    for t in m.tensors:
        _check_tensor(t, facts, users.get(t.index, f"tensor {t.index} (unused)"))
    _check_order(m, facts)
    opt_names = None
    for op in m.operators:
        if op.opcode in _OPTIONS:
            opt_names = opt_names or _options_names()
            got = opt_names.get(facts.options_type.get(op.index, 0), "NONE")
            if got != _OPTIONS[op.opcode]:
                _fail(_op_label(op), f"builtin options are {got}, expected {_OPTIONS[op.opcode]}")
        _check_op(m, op)


def _check_indices(op, n: int) -> None:
    label = _op_label(op)
    need, w_at, _ = _ARITY.get(op.opcode, (0, None, 0))
    if len(op.inputs) < need:
        _fail(label, f"has {len(op.inputs)} inputs, needs at least {need}")
    for k, t in enumerate(op.inputs):
        if t == -1:
            # -1 marks an omitted optional input; the data input and weights never are.
            if k == 0 or k == w_at or (op.opcode == "TRANSPOSE_CONV" and k == 2):
                _fail(f"{label} input {k}", "is omitted (-1) but required")
        elif not 0 <= t < n:
            _fail(f"{label} input {k}", f"tensor index {t} is out of range ({n} tensors)")
    if not op.outputs and op.opcode in _ARITY:
        _fail(label, "has no output")
    for k, t in enumerate(op.outputs):
        if not 0 <= t < n:
            _fail(f"{label} output {k}", f"tensor index {t} is out of range ({n} tensors)")


def _check_tensor(t, facts: Facts, where: str) -> None:
    if t.dtype.startswith("type"):
        _fail(where, f"unknown tensor type {t.dtype[4:]}")
    if len(t.shape) > MAX_RANK:
        _fail(where, f"rank {len(t.shape)} exceeds {MAX_RANK}")
    for k, d in enumerate(t.shape):
        if d < 0:
            _fail(where, f"shape dimension {k} is negative ({d})")
    count = 1
    for d in t.shape:
        count *= d
    if count > MAX_ELEMENTS:
        _fail(where, f"shape {list(t.shape)} has {count} elements (at most {MAX_ELEMENTS})")
    b = facts.buffer.get(t.index, 0)
    if not 0 <= b < max(facts.n_buffers, 1):
        _fail(where, f"buffer index {b} is out of range ({facts.n_buffers} buffers)")
    if t.index in facts.sparse:
        _fail(where, "is sparse (sparsity parameters are not supported)")
    if t.index in facts.payload_bytes and t.index in facts.variable:
        # TFLM gives a variable tensor arena memory, reset to its zero point, and never reads its
        # buffer: its reference would compute without these weights, the compiled runtime with them.
        _fail(where, "holds constant data but is flagged is_variable (tflite_micro ignores the data of a "
                     "variable tensor and starts it at its zero point)")
    if t.index in facts.payload_bytes:
        got = facts.payload_bytes[t.index]
        want = (count + 1) // 2 if t.dtype == "int4" else count * _ITEMSIZE.get(t.dtype, 0)
        if t.dtype in _ITEMSIZE or t.dtype == "int4":
            if got != want:
                _fail(where, f"constant data is {got} bytes, shape {list(t.shape)} of {t.dtype} needs {want}")
    _check_quant(t, where)


def _check_quant(t, where: str) -> None:
    if not t.scale:
        return
    for k, s in enumerate(t.scale):
        if not (math.isfinite(s) and s > 0):
            _fail(where, f"quantization scale[{k}] is {s} (must be finite and > 0)")
    if len(t.zero_point) != len(t.scale):
        _fail(where, f"{len(t.scale)} quantization scales but {len(t.zero_point)} zero points")
    lo, hi = _ZP_RANGE.get(t.dtype, (-2**63, 2**63 - 1))
    for k, z in enumerate(t.zero_point):
        if not lo <= z <= hi:
            _fail(where, f"zero point[{k}] {z} is out of the {t.dtype} range [{lo}, {hi}]")
    rank = len(t.shape)
    if t.quantized_dimension < 0 or (rank and t.quantized_dimension >= rank):
        _fail(where, f"quantized_dimension {t.quantized_dimension} is out of range for rank {rank}")
    if len(t.scale) > 1:
        dim = t.shape[t.quantized_dimension] if rank else 1
        if len(t.scale) != dim:
            _fail(where, f"{len(t.scale)} per-channel scales for dimension {t.quantized_dimension} "
                         f"of size {dim}")


def _check_order(m, facts: Facts) -> None:
    """Each op reads only constants, graph inputs, variables or outputs of earlier ops,
    and writes tensors nothing else writes."""
    constant = set(facts.payload_bytes)
    ready = set(m.inputs) | constant | facts.variable
    writer: dict[int, int] = {}
    for op in m.operators:
        label = _op_label(op)
        for k, t in enumerate(op.inputs):
            if t >= 0 and t not in ready:
                later = [o.index for o in m.operators if o.index > op.index and t in o.outputs]
                how = f"only op {later[0]} (later) computes it" if later else "no op computes it"
                _fail(f"{label} input {k}", f"reads tensor {t} before it is computed ({how})")
        for k, t in enumerate(op.outputs):
            if t in constant:
                _fail(f"{label} output {k}", f"writes tensor {t}, which is constant data")
            if t in m.inputs:
                _fail(f"{label} output {k}", f"writes tensor {t}, which is a graph input")
            if t in writer:
                _fail(f"{label} output {k}", f"writes tensor {t}, already written by op {writer[t]}")
            writer[t] = op.index
            ready.add(t)
    for k, t in enumerate(m.outputs):
        if t not in ready:
            _fail(f"graph output {k}", f"tensor {t} is not computed by any op")


def _opt_int(op, key: str, default: int) -> int:
    v = op.options.get(key, default)
    return int(v) if isinstance(v, (int, np.integer)) else default


def _check_op(m, op) -> None:
    label = _op_label(op)
    act = op.options.get("fusedActivationFunction")
    if act is not None and act not in ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"):
        _fail(label, f"fused activation {act} is not a TFLite activation")
    if op.opcode not in _ARITY:
        return
    _, w_at, w_rank = _ARITY[op.opcode]
    if w_at is not None:
        w = m.tensors[op.inputs[w_at]]
        if len(w.shape) != w_rank or any(d <= 0 for d in w.shape):
            _fail(f"{label} input {w_at} (weights)", f"shape {list(w.shape)} is not {w_rank}-D with "
                                                     "positive dimensions")
    if op.opcode in ("FULLY_CONNECTED", "TRANSPOSE_CONV"):
        if op.opcode == "TRANSPOSE_CONV":
            for key in ("strideH", "strideW"):
                v = _opt_int(op, key, 1)
                if not 1 <= v <= MAX_WINDOW:
                    _fail(f"{label} option {key}", f"{v} is not in 1..{MAX_WINDOW}")
        return
    x = m.tensors[op.inputs[0]]
    if len(x.shape) != 4 or any(d <= 0 for d in x.shape):
        _fail(f"{label} input 0", f"shape {list(x.shape)} is not 4-D (NHWC) with positive dimensions")
    padding = op.options.get("padding")
    if padding not in ("SAME", "VALID"):
        _fail(f"{label} option padding", f"{padding} is not SAME or VALID")
    if op.opcode in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        kh, kw = m.tensors[op.inputs[1]].shape[1:3]
        dil = (_opt_int(op, "dilationHFactor", 1), _opt_int(op, "dilationWFactor", 1))
        if op.opcode == "CONV_2D" and x.shape[3] % m.tensors[op.inputs[1]].shape[3]:
            _fail(f"{label} input 1 (weights)", f"depth {m.tensors[op.inputs[1]].shape[3]} does not "
                                                f"divide the {x.shape[3]} input channels")
    else:
        kh, kw = _opt_int(op, "filterHeight", 0), _opt_int(op, "filterWidth", 0)
        for key, v in (("filterHeight", kh), ("filterWidth", kw)):
            if not 1 <= v <= MAX_WINDOW:
                _fail(f"{label} option {key}", f"{v} is not in 1..{MAX_WINDOW}")
        dil = (1, 1)
    for key, v in (("strideH", _opt_int(op, "strideH", 0)), ("strideW", _opt_int(op, "strideW", 0)),
                   ("dilationHFactor", dil[0]), ("dilationWFactor", dil[1])):
        if not 1 <= v <= MAX_WINDOW:
            _fail(f"{label} option {key}", f"{v} is not in 1..{MAX_WINDOW}")
    for axis, k, d, size in (("height", kh, dil[0], x.shape[1]), ("width", kw, dil[1], x.shape[2])):
        extent = (k - 1) * d + 1
        if extent > MAX_WINDOW:
            _fail(label, f"effective filter {axis} {extent} (filter {k}, dilation {d}) exceeds {MAX_WINDOW}")
        if padding == "VALID" and extent > size:
            _fail(label, f"effective filter {axis} {extent} exceeds the input {axis} {size} "
                         "with VALID padding")
