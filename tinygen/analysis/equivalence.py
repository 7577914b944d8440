"""Does a rewritten model compute what the original does?  Both run on the ``tflite_micro``
interpreter (:mod:`.reference`) on the build's inputs plus inputs that saturate; any vector that
differs refuses the build.  Used for :mod:`tinygen.tflite.fc_rewrite`'s per-channel
FULLY_CONNECTED -> CONV_2D 1x1 rewrite on TFLM boards.
"""

from __future__ import annotations

import numpy as np

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError
from tinygen.tflite.fc_rewrite import library_name


def probe_inputs(shape: tuple[int, ...], seed: int = 0, n_random: int = 64) -> np.ndarray:
    """Inputs that exercise saturation as well as the middle: all -128, all 127, alternating
    extremes, then uniform random int8."""
    size = int(np.prod(shape)) if shape else 1
    alt = np.where(np.arange(size) % 2 == 0, -128, 127)
    fixed = np.stack([np.full(size, -128), np.full(size, 127), alt, -alt - 1, np.zeros(size)])
    rnd = np.random.default_rng(seed).integers(-128, 128, size=(n_random, size))
    return np.concatenate([fixed, rnd]).astype(np.int8).reshape((-1,) + tuple(shape))


def check_equivalent(original: bytes, rewritten: bytes, inputs: np.ndarray, outputs: np.ndarray,
                     name: str, board: Board, arena_bytes: int | None = None) -> int:
    """Refuse the build unless ``rewritten`` gives the original's outputs bit for bit on the
    tflite_micro interpreter, on ``inputs`` (whose original outputs are ``outputs``) plus
    :func:`probe_inputs`.  Returns the number of vectors compared."""
    from tinygen.analysis.reference import run_reference

    probes = probe_inputs(tuple(inputs.shape[1:]))
    want = np.concatenate([np.asarray(outputs, dtype=np.int8),
                           run_reference(original, probes, name, arena_bytes=arena_bytes).astype(np.int8)])
    got = run_reference(rewritten, np.concatenate([inputs.astype(np.int8), probes]), name,
                        arena_bytes=arena_bytes).astype(np.int8)
    if got.shape != want.shape:
        bad = len(want)
    else:
        bad = int(np.count_nonzero((got != want).reshape(len(want), -1).any(axis=1)))
    if bad:
        raise TinygenError(
            f"{name}: the CONV_2D rewrite of its per-channel FULLY_CONNECTED layers differs from the original "
            f"on the tflite_micro interpreter in {bad} of {len(want)} vectors, so it is not safe on "
            f"{board.id}'s TFLM library ({library_name(board)}); use --runtime compiled and report this")
    return len(want)
