"""Serial-port validation tests for a tinygen project: copy this file into your repository's tests.

    tinygen build --board qemu-m4 --model my_model.tflite --out fw     # or your board
    pytest test_my_model.py --tinygen-project fw                         # emulated: QEMU boots fw
    pytest test_my_model.py --tinygen-project fw --tinygen-port /dev/ttyACM0   # a flashed board

tinygen's pytest plugin gives the fixtures: ``tinygen_board`` (the connected board, one per
session), ``tinygen_reference`` (the tflite_micro reference of the project's model) and
``tinygen_project``.  Set your own limits below.
"""

import numpy as np
import pytest

from tinygen.testing import assert_accuracy, assert_bit_exact, assert_latency

MAX_INSTRUCTIONS = 200_000  # emulated boards count instructions per inference
MAX_MICROSECONDS = 5_000  # real boards time each inference
MIN_ACCURACY = 0.9  # classifiers: top-1 on the project's labelled vectors


def test_the_board_runs_this_project(tinygen_board):
    assert tinygen_board.info.init_ok, tinygen_board.info.init_status_name


def test_reference_vectors_are_bit_exact(tinygen_board, tinygen_reference):
    batch = tinygen_board.infer_batch(tinygen_reference.inputs)
    assert_bit_exact(batch, tinygen_reference.outputs)


def test_random_inputs_are_bit_exact(tinygen_board, tinygen_reference):
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(8, *tinygen_board.input_shape), dtype=np.int8)
    assert_bit_exact(tinygen_board.infer_batch(x), tinygen_reference(x))


def test_float_input_is_quantized_like_tflite(tinygen_board, tinygen_reference):
    x = np.full(tinygen_board.input_shape, 0.5, dtype=np.float32)
    result = tinygen_board.infer(x)
    assert_bit_exact(result, tinygen_reference(x[None]))
    assert np.all(np.isfinite(result.value))


def test_accuracy(tinygen_board, tinygen_reference):
    if tinygen_reference.labels is None:
        pytest.skip("the project's vectors have no labels (a regression model)")
    batch = tinygen_board.infer_batch(tinygen_reference.inputs)
    assert_accuracy(batch, tinygen_reference.labels, at_least=MIN_ACCURACY)


def test_latency(tinygen_board, tinygen_reference):
    batch = tinygen_board.infer_batch(tinygen_reference.inputs[:8])
    assert_latency(batch, max_instructions=MAX_INSTRUCTIONS, max_us=MAX_MICROSECONDS)


def test_firmware_counts_every_request(tinygen_board):
    tinygen_board.reset_stats()
    tinygen_board.infer(np.zeros(tinygen_board.input_shape, dtype=np.int8))
    stats = tinygen_board.stats()
    assert stats["infers"] == 1 and stats["invoke_failures"] == 0, stats
