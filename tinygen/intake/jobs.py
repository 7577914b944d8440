"""TensorFlow on the user's model, in a child process (jobs run by :func:`tinygen.common.child.run_child`).

Loading a Keras/SavedModel model, the TFLite converter (with its int8
calibration) and the float model's predictions are native code fed with user
input; some inputs make them die with SIGSEGV/SIGABRT (an LSTM layer, Inf in
the calibration data).  Run in tinygen's own process, that kills tinygen with
no message.  Here each job runs in a child: the parent writes the job's
arguments (``JOB.json``) and arrays (``.npy``) into a private temporary
directory, the child writes ``JOB.result.json`` and its outputs there, and
says ``STEP <name>`` as it enters each step, so a crash is reported as one
line naming the step and the signal.

Jobs:

* ``describe``: input/output shape and dtype, and for Keras models the layer
  classes (recurrent layers get a specific hint if a later step crashes).
* ``convert``: int8 quantization (:mod:`tinygen.intake.quantize`) with calibration
  samples, then the float model's predictions on the held-out samples.
* ``train``: a built-in recipe (:mod:`tinygen.intake.recipes`) trained and saved as .keras, with its
  data split as .npy (so tinygen's own process never imports TensorFlow).

The jobs run in this command's worker (:mod:`tinygen.common.child`: started once, fed jobs, so
TensorFlow is imported once per command, not once per step).  Each job starts from a cleared Keras
session and the job's seed (:data:`BEFORE_JOB`), so its output does not depend on what the worker
ran before (the same bytes as a fresh child).  A crash ends that worker only and is reported as one
line naming the step.

Successful ``convert`` jobs of Keras/SavedModel models and ``train`` jobs are kept in tinygen's
cache (:mod:`tinygen.common.cache`), keyed by the model's bytes, the arrays and the options.

The child is seeded and single-threaded (:func:`tinygen.intake.recipes.seed_everything`)
so the same command still gives byte-identical output.  Its stderr is captured
(TensorFlow's C++ chatter) and shown only with ``TINYGEN_DEBUG=1``.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.common import child
from tinygen.common.errors import UnsupportedModel

# What the user reads for a crash in each step: "<tool> crashed (SIGSEGV) while <doing>".
STEPS = {
    "start": ("the TensorFlow worker", "starting"),
    "load": ("TensorFlow", "loading the model"),
    "describe": ("TensorFlow", "reading the model's input and output"),
    "convert": ("the TFLite converter", "converting the model"),
    "calibrate": ("the TFLite converter", "calibrating int8 ranges"),
    "quantize": ("the TFLite converter", "quantizing to int8"),
    "predict": ("TensorFlow", "running the float model on the held-out samples"),
    "onnx_load": ("the ONNX reader", "reading the ONNX model"),
    "onnx2tf": ("onnx2tf", "converting the ONNX model to TensorFlow"),
    "recipe": ("TensorFlow", "training the recipe model"),
}
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


class Workdir:
    """A private (0700) temporary directory for one build's jobs, removed by :meth:`cleanup`."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tinygen-work-")
        self.path = Path(self._tmp.name)

    def cleanup(self) -> None:
        self._tmp.cleanup()


def run_job(job: str, work: Path, args: dict, arrays: dict[str, np.ndarray] | None = None, *,
            subject: str, timeout: float, hint: str | None = None) -> dict:
    """Run ``job`` in this command's worker (:func:`tinygen.common.child.run_child`); return its result
    dict, or raise a one-line TinygenError.

    The child's own refusals come back with their exit code (2 bad input, 3 unsupported);
    a crash or a timeout is a :class:`ToolFailure` (exit 4) naming the step.  A ``convert`` job
    already done with the same model bytes, arrays and options is taken from tinygen's cache.
    """
    ck = _cache_key(job, args, arrays)
    if ck is not None:
        cached = _from_cache(job, ck, work)
        if cached is not None:
            return cached
    result = child.run_child(__name__, job, work, args, arrays, steps=STEPS, subject=subject, timeout=timeout,
                             hint=hint)
    if ck is not None:
        _to_cache(job, ck, work, result)
    return result


