"""The reference: what TFLM computes, from the ``tflite_micro`` Python interpreter.

The interpreter runs in a child process (jobs ``arena``, ``invoke`` and ``tflite_check`` of this
module, run in this command's worker by :func:`tinygen.common.child.run_child`: tflite_micro is
imported once per worker, not once per call) because it can kill its host: some models make it abort (SIGABRT) and an
arena that is too small can make it segfault.  A model that passed tinygen's checks
and still makes it crash at every arena size (or on an input), or that an op's Prepare
refuses at the largest arena probed, is reported as a model tflite_micro cannot run
(TinygenError, exit 2, naming the op when its log does); a timeout is a :class:`ToolFailure`.

Arena sizing (:func:`measure_arena`): the smallest arena with which the
interpreter allocates and runs the model is found by bisection (each probe a
real ``AllocateTensors`` + ``Invoke``; crashed probes count as too small).
That figure is taken on a 64-bit host, where TFLM's bookkeeping structs are
larger than on a 32-bit MCU, so for the structs it is an upper bound.  What
it does not cover are scratch buffers that optimized kernels (CMSIS-NN,
ESP-NN) request and the reference kernels do not, so the recommended arena
adds a bound for those (see :func:`kernel_scratch_bound`), then 10 % and
1 KiB of margin, rounded up to 16 bytes.  ``arena_used_bytes``-style
figures are not used: TFLM's own "used" figure under-reports.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygen.common import child
from tinygen.common.align import align_up
from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.common.escape import terminal

_PROBE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class ArenaInfo:
    host_min_bytes: int  # smallest arena that allocates + invokes on this (64-bit) host
    scratch_bound_bytes: int  # bound on optimized-kernel scratch buffers
    recommended_bytes: int  # what generated firmware uses

    def as_dict(self) -> dict:
        return {"host_min_bytes": self.host_min_bytes, "scratch_bound_bytes": self.scratch_bound_bytes,
                "recommended_bytes": self.recommended_bytes,
                "method": "bisection of tflite_micro AllocateTensors+Invoke on a 64-bit host, "
                          "+ optimized-kernel scratch bound, +10%, +1024 B, 16-byte aligned"}


def kernel_scratch_bound(model) -> int:
    """Upper bound on the largest scratch buffer CMSIS-NN / ESP-NN kernels request.

    CMSIS-NN's convolutions im2col at most two columns of int16 (2 x in_c x kh x kw x 2 B);
    depthwise and fully-connected request at most in_c x kh x kw x 2 B or the
    per-output-channel kernel sums (4 B each).  We take 4 x in_c x kh x kw + 4 x out_c for
    every conv-like op and keep the largest, since scratch buffers of different ops share
    the arena's temporary region.
    """
    best = 0
    for op in model.operators:
        if op.opcode not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
            continue
        w = model.tensors[op.inputs[1]].shape
        x = model.tensors[op.inputs[0]].shape
        in_c = int(x[-1]) if x else 1
        if op.opcode == "FULLY_CONNECTED":
            k = int(w[-1])
            need = 2 * k + 4 * int(w[0])
        else:
            kh, kw = int(w[1]), int(w[2])
            out_c = int(w[0]) if op.opcode != "DEPTHWISE_CONV_2D" else int(w[3])
            need = 4 * in_c * kh * kw + 4 * out_c
        best = max(best, need)
    return align_up(best)


STEPS = {"start": ("the tflite_micro reference interpreter", "starting"),
         "arena": ("the tflite_micro reference interpreter", "measuring the arena"),
         "invoke": ("the tflite_micro reference interpreter", "computing the reference outputs"),
         "tflite_check": ("TFLite's interpreter", "running the model")}
_TIMEOUT_HINT = "the model may be too large to simulate on this host"


def _run(job: str, tmp: str, args: dict, timeout: float, name: str, log: list | None = None) -> dict:
    return child.run_child(__name__, job, Path(tmp), args, steps=STEPS, subject=name, timeout=timeout,
                           timeout_hint=_TIMEOUT_HINT, log=log)


def _crash(name: str, rc: int, mpath: Path | None = None) -> TinygenError:
    """The interpreter died on a model that passed tinygen's checks, at every arena size or on an
    input the arena was measured with: not a size problem. Whose fault it is, TFLite's own
    interpreter decides (in a child, on the same file): when it runs the model, the crash is a limit
    of tflite_micro (exit 4, a tool failure: a valid MobileNetV1 96x96 aborts it); when it does not
    either, the file is corrupt in a way tinygen's own checks do not catch (exit 2)."""
    sig = child.signal_name(rc)
    how = "aborts (SIGABRT)" if sig == "SIGABRT" else f"crashes ({sig})" if sig else f"exits with status {rc}"
    if mpath is not None and _tflite_runs(mpath):
        return ToolFailure(f"the tflite_micro reference interpreter {how} on {name}, which TFLite's own interpreter "
                           "runs: a limit of tflite_micro, not a fault in the file, and without its reference tinygen "
                           "cannot verify the board; try a smaller model or input")
    return TinygenError(f"{name} is not a model tflite_micro can run: its reference interpreter {how} on it, so the "
                        "file is corrupt in a way tinygen's own checks do not catch; check it with TFLite's "
                        "interpreter and re-export it with the TFLite converter")


