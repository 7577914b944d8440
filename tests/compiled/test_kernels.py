"""Compiled runtime kernels as a whole: every op exercised, memory plans, requantization paths, and the
Cortex-M4 DSP, Cortex-M3 portable, Cortex-M55 Helium and RV32 builds on QEMU, bit-exact (0 LSB) with the
TFLM interpreter. The per-op bit-exactness tests are test_ops_<family>.py; all share one build.

For each op, seeded random parameter combinations (shapes, strides, padding,
dilation, channel counts, depth multipliers, fused activations, weight and
input scales, per-tensor and per-channel FULLY_CONNECTED) each give one small
Keras model, converted once to int8 with tinygen.intake.quantize. All models are
emitted as C with their own prefix, compiled together with the kernels on
the host (-std=c99 -Wall -Wextra -Werror, ASan + UBSan) and run on many input
vectors (random, all -128, all 127, alternating extremes); outputs must equal
the tflite_micro interpreter's exactly. A subset also runs the Cortex-M4 DSP
code path on QEMU (mps2-an386).
"""

from __future__ import annotations

import subprocess

import pytest

import support.compiled_harness as H
from support.op_cases import CASES
import tinygen
from tinygen.codegen.compiled import (SUPPORTED_OPS, check_supported, compile_model, emit, lower, memory_table,
                                      plan_memory)
from tinygen.codegen.compiled.quant import quantize_multiplier, round_half_away
from tinygen.tflite.model import parse_model


@pytest.fixture(scope="module", autouse=True)
def _needs_python_deps():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")


@pytest.fixture(scope="module")
def built(op_cases_built):
    """The session's one build of every op case (tests/conftest.py: op_cases_built)."""
    return op_cases_built


def test_every_supported_op_was_exercised(built):
    seen = {name for m in built["models"] for name in m.op_names}
    from support.elementwise_cases import OPS as ELEMENTWISE_OPS  # tests/compiled/test_ops_elementwise.py
    from support.shape_cases import OPS as SHAPE_OPS  # tests/compiled/test_ops_shape.py

    missing = set(SUPPORTED_OPS) - {"DEQUANTIZE"} - seen - set(ELEMENTWISE_OPS) - set(SHAPE_OPS)
    assert not missing, f"no op case produced {sorted(missing)}"
    per_channel_fc = [m for m in built["models"] for op in m.operators
                      if op.opcode == "FULLY_CONNECTED" and m.tensors[op.inputs[1]].per_channel]
    per_tensor_fc = [m for m in built["models"] for op in m.operators
                     if op.opcode == "FULLY_CONNECTED" and not m.tensors[op.inputs[1]].per_channel]
    assert per_channel_fc and per_tensor_fc


def test_memory_plan_invariants(built):
    # the plan in the model's order without bands, and the scheduled one (band.py) the build keeps
    for m, plan in [(m, p) for m in built["models"] for p in (plan_memory(lower(m)), compile_model(m).memory)]:
        rows = memory_table(plan)
        assert {r["tensor"] for r in rows} == {t.index for t in plan.tensors}
        arena = [t for t in plan.tensors if t.location == "arena"]
        for t in arena:
            assert t.offset % 16 == 0 and t.offset + t.size <= plan.peak_bytes
        declared = {(x, y): shift for _, x, y, shift in plan.overlaps}  # y may start shift below x

        def allowed(x, y):
            return (x.index, y.index) in declared and y.offset <= x.offset - declared[(x.index, y.index)]

        for a in arena:
            for b in arena:
                if a.buffer == b.buffer:
                    continue
                live = not (a.last_op < b.first_op or b.last_op < a.first_op)
                overlap = a.offset < b.offset + b.size and b.offset < a.offset + a.size
                assert not (live and overlap) or allowed(a, b) or allowed(b, a), (m.op_names, a, b)
        assert plan.placement(m.inputs[0]).location == "input"


def test_op_table_rows(built):
    from tinygen.codegen.compiled import op_table

    for m in built["models"]:
        rows = op_table(compile_model(m))
        assert sorted(r["op"] for r in rows) == list(range(len(m.operators)))  # in the order they run
        assert all(r["placement"] in ("new", "in-place", "view", "overlaps input", "rows in a band", "band output",
                                      "band output, over its input") for r in rows)


