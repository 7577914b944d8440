"""A zoo of small user-style Keras 3 models run through the tinygen CLI, as a new user would.

    python benchmarks/zoo.py [--only NAME,...] [--jobs 2] [--keep DIR]

For each model: `tinygen build --board esp32 --model M.keras --data D.npz` (TFLM, esp32's
default), then `tinygen run --board qemu-m4 --runtime compiled` on the int8 model.tflite that
build wrote (one conversion per model; a model esp32 refused is not run again: so far every such
refusal is the converter's or the intake's, or an op neither runtime has). Subprocesses,
offline, seeded, random weights except where training matters. Prints one row per model: esp32
build yes/no, qemu-m4 compiled bit-exact yes/no, or the refusal's one line. A traceback (CRASH) or
a multi-line error (MULTI) is flagged as such: those are bugs.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
N = 24  # samples per .npz: calibration + a few held out; keeps every build short


def _models():
    """name -> (builder, kind); kind picks the data: 'cls' (int labels), 'bin', 'reg', 'ids', 'none'."""
    import keras
    L = keras.layers

    def seq(shape, *layers):
        return keras.Sequential([keras.Input(shape), *layers])

    def head(x, n=3):
        return L.Dense(n, activation="softmax")(x)

    def mbv2_blocks():
        inp = keras.Input((32, 32, 3))
        x = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
        x = L.ReLU(6.0)(L.BatchNormalization()(x))
        for expand, out, stride in ((4, 8, 1), (4, 12, 2), (4, 12, 1)):
            y = L.Conv2D(x.shape[-1] * expand, 1, use_bias=False)(x)
            y = L.ReLU(6.0)(L.BatchNormalization()(y))
            y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(y)
            y = L.ReLU(6.0)(L.BatchNormalization()(y))
            y = L.BatchNormalization()(L.Conv2D(out, 1, use_bias=False)(y))
            x = L.Add()([x, y]) if stride == 1 and x.shape[-1] == out else y
        return keras.Model(inp, head(L.GlobalAveragePooling2D()(x)))

    def residual():
        inp = keras.Input((16, 16, 4))
        x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
        y = L.Conv2D(8, 3, padding="same")(x)
        x = L.ReLU()(L.Add()([x, y]))
        return keras.Model(inp, head(L.Flatten()(L.MaxPooling2D(4)(x))))

    def concat():
        inp = keras.Input((16, 16, 3))
        a = L.Conv2D(4, 1, activation="relu")(inp)
        b = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
        return keras.Model(inp, head(L.GlobalAveragePooling2D()(L.Concatenate()([a, b]))))

    def two_in():
        a, b = keras.Input((8,)), keras.Input((4,))
        return keras.Model([a, b], L.Dense(2)(L.Concatenate()([L.Dense(4)(a), b])))

    def two_out():
        i = keras.Input((8,))
        h = L.Dense(8, activation="relu")(i)
        return keras.Model(i, [L.Dense(3, activation="softmax")(h), L.Dense(1)(h)])

    def mha():
        i = keras.Input((8, 8))
        return keras.Model(i, L.Dense(2)(L.Flatten()(L.MultiHeadAttention(2, 4)(i, i))))

    def attention():
        i = keras.Input((8, 8))
        return keras.Model(i, L.Dense(2)(L.Flatten()(L.Attention()([i, i]))))

    def mobilenetv2():
        return keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(96, 96, 3), classes=2)

    img = (16, 16, 3)
    return {
        "conv1d_accel": (lambda: seq((128, 3), L.Conv1D(8, 5, strides=2, activation="relu"), L.MaxPooling1D(2),
                                     L.Conv1D(8, 3, activation="relu"), L.GlobalAveragePooling1D(),
                                     L.Dense(4, activation="softmax")), "cls"),
        "separable_conv2d": (lambda: seq(img, L.SeparableConv2D(8, 3, activation="relu"), L.Flatten(),
                                         L.Dense(3, activation="softmax")), "cls"),
        "bn_relu6": (lambda: seq(img, L.Conv2D(8, 3, use_bias=False), L.BatchNormalization(), L.ReLU(6.0),
                                 L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")), "cls"),
        "residual_add": (residual, "cls"),
        "concatenate": (concat, "cls"),
        "mbv2_blocks": (mbv2_blocks, "cls"),
        "mobilenetv2_a035": (mobilenetv2, "cls"),
        "swish": (lambda: seq(img, L.Conv2D(8, 3, activation="swish"), L.GlobalAveragePooling2D(),
                              L.Dense(3, activation="softmax")), "cls"),
        "rescaling": (lambda: seq(img, L.Rescaling(1 / 255.0), L.Conv2D(8, 3, activation="relu"), L.Flatten(),
                                  L.Dense(3, activation="softmax")), "cls"),
        "leaky_relu": (lambda: seq(img, L.Conv2D(8, 3), L.LeakyReLU(0.1), L.Flatten(), L.Dense(3)), "reg"),
        "prelu": (lambda: seq(img, L.Conv2D(8, 3), L.PReLU(shared_axes=[1, 2]), L.Flatten(), L.Dense(3)), "reg"),
        "hard_swish": (lambda: seq(img, L.Conv2D(8, 3), L.Activation("hard_swish"), L.Flatten(), L.Dense(3)), "reg"),
        "global_max_pool": (lambda: seq(img, L.Conv2D(8, 3, activation="relu"), L.GlobalMaxPooling2D(),
                                        L.Dense(3, activation="softmax")), "cls"),
        "conv2d_transpose": (lambda: seq((8, 8, 4), L.Conv2DTranspose(4, 3, strides=2, padding="same",
                                                                      activation="relu"), L.Conv2D(1, 3)), "none"),
        "permute": (lambda: seq((8, 6), L.Permute((2, 1)), L.Flatten(), L.Dense(3)), "reg"),
        "upsampling_bilinear": (lambda: seq((8, 8, 2), L.UpSampling2D(2, interpolation="bilinear"),
                                            L.Conv2D(2, 3)), "none"),
        "upsampling_nearest": (lambda: seq((8, 8, 2), L.UpSampling2D(2), L.Conv2D(2, 3)), "none"),
        "resizing": (lambda: seq((12, 12, 2), L.Resizing(6, 6), L.Conv2D(2, 3)), "none"),
        "cropping_zeropad": (lambda: seq(img, L.Cropping2D(2), L.ZeroPadding2D(1), L.Conv2D(4, 3), L.Flatten(),
                                         L.Dense(3)), "reg"),
        "lstm": (lambda: seq((10, 3), L.LSTM(8), L.Dense(3, activation="softmax")), "cls"),
        "gru": (lambda: seq((10, 3), L.GRU(8), L.Dense(3, activation="softmax")), "cls"),
        "simple_rnn": (lambda: seq((10, 3), L.SimpleRNN(8), L.Dense(3, activation="softmax")), "cls"),
        "bidirectional_lstm": (lambda: seq((8, 3), L.Bidirectional(L.LSTM(4)), L.Dense(3, activation="softmax")),
                               "cls"),
        "sigmoid_binary": (lambda: seq((10,), L.Dense(8, activation="relu"), L.Dense(1, activation="sigmoid")),
                           "bin"),
        "autoencoder": (lambda: seq((32,), L.Dense(8, activation="relu"), L.Dense(4, activation="relu"),
                                    L.Dense(8, activation="relu"), L.Dense(32)), "none"),
        "embedding": (lambda: seq((10,), L.Embedding(30, 4), L.Flatten(), L.Dense(2)), "ids"),
        "elu": (lambda: seq((16,), L.Dense(8), L.ELU(), L.Dense(3)), "reg"),
        "two_input": (two_in, "none"),
        "two_output": (two_out, "none"),
        "dropout": (lambda: seq((16,), L.Dense(16, activation="relu"), L.Dropout(0.3),
                                L.Dense(3, activation="softmax")), "cls"),
        "layer_norm": (lambda: seq((16,), L.Dense(8), L.LayerNormalization(), L.Dense(3)), "reg"),
        "attention": (attention, "none"),
        "multi_head_attention": (mha, "none"),
        "reshape_flatten": (lambda: seq((48,), L.Reshape((4, 4, 3)), L.Conv2D(4, 2, activation="relu"),
                                        L.Flatten(), L.Dense(3, activation="softmax")), "cls"),
    }


def _data(model, kind, rng):
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    if kind == "ids":
        xs = [rng.integers(0, 30, (N, *s)).astype("int32") for s in shapes]
    else:
        xs = [rng.standard_normal((N, *s)).astype("float32") for s in shapes]
    d = {"x": xs[0]} if len(xs) == 1 else {f"x{i}": x for i, x in enumerate(xs)}
    if kind == "cls":
        d["y"] = rng.integers(0, model.outputs[0].shape[-1], N)
    elif kind == "bin":
        d["y"] = rng.integers(0, 2, N)
    elif kind == "reg":
        d["y"] = rng.standard_normal((N, model.outputs[0].shape[-1])).astype("float32")
    return d


def make(names, work: Path):
    import keras
    import numpy as np
    table = _models()
    for name in names:
        keras.utils.set_random_seed(0)
        build, kind = table[name]
        model = build()
        d = _data(model, kind, np.random.default_rng(0))
        if kind == "bin":  # a couple of epochs, so the sigmoid output is not constant
            model.compile("adam", "binary_crossentropy")
            model.fit(d["x"], d["y"], epochs=2, verbose=0)
        model.save(work / f"{name}.keras")
        np.savez(work / f"{name}.npz", **d)


def _cli(args, home: Path, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TINYGEN_HOME=str(home))
    try:
        p = subprocess.run([sys.executable, "-m", "tinygen", *args], cwd=home, env=env,
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", f"timeout after {timeout}s"
    return p.returncode, p.stdout, p.stderr


def _verdict(rc, out, err):
    if rc == 0:
        return "yes", ""
    # progress lines ("… quantizing") are not part of the error
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith("\u2026")]
    if "Traceback" in err:
        return "CRASH", lines[-1] if lines else "traceback"
    if len(lines) != 1:
        return "MULTI", " | ".join(lines[-3:]) if lines else f"exit {rc}, no message"
    return "no", lines[0]


def run_one(name, work: Path):
    home = work / "home"  # shared: the board packages install once
    home.mkdir(exist_ok=True)
    m, d = str(work / f"{name}.keras"), str(work / f"{name}.npz")
    b = _verdict(*_cli(["build", "--board", "esp32", "--model", m, "--data", d, "--vectors", "2",
                        "--out", str(work / f"esp32-{name}")], home))
    if b[0] != "yes":  # refused at intake/conversion (runtime-independent): qemu-m4 would refuse it too
        return name, b, ("-", "")
    # The esp32 project's int8 model is the one qemu-m4 runs: no second conversion.
    tfl = str(work / f"esp32-{name}" / "model.tflite")
    r = _verdict(*_cli(["run", "--board", "qemu-m4", "--runtime", "compiled", "--model", tfl, "--data", d,
                        "--vectors", "2", "--out", str(work / f"m4-{name}")], home))
    return name, b, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma-separated model names")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", default="", help="work directory to keep (default: a temp dir)")
    a = ap.parse_args()
    names = [n for n in a.only.split(",") if n] or list(_models())
    tmp = None if a.keep else tempfile.TemporaryDirectory(prefix="tinygen-zoo-")
    work = Path(a.keep or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    make([n for n in names if not (work / f"{n}.npz").exists()], work)
    rows = {}
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        for name, b, r in ex.map(lambda n: run_one(n, work), names):
            rows[name] = (b, r)
            print(f"{name:22} esp32={b[0]:5} qemu-m4={r[0]:5} {r[1] or b[1]}", file=sys.stderr, flush=True)
    print("| model | esp32 build | qemu-m4 compiled bit-exact | refusal / note |")
    print("|---|---|---|---|")
    for name in names:
        (b, bm), (r, rm) = rows[name]
        print(f"| {name} | {b} | {r} | {(rm or bm).replace('|', '/')} |")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
