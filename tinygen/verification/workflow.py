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

from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError, VerificationFailed


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
    layers: dict | None = None  # --layers: the per-op comparison (tinygen.verification.layers.compare)
    profile: dict | None = None  # --profile: ticks per op (tinygen.verification.profile.profile_dict)
    twin: dict | None = None  # verify --emulate: the real-board project whose emulated twin this ran on
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
        if self.layers is not None:
            data["layers"] = self.layers
        if self.profile is not None:
            data["profile"] = self.profile
        if self.twin is not None:
            data["twin"] = self.twin
        return data

    def raise_if_failed(self) -> None:
        """VerificationFailed (exit 5) with one line saying by how much, unless every output passed."""
        if self.passed:
            return
        m = self.metrics
        see = f"; see {self.reports['markdown']}" if self.reports.get("markdown") else ""
        fe = m.get("frontend")
        if fe is not None and not fe["passed"] and m["max_abs_diff_lsb"] <= m["tolerance_lsb"]:
            raise VerificationFailed(f"{fe['summary']}{see}")
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


def verify_project(project: Path, port: str, board: Board, *, fresh: int, tolerance: int, report_dir: Path | None,
                   timeout: float, retries: int, seed: int, trace: Callable[[str], None] | None = None,
                   progress: Callable[[str], None] | None = None, layers: bool = False,
                   profile: bool = False, twin: dict | None = None, twin_md: list[str] = ()) -> Report:
    """Run the project's vectors (and ``fresh`` random ones) on the board at ``port``; compare, measure,
    write the reports (into ``report_dir``, default PROJECT/reports) and return the Report.

    A board that runs another model, or failed to start its runtime, raises VerificationFailed; outputs
    off by more than ``tolerance`` LSB do not raise (see :meth:`Report.raise_if_failed`).
    ``layers``: also stream every op's output for one vector (the first that differs, else the first)
    and name the first op that differs from the reference; ``profile``: ticks per op for one vector."""
    from tinygen.analysis.reference import run_reference
    from tinygen.device.serial_link import DeviceLink
    from tinygen.verification.hello_check import check_hello
    from tinygen.verification.verify import load_project, metrics, run_vectors, write_reports

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
                    open_delay=board.serial.open_delay_s) as link:
        hello = link.hello()
        check_hello(hello, man, port)  # every HELLO field against tinygen.json, before any vector is sent
        board_out, ticks, seconds = run_vectors(link, inputs, vector_done)
        raw_run = _run_raw(link, vectors, hello, progress) if isinstance(man.get("frontend"), dict) \
            and "raw_inputs" in vectors else None
        if raw_run is not None and layers:  # a feature divergence: which front-end stage, on the board
            raw_run["stages"] = _frontend_stages(link, man, vectors, raw_run, hello, progress)
        per_op = _per_op(link, raw, inputs, board_out, expected, layers, profile, progress)
        link_stats = getattr(link, "stats", None)
    instr = board.emulator.instructions_per_tick if board.emulator else None
    m = metrics(board_out, expected, man, float_out=vectors.get("float_outputs"), labels=vectors.get("labels"),
                ticks=ticks, tick_hz=hello.tick_hz, instr_per_tick=instr, tolerance=tolerance, seconds=seconds,
                clock_hz=board.clock_hz)
    report = Report(project=str(project), board=man["board"], port=port, runtime=hello.runtime_name,
                    model_sha256=man["model_sha256"], reference_vectors=int(len(vectors["inputs"])),
                    fresh_vectors=int(fresh), metrics=m, inputs=inputs, outputs=board_out, expected=expected)
    if link_stats is not None:
        report.link = {k: v for k, v in vars(link_stats).items() if not k.startswith("_")}
    extra_md = _per_op_results(report, per_op, raw, man, board, hello, raw_run)
    if twin is not None:  # verify --emulate (tinygen.verification.twin): say where it ran, labelled
        report.twin = twin
        extra_md = list(twin_md) + extra_md
    if raw_run is not None:
        extra_md += _frontend_results(report, raw_run, raw, man, vectors, instr, layers)
    rdir = report_dir or (Path(project) / "reports")
    rroot = report_dir or Path(project)  # nothing is written outside it, not through a link either
    try:
        # verify.json holds the result as it stands before the report paths are known.
        without_paths = {k: v for k, v in report.to_dict().items() if k != "reports"}
        report.reports = write_reports(rdir, without_paths, board_out, expected, vectors, man, extra_md=extra_md,
                                       root=rroot)
        if report.profile is not None:
            from tinygen.verification.profile import plot

            png = rdir / "profile.png"
            plot(png, [report.profile], f"{man['name']} on {man['board']}: per-op profile", rroot)
            report.reports["profile_plot"] = str(png)
    except Exception as exc:  # noqa: BLE001 - a report problem must never hide the verification result
        reason = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
        report.report_error = str(exc) if isinstance(exc, TinygenError) else \
            f"could not write the reports to {rdir}: {reason}"  # a TinygenError's line says it all
    return report


