"""Compiled runtime, elementwise / activation / reduction ops: bit-exact (0 LSB) with the
TFLM interpreter.

LEAKY_RELU, PRELU, HARD_SWISH, ABS, SUB, SQUARED_DIFFERENCE, MINIMUM, MAXIMUM, REDUCE_MAX
(GlobalMaxPooling, keepdims or not), REDUCE_MIN and SUM: seeded small Keras models
(tests/support/elementwise_cases.py) over a range of input scales, broadcast shapes (over
height and width, width, channels, a constant per-channel operand, either operand
order) and fused ReLU, converted with tinygen.intake.quantize, emitted with one prefix
each and compiled together into one host program (-Werror, ASan + UBSan), run on
random and extreme inputs and compared with tflite_micro exactly. One model per op
also runs on QEMU (Cortex-M4).
"""

from __future__ import annotations

import numpy as np
import pytest

import support.compiled_harness as H
from support.op_cases import CASES as KERNEL_CASES, family
from support import elementwise_cases
from tinygen.tflite.model import parse_model


@pytest.fixture(scope="module", autouse=True)
def _needs_python_deps():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")


SEED = 20261202
N_INPUTS = 50

# The op each kind must produce (a converter change that lowers it otherwise fails the test).
OPCODE = {"leaky": "LEAKY_RELU", "prelu": "PRELU", "hswish": "HARD_SWISH", "abs": "ABS", "sub": "SUB",
          "sqdiff": "SQUARED_DIFFERENCE", "minimum": "MINIMUM", "maximum": "MAXIMUM", "gmp": "REDUCE_MAX",
          "rmax": "REDUCE_MAX", "rmin": "REDUCE_MIN", "rsum": "SUM"}


def _cases() -> list[dict]:
    rng = np.random.default_rng(SEED)
    cases: list[dict] = []

    def add(kind, **kw):
        kw["kind"] = kind
        kw["seed"] = int(rng.integers(1, 1 << 30))
        kw.setdefault("rep", (float(rng.uniform(-1, 1)), float(10 ** rng.uniform(-1, 1))))
        kw["id"] = f"{kind}{sum(c['kind'] == kind for c in cases)}"
        cases.append(kw)

    def hwc(lo=1, hi=6):
        return [int(rng.integers(lo, hi)), int(rng.integers(lo, hi)), int(rng.integers(1, 6))]

    for alpha in (0.01, 1.7):
        add("leaky", shape=hwc(), alpha=alpha)
    add("leaky", shape=[12], dense=9, alpha=0.2)
    add("prelu", shape=hwc(2), alpha_range=(-0.5, 1.5))
    add("prelu", shape=hwc(2), alpha_range=(0.0, 0.4), shared=[1, 2])
    add("prelu", shape=[10], dense=7, alpha_range=(-2.0, 2.0))
    for rep in ((0.0, 1.0), (0.5, 0.05), (-1.0, 0.2), (0.0, 20.0)):
        add("hswish", shape=[4, 4, 4], rep=rep)  # 64 values x 50 vectors: nearly every int8 code
    add("abs", shape=hwc(), rep=(0.3, 1.0))
    add("abs", shape=[9], rep=(-2.0, 3.0))
    # Binary ops: same shapes, broadcasting over H and W / W / C, a constant per-channel
    # operand, both operand orders, a fused ReLU on SUB.
    for i, mode in enumerate(("same", "mean_hw", "mean_c", "const")):
        add("sub", shape=hwc()[:2] + [3], mode=mode, order=i % 2, conv_a=bool(i % 3 == 0), relu=i == 1)
    for i, mode in enumerate(("mean_w", "same", "const", "mean_hw")):
        add("sqdiff", shape=hwc(), mode=mode, order=i % 2, conv_a=bool(i == 1))
    for kind in ("minimum", "maximum"):
        for i, mode in enumerate(("same", "mean_c", "const")):
            add(kind, shape=hwc(), mode=mode, order=(i + (kind == "maximum")) % 2, conv_a=True)
    add("gmp", shape=hwc(), keep=False)
    add("gmp", shape=[7, 4], keep=True)
    add("rmax", shape=[3, 4, 5], axes=[1, 3], keep=True)
    add("rmin", shape=hwc(), axes=[-1], keep=False)
    add("rsum", shape=hwc(), axes=[-1], keep=False)
    add("rsum", shape=[3, 4, 5], axes=[1, 2], keep=True, rep=(1.0, 0.3))
    return cases


CASES = _cases()
# x - mean over one channel is identically zero: the output scale collapses, and TFLM's SUB
# Prepare aborts on the rescale factor (CHECK in QuantizeMultiplierSmallerThanOneExp).
DEGENERATE_SUB = {"kind": "sub", "seed": 11, "shape": [3, 4, 1], "mode": "mean_c", "order": 0, "rep": (0.0, 1.0),
                  "id": "sub_degenerate"}
_FUTURES: dict = {}