# ---------------------------------------------------------------- cache (convert jobs)

def _cache_key(job: str, args: dict, arrays: dict | None) -> str | None:
    from tinygen.common import cache

    if job != "convert" or args.get("kind") not in ("keras", "savedmodel") or cache.current() is None:
        return None
    try:
        inputs = dict(args, model=cache.path_digest(Path(args["model"])))
    except OSError:
        return None
    inputs["arrays"] = {k: cache.digest(np.asarray(v)) for k, v in sorted((arrays or {}).items()) if v is not None}
    return cache.key(job, inputs)


def _plain(name) -> bool:
    return isinstance(name, str) and name and "/" not in name and "\0" not in name and name not in (".", "..")


def _from_cache(job: str, ck: str, work: Path) -> dict | None:
    from tinygen.common import cache

    parts = cache.get(job, ck)
    if parts is None:
        return None
    try:
        result = json.loads(parts.pop("result.json"))
        if not isinstance(result, dict) or not all(_plain(n) for n in parts):
            return None
    except (KeyError, ValueError):
        return None
    for name, data in parts.items():
        (work / name).write_bytes(data)
    return result


def _to_cache(job: str, ck: str, work: Path, result: dict) -> None:
    from tinygen.common import cache

    names = [result["model"]] + ([f"{job}.pred.npy"] if result.get("predictions") else [])
    try:
        parts = {"result.json": json.dumps(result, sort_keys=True).encode()}
        parts.update({n: (work / n).read_bytes() for n in names})
    except (OSError, KeyError):
        return
    cache.put(job, ck, parts)


# ---------------------------------------------------------------- recipes (trained in the worker)

TRAIN_ARRAYS = ("x_rep", "x_test", "y_test", "x_train", "y_train", "raw_test")


@dataclass
class TrainedRecipe:
    """A recipe's model (saved .keras in ``work``) and data, trained by the worker or from the cache."""
    name: str
    task: str
    model_path: Path
    work: Workdir = field(repr=False)
    arrays: dict = field(repr=False)  # TRAIN_ARRAYS -> np.ndarray
    class_names: list[str] | None = None
    output_shape: tuple[int, ...] | None = None
    frontend: dict | None = None  # a front-end recipe's FrontendSpec JSON (its raw test clips: arrays["raw_test"])


def train_recipe(recipe: str, seed: int, epochs: int | None) -> TrainedRecipe:
    """Train ``recipe`` in a warm worker (which then converts it), or take it from tinygen's cache."""
    from tinygen.common import cache

    work = Workdir()
    try:
        ck = cache.key("recipe", {"recipe": recipe, "seed": int(seed), "epochs": epochs}) \
            if cache.current() is not None else None
        got = _recipe_from_cache(ck, work) if ck is not None else None
        if got is not None:
            return got
        result = run_job("train", work.path, {"recipe": recipe, "seed": int(seed), "epochs": epochs},
                         subject=f"recipe '{recipe}'", timeout=3600)
        model_path = work.path / result["model"]
        arrays = {k: np.load(work.path / f"train.{k}.npy", allow_pickle=False) for k in TRAIN_ARRAYS
                  if (work.path / f"train.{k}.npy").exists()}
        if ck is not None:
            parts = {"result.json": json.dumps(result, sort_keys=True).encode(), "model.keras": model_path.read_bytes()}
            parts.update({f"{k}.npy": (work.path / f"train.{k}.npy").read_bytes() for k in arrays})
            cache.put("recipe", ck, parts)
    except BaseException:
        work.cleanup()
        raise
    return _trained(result, model_path, work, arrays)


def _trained(result: dict, model_path: Path, work: Workdir, arrays: dict) -> TrainedRecipe:
    shape = result.get("output_shape")
    return TrainedRecipe(result["name"], result["task"], model_path, work, arrays, result.get("class_names"),
                         tuple(int(d) for d in shape) if shape is not None else None, result.get("frontend"))