def test_emit_is_deterministic(built):
    m = built["models"][0]
    assert emit(m) == emit(m)
    a = emit(parse_model(bytes(m.raw)))
    assert a == emit(m)
    head = "\n".join(a["tg_model.c"].splitlines()[:6])
    assert m.sha256 in head and f"tinygen {tinygen.__version__}" in head


@pytest.mark.parametrize("path", ["generic", "fast"])
def test_generic_requantization_path_is_bit_exact_too(built, tmp_path, monkeypatch, path):
    """Layers whose accumulator bound or multiplier rules out the fused requantization fall back
    to the fast (SMMULR) one, and where that is ruled out too to the generic
    MultiplyByQuantizedMultiplier path; force each on every FC/conv/depthwise case."""
    from tinygen.codegen.compiled import quant

    monkeypatch.setattr(quant, "fused_requant_constants", lambda *a, **k: None)
    if path == "generic":
        monkeypatch.setattr(quant, "fast_requant_constants", lambda *a, **k: None)
    idx = [i for i, c in enumerate(CASES) if c["kind"] in ("fc", "conv", "dw")]
    b = H.build_host([built["models"][i] for i in idx], tmp_path / path)
    for j, i in enumerate(idx):
        H.assert_identical(b.run(j, built["inputs"][i]), built["refs"][i], f"{path} requant {CASES[i]['id']}")
    text = "".join(p.read_text() for p in (tmp_path / path).rglob("*.c"))
    assert "_rqf[" not in text
    assert ("_rq[" in text) == (path == "fast")


def test_dsp_code_path_under_sanitizers(built, tmp_path):
    """TG_DSP_EMULATE runs the Cortex-M4 DSP code path (SMLAD blocking, depthwise 3x3 tap pairs,
    average pool) on the host with C models of the instructions, under ASan/UBSan: bounds and results."""
    idx = [i for i, c in enumerate(CASES) if c["kind"] in ("fc", "conv", "dw", "avgpool")]
    b = H.build_host([built["models"][i] for i in idx], tmp_path / "dsp", extra_flags=("-DTG_DSP_EMULATE",))
    for j, i in enumerate(idx):
        H.assert_identical(b.run(j, built["inputs"][i]), built["refs"][i], f"dsp-emulated {CASES[i]['id']}")
    # the depthwise 3x3 cases really take the pre-widened fast path
    dw3 = [i for i, c in enumerate(CASES) if c["kind"] == "dw" and c["k"] == [3, 3] and c["dm"] == 1
           and c["shape"][-1] % 4 == 0]
    assert dw3 and all("_w16" in emit(built["models"][i])["tg_model.c"] for i in dw3)


def test_single_rounding_variant_does_not_match(built, tmp_path):
    """Establishes which MultiplyByQuantizedMultiplier the tflite_micro wheel uses: our
    double-rounding kernels match it everywhere (test_op_bit_exact); the single-rounding
    variant (TFLITE_SINGLE_ROUNDING) differs on the same models."""
    idx = [i for i, c in enumerate(CASES) if c["kind"] in ("fc", "conv", "dw")]
    models = [built["models"][i] for i in idx]
    b = H.build_host(models, tmp_path / "single", extra_flags=("-DTG_SINGLE_ROUNDING",))
    differing = 0
    for j, i in enumerate(idx):
        got = b.run(j, built["inputs"][i])
        differing += int((got != built["refs"][i]).any())
    assert differing > 0


def test_quantize_multiplier_matches_tflite_rules():
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.75) == (1610612736, 0)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0 ** -40) == (0, 0)  # flushed like TFLite (shift < -31)
    m, s = quantize_multiplier(0.1)
    assert (m, s) == (1717986918, -3)
    # q rounds up to 2^31: TFLite halves it and bumps the shift.
    assert quantize_multiplier(1.0 - 2.0 ** -40) == (1 << 30, 1)
    assert round_half_away(2.5) == 3 and round_half_away(-2.5) == -3 and round_half_away(2.4999) == 2


