"""Lower each TFLite operator to one call of a tg_kernels.h function, as numbers.

``lower(model)`` checks the model and every operator against what the compiled runtime (and
TFLM's int8 kernel for that op) accepts, computes all parameters that TFLM computes in Prepare
(see :mod:`tinygen.codegen.compiled.quant`), packs the weights, and returns one
:class:`~tinygen.codegen.compiled.ir.Program`: an :class:`~tinygen.codegen.compiled.ir.OpIR` per
operator (or the reason it was refused). It writes no C: :mod:`..printer` does, from the Program
and its memory plan. All shapes are checked here, so every index the kernels compute stays inside
the buffers by construction.

One module per op family, named like the C file its kernels live in (``conv.py`` ->
``firmware/runtime/tg_conv.c``); what they share is :mod:`.common`. Adding an op touches its
family module and one line of ``OPS`` below (kept in alphabetical order; a test checks it).

May import: tinygen.codegen.compiled.{ir,packing,quant,overlap}, tinygen.tflite, tinygen.common.
"""

from __future__ import annotations

from functools import partial

from tinygen.codegen.compiled.ir import OpIR, Program, Refusal
from tinygen.codegen.compiled.lowering import (activation, conv, depthwise_conv, elementwise, fully_connected, gather,
                                               pool, reduce, resize, shape, transpose_conv)
from tinygen.codegen.compiled.lowering.common import OpRefused
from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import Operator, TfliteModel

__all__ = ["OPS", "SUPPORTED_OPS", "OpRefused", "lower", "lower_op", "model_problems"]

# TFLite op -> its lowering: (model, operator) -> OpIR, or a tuple of OpIRs for an op with
# several outputs (SPLIT, SPLIT_V, UNPACK: one kernel call each).
OPS = {
    "ABS": activation.abs_,
    "ADD": partial(elementwise.add_mul, kind="add"),
    "AVERAGE_POOL_2D": partial(pool.pool, kind="avg"),
    "CONCATENATION": shape.concat,
    "CONV_2D": conv.conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv.depthwise_conv_2d,
    "DEQUANTIZE": elementwise.dequantize,
    "FULLY_CONNECTED": fully_connected.fully_connected,
    "HARD_SWISH": activation.hard_swish,
    "LEAKY_RELU": activation.leaky_relu,
    "LOGISTIC": partial(activation.sigmoid, kind="logistic"),
    "MAXIMUM": partial(elementwise.minmax, kind="maximum"),
    "MAX_POOL_2D": partial(pool.pool, kind="max"),
    "MEAN": reduce.mean,
    "MINIMUM": partial(elementwise.minmax, kind="minimum"),
    "MUL": partial(elementwise.add_mul, kind="mul"),
    "PACK": shape.pack,
    "PAD": shape.pad,
    "PRELU": elementwise.prelu,
    "QUANTIZE": elementwise.quantize,
    "REDUCE_MAX": partial(reduce.reduce_minmax, kind="max"),
    "REDUCE_MIN": partial(reduce.reduce_minmax, kind="min"),
    "RELU": elementwise.relu,
    "RELU6": elementwise.relu6,
    "RESHAPE": shape.reshape,
    "RESIZE_BILINEAR": partial(resize.resize, kind="bilinear"),
    "RESIZE_NEAREST_NEIGHBOR": partial(resize.resize, kind="nearest"),
    "SOFTMAX": activation.softmax,
    "SPLIT": gather.split,
    "SPLIT_V": gather.split_v,
    "SQUARED_DIFFERENCE": elementwise.squared_difference,
    "STRIDED_SLICE": gather.strided_slice,
    "SUB": elementwise.sub,
    "SUM": reduce.sum_,
    "TANH": partial(activation.sigmoid, kind="tanh"),
    "TRANSPOSE": gather.transpose,
    "TRANSPOSE_CONV": transpose_conv.transpose_conv,
    "UNPACK": gather.unpack,
}
SUPPORTED_OPS = tuple(OPS)


def lower_op(m: TfliteModel, op: Operator) -> OpIR:
    """One operator as an OpIR, or OpRefused saying why the compiled runtime cannot run it."""
    fn = OPS.get(op.opcode)
    if fn is None:
        raise OpRefused(op, "no compiled kernel")
    try:
        return fn(m, op)
    except OpRefused:
        raise
    except UnsupportedModel as exc:  # a parameter TFLM's Prepare would also reject
        raise OpRefused(op, str(exc)) from None
    except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise OpRefused(op, f"malformed operator ({type(exc).__name__}: {exc})") from None


def model_problems(model: TfliteModel) -> list[str]:
    """Whole-model reasons the compiled runtime cannot take the model."""
    problems = []
    if len(model.inputs) != 1:
        problems.append(f"{len(model.inputs)} inputs (needs exactly one)")
    if len(model.outputs) != 1:
        problems.append(f"{len(model.outputs)} outputs (needs exactly one)")
    if not model.operators:
        problems.append("no operators")
    if problems:
        return problems
    for what, t in (("input", model.input_tensor()), ("output", model.output_tensor())):
        if t.dtype != "int8":
            problems.append(f"model {what} is {t.dtype} (needs int8)")
        elif len(t.scale) != 1 or len(t.zero_point) != 1:
            problems.append(f"model {what} is not per-tensor quantized")
    if model.inputs[0] == model.outputs[0]:
        problems.append("the model output is its input")
    written: set[int] = set()
    for op in model.operators:
        for t in op.outputs:
            if t == model.inputs[0] or model.tensors[t].is_constant or t in written:
                problems.append(f"op {op.index} ({op.opcode}) writes tensor {t} that is an input, "
                                "a constant, or written twice")
            written.add(t)
    if model.outputs[0] not in written:
        problems.append("the model output is not computed by any operator")
    # Only the model input and the outputs of earlier ops exist when an op runs.
    available = {model.inputs[0]}
    for op in model.operators:
        for t in op.inputs:
            if t >= 0 and not model.tensors[t].is_constant and t not in available:
                problems.append(f"op {op.index} ({op.opcode}) reads tensor {t} before it is computed")
        available |= set(op.outputs)
    return problems


def lower(m: TfliteModel) -> Program:
    """The model as one Program; every operator is lowered exactly once, here."""
    ops: list[OpIR] = []
    refusals: list[Refusal] = []
    for op in m.operators:
        try:
            got = lower_op(m, op)
            ops.extend(got if isinstance(got, tuple) else (got,))
        except OpRefused as exc:
            refusals.append(Refusal(op.index, op.opcode, exc.reason))
    return Program(m.sha256, tuple(m.tensors), tuple(m.inputs), tuple(m.outputs), tuple(ops),
                   tuple(model_problems(m)), tuple(refusals))
