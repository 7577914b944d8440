"""Where a model enters: a built-in recipe (trained here) or the user's own file.

``source_from_recipe`` / ``source_from_user`` return a :class:`Source`; ``convert`` turns
it into int8 .tflite bytes in the :mod:`tinygen.intake.jobs` child (TensorFlow never
loads a user's model in this process).  Nothing here writes outside a private work
directory.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinygen.common import child
from tinygen.common.errors import TinygenError
from tinygen.tflite.int8 import check_int8
from tinygen.tflite.model import read_model


@contextlib.contextmanager
def quiet_native():
    """Silence stdout/stderr at the file-descriptor level (TensorFlow's C++ and Keras' export
    chatter), so the CLI's own output stays readable.  Python exceptions still propagate."""
    with tempfile.TemporaryFile() as sink, child.native_output_to(sink):
        yield


@dataclass
class Source:
    """What the pipeline starts from, after loading/training.

    A float model is never held in this process: ``model_path`` is a private copy
    (or the saved recipe model) that the :mod:`tinygen.intake.jobs` child loads, and
    ``work`` is the private directory holding it."""
    name: str
    description: str
    task: str
    tflite: bytes | None = None
    model_path: Path | None = None  # staged .keras/.h5 or SavedModel directory
    model_kind: str | None = None  # "keras" | "savedmodel"
    work: object | None = field(default=None, repr=False)  # tinygen.intake.jobs.Workdir
    hint: str | None = None  # what to try if the converter crashes (recurrent layers)
    x_rep: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    float_pred: np.ndarray | None = field(default=None, repr=False)  # float model on x_test, from the worker
    class_names: list[str] | None = None  # a recipe's output labels (the model library's class labels)
    recipe: str | None = None  # the built-in recipe's name; None for a user's model
    layers: list | None = None  # the Keras model's [layer name, class] pairs (refusals name them)
    # Labelled training samples for fine-tuning (tinygen.compress): a recipe's training split, or the
    # user's calibration split with its labels (y_train None: the user gave none).
    x_train: np.ndarray | None = field(default=None, repr=False)
    y_train: np.ndarray | None = field(default=None, repr=False)
    quality_extra: dict | None = None  # an ONNX model: its converted float graph vs onnxruntime (onnx_model)
    output_shape: tuple[int, ...] | None = None  # the model output without the batch dimension (None: unknown)
    notes: list[str] = field(default_factory=list)  # what intake changed in the user's data, one line each
    # The front end (tinygen.intake.frontend): its FrontendSpec JSON, and raw int16 test samples if known.
    frontend: dict | None = None
    raw_test: np.ndarray | None = field(default=None, repr=False)


def source_from_recipe(recipe: str, seed: int, epochs: int | None, progress: Callable[[str], None]) -> Source:
    from tinygen.intake.jobs import train_recipe

    # Trained in the worker that then converts it (TensorFlow imported once), or from tinygen's cache.
    tr = train_recipe(recipe, seed, epochs)
    a = tr.arrays
    return Source(tr.name, f"recipe:{recipe} (seed {seed})", tr.task, model_path=tr.model_path, model_kind="keras",
                  work=tr.work, x_rep=a["x_rep"], x_test=a.get("x_test"), y_test=a.get("y_test"),
                  class_names=tr.class_names, recipe=recipe, x_train=a.get("x_train"), y_train=a.get("y_train"),
                  output_shape=tr.output_shape, frontend=tr.frontend, raw_test=a.get("raw_test"))


