"""Jobs for tests/common/test_child.py, run in a real worker (tinygen.common.child): one that reports
the worker's pid, one that refuses, one that dies of SIGSEGV half-way through writing."""

import os
import signal
from pathlib import Path

from tinygen.common import child
from tinygen.common.errors import TinygenError

STEPS = {"start": ("the test worker", "starting"), "poke": ("the poking tool", "poking the model")}


def _pid(args: dict, work: Path, job: str) -> dict:
    return {"pid": os.getpid()}


def _refuse(args: dict, work: Path, job: str) -> dict:
    raise TinygenError("m.bin is not a model", exit_code=2)


def _segv(args: dict, work: Path, job: str) -> dict:
    child.step("poke")
    (work / "segv.partial").write_text("half")
    os.kill(os.getpid(), signal.SIGSEGV)
    return {"never": True}


JOBS = {"pid": _pid, "refuse": _refuse, "segv": _segv}
