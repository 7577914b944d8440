"""CONV_2D -> ``firmware/runtime/tg_conv.c``.

The filter is packed for the kernel's inner loops (packing.py), the bias folded with the input
offset, and the requantization turned into the fused constants where that is provably exact
(the geometry and the OpIR are shared with DEPTHWISE_CONV_2D: common.conv_geometry / conv_opir).
"""

from __future__ import annotations

import numpy as np

from tinygen.codegen.compiled.ir import ArrayRef, ConstArray, OpIR
from tinygen.codegen.compiled.lowering.common import conv_geometry, conv_opir, packed_weights
from tinygen.tflite.model import Operator, TfliteModel


def conv_2d(m: TfliteModel, op: Operator) -> OpIR:
    c = conv_geometry(m, op, depthwise=False)
    w2 = np.asarray(c["w"].data).reshape(c["out_c"], -1)
    packed, folded, k4, acc_bound = packed_weights(op, w2, c["bias"], -c["x"].zero_point[0],
                                                   c["in_c"] // c["filter_in_c"])
    arrays = [ConstArray("w", packed, align=4), ConstArray("b", folded)]
    # a channel with all weights zero accumulates its folded bias and nothing else
    known = [int(b) if not row.any() else None for row, b in zip(w2, folded)]
    return conv_opir(op, c, arrays, acc_bound, k4, ArrayRef("b"), None, depthwise=False, known=known)
