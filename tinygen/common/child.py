"""Child processes: the one way tinygen runs native code on hostile input (TensorFlow, the TFLite
converter, tflite_micro, onnx2tf) without letting it kill tinygen, and the one wording of a crash.

One name each:

* a **child** is any process tinygen starts to run such code; this module is the only place one is
  started (``python -P -m tinygen.common.child``);
* a **worker** is a child that is started once and fed **jobs** (:class:`Worker`); one per command:
  :func:`warm` keeps it for a scope (the CLI's command, :func:`tinygen.build`), and outside any scope
  each :func:`run_child` starts a worker for its one job and stops it;
* a **job** is one unit of work: ``JOBS[name](args, work, job) -> result dict`` in the module that
  owns it (:mod:`tinygen.intake.jobs` for TensorFlow, :mod:`tinygen.compress.jobs` for
  compression, :mod:`tinygen.analysis.reference` for tflite_micro), with that module's **steps**
  table ``{step: (tool, what it was doing)}``.  No module rewrites another's tables.

"Runner" is not a word of tinygen's: the parent side of every job is :func:`run_child`.

The protocol: the parent writes ``JOB.json`` and ``JOB.<key>.npy`` into a private work directory
(:func:`stage`) and sends the worker one JSON line ``{"module", "job", "work"}`` on its stdin.  The
worker prints ``STEP <name>`` as it enters each step (``PROGRESS ...`` lines too, for a progress
bar), writes ``JOB.result.json`` (temp file + rename: whole or absent) and answers ``DONE <job>``.
A job's own refusal comes back as ``{"error", "exit_code"}`` and is raised as that
:class:`TinygenError`; any other Python exception as a one-line failure naming the step (exit 4).
A native crash ends the worker: the parent reads end-of-file, the exit status names the signal, and
:class:`ChildCrashed` (a :class:`ToolFailure`, exit 4) says in one line which tool crashed, in which
step, on what, and what to try.  The next job starts a new worker.  Everything a worker prints
besides its protocol lines (native code's logs) goes to a temp file, shown with ``TINYGEN_DEBUG=1``.

The worker imports nothing heavy itself: TensorFlow and tflite_micro are imported by the jobs that
need them, once per worker.  A job that has state to forget (Keras) does so itself (``BEFORE_JOB``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from tinygen.common.errors import TinygenError, ToolFailure

Steps = dict[str, tuple[str, str]]

DEFAULT_HINT = ("check the model with TensorFlow itself, and that --data holds ordinary values "
                "(set TINYGEN_DEBUG=1 to see TensorFlow's messages)")


# ---------------------------------------------------------------- the wording

def signal_name(rc: int) -> str | None:
    """The signal a child died of, from its return code (-N from subprocess, 128+N from a shell)."""
    sig = -rc if rc < 0 else rc - 128 if rc > 128 else None
    if sig is None:
        return None
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def last_step(stdout: str | bytes | None) -> str:
    """The last ``STEP <name>`` a child printed ("start" when none)."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    steps = [ln.split()[1] for ln in (stdout or "").splitlines() if ln.startswith("STEP ") and len(ln.split()) > 1]
    return steps[-1] if steps else "start"


def step_words(steps: Steps, step: str) -> tuple[str, str]:
    """(tool, doing) for ``step``, or the table's "start" entry for a step it does not know."""
    return steps.get(step, steps["start"])


def crash_message(steps: Steps, step: str, rc: int, subject: str, hint: str | None = None) -> str:
    """One line: "<tool> crashed (SIGSEGV) while <doing> for <subject>; <what to try>"."""
    tool, doing = step_words(steps, step)
    sig = signal_name(rc)
    how = f"crashed ({sig})" if sig else f"exited with status {rc}"
    return f"{tool} {how} while {doing} for {subject}; {hint or DEFAULT_HINT}"


class ChildCrashed(ToolFailure):
    """A worker died during a job (exit 4). ``step``, ``rc``, the job's protocol ``lines`` and the
    native ``log`` it printed are kept for callers that judge a crash themselves (the arena bisection
    counts a crash as "too small")."""

    def __init__(self, message: str, *, step: str, rc: int, lines: list[str], log: str) -> None:
        super().__init__(message)
        self.step, self.rc, self.lines, self.log = step, rc, lines, log