def _tflite_runs(mpath: Path) -> bool:
    """Whether TFLite's interpreter (TensorFlow) allocates and invokes the model on a zero input, in
    a child process: the model is hostile input and TensorFlow's reader is native code."""
    try:
        _run("tflite_check", str(mpath.parent), {"model": str(mpath)}, 300, mpath.name)
        return True
    except TinygenError:  # a crash, a timeout, or TFLite's own refusal
        return False


_SIZE_FAILURE = re.compile(r"allocate|missing:|too small|arena", re.IGNORECASE)
_PREPARE_FAILURE = re.compile(r"Node (\w+) \(number (\d+)\) failed to (prepare|invoke)")


def _not_for_size(name: str, log: str) -> TinygenError | None:
    """When the largest arena probed still failed: the reason, from the interpreter's log of
    that probe, if it is not the arena's size (an op's Prepare refused the model)."""
    last = log.rsplit("PROBE-START ", 1)[-1]
    lines = [ln.strip() for ln in last.splitlines()[1:] if ln.strip()]
    if not lines or any(_SIZE_FAILURE.search(ln) for ln in lines):
        return None
    node = next((m for m in map(_PREPARE_FAILURE.search, lines) if m), None)
    where = f"op {node.group(2)} ({node.group(1)}) fails its {node.group(3)} checks" if node else "it is refused"
    why = next((ln for ln in lines if not _PREPARE_FAILURE.search(ln)), "")
    why = re.sub(r"^\S*/", "", terminal(why))[:160]  # the kernel file's path, then the failed check
    return TinygenError(f"{name} is not a model tflite_micro can run: {where}" + (f" ({why})" if why else "")
                        + "; the file is corrupt or was not written by the TFLite converter")


def _cache_key(kind: str, inputs: dict) -> str | None:
    from tinygen.common import cache

    return cache.key(kind, inputs) if cache.current() is not None else None


def measure_arena(model_bytes: bytes, model, name: str = "model") -> ArenaInfo:
    """Bisect the smallest working arena in child processes; see the module docstring.
    The host minimum is kept in tinygen's cache (:mod:`tinygen.common.cache`) by the model's bytes."""
    from tinygen.common import cache

    ck = _cache_key("arena", {"model": cache.digest(bytes(model_bytes)), "probe_limit": _PROBE_LIMIT})
    parts = cache.get("arena", ck) if ck is not None else None
    try:
        hi = int(json.loads(parts["arena.json"])["host_min_bytes"]) if parts is not None else None
    except (KeyError, ValueError, TypeError):
        hi = None
    if hi is None or hi <= 0:
        hi = _bisect_arena(model_bytes, name)
        if ck is not None:
            cache.put("arena", ck, {"arena.json": json.dumps({"host_min_bytes": hi}).encode()})
    scratch = kernel_scratch_bound(model)
    recommended = align_up(int(hi * 1.10) + scratch + 1024)
    return ArenaInfo(hi, scratch, recommended)


def _bisect_arena(model_bytes: bytes, name: str) -> int:
    with tempfile.TemporaryDirectory(prefix="tinygen-ref-") as tmp:
        mpath = Path(tmp) / "model.tflite"
        mpath.write_bytes(model_bytes)
        lo, hi = 0, None  # lo: known failing, hi: known working
        probe = max(4096, align_up(4 * len(model_bytes)))
        restarts = 0
        while True:
            # One job probes a sequence; if the worker dies mid-probe, that size counts as failing.
            probes = {"lo": lo, "hi": hi, "first": probe}
            log: list[str] = []
            try:
                lines = _run("arena", tmp, {"model": str(mpath), "probes": probes}, 300, name, log)["lines"]
                crashed = None
            except child.ChildCrashed as exc:
                lines, crashed, log = exc.lines, exc, [exc.log]
            last_try = None
            for line in lines:
                if line.startswith("PROBE "):
                    _, size, verdict = line.split()
                    size = int(size)
                    if verdict == "ok":
                        hi = size if hi is None else min(hi, size)
                    else:
                        lo = max(lo, size)
                elif line.startswith("TRY "):
                    last_try = int(line.split()[1])
            if crashed is None:
                break
            if last_try is None:
                raise _crash(name, crashed.rc, mpath)
            lo = max(lo, last_try)  # the worker died on this size
            restarts += 1
            if hi is None:
                if lo >= _PROBE_LIMIT or restarts > 40:
                    raise _crash(name, crashed.rc, mpath)
                probe = lo * 2
            else:
                probe = (lo + hi) // 2
            if restarts > 40:
                raise _crash(name, crashed.rc, mpath)
        if hi is None:
            refused = _not_for_size(name, "".join(log))
            if refused is not None:
                raise refused
            raise ToolFailure(f"{name} does not allocate in a {_PROBE_LIMIT // (1 << 20)} MiB arena; "
                              "the model is far too large for a microcontroller")
        return hi


