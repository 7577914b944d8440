"""Jobs for tests/common/test_prestart.py: a worker module whose PRELOAD (what prestart() imports ahead)
is slow, or crashes, as the test's environment says."""

import os
import signal
import time
from pathlib import Path

STEPS = {"start": ("the test worker", "starting")}
_preloaded: list[int] = []


def _preload() -> None:
    how = os.environ.get("TG_TEST_PRELOAD", "")
    if how == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how.startswith("sleep"):
        time.sleep(float(how[5:]))
    _preloaded.append(os.getpid())


PRELOAD = _preload


def _pid(args: dict, work: Path, job: str) -> dict:
    return {"pid": os.getpid(), "preloaded": list(_preloaded)}


JOBS = {"pid": _pid}