@contextlib.contextmanager
def native_output_to(sink: BinaryIO) -> Iterator[None]:
    """Send this process's stdout and stderr to ``sink`` at the file-descriptor level, so what native
    code (TensorFlow's C++, onnx2tf's tables) prints goes there too; restored afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(sink.fileno(), 1)
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


# ---------------------------------------------------------------- parent side

def child_env() -> dict:
    env = dict(os.environ)
    if not os.environ.get("TINYGEN_DEBUG"):
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONHASHSEED"] = "0"
    return env


def stage(job: str, work: Path, args: dict, arrays: dict | None = None) -> Path:
    """Write ``job``'s arguments and arrays into ``work``; returns where its result will be."""
    import numpy as np

    for key, arr in (arrays or {}).items():
        if arr is not None:
            np.save(work / f"{job}.{key}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    (work / f"{job}.json").write_text(json.dumps(args))
    result_path = work / f"{job}.result.json"
    result_path.unlink(missing_ok=True)
    return result_path


class Worker:
    """One ``python -P -m tinygen.common.child`` process, fed one job at a time."""

    def __init__(self, preload: str | None = None) -> None:
        self._log = tempfile.TemporaryFile()  # native code's output; shown with TINYGEN_DEBUG=1
        self.proc = subprocess.Popen([sys.executable, "-P", "-m", "tinygen.common.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env=child_env())
        self._buf = b""
        self.jobs = 0  # jobs sent; a worker that was sent none is only importing and is killed when stopped
        if preload is not None:  # start importing what ``preload``'s jobs need now (no answer is awaited)
            try:
                self.proc.stdin.write((json.dumps({"preload": preload}) + "\n").encode())
                self.proc.stdin.flush()
            except OSError:  # died already: the first job sees it and starts a new worker
                pass

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, module: str, job: str, work: Path, timeout: float,
            on_line: Callable[[str], None] | None = None) -> tuple[bool, list[str], int, str]:
        """(finished, the job's protocol lines, exit status if the worker died, its log);
        raises :class:`subprocess.TimeoutExpired` (the worker is stopped) with the lines as output."""
        lines: list[str] = []
        self.jobs += 1
        try:
            self.proc.stdin.write((json.dumps({"module": module, "job": job, "work": str(work)}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            rc = self._reap()
            return False, lines, rc, self._take_log()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while True:
                while b"\n" in self._buf:
                    raw, self._buf = self._buf.split(b"\n", 1)
                    line = raw.decode(errors="replace")
                    if line == f"DONE {job}":
                        return True, lines, 0, self._take_log()
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.close()
                    raise subprocess.TimeoutExpired(job, timeout, output="\n".join(lines))
                chunk = os.read(fd, 65536)
                if not chunk:
                    rc = self._reap()
                    return False, lines, rc, self._take_log()
                self._buf += chunk

    def _reap(self) -> int:
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def _take_log(self) -> str:
        """What the worker printed besides its protocol since the last job (then forgotten)."""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0)
        self._log.truncate()
        if os.environ.get("TINYGEN_DEBUG"):
            sys.stderr.write(text)
        return text

    def close(self) -> None:
        if self.proc.poll() is None and self.jobs == 0:  # only preloading (the cache had it all): no waiting
            self.proc.kill()
            self.proc.wait()
        elif self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # the worker ends its loop at end of input
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._log):
            try:
                f.close()
            except OSError:
                pass


_lock = threading.RLock()
_shared: list = [None, 0]  # [the warm Worker or None, open warm() scopes]


@contextlib.contextmanager
def warm() -> Iterator[None]:
    """Keep one worker for every job run inside (nested scopes share it); stopped at the outermost exit."""
    with _lock:
        _shared[1] += 1
    try:
        yield
    finally:
        with _lock:
            _shared[1] -= 1
            if _shared[1] == 0 and _shared[0] is not None:
                _shared[0].close()
                _shared[0] = None


def prestart(module: str) -> None:
    """Inside a :func:`warm` scope with no worker yet, start this command's worker now and have it
    import what ``module``'s jobs need (its ``PRELOAD()``: TensorFlow for :mod:`tinygen.intake.jobs`)
    while this process goes on with its own checks; on two cores the import then costs no wall time
    before the first job.  The first job waits for the import to end.  A worker that is never sent a
    job (everything came from the cache, or the arguments were refused) is killed when the scope ends.
    A crash while importing is reported by the first job as the worker crashing while starting."""
    with _lock:
        if _shared[1] > 0 and (_shared[0] is None or not _shared[0].alive()):
            _shared[0] = Worker(preload=module)


_idle: list[Callable[[], None]] = []


def when_idle(fn: Callable[[], None]) -> None:
    """Run ``fn`` (say, importing a library this command needs later) in a thread of this process
    while it next waits for a worker's job, so it costs no wall time on a machine with a second
    core.  The job's result is returned only after ``fn`` ended, so this process never imports in two
    threads at once; an exception in ``fn`` is ignored (whatever needs the library imports it again)."""
    _idle.append(fn)


def _run_idle() -> threading.Thread | None:
    if not _idle:
        return None
    fns = list(_idle)
    _idle.clear()

    def work() -> None:
        for fn in fns:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a head start only; the real use imports again
                pass

    t = threading.Thread(target=work, name="tinygen-idle", daemon=True)
    t.start()
    return t


@atexit.register
def _stop() -> None:
    if _shared[0] is not None:
        _shared[0].close()
        _shared[0] = None


def run_child(module: str, job: str, work: Path, args: dict, arrays: dict | None = None, *, steps: Steps,
              subject: str, timeout: float, hint: str | None = None,
              timeout_hint: str = "try a smaller model or fewer samples",
              on_line: Callable[[str], None] | None = None, log: list | None = None) -> dict:
    """Run ``module``'s job ``job`` in a worker (this command's warm one, else one for this job) and
    return its result, or raise one line: the job's own :class:`TinygenError`, a timeout
    (:class:`ToolFailure`) or :class:`ChildCrashed`, worded with ``steps``.  ``on_line`` sees each
    protocol line as it comes; ``log`` (a list) receives what native code printed during the job."""
    result_path = stage(job, work, args, arrays)
    with _lock:
        shared = _shared[1] > 0
        w = _shared[0] if shared else None
        if w is None or not w.alive():
            w = Worker()
            if shared:
                _shared[0] = w
        idle = _run_idle()
        try:
            ok, lines, rc, text = w.run(module, job, work, timeout, on_line)
        except subprocess.TimeoutExpired as exc:
            if shared:
                _shared[0] = None
            tool, doing = step_words(steps, last_step(exc.output))
            raise ToolFailure(f"{tool} timed out after {timeout:.0f} s while {doing} for {subject}; "
                              f"{timeout_hint}") from None
        finally:
            if idle is not None:
                idle.join()
            if not shared:
                w.close()
        if not ok and shared:
            _shared[0] = None
    if log is not None:
        log.append(text)
    if ok and result_path.exists():
        result = json.loads(result_path.read_text())
        if "error" in result:
            raise TinygenError(result["error"], exit_code=int(result.get("exit_code", 4)))
        return result
    step = last_step("\n".join(lines))
    raise ChildCrashed(crash_message(steps, step, rc, subject, hint), step=step, rc=rc, lines=lines, log=text)


# ---------------------------------------------------------------- child side

_current = ["start"]
_proto: list = [sys.stdout]  # the protocol stream (the worker's real stdout)


def step(name: str) -> None:
    """Say which step the job is in (a crash is reported as in the last one said)."""
    _current[0] = name
    say(f"STEP {name}")


def say(line: str) -> None:
    """One protocol line to the parent (``on_line`` sees it)."""
    print(line, flush=True, file=_proto[0])


def serve() -> int:
    """The worker's loop: run each job named on stdin, answer ``DONE <job>`` once its result is written."""
    import faulthandler

    faulthandler.enable()  # a native crash leaves the Python stack in the log (shown with TINYGEN_DEBUG=1)
    _proto[0] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything else written to stdout (native code, Keras) goes to the log
    sys.stdout = sys.stderr
    step("start")
    for line in sys.stdin:
        try:
            req = json.loads(line)
            if isinstance(req, dict) and "preload" in req:  # prestart(): import now, answer nothing
                _preload(req["preload"])
                continue
            module, job, work = req["module"], req["job"], Path(req["work"])
        except (ValueError, KeyError, TypeError):
            continue
        try:
            mod = importlib.import_module(module)
            mod.JOBS[job]
        except (ImportError, AttributeError, KeyError):  # a bug in tinygen: answered, never a hang
            _write_result(work, job, {"error": f"tinygen's worker has no job {module}:{job}", "exit_code": 70})
        else:
            _one_job(mod, job, work)
        say(f"DONE {job}")
    return 0


def _preload(module) -> None:
    """Import ``module`` and run its ``PRELOAD()`` (an import that fails is left for the first job to say)."""
    try:
        hook = getattr(importlib.import_module(str(module)), "PRELOAD", None)
        if hook is not None:
            hook()
    except Exception:  # noqa: BLE001 - the job that needs it fails on it again, in one line
        pass


def _one_job(mod, job: str, work: Path) -> None:
    _current[0] = "start"
    args = json.loads((work / f"{job}.json").read_text())
    try:
        before = getattr(mod, "BEFORE_JOB", None)
        if before is not None:
            before(job, args)
        result = mod.JOBS[job](args, work, job)
    except TinygenError as exc:
        result = {"error": str(exc), "exit_code": exc.exit_code}
    except Exception as exc:  # native libraries raise assorted errors on input they cannot handle
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        tool, doing = step_words(mod.STEPS, _current[0])
        result = {"error": f"{tool} failed while {doing} for {args.get('display', 'the model')}: {first}",
                  "exit_code": 4}
    _write_result(work, job, result)


def _write_result(work: Path, job: str, result: dict) -> None:
    tmp = work / f"{job}.result.json.tmp"  # whole or absent
    tmp.write_text(json.dumps(result))
    os.replace(tmp, work / f"{job}.result.json")


if __name__ == "__main__":
    # Serve from the module the jobs import (tinygen.common.child), not from this __main__ copy, so
    # step() and say() write to the protocol stream serve() set up.
    from tinygen.common import child as _module

    sys.exit(_module.serve())