def _recipe_from_cache(ck: str, work: Workdir) -> TrainedRecipe | None:
    from tinygen.common import cache

    parts = cache.get("recipe", ck)
    if parts is None:
        return None
    try:
        result = json.loads(parts["result.json"])
        if not _plain(result.get("model")):
            return None
        arrays = {k: np.load(io.BytesIO(parts[f"{k}.npy"]), allow_pickle=False) for k in TRAIN_ARRAYS
                  if f"{k}.npy" in parts}
        model_path = work.path / result["model"]
        model_path.write_bytes(parts["model.keras"])
    except (KeyError, ValueError, TypeError, OSError):
        return None
    return _trained(result, model_path, work, arrays)


def recurrent_hint(layers: list[list[str]]) -> str | None:
    """What to try when a model with recurrent layers crashes the converter (checked with TF 2.21:
    a recurrent loop crashes while calibrating; unrolled LSTM/GRU/SimpleRNN convert to int8, and
    tinygen.intake.recurrent unrolls them itself wherever it can rebuild the model)."""
    rec = [(name, cls) for name, cls in layers if cls in RECURRENT]
    if not rec:
        return None
    plain = [r for r in rec if r[1] in ("LSTM", "GRU", "SimpleRNN")]  # the cell inside a Bidirectional
    name, cls = (plain or rec)[0]
    name = "".join(c if c.isprintable() else "?" for c in name)[:40]  # the model author's text
    if cls in ("LSTM", "GRU", "SimpleRNN"):
        fix = f"rebuild it with {cls}(..., unroll=True) and a fixed sequence length (that converts to int8)"
    else:
        fix = "use GRU(..., unroll=True) with a fixed sequence length instead"
    return (f"the model has a recurrent {cls} layer ('{name}'), which the int8 converter cannot calibrate as a "
            f"loop: {fix}, or Conv1D/Dense layers, or pass an int8 .tflite you converted yourself")


# ---------------------------------------------------------------- child side

def load_model(args: dict):
    """(keras model or SavedModelFn) from the private copy named in ``args`` (in a child)."""
    from tinygen.intake import loader
    child.step("load")
    if args["kind"] == "savedmodel":
        return loader.load_saved_model(Path(args["model"]), args["display"])
    return loader.load_keras(Path(args["model"]), args["display"])


def _walk_layers(model) -> list[list[str]]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append([layer.name, type(layer).__name__])
        if hasattr(layer, "layers"):
            out.extend(_walk_layers(layer))
        inner = getattr(layer, "layer", None) or getattr(layer, "forward_layer", None)
        if inner is not None:
            out.append([inner.name, type(inner).__name__])
    return out


def _check_io(display: str, model, layers) -> None:
    from tinygen.tflite.keras_names import check_keras_io

    dtypes = [str(getattr(i.dtype, "name", i.dtype)) for i in model.inputs]
    check_keras_io(display, len(model.inputs), len(model.outputs), dtypes[0] if dtypes else "float32", layers)


def _job_describe(args: dict, work: Path, job: str) -> dict:
    if args["kind"] == "onnx":
        from tinygen.intake import onnx_model
        return onnx_model.job_describe(args, work, child.step)
    model = load_model(args)
    child.step("describe")
    if args["kind"] == "savedmodel":
        from tinygen.tflite.keras_names import check_keras_io

        check_keras_io(args["display"], 1, 1, str(model.input_dtype), [])
        return {"input_shape": list(model.input_shape), "input_dtype": model.input_dtype, "layers": []}
    layers = _walk_layers(model)
    _check_io(args["display"], model, layers)
    inp, outp = model.inputs[0], model.outputs[0]
    shape = [int(d) if d is not None else -1 for d in tuple(inp.shape)[1:]]
    return {"input_shape": [1] + shape, "input_dtype": str(getattr(inp.dtype, "name", inp.dtype)),
            "output_shape": [int(d) if d is not None else -1 for d in tuple(outp.shape)[1:]], "layers": layers}


