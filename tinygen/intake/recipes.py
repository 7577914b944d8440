"""Built-in training recipes: seeded, offline, small.

Each recipe returns a :class:`Trained` value: the float Keras model plus its
data split into train / representative (calibration) / test, so quantization
and reporting never see the test split during calibration.

- ``sine``: regression y = sin(x) on [0, 2π], the TFLM hello-world analogue.
- ``digits``: 8x8 handwritten digits shipped inside scikit-learn (1,797 real
  samples, no download), classified by Conv2D + DepthwiseConv2D + pooling +
  Dense + Softmax.
- ``kws``: keyword spotting on 1 s of 16 kHz audio: five synthetic "keywords" (noise only,
  up-chirp, down-chirp, two-tone, a vowel-like formant pattern) with noise, random gain and time
  shift, through the audio front end (tinygen.intake.frontend.KWS_SPEC: 49 frames x 40 log-mel
  bands, its fixed-point twin computes the training features) into a small DS-CNN.
- ``imu``: gestures from a 3-axis accelerometer at 100 Hz (2 s windows): idle, shake, circle,
  tap, tilt; the imu front end (IMU_SPEC: 7 frames x 24 statistics and band energies) into a
  Conv1D model.
"""


from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinygen.common.errors import TinygenError

DEFAULT_RECIPE = "sine"
DEFAULT_SEED = 1234


@dataclass
class Trained:
    name: str
    task: str  # "regression" | "classification"
    model: object = field(repr=False)  # keras.Model
    x_rep: np.ndarray = field(repr=False)  # calibration inputs (float32)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)  # regression targets or integer labels
    class_names: list[str] | None = None
    # The training split, kept for what fine-tunes the model later (tinygen.compress).
    x_train: np.ndarray | None = field(default=None, repr=False)
    y_train: np.ndarray | None = field(default=None, repr=False)
    # A front-end recipe: the stage's definition (FrontendSpec.to_json()) and the raw int16 test
    # samples that x_test's features came from (the board path feeds these).
    frontend: dict | None = None
    raw_test: np.ndarray | None = field(default=None, repr=False)


# Keras imports these at its own import when they are installed, for what tinygen never runs in a
# worker: its scikit-learn estimator wrappers (keras.wrappers) and its image-gallery plots
# (keras.visualization).  Together 1.1 s of CPU and 85 MiB resident of the worker's 4.7 s / 590 MiB
# `import tensorflow` (measured on 2.21 / Keras 3.15), on a cold build's critical path.
WITHOUT_AT_IMPORT = ("sklearn", "matplotlib")


def import_tensorflow():
    """``import tensorflow`` (with Keras), as a worker does it: seeded-run settings first, and without
    :data:`WITHOUT_AT_IMPORT`, which Keras then treats as not installed (``try: import sklearn /
    except ImportError``: only those optional features are off).  Afterwards they import as usual
    (the digits recipe reads its data with scikit-learn)."""
    import sys

    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")  # read by TensorFlow at its import
        # None in sys.modules makes `import name` (and `import name.sub`) raise ImportError
        held = [name for name in WITHOUT_AT_IMPORT if name not in sys.modules]
        for name in held:
            sys.modules[name] = None
        try:
            import tensorflow as tf

            tf.keras.backend.clear_session  # noqa: B018 - Keras itself, imported on first use of tf.keras
        finally:
            for name in held:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
    import tensorflow as tf

    return tf


def seed_everything(seed: int) -> None:
    """Make Keras training repeatable: same seed, same weights, same bytes."""
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    tf = import_tensorflow()

    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # already enabled, or unavailable on this build
        pass
    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # threads already initialised in this process
        pass


