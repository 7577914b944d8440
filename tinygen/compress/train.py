"""The one training loop every compression step uses (child side: TensorFlow is loaded here).

Seeded (the child calls :func:`tinygen.intake.recipes.seed_everything`; batches are drawn from a
numpy generator seeded per step), and it says one ``PROGRESS`` line per epoch that the parent
turns into a progress bar (:func:`tinygen.compress.jobs.run`).
"""

from __future__ import annotations

import numpy as np


def progress_line(label: str, done: int, total: int, note: str = "") -> None:
    # Tabs separate the fields; the label is ours, never user text.
    from tinygen.common import child

    child.say(f"PROGRESS {label}\t{done}\t{total}\t{note}")


def is_probabilities(pred: np.ndarray) -> bool:
    """A classifier's outputs are probabilities (a Softmax at the end) rather than logits."""
    pred = np.asarray(pred, dtype=np.float64)
    return bool(pred.ndim == 2 and pred.shape[1] > 1 and pred.min() >= 0
                and np.allclose(pred.sum(axis=1), 1.0, atol=1e-3))


def loss_for(task: str, probs: bool, *, distill_temperature: float | None = None, alpha: float = 0.5):
    """loss(y, out): ``y`` holds the label in column 0 and the teacher's outputs after it.

    Classification: cross-entropy on the label, plus (distillation) the KL divergence between
    teacher and student softened by the temperature (times T^2, so its gradients keep their scale).
    Regression, or no labels: mean squared error to the target in column 0 / the teacher's outputs."""
    import tensorflow as tf

    def logits(out):
        return tf.math.log(tf.clip_by_value(out, 1e-7, 1.0)) if probs else out

    def loss(y, out):
        out = tf.reshape(out, (tf.shape(out)[0], -1))
        teacher = y[:, 1:]
        if task != "classification":
            target = teacher if distill_temperature is not None or task == "selfdistill" else y[:, :1]
            return tf.reduce_mean(tf.square(out - target))
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            tf.cast(y[:, 0], tf.int32), logits(out), from_logits=True))
        if distill_temperature is None:
            return ce
        t = distill_temperature
        soft_t = tf.nn.softmax(logits(teacher) / t)
        log_s = tf.nn.log_softmax(logits(out) / t)
        kl = tf.reduce_mean(tf.reduce_sum(soft_t * (tf.math.log(tf.clip_by_value(soft_t, 1e-7, 1.0)) - log_s),
                                          axis=1))
        return alpha * kl * t * t + (1 - alpha) * ce

    return loss


def targets(labels: np.ndarray | None, teacher_out: np.ndarray) -> np.ndarray:
    """Column 0 the label (or the first teacher output), then the teacher's outputs."""
    t = np.asarray(teacher_out, dtype=np.float32).reshape(len(teacher_out), -1)
    first = (np.asarray(labels, dtype=np.float32).reshape(len(t), -1)[:, :1] if labels is not None else t[:, :1])
    return np.concatenate([first, t], axis=1)


def run(model, x: np.ndarray, y: np.ndarray, loss, *, epochs: int, lr: float, seed: int, label: str,
        batch: int = 32, forward=None, after_step=None) -> float:
    """Adam over ``model.trainable_variables`` for ``epochs``; ``forward(x)`` replaces ``model(x,
    training=True)`` (QAT's fake-quantized pass).  Returns the last epoch's mean loss."""
    import tensorflow as tf

    if epochs <= 0:
        return float("nan")
    opt = tf.keras.optimizers.Adam(lr)
    variables = model.trainable_variables
    fwd = forward or (lambda xb: model(xb, training=True))

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            value = loss(yb, fwd(xb))
        opt.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    mean = float("nan")
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        losses = []
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            losses.append(float(step(x[idx], y[idx])))
            if after_step:
                after_step()
        mean = float(np.mean(losses))
        progress_line(label, epoch + 1, epochs, f"loss {mean:.4f}")
    return mean
