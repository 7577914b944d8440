"""tinygen's compiled runtime: an int8 model as plain C99, no interpreter.

The emitted ``tg_model.c`` calls our own kernels (``firmware/runtime/
tg_kernels.{h,c}``) in a straight line over one static arena.  Results are
bit-identical to the TensorFlow Lite Micro interpreter (the tflite_micro
Python wheel is the reference the tests compare against).

Public API::

    unsupported_ops(model) -> list[str]
    check_supported(model) -> None            # raises UnsupportedModel
    plan_memory(model) -> MemoryPlan
    emit(model, *, prefix="tg") -> {"tg_model.h": text, "tg_model.c": text}
    kernel_sources() -> {"tg_kernels.h": text, "tg_kernels.c": text}
    memory_table(plan) -> list[dict]
    op_table(model) -> list[dict]
"""

from __future__ import annotations

from tinygen.codegen.compiled.lower import SUPPORTED_OPS, OpRefused, lower_op
from tinygen.codegen.compiled.memory import MemoryPlan, TensorPlacement, memory_table
from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import TfliteModel

__all__ = [
    "SUPPORTED_OPS", "MemoryPlan", "TensorPlacement", "check_supported", "emit", "kernel_sources",
    "memory_table", "op_table", "plan_memory", "unsupported_ops",
]

KERNEL_FILES = ("tg_kernels.h", "tg_kernels.c")


def _model_problems(model: TfliteModel) -> list[str]:
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


def _op_problems(model: TfliteModel) -> list[tuple[str, str, list[int]]]:
    """(op name, reason, op indices) for every operator that cannot be compiled, first-use
    order, one entry per distinct (name, reason)."""
    out: dict[tuple[str, str], list[int]] = {}
    for op in model.operators:
        try:
            lower_op(model, op, "tg")
        except OpRefused as exc:
            out.setdefault((op.opcode, exc.reason), []).append(op.index)
    return [(name, reason, idx) for (name, reason), idx in out.items()]


def unsupported_ops(model: TfliteModel) -> list[str]:
    """Distinct op names (first-use order) the compiled runtime cannot run in this model.

    An op name appears if the op has no compiled kernel, or if this use of it
    (types, quantization, options) is outside what the kernel supports.
    """
    names: list[str] = []
    for name, _, _ in _op_problems(model):
        if name not in names:
            names.append(name)
    return names


def check_supported(model: TfliteModel) -> None:
    """Raise UnsupportedModel (one line) unless the compiled runtime can take the model."""
    problems = _model_problems(model)
    if not problems:
        ops = _op_problems(model)
        if ops:
            by_name: dict[str, list[str]] = {}
            for name, reason, idx in ops:
                where = f"op {idx[0]}" if len(idx) == 1 else "ops " + ", ".join(map(str, idx[:4])) + \
                    (", ..." if len(idx) > 4 else "")
                by_name.setdefault(name, []).append(f"{where}: {reason}")
            parts = [f"{name} ({'; '.join(reasons)})" for name, reasons in by_name.items()]
            raise UnsupportedModel(
                "the compiled runtime cannot run this model: unsupported ops: " + ", ".join(parts)
                + "; use --runtime tflm"
            )
        return
    raise UnsupportedModel(
        "the compiled runtime cannot run this model: " + "; ".join(problems) + "; use --runtime tflm"
    )


def plan_memory(model: TfliteModel) -> MemoryPlan:
    """Static arena plan (offsets, sizes, lifetimes) for a supported model."""
    from tinygen.codegen.compiled.codegen import build

    check_supported(model)
    _, plan, _ = build(model)
    return plan


def emit(model: TfliteModel, *, prefix: str = "tg") -> dict[str, str]:
    """``{f"{prefix}_model.h": text, f"{prefix}_model.c": text}``; pure and deterministic."""
    from tinygen.codegen.compiled.codegen import emit_sources

    check_supported(model)
    return emit_sources(model, prefix)


def op_table(model: TfliteModel) -> list[dict]:
    """One row per operator for ``tinygen inspect --runtime compiled``: the kernel that
    runs it, its output tensor, MACs, and how its output is placed ("view" for a RESHAPE
    that costs nothing, "in-place" when it overwrites its input)."""
    from tinygen.codegen.compiled.codegen import build

    check_supported(model)
    steps, plan, aliased = build(model)
    buf = {t.index: t.buffer for t in plan.tensors}
    rows = []
    for st in steps:
        if st.alias is not None and aliased.get(st.op.index):
            how = "view"
        elif any(buf.get(x) == buf.get(st.output) for x in st.reads):
            how = "in-place"
        else:
            how = "new"
        rows.append({
            "op": st.op.index,
            "opcode": st.op.opcode,
            "kernel": "-" if how == "view" else st.kernel,
            "output": st.output,
            "output_shape": list(model.tensors[st.output].shape),
            "macs": st.macs,
            "placement": how,
        })
    return rows


def kernel_sources() -> dict[str, str]:
    """``{"tg_kernels.h": text, "tg_kernels.c": text}`` from firmware/runtime/."""
    from tinygen.common.paths import firmware_dir

    d = firmware_dir() / "runtime"
    return {name: (d / name).read_text(encoding="utf-8") for name in KERNEL_FILES}
