"""The compression child (``python -m tinygen.compress.child JOB DIR``): loads the model, prunes,
distils, fine-tunes with fake quantization, converts each candidate to int8 and predicts with it.

Same contract as :mod:`tinygen.intake.worker` (a user's model is only ever loaded in a child; the
parent reads ``JOB.result.json``; ``STEP`` lines name the step a crash happened in), plus one
``PROGRESS`` line per training epoch for the parent's progress bar.

Job ``candidates``: each candidate is a list of steps applied to the teacher in order,
``["prune", ratio | {layer: ratio}]``, ``["distill", width]``, ``["qat", null]``; a prefix shared
with an earlier candidate is reused, not trained again.  Outputs per candidate (B: the job's
``batch``, so that the runs of one ``--fit`` search do not overwrite each other): ``candB_N.keras``,
``candB_N.tflite``, ``candB_N.pred.npy`` (float model on the held-out samples) and its parameter count.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.intake import worker

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
        worker._step("prune")
        model = prune.prune(model, value)
        label = "fine-tuning the pruned model"
    elif op == "distill":
        worker._step("distill")
        return distill.distill(model, float(value), x, labels, task, epochs=n, seed=seed, lr=LR["distill"])
    elif op == "qat":
        worker._step("qat")
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
    worker._step("train")
    train.run(model, x, y, loss, epochs=n, lr=LR[op], seed=seed, label=label, forward=forward)
    return model


def _job_candidates(args: dict, work: Path, job: str) -> dict:
    import keras

    from tinygen.compress.train import is_probabilities
    from tinygen.intake import quantize as q

    start = time.monotonic()
    teacher = worker._load(args)
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
        worker._step("convert")
        raw = q.quantize(model, rep, per_channel_dense=bool(args["per_channel_dense"]))
        (work / f"{prefix}_{i}.tflite").write_bytes(raw)
        worker._step("predict")
        pred = np.asarray(model.predict(test, batch_size=256, verbose=0), dtype=np.float32)
        np.save(work / f"{prefix}_{i}.pred.npy", pred, allow_pickle=False)
        results.append({"label": cand["label"], "keras": path.name, "tflite": f"{prefix}_{i}.tflite",
                        "pred": f"{prefix}_{i}.pred.npy", "params": int(model.count_params())})
    return {"candidates": results}


JOBS = {"candidates": _job_candidates}

if __name__ == "__main__":
    from tinygen.compress.runner import STEPS

    # The worker's job loop with this module's jobs and steps (its own tables are left as they are).
    sys.exit(worker._child(*sys.argv[1:3], jobs={**worker.JOBS, **JOBS}, steps=STEPS))
