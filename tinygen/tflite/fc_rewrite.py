"""Per-channel FULLY_CONNECTED -> RESHAPE + CONV_2D 1x1 + RESHAPE, for TFLM libraries whose
optimized FULLY_CONNECTED is per-tensor only.

Why this is exact: TFLM's per-channel FULLY_CONNECTED and its per-channel CONV_2D derive each
output channel's multiplier with the same routine (PopulateConvolutionQuantizationParams:
input_scale x filter_scale[c] / output_scale, in double), and both compute
clamp(requantize(sum((x + in_offset) * w) + bias, c) + out_offset). A 1x1 VALID conv over
[B,1,1,K] with filter [out,1,1,K] is that sum, row by row. CMSIS-NN's convolutions take
per-channel multipliers, while its FULLY_CONNECTED glue (Chirale_TensorFLowLite 2.0.0,
kernels/cmsis_nn/fully_connected.cpp) passes the per-tensor one for every channel.
The pipeline still checks the claim on every build: the rewritten model must give the
original's outputs bit for bit on the tflite_micro interpreter
(:func:`tinygen.analysis.equivalence.check_equivalent`, a later stage: it runs the interpreter).

Pure Python (the flatbuffers object API of the schema bindings the tflite_micro wheel ships),
so it runs in-process on user input like :mod:`tinygen.tflite.model`.  Same input, same bytes.

Only full-int8 FULLY_CONNECTED ops with int8 per-channel weights on axis 0, an int32 (or no)
bias and known static shapes are rewritten; anything else is left as it is, and the pipeline
then refuses it with the reason.
"""

from __future__ import annotations

import numpy as np

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError
from tinygen.tflite.schema import schema as _schema

_INT8, _INT32 = 9, 2  # schema TensorType
_VALID = 1  # schema Padding
# Versions the TFLite converter writes for these ops with int8 per-channel data.
_CONV_2D_VERSION, _RESHAPE_VERSION = 3, 1
NO_LIBRARY = "the TFLM source tree"


def _quant_copy(schema, q):
    if q is None:
        return None
    c = schema.QuantizationParametersT()
    c.scale = None if q.scale is None else [float(s) for s in q.scale]
    c.zeroPoint = None if q.zeroPoint is None else [int(z) for z in q.zeroPoint]
    c.quantizedDimension = int(q.quantizedDimension)
    return c


def _opcode_index(schema, model, builtin: int, version: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) == builtin:
            code.version = max(int(code.version), version)
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)  # the int8 field saturates at PLACEHOLDER_FOR_GREATER_OP_CODES
    code.version = version
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _shape(t) -> list[int]:
    return [int(d) for d in (t.shape if t.shape is not None else ())]


def _scales(t) -> list[float]:
    q = t.quantization
    return [] if q is None or q.scale is None else list(q.scale)


def _constant(model, t) -> bool:
    buffers = model.buffers or []
    buf = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
    return buf is not None and ((buf.data is not None and len(buf.data) > 0) or getattr(buf, "offset", 0) > 1)


def _rewritable(model, g, op, opts) -> bool:
    ins = [int(i) for i in op.inputs]
    if len(ins) < 2 or ins[0] < 0 or ins[1] < 0 or len(op.outputs) != 1:
        return False
    x, w, y = g.tensors[ins[0]], g.tensors[ins[1]], g.tensors[int(op.outputs[0])]
    if not _constant(model, w):  # weights computed at run time: their producer needs the 2-D shape
        return False
    bias = g.tensors[ins[2]] if len(ins) > 2 and ins[2] >= 0 else None
    ws = _shape(w)
    if (x.type, w.type, y.type) != (_INT8, _INT8, _INT8) or len(ws) != 2 or min(ws) <= 0:
        return False
    if w.sparsity is not None or len(_scales(x)) != 1 or len(_scales(y)) != 1:
        return False
    if len(_scales(w)) != ws[0] or ws[0] < 2 or int(w.quantization.quantizedDimension) != 0:
        return False
    if any(int(z) != 0 for z in (w.quantization.zeroPoint if w.quantization.zeroPoint is not None else ())):
        return False
    if bias is not None and (bias.type != _INT32 or _shape(bias) != [ws[0]]):
        return False
    if opts is not None and int(getattr(opts, "weightsFormat", 0)) != 0:
        return False
    xs, ys = _shape(x), _shape(y)
    if not xs or not ys or min(xs) <= 0 or min(ys) <= 0 or int(np.prod(xs)) % ws[1]:
        return False
    return int(np.prod(ys)) == int(np.prod(xs)) // ws[1] * ws[0] and ys[-1] == ws[0]