def _per_op(link, raw: bytes, inputs, board_out, expected, layers: bool, profile: bool, progress) -> dict:
    """The LAYERS / PROFILE runs, while the link is open (the comparison comes after); what the board may
    stream is bounded by the project's model."""
    from tinygen.device.op_stream import StreamLimits, run_layers, run_profile
    from tinygen.tflite.model import parse_model

    found: dict = {}
    if not (layers or profile):
        return found
    limits = StreamLimits.for_model(parse_model(raw))
    if layers:
        n = len(inputs)
        diff = np.any(board_out.reshape(n, -1) != expected.reshape(n, -1), axis=1)
        k = int(np.flatnonzero(diff)[0]) if diff.any() else 0
        if progress is not None:
            progress(f"per-op tensors of vector {k}")
        found["layers"] = (k, inputs[k], run_layers(link, inputs[k], limits))
    if profile:
        if progress is not None:
            progress("per-op profile of vector 0")
        found["profile"] = run_profile(link, inputs[0], limits)
    return found


def _per_op_results(report: Report, per_op: dict, raw: bytes, man: dict, board: Board, hello,
                    raw_run: dict | None = None) -> list[str]:
    """Fill report.layers / report.profile; return the Markdown sections for them."""
    from tinygen.tflite.model import parse_model

    if not per_op:
        return []
    model = parse_model(raw)
    md: list[str] = []
    if "layers" in per_op:
        from tinygen.verification.layers import compare, markdown_section, reference_tensors

        k, x, dump = per_op["layers"]
        ref = reference_tensors(raw, x, man["arena"]["recommended_bytes"])
        report.layers = {"vector": k, **compare(model, dump, ref)}
        md += markdown_section(report.layers)
    if "profile" in per_op:
        from tinygen.verification.profile import markdown_section as profile_md, profile_dict

        instr = board.emulator.instructions_per_tick if board.emulator else None
        report.profile = profile_dict(model, per_op["profile"].records, runtime=hello.runtime_name, tick_hz=hello.tick_hz,
                                      instr_per_tick=instr, clock_hz=board.clock_hz)
        if raw_run is not None:  # the front end's rows in the per-op table (tinygen profile too)
            from tinygen.verification.profile import add_frontend

            add_frontend(report.profile, float(np.median(raw_run["frontend_ticks"])),
                         float(np.median(raw_run["model_ticks"])))
        md += profile_md([report.profile], "profile.png")
    return md


# ---- the front end: raw samples in (INFER_RAW), features and outputs compared -----------------------

def _run_raw(link, vectors: dict, hello, progress) -> dict:
    """Send each raw test input (int16 samples) with INFER_RAW; the board's model inputs, outputs and ticks."""
    from tinygen.common.protocol import INFER_RAW_TICKS, Opcode, Status, describe_status

    in_b, out_b = int(hello.input_bytes), int(hello.output_bytes)
    want = in_b + out_b + INFER_RAW_TICKS.size
    feats, outs, model_ticks, fe_ticks = [], [], [], []
    raw = np.asarray(vectors["raw_inputs"])
    if progress is not None:
        progress(f"{len(raw)} raw inputs through the board's front end (INFER_RAW)")
    for x in raw:
        payload = np.ascontiguousarray(x, dtype="<i2").tobytes()
        frame = link.request(Opcode.INFER_RAW, payload, reply_bytes=want)
        if frame.status != Status.OK:
            raise VerificationFailed(f"the board refused raw samples (INFER_RAW): {describe_status(frame.status)}; "
                                     "rebuild and reflash the project's firmware")
        if len(frame.payload) != want:
            raise VerificationFailed(f"the board's INFER_RAW reply has {len(frame.payload)} bytes, not {want} "
                                     "(model input + output + 8): the firmware is not this project's")
        p = frame.payload
        feats.append(np.frombuffer(p[:in_b], dtype=np.int8).copy())
        outs.append(np.frombuffer(p[in_b:in_b + out_b], dtype=np.int8).copy())
        mt, ft = INFER_RAW_TICKS.unpack_from(p, in_b + out_b)
        model_ticks.append(int(mt))
        fe_ticks.append(int(ft))
    return {"features": np.stack(feats), "outputs": np.stack(outs), "model_ticks": model_ticks,
            "frontend_ticks": fe_ticks}


