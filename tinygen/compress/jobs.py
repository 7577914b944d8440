"""The compression jobs: load the model, prune, distil, fine-tune with fake quantization, convert each
candidate to int8 and predict with it — in this command's worker (:mod:`tinygen.common.child`, the
same TensorFlow process that trained or converted the model), never in tinygen's own process.

:func:`run` is the parent side: it runs a job with :func:`tinygen.common.child.run_child` and turns
the job's ``PROGRESS`` lines (one per training epoch) into a progress bar for the ``progress(text)``
callback; a crash or a timeout is one line naming the step (this module's :data:`STEPS`).

Job ``candidates``: each candidate is a list of steps applied to the teacher in order,
``["prune", ratio | {layer: ratio}]``, ``["distill", width]``, ``["qat", null]``; a prefix shared
with an earlier candidate is reused, not trained again.  Outputs per candidate (B: the job's
``batch``, so that the runs of one ``--fit`` search do not overwrite each other): ``candB_N.keras``,
``candB_N.tflite``, ``candB_N.pred.npy`` (float model on the held-out samples) and its parameter count.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tinygen.common import child
from tinygen.common.errors import TinygenError
from tinygen.intake import jobs as tf_jobs

# The compression steps beside the TensorFlow jobs' (a copy: tinygen.intake.jobs's table is its own).
STEPS = {**tf_jobs.STEPS,
         "prune": ("TensorFlow", "pruning the model"), "distill": ("TensorFlow", "distilling a student"),
         "qat": ("TensorFlow", "setting up quantization-aware training"),
         "train": ("TensorFlow", "fine-tuning the compressed model")}
BAR = 24

DEFAULT_EPOCHS = {"prune": 15, "qat": 8, "distill": 40}
LR = {"prune": 0.003, "qat": 0.0005, "distill": 0.01}


def _array(work: Path, job: str, key: str):
    p = work / f"{job}.{key}.npy"
    return np.load(p, allow_pickle=False) if p.exists() else None


def _apply(model, step, *, x, labels, teacher_out, probs, task, epochs, seed, rep, per_channel_dense):
    from tinygen.compress import distill, prune, qat, train

    op, value = step
    n = int(epochs.get(op, DEFAULT_EPOCHS[op]))
    if op == "prune":
        child.step("prune")
        model = prune.prune(model, value)
        label = "fine-tuning the pruned model"
    elif op == "distill":
        child.step("distill")
        return distill.distill(model, float(value), x, labels, task, epochs=n, seed=seed, lr=LR["distill"])
    elif op == "qat":
        child.step("qat")
        label = "quantization-aware training"
    else:
        raise TinygenError(f"unknown compression step {op!r}")
    if labels is not None:
        loss = train.loss_for(task, probs)
    elif task == "classification":
        loss = train.loss_for(task, probs, distill_temperature=1.0, alpha=1.0)
    else:
        loss = train.loss_for("selfdistill", probs)
    y = train.targets(labels, teacher_out)
    forward = None
    if op == "qat":
        forward = qat.FakeQuantForward(model, rep[:64], per_channel_dense)
    child.step("train")
    train.run(model, x, y, loss, epochs=n, lr=LR[op], seed=seed, label=label, forward=forward)
    return model


def _job_candidates(args: dict, work: Path, job: str) -> dict:
    import keras

    from tinygen.compress.train import is_probabilities
    from tinygen.intake import quantize as q

    start = time.monotonic()
    teacher = tf_jobs.load_model(args)
    if hasattr(teacher, "fn"):
        raise TinygenError(f"{args['display']} is a SavedModel; compression needs a Keras model (.keras or .h5)",
                           exit_code=3)
    rep, test = _array(work, job, "rep"), _array(work, job, "test")
    x, labels = _array(work, job, "train_x"), _array(work, job, "train_y")
    teacher_out = np.asarray(teacher.predict(x, batch_size=256, verbose=0), dtype=np.float32)
    probs = is_probabilities(teacher_out)
    task = args["task"]
    epochs = args.get("epochs", {})
    cache: dict[str, Path] = {}
    results = []
    prefix = "cand" + str(int(args.get("batch", 0)))  # each run of a --fit search keeps its own files
    for i, cand in enumerate(args["candidates"]):
        if args.get("deadline_s") and time.monotonic() - start > args["deadline_s"]:
            results.append({"label": cand["label"], "skipped": "time limit"})
            continue
        model, done = teacher, []
        for step in cand["steps"]:
            done.append(step)
            key = json.dumps(done)
            if key in cache:
                model = keras.models.load_model(cache[key], compile=False)
                continue
            model = _apply(model, step, x=x, labels=labels, teacher_out=teacher_out, probs=probs, task=task,
                           epochs=epochs, seed=int(args.get("seed", 0)) + i, rep=rep,
                           per_channel_dense=bool(args["per_channel_dense"]))
            cache[key] = work / f"step{len(cache)}.keras"
            model.save(cache[key])
        path = work / f"{prefix}_{i}.keras"
        model.save(path)
        child.step("convert")
        raw = q.quantize(model, rep, per_channel_dense=bool(args["per_channel_dense"]))
        (work / f"{prefix}_{i}.tflite").write_bytes(raw)
        child.step("predict")
        pred = np.asarray(model.predict(test, batch_size=256, verbose=0), dtype=np.float32)
        np.save(work / f"{prefix}_{i}.pred.npy", pred, allow_pickle=False)
        results.append({"label": cand["label"], "keras": path.name, "tflite": f"{prefix}_{i}.tflite",
                        "pred": f"{prefix}_{i}.pred.npy", "params": int(model.count_params())})
    return {"candidates": results}


JOBS = {"candidates": _job_candidates}
BEFORE_JOB = tf_jobs.before_job  # a cleared Keras session and the job's seed, as the TensorFlow jobs


# ---------------------------------------------------------------- parent side

def bar(label: str, done: int, total: int, note: str = "") -> str:
    filled = BAR * done // max(total, 1)
    return f"{label} {'━' * filled}{'╌' * (BAR - filled)} {done}/{total} epochs {note}".rstrip()


def run(job: str, work: Path, args: dict, arrays: dict[str, np.ndarray], *, subject: str, timeout: float,
        progress: Callable[[str], None]) -> dict:
    """Run a compression job in this command's worker, drawing its progress."""

    def on_line(line: str) -> None:
        if line.startswith("PROGRESS "):
            parts = line[len("PROGRESS "):].split("\t")
            if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
                progress(bar(parts[0], int(parts[1]), int(parts[2]), parts[3]))
        elif line.startswith("STEP "):
            tool, doing = child.step_words(STEPS, line.split()[-1])
            progress(f"{doing} ({subject})")

    return child.run_child(__name__, job, work, args, arrays, steps=STEPS, subject=subject, timeout=timeout,
                           timeout_hint="try fewer epochs or a smaller model", on_line=on_line)
