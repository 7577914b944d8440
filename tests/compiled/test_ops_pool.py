"""Compiled runtime, pool family: AVERAGE_POOL_2D and MAX_POOL_2D (windows, strides, padding; the DSP path's global window and
its >256-tap per-channel walk).
Each seeded case (tests/support/op_cases.py) is bit-exact (0 LSB) with the tflite_micro interpreter
on its input vectors, run in the session's one ASan/UBSan host build."""

from __future__ import annotations

import pytest

import support.compiled_harness as H
from support.op_cases import CASES, family


@pytest.mark.parametrize("i", family("pool"), ids=lambda i: CASES[i]["id"])
def test_op_bit_exact(op_cases_built, i):
    H.assert_case_bit_exact(op_cases_built, CASES, i)
