"""Built-in training recipes: seeded, offline, small.

Each recipe returns a :class:`Trained` value: the float Keras model plus its
data split into train / representative (calibration) / test, so quantization
and reporting never see the test split during calibration.

- ``sine``: regression y = sin(x) on [0, 2π], the TFLM hello-world analogue.
- ``digits``: 8x8 handwritten digits shipped inside scikit-learn (1,797 real
  samples, no download), classified by Conv2D + DepthwiseConv2D + pooling +
  Dense + Softmax.
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


def seed_everything(seed: int) -> None:
    """Make Keras training repeatable: same seed, same weights, same bytes."""
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
    import tensorflow as tf

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
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss="mse")
    progress("training sine (regression)")
    model.fit(x_train, y_train, epochs=epochs or 40, batch_size=64, verbose=0, shuffle=True)
    return Trained("sine", "regression", model, x[1600:1800], x_test, y_test, x_train=x_train, y_train=y_train)


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


RECIPES: dict[str, tuple[str, Callable[..., Trained]]] = {
    "sine": ("regression y=sin(x), 2 hidden Dense layers (TFLM hello-world analogue)", _sine),
    "digits": ("8x8 handwritten digits (scikit-learn), Conv2D+DepthwiseConv2D+pool+Dense+Softmax", _digits),
}


def train(name: str, seed: int = DEFAULT_SEED, epochs: int | None = None,
          progress: Callable[[str], None] = lambda s: None) -> Trained:
    if name not in RECIPES:
        raise TinygenError(f"unknown recipe '{name}'; choose one of: {', '.join(RECIPES)}")
    seed_everything(seed)
    return RECIPES[name][1](seed, epochs, progress)