def fc_to_conv(raw: bytes) -> tuple[bytes, int]:
    """(model bytes, number of FULLY_CONNECTED ops rewritten). Unchanged bytes when it is 0."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    fc = schema.BuiltinOperator.FULLY_CONNECTED
    if not model.subgraphs or len(model.subgraphs) != 1:
        return raw, 0
    g = model.subgraphs[0]
    ops = list(g.operators or [])

    def code_of(op) -> int:
        c = model.operatorCodes[op.opcodeIndex]
        return max(int(c.builtinCode), int(c.deprecatedBuiltinCode))

    todo = [op for op in ops if code_of(op) == fc and _rewritable(model, g, op, op.builtinOptions)]
    if not todo:
        return raw, 0
    for buf in model.buffers or []:
        # Buffers stored outside the flatbuffer (models > 2 GB) are inlined so Pack keeps them.
        if getattr(buf, "offset", 0) > 1:
            buf.data = np.frombuffer(raw[buf.offset: buf.offset + buf.size], dtype=np.uint8).copy()
            buf.offset, buf.size = 0, 0
    model.buffers = model.buffers or []
    # Weights read only by rewritten ops are reshaped in place; others get a 4-D view of the same buffer.
    kept_inputs = {int(i) for op in ops if not any(op is t for t in todo) for i in op.inputs}
    filters: dict[int, int] = {}
    w_shapes = {int(op.inputs[1]): _shape(g.tensors[int(op.inputs[1])]) for op in todo}  # before any reshape
    conv_code = _opcode_index(schema, model, schema.BuiltinOperator.CONV_2D, _CONV_2D_VERSION)
    reshape_code = _opcode_index(schema, model, schema.BuiltinOperator.RESHAPE, _RESHAPE_VERSION)

    def add_buffer(data: bytes | None) -> int:
        b = schema.BufferT()
        b.data = None if data is None else np.frombuffer(data, dtype=np.uint8).copy()
        model.buffers.append(b)
        return len(model.buffers) - 1

    def add_tensor(name: bytes, shape: list[int], ttype: int, quant, data: bytes | None = None) -> int:
        t = schema.TensorT()
        t.name, t.shape, t.type, t.quantization = name, list(shape), ttype, quant
        t.buffer = add_buffer(data)
        g.tensors.append(t)
        return len(g.tensors) - 1

    def reshape_op(src: int, dst: int, shape: list[int], name: bytes):
        shape_t = add_tensor(name + b"_shape", [len(shape)], _INT32, None,
                             np.asarray(shape, dtype="<i4").tobytes())
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = reshape_code, [src, shape_t], [dst]
        op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        op.builtinOptions = schema.ReshapeOptionsT()
        op.builtinOptions.newShape = list(shape)
        return op

    new_ops = []
    for op in ops:
        if not any(op is t for t in todo):
            new_ops.append(op)
            continue
        ins = [int(i) for i in op.inputs]
        x_i, w_i, y_i = ins[0], ins[1], int(op.outputs[0])
        x, w, y = g.tensors[x_i], g.tensors[w_i], g.tensors[y_i]
        out_c, k = w_shapes[w_i]
        rows = int(np.prod(_shape(x))) // k
        base = b"tg_fc%d" % sum(1 for o in new_ops if o.opcodeIndex == conv_code)  # short: names cost flash
        # The filter keeps its bytes and per-channel scales on axis 0; only its shape grows to OHWI.
        if w_i not in filters:
            if w_i not in kept_inputs:
                w.shape, w.shapeSignature = [out_c, 1, 1, k], None
                filters[w_i] = w_i
            else:
                f = schema.TensorT()
                f.name, f.shape, f.type, f.buffer = base + b"/filter", [out_c, 1, 1, k], _INT8, w.buffer
                f.quantization = _quant_copy(schema, w.quantization)
                g.tensors.append(f)
                filters[w_i] = len(g.tensors) - 1
        filt = filters[w_i]
        if len(ins) > 2 and ins[2] >= 0:
            bias = ins[2]
        else:
            # A zero bias adds nothing; CONV_2D kernels are not all written for a missing one.
            in_s = _scales(x)[0]
            bq = schema.QuantizationParametersT()
            bq.scale = [float(in_s) * float(s) for s in _scales(w)]
            bq.zeroPoint, bq.quantizedDimension = [0] * out_c, 0
            bias = add_tensor(base + b"/bias", [out_c], _INT32, bq, bytes(4 * out_c))
        x4 = add_tensor(base + b"/conv_in", [rows, 1, 1, k], _INT8, _quant_copy(schema, x.quantization))
        y4 = add_tensor(base + b"/conv_out", [rows, 1, 1, out_c], _INT8, _quant_copy(schema, y.quantization))
        conv = schema.OperatorT()
        conv.opcodeIndex, conv.inputs, conv.outputs = conv_code, [x4, filt, bias], [y4]
        conv.builtinOptionsType = schema.BuiltinOptions.Conv2DOptions
        co = schema.Conv2DOptionsT()
        co.padding, co.strideW, co.strideH, co.dilationWFactor, co.dilationHFactor = _VALID, 1, 1, 1, 1
        co.fusedActivationFunction = int(op.builtinOptions.fusedActivationFunction) if op.builtinOptions else 0
        conv.builtinOptions = co
        new_ops += [reshape_op(x_i, x4, [rows, 1, 1, k], base + b"/in"), conv,
                    reshape_op(y4, y_i, _shape(y), base + b"/out")]
    g.operators = new_ops
    builder = flatbuffers.Builder(max(1024, len(raw) + 4096))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), len(todo)


def library_name(board: Board) -> str:
    deps = board.tflm.lib_deps
    return str(deps[0]) if deps else NO_LIBRARY


def for_board(raw: bytes, board: Board) -> tuple[bytes, str | None]:
    """The model the board's TFLM library should run, and the build note when it was rewritten.

    Only boards whose library computes FULLY_CONNECTED per-tensor (``tflm.per_channel_fully_connected``
    false) get the rewrite.  Models tinygen converts itself are not passed here: they get per-tensor
    Dense weights from the converter (see tinygen.codegen.plan.make_plan).
    """
    if board.tflm.per_channel_fully_connected:
        return raw, None
    try:
        new, n = fc_to_conv(raw)
    except Exception as exc:  # corrupt input was refused by parse_model before; this is our bug
        raise TinygenError(f"rewriting FULLY_CONNECTED to CONV_2D failed ({type(exc).__name__}: {exc}); "
                           "use --runtime compiled and report this") from None
    if n == 0:
        return raw, None
    return new, (f"FULLY_CONNECTED ×{n} rewritten to CONV_2D 1×1 for per-channel exactness on "
                 f"{library_name(board)}")