def _sine(seed: int, epochs: int | None, progress: Callable[[str], None]) -> Trained:
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 2 * np.pi, size=(2000, 1)).astype(np.float32)
    y = (np.sin(x) + rng.normal(0, 0.05, size=x.shape)).astype(np.float32)
    x_train, y_train = x[:1600], y[:1600]
    x_test = rng.uniform(0, 2 * np.pi, size=(200, 1)).astype(np.float32)
    y_test = np.sin(x_test).astype(np.float32)
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(1,), name="x"),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(16, activation="relu"),
        tf.keras.layers.Dense(1),
    ], name="sine")
    progress("training sine (regression)")
    # Keras's seeded initial weights, trained in numpy (_fit_dense_relu_mse: 0.2 s of CPU where
    # model.fit spent 1.4 s, 1 s of it tracing its train function): 80 passes over the 1,600
    # samples in batches of 64, Adam with a cosine-decayed rate.  Over 12 seeds (1234, 1-11) its
    # held-out int8 RMSE is 0.039 on average (median 0.037, worst 0.065) where 40 passes of
    # model.fit with a constant rate gave 0.049 (median 0.039, worst 0.141); seed 1234: 0.032 (was 0.033).
    model.set_weights(_fit_dense_relu_mse(model.get_weights(), x_train, y_train, rng, epochs or 80))
    return Trained("sine", "regression", model, x[1600:1800], x_test, y_test, x_train=x_train, y_train=y_train)


def _fit_dense_relu_mse(weights: list, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, epochs: int,
                        batch: int = 64, lr: float = 0.01) -> list[np.ndarray]:
    """Train a stack of Dense layers (ReLU between them, none after the last) for mean squared error
    with Adam (Keras's update and defaults: beta 0.9 / 0.999, epsilon 1e-7) in float32 numpy, the
    rate ``lr`` decayed to 0 along a half cosine: ``epochs`` passes over ``x`` in batches of
    ``batch``, reshuffled by ``rng`` each pass (the last partial batch dropped).  ``weights``: [kernel,
    bias] per layer, as Keras's get_weights() gives them; returns them trained.

    For the sine recipe's 321 parameters TensorFlow's per-step machinery costs far more than the
    arithmetic; this is the same computation without it, and the same bytes on every run."""
    w = [np.array(a, dtype=np.float32) for a in weights]
    m = [np.zeros_like(a) for a in w]
    v = [np.zeros_like(a) for a in w]
    b1, b2, eps, one = np.float32(0.9), np.float32(0.999), np.float32(1e-7), np.float32(1)
    n_layers, steps_per_pass = len(w) // 2, len(x) // batch
    total = epochs * steps_per_pass
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for b in range(steps_per_pass):
            idx = order[b * batch:(b + 1) * batch]
            acts, pre = [x[idx]], []
            for i in range(n_layers):
                z = acts[-1] @ w[2 * i] + w[2 * i + 1]
                pre.append(z)
                acts.append(np.maximum(z, np.float32(0)) if i < n_layers - 1 else z)
            d = np.float32(2.0 / (batch * y.shape[1])) * (acts[-1] - y[idx])  # d(mean squared error)/d(out)
            grads = [None] * len(w)
            for i in reversed(range(n_layers)):
                if i < n_layers - 1:
                    d = d * (pre[i] > 0)
                grads[2 * i], grads[2 * i + 1] = acts[i].T @ d, d.sum(axis=0)
                if i:
                    d = d @ w[2 * i].T
            rate = np.float32(lr * 0.5 * (1.0 + np.cos(np.pi * step / total)))
            step += 1
            rate = rate * np.sqrt(one - b2 ** step) / (one - b1 ** step)  # Adam's bias correction
            for i, g in enumerate(grads):
                m[i] = b1 * m[i] + (one - b1) * g
                v[i] = b2 * v[i] + (one - b2) * g * g
                w[i] = w[i] - rate * m[i] / (np.sqrt(v[i]) + eps)
    return w