def test_float_model_is_refused():
    from pathlib import Path

    import tflite_micro

    from tinygen.common.errors import UnsupportedModel

    path = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    m = parse_model(path.read_bytes())
    with pytest.raises(UnsupportedModel) as exc:
        check_supported(lower(m))
    msg = str(exc.value)
    assert "\n" not in msg and "use --runtime tflm" in msg and "float32" in msg


def test_cortex_m4_compile(built, tmp_path):
    """The kernels (DSP path) and an emitted tg_model.c compile warning-free for Cortex-M4."""
    H.require(H.have_arm_gcc(), "arm-none-eabi-gcc")
    i = next(j for j, c in enumerate(CASES) if c["kind"] == "conv")
    sizes = H.m4_compile_sizes(built["models"][i], tmp_path)
    assert sizes["text"] > 0 and sizes["rodata"] > 0
    nodsp = H.m4_compile_sizes(built["models"][i], tmp_path / "nodsp", extra_flags=("-DTG_NO_DSP",))
    assert nodsp["text"] > 0


def test_cortex_m4_dsp_path_on_qemu(built, tmp_path):
    """The DSP (SMLAD/SMLABB) inner loops, run on an emulated Cortex-M4, are bit-exact too."""
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    idx = [i for i, c in enumerate(CASES) if c["kind"] in ("fc", "conv", "dw", "softmax", "sigmoid", "tanh",
                                                           "avgpool")]
    models = [built["models"][i] for i in idx]
    inputs = [built["inputs"][i][:12] for i in idx]
    outs = H.run_qemu_m4(models, inputs, tmp_path / "qemu")
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:12], f"qemu {CASES[i]['id']}")


def test_cortex_m3_portable_path_on_qemu(built, tmp_path):
    """The portable C loops (no DSP extension, no FPU), built for and run on an emulated Cortex-M3
    (mps2-an385, the qemu-m3 board's machine), are bit-exact too."""
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    idx = [i for i, c in enumerate(CASES) if c["kind"] in ("fc", "conv", "dw", "softmax", "sigmoid", "tanh",
                                                           "avgpool")]
    models = [built["models"][i] for i in idx]
    inputs = [built["inputs"][i][:12] for i in idx]
    outs = H.run_qemu_m4(models, inputs, tmp_path / "qemu-m3", cflags=H.M3_CFLAGS, machine="mps2-an385")
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:12], f"qemu-m3 {CASES[i]['id']}")
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", str(tmp_path / "qemu-m3" / "qemu.elf")],
                         capture_output=True, text=True, check=True).stdout
    assert "smlad" not in asm and "sxtb16" not in asm  # the portable path is what ran


def test_cortex_m55_helium_path_on_qemu(built, tmp_path):
    """The Helium (MVE) CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED paths, built with the qemu-m55
    board's flags and run on QEMU mps3-an547 (which emulates MVE), are bit-exact too: every conv,
    depthwise (multiplier 1 on MVE, others on the DSP path) and FC case, odd channel counts,
    padding, strides, dilation, groups, per-tensor and per-channel."""
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    idx = [i for i, c in enumerate(CASES) if c["kind"] in ("fc", "conv", "dw")]
    assert any(CASES[i]["kind"] == "dw" and CASES[i]["dm"] == 1 for i in idx)
    models = [built["models"][i] for i in idx]
    inputs = [built["inputs"][i][:12] for i in idx]
    outs = H.run_qemu_m4(models, inputs, tmp_path / "qemu-m55", cflags=H.M55_CFLAGS, machine="mps3-an547",
                         ld=H.M55_LD)
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:12], f"qemu-m55 {CASES[i]['id']}")
    asm = subprocess.run(["arm-none-eabi-objdump", "-d", "-marmv8.1-m.main", str(tmp_path / "qemu-m55" / "qemu.elf")],
                         capture_output=True, text=True, check=True).stdout
    # objdump spells VMLADAVA.S8 as its alias vmlava.s8
    for fn, insn in (("tg_mve_outputs_2px", "vmlava.s8"), ("tg_fully_connected_s8_mve", "vmlava.s8"),
                     ("tg_mve_dw8", "vmullb.s16")):
        body = "".join(blk for blk in asm.split("\n\n") if f"<{fn}>:" in blk or f"<{fn}." in blk.split("\n", 1)[0])
        assert insn in body, f"{fn} has no {insn} in the M55 build: the Helium path is not what ran"


