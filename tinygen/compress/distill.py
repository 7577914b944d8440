"""Distillation: a student ``width`` times as wide as the teacher in every prunable layer (the same
layer chain, freshly initialised; see :func:`tinygen.compress.prune.width_copy`) trained on the
teacher's softened outputs plus the labels (:func:`tinygen.compress.train.loss_for`).

Why a width-scaled copy rather than a different architecture: it has exactly the teacher's op set,
so what the teacher needed from the runtime and the board is all the student needs, and it works
for a user's model as for a recipe's.  Runs in the compression child.
"""

from __future__ import annotations

import numpy as np

from tinygen.compress import train
from tinygen.compress.prune import width_copy

TEMPERATURE = 4.0
ALPHA = 0.7  # weight of the teacher's soft outputs against the labels


def distill(teacher, width: float, x: np.ndarray, labels: np.ndarray | None, task: str, *, epochs: int,
            seed: int, lr: float = 0.01):
    student = width_copy(teacher, width)
    teacher_out = np.asarray(teacher.predict(x, batch_size=256, verbose=0), dtype=np.float32)
    probs = train.is_probabilities(teacher_out)
    if task == "classification":
        loss = train.loss_for(task, probs, distill_temperature=TEMPERATURE, alpha=ALPHA if labels is not None else 1.0)
    else:
        loss = train.loss_for("selfdistill", probs)
    train.run(student, x, train.targets(labels, teacher_out), loss, epochs=epochs, lr=lr, seed=seed,
              label=f"distilling a {width:g}x student")
    return student
