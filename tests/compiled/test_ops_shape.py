"""Compiled runtime, shape and spatial ops: TRANSPOSE, STRIDED_SLICE, SPLIT, SPLIT_V, UNPACK,
PACK, RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR (all three coordinate modes) and
TRANSPOSE_CONV, each bit-exact (0 LSB) with the tflite_micro interpreter.

As in tests/support/op_cases.py: seeded random Keras models per op, converted with
tinygen.intake.quantize in the harness's worker processes, emitted as C, compiled together
on the host (-Werror, ASan + UBSan) and run on random and extreme input vectors; a subset
runs on QEMU (Cortex-M4).
"""

from __future__ import annotations

import numpy as np
import pytest

import support.compiled_harness as H
from support.op_cases import CASES as KERNEL_CASES, family
from support import shape_cases
from tinygen.codegen.compiled import lower
from support.shape_cases import OPS as SHAPE_OPS

SEED = 20261202
N_INPUTS = 40


@pytest.fixture(scope="module", autouse=True)
def _needs_python_deps():
    H.require(H.have_python_deps(), "tensorflow / tflite_micro (Python packages)")


def _cases() -> list[dict]:
    rng = np.random.default_rng(SEED)
    cases: list[dict] = []

    def add(kind, **kw):
        kw.update(kind=kind, seed=int(rng.integers(1, 1 << 30)))
        kw["id"] = f"{kind}{sum(c['kind'] == kind for c in cases)}"
        cases.append(kw)

    def dim(lo=1, hi=6):
        return int(rng.integers(lo, hi))

    add("transpose", shape=[dim(2), dim(2), dim(2)], perm=[2, 3, 1])
    add("transpose", shape=[dim(2), dim(2)], perm=[2, 1])
    add("slice", shape=[7, 5, 3], slices=[[1, 6, 2], [None, None, -1]])
    add("slice", shape=[8, 4, 3], slices=[[-2, 0, -3], 1, [None, 2]])
    add("split", shape=[dim(1, 4), dim(1, 3), 6], parts=3, axis=-1)
    add("split", shape=[5, 6], parts=[1, 3, 2], axis=-1)
    add("unstack", shape=[3, 4, 2], axis=1, stack_axis=2)
    add("nearest", shape=[dim(1, 6), dim(1, 6), dim(1, 4)], size=[dim(1, 9), dim(1, 9)])
    add("nearest", shape=[7, 5, 2], size=[3, 2])
    add("bilinear", shape=[3, 4, 2], size=[6, 12], factor=[2, 3])
    add("bilinear", shape=[dim(1, 6), dim(1, 6), dim(1, 4)], size=[dim(1, 9), dim(1, 9)])
    for i in range(2):
        add("tconv", shape=[dim(1, 5), dim(1, 5), dim(1, 5)], filters=dim(1, 6), k=[dim(1, 5), dim(1, 5)],
            strides=[dim(1, 4), dim(1, 4)], padding=("same", "valid")[i], bias=i == 0,
            w_std=float(10 ** rng.uniform(-1.5, 0.3)))
    add("tconv", shape=[3, 4, 2], filters=3, k=[3, 3], strides=[2, 2], padding="same", bias=True, act="relu")
    return cases


CASES = _cases()
QEMU_KINDS = ("transpose", "slice", "bilinear", "tconv", "unstack", "nearest")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    futures = {c["id"]: H.pool().submit(shape_cases.convert, c) for c in CASES}

    def model_bytes(c):
        raw = futures[c["id"]].result()
        if isinstance(raw, Exception):
            raise raw
        return raw

    return H.build_cases(CASES, model_bytes, SEED + 1, N_INPUTS, tmp_path_factory.mktemp("shape_ops_host"))


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c["id"] for c in CASES])
def test_shape_op_bit_exact(built, i):
    H.assert_case_bit_exact(built, CASES, i)


def test_every_shape_op_and_resize_mode_was_exercised(built):
    seen = {name for m in built["models"] for name in m.op_names}
    assert set(SHAPE_OPS) <= seen, f"no case produced {sorted(set(SHAPE_OPS) - seen)}"
    modes = {(op.opcode, bool(op.options.get("alignCorners")), bool(op.options.get("halfPixelCenters")))
             for m in built["models"] for op in m.operators if op.opcode.startswith("RESIZE")}
    for name in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        assert {(name, True, False), (name, False, False), (name, False, True)} <= modes
    for m in built["models"]:
        assert lower(m).supported, (m.name, lower(m).refusals)


def test_shape_ops_on_qemu_m4(built, tmp_path):
    """The same kernels, built for Cortex-M4 and run on QEMU, give TFLM's bytes too."""
    H.require(H.have_qemu(), "arm-none-eabi-gcc / qemu-system-arm")
    idx = [next(i for i, c in enumerate(CASES) if c["kind"] == k) for k in QEMU_KINDS]
    outs = H.run_qemu_m4([built["models"][i] for i in idx], [built["inputs"][i][:8] for i in idx], tmp_path)
    for j, i in enumerate(idx):
        H.assert_identical(outs[j], built["refs"][i][:8], f"qemu {CASES[i]['id']}")


@pytest.mark.parametrize("i", family("shape"), ids=lambda i: KERNEL_CASES[i]["id"])
def test_kernel_case_bit_exact(op_cases_built, i):
    """The shape cases of the shared op-case build (tests/support/op_cases.py)."""
    H.assert_case_bit_exact(op_cases_built, KERNEL_CASES, i)
