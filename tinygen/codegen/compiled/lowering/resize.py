"""RESIZE_NEAREST_NEIGHBOR and RESIZE_BILINEAR -> ``firmware/runtime/tg_resize.c``.

Per-row and per-column tables computed here exactly as TFLM computes them per pixel (float32 for
nearest, its 10-bit fixed point for bilinear).
"""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled import quant
from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import (OpRefused, act_tensor, check_index_range, const_ints, fields,
                                                      i32, int8_outputs)
from tinygen.tflite.model import Operator, TfliteModel


def _c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _nearest_table(in_size: int, out_size: int, align: bool, half: bool) -> list[int]:
    """TFLM's GetNearestNeighbor for every output index, in float32 as it computes."""
    f = np.float32
    if align and out_size > 1:
        scale = f(in_size - 1) / f(out_size - 1)
    else:
        scale = f(in_size) / f(out_size)
    table = []
    for v in range(out_size):
        s = (f(v) + f(0.5 if half else 0.0)) * scale
        src = int(np.floor(s)) if not align else int(quant.round_half_away(float(s)))
        src = min(src, in_size - 1)
        table.append(max(0, src) if half else src)
    return table


def _bilinear_table(in_size: int, out_size: int, align: bool, half: bool) -> list[int]:
    """TFLM's ResizeBilinearInteger interpolation values per output index: (lower, upper,
    position - 1024 * lower), all in its 10-bit fixed point."""
    if align and out_size > 1:
        s10 = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        s10 = ((1 << 10) * in_size + out_size // 2) // out_size
    table = []
    for v in range(out_size):
        pos = v * s10 + s10 // 2 - (1 << 9) if half else v * s10
        lo = max(_c_div(pos, 1 << 10), 0)
        hi = min(_c_div(pos + (1 << 10) - 1, 1 << 10), in_size - 1)
        table += [lo, hi, pos - (1 << 10) * lo]
    return table


def resize(m: TfliteModel, op: Operator, kind: str) -> OpIR:
    x = act_tensor(m, op, 0, "input")
    y, = int8_outputs(m, op)
    size = const_ints(m, op, 1, "size")
    if len(x.shape) != 4 or len(y.shape) != 4 or len(size) != 2:
        raise OpRefused(op, "input and output must be 4-D (NHWC) with a 2-value size")
    n, in_h, in_w, ch = (int(v) for v in x.shape)
    if tuple(y.shape) != (n, size[0], size[1], ch):
        raise OpRefused(op, f"output shape {y.shape} does not match size {size}")
    align = bool(op.options.get("alignCorners", False))
    half = bool(op.options.get("halfPixelCenters", False))
    if align and half:
        raise OpRefused(op, "align_corners together with half_pixel_centers (TFLM rejects it)")
    out_h, out_w = size
    check_index_range(op, "input size", n, in_h, in_w, ch)
    check_index_range(op, "output size x 1024", n, out_h, out_w, ch, 1024)
    table = _nearest_table if kind == "nearest" else _bilinear_table
    params = fields(("batches", n), ("in_h", in_h), ("in_w", in_w), ("channels", ch), ("out_h", out_h),
                     ("out_w", out_w), ("ys", ArrayRef("ys")), ("xs", ArrayRef("xs")))
    arrays = (ConstArray("ys", i32(table(in_h, out_h, align, half))),
              ConstArray("xs", i32(table(in_w, out_w, align, half))))
    fn = "tg_resize_nearest_s8" if kind == "nearest" else "tg_resize_bilinear_s8"
    return OpIR(op.index, op.opcode, fn, (x.index,), y.index, (x.index,), params, arrays)
