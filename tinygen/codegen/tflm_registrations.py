"""How the TFLM glue registers each op: the int8-only kernel variant where the library has one.

``resolver.AddConv2D()`` registers TFLM's type-generic kernel, which with CMSIS-NN links the int16
and int4 code paths as well; ``resolver.AddConv2D(tflite::Register_CONV_2D_INT8())`` links only the
int8 path: the same instructions and outputs for an int8 op, several KB less flash (issue 28). A
variant is used only when

* the library has it: the board's pinned library (a verified table below, checked against the real
  tree by tests/codegen/test_tflm_registrations.py) or, for ``--tflm-dir``, the tree itself (its kernel header
  declares ``Register_<OP>_INT8()`` and its ``MicroMutableOpResolver::Add<Op>`` takes a registration);
* the op is int8 in this model: the inputs the variant reads as int8 (activations, weights) and the
  output are int8 tensors.

Everything else keeps the generic registration, and the glue says why in a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tinygen.analysis.ops import TFLM_RESOLVER_METHODS
from tinygen.common.boards import Board
from tinygen.tflite.model import TfliteModel

# op -> (registration function, kernel header under tensorflow/lite/micro/kernels/, the op's input
# indices that the int8 variant reads as int8). Upstream tflite-micro declares each of these in that
# header (defined by kernels/cmsis_nn/ under CMSIS_NN, an inline alias of the generic kernel otherwise).
INT8_VARIANTS: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "ADD": ("Register_ADD_INT8", "add.h", (0, 1)),
    "AVERAGE_POOL_2D": ("Register_AVERAGE_POOL_2D_INT8", "pooling.h", (0,)),
    "BATCH_MATMUL": ("Register_BATCH_MATMUL_INT8", "batch_matmul.h", (0, 1)),
    "CONV_2D": ("Register_CONV_2D_INT8", "conv.h", (0, 1)),
    "DEPTHWISE_CONV_2D": ("Register_DEPTHWISE_CONV_2D_INT8", "depthwise_conv.h", (0, 1)),
    "FULLY_CONNECTED": ("Register_FULLY_CONNECTED_INT8", "fully_connected.h", (0, 1)),
    "MAXIMUM": ("Register_MAXIMUM_INT8", "maximum_minimum.h", (0, 1)),
    "MAX_POOL_2D": ("Register_MAX_POOL_2D_INT8", "pooling.h", (0,)),
    "MINIMUM": ("Register_MINIMUM_INT8", "maximum_minimum.h", (0, 1)),
    "MUL": ("Register_MUL_INT8", "mul.h", (0, 1)),
    "PAD": ("Register_PAD_INT8", "pad.h", (0,)),
    "SOFTMAX": ("Register_SOFTMAX_INT8", "softmax.h", (0,)),
    "SVDF": ("Register_SVDF_INT8", "svdf.h", (0, 1)),
    "TRANSPOSE": ("Register_TRANSPOSE_INT8", "transpose.h", (0,)),
    "TRANSPOSE_CONV": ("Register_TRANSPOSE_CONV_INT8", "transpose_conv.h", (1, 2)),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("Register_UNIDIRECTIONAL_SEQUENCE_LSTM_INT8",
                                     "unidirectional_sequence_lstm.h", (0,)),
}

# Registry libraries: (library, version) -> the ops whose int8 variant that exact version has, read
# from its tree (Chirale 2.0.0: declared under `#if defined(ARDUINO)` in add.h, conv.h,
# depthwise_conv.h, fully_connected.h, mul.h, pooling.h, softmax.h, svdf.h and defined in
# kernels/cmsis_nn/; its AddMaximum, AddMinimum, AddTranspose, AddTransposeConv and
# AddUnidirectionalSequenceLSTM take no registration, pad.h and batch_matmul.h declare none).
LIBRARY_INT8_VARIANTS: dict[tuple[str, str], frozenset[str]] = {
    ("spaziochirale/Chirale_TensorFLowLite", "2.0.0"): frozenset({
        "ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MUL",
        "SOFTMAX", "SVDF"}),
}


@dataclass(frozen=True)
class Registration:
    op: str
    method: str  # MicroMutableOpResolver::Add<Op>
    variant: str | None  # e.g. "Register_CONV_2D_INT8", None: the generic kernel
    header: str | None  # the kernel header that declares the variant
    why: str  # said in the glue next to the call

    @property
    def call(self) -> str:
        arg = f"tflite::{self.variant}()" if self.variant else ""
        return f"{self.method}({arg})"


def _micro_dir(tree: Path) -> Path | None:
    for sub in ("src/tensorflow/lite/micro", "tensorflow/lite/micro"):
        if (tree / sub / "micro_mutable_op_resolver.h").is_file():
            return tree / sub
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tree_int8_variants(tree: str | Path) -> frozenset[str]:
    """The ops whose int8 variant a TFLM source tree offers (Arduino or upstream layout): the kernel
    header declares ``Register_<OP>_INT8()`` and the resolver's Add method takes a registration."""
    micro = _micro_dir(Path(tree))
    if micro is None:
        return frozenset()
    resolver = _read(micro / "micro_mutable_op_resolver.h")
    found = set()
    for op, (fn, header, _) in INT8_VARIANTS.items():
        method = TFLM_RESOLVER_METHODS[op]
        declared = re.search(rf"\b{fn}\s*\(\s*\)", _read(micro / "kernels" / header))
        takes = re.search(rf"TfLiteStatus\s+{method}\s*\(\s*const\s+\w+\s*&\s*\w+", resolver)
        if declared and takes:
            found.add(op)
    return frozenset(found)


