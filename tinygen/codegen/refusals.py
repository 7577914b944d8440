"""A runtime's refusal of a model's ops, said in Keras terms, with advice that works on this board.

:mod:`tinygen.tflite.keras_names` names the layer behind each op and its replacements; here the
board decides the rest: another runtime is suggested only when it has every refused op, the board
offers it, and (TFLM built from a source tree) the user gave that tree.
"""

from __future__ import annotations

from tinygen.analysis.ops import TFLM_RESOLVER_METHODS
from tinygen.codegen.compiled import SUPPORTED_OPS, lower
from tinygen.common.boards import Board
from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.keras_names import explain_ops
from tinygen.tflite.model import TfliteModel

_NO_KERNEL = "no compiled kernel"


def runtime_ops(runtime: str) -> frozenset[str]:
    """The TFLite ops ``runtime`` has kernels for (the compiled runtime: as of this tinygen)."""
    return frozenset(SUPPORTED_OPS) if runtime == "compiled" else frozenset(TFLM_RESOLVER_METHODS)


def _usable(board: Board | None, runtime: str, tflm_dir: str | None) -> bool:
    if board is None:  # no board (inspect): either runtime, as any board could have it
        return True
    if runtime not in board.runtimes:
        return False
    return not (runtime == "tflm" and board.tflm.needs_tree and not tflm_dir)


def _other_runtime(board: Board | None, runtime: str, opcodes: set[str], tflm_dir: str | None) -> str:
    other = "tflm" if runtime == "compiled" else "compiled"
    if not _usable(board, other, tflm_dir) or not opcodes <= runtime_ops(other):
        return ""
    return f"; or use --runtime {other} (it has {'this op' if len(opcodes) == 1 else 'these ops'})"


def refused_ops(m: TfliteModel, runtime: str) -> dict[int, str]:
    """op index -> why, for every op ``runtime`` cannot run ('' when it simply has no kernel)."""
    if runtime == "tflm":
        return {op.index: "" for op in m.operators if op.opcode not in TFLM_RESOLVER_METHODS}
    return {r.op: ("" if r.reason == _NO_KERNEL else r.reason) for r in lower(m).refusals}


def check_ops(m: TfliteModel, board: Board | None, runtime: str, *, name: str, layers: list | None = None,
              tflm_dir: str | None = None, offer_other: bool = True) -> None:
    """Raise UnsupportedModel naming the Keras layers whose ops ``runtime`` cannot run, if any; the other
    runtime is offered where ``board`` can use it (``board`` None: any board) and ``offer_other``."""
    refused = refused_ops(m, runtime)
    if not refused:
        return
    what = explain_ops(m, refused, layers, runtime_ops(runtime))
    opcodes = {op.opcode for op in m.operators if op.index in refused}
    who = "the compiled runtime" if runtime == "compiled" else "TFLM"
    # A quantization scale out of range fails TFLM's Prepare as well: no other runtime to offer.
    other = "" if not offer_other or any("scale" in why for why in refused.values()) else \
        _other_runtime(board, runtime, opcodes, tflm_dir)
    raise UnsupportedModel(f"{name}: {who} cannot run {what}{other}")