def _job_convert(args: dict, work: Path, job: str) -> dict:
    if args["kind"] == "onnx":
        from tinygen.intake import onnx_model
        return onnx_model.job_convert(args, work, job, child.step)
    from tinygen.intake import quantize as q
    model = load_model(args)
    rep = np.load(work / f"{job}.rep.npy", allow_pickle=False)
    child.step("convert")

    def on_calibrate(done: bool) -> None:
        child.step("quantize" if done else "calibrate")

    try:
        raw = q.quantize(model, rep, per_channel_dense=bool(args["per_channel_dense"]), on_calibrate=on_calibrate,
                         layers=_walk_layers(model), runtime_ops=args.get("runtime_ops"))
    except UnsupportedModel as exc:  # say which model: the user may build several
        raise UnsupportedModel(f"{args['display']}: {exc}") from None
    (work / f"{job}.model.tflite").write_bytes(raw)
    test_path = work / f"{job}.test.npy"
    if test_path.exists():
        child.step("predict")
        x = np.load(test_path, allow_pickle=False)
        if hasattr(model, "fn"):
            y = model.predict(x)
        else:
            y = np.asarray(model.predict(x, batch_size=64, verbose=0), dtype=np.float32)
        np.save(work / f"{job}.pred.npy", np.asarray(y, dtype=np.float32), allow_pickle=False)
    return {"model": f"{job}.model.tflite", "predictions": test_path.exists()}


def _job_train(args: dict, work: Path, job: str) -> dict:
    from tinygen.intake.recipes import train

    child.step("recipe")
    tr = train(args["recipe"], seed=int(args["seed"]), epochs=args.get("epochs"))
    tr.model.save(work / f"{tr.name}.keras")
    for k in TRAIN_ARRAYS:
        arr = getattr(tr, k)
        if arr is not None:
            np.save(work / f"{job}.{k}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    return {"name": tr.name, "task": tr.task, "model": f"{tr.name}.keras", "class_names": tr.class_names,
            "output_shape": [int(d) for d in tr.model.outputs[0].shape[1:]], "frontend": tr.frontend}


JOBS = {"describe": _job_describe, "convert": _job_convert, "train": _job_train}


def preload() -> None:
    """What :func:`tinygen.common.child.prestart` has the worker import before its first job: TensorFlow,
    Keras and the modules the jobs run (3.5 s of CPU; the TensorFlow runtime itself is not started, so
    :func:`~tinygen.intake.recipes.seed_everything` still sets one thread per op)."""
    from tinygen.intake.recipes import import_tensorflow

    import_tensorflow()  # as the first job would (seed_everything), without Keras's optional extras
    import tinygen.intake.quantize  # noqa: F401


PRELOAD = preload


def will_need_tensorflow(model, recipe: str | None, seed: int, epochs: int | None) -> bool:
    """Whether a build of ``model`` (a path) or ``recipe`` will run a TensorFlow job: a user's float
    model is always described; a recipe is trained unless tinygen's cache holds it (then its conversion
    is very likely cached too).  An int8 .tflite needs none.  A guess only (it decides when the worker
    starts importing TensorFlow), so bad arguments answer False and are refused later as usual."""
    from tinygen.common import cache
    from tinygen.intake.recipes import DEFAULT_RECIPE, RECIPES

    if model is not None:
        return Path(str(model)).suffix.lower() != ".tflite"
    recipe = recipe or DEFAULT_RECIPE
    if recipe not in RECIPES or not isinstance(seed, int) or seed < 0:
        return False
    if cache.current() is None:
        return True
    try:
        ck = cache.key("recipe", {"recipe": recipe, "seed": int(seed), "epochs": epochs})
    except (TypeError, ValueError):
        return False
    return not cache.exists("recipe", ck)


def before_job(job: str, args: dict) -> None:
    """Forget what an earlier job of this worker left in Keras (layer name counters, graphs) and seed
    the job, so its output is the bytes a fresh process would give."""
    if job == "describe" and args.get("kind") == "onnx":  # reading an ONNX graph needs no TensorFlow
        return
    from tinygen.intake.recipes import import_tensorflow, seed_everything

    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import_tensorflow().keras.backend.clear_session()
    seed_everything(int(args.get("seed", 0)))


BEFORE_JOB = before_job