def _converted(case: dict) -> bytes:
    """Submit every conversion to the harness's worker pool at the first call, then wait for one."""
    if not _FUTURES:
        for c in CASES + [DEGENERATE_SUB]:
            _FUTURES[c["id"]] = H.pool().submit(elementwise_cases.convert_safe, c)
    out = _FUTURES[case["id"]].result()
    if isinstance(out, Exception):
        raise out
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return H.build_cases(CASES, _converted, SEED + 1, N_INPUTS, tmp_path_factory.mktemp("ew_host"))


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_op_bit_exact(built, i):
    assert OPCODE[CASES[i]["kind"]] in built["models"][i].op_names, (CASES[i], built["models"][i].op_names)
    H.assert_case_bit_exact(built, CASES, i)


def test_every_elementwise_op_was_exercised(built):
    from support.elementwise_cases import OPS as ELEMENTWISE_OPS

    seen = {name for m in built["models"] for name in m.op_names}
    assert set(ELEMENTWISE_OPS) <= seen, sorted(set(ELEMENTWISE_OPS) - seen)


def test_broadcast_and_constant_operands_were_exercised(built):
    """The binary cases really broadcast (operands of different shapes) and take constant operands."""
    for kind in ("SUB", "SQUARED_DIFFERENCE", "MINIMUM", "MAXIMUM"):
        ops = [(m, op) for m in built["models"] for op in m.operators if op.opcode == kind]
        shapes = [(m.tensors[op.inputs[0]].shape, m.tensors[op.inputs[1]].shape) for m, op in ops]
        assert any(a != b for a, b in shapes), (kind, shapes)
        assert any(m.tensors[i].is_constant for m, op in ops for i in op.inputs), kind
    fused = [op for m in built["models"] for op in m.operators
             if op.opcode == "SUB" and op.options.get("fusedActivationFunction", "NONE") != "NONE"]
    assert fused


def test_cortex_m4_on_qemu(built, tmp_path):
    """One model per op on an emulated Cortex-M4, bit-exact too."""
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    first: dict[str, int] = {}
    for i, c in enumerate(CASES):
        first.setdefault(c["kind"], i)
    idx = sorted(first.values())
    outs = H.run_qemu_m4([built["models"][i] for i in idx], [built["inputs"][i][:10] for i in idx], tmp_path / "q")
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:10], f"qemu {CASES[i]['id']}")


def test_sub_tflm_aborts_on_is_refused(tmp_path):
    """The compiled runtime refuses (one line, naming SUB) the parameters TFLM's Prepare aborts on."""
    import subprocess
    import sys

    from tinygen.codegen.compiled import check_supported, lower
    from tinygen.common.errors import UnsupportedModel

    raw = _converted(DEGENERATE_SUB)
    with pytest.raises(UnsupportedModel) as exc:
        check_supported(lower(parse_model(raw)))
    msg = str(exc.value)
    assert "\n" not in msg and "SUB" in msg and "rescale factor" in msg
    (tmp_path / "m.tflite").write_bytes(raw)
    child = ("import sys\nfrom tflite_micro.python.tflite_micro import runtime\n"
             "runtime.Interpreter.from_bytes(open(sys.argv[1], 'rb').read(), arena_size=1 << 20)\n")
    p = subprocess.run([sys.executable, "-c", child, str(tmp_path / "m.tflite")], capture_output=True)
    assert p.returncode != 0


def _first(built, opcode: str):
    return next((m, op) for m in built["models"] for op in m.operators if op.opcode == opcode)


def _with_tensor(m, index: int, **changes):
    from dataclasses import replace

    tensors = list(m.tensors)
    tensors[index] = replace(tensors[index], **changes)
    return replace(m, tensors=tuple(tensors))


def test_parameters_outside_the_kernels_are_refused(built):
    """Each refusal is an OpRefused with the reason, never a kernel computing something else."""
    from dataclasses import replace

    from tinygen.codegen.compiled.lowering import OpRefused, lower_op

    def refused(m, op, words):
        with pytest.raises(OpRefused) as exc:
            lower_op(m, op)
        assert words in exc.value.reason, exc.value.reason

    m, op = _first(built, "LEAKY_RELU")
    refused(m, replace(op, options={**op.options, "alpha": -0.25}), "negative alpha")
    m, op = _first(built, "REDUCE_MAX")
    y = m.tensors[op.outputs[0]]
    refused(_with_tensor(m, y.index, scale=(y.scale[0] * 2,)), op, "quantization differ")
    m, op = _first(built, "HARD_SWISH")
    x = m.tensors[op.inputs[0]]
    refused(_with_tensor(m, op.outputs[0], scale=(x.scale[0] / 1000,)), op, "output scale")
    m, op = _first(built, "SUB")
    refused(_with_tensor(m, op.outputs[0], scale=(1e-9,)), op, "rescale factor")
    m, op = _first(built, "PRELU")
    refused(_with_tensor(m, op.inputs[1], dtype="int16"), op, "int8 only")


@pytest.mark.parametrize("i", family("elementwise"), ids=lambda i: KERNEL_CASES[i]["id"])
def test_kernel_case_bit_exact(op_cases_built, i):
    """The elementwise cases of the shared op-case build (tests/support/op_cases.py)."""
    H.assert_case_bit_exact(op_cases_built, KERNEL_CASES, i)
