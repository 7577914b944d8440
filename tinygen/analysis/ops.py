"""Static analysis of an int8 model: ops, parameters, MACs, TFLM op support.

Input: a :class:`TfliteModel`.  Output: plain values (dicts/dataclasses) the
CLI prints as tables or JSON.  Errors: :class:`UnsupportedModel` from
:func:`check_tflm_ops` (int8-ness is :mod:`tinygen.tflite.int8`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import TfliteModel

# TFLite builtin op -> tflite::MicroMutableOpResolver method.  This is the set
# of builtins TFLM has kernels for (micro_mutable_op_resolver.h); an op that is
# not here cannot run under TFLM and is refused before anything is written.
TFLM_RESOLVER_METHODS = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D", "COS": "AddCos", "CUMSUM": "AddCumSum",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv", "ELU": "AddElu", "EQUAL": "AddEqual",
    "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAX_POOL_2D": "AddMaxPool2D", "MAXIMUM": "AddMaximum", "MEAN": "AddMean",
    "MINIMUM": "AddMinimum", "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2",
    "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize", "REDUCE_MAX": "AddReduceMax",
    "RELU": "AddRelu", "RELU6": "AddRelu6", "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear", "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "ROUND": "AddRound", "RSQRT": "AddRsqrt", "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape",
    "SIN": "AddSin", "SLICE": "AddSlice", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf",
    "TANH": "AddTanh", "TRANSPOSE": "AddTranspose", "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM", "UNPACK": "AddUnpack",
    "ZEROS_LIKE": "AddZerosLike",
}


@dataclass(frozen=True)
class OpInfo:
    index: int
    opcode: str
    inputs: list[str]
    outputs: list[str]
    output_shape: tuple[int, ...]
    macs: int


@dataclass(frozen=True)
class Analysis:
    ops: list[str]  # distinct, first-use order
    op_counts: dict[str, int]
    layers: list[OpInfo]
    params: int
    macs: int
    model_bytes: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: str
    output_dtype: str
    sha256: str


def _op_macs(m: TfliteModel, op) -> int:
    # parse_model checked the arity and weight ranks of the ops looked at here.
    t = m.tensors
    if not op.outputs:
        return 0
    out = t[op.outputs[0]]
    out_elems = int(np.prod(out.shape)) if out.shape else 1
    if op.opcode == "FULLY_CONNECTED":
        w = t[op.inputs[1]]
        return out_elems * int(w.shape[-1])
    if op.opcode == "CONV_2D":
        w = t[op.inputs[1]]  # [out_c, kh, kw, in_c]
        return out_elems * int(w.shape[1] * w.shape[2] * w.shape[3])
    if op.opcode == "DEPTHWISE_CONV_2D":
        w = t[op.inputs[1]]  # [1, kh, kw, out_c]
        return out_elems * int(w.shape[1] * w.shape[2])
    if op.opcode == "TRANSPOSE_CONV":
        w = t[op.inputs[1]]
        inp = t[op.inputs[2]]
        return int(np.prod(inp.shape)) * int(w.shape[0] * w.shape[1] * w.shape[2])
    if op.opcode in ("ADD", "MUL", "SUB", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN"):
        return out_elems
    return 0


def analyze(m: TfliteModel) -> Analysis:
    params = 0
    for tensor in m.tensors:
        if tensor.is_constant and tensor.dtype in ("int8", "int32", "float32", "int16", "uint8") \
                and tensor.index not in m.inputs:
            # Shape operands of RESHAPE etc. are int32 constants but not parameters.
            if tensor.dtype == "int32" and len(tensor.shape) == 1 and not tensor.scale:
                continue
            params += tensor.size
    counts: dict[str, int] = {}
    layers = []
    total = 0
    for op in m.operators:
        counts[op.opcode] = counts.get(op.opcode, 0) + 1
        macs = _op_macs(m, op)
        total += macs
        layers.append(OpInfo(op.index, op.opcode,
                             [m.tensors[i].name for i in op.inputs if i >= 0],
                             [m.tensors[i].name for i in op.outputs],
                             m.tensors[op.outputs[0]].shape if op.outputs else (), macs))
    return Analysis(m.op_names, counts, layers, params, total, len(m.raw),
                    m.input_tensor().shape, m.output_tensor().shape,
                    m.input_tensor().dtype, m.output_tensor().dtype, m.sha256)


def check_tflm_ops(m: TfliteModel, name: str = "model") -> None:
    missing = [op for op in m.op_names if op not in TFLM_RESOLVER_METHODS]
    if missing:
        raise UnsupportedModel(
            f"{name} uses ops TFLM has no kernel for: {', '.join(missing)}; "
            "rebuild the model without them"
        )


def dense_per_channel(m: TfliteModel) -> bool:
    """True when any FULLY_CONNECTED weight tensor carries per-channel scales."""
    for op in m.operators:
        if op.opcode == "FULLY_CONNECTED" and m.tensors[op.inputs[1]].per_channel:
            return True
    return False
