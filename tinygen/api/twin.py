"""A real-board project's exact model bytes and runtime on its emulated twin (:func:`verify_twin`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tinygen.api.building import build
from tinygen.api.project import Progress, ProjectLike, as_project, check_verify_options, silent, stderr_trace
from tinygen.verification.workflow import Report


def verify_twin(project: ProjectLike, *, runtime: str | None = None, tflm_dir: str | Path | None = None,
                fresh_vectors: int = 16, tolerance: int = 0, report_dir: str | Path | None = None,
                timeout: float = 10.0, retries: int = 3, seed: int = 0, trace: Callable[[str], None] | bool | None = None,
                progress: Progress | None = None, layers: bool = False, profile: bool = False) -> Report:
    """A real-board project's exact model bytes and runtime on its emulated twin (``emulated_twin`` in its
    board file), before flashing: the twin is built into PROJECT/.tinygen/twin-<board>/, checked to carry
    the project's model and model library, and verified like :func:`verify` (reports in the twin's
    reports/ unless ``report_dir``); ``report.twin`` says where it ran.  ``runtime`` overrides the
    project's (labelled as another runtime); ``tflm_dir``: the TFLM tree a TFLM twin is built from."""
    from tinygen.verification import twin

    check_verify_options(fresh_vectors, tolerance, timeout, retries)
    progress = progress or silent
    plan = twin.plan_twin(as_project(project).path, runtime=runtime, tflm_dir=str(tflm_dir) if tflm_dir else None)
    twin.build_twin(plan, build, progress)
    return twin.run_twin(plan, progress, fresh=fresh_vectors, tolerance=tolerance, seed=seed, timeout=timeout,
                         report_dir=Path(report_dir) if report_dir is not None else None, retries=retries,
                         trace=stderr_trace if trace is True else (trace or None), layers=layers, profile=profile)
