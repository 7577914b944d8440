"""The compiled runtime's numeric IR: a build lowers each operator once, keeps numbers (no C)
in its plan, and prints C only when the project is rendered.

The model is support/flat_model.py's hand-written int8 graph (CONV_2D, DEPTHWISE_CONV_2D,
AVERAGE_POOL_2D, RESHAPE, FULLY_CONNECTED): no TensorFlow, a few seconds.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import replace

import numpy as np
import pytest

from conftest import require
from support.flat_model import build_base
from tinygen.codegen import compiled
from tinygen.codegen.compiled.ir import ArrayRef
from tinygen.common.errors import UnsupportedModel
from tinygen.tflite.model import parse_model

# the module, not the function of the same name the package exports
lower_mod = importlib.import_module("tinygen.codegen.compiled.lowering")


def _have_tflite_micro() -> bool:
    return importlib.util.find_spec("tflite_micro") is not None


def test_a_compiled_build_lowers_each_op_once_and_prints_c_at_render_time(monkeypatch):
    require(_have_tflite_micro(), "tflite_micro (Python package)")
    from tinygen.codegen.plan import make_plan
    from tinygen.codegen.render import render
    from tinygen.common.boards import get_board
    from tinygen.intake.sources import Source

    lowered: list[int] = []
    printed: list[str] = []
    real_lower_op, real_print_c = lower_mod.lower_op, compiled.print_c

    def counting_lower_op(m, op):
        lowered.append(op.index)
        return real_lower_op(m, op)

    def counting_print_c(program, memory, prefix="tg"):
        printed.append(prefix)
        return real_print_c(program, memory, prefix)

    monkeypatch.setattr(lower_mod, "lower_op", counting_lower_op)
    monkeypatch.setattr(compiled, "print_c", counting_print_c)
    src = Source(name="base", description="hand-written int8 graph", task="unknown", tflite=build_base())
    plan = make_plan(src, get_board("qemu-m4"), "compiled", n_vectors=2)
    n_ops = len(plan.model.operators)
    assert sorted(lowered) == list(range(n_ops)), "a compiled build lowers every operator exactly once"
    assert printed == [], "make_plan prints no C"
    assert isinstance(plan.compiled, compiled.CompiledBuild)
    files = render(plan)
    assert printed == ["tg"] and sorted(lowered) == list(range(n_ops))
    assert files["lib/tinygen_model/src/tg_model.c"].decode() == real_print_c(plan.compiled.program, plan.compiled.memory)["tg_model.c"]


def test_the_ir_holds_numbers_not_c():
    program = compiled.lower(parse_model(build_base()))
    assert program.supported and [op.index for op in program.ops] == list(range(5))

    def numeric(value) -> bool:
        if isinstance(value, tuple):
            return all(numeric(v) for v in value)
        return value is None or isinstance(value, ArrayRef) or type(value) is int

    for op in program.ops:
        assert all(numeric(v) for _, v in op.params), (op.opcode, op.params)
        roles = [a.role for a in op.arrays]
        assert len(set(roles)) == len(roles)
        refs = {v.role for _, v in op.params if isinstance(v, ArrayRef)}
        assert refs <= set(roles), (op.opcode, refs, roles)
        for a in op.arrays:
            assert a.values.dtype in (np.int8, np.int32) and not a.values.flags.writeable
    fc = program.ops[-1]
    assert fc.kernel == "tg_fully_connected_s8" and fc.macs == 48 * 4 and fc.param("accum_padded") == 48
    assert [a.role for a in fc.arrays][:2] == ["w", "b"] and fc.arrays[0].values.size == 4 * 48
    # the memory plan and the printer read the same Program: printing twice is identical
    plan = compiled.plan_memory(program)
    assert compiled.print_c(program, plan) == compiled.print_c(program, plan, "tg")


def test_refusals_come_from_the_same_program():
    m = parse_model(build_base())
    # FULLY_CONNECTED weights with a zero point: the int8 kernels need symmetric weights
    w = m.operators[-1].inputs[1]
    tensors = tuple(replace(t, zero_point=(3,)) if t.index == w else t for t in m.tensors)
    program = compiled.lower(replace(m, tensors=tensors))
    assert not program.supported and program.unsupported_ops() == ["FULLY_CONNECTED"]
    assert [op.index for op in program.ops] == [0, 1, 2, 3]
    with pytest.raises(UnsupportedModel, match=r"FULLY_CONNECTED \(op 4: weights have a non-zero zero point\)"):
        compiled.check_supported(program)
