"""The verify workflow: a generated project and an open serial port in, a :class:`Report` out.

The board gets the project's reference vectors plus ``fresh`` random ones whose expected
outputs come from the tflite_micro interpreter; the comparison, the metrics and the
report files are :mod:`tinygen.verification.verify`'s.  Nothing here prints: progress and
the serial trace go to the callbacks the caller passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinygen.common.errors import VerificationFailed


@dataclass
class Report:
    """What one verification found.  :meth:`to_dict` is the JSON that ``tinygen verify --json``
    prints and ``reports/verify.json`` holds; ``inputs``/``outputs``/``expected`` are the vectors
    sent, what the board answered and what the reference computed (N x shape, int8)."""

    project: str
    board: str
    port: str
    runtime: str
    model_sha256: str
    reference_vectors: int
    fresh_vectors: int
    metrics: dict
    reports: dict = field(default_factory=dict)  # {"json"|"markdown"|"plot": path}; empty if not written
    link: dict | None = None  # the serial link's retry counters
    report_error: str | None = None  # why the report files could not be written
    inputs: np.ndarray | None = field(default=None, repr=False, compare=False)
    outputs: np.ndarray | None = field(default=None, repr=False, compare=False)
    expected: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def passed(self) -> bool:
        return bool(self.metrics["passed"])

    def to_dict(self) -> dict:
        data = {"project": self.project, "board": self.board, "port": self.port, "runtime": self.runtime,
                "model_sha256": self.model_sha256, "reference_vectors": self.reference_vectors,
                "fresh_vectors": self.fresh_vectors, "metrics": self.metrics, "reports": self.reports}
        if self.link is not None:
            data["link"] = self.link
        if self.report_error is not None:
            data["report_error"] = self.report_error
        return data

    def raise_if_failed(self) -> None:
        """VerificationFailed (exit 5) with one line saying by how much, unless every output passed."""
        if self.passed:
            return
        m = self.metrics
        see = f"; see {self.reports['markdown']}" if self.reports.get("markdown") else ""
        raise VerificationFailed(f"board outputs differ from the reference: max |Δ| {m['max_abs_diff_lsb']} LSB > "
                                 f"tolerance {m['tolerance_lsb']} LSB ({m['exact_match_pct']:.2f} % exact){see}")


def fresh_vectors(count: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """``count`` random int8 inputs; the first is all -128 and the second all 127, so the extremes always go in."""
    rng = np.random.default_rng(seed)
    fresh = rng.integers(-128, 128, size=(count,) + tuple(shape), dtype=np.int16).astype(np.int8)
    if count > 0:
        fresh[0].fill(-128)
    if count > 1:
        fresh[1].fill(127)
    return fresh


def verify_project(project: Path, port: str, board: dict, *, fresh: int, tolerance: int, report_dir: Path | None,
                   timeout: float, retries: int, seed: int, trace: Callable[[str], None] | None = None,
                   progress: Callable[[str], None] | None = None) -> Report:
    """Run the project's vectors (and ``fresh`` random ones) on the board at ``port``; compare, measure,
    write the reports (into ``report_dir``, default PROJECT/reports) and return the Report.

    A board that runs another model, or failed to start its runtime, raises VerificationFailed; outputs
    off by more than ``tolerance`` LSB do not raise (see :meth:`Report.raise_if_failed`)."""
    from tinygen.analysis.reference import run_reference
    from tinygen.device.serial_link import DeviceLink
    from tinygen.verification.verify import check_hello, load_project, metrics, run_vectors, write_reports

    man, raw, vectors = load_project(project)
    inputs, expected = vectors["inputs"], vectors["outputs"]
    if fresh:
        extra = fresh_vectors(fresh, man["input"]["shape"], seed)
        inputs = np.concatenate([inputs, extra])
        expected = np.concatenate([expected, run_reference(raw, extra, man["name"],
                                                           arena_bytes=man["arena"]["recommended_bytes"])])

    def vector_done(i: int, n: int) -> None:
        if progress is not None and (i == n or i % 50 == 0):
            progress(f"{i}/{n} vectors")

    with DeviceLink(port, man["serial"]["baud"], timeout=timeout, retries=retries, trace=trace,
                    open_delay=float(board["serial"].get("open_delay_s", 0.0))) as link:
        hello = link.hello()
        check_hello(hello, man, port)
        board_out, ticks, seconds = run_vectors(link, inputs, vector_done)
        link_stats = getattr(link, "stats", None)
    instr = board["emulator"].get("instructions_per_tick") if board.get("emulator") else None
    m = metrics(board_out, expected, man, float_out=vectors.get("float_outputs"), labels=vectors.get("labels"),
                ticks=ticks, tick_hz=hello.tick_hz, instr_per_tick=instr, tolerance=tolerance, seconds=seconds,
                clock_hz=board.get("clock_hz"))
    report = Report(project=str(project), board=man["board"], port=port, runtime=hello.runtime,
                    model_sha256=man["model_sha256"], reference_vectors=int(len(vectors["inputs"])),
                    fresh_vectors=int(fresh), metrics=m, inputs=inputs, outputs=board_out, expected=expected)
    if link_stats is not None:
        report.link = {k: v for k, v in vars(link_stats).items() if not k.startswith("_")}
    rdir = report_dir or (Path(project) / "reports")
    try:
        # verify.json holds the result as it stands before the report paths are known.
        without_paths = {k: v for k, v in report.to_dict().items() if k != "reports"}
        report.reports = write_reports(rdir, without_paths, board_out, expected, vectors, man)
    except Exception as exc:  # noqa: BLE001 - a report problem must never hide the verification result
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        report.report_error = f"could not write the reports to {rdir}: {reason}"
    return report
