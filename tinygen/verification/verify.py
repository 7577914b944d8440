"""Verify a board over its serial port against the Python reference.

Input: a generated project (tinygen.json, model.tflite, vectors/reference.npz) and an open
:class:`DeviceLink`.  The board must run the project's model (its HELLO hash must match);
it gets the project's reference vectors plus N fresh random vectors whose expected outputs
come from the tflite_micro interpreter (in a child process).  Output: a metrics dict, and
JSON / Markdown / PNG reports.  Passing means every output within ``tolerance`` LSB.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from tinygen.common.errors import TinygenError
from tinygen.common.escape import markdown, terminal
from tinygen.codegen.project import load_manifest
from tinygen.common.userfiles import read_user_file
from tinygen.analysis.vectors import BINARY_THRESHOLD, MAX_CONFUSION_CLASSES, confusion, confusion_matrix, dequantize


_MAX_MODEL_BYTES = 256 << 20


def load_project(project: Path) -> tuple[dict, bytes, dict]:
    """Manifest, model bytes and reference vectors, each checked: a broken project is exit 2, not a crash."""
    import hashlib
    import zipfile

    man = load_manifest(project)
    shown = terminal(str(project))
    rebuild = "rebuild the project with 'tinygen build --force'"
    model_path = project / man["model_file"]
    try:
        # A regular file of bounded size: a FIFO or a link to /dev/zero must not hang or fill memory.
        raw = read_user_file(model_path, "project model", _MAX_MODEL_BYTES)
    except TinygenError as exc:
        raise TinygenError(f"{exc}, or {rebuild}") from None
    if hashlib.sha256(raw).hexdigest() != man["model_sha256"]:
        raise TinygenError(f"{shown}/{terminal(man['model_file'])} does not match tinygen.json's sha256; {rebuild}")
    vec_path = project / man["vectors"]["file"]
    if not vec_path.is_file():
        raise TinygenError(f"{terminal(str(vec_path))} is missing; {rebuild}")
    try:
        with np.load(vec_path, allow_pickle=False) as z:
            vectors = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise TinygenError(f"{terminal(str(vec_path))} is not a readable .npz ({type(exc).__name__}); {rebuild}") \
            from None
    problem = _vectors_problem(vectors, man)
    if problem:
        raise TinygenError(f"{terminal(str(vec_path))} does not fit tinygen.json: {problem}; {rebuild}")
    return man, raw, vectors


def _vectors_problem(vectors: dict, man: dict) -> str | None:
    ins, outs = vectors.get("inputs"), vectors.get("outputs")
    if ins is None or outs is None:
        return "'inputs' or 'outputs' is missing"
    if ins.dtype != np.int8 or outs.dtype != np.int8:
        return f"'inputs'/'outputs' are {ins.dtype}/{outs.dtype}, expected int8"
    n = len(ins) if ins.ndim else -1
    if n < 1 or ins.shape[1:] != tuple(man["input"]["shape"]) or outs.shape != (n,) + tuple(man["output"]["shape"]):
        return (f"'inputs' {list(ins.shape)} / 'outputs' {list(outs.shape)} are not N x {man['input']['shape']} / "
                f"N x {man['output']['shape']}")
    f = vectors.get("float_outputs")
    if f is not None and (f.dtype.kind != "f" or f.ndim < 1 or len(f) > n or f.size != len(f) * (outs.size // n)):
        return f"'float_outputs' {list(f.shape)} {f.dtype} does not match 'outputs'"
    fi = vectors.get("float_inputs")
    if fi is not None and (fi.dtype.kind != "f" or len(fi) != n):
        return f"'float_inputs' {list(fi.shape)} {fi.dtype} does not match 'inputs'"
    labels = vectors.get("labels")
    if labels is not None and (labels.dtype.kind not in "iu" or labels.ndim != 1 or len(labels) > n):
        return f"'labels' {list(labels.shape)} {labels.dtype} must be at most N integers"
    return None


# The HELLO-vs-tinygen.json check lives in hello_check.py (one function for verify and the pytest plugin).
from tinygen.verification.hello_check import check_hello  # noqa: E402,F401  (re-exported)


def metrics(board_out: np.ndarray, ref_out: np.ndarray, man: dict, *, float_out: np.ndarray | None,
            labels: np.ndarray | None, ticks: list[int], tick_hz: int, instr_per_tick: int | None,
            tolerance: int, seconds: float, clock_hz: int | None = None) -> dict:
    n = len(board_out)
    b = board_out.reshape(n, -1).astype(np.int32)
    r = ref_out.reshape(n, -1).astype(np.int32)
    d = b - r
    scale, zp = man["output"]["scale"], man["output"]["zero_point"]
    bd, rd = dequantize(b, scale, zp).astype(np.float64), dequantize(r, scale, zp).astype(np.float64)
    num = float(np.sum(bd * rd))
    den = float(np.linalg.norm(bd) * np.linalg.norm(rd))
    m = {
        "vectors": int(n),
        "elements": int(d.size),
        "exact_match_pct": float(100.0 * np.mean(d == 0)),
        "vectors_exact_pct": float(100.0 * np.mean(np.all(d == 0, axis=1))),
        "max_abs_diff_lsb": int(np.max(np.abs(d))) if d.size else 0,
        "mae_lsb": float(np.mean(np.abs(d))),
        "rmse_lsb": float(np.sqrt(np.mean(d.astype(np.float64) ** 2))),
        "cosine_similarity": (num / den) if den > 0 else (1.0 if np.array_equal(bd, rd) else 0.0),
        "tolerance_lsb": int(tolerance),
    }
    if b.shape[1] > 1:
        m["top1_agreement_pct"] = float(100.0 * np.mean(b.argmax(1) == r.argmax(1)))
    if labels is not None and b.shape[1] > 1:
        k = len(labels)
        m["board_accuracy_pct"] = float(100.0 * np.mean(b[:k].argmax(1) == labels))
        m["reference_accuracy_pct"] = float(100.0 * np.mean(r[:k].argmax(1) == labels))
    if labels is not None and b.shape[1] == 1 and man.get("task") == "binary":
        k = len(labels)
        m["board_accuracy_pct"] = float(100.0 * np.mean((bd[:k, 0] >= BINARY_THRESHOLD) == (labels == 1)))
        m["reference_accuracy_pct"] = float(100.0 * np.mean((rd[:k, 0] >= BINARY_THRESHOLD) == (labels == 1)))
        m["board_confusion"] = confusion(bd[:k, 0] >= BINARY_THRESHOLD, labels)
        c = m["board_confusion"]  # the same counts as the 2 x 2 matrix below, so the two never disagree
        if np.all((labels == 0) | (labels == 1)):
            m["confusion"] = _confusion_entry([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], ["0", "1"],
                                              f"board output >= {BINARY_THRESHOLD}")
    elif labels is not None and 1 < b.shape[1] <= MAX_CONFUSION_CLASSES:
        matrix = confusion_matrix(b[:len(labels)].argmax(1), labels, b.shape[1])
        if matrix is not None:
            m["confusion"] = _confusion_entry(matrix, class_names(man, b.shape[1]),
                                              "argmax of the board's int8 output")
    if float_out is not None:
        f = float_out.reshape(len(float_out), -1)
        k = len(f)
        m["board_vs_float_rmse"] = float(np.sqrt(np.mean((bd[:k] - f) ** 2)))
    m.update(latency(ticks, tick_hz, instr_per_tick, clock_hz))
    m["vectors_per_second"] = float(n / seconds) if seconds > 0 else math.inf
    m["passed"] = bool(m["max_abs_diff_lsb"] <= tolerance)
    return m


def class_names(man: dict, k: int) -> list[str]:
    """The K class names tinygen.json's quality holds (a recipe's), else "0" .. "K-1"."""
    names = (man.get("quality") or {}).get("class_names")
    if isinstance(names, list) and len(names) == k and all(isinstance(n, str) for n in names):
        return [n[:40] for n in names]
    return [str(i) for i in range(k)]


def _confusion_entry(matrix: list[list[int]], names: list[str], predicted: str) -> dict:
    return {"rows": "true label", "columns": f"predicted class ({predicted})", "classes": names,
            "matrix": matrix, "vectors": int(sum(map(sum, matrix)))}


def latency(ticks: list[int], tick_hz: int, instr_per_tick: int | None, clock_hz: int | None) -> dict:
    """Timing fields. Emulated boards (instr_per_tick set): instructions only, marked emulated; QEMU's
    virtual clock is no real core's, so no µs. Real boards: cycles when the firmware's ticks run at the
    board's core clock (the cycle counter), and µs at that clock; otherwise µs from micros()."""
    t = np.asarray(ticks, dtype=np.float64)

    def stats(v: np.ndarray, scale: float = 1.0) -> dict:
        return {"min": int(round(v.min() * scale)), "median": float(np.median(v) * scale),
                "max": int(round(v.max() * scale))}

    out: dict = {"latency_ticks": {**stats(t), "tick_hz": int(tick_hz)}}
    if instr_per_tick:
        out["emulated"] = True
        out["instructions_per_inference"] = stats(t, instr_per_tick)
        return out
    out["emulated"] = False
    if int(tick_hz) <= 0:
        # A board whose HELLO says its timer runs at 0 Hz: ticks with no rate, so no time (dividing
        # by it wrote Infinity, which is not JSON, into verify.json).
        out["latency_source"] = "none: the board reports a tick rate of 0 Hz, so its ticks give no time"
        return out
    us = t / float(tick_hz) * 1e6
    out["latency_us"] = {"min": float(us.min()), "median": float(np.median(us)), "max": float(us.max())}
    if clock_hz and int(tick_hz) == int(clock_hz):
        out["cycles_per_inference"] = {**stats(t), "clock_hz": int(clock_hz)}
        out["latency_source"] = f"CPU cycle counter at {clock_hz / 1e6:g} MHz"
    else:
        out["latency_source"] = f"timer at {tick_hz:,} Hz (no cycle counter)"
    return out