def library_int8_variants(board: Board, tflm_dir: str | None) -> tuple[frozenset[str], str]:
    """(ops with an int8 variant, the library's name for comments) for the TFLM the project builds."""
    if tflm_dir:
        return tree_int8_variants(tflm_dir), "the --tflm-dir tree"
    key = (board.tflm.library, str(board.tflm.version))
    return LIBRARY_INT8_VARIANTS.get(key, frozenset()), f"{key[0]} {key[1]}"


def _int8_op(m: TfliteModel, op) -> bool:
    _, _, inputs = INT8_VARIANTS[op.opcode]
    for i in inputs:
        if i >= len(op.inputs) or op.inputs[i] < 0 or m.tensors[op.inputs[i]].dtype != "int8":
            return False
    return bool(op.outputs) and m.tensors[op.outputs[0]].dtype == "int8"


def registrations(m: TfliteModel, ops: list[str], board: Board, tflm_dir: str | None) -> list[Registration]:
    """One registration per distinct op (``ops``: first-use order), int8 variant where allowed."""
    have, lib = library_int8_variants(board, tflm_dir)
    out = []
    for name in ops:
        method = TFLM_RESOLVER_METHODS[name]
        if name not in INT8_VARIANTS:
            out.append(Registration(name, method, None, None, "generic: TFLM has no int8-only variant of this op"))
            continue
        fn, header, _ = INT8_VARIANTS[name]
        if name not in have:
            out.append(Registration(name, method, None, None, f"generic: {lib} has no {fn}"))
            continue
        not_int8 = [op.index for op in m.operators if op.opcode == name and not _int8_op(m, op)]
        if not_int8:
            out.append(Registration(name, method, None, None,
                                    f"generic: op {not_int8[0]} is not int8 throughout, {fn} would refuse it"))
            continue
        out.append(Registration(name, method, fn, header, "int8-only kernel: no int16/int4 code linked"))
    return out


def variant_headers(regs: list[Registration]) -> list[str]:
    """The kernel headers the glue includes for its variants (sorted, each once)."""
    return sorted({f"tensorflow/lite/micro/kernels/{r.header}" for r in regs if r.header})