def source_from_user(model_path: str, data_path: str | None, task: str | None = None) -> Source:
    """``task``: the user's ``--task`` (None: guessed later); it decides whether labels are class
    labels (:func:`tinygen.intake.loader.labels_for_model`).  What was changed in the data (channels
    moved last, one-hot labels) is in ``Source.notes``."""
    from tinygen.intake.loader import Dataset, fit_to_input, labels_for_model, load_data, model_kind, stage_model
    from tinygen.intake.jobs import Workdir, recurrent_hint, run_job

    path = Path(model_path)
    kind = model_kind(path)
    name = path.stem if kind != "savedmodel" else path.name
    notes: list[str] = []
    if kind == "tflite":
        data = load_data(data_path) if data_path else None
        m = read_model(path)
        raw = m.raw
        check_int8(m, str(path))
        out_shape = tuple(int(d) for d in m.output_tensor().shape[1:])
        src = Source(name, f"{path.name} (int8 .tflite, used as is)", "unknown", tflite=raw, output_shape=out_shape)
        if data is not None:
            x = fit_to_input(data.x, m.input_tensor().shape, data.source, notes).astype(np.float32)
            y = labels_for_model(data.y, out_shape, data.source, task, notes)
            src.x_rep, src.x_test, src.y_test = Dataset(x, y).split()
        src.notes = notes
        return src
    if not data_path:
        raise TinygenError(f"--data is required with a float model ({path.name}): int8 quantization needs "
                           "representative samples (.npz with x[, y], .npy or .csv)")
    work = Workdir()
    try:
        staged = stage_model(path, kind, work.path)
        desc = run_job("describe", work.path, {"kind": kind, "model": str(staged), "display": path.name},
                       subject=path.name, timeout=600)
        hint = recurrent_hint(desc.get("layers", []))
        # The data file is read after the model is described, so a model tinygen cannot take (two
        # inputs, an Embedding) is refused for that, not for a data layout made to suit it.
        data = load_data(data_path)
        in_shape = tuple(desc["input_shape"])
        if any(d < 0 for d in in_shape):
            raise TinygenError(f"{path.name}: the model input has an unknown dimension "
                               f"{tuple(d if d >= 0 else None for d in in_shape)}; give the Keras Input a fixed "
                               "shape" + (" (a fixed sequence length for a recurrent layer)" if hint else ""))
        x = fit_to_input(data.x, in_shape, data.source, notes).astype(np.float32)
        out_shape = desc.get("output_shape")
        out_shape = tuple(int(d) for d in out_shape) if out_shape is not None and all(d >= 0 for d in out_shape) \
            else None
        y = labels_for_model(data.y, out_shape, data.source, task, notes)
    except BaseException:
        work.cleanup()
        raise
    src = Source(name, f"{path.name} ({'SavedModel' if kind == 'savedmodel' else 'Keras'})", "unknown",
                 model_path=staged, model_kind=kind, work=work, hint=hint, layers=desc.get("layers") or None,
                 output_shape=out_shape, notes=notes)
    src.x_rep, src.x_test, src.y_test = Dataset(x, y).split()
    src.x_train = src.x_rep
    src.y_train = y[:len(src.x_rep)] if y is not None else None
    return src


def convert(src: Source, per_channel_dense: bool, runtime_ops=None) -> bytes:
    """int8 .tflite bytes (and src.float_pred) from the worker child; the private copy is removed after.
    ``runtime_ops``: the ops the chosen runtime runs (a refusal offers only replacements made of them)."""
    from tinygen.intake.loader import CALIBRATION_SAMPLES
    from tinygen.intake.jobs import run_job

    arrays = {"rep": np.asarray(src.x_rep[:CALIBRATION_SAMPLES], dtype=np.float32)}  # all the child uses
    if src.x_test is not None:
        arrays["test"] = np.asarray(src.x_test, dtype=np.float32)
    work = src.work.path
    try:
        result = run_job("convert", work, {"kind": src.model_kind, "model": str(src.model_path),
                                           "display": src.name, "per_channel_dense": per_channel_dense,
                                           "runtime_ops": sorted(runtime_ops) if runtime_ops else None},
                         arrays, subject=src.name, timeout=1800, hint=src.hint)
        raw = (work / result["model"]).read_bytes()
        if result.get("predictions"):
            src.float_pred = np.load(work / "convert.pred.npy", allow_pickle=False)
        src.quality_extra = result.get("quality_extra") or src.quality_extra
    finally:
        src.work.cleanup()
    return raw
