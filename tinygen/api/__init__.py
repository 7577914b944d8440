"""The public Python API: everything the ``tinygen`` command does, callable from a notebook or a CI script.

    import tinygen

    project = tinygen.build(recipe="sine", board="qemu-m4", out="sine-m4")
    project.build_firmware()            # pio run
    report = project.verify()           # emulated board: boots QEMU on the firmware, compares
    assert report.passed, report.metrics
    info = tinygen.inspect("sine-m4/model.tflite")

Each function validates its arguments and raises a :class:`~tinygen.common.errors.TinygenError`
subclass with one line (what is wrong, what to do); its ``exit_code`` is what the CLI exits with.
Nothing here prints: long steps report to an optional ``progress(text)`` callback.  The CLI
(:mod:`tinygen.cli`) parses arguments, calls these functions and prints their results.

One module per job: project.py (a project; flash, verify, doctor), building.py (the build
conductor), twin.py (verify on the emulated twin), inspecting.py (inspect), benchmark.py (bench).

May import: every stage; never :mod:`tinygen.cli`.
"""

from __future__ import annotations

from tinygen.api.benchmark import BenchRow, bench
from tinygen.api.building import build, default_out_dir, name_hint
from tinygen.api.inspecting import ModelInfo, inspect
from tinygen.api.project import Project, doctor, flash, verify
from tinygen.api.twin import verify_twin
from tinygen.compress.options import CompressOptions
from tinygen.verification.workflow import Report

__all__ = ["build", "verify", "verify_twin", "inspect", "flash", "doctor", "Project", "Report", "ModelInfo", "default_out_dir",
           "name_hint", "bench", "BenchRow", "CompressOptions"]
