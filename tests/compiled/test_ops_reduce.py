"""Compiled runtime, reduce family: MEAN over spatial, width, channel and mixed axes, with and without keepdims.
Each seeded case (tests/support/op_cases.py) is bit-exact (0 LSB) with the tflite_micro interpreter
on its input vectors, run in the session's one ASan/UBSan host build."""

from __future__ import annotations

import pytest

import support.compiled_harness as H
from support.op_cases import CASES, family


@pytest.mark.parametrize("i", family("reduce"), ids=lambda i: CASES[i]["id"])
def test_op_bit_exact(op_cases_built, i):
    H.assert_case_bit_exact(op_cases_built, CASES, i)
