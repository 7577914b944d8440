"""tinygen's pytest plugin as a user meets it: examples/test_my_model.py, copied into a fresh
directory, run by pytest (pytester) against the emulated Cortex-M4 (real PlatformIO build, real
QEMU, real pty), next to tests made to fail whose messages must say where and by how much."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from conftest import REPO
from support.plugin_kit import PLUGIN, emulated_project, plugin_args

pytest_plugins = ["pytester"]

MADE_TO_FAIL = '''
import numpy as np
from tinygen.testing import assert_bit_exact, assert_latency


def test_reference_off_by_one_in_vector_2(tinygen_board, tinygen_reference):
    batch = tinygen_board.infer_batch(tinygen_reference.inputs[:4])
    wrong = tinygen_reference.outputs[:4].astype(np.int16)
    wrong[2] += np.where(wrong[2] == 127, -1, 1)
    assert_bit_exact(batch, wrong)


def test_latency_limit_no_model_meets(tinygen_board, tinygen_reference):
    assert_latency(tinygen_board.infer_batch(tinygen_reference.inputs[:3]), max_instructions=10)
'''


@pytest.fixture(scope="module")
def project(session_dir):
    return emulated_project(session_dir)


def test_users_example_passes_on_qemu_and_failures_say_where(pytester, project):
    from tinygen.verification.verify import load_project

    pytester.makepyfile(test_my_model=(REPO / "examples" / "test_my_model.py").read_text())
    pytester.makepyfile(test_made_to_fail=MADE_TO_FAIL)
    res = pytester.runpytest(*plugin_args(), "--tinygen-project", str(project), "-p", "no:cacheprovider", "-rs")
    # the sine model is a regression: the example's accuracy test skips, saying why
    res.assert_outcomes(passed=6, skipped=1, failed=2)
    res.stdout.fnmatch_lines(["tinygen: project *sine-m4-from-tflite, port default",
                              "*the project's vectors have no labels*"])
    # The expected numbers come from the reference vectors tflite_micro wrote at build time.
    _, _, vectors = load_project(project)
    ref = int(vectors["outputs"][2].ravel()[0])
    wrong = ref - 1 if ref == 127 else ref + 1
    res.stdout.fnmatch_lines([
        "*AssertionError: board outputs on qemu-m4 (/dev/pts/*) differ from the reference (tflite_micro) by up "
        "to 1 LSB (tolerance 0) in 1 of 4 values, 1 of 4 vectors",
        f"*first difference: vector 2, element (0, 0): board {ref}, reference {wrong}",
        f"*its input (int8): [[]{int(vectors['inputs'][2].ravel()[0])}]",  # [[] is a literal [ to fnmatch
        "*|board - reference| over the differing values: 1 LSB x1",
    ])
    res.stdout.fnmatch_lines([
        "*AssertionError: latency on qemu-m4 (/dev/pts/*) (emulated: QEMU counts instructions, not time): max "
        "* instructions per inference > limit 10 instructions (min *, median *, max * over 3 inferences)"])


def test_without_a_project_the_fixture_says_which_option(pytester):
    pytester.makepyfile(test_x="def test_x(tinygen_board):\n    pass\n")
    res = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*tinygen: which project? pass --tinygen-project DIR*"])
    assert "Traceback" not in res.stdout.str()


def test_a_hostile_port_is_refused_before_anything_opens(pytester, project):
    pytester.makepyfile(test_x="def test_x(tinygen_board):\n    pass\n")
    res = pytester.runpytest(*plugin_args(), "--tinygen-project", str(project), "--tinygen-port",
                             "hwgrep://.*", "-p", "no:cacheprovider")
    res.assert_outcomes(errors=1)
    res.stdout.fnmatch_lines(["*tinygen: serial port URL hwgrep://.* is not rfc2217://HOST:PORT*"])


def test_the_entry_point_and_package_are_declared():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"]["tinygen"] == PLUGIN
    assert "tinygen.testing" in meta["tool"]["setuptools"]["packages"]


def test_accuracy_message_names_the_misclassified_vectors():
    from tinygen.testing import assert_accuracy

    outputs = np.array([[9, 1, 0], [0, 9, 1], [0, 1, 9], [9, 0, 1]], dtype=np.int8)
    assert_accuracy(outputs, [0, 1, 2, 0], at_least=1.0)
    with pytest.raises(AssertionError) as err:
        assert_accuracy(outputs, [0, 1, 1, 2], at_least=0.75)
    assert str(err.value) == ("accuracy 50.0 % (2 of 4) is below 75.0 %\nmisclassified: vector 2: label 1, "
                              "board says 2 (score 9 vs 1 for the label); vector 3: label 2, board says 0 "
                              "(score 9 vs 1 for the label)")


def test_bit_exact_within_tolerance_and_shape_mismatch():
    from tinygen.testing import assert_bit_exact

    assert_bit_exact(np.array([[3, 4]], np.int8), np.array([[2, 5]], np.int8), tolerance=1)
    with pytest.raises(AssertionError, match=r"shape \(1, 2\), the reference \(3,\)"):
        assert_bit_exact(np.array([[3, 4]], np.int8), np.array([1, 2, 3], np.int8))
