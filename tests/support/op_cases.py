"""The compiled runtime's seeded op cases (one small Keras model each, converted once to int8 in a
worker pool) and their one shared host build: tests/compiled/test_kernels.py and every
test_ops_<family>.py read the same session fixture (tests/conftest.py: op_cases_built)."""

from __future__ import annotations

import numpy as np

import support.compiled_harness as H

SEED = 20250611
N_RANDOM_INPUTS = 60


def _op_cases() -> list[dict]:
    rng = np.random.default_rng(SEED)
    cases: list[dict] = []

    def add(kind, **kw):
        kw["kind"] = kind
        kw["seed"] = int(rng.integers(1, 1 << 30))
        kw.setdefault("rep", (float(rng.uniform(-1, 1)), float(10 ** rng.uniform(-1, 1))))
        kw.setdefault("w_std", float(10 ** rng.uniform(-1.5, 0.3)))
        kw["id"] = f"{kind}{sum(c['kind'] == kind for c in cases)}"
        cases.append(kw)

    acts = ["linear", "relu", "relu6"]
    # FULLY_CONNECTED: per-tensor and per-channel weights, 2-D and 3-D inputs, with/without bias.
    for i in range(8):
        shape = [int(rng.integers(1, 33))] if i % 4 != 3 else [int(rng.integers(2, 5)), int(rng.integers(1, 17))]
        add("fc", shape=shape, units=int(rng.integers(1, 17)), act=acts[i % 3], bias=bool(i % 5 != 4),
            per_channel=bool(i % 2), rep_skew=bool(i == 6))
    # CONV_2D: kernel, strides, dilation, padding, groups, channels.
    for i in range(9):
        k = [int(rng.integers(1, 5)), int(rng.integers(1, 5))]
        strides, dil = [int(rng.integers(1, 4)), int(rng.integers(1, 4))], [1, 1]
        if i % 3 == 2:
            strides, dil = [1, 1], [int(rng.integers(1, 3)), int(rng.integers(2, 4))]
        padding = "same" if i % 2 == 0 else "valid"
        eff = [(k[j] - 1) * dil[j] + 1 for j in range(2)]
        hw = [int(rng.integers(eff[j], eff[j] + 7)) for j in range(2)]
        groups = 2 if i in (4, 7) else 1
        in_c = int(rng.integers(1, 7)) * groups
        filters = int(rng.integers(1, 6)) * groups
        add("conv", shape=hw + [in_c], k=k, strides=strides, dil=dil, padding=padding, groups=groups,
            filters=filters, act=acts[i % 3], bias=bool(i != 5))
    # DEPTHWISE_CONV_2D: depth multiplier, strides, dilation, padding; >= 4 channels for the DSP path.
    for i in range(7):
        k = [int(rng.integers(1, 5)), int(rng.integers(1, 5))]
        strides, dil = [int(rng.integers(1, 3)), int(rng.integers(1, 4))], [1, 1]
        if i % 3 == 1:
            strides, dil = [1, 1], [int(rng.integers(1, 4)), int(rng.integers(1, 3))]
        padding = "valid" if i % 2 == 0 else "same"
        eff = [(k[j] - 1) * dil[j] + 1 for j in range(2)]
        hw = [int(rng.integers(eff[j], eff[j] + 6)) for j in range(2)]
        add("dw", shape=hw + [int(rng.integers(1, 10))], k=k, strides=strides, dil=dil, padding=padding,
            dm=int(rng.integers(1, 4)) if i % 2 else 1, act=acts[i % 3], bias=bool(i != 3))
    # Pooling.
    for kind in ("avgpool", "maxpool"):
        for i in range(3):
            pool = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
            strides = [int(rng.integers(1, 4)), int(rng.integers(1, 4))]
            padding = ["same", "valid", "same"][i]
            hw = [int(rng.integers(pool[j], pool[j] + 7)) for j in range(2)]
            add(kind, shape=hw + [int(rng.integers(1, 6))], pool=pool, strides=strides, padding=padding)
    # SOFTMAX: depth 1..20, several rows, input scales over three decades.
    add("softmax", shape=[10], rep=(0.0, 0.05))
    add("softmax", shape=[3, 7], rep=(1.0, 3.0))
    add("softmax", shape=[1], rep=(0.0, 1.0))
    add("softmax", shape=[2, 20], rep=(-2.0, 25.0))
    add("softmax", shape=[12], dense=True, rep=(0.0, 2.0))
    # LOGISTIC / TANH over a wide range of input scales.
    for kind in ("sigmoid", "tanh"):
        for sigma in (0.02, 1.0, 40.0):
            add(kind, shape=[int(rng.integers(8, 40))], rep=(float(rng.uniform(-1, 1)) * sigma, sigma))
    # RELU / RELU6 as stand-alone ops (requantizing / clamping).
    add("relu", shape=[5, 7], rep=(0.5, 2.0))
    add("relu", shape=[33], rep=(-1.0, 0.3))
    add("relu6", shape=[4, 4, 3], rep=(2.0, 4.0))
    add("relu6", shape=[17], rep=(0.0, 20.0))
    # ADD / MUL: same shapes, broadcasting (4-D), constant operands, either operand order, fused ReLU.
    for kind in ("add", "mul"):
        for i, mode in enumerate(("same", "mean_hw", "mean_w", "mean_c", "const")):
            hw = [int(rng.integers(1, 6)), int(rng.integers(1, 6))]
            add(kind, shape=hw + [int(rng.integers(1, 6))], mode=mode, order=i % 2,
                act="relu" if i in (1, 4) else "linear")
    # RESHAPE: alone (a copy from the caller's input to its output) and between ops (a view).
    add("reshape", shape=[4, 6], mode="alone")
    add("reshape", shape=[5, 4, 2], mode="chain")
    add("add", shape=[2, 3, 4, 3], mode="mean_5d")
    add("mul", shape=[3, 2, 2, 4], mode="mean_5d")
    # PAD (ZeroPadding2D, asymmetric).
    for i in range(3):
        pad = [[int(rng.integers(0, 3)), int(rng.integers(0, 3))], [int(rng.integers(0, 3)), int(rng.integers(1, 3))]]
        add("pad", shape=[int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 4))], pad=pad)
    # MEAN over spatial, width, channel and mixed axes, with and without keepdims.
    add("mean", shape=[5, 4, 3], axes="gap", keep=False)
    add("mean", shape=[3, 6, 5], axes="gap", keep=True)
    add("mean", shape=[4, 5, 6], axes=[2], keep=True)
    add("mean", shape=[4, 5, 6], axes=[-1], keep=False)
    add("mean", shape=[7, 3, 2], axes=[1, 3], keep=False)
    # CONCATENATION along channels / width / height; sigmoid/tanh branches force QUANTIZE (requantize).
    add("concat", shape=[4, 4, 3], srcs=["conv", "conv"], width=[2, 3], axis=-1)
    add("concat", shape=[3, 5, 2], srcs=["sigmoid", "tanh"], width=[2, 2], axis=2)
    add("concat", shape=[5, 2, 3], srcs=["input", "sigmoid", "conv"], width=[3, 3, 3], axis=1)
    add("concat", shape=[4, 3, 2], srcs=["relu", "tanh", "conv"], width=[1, 4, 2], axis=-1)
    # DEPTHWISE_CONV_2D 3x3, depth multiplier 1, channels a multiple of 4: the Cortex-M4 fast
    # path (int16 tap pairs) for interior pixels, including the 32-channel chunk boundary.
    add("dw", shape=[7, 6, 8], k=[3, 3], strides=[1, 1], dil=[1, 1], padding="same", dm=1, act="relu", bias=True)
    add("dw", shape=[9, 9, 36], k=[3, 3], strides=[2, 2], dil=[1, 1], padding="valid", dm=1, act="relu6",
        bias=False)
    add("dw", shape=[8, 7, 12], k=[3, 3], strides=[1, 1], dil=[2, 2], padding="same", dm=1, act="linear",
        bias=True)
    # ... with depth multiplier > 1 (weights interleaved per multiplier), stride 2, border pixels
    # (zero-point taps), odd channel counts (the scalar tail) and a multi-chunk multiplier-2 layer.
    add("dw", shape=[6, 5, 5], k=[3, 3], strides=[1, 1], dil=[1, 1], padding="same", dm=2, act="relu", bias=True)
    add("dw", shape=[9, 8, 6], k=[3, 3], strides=[2, 2], dil=[1, 1], padding="same", dm=2, act="relu6",
        bias=False)
    add("dw", shape=[7, 7, 4], k=[3, 3], strides=[2, 2], dil=[1, 1], padding="valid", dm=3, act="linear",
        bias=True)
    add("dw", shape=[6, 7, 7], k=[3, 3], strides=[2, 2], dil=[1, 1], padding="same", dm=1, act="relu", bias=True)
    add("dw", shape=[5, 6, 20], k=[3, 3], strides=[1, 1], dil=[1, 1], padding="valid", dm=2, act="relu",
        bias=True)
    # The Helium (M55) fast paths: depthwise 3x3 with channels a multiple of 8 (pairs of inside
    # pixels, odd runs, stride 2, border pixels) and 1x1 convolutions read in place (channels a
    # multiple of 4, a tail block of 4 or 8, an odd pixel count, stride 2).
    add("dw", shape=[9, 11, 16], k=[3, 3], strides=[2, 2], dil=[1, 1], padding="same", dm=1, act="relu6",
        bias=True)
    add("dw", shape=[5, 9, 24], k=[3, 3], strides=[1, 1], dil=[1, 1], padding="valid", dm=1, act="linear",
        bias=False)
    add("dw", shape=[8, 9, 8], k=[3, 3], strides=[1, 1], dil=[2, 2], padding="same", dm=1, act="relu",
        bias=True)
    add("conv", shape=[5, 7, 8], k=[1, 1], strides=[1, 1], dil=[1, 1], padding="valid", groups=1, filters=12,
        act="relu", bias=True)
    add("conv", shape=[6, 5, 20], k=[1, 1], strides=[2, 2], dil=[1, 1], padding="valid", groups=1, filters=6,
        act="linear", bias=False)
    # The M4's 4-pixel 1x1 path (tg_conv_pointwise_4px): an odd block count (K = 12), relu6 (the
    # clamped variant), 21 pixels (5 passes of 4, then one pixel alone).
    add("conv", shape=[3, 7, 12], k=[1, 1], strides=[1, 1], dil=[1, 1], padding="valid", groups=1, filters=10,
        act="relu6", bias=True)
    # AVERAGE_POOL_2D's DSP path (4 channels per load, int16 pair sums): a DS-CNN-like global window
    # with a 3-channel tail, and a window of more than 256 taps (the per-channel walk).
    add("avgpool", shape=[13, 5, 11], pool=[13, 5], strides=[1, 1], padding="valid")
    add("avgpool", shape=[17, 16, 4], pool=[17, 16], strides=[1, 1], padding="valid")
    return cases


CASES = _op_cases()
for _c in CASES:
    H.register("op:" + _c["id"], "convert_case", _c)


# Op families, as the kernels (firmware/runtime/tg_<family>.c) and the lowering
# (tinygen/codegen/compiled/lowering/<family>.py) are split.
FAMILIES = {
    "conv": ("fc", "conv", "dw"),
    "pool": ("avgpool", "maxpool"),
    "activation": ("softmax", "sigmoid", "tanh", "relu", "relu6"),
    "elementwise": ("add", "mul"),
    "reduce": ("mean",),
    "shape": ("reshape", "pad", "concat"),
}


def family(name: str) -> list[int]:
    """Indices of CASES in one op family (for a test_ops_<family>.py's parametrization)."""
    return [i for i, c in enumerate(CASES) if c["kind"] in FAMILIES[name]]


def build(workdir):
    """Convert all cases (worker processes), emit, build one ASan/UBSan harness, compute references."""
    return H.build_cases(CASES, lambda c: H.result("op:" + c["id"]), SEED + 1, N_RANDOM_INPUTS, workdir)
