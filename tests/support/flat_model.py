"""A TFLite model written by hand through the schema's own flatbuffer bindings (no TensorFlow), and
the ways the tests break one thing in it: shared by the model-validation, memory, fuzz and
regression tests."""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest

from tinygen.common.errors import TinygenError
from tinygen.tflite.model import parse_model

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as S


class FlatModel:
    """A TFLite model written by hand through the schema's object API: tensors with their buffers,
    operators with their opcode table; the graph tests (here, test_compiled_memory) build on it."""

    def __init__(self):
        self.buffers, self.tensors, self.codes, self.ops = [S.BufferT()], [], [], []

    def tensor(self, shape, dtype, scale=None, zp=None, data=None, qdim=0) -> int:
        t = S.TensorT()
        t.shape, t.type, t.name, t.buffer = list(shape), dtype, f"t{len(self.tensors)}".encode(), 0
        if data is not None:
            b = S.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=np.uint8)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale, q.zeroPoint, q.quantizedDimension = [float(v) for v in scale], [int(z) for z in zp], qdim
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code, ins, outs, otype, opts) -> None:
        if code not in [c.builtinCode for c in self.codes]:
            c = S.OperatorCodeT()
            c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
            self.codes.append(c)
        o = S.OperatorT()
        o.opcodeIndex = [c.builtinCode for c in self.codes].index(code)
        o.inputs, o.outputs, o.builtinOptionsType, o.builtinOptions = list(ins), list(outs), otype, opts
        self.ops.append(o)

    def pack(self, inputs, outputs, description: bytes) -> bytes:
        g = S.SubGraphT()
        g.tensors, g.operators, g.inputs, g.outputs = self.tensors, self.ops, list(inputs), list(outputs)
        m = S.ModelT()
        m.version, m.operatorCodes, m.subgraphs, m.buffers = 3, self.codes, [g], self.buffers
        m.description = description
        return pack(m)


def relu_chain(n: int, width: int = 16, seed: int | None = None) -> bytes:
    """int8 [1,width] -> n RELU ops -> [1,width]. With a seed each op gets its own output scale
    and zero point (so each requantizes); without, all share the input's (the long-chain layout
    of issue 22: every op in place)."""
    fm = FlatModel()
    rng = np.random.default_rng(seed) if seed is not None else None
    x = first = fm.tensor([1, width], S.TensorType.INT8, [0.05], [-3])
    for _ in range(n):
        q = ([float(rng.uniform(0.01, 0.1))], [int(rng.integers(-128, 0))]) if rng is not None \
            else ([0.05], [-3])
        y = fm.tensor([1, width], S.TensorType.INT8, *q)
        fm.op(S.BuiltinOperator.RELU, [x], [y], 0, None)
        x = y
    return fm.pack([first], [x], b"relu chain")