def _frontend_stages(link, man: dict, vectors: dict, run: dict, hello, progress) -> dict | None:
    """The first raw vector whose features differ: its differing frame's stages from the board (FE_TAPS)
    against the twin's (tinygen.verification.frontend_stages); None when every feature matched."""
    from tinygen.intake.frontend import spec_from_json
    from tinygen.verification.frontend_stages import name_stage

    n = len(run["features"])
    diff = run["features"].reshape(n, -1) != np.asarray(vectors["raw_features"]).reshape(n, -1)
    if not diff.any():
        return None
    k = int(np.flatnonzero(diff.any(axis=1))[0])
    i = int(np.flatnonzero(diff[k])[0])
    if progress is not None:
        progress(f"front-end stages of raw vector {k} on the board (FE_TAPS)")
    spec = spec_from_json(man["frontend"], "tinygen.json's frontend")
    return name_stage(link, spec, np.asarray(vectors["raw_inputs"])[k], i, int(hello.max_frame or 0))


def _frontend_results(report: Report, run: dict, raw: bytes, man: dict, vectors: dict, instr, layers: bool) -> list[str]:
    """Features first (the board's front end vs tinygen's fixed-point twin), then the outputs (vs
    tflite_micro on the twin's features); the verdict joins report.metrics (``frontend``, ``passed``)."""
    from tinygen.intake.frontend import describe_feature, feature_stage, spec_from_json

    spec = spec_from_json(man["frontend"], "tinygen.json's frontend")
    n = len(run["features"])
    want_f = np.asarray(vectors["raw_features"]).reshape(n, -1)
    want_o = np.asarray(vectors["raw_outputs"]).reshape(n, -1)
    got_f, got_o = run["features"].reshape(n, -1), run["outputs"].reshape(n, -1)
    fdiff = got_f != want_f
    odiff = np.abs(got_o.astype(np.int32) - want_o.astype(np.int32))
    tol = int(report.metrics["tolerance_lsb"])
    fe: dict = {"kind": spec.kind, "vectors": n, "features_per_vector": int(want_f.shape[1]),
                "features_exact": bool(not fdiff.any()), "differing_features": int(fdiff.sum()),
                "outputs_max_abs_diff_lsb": int(odiff.max()) if odiff.size else 0}
    if fdiff.any():
        k = int(np.flatnonzero(fdiff.any(axis=1))[0])
        i = int(np.flatnonzero(fdiff[k])[0])
        stage = feature_stage(spec, i)
        what = "the statistics (mean/min/max/mad)" if stage == "stats" else \
            "the spectral stages (window, FFT, filter bank, log)"
        fe["divergence"] = {"vector": k, "element": i, "feature": describe_feature(spec, i), "stage": stage,
                            "board": int(got_f[k, i]), "host": int(want_f[k, i])}
        named = run.get("stages")
        if named is not None:  # --layers: the board's own stages for that frame (FE_TAPS) named one
            from tinygen.verification.frontend_stages import sentence

            fe["divergence"]["stages"] = named
            if named.get("stage") is not None:
                fe["divergence"]["stage"] = named["stage"]
            what = sentence(named)
        fe["summary"] = (f"the front end's features differ from the host's at element {i} of raw vector {k} "
                         f"({describe_feature(spec, i)}: board {int(got_f[k, i])}, host twin {int(want_f[k, i])}; "
                         f"made by {what}), before any model op")
        # Is the model right on the board's own features? Then the front end alone is wrong.
        from tinygen.analysis.reference import run_reference

        own = run_reference(raw, got_f[k:k + 1].reshape((1,) + tuple(man["input"]["shape"])), man["name"],
                            arena_bytes=man["arena"]["recommended_bytes"]).reshape(-1)
        fe["model_exact_on_board_features"] = bool(np.array_equal(own.astype(np.int8), got_o[k]))
    else:
        fe["summary"] = (f"front end bit-exact with the host twin on {n} raw vectors; outputs off by at most "
                         f"{fe['outputs_max_abs_diff_lsb']} LSB from tflite_micro on the twin's features")
    fe["passed"] = bool(not fdiff.any() and fe["outputs_max_abs_diff_lsb"] <= tol)
    if instr:
        fe["frontend_instructions_per_inference"] = float(np.median(run["frontend_ticks"])) * float(instr)
        fe["model_instructions_per_inference"] = float(np.median(run["model_ticks"])) * float(instr)
    fe["frontend_ticks_median"] = float(np.median(run["frontend_ticks"]))
    fe["model_ticks_median"] = float(np.median(run["model_ticks"]))
    report.metrics["frontend"] = fe
    report.metrics["passed"] = bool(report.metrics["passed"] and fe["passed"])
    if layers and "divergence" in fe:
        report.layers = {"vector": fe["divergence"]["vector"], "ops_compared": 0, "divergence": None,
                         "frontend_divergence": fe["divergence"], "frontend_summary": fe["summary"]}
    md = ["", "## Front end (raw samples in, `INFER_RAW`)", "", fe["summary"] + ".", ""]
    if instr:
        md += [f"- front end: {fe['frontend_instructions_per_inference']:,.0f} instructions per inference; "
               f"model: {fe['model_instructions_per_inference']:,.0f}", ""]
    return md