def run_vectors(link, inputs: np.ndarray, progress=lambda i, n: None) -> tuple[np.ndarray, list[int], float]:
    outs, ticks = [], []
    t0 = time.monotonic()
    for i, x in enumerate(inputs):
        y, tk = link.infer(x)
        outs.append(np.asarray(y, dtype=np.int8))
        ticks.append(int(tk))
        progress(i + 1, len(inputs))
    return np.stack(outs), ticks, time.monotonic() - t0


def write_reports(report_dir: Path, result: dict, board_out: np.ndarray, ref_out: np.ndarray,
                  vectors: dict, man: dict, extra_md: list[str] = (), root: Path | None = None) -> dict[str, str]:
    """verify.json/.md/.png into ``report_dir``, inside ``root`` (the project for its reports/;
    default ``report_dir`` itself), through tinygen.common.safe_write (no link followed out)."""
    from tinygen.common.safe_write import write_text

    root = root if root is not None else report_dir
    paths = {"json": report_dir / "verify.json", "markdown": report_dir / "verify.md",
             "plot": report_dir / "verify.png"}
    write_text(paths["json"], json.dumps(result, indent=2, sort_keys=True) + "\n", root=root)
    m = result["metrics"]
    lines = [f"# tinygen verify: {markdown(man['name'])} on {markdown(result['board'])} "
             f"({markdown(result['runtime'])})", "",
             f"**{'PASS' if m['passed'] else 'FAIL'}** — max |Δ| {m['max_abs_diff_lsb']} LSB "
             f"(tolerance {m['tolerance_lsb']} LSB) over {m['vectors']} vectors / {m['elements']} outputs.", "",
             "| metric | value |", "|---|---|"]
    rows = [("port", result["port"]), ("model sha256", man["model_sha256"][:16] + "…"),
            ("runtime on board", result["runtime"]), ("exact match", f"{m['exact_match_pct']:.2f} %"),
            ("vectors bit-exact", f"{m['vectors_exact_pct']:.2f} %"), ("max |Δ|", f"{m['max_abs_diff_lsb']} LSB"),
            ("MAE", f"{m['mae_lsb']:.4f} LSB"), ("RMSE", f"{m['rmse_lsb']:.4f} LSB"),
            ("cosine similarity", f"{m['cosine_similarity']:.6f}")]
    if "top1_agreement_pct" in m:
        rows.append(("top-1 agreement", f"{m['top1_agreement_pct']:.2f} %"))
    if "board_accuracy_pct" in m:
        rows.append(("accuracy vs labels (board / reference)",
                     f"{m['board_accuracy_pct']:.2f} % / {m['reference_accuracy_pct']:.2f} %"))
    if "board_confusion" in m:
        c = m["board_confusion"]
        rows.append(("confusion on the board (output >= 0.5)",
                     f"TN {c['tn']}, FP {c['fp']}, FN {c['fn']}, TP {c['tp']}"))
    rows += [(k, v) for k, v in latency_rows(m)]
    rows.append(("vectors per second over the link", f"{m['vectors_per_second']:.1f}"))
    # Every cell through the one Markdown escape: a '|' in a label ("max |Δ|") or a value would end the cell.
    lines += [f"| {markdown(k)} | {markdown(v, 400)} |" for k, v in rows]
    lines += ["", "![board vs reference vs float](verify.png)", ""]
    if "confusion" in m:
        paths["confusion_plot"] = report_dir / "confusion.png"
        lines += confusion_markdown(m["confusion"], "confusion.png")
    lines += list(extra_md)  # --layers / --profile sections
    write_text(paths["markdown"], "\n".join(lines), root=root)
    _plot(paths["plot"], board_out, ref_out, vectors, man, root)
    if "confusion" in m:
        confusion_plot(paths["confusion_plot"], m["confusion"], f"{man['name']} on {result['board']}", root)
    return {k: str(v) for k, v in paths.items()}


