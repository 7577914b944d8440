"""DEPTHWISE_CONV_2D -> ``firmware/runtime/tg_depthwise_conv.c``.

The filter stays as TFLite stores it; a 3x3 filter with at most 8 outputs per input channel
also gets the widened weights with the input offset folded into per-group biases
(packing.dw3x3_widened) for the kernel's DSP path. Geometry and OpIR are shared with CONV_2D
(common.conv_geometry / conv_opir).
"""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import INT32_MAX, OpRefused, conv_geometry, conv_opir, i32
from tinygen.tflite.model import Operator, TfliteModel


def depthwise_conv_2d(m: TfliteModel, op: Operator) -> OpIR:
    c = conv_geometry(m, op, depthwise=True)
    arrays = [ConstArray("w", np.asarray(c["w"].data))]
    # accumulators: bias + sum w * (x + input_offset), x in [-128, 127], over
    # any subset of the taps (padding taps are skipped)
    wd = np.abs(np.asarray(c["w"].data, dtype=np.int64)).reshape(-1, c["out_c"]).sum(axis=0)
    off = -int(c["x"].zero_point[0])
    bd = np.zeros(c["out_c"], dtype=np.int64) if c["bias"] is None else \
        np.abs(np.asarray(c["bias"].data, dtype=np.int64).reshape(-1))
    acc_bound = bd + max(abs(-128 + off), abs(127 + off)) * wd
    if int(acc_bound.max(initial=0)) > INT32_MAX:
        raise OpRefused(op, "bias and weights could overflow the int32 accumulator")
    w16_ref = ArrayRef("w16") if c["dm"] <= 8 and c["k_h"] == 3 and c["k_w"] == 3 and c["in_c"] >= 4 else None
    bias_ref: ArrayRef | None = None
    if c["bias"] is not None:
        arrays.append(ConstArray("b", i32(c["bias"].data)))
        bias_ref = ArrayRef("b")
    # a channel with all weights zero accumulates its bias and nothing else
    w_any = np.asarray(c["w"].data).reshape(-1, c["out_c"]).any(axis=0)
    bias = np.zeros(c["out_c"], dtype=np.int64) if c["bias"] is None else \
        np.asarray(c["bias"].data, dtype=np.int64).reshape(-1)
    known = [None if nz else int(b) for nz, b in zip(w_any, bias)]
    return conv_opir(op, c, arrays, acc_bound, 0, bias_ref, w16_ref, depthwise=True, known=known)