def run_reference(model_bytes: bytes, inputs: np.ndarray, name: str = "model",
                  arena_bytes: int | None = None) -> np.ndarray:
    """Outputs of the tflite_micro interpreter for a batch of int8 inputs (N, *input_shape); kept in
    tinygen's cache by the model's bytes, the inputs and the arena size."""
    import io

    from tinygen.common import cache

    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    arena = arena_bytes or max(1 << 20, 8 * len(model_bytes))
    ck = _cache_key("reference", {"model": cache.digest(bytes(model_bytes)), "inputs": cache.digest(inputs),
                                  "arena": int(arena)})
    parts = cache.get("reference", ck) if ck is not None else None
    if parts is not None:
        try:
            out = np.load(io.BytesIO(parts["out.npy"]), allow_pickle=False)
            if len(out) == len(inputs):
                return out
        except (KeyError, ValueError, OSError):
            pass
    out = _invoke(model_bytes, inputs, name, arena)
    if ck is not None:
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        cache.put("reference", ck, {"out.npy": buf.getvalue()})
    return out


def _invoke(model_bytes: bytes, inputs: np.ndarray, name: str, arena: int) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="tinygen-ref-") as tmp:
        mpath = Path(tmp) / "model.tflite"
        mpath.write_bytes(model_bytes)
        try:
            res = child.run_child(__name__, "invoke", Path(tmp),
                                  {"model": str(mpath), "arena": int(arena), "display": name},
                                  {"in": inputs}, steps=STEPS, subject=name, timeout=120 + 0.05 * len(inputs),
                                  timeout_hint=_TIMEOUT_HINT)
        except child.ChildCrashed as exc:
            raise _crash(name, exc.rc, mpath) from None
        return np.load(Path(tmp) / res["out"], allow_pickle=False)


# ---------------------------------------------------------------- child side

def _interp(model_bytes: bytes, arena: int):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(model_bytes, arena_size=arena)


def _job_arena(args: dict, work: Path, job: str) -> dict:
    """Probe arena sizes from ``args["probes"]`` on; says ``TRY``/``PROBE`` lines (the parent reads
    them even when a probe kills the worker) and returns them."""
    model_bytes = Path(args["model"]).read_bytes()
    probes = args["probes"]
    lo, hi = probes["lo"], probes["hi"]
    lines: list[str] = []
    child.step("arena")

    def works(size: int) -> bool:
        lines.append(f"TRY {size}")
        child.say(lines[-1])
        print(f"PROBE-START {size}", file=sys.stderr, flush=True)  # splits the interpreter's log per probe
        try:
            it = _interp(model_bytes, size)
            det = it.get_input_details(0)
            it.set_input(np.zeros(tuple(det["shape"]), dtype=det["dtype"]), 0)
            it.invoke()
            ok = True
        except Exception:
            ok = False
        lines.append(f"PROBE {size} {'ok' if ok else 'fail'}")
        child.say(lines[-1])
        return ok

    size = probes["first"]
    while hi is None:
        if works(size):
            hi = size
        else:
            lo = size
            size *= 2
            if size > _PROBE_LIMIT:
                return {"lines": lines}
    while hi - lo > 16:
        mid = align_up((lo + hi) // 2)
        if mid >= hi or mid <= lo:
            break
        if works(mid):
            hi = mid
        else:
            lo = mid
    return {"lines": lines}


def _job_invoke(args: dict, work: Path, job: str) -> dict:
    model_bytes = Path(args["model"]).read_bytes()
    inputs = np.load(work / f"{job}.in.npy", allow_pickle=False)
    child.step("invoke")
    try:
        it = _interp(model_bytes, int(args["arena"]))
    except Exception as exc:
        raise ToolFailure(f"tflite_micro reference on {args.get('display', 'the model')}: "
                          f"interpreter could not be created: {exc}") from None
    det = it.get_input_details(0)
    shape = tuple(int(d) for d in det["shape"])
    outs = []
    for x in inputs:
        it.set_input(np.asarray(x, dtype=det["dtype"]).reshape(shape), 0)
        it.invoke()
        outs.append(np.array(it.get_output(0)))
    np.save(work / f"{job}.out.npy", np.stack(outs) if outs else np.zeros((0,), np.int8), allow_pickle=False)
    return {"out": f"{job}.out.npy"}


def _job_tflite_check(args: dict, work: Path, job: str) -> dict:
    import tensorflow as tf

    child.step("tflite_check")
    it = tf.lite.Interpreter(model_content=Path(args["model"]).read_bytes())
    it.allocate_tensors()
    for det in it.get_input_details():
        it.set_tensor(det["index"], np.zeros(det["shape"], dtype=det["dtype"]))
    it.invoke()
    return {}


JOBS = {"arena": _job_arena, "invoke": _job_invoke, "tflite_check": _job_tflite_check}