def _digits(seed: int, epochs: int | None, progress: Callable[[str], None]) -> Trained:
    import tensorflow as tf
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[..., None]  # (1797, 8, 8, 1) in [0, 1]
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    n_test = 360
    x_train, y_train = x[:-n_test], y[:-n_test]
    x_test, y_test = x[-n_test:], y[-n_test:]
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(8, 8, 1), name="image"),
        layers.Conv2D(8, 3, padding="same", activation="relu"),
        layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(16, 1, activation="relu"),
        layers.AveragePooling2D(2),
        layers.Flatten(),
        layers.Dense(10),
        layers.Softmax(),
    ], name="digits")
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    progress("training digits (8x8 handwritten digits from scikit-learn)")
    model.fit(x_train, y_train, epochs=epochs or 30, batch_size=32, verbose=0, shuffle=True)
    return Trained("digits", "classification", model, x_train[:200], x_test, y_test,
                   [str(i) for i in range(10)], x_train=x_train, y_train=y_train)


KWS_WORDS = ["noise", "up", "down", "two_tone", "vowel"]


def _kws_clip(rng: np.random.Generator, label: int, sr: int, n: int) -> np.ndarray:
    """One second of int16 audio holding the keyword ``label`` (0: background noise only)."""
    out = rng.normal(0, rng.uniform(50, 400), n)
    dur = rng.uniform(0.3, 0.5)
    m = int(dur * sr)
    t = np.arange(m) / sr
    f0 = rng.uniform(0.85, 1.15)
    if label == 1:  # rising chirp 300 -> 3000 Hz
        sig = np.sin(2 * np.pi * f0 * (300 * t + 2700 / (2 * dur) * t * t))
    elif label == 2:  # falling chirp 3000 -> 300 Hz
        sig = np.sin(2 * np.pi * f0 * (3000 * t - 2700 / (2 * dur) * t * t))
    elif label == 3:  # two tones, one after the other
        half = m // 2
        sig = np.concatenate([np.sin(2 * np.pi * 700 * f0 * t[:half]), np.sin(2 * np.pi * 1800 * f0 * t[half:])])
    elif label == 4:  # a vowel: harmonics of ~140 Hz shaped by formants near 700 and 1200 Hz
        pitch = 140 * f0
        sig = sum(np.sin(2 * np.pi * h * pitch * t) * (np.exp(-((h * pitch - 700) / 150) ** 2)
                                                       + 0.6 * np.exp(-((h * pitch - 1200) / 200) ** 2))
                  for h in range(1, 20))
        sig = sig / max(np.abs(sig).max(), 1e-9)
    else:
        sig = np.zeros(m)
    env = np.minimum(1, np.minimum(t, dur - t) / 0.03)
    start = int(rng.integers(0, n - m))
    out[start:start + m] += sig * env * rng.uniform(3000, 20000)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def _features(raw: np.ndarray, spec) -> np.ndarray:
    from tinygen.intake.frontend import compute_int, to_model_float

    return np.concatenate([to_model_float(compute_int(raw[i:i + 256], spec)) for i in range(0, len(raw), 256)])


def _frontend_recipe(name: str, spec, raw: np.ndarray, y: np.ndarray, model, n_test: int, epochs: int,
                     class_names: list[str], progress: Callable[[str], None]) -> Trained:
    x = _features(raw, spec)
    x_train, y_train = x[:-n_test], y[:-n_test]
    model.compile(optimizer=__import__("tensorflow").keras.optimizers.Adam(0.005),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    progress(f"training {name} on {len(x_train)} synthetic samples through the {spec.kind} front end")
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
    return Trained(name, "classification", model, x_train[:200], x[-n_test:], y[-n_test:], class_names,
                   x_train=x_train, y_train=y_train, frontend=spec.to_json(), raw_test=raw[-n_test:])


def _kws(seed: int, epochs: int | None, progress: Callable[[str], None]) -> Trained:
    import tensorflow as tf

    from tinygen.intake.frontend import KWS_SPEC

    spec = KWS_SPEC
    rng = np.random.default_rng(seed)
    n = 1000
    y = rng.integers(0, len(KWS_WORDS), size=n).astype(np.int64)
    raw = np.stack([_kws_clip(rng, int(label), spec.sample_rate, spec.window_samples) for label in y])
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input(shape=spec.feature_shape, name="features"),
        layers.Conv2D(16, (5, 4), strides=(2, 2), padding="same", activation="relu"),
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        layers.Conv2D(16, 1, activation="relu"),
        layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        layers.Conv2D(16, 1, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(len(KWS_WORDS)),
        layers.Softmax(),
    ], name="kws")
    return _frontend_recipe("kws", spec, raw, y, model, 200, epochs or 12, list(KWS_WORDS), progress)


