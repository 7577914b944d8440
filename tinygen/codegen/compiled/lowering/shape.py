"""RESHAPE, PAD, CONCATENATION and PACK -> ``firmware/runtime/tg_shape.c`` (copy, pad, concatenation)."""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, act_inputs, fields, fused_activation, i32, int8_io,
                                                      int8_outputs, need_int8_act, norm_axis, pad_dims)
from tinygen.tflite.model import Operator, TfliteModel


def reshape(m: TfliteModel, op: Operator) -> OpIR:
    x, = act_inputs(m, op, 1)
    y = m.tensors[op.outputs[0]]
    if x.dtype != "int8" or y.dtype != "int8":
        raise OpRefused(op, f"{x.dtype} -> {y.dtype}; only int8 tensors are supported")
    if x.size != y.size:
        raise OpRefused(op, f"{x.shape} -> {y.shape} changes the number of values")
    xi, yi = x.index, y.index
    params = fields(("size", y.size))
    if x.is_constant:
        return OpIR(op.index, op.opcode, "tg_copy_s8", (xi,), yi, (), params, const_inputs=(xi,))
    return OpIR(op.index, op.opcode, "tg_copy_s8", (xi,), yi, (xi,), params, alias=xi)


def pad(m: TfliteModel, op: Operator) -> OpIR:
    if len(op.inputs) != 2:
        raise OpRefused(op, "PAD with a constant-value input (PADV2 form)")
    x, y = int8_io(m, op)
    pads = m.tensors[op.inputs[1]]
    if not pads.is_constant or pads.dtype != "int32":
        raise OpRefused(op, "paddings must be a constant int32 tensor")
    rank = len(x.shape)
    if rank == 0 or rank > 5 or len(y.shape) != rank or pads.size != 2 * rank:
        raise OpRefused(op, f"unsupported rank {rank}")
    pv = np.asarray(pads.data).reshape(rank, 2)
    if (pv < 0).any():
        raise OpRefused(op, "negative padding")
    # Python ints: an int32 sum of hostile paddings could wrap around to the right shape.
    want = tuple(int(x.shape[i]) + int(pv[i, 0]) + int(pv[i, 1]) for i in range(rank))
    if want != tuple(y.shape):
        raise OpRefused(op, f"output shape {y.shape} is not input {x.shape} plus paddings")
    params = fields(
        ("rank", rank), ("in_dims", pad_dims(x.shape, 1)), ("out_dims", pad_dims(y.shape, 1)),
        ("before", pad_dims([int(v) for v in pv[:, 0]])), ("out_size", y.size),
        ("pad_value", y.zero_point[0]))
    return OpIR(op.index, op.opcode, "tg_pad_s8", (x.index,), y.index, (x.index,), params)


def concat(m: TfliteModel, op: Operator) -> OpIR:
    if len(op.outputs) != 1 or not op.inputs or any(i < 0 for i in op.inputs):
        raise OpRefused(op, "bad inputs/outputs")
    ins = [m.tensors[i] for i in op.inputs]
    y = m.tensors[op.outputs[0]]
    need_int8_act(m, op, y, "output")
    if fused_activation(op) != "NONE":
        raise OpRefused(op, "fused activation on CONCATENATION")
    rank = len(y.shape)
    axis = int(op.options.get("axis", 0))
    axis += rank if axis < 0 else 0
    if not 0 <= axis < rank:
        raise OpRefused(op, f"axis {axis} out of range")
    total = 0
    for t in ins:
        need_int8_act(m, op, t, "input")
        if t.scale[0] != y.scale[0] or t.zero_point[0] != y.zero_point[0]:
            raise OpRefused(op, "inputs need the output's scale and zero point (TFLM rejects it)")
        if len(t.shape) != rank or any(t.shape[d] != y.shape[d] for d in range(rank) if d != axis):
            raise OpRefused(op, f"input shape {t.shape} does not fit output {y.shape} along axis {axis}")
        total += t.shape[axis]
    if total != y.shape[axis]:
        raise OpRefused(op, "input sizes along the axis do not add up to the output")
    outer = int(np.prod(y.shape[:axis])) if axis else 1
    inner = [int(np.prod(t.shape[axis:])) for t in ins]
    reads = tuple(dict.fromkeys(t.index for t in ins if not t.is_constant))
    consts = tuple(dict.fromkeys(t.index for t in ins if t.is_constant))
    return OpIR(op.index, op.opcode, "tg_concat_s8", tuple(t.index for t in ins), y.index, reads,
                fields(("outer", outer), ("count", len(ins)), ("inner", ArrayRef("inner"))),
                (ConstArray("inner", i32(inner)),), const_inputs=consts)


def pack(m: TfliteModel, op: Operator) -> OpIR:
    y, = int8_outputs(m, op)
    if not op.inputs or any(i < 0 for i in op.inputs):
        raise OpRefused(op, "missing input")
    ins = [m.tensors[i] for i in op.inputs]
    for t in ins:
        need_int8_act(m, op, t, "input")
    shape = tuple(ins[0].shape)
    axis = norm_axis(op, int(op.options.get("axis", 0)), len(shape) + 1)
    if any(tuple(t.shape) != shape for t in ins) or int(op.options.get("valuesCount", len(ins))) != len(ins):
        raise OpRefused(op, "inputs of different shapes")
    if tuple(y.shape) != shape[:axis] + (len(ins),) + shape[axis:]:
        raise OpRefused(op, f"output shape {y.shape} does not stack {len(ins)} inputs of {shape} on axis {axis}")
    # Stacking on an axis is concatenating rows of prod(shape[axis:]) values.
    outer = int(np.prod(shape[:axis])) if axis else 1
    inner = int(np.prod(shape[axis:])) if axis < len(shape) else 1
    reads = tuple(dict.fromkeys(t.index for t in ins if not t.is_constant))
    consts = tuple(dict.fromkeys(t.index for t in ins if t.is_constant))
    return OpIR(op.index, op.opcode, "tg_concat_s8", tuple(t.index for t in ins), y.index, reads,
                fields(("outer", outer), ("count", len(ins)), ("inner", ArrayRef("inner"))),
                (ConstArray("inner", i32([inner] * len(ins))),), const_inputs=consts)
