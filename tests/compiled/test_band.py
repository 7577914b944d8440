"""The compiled runtime's scheduler (tinygen/codegen/compiled/band.py): op order and bands.

A band runs a chain of convolutions one output row at a time (firmware/runtime/tg_band.c), so the
chain's intermediate tensors exist only as a few rows; a residual band also runs the block's ADD per
row and writes its output over the block's input.  The scheduler must choose them where they make the
arena smaller, and a banded or reordered model must compute exactly what tflite_micro computes: on the
host with ASan/UBSan, on QEMU's Cortex-M4 (DSP kernels), Cortex-M55 (Helium kernels) and RV32 (the
portable C kernels).  The models are flatbuffers written here (no TensorFlow): a ResNet-style residual
block, a plain chain with strides / valid padding / a depth multiplier / rows of 30 bytes, and a
projection block whose shortcut is listed after the branch (as the converter writes ResNet-8).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import support.compiled_harness as H
from support.band_models import plain_chain, projection_block, residual_block
from tinygen.codegen.compiled import compile_model
from tinygen.codegen.compiled.lowering import lower
from tinygen.codegen.compiled.memory import plan_memory
from tinygen.tflite.model import parse_model

MODELS = {"residual": residual_block, "chain": plain_chain, "projection": projection_block}


@pytest.fixture(scope="module")
def cases():
    H.require(H.have_python_deps(), "tflite_micro, numpy")
    rng = np.random.default_rng(21)
    out = {}
    for name, make in MODELS.items():
        m = parse_model(make(), name=name)
        x = H.input_vectors(m.input_tensor().shape, 6, rng)
        out[name] = (m, x, H.tflm_outputs(m.raw, x))
    return out


def test_the_scheduler_bands_and_reorders_where_the_arena_shrinks(cases):
    """Each model's chosen schedule, and its arena against the model's order with no bands (the plan
    before this scheduler): what a scheduler that chose nothing, or a wrong band, would fail."""
    got = {}
    for name, (m, _, _) in cases.items():
        build = compile_model(m)
        plain = plan_memory(lower(m)).peak_bytes
        assert build.arena_bytes < plain, f"{name}: arena {build.arena_bytes}, unscheduled {plain}"
        got[name] = build
    res = got["residual"].program
    (band,) = res.bands
    assert [res.ops[p].opcode for p in band.positions] == ["CONV_2D", "CONV_2D", "ADD"]
    assert band.output_over_input  # the block's output takes its input's bytes, row by row
    places = {t.index: t for t in got["residual"].memory.tensors}
    assert places[band.output].buffer == places[band.input].buffer
    inside = [res.ops[p].output for p in band.positions[:-1]]
    assert all(places[t].location == "band" and places[t].offset == -1 for t in inside)
    chain = got["chain"].program
    (band,) = chain.bands
    assert band.stop - band.start >= 2 and band.row_bytes == 0 and not band.output_over_input
    assert any(w % 4 for w in (chain.ops[p].param("out_w") * chain.ops[p].param("out_c")
                               for p in band.positions[:-1]))  # a window row not a multiple of 4 bytes
    proj = got["projection"].program
    assert [op.index for op in proj.ops] != sorted(op.index for op in proj.ops)  # the shortcut moved up


def test_a_band_the_hook_and_the_c_say_what_runs(cases):
    """The emitted C calls tg_band_s8 once for the block, and the op hook fires for every model op:
    with no bytes for the ops inside the band (verify --layers reports them as not compared), with
    the output for the band's last op."""
    m = cases["residual"][0]
    build = compile_model(m)
    c = build.sources("tg")["tg_model.c"]
    assert c.count("tg_band_s8(&") == 1
    hooks = re.findall(r"tg_hook\(tg_hook_ctx, (\d+)u, ([^,]+), (\d+)u\)", c)
    assert [int(op) for op, _, _ in hooks] == [op.index for op in build.program.ops]
    band = build.program.bands[0]
    inside = {build.program.ops[p].index for p in band.positions[:-1]}
    assert all((ptr == "NULL" and n == "0") == (int(op) in inside) for op, ptr, n in hooks)


def test_banded_models_are_bit_exact_on_the_host_with_sanitizers(cases, tmp_path):
    H.require(H.have_gcc(), "gcc")
    names = list(cases)
    build = H.build_host([cases[n][0] for n in names], tmp_path)
    for i, n in enumerate(names):
        H.assert_identical(build.run(i, cases[n][1]), cases[n][2], f"{n} host ASan/UBSan")


def test_banded_models_are_bit_exact_on_cortex_m4_and_m55_qemu(cases, tmp_path):
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    names = list(cases)
    models, inputs = [cases[n][0] for n in names], [cases[n][1] for n in names]
    for label, kw in (("qemu-m4", {}), ("qemu-m55", {"cflags": H.M55_CFLAGS, "machine": "mps3-an547",
                                                     "ld": H.M55_LD})):
        outs = H.run_qemu_m4(models, inputs, tmp_path / label, **kw)
        for j, n in enumerate(names):
            H.assert_identical(outs[j], cases[n][2], f"{n} {label}")


def test_banded_models_are_bit_exact_on_rv32_qemu(cases, tmp_path):
    H.require(H.have_rv32(), "riscv64-unknown-elf-gcc / qemu-system-riscv32")
    names = list(cases)
    outs = H.run_qemu_rv32([cases[n][0] for n in names], [cases[n][1] for n in names], tmp_path)
    for j, n in enumerate(names):
        H.assert_identical(outs[j], cases[n][2], f"{n} qemu-rv32")
