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

The child is seeded and single-threaded (:func:`tinygen.intake.recipes.seed_everything`)
so the same command still gives byte-identical output.  Its stderr is captured
(TensorFlow's C++ chatter) and shown only with ``TINYGEN_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

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
}
RECURRENT = ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")


class Workdir:
    """A private (0700) temporary directory for one build's jobs, removed by :meth:`cleanup`."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="tinygen-work-")
        self.path = Path(self._tmp.name)

    def cleanup(self) -> None:
        self._tmp.cleanup()


def signal_name(rc: int) -> str | None:
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else None
    if sig is None:
        return None
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def crash_message(step: str, rc: int, subject: str, hint: str | None) -> str:
    tool, doing = STEPS.get(step, STEPS["start"])
    sig = signal_name(rc)
    how = f"crashed ({sig})" if sig else f"exited with status {rc}"
    what = hint or ("check the model with TensorFlow itself, and that --data holds ordinary values "
                    "(set TINYGEN_DEBUG=1 to see TensorFlow's messages)")
    return f"{tool} {how} while {doing} for {subject}; {what}"


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
    """Run ``job`` in a child; return its result dict, or raise a one-line TinygenError.

    The child's own refusals come back with their exit code (2 bad input, 3 unsupported);
    a crash or a timeout is a :class:`ToolFailure` (exit 4) naming the step.
    """
    result_path, env = stage_job(job, work, args, arrays)
    try:
        res = subprocess.run([sys.executable, "-P", "-m", "tinygen.intake.worker", job, str(work)], capture_output=True,
                             text=True, errors="replace", timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        step = _last_step(exc.stdout)
        tool, doing = STEPS.get(step, STEPS["start"])
        raise ToolFailure(f"{tool} timed out after {timeout:.0f} s while {doing} for {subject}; "
                          "try a smaller model or fewer samples") from None
    if os.environ.get("TINYGEN_DEBUG") and res.stderr:
        sys.stderr.write(res.stderr)
    if res.returncode == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
        if "error" in result:
            raise TinygenError(result["error"], exit_code=int(result.get("exit_code", 4)))
        return result
    raise ToolFailure(crash_message(_last_step(res.stdout), res.returncode, subject, hint))


def _last_step(stdout) -> str:
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    steps = [ln.split()[1] for ln in (stdout or "").splitlines() if ln.startswith("STEP ") and len(ln.split()) > 1]
    return steps[-1] if steps else "start"


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


def _step(name: str) -> None:
    _current_step[0] = name  # Python-level errors name the step too
    print(f"STEP {name}", flush=True)


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


JOBS = {"describe": _job_describe, "convert": _job_convert}


def _child(job: str, work_dir: str) -> int:
    import faulthandler

    faulthandler.enable()  # a native crash leaves the Python stack on stderr (shown with TINYGEN_DEBUG=1)
    work = Path(work_dir)
    _step("start")
    args = json.loads((work / f"{job}.json").read_text())
    from tinygen.intake.recipes import seed_everything

    if not (job == "describe" and args.get("kind") == "onnx"):  # reading an ONNX graph needs no TensorFlow
        seed_everything(int(args.get("seed", 0)))
    try:
        result = JOBS[job](args, work, job)
    except TinygenError as exc:
        result = {"error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:  # TensorFlow raises assorted errors on models it cannot handle
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        step = _current_step[0]
        tool, doing = STEPS.get(step, STEPS["start"])
        result = {"error": f"{tool} failed while {doing} for {args.get('display', 'the model')}: {first}",
                  "exit_code": 4}
    (work / f"{job}.result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:3]))
