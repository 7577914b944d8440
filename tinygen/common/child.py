"""The one vocabulary for child processes that run native code on hostile input (TensorFlow, the
TFLite converter, tflite_micro, onnx2tf): how a crash is named and worded, and which step it was in.

Each runner (tinygen.intake.worker, tinygen.compress.runner, tinygen.analysis.reference) keeps its
own table of steps, ``{step: (tool, what it was doing)}``, and passes it here; the child prints
``STEP <name>`` lines on stdout as it goes, so the last one names where a crash happened.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import BinaryIO, Iterator

Steps = dict[str, tuple[str, str]]

DEFAULT_HINT = ("check the model with TensorFlow itself, and that --data holds ordinary values "
                "(set TINYGEN_DEBUG=1 to see TensorFlow's messages)")


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
