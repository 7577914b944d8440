"""TensorFlow on the user's model, in a child process (``python -m tinygen.intake.worker JOB DIR``).

Loading a Keras/SavedModel model, the TFLite converter (with its int8
calibration) and the float model's predictions are native code fed with user
input; some inputs make them die with SIGSEGV/SIGABRT (an LSTM layer, Inf in
the calibration data).  Run in tinygen's own process, that kills tinygen with
no message.  Here each job runs in a child: the parent writes the job's
arguments (``JOB.json``) and arrays (``.npy``) into a private temporary
directory, the child writes ``JOB.result.json`` and its outputs there, and
prints ``STEP <name>`` on stdout as it enters each step, so a crash is
reported as one line naming the step and the signal.

Jobs:

* ``describe``: input/output shape and dtype, and for Keras models the layer
  classes (recurrent layers get a specific hint if a later step crashes).
* ``convert``: int8 quantization (:mod:`tinygen.intake.quantize`) with calibration
  samples, then the float model's predictions on the held-out samples.
* ``train``: a built-in recipe (:mod:`tinygen.intake.recipes`) trained and saved as .keras, with its
  data split as .npy (so tinygen's own process never imports TensorFlow).

One warm worker per work directory: the first job starts ``python -m tinygen.intake.worker
--serve DIR``, later jobs of the same build (describe or train, then convert) are fed to it on
its stdin (one job name a line; it answers ``DONE <job>``), so TensorFlow is imported once per
build, not once per step.  Each job starts from a cleared Keras session and the job's seed, so
a job's output does not depend on what the worker ran before (the same bytes as a fresh child).
A crash ends that worker only and is reported as one line naming the step, as before;
:meth:`Workdir.cleanup` stops it.

Successful ``convert`` jobs of Keras/SavedModel models and ``train`` jobs are kept in tinygen's
cache (:mod:`tinygen.common.cache`), keyed by the model's bytes, the arrays and the options.

The child is seeded and single-threaded (:func:`tinygen.intake.recipes.seed_everything`)
so the same command still gives byte-identical output.  Its stderr is captured
(TensorFlow's C++ chatter) and shown only with ``TINYGEN_DEBUG=1``.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.common import child
from tinygen.common.errors import TinygenError, ToolFailure, UnsupportedModel

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
        w = _LIVE.pop(str(self.path), None)
        if w is not None:
            w.close()
        self._tmp.cleanup()


def crash_message(step: str, rc: int, subject: str, hint: str | None) -> str:
    """A crash of this worker in ``step``, in the one wording (tinygen.common.child)."""
    return child.crash_message(STEPS, step, rc, subject, hint)


def stage_job(job: str, work: Path, args: dict, arrays: dict | None) -> tuple[Path, dict]:
    """Write ``job``'s arguments and arrays into ``work`` for a child (this worker or
    tinygen.compress.child); returns where its result will be and the child's environment."""
    for key, arr in (arrays or {}).items():
        if arr is not None:
            np.save(work / f"{job}.{key}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    (work / f"{job}.json").write_text(json.dumps(args))
    result_path = work / f"{job}.result.json"
    result_path.unlink(missing_ok=True)
    env = dict(os.environ)
    if not os.environ.get("TINYGEN_DEBUG"):
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONHASHSEED"] = "0"
    return result_path, env


def run_job(job: str, work: Path, args: dict, arrays: dict[str, np.ndarray] | None = None, *,
            subject: str, timeout: float, hint: str | None = None) -> dict:
    """Run ``job`` in the work directory's warm worker (started on first use); return its result dict,
    or raise a one-line TinygenError.

    The child's own refusals come back with their exit code (2 bad input, 3 unsupported);
    a crash or a timeout is a :class:`ToolFailure` (exit 4) naming the step.  A ``convert`` job
    already done with the same model bytes, arrays and options is taken from tinygen's cache.
    """
    ck = _cache_key(job, args, arrays)
    if ck is not None:
        cached = _from_cache(job, ck, work)
        if cached is not None:
            return cached
    result_path, env = stage_job(job, work, args, arrays)
    w = _LIVE.get(str(work))
    if w is None or w.proc.poll() is not None:
        w = _LIVE[str(work)] = WarmWorker(work, env)
    try:
        ok, lines, rc = w.run(job, timeout)
    except subprocess.TimeoutExpired as exc:
        _LIVE.pop(str(work), None)
        step = child.last_step(exc.stdout)
        tool, doing = child.step_words(STEPS, step)
        raise ToolFailure(f"{tool} timed out after {timeout:.0f} s while {doing} for {subject}; "
                          "try a smaller model or fewer samples") from None
    if not ok:
        _LIVE.pop(str(work), None)
    if ok and result_path.exists():
        result = json.loads(result_path.read_text())
        if "error" in result:
            raise TinygenError(result["error"], exit_code=int(result.get("exit_code", 4)))
        if ck is not None:
            _to_cache(job, ck, work, result)
        return result
    raise ToolFailure(crash_message(child.last_step("\n".join(lines)), rc, subject, hint))


_LIVE: dict[str, "WarmWorker"] = {}  # work directory -> its worker


class WarmWorker:
    """One ``python -m tinygen.intake.worker --serve DIR`` child, fed one job at a time."""

    def __init__(self, work: Path, env: dict) -> None:
        self._err = tempfile.TemporaryFile()  # TensorFlow's chatter; shown with TINYGEN_DEBUG=1
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "tinygen.intake.worker", "--serve", str(work)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env)
        self._buf = b""

    def run(self, job: str, timeout: float) -> tuple[bool, list[str], int]:
        """(finished, the job's protocol lines, exit status if the worker died); raises TimeoutExpired."""
        lines: list[str] = []
        try:
            self.proc.stdin.write(f"{job}\n".encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False, lines, self._reap()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    raw, self._buf = self._buf.split(b"\n", 1)
                    line = raw.decode(errors="replace")
                    if line == f"DONE {job}":
                        self._debug()
                        return True, lines, 0
                    lines.append(line)
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.close()
                    raise subprocess.TimeoutExpired("worker", timeout, output="\n".join(lines))
                chunk = os.read(fd, 65536)
                if not chunk:
                    return False, lines, self._reap()
                self._buf += chunk

    def _reap(self) -> int:
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self._debug()
        return rc

    def _debug(self) -> None:
        if os.environ.get("TINYGEN_DEBUG"):
            self._err.seek(0)
            sys.stderr.write(self._err.read().decode(errors="replace"))
        self._err.seek(0)
        self._err.truncate()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the worker ends its loop at end of input
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._err):
            try:
                f.close()
            except OSError:
                pass


