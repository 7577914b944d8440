"""Parent side of the compression child: starts ``python -m tinygen.compress.child``, turns its
``PROGRESS`` lines into a progress bar for the ``progress(text)`` callback, and reports a crash or
a timeout in one line naming the step, as :func:`tinygen.intake.worker.run_job` does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from tinygen.common import child
from tinygen.common.errors import TinygenError, ToolFailure
from tinygen.intake import worker

# The compression child's steps beside the worker's (it runs the worker's job loop with these).
STEPS = {**worker.STEPS,
         "prune": ("TensorFlow", "pruning the model"), "distill": ("TensorFlow", "distilling a student"),
         "qat": ("TensorFlow", "setting up quantization-aware training"),
         "train": ("TensorFlow", "fine-tuning the compressed model")}
BAR = 24


def bar(label: str, done: int, total: int, note: str = "") -> str:
    filled = BAR * done // max(total, 1)
    return f"{label} {'━' * filled}{'╌' * (BAR - filled)} {done}/{total} epochs {note}".rstrip()


def run(job: str, work: Path, args: dict, arrays: dict[str, np.ndarray], *, subject: str, timeout: float,
        progress: Callable[[str], None]) -> dict:
    result_path, env = worker.stage_job(job, work, args, arrays)
    lines: list[str] = []
    proc = subprocess.Popen([sys.executable, "-P", "-m", "tinygen.compress.child", job, str(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            errors="replace", env=env)
    err_chunks: list[str] = []
    drain = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    drain.start()
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("PROGRESS "):
                parts = line[len("PROGRESS "):].split("\t")
                if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
                    progress(bar(parts[0], int(parts[1]), int(parts[2]), parts[3]))
            elif line.startswith("STEP "):
                tool, doing = child.step_words(STEPS, line.split()[-1])
                progress(f"{doing} ({subject})")
        rc = proc.wait()
    finally:
        timed_out = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join(5)
    if os.environ.get("TINYGEN_DEBUG") and err_chunks and err_chunks[0]:
        sys.stderr.write(err_chunks[0])
    step = child.last_step("\n".join(lines))
    if timed_out:
        tool, doing = child.step_words(STEPS, step)
        raise ToolFailure(f"{tool} timed out after {timeout:.0f} s while {doing} for {subject}; "
                          "try fewer epochs or a smaller model")
    if rc == 0 and result_path.exists():
        result = json.loads(result_path.read_text())
        if "error" in result:
            raise TinygenError(result["error"], exit_code=int(result.get("exit_code", 4)))
        return result
    raise ToolFailure(child.crash_message(STEPS, step, rc, subject))