IMU_GESTURES = ["idle", "shake", "circle", "tap", "tilt"]


def _imu_window(rng: np.random.Generator, label: int, spec) -> np.ndarray:
    """2 s of interleaved x, y, z accelerometer counts (4096 per g, gravity on z)."""
    n, sr = spec.window_samples, spec.sample_rate
    t = np.arange(n) / sr
    g = 4096.0
    acc = np.zeros((n, 3))
    acc[:, 2] = g
    acc += rng.normal(0, rng.uniform(10, 60), (n, 3))
    ph = rng.uniform(0, 2 * np.pi)
    if label == 1:  # shake along x at 4-7 Hz
        acc[:, 0] += rng.uniform(0.5, 1.5) * g * np.sin(2 * np.pi * rng.uniform(4, 7) * t + ph)
    elif label == 2:  # a circle in x/y at 1-2 Hz
        f = rng.uniform(1, 2)
        a = rng.uniform(0.3, 0.8) * g
        acc[:, 0] += a * np.cos(2 * np.pi * f * t + ph)
        acc[:, 1] += a * np.sin(2 * np.pi * f * t + ph)
    elif label == 3:  # two or three taps: short z spikes
        for _ in range(int(rng.integers(2, 4))):
            i = int(rng.integers(0, n - 5))
            acc[i:i + 3, 2] += rng.uniform(1, 3) * g * np.array([1.0, -0.6, 0.3])
    elif label == 4:  # a slow tilt: gravity moves from z towards y
        ang = np.clip((t - rng.uniform(0.2, 1.0)) / 0.6, 0, 1) * rng.uniform(0.6, 1.4)
        acc[:, 1] += g * np.sin(ang)
        acc[:, 2] += g * (np.cos(ang) - 1)
    return np.clip(np.round(acc), -32768, 32767).astype(np.int16).reshape(-1)


def _imu(seed: int, epochs: int | None, progress: Callable[[str], None]) -> Trained:
    import tensorflow as tf

    from tinygen.intake.frontend import IMU_SPEC

    spec = IMU_SPEC
    rng = np.random.default_rng(seed)
    n = 1200
    y = rng.integers(0, len(IMU_GESTURES), size=n).astype(np.int64)
    raw = np.stack([_imu_window(rng, int(label), spec) for label in y])
    layers = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input(shape=spec.feature_shape, name="features"),
        layers.Conv1D(16, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(16, activation="relu"),
        layers.Dense(len(IMU_GESTURES)),
        layers.Softmax(),
    ], name="imu")
    return _frontend_recipe("imu", spec, raw, y, model, 240, epochs or 30, list(IMU_GESTURES), progress)


RECIPES: dict[str, tuple[str, Callable[..., Trained]]] = {
    "sine": ("regression y=sin(x), 2 hidden Dense layers (TFLM hello-world analogue)", _sine),
    "digits": ("8x8 handwritten digits (scikit-learn), Conv2D+DepthwiseConv2D+pool+Dense+Softmax", _digits),
    "kws": ("keyword spotting: 1 s of 16 kHz synthetic audio -> log-mel front end (49x40) -> DS-CNN", _kws),
    "imu": ("gestures: 2 s of 3-axis 100 Hz synthetic accelerometer -> imu front end (7x24) -> Conv1D", _imu),
}


def train(name: str, seed: int = DEFAULT_SEED, epochs: int | None = None,
          progress: Callable[[str], None] = lambda s: None) -> Trained:
    if name not in RECIPES:
        raise TinygenError(f"unknown recipe '{name}'; choose one of: {', '.join(RECIPES)}")
    seed_everything(seed)
    return RECIPES[name][1](seed, epochs, progress)