UNSUPPORTED_CASE = {"kind": "log_softmax", "seed": 5, "shape": [6], "id": "log_softmax", "rep": (0.0, 1.0),
                    "w_std": 0.5}
H.register("op:log_softmax", "convert_case", UNSUPPORTED_CASE)


def test_unsupported_op_is_named():
    from tinygen.codegen.compiled import unsupported_ops
    from tinygen.common.errors import UnsupportedModel

    m = parse_model(H.result("op:log_softmax"))
    assert unsupported_ops(lower(m)) == ["LOG_SOFTMAX"]
    with pytest.raises(UnsupportedModel) as exc:
        emit(m)
    msg = str(exc.value)
    assert "\n" not in msg and "LOG_SOFTMAX" in msg and msg.endswith("use --runtime tflm")


DEAD_CASE = {"kind": "dead", "seed": 99, "shape": [5], "id": "dead", "rep": (0.0, 1.0), "w_std": 0.5}
H.register("op:dead", "convert_case", DEAD_CASE)


def test_model_tflm_cannot_prepare_is_refused(tmp_path):
    """A dead ReLU collapses the softmax input scale: TFLM's Prepare aborts on the model,
    the compiled runtime refuses it up front with a one-line UnsupportedModel."""
    import subprocess
    import sys

    from tinygen.common.errors import UnsupportedModel

    raw = H.result("op:dead")
    m = parse_model(raw)
    with pytest.raises(UnsupportedModel) as exc:
        check_supported(lower(m))
    assert "SOFTMAX" in str(exc.value) and "use --runtime tflm" in str(exc.value)
    (tmp_path / "m.tflite").write_bytes(raw)
    child = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
             "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=1 << 20)\n")
    p = subprocess.run([sys.executable, "-c", child, str(tmp_path / "m.tflite")], capture_output=True)
    assert p.returncode != 0


