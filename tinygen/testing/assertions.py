"""Assertions for serial-port validation tests whose failure messages say what differs, where and by how
much, so that a red CI run needs no debugger: the first differing vector and element with both values,
how many differ, a histogram of the error; the misclassified vectors; the latency statistics.

Each takes what :class:`~tinygen.testing.board.TinygenBoard` returns (a Batch or an Inference) or plain
arrays, and raises AssertionError.
"""

from __future__ import annotations

import numpy as np

_SHOW = 5  # how many differing vectors a message lists


def _board_outputs(actual):
    """(int outputs N x ..., inputs or None, 'on BOARD (PORT)' or '') of a Batch, an Inference or an array."""
    if hasattr(actual, "outputs"):
        return np.asarray(actual.outputs), np.asarray(actual.inputs), _where(actual)
    if hasattr(actual, "output"):
        return np.asarray(actual.output)[None], np.asarray(actual.input)[None], _where(actual)
    a = np.asarray(actual)
    return (a if a.ndim > 1 else a[None]), None, ""


def _where(result) -> str:
    board = getattr(result, "board", None)
    return f" on {board.name} ({board.port})" if board is not None else ""


def _short(a: np.ndarray) -> str:
    return np.array2string(np.asarray(a).ravel(), threshold=8, edgeitems=3, separator=", ")


def assert_bit_exact(actual, expected, *, tolerance: int = 0) -> None:
    """Every board output equals the reference (within ``tolerance`` LSB)."""
    __tracebackhide__ = True
    got, inputs, where = _board_outputs(actual)
    want = np.asarray(expected)
    if want.size != got.size:
        raise AssertionError(f"board outputs{where} have shape {got.shape}, the reference {want.shape}: "
                             "compare outputs of the same inputs")
    want = want.reshape(got.shape)
    diff = np.abs(got.astype(np.int32) - want.astype(np.int32))
    bad = diff > tolerance
    if not bad.any():
        return
    n = len(got)
    rows = np.flatnonzero(bad.reshape(n, -1).any(axis=1))
    first = int(rows[0])
    col = int(np.flatnonzero(bad[first].ravel())[0])
    idx = np.unravel_index(col, got.shape[1:]) if got.ndim > 1 else ()
    values, counts = np.unique(diff[bad], return_counts=True)
    hist = ", ".join(f"{int(v)} LSB x{int(c)}" for v, c in zip(values, counts))
    lines = [f"board outputs{where} differ from the reference (tflite_micro) by up to {int(diff.max())} LSB "
             f"(tolerance {tolerance}) in {int(bad.sum())} of {bad.size} values, {len(rows)} of {n} vectors",
             f"first difference: vector {first}, element {tuple(int(i) for i in idx)}: board "
             f"{int(got[first].ravel()[col])}, reference {int(want[first].ravel()[col])}"]
    if inputs is not None:
        lines.append(f"  its input (int8): {_short(inputs[first])}")
    lines.append(f"|board - reference| over the differing values: {hist}")
    if len(rows) > 1:
        lines.append(f"differing vectors: {', '.join(str(int(r)) for r in rows[:_SHOW * 4])}"
                     + (" ..." if len(rows) > _SHOW * 4 else ""))
    raise AssertionError("\n".join(lines))


def assert_accuracy(actual, labels, *, at_least: float) -> None:
    """A classifier's top-1 accuracy (argmax of each output against ``labels``) is at least ``at_least``
    (a fraction, 0.9 = 90 %)."""
    __tracebackhide__ = True
    if not 0 < at_least <= 1:
        raise ValueError(f"at_least={at_least} is a fraction in (0, 1]")
    got, _, where = _board_outputs(actual)
    if labels is None:
        raise AssertionError("no labels to measure accuracy against (the project's vectors carry none: a "
                             "regression model, or a user model built without y in --data)")
    labels = np.asarray(labels).ravel()
    flat = got.reshape(len(got), -1)
    if flat.shape[1] < 2:
        raise AssertionError(f"accuracy needs a classifier; the board's output{where} has one value per "
                             "inference (compare values with assert_bit_exact, tolerance in LSB)")
    if len(labels) != len(flat):
        raise AssertionError(f"{len(flat)} board outputs but {len(labels)} labels")
    pred = flat.argmax(axis=1)
    right = pred == labels
    acc = float(right.mean())
    if acc >= at_least:
        return
    wrong = np.flatnonzero(~right)
    shown = "; ".join(f"vector {int(i)}: label {int(labels[i])}, board says {int(pred[i])} "
                      f"(score {int(flat[i, pred[i]])} vs {int(flat[i, labels[i]])} for the label)"
                      for i in wrong[:_SHOW])
    more = f" (and {len(wrong) - _SHOW} more)" if len(wrong) > _SHOW else ""
    raise AssertionError(f"accuracy{where} {100 * acc:.1f} % ({int(right.sum())} of {len(right)}) is below "
                         f"{100 * at_least:.1f} %\nmisclassified: {shown}{more}")


_KINDS = (("max_instructions", "instructions_per_inference", "instructions"),
          ("max_cycles", "cycles_per_inference", "cycles"),
          ("max_us", "latency_us", "µs"))


def assert_latency(actual, *, max_instructions: float | None = None, max_cycles: float | None = None,
                   max_us: float | None = None, statistic: str = "max") -> None:
    """The ``statistic`` ("max", "median" or "min") of the inference time is within each given limit the
    board measures: instructions on an emulated board (QEMU -icount), cycles on a board with a cycle
    counter, µs on a real board.  Limits the board cannot measure are skipped; at least one must apply."""
    __tracebackhide__ = True
    if statistic not in ("min", "median", "max"):
        raise ValueError(f"statistic={statistic!r}; choose min, median or max")
    if hasattr(actual, "latency"):
        lat, n = actual.latency(), len(actual.ticks)
    else:
        lat, n = actual.board.latency([actual.ticks]), 1
    where = _where(actual)
    limits = {"max_instructions": max_instructions, "max_cycles": max_cycles, "max_us": max_us}
    applied = [(arg, key, unit) for arg, key, unit in _KINDS if limits[arg] is not None and key in lat]
    if not applied:
        has = [arg for arg, key, _ in _KINDS if key in lat]
        raise AssertionError(f"the board{where} measures latency as {', '.join(u for a, k, u in _KINDS if a in has)}; "
                             f"give {' or '.join(has)}")
    for arg, key, unit in applied:
        s = lat[key]
        if s[statistic] > limits[arg]:
            kind = "emulated: QEMU counts instructions, not time" if lat.get("emulated") else lat.get(
                "latency_source", "measured on the board")
            raise AssertionError(
                f"latency{where} ({kind}): {statistic} {_num(s[statistic])} {unit} per inference > limit "
                f"{_num(limits[arg])} {unit} (min {_num(s['min'])}, median {_num(s['median'])}, max "
                f"{_num(s['max'])} over {n} inference{'s' if n != 1 else ''})")


def _num(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,.1f}"
