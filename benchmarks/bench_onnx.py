"""Conversion time of a ~100k-parameter CNN from ONNX against the same model from Keras (issue 24).

    .venv/bin/python benchmarks/bench_onnx.py [--repeat 2]

The same weights both ways: a Keras CNN (NHWC) is saved as .keras, and the ONNX graph is written
with onnx.helper from its weights (NCHW, as torch.onnx.export writes a Conv2d/BatchNorm/ReLU/
MaxPool/AdaptiveAvgPool/Linear model).  Each is converted by ``tinygen.intake`` exactly as
``tinygen build`` does (the ``describe`` and ``convert`` worker jobs: load/convert, int8
calibration on 300 samples, float predictions on 60 held-out ones), timed wall-clock, best of
``--repeat``.  The target: ONNX at most 2x the Keras time.  Prints one line per path and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_cnn():
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    inp = tf.keras.Input((32, 32, 3))
    x = L.Conv2D(32, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(64, 3, padding="same")(x)
    x = L.ReLU()(x)
    x = L.MaxPooling2D()(x)
    x = L.Conv2D(128, 3, padding="same")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10)(x)
    out = L.Softmax()(x)
    m = tf.keras.Model(inp, out)
    # Non-trivial batch-norm statistics, so folding them is part of the work.
    bn = m.layers[2]
    g, b, mu, var = (np.asarray(w) for w in bn.get_weights())
    rng = np.random.default_rng(0)
    bn.set_weights([rng.uniform(.5, 1.5, g.shape), rng.normal(0, .1, b.shape), rng.normal(0, .1, mu.shape),
                    rng.uniform(.5, 1.5, var.shape)])
    return m


def onnx_from_keras(m):
    """The same network as torch.onnx.export writes it (NCHW, OIHW weights, Gemm for Dense)."""
    from onnx import TensorProto, helper, numpy_helper

    convs = [ly for ly in m.layers if ly.__class__.__name__ == "Conv2D"]
    bn = next(ly for ly in m.layers if ly.__class__.__name__ == "BatchNormalization")
    dense = next(ly for ly in m.layers if ly.__class__.__name__ == "Dense")
    inits, nodes, cur = [], [], "input"

    def init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    for i, c in enumerate(convs):
        w = c.get_weights()
        ins = [cur, init(f"conv{i}.weight", np.transpose(w[0], (3, 2, 0, 1)))]
        if len(w) > 1:
            ins.append(init(f"conv{i}.bias", w[1]))
        nodes.append(helper.make_node("Conv", ins, [f"/conv{i}/Conv_output_0"], name=f"/conv{i}/Conv",
                                      kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        cur = f"/conv{i}/Conv_output_0"
        if i == 0:
            g, b, mu, var = bn.get_weights()
            nodes.append(helper.make_node("BatchNormalization", [cur, init("bn.weight", g), init("bn.bias", b),
                                                                 init("bn.mean", mu), init("bn.var", var)],
                                          ["/bn/out"], name="/bn/BatchNormalization", epsilon=bn.epsilon))
            cur = "/bn/out"
        nodes.append(helper.make_node("Relu", [cur], [f"/relu{i}/out"], name=f"/relu{i}/Relu"))
        cur = f"/relu{i}/out"
        if i < 2:
            nodes.append(helper.make_node("MaxPool", [cur], [f"/pool{i}/out"], name=f"/pool{i}/MaxPool",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            cur = f"/pool{i}/out"
    w, b = dense.get_weights()
    nodes += [helper.make_node("GlobalAveragePool", [cur], ["/gap/out"], name="/gap/GlobalAveragePool"),
              helper.make_node("Flatten", ["/gap/out"], ["/flat/out"], name="/Flatten", axis=1),
              helper.make_node("Gemm", ["/flat/out", init("fc.weight", w.T), init("fc.bias", b)], ["/fc/out"],
                               name="/fc/Gemm", transB=1),
              helper.make_node("Softmax", ["/fc/out"], ["output"], name="/Softmax", axis=1)]
    g = helper.make_graph(nodes, "main_graph", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                              [1, 3, 32, 32])],
                          [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import onnx

    from tinygen.intake.onnx_source import source_from_onnx
    from tinygen.intake.sources import convert, source_from_user

    m = keras_cnn()
    params = m.count_params()
    rng = np.random.default_rng(1)
    x_nchw = rng.normal(0, 1, (360, 3, 32, 32)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        m.save(d / "cnn.keras")
        onnx.save(onnx_from_keras(m), d / "cnn.onnx")
        np.savez(d / "nhwc.npz", x=x_nchw.transpose(0, 2, 3, 1))
        np.savez(d / "nchw.npz", x=x_nchw)

        def from_keras():
            convert(source_from_user(str(d / "cnn.keras"), str(d / "nhwc.npz")), per_channel_dense=True)

        def from_onnx():
            src = source_from_onnx(d / "cnn.onnx", str(d / "nchw.npz"))
            convert(src, per_channel_dense=True)
            assert src.quality_extra["onnx_vs_converted_max_abs"] < 1e-4, src.quality_extra

        t_keras = timed(from_keras, args.repeat)
        t_onnx = timed(from_onnx, args.repeat)
    print(f"CNN with {params:,} parameters, 32x32x3 input, 300 calibration + 72 held-out samples")
    print(f"from Keras (.keras):  {t_keras:6.1f} s")
    print(f"from ONNX (onnx2tf):  {t_onnx:6.1f} s")
    print(f"ratio ONNX / Keras:   {t_onnx / t_keras:6.2f} (target <= 2.0)")
    return 0 if t_onnx <= 2 * t_keras else 1


if __name__ == "__main__":
    sys.exit(main())