def test_sat_rounding_doubling_high_mul_matches_gemmlowp_division_form(tmp_path):
    """tg_sat_rounding_doubling_high_mul computes gemmlowp's SaturatingRoundingDoublingHighMul
    as one shift ((ab + 2^30) >> 31); check it against the literal nudge-and-truncating-division
    form on edge values, exact ties and millions of random pairs."""
    import subprocess

    H.require(H.have_gcc(), "gcc")
    from tinygen.codegen.compiled import kernel_sources

    for name, text in kernel_sources().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "t.c").write_text(r"""
#include <stdint.h>
#include <stdio.h>
#include "tg_kernels.h"
static int32_t literal(int32_t a, int32_t b) {
    int64_t ab, nudge;
    if (a == b && a == INT32_MIN) return INT32_MAX;
    ab = (int64_t)a * b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}
static uint64_t s = 88172645463325252ull;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (uint32_t)s; }
int main(void) {
    static const int32_t edge[] = {INT32_MIN, INT32_MIN + 1, -(1 << 30) - 1, -(1 << 30), -(1 << 30) + 1,
        -3, -2, -1, 0, 1, 2, 3, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, INT32_MAX - 1, INT32_MAX};
    unsigned i, j, n = sizeof edge / sizeof edge[0];
    long bad = 0;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++)
            bad += tg_sat_rounding_doubling_high_mul(edge[i], edge[j]) != literal(edge[i], edge[j]);
    for (i = 0; i < 3000000u; i++) {
        int32_t a = (int32_t)rnd(), b = (int32_t)rnd();
        if (i & 1) b = (int32_t)(rnd() >> (rnd() & 31)) * ((i & 2) ? 1 : -1);
        bad += tg_sat_rounding_doubling_high_mul(a, b) != literal(a, b);
    }
    for (i = 0; i < 200000u; i++) { /* exact ties: a * b == (2k + 1) * 2^30 */
        int32_t a = (int32_t)(rnd() | 1u);
        bad += tg_sat_rounding_doubling_high_mul(a, 1 << 30) != literal(a, 1 << 30);
        bad += tg_sat_rounding_doubling_high_mul(a, -(1 << 30)) != literal(a, -(1 << 30));
    }
    printf("%ld\n", bad);
    return bad != 0;
}
""")
    subprocess.run(["gcc", *H.HOST_CFLAGS, "-O2", "t.c", *H.kernel_c_files(), "-o", "t"], cwd=tmp_path, check=True)
    p = subprocess.run([str(tmp_path / "t")], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "0", p.stdout + p.stderr


def test_kernel_abi_version_is_checked_when_the_model_compiles(tmp_path):
    """tg_kernels.h carries the Python KERNELS_ABI_VERSION; emitted model code compiled against
    kernels of another version, or of none, stops at its #error instead of building."""
    import re
    import subprocess

    H.require(H.have_gcc(), "gcc")
    from tinygen.codegen.compiled import KERNELS_ABI_VERSION, kernel_sources

    kernels = kernel_sources()
    header = kernels["tg_kernels.h"]
    define = f"#define TG_KERNELS_ABI_VERSION {KERNELS_ABI_VERSION}\n"
    assert re.findall(r"^#define TG_KERNELS_ABI_VERSION (\d+)$", header, re.M) == [str(KERNELS_ABI_VERSION)]
    m = parse_model(H.result("op:" + CASES[0]["id"]))
    for name, text in {**emit(m), **kernels}.items():
        (tmp_path / name).write_text(text)

    def compile_model(kernels_header: str) -> subprocess.CompletedProcess:
        (tmp_path / "tg_kernels.h").write_text(kernels_header)
        return subprocess.run(["gcc", *H.HOST_CFLAGS, "-c", "tg_model.c", "-o", "tg_model.o"], cwd=tmp_path,
                              capture_output=True, text=True)

    ok = compile_model(header)
    assert ok.returncode == 0, ok.stderr
    other = define.replace(str(KERNELS_ABI_VERSION), str(KERNELS_ABI_VERSION + 1))
    for changed in (header.replace(define, other), header.replace(define, "")):
        bad = compile_model(changed)
        assert bad.returncode != 0
        assert "#error" in bad.stderr and "regenerate" in bad.stderr, bad.stderr


def test_rv32_portable_path_on_qemu(built, tmp_path):
    """The portable C kernels (no DSP path) on an emulated RV32IMC core (qemu-rv32's HAL and QEMU
    virt) are bit-exact too, for every op family."""
    H.require(H.have_rv32(), "riscv64-unknown-elf-gcc + picolibc / qemu-system-riscv32")
    idx = list(range(0, len(CASES), 2))  # every other case: every op family, half the build
    assert {CASES[i]["kind"] for i in idx} == {c["kind"] for c in CASES}
    models = [built["models"][i] for i in idx]
    inputs = [built["inputs"][i][:8] for i in idx]
    instructions: list[float] = []
    outs = H.run_qemu_rv32(models, inputs, tmp_path / "rv32", instructions=instructions)
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:8], f"qemu-rv32 {CASES[i]['id']}")
    assert len(instructions) == len(models) and min(instructions) > 0


def test_add_cases_take_the_fused_requantization(built):
    """Every ADD case (same shapes and broadcast) runs the fused path (tg_add_one_fused) whose
    bit-exactness test_op_bit_exact checks against tflite_micro; without this the generic path
    could silently be the one tested."""
    adds = [op for m in built["models"] for op in lower(m).ops if op.opcode == "ADD"]
    assert adds and all(op.param("rq_fused") is not None for op in adds)
    assert {op.param("bcast")[0] == 0 for op in adds} == {True, False}


def test_every_case_belongs_to_an_op_family():
    """Each op case is run by exactly one test_ops_<family>.py (support.op_cases.FAMILIES)."""
    from support.op_cases import FAMILIES

    kinds = [k for fam in FAMILIES.values() for k in fam]
    assert len(kinds) == len(set(kinds))
    assert {c["kind"] for c in CASES} <= set(kinds)