@atexit.register
def _stop_all() -> None:
    for w in list(_LIVE.values()):
        w.close()
    _LIVE.clear()


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

_current_step = ["start"]
_proto: list = [None]  # the warm worker's protocol stream (None: stdout, as tinygen.compress.child uses)


def _step(name: str) -> None:
    _current_step[0] = name  # Python-level errors name the step too
    print(f"STEP {name}", flush=True, file=_proto[0] or sys.stdout)


def _load(args: dict):
    """(keras model or SavedModelFn) from the private copy named in ``args``."""
    from tinygen.intake import loader
    _step("load")
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
        return onnx_model.job_describe(args, work, _step)
    model = _load(args)
    _step("describe")
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
        return onnx_model.job_convert(args, work, job, _step)
    from tinygen.intake import quantize as q
    model = _load(args)
    rep = np.load(work / f"{job}.rep.npy", allow_pickle=False)
    _step("convert")

    def on_calibrate(done: bool) -> None:
        _step("quantize" if done else "calibrate")

    try:
        raw = q.quantize(model, rep, per_channel_dense=bool(args["per_channel_dense"]), on_calibrate=on_calibrate,
                         layers=_walk_layers(model), runtime_ops=args.get("runtime_ops"))
    except UnsupportedModel as exc:  # say which model: the user may build several
        raise UnsupportedModel(f"{args['display']}: {exc}") from None
    (work / f"{job}.model.tflite").write_bytes(raw)
    test_path = work / f"{job}.test.npy"
    if test_path.exists():
        _step("predict")
        x = np.load(test_path, allow_pickle=False)
        if hasattr(model, "fn"):
            y = model.predict(x)
        else:
            y = np.asarray(model.predict(x, batch_size=64, verbose=0), dtype=np.float32)
        np.save(work / f"{job}.pred.npy", np.asarray(y, dtype=np.float32), allow_pickle=False)
    return {"model": f"{job}.model.tflite", "predictions": test_path.exists()}