def confusion_markdown(c: dict, png: str | None) -> list[str]:
    """The confusion matrix as a Markdown table (rows = true label, columns = predicted class)."""
    names = [markdown(n, 40) for n in c["classes"]]
    lines = ["## Confusion matrix", "",
             f"{c['vectors']} labelled vectors; rows: {markdown(c['rows'])}, columns: {markdown(c['columns'])}.", "",
             "| true / predicted | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, c["matrix"]):
        lines.append(f"| **{name}** | " + " | ".join(str(int(v)) for v in row) + " |")
    lines.append("")
    if png:
        lines += [f"![confusion matrix]({png})", ""]
    return lines


def confusion_plot(path: Path, c: dict, title: str, root: Path) -> None:
    """The matrix as a PNG heat map with its counts (Agg; no timestamp or software tag: same bytes each time)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinygen.common.safe_write import write_file

    counts = np.asarray(c["matrix"], dtype=np.int64)
    k = len(counts)
    side = min(12.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(side, side * 0.85), dpi=100)
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(1, int(counts.max())))
    tick = [n.replace("$", r"\$") for n in c["classes"]]
    ax.set_xticks(range(k), tick, rotation=90 if max(map(len, tick)) > 3 else 0, fontsize=8)
    ax.set_yticks(range(k), tick, fontsize=8)
    if k <= 32:
        half = counts.max() / 2
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7 if k > 12 else 9,
                        color="white" if counts[i, j] > half else "black")
    ax.set_xlabel(c["columns"].replace("$", r"\$"), fontsize=9)
    ax.set_ylabel(c["rows"], fontsize=9)
    ax.set_title(f"{title}: confusion over {c['vectors']} labelled vectors".replace("$", r"\$"), fontsize=10)
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    write_file(path, png.getvalue(), root=root)


def latency_rows(m: dict) -> list[tuple[str, str]]:
    """(label, text) rows for the timing fields of :func:`latency`, for the Markdown report and the CLI."""
    rows = []
    if "instructions_per_inference" in m:
        ins = m["instructions_per_inference"]
        rows.append(("instructions / inference (emulated; min / median / max)",
                     f"{ins['min']:,} / {ins['median']:,.0f} / {ins['max']:,} (QEMU -icount: no real-time figure)"))
    if "cycles_per_inference" in m:
        cyc = m["cycles_per_inference"]
        rows.append(("cycles / inference (min / median / max)",
                     f"{cyc['min']:,} / {cyc['median']:,.0f} / {cyc['max']:,}"))
    if "latency_us" in m:
        lat = m["latency_us"]
        rows.append(("latency min / median / max",
                     f"{lat['min']:.1f} / {lat['median']:.1f} / {lat['max']:.1f} µs ({m.get('latency_source', '')})"))
    elif m.get("emulated") is False and "latency_ticks" in m:  # a 0 Hz timer: say why there is no time
        rows.append(("latency", f"{m.get('latency_source', 'unknown')} ({m['latency_ticks']['median']:,.0f} ticks)"))
    rows += frontend_rows(m.get("frontend"))
    return rows


def frontend_rows(fe: dict | None) -> list[tuple[str, str]]:
    """Raw samples in (INFER_RAW): the front end's cost beside the model's, per inference, same run."""
    if not fe:
        return []
    if "frontend_instructions_per_inference" in fe:
        f, mo = fe["frontend_instructions_per_inference"], fe["model_instructions_per_inference"]
        unit = "instructions"
    else:
        f, mo, unit = fe["frontend_ticks_median"], fe["model_ticks_median"], "ticks"
    share = f" ({100 * f / mo:.0f} % of the model's)" if mo else ""
    return [("front end + model (raw samples in, median)",
             f"{f + mo:,.0f} {unit} = front end {f:,.0f}{share} + model {mo:,.0f}")]


def warm_plotting() -> None:
    """Import what :func:`_plot` draws with (half a second of CPU), ahead of time: ``tinygen run``
    has it done while this process waits for the worker (:func:`tinygen.common.child.when_idle`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def _plot(path: Path, board_out, ref_out, vectors: dict, man: dict, root: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, zp = man["output"]["scale"], man["output"]["zero_point"]
    n_ref = len(vectors["inputs"])
    b = dequantize(board_out[:n_ref], scale, zp).reshape(n_ref, -1)
    r = dequantize(ref_out[:n_ref], scale, zp).reshape(n_ref, -1)
    f = vectors.get("float_outputs")
    f = f.reshape(n_ref, -1) if f is not None else None
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    x_in = vectors.get("float_inputs")
    if x_in is not None and x_in.reshape(n_ref, -1).shape[1] == 1 and b.shape[1] == 1:
        x = x_in.reshape(-1)
        order = np.argsort(x)
        if f is not None:
            ax.plot(x[order], f[order, 0], "-", color="0.6", label="float model")
        ax.plot(x[order], r[order, 0], "s", mfc="none", ms=8, label="reference (tflite_micro)")
        ax.plot(x[order], b[order, 0], "x", color="C3", label="board")
        ax.set_xlabel("input")
        ax.set_ylabel("output")
    else:
        ax.plot(r.reshape(-1), b.reshape(-1), "x", color="C3", label="board vs reference")
        if f is not None:
            ax.plot(r.reshape(-1), f.reshape(-1), ".", color="0.6", alpha=0.5, label="float vs reference")
        lo, hi = float(min(r.min(), b.min())), float(max(r.max(), b.max()))
        ax.plot([lo, hi], [lo, hi], "-", color="k", lw=0.5)
        ax.set_xlabel("reference output (dequantized)")
        ax.set_ylabel("board / float output")
    ax.set_title(f"{man['name']}: board vs reference vs float".replace("$", r"\$"))
    ax.legend(loc="best")
    fig.tight_layout()
    import io

    from tinygen.common.safe_write import write_file

    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    write_file(path, png.getvalue(), root=root)
