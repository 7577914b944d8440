"""Int8 models whose input is a front end's features, written by hand (no TensorFlow, no training): the
budget tests of the front end in --fit and inspect (tests/compress/test_fit_frontend.py,
tests/cli_api/test_inspect_frontend.py) size them in seconds."""

from __future__ import annotations

from support.flat_model import S, FlatModel


def relu_on_features(shape: tuple[int, ...], scale: float = 0.05, zero_point: int = -3) -> bytes:
    """int8 [1, *shape] -> RELU -> [1, *shape]: the smallest model a front end of that feature shape feeds
    (kws: (49, 40, 1); imu: (7, 24))."""
    fm = FlatModel()
    x = fm.tensor([1, *shape], S.TensorType.INT8, [scale], [zero_point])
    y = fm.tensor([1, *shape], S.TensorType.INT8, [scale], [zero_point])
    fm.op(S.BuiltinOperator.RELU, [x], [y], 0, None)
    return fm.pack([x], [y], b"relu on front-end features")