def _job_train(args: dict, work: Path, job: str) -> dict:
    from tinygen.intake.recipes import train

    _step("recipe")
    tr = train(args["recipe"], seed=int(args["seed"]), epochs=args.get("epochs"))
    tr.model.save(work / f"{tr.name}.keras")
    for k in TRAIN_ARRAYS:
        arr = getattr(tr, k)
        if arr is not None:
            np.save(work / f"{job}.{k}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    return {"name": tr.name, "task": tr.task, "model": f"{tr.name}.keras", "class_names": tr.class_names,
            "output_shape": [int(d) for d in tr.model.outputs[0].shape[1:]], "frontend": tr.frontend}


JOBS = {"describe": _job_describe, "convert": _job_convert, "train": _job_train}


def _child(job: str, work_dir: str, jobs: dict | None = None, steps: dict | None = None) -> int:
    """Run one job in this process (a child). Another child module (tinygen.compress.child) passes
    its own ``jobs`` and ``steps`` tables; nothing rewrites this module's."""
    import faulthandler

    faulthandler.enable()  # a native crash leaves the Python stack on stderr (shown with TINYGEN_DEBUG=1)
    _step("start")
    _one_job(job, Path(work_dir), jobs or JOBS, steps or STEPS)
    return 0


def _serve(work_dir: str) -> int:
    """The warm worker: run each job named on stdin, answer ``DONE <job>`` once its result is written."""
    import faulthandler

    faulthandler.enable()
    _proto[0] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout (native code, Keras) goes with stderr
    sys.stdout = sys.stderr
    work = Path(work_dir)
    _step("start")
    for line in sys.stdin:
        job = line.strip()
        if job not in JOBS:
            continue
        _one_job(job, work, JOBS, STEPS)
        print(f"DONE {job}", flush=True, file=_proto[0])
    return 0


def _fresh_session() -> None:
    """Forget what an earlier job of this worker left in Keras (layer name counters, graphs)."""
    if "keras" in sys.modules or "tensorflow" in sys.modules:
        import tensorflow as tf

        tf.keras.backend.clear_session()


def _one_job(job: str, work: Path, jobs: dict, steps: dict) -> None:
    _current_step[0] = "start"
    args = json.loads((work / f"{job}.json").read_text())
    from tinygen.intake.recipes import seed_everything

    if not (job == "describe" and args.get("kind") == "onnx"):  # reading an ONNX graph needs no TensorFlow
        _fresh_session()
        seed_everything(int(args.get("seed", 0)))
    try:
        result = jobs[job](args, work, job)
    except TinygenError as exc:
        result = {"error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:  # TensorFlow raises assorted errors on models it cannot handle
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        tool, doing = child.step_words(steps, _current_step[0])
        result = {"error": f"{tool} failed while {doing} for {args.get('display', 'the model')}: {first}",
                  "exit_code": 4}
    (work / f"{job}.result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        sys.exit(_serve(sys.argv[2]))
    sys.exit(_child(*sys.argv[1:3]))