def build_base() -> bytes:
    """int8 [1,8,8,2] -> CONV_2D 3x3 (per-channel) -> DEPTHWISE 3x3 -> AVERAGE_POOL 2x2
    -> RESHAPE [1,48] -> FULLY_CONNECTED 4."""
    rng = np.random.default_rng(7)
    fm = FlatModel()
    tensor, op = fm.tensor, fm.op

    I8, I32 = S.TensorType.INT8, S.TensorType.INT32
    x = tensor([1, 8, 8, 2], I8, [0.05], [-3])
    cw_s = [0.01, 0.02, 0.015]
    cw = tensor([3, 3, 3, 2], I8, cw_s, [0, 0, 0], rng.integers(-127, 128, (3, 3, 3, 2), dtype=np.int8))
    cb = tensor([3], I32, [0.05 * s for s in cw_s], [0, 0, 0], rng.integers(-500, 500, 3).astype(np.int32))
    y1 = tensor([1, 8, 8, 3], I8, [0.1], [-10])
    dw_s = [0.02, 0.01, 0.03]
    dw = tensor([1, 3, 3, 3], I8, dw_s, [0, 0, 0], rng.integers(-127, 128, (1, 3, 3, 3), dtype=np.int8), qdim=3)
    db = tensor([3], I32, [0.1 * s for s in dw_s], [0, 0, 0], rng.integers(-500, 500, 3).astype(np.int32))
    y2 = tensor([1, 8, 8, 3], I8, [0.2], [5])
    y3 = tensor([1, 4, 4, 3], I8, [0.2], [5])
    shp = tensor([2], I32, data=np.array([1, 48], dtype=np.int32))
    y4 = tensor([1, 48], I8, [0.2], [5])
    fw = tensor([4, 48], I8, [0.01], [0], rng.integers(-127, 128, (4, 48), dtype=np.int8))
    fb = tensor([4], I32, [0.002], [0], rng.integers(-500, 500, 4).astype(np.int32))
    y5 = tensor([1, 4], I8, [0.3], [2])

    def conv_opts(cls, **kw):
        o = cls()
        o.padding = S.Padding.SAME
        o.strideH = o.strideW = 1
        o.dilationHFactor = o.dilationWFactor = 1
        o.fusedActivationFunction = S.ActivationFunctionType.RELU
        for k, v in kw.items():
            setattr(o, k, v)
        return o

    B, O = S.BuiltinOperator, S.BuiltinOptions
    op(B.CONV_2D, [x, cw, cb], [y1], O.Conv2DOptions, conv_opts(S.Conv2DOptionsT))
    op(B.DEPTHWISE_CONV_2D, [y1, dw, db], [y2], O.DepthwiseConv2DOptions,
       conv_opts(S.DepthwiseConv2DOptionsT, depthMultiplier=1))
    pool = S.Pool2DOptionsT()
    pool.padding, pool.strideH, pool.strideW, pool.filterHeight, pool.filterWidth = S.Padding.VALID, 2, 2, 2, 2
    op(B.AVERAGE_POOL_2D, [y2], [y3], O.Pool2DOptions, pool)
    rs = S.ReshapeOptionsT()
    rs.newShape = [1, 48]
    op(B.RESHAPE, [y3, shp], [y4], O.ReshapeOptions, rs)
    op(B.FULLY_CONNECTED, [y4, fw, fb], [y5], O.FullyConnectedOptions, S.FullyConnectedOptionsT())

    return fm.pack([x], [y5], b"tinygen validation test")


def pack(m) -> bytes:
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def unpack(raw: bytes):
    return S.ModelT.InitFromPackedBuf(bytearray(raw), 0)


def buffers_out_of_line(raw: bytes) -> bytes:
    """The same model with every buffer's data stored after the flatbuffer (Buffer.offset/size,
    16-byte aligned), as the TFLite converter writes models over 2 GB: valid TFLite, which
    TFLite's interpreter reads and tflite_micro does not."""
    m = unpack(raw)
    bodies = {}
    for i, b in enumerate(m.buffers):
        if b.data is not None and len(b.data):
            bodies[i] = np.asarray(b.data, dtype=np.uint8).tobytes()
            b.data, b.offset, b.size = None, 1 << 40, 1  # placeholders: the fields exist, same width
    head = pack(m)
    at = -(-len(head) // 16) * 16
    tail = b""
    for i, body in bodies.items():
        m.buffers[i].offset, m.buffers[i].size = at + len(tail), len(body)
        tail += body + bytes(-len(body) % 16)
    head = pack(m)
    assert -(-len(head) // 16) * 16 == at  # offsets and sizes are fixed-width fields
    return head + bytes(at - len(head)) + tail


def mutate(raw: bytes, fn) -> bytes:
    m = unpack(raw)
    fn(m, m.subgraphs[0])
    return pack(m)


def refused(raw: bytes, *needles: str, code: int = 2) -> str:
    with pytest.raises(TinygenError) as info:
        parse_model(raw, "m.tflite")
    msg = str(info.value)
    assert info.value.exit_code == code, msg
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg
    return msg
