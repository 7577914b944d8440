"""Compress a source's float model and measure every candidate; ``--fit``: search the smallest
compression that fits the board.

Each candidate is trained and converted in this command's worker (:mod:`.jobs`), then measured
here exactly as a build measures a model: int8 accuracy on the held-out samples from the
``tflite_micro`` interpreter (what the board computes), MACs and parameters from the int8 model,
flash and RAM from the plan's budget (:func:`tinygen.codegen.plan.budget`) for the board and
runtime.  The chosen candidate's Keras model replaces the source's, so it goes through the
normal build (conversion, reference vectors, verify) like any model.

The ``--fit`` search is bounded: sizes do not depend on training, so pruning ratios and
distillation widths are first sized without training (one conversion each): the original and the
most aggressive ratio first (the original fits: nothing to do; the most pruned does not: refused at
once with its size), then the others.  With a latency bound (``max_instructions``), a candidate that
fits flash and RAM is also built for the emulated core and run once under QEMU (the caller's
``measure_instructions``, since running firmware is a later stage than this one); over the bound it
does not fit.  Only the least pruned ratios that fit (at most :data:`TRAINED_FITS`) and the widest
student that fits are trained, and the most accurate of those in int8 wins (ties: the smaller flash).
The trained candidates are measured again, in that order, until one is within the bound: training
changes weights, not shapes, but a few kernels branch on values.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinygen.analysis import ops as an
from tinygen.analysis.reference import measure_arena, run_reference
from tinygen.analysis.vectors import dequantize, quantize_input
from tinygen.codegen.compiled import compile_model
from tinygen.codegen.plan import budget
from tinygen.common.boards import Board
from tinygen.common.errors import DoesNotFit, TinygenError
from tinygen.compress import jobs
from tinygen.tflite.int8 import model_io
from tinygen.tflite.model import parse_model

FIT_RATIOS = (0.25, 0.5, 0.625, 0.75, 0.875, 0.9375, 0.96875)
FIT_WIDTHS = (0.5, 0.25)  # distilled students --fit tries beside the pruning ratios
TRAINED_FITS = 2
MAX_LATENCY_RUNS = 8  # shapes one --fit search may run on QEMU (each builds a firmware: ~15 s)
DEFAULT_HEADROOM = 0.10


@dataclass
class Options:
    prune: float | dict | None = None  # a ratio for every prunable layer, or {layer name: ratio}
    qat: bool = False
    distill: float | None = None  # the student's width
    fit: bool = False
    fit_budget: dict | None = None  # {"flash_bytes", "ram_bytes"}; default: the board's own
    fit_board: Board | None = None  # fit another board's budget (e.g. build for qemu-m4, fit a nano33ble)
    headroom: float = DEFAULT_HEADROOM
    fit_ratios: tuple = FIT_RATIOS  # the pruning ratios --fit may try, ascending
    fit_widths: tuple = FIT_WIDTHS  # the students' widths --fit may distil ((): none)
    max_instructions: int | None = None  # per inference on the emulated core; None: no latency bound
    latency_ms: float | None = None  # what the user gave, when the bound came from milliseconds
    latency_board: str | None = None  # the emulated board the instructions are measured on
    measure_instructions: Callable | None = None  # (tflite path, out dir) -> instructions per inference
    time_limit: float = 900.0
    epochs: dict = field(default_factory=dict)  # {"prune"|"qat"|"distill": epochs}

    @property
    def active(self) -> bool:
        return bool(self.prune is not None or self.qat or self.distill is not None or self.fit)


def check_options(o: Options) -> None:
    ratios = o.prune.values() if isinstance(o.prune, dict) else ([o.prune] if o.prune is not None else [])
    for r in ratios:
        if not (isinstance(r, (int, float)) and 0 <= r < 1):
            raise TinygenError(f"--prune ratio {r} is not in [0, 1): it is the share of filters/units removed")
    if o.distill is not None and not (isinstance(o.distill, (int, float)) and 0 < o.distill <= 1):
        raise TinygenError(f"--distill width {o.distill} is not in (0, 1]: it scales every prunable layer's width")
    if not o.fit_ratios or not all(isinstance(r, (int, float)) and 0 < r < 1 for r in o.fit_ratios):
        raise TinygenError("fit ratios must be shares of filters/units to remove, each in (0, 1)")
    if not all(isinstance(w, (int, float)) and 0 < w < 1 for w in o.fit_widths):
        raise TinygenError("fit widths must be students' widths, each in (0, 1)")
    if not 0 <= o.headroom < 1:
        raise TinygenError(f"headroom {o.headroom} is not in [0, 1)")
    if o.fit and (o.prune is not None or o.distill is not None):
        raise TinygenError("--fit chooses the pruning itself; give --fit without --prune/--distill")


def check_model_kind(kind: str) -> None:
    """Compression trains the float Keras model: refuse any other kind ("tflite", "savedmodel") at once."""
    if kind != "keras":
        raise TinygenError("compression (--prune/--qat/--distill/--fit) needs the float Keras model (.keras or "
                           ".h5, or a recipe), not an int8 .tflite, a SavedModel or an ONNX model")


def check_source(src, o: Options) -> None:
    """What can be refused before the compression child starts (seconds, not minutes): the model's
    kind, the held-out samples, and (pruning, distillation, --fit) its layers' classes."""
    from tinygen.compress.prune import check_layer_classes

    check_model_kind(src.model_kind if src.model_path is not None else "tflite")
    if src.x_test is None:
        raise TinygenError("compression needs held-out samples to measure accuracy: give --data")
    if (o.prune is not None or o.distill is not None or o.fit) and src.layers:
        check_layer_classes(src.layers, o.prune)


def parse_prune(text: str) -> float | dict:
    """'0.5' or 'conv2d=0.5,dense=0.25' (layer names as Keras shows them)."""
    try:
        if "=" not in text:
            return float(text)
        spec = {}
        for part in text.split(","):
            name, _, value = part.rpartition("=")
            spec[name.strip()] = float(value)
        return spec
    except ValueError:
        raise TinygenError(f"--prune takes a ratio (0.5) or layer=ratio pairs (conv2d=0.5,dense=0.25), not "
                           f"'{text[:40]}'") from None


def _metric(task: str, out: np.ndarray, y) -> float | None:
    if y is None:
        return None
    out = np.asarray(out).reshape(len(out), -1)
    if task == "classification":
        return float(np.mean(out.argmax(axis=1) == np.asarray(y).reshape(-1)))
    t = np.asarray(y, dtype=np.float32).reshape(len(y), -1)
    return float(np.sqrt(np.mean((out - t) ** 2))) if t.shape == out.shape else None


def _frontend(src, m):
    """(FrontendSpec, Requant) for the budget of a candidate whose source has a front end (raw samples in:
    a kws/imu recipe or --frontend), so the model that --fit picks leaves the board room for it; None without."""
    data = getattr(src, "frontend", None)
    if data is None:
        return None
    from tinygen.intake.frontend import for_model

    t = model_io(m).input
    recipe = getattr(src, "recipe", None)
    return for_model(data, t.shape, t.scale, t.zero_point,
                     "--frontend" if recipe is None else f"recipe {recipe}'s front end")


def measure(raw: bytes, name: str, board: Board, runtime: str, src, task: str, float_pred=None,
            budget_override: dict | None = None, fit_board: Board | None = None, accuracy: bool = True) -> dict:
    """Sizes, budget and accuracies of one int8 candidate (accuracy: tflite_micro; ``accuracy=False``:
    sizes only, for the --fit search's models that are not fine-tuned yet).  The budget is the one a build
    checks: with the source's front end (its flash and RAM) when it has one."""
    m = parse_model(raw, name)
    a = an.analyze(m)
    if fit_board is not None:
        board = fit_board
        runtime = runtime if runtime in board.runtimes else board.default_runtime
    compiled = compile_model(m) if runtime == "compiled" else None
    arena = measure_arena(raw, m, name) if runtime == "tflm" else None
    b = budget(board, runtime, m, arena, compiled.peak_bytes if compiled else None,
               compiled.constant_bytes if compiled else None, _frontend(src, m))
    if budget_override:
        b["flash_budget"], b["ram_budget"] = int(budget_override["flash_bytes"]), int(budget_override["ram_bytes"])
        b["fits"] = b["flash_bytes"] <= b["flash_budget"] and b["ram_bytes"] <= b["ram_budget"]
    row = {"macs": int(a.macs), "params": int(a.params), "model_bytes": len(raw),
           "weights_bytes": int(sum(t.nbytes for t in m.tensors if t.is_constant)),
           "flash_bytes": b["flash_bytes"], "ram_bytes": b["ram_bytes"],
           "flash_budget": b["flash_budget"], "ram_budget": b["ram_budget"],
           **({"frontend": b["frontend"]} if "frontend" in b else {})}  # its share of flash_bytes/ram_bytes
    if src.x_test is not None and accuracy:
        io = model_io(m)
        it, ot = io.input, io.output
        x = np.asarray(src.x_test, dtype=np.float32)
        q_in = quantize_input(x, it.scale, it.zero_point).reshape((len(x),) + it.shape)
        q_out = run_reference(raw, q_in, name, arena_bytes=arena.recommended_bytes if arena else None)
        row["int8_metric"] = _metric(task, dequantize(q_out, ot.scale, ot.zero_point), src.y_test)
        if float_pred is not None:
            row["float_metric"] = _metric(task, float_pred, src.y_test)
    return row


def fits_with_headroom(row: dict, headroom: float) -> bool:
    return (row["flash_bytes"] <= (1 - headroom) * row["flash_budget"]
            and row["ram_bytes"] <= (1 - headroom) * row["ram_budget"])


_batches = iter(range(1 << 30))


def _run(src, task: str, per_channel_dense: bool, candidates: list[dict], opts: Options, seed: int,
         progress, epochs: dict | None = None, deadline: float | None = None) -> list[dict]:
    from tinygen.intake.loader import CALIBRATION_SAMPLES

    x_train = src.x_train if src.x_train is not None else src.x_rep
    y_train = src.y_train if src.x_train is not None else None
    arrays = {"rep": np.asarray(src.x_rep[:CALIBRATION_SAMPLES], dtype=np.float32),
              "test": np.asarray(src.x_test, dtype=np.float32),
              "train_x": np.asarray(x_train, dtype=np.float32),
              "train_y": None if y_train is None else np.asarray(y_train)}
    args = {"kind": src.model_kind, "model": str(src.model_path), "display": src.name, "seed": seed,
            "task": task, "per_channel_dense": per_channel_dense, "candidates": candidates,
            "epochs": opts.epochs if epochs is None else epochs, "deadline_s": deadline,
            "batch": next(_batches)}
    res = jobs.run("candidates", Path(src.work.path), args, arrays, subject=src.name,
                     timeout=max(600.0, 2 * opts.time_limit), progress=progress)
    return res["candidates"]


def _label(steps: list) -> str:
    parts = []
    for op, value in steps:
        if op == "prune":
            parts.append(f"prune {value:g}" if not isinstance(value, dict) else
                         "prune " + ",".join(f"{k}={v:g}" for k, v in value.items()))
        elif op == "distill":
            parts.append(f"distill {value:g}x")
        else:
            parts.append("QAT")
    return " + ".join(parts) or "original"


def compress(src, board: Board, runtime: str, opts: Options, *, task: str, per_channel_dense: bool, seed: int = 0,
             progress: Callable[[str], None] = lambda s: None) -> dict:
    """Train and measure the candidates; point ``src`` at the chosen one's Keras model.  Returns the
    report: {"candidates": [rows], "chosen": label, "metric": name, "budget": {...}}."""
    check_source(src, opts)
    check_options(opts)
    work = Path(src.work.path)
    start = time.monotonic()
    metric = "accuracy" if task == "classification" else "rmse"

    def measured(cands: list[dict], specs: list[dict], accuracy: bool | set = True) -> list[dict]:
        # accuracy: for every candidate, or for the labels in the set (the others are sized only)
        rows = []
        for c, spec in zip(cands, specs):
            row = {"label": c["label"], "steps": spec["steps"]}
            if "skipped" in c:
                row["skipped"] = c["skipped"]
            else:
                progress(f"measuring {c['label']} (tflite_micro, budget)")
                pred = np.load(work / c["pred"], allow_pickle=False)
                row.update(measure((work / c["tflite"]).read_bytes(), src.name, board, runtime, src, task, pred,
                                   opts.fit_budget, opts.fit_board,
                                   accuracy=accuracy if isinstance(accuracy, bool) else c["label"] in accuracy))
                row["keras"], row["tflite"], row["keras_params"] = c["keras"], c["tflite"], c["params"]
            rows.append(row)
        return rows

    if not opts.fit:
        chain_steps = []
        if opts.prune is not None:
            chain_steps.append(["prune", opts.prune])
        if opts.distill is not None:
            chain_steps.append(["distill", opts.distill])
        specs = [{"label": "original", "steps": []}]
        if chain_steps:
            specs.append({"label": _label(chain_steps), "steps": chain_steps})
        if opts.qat:
            specs.append({"label": _label(chain_steps + [["qat", None]]), "steps": chain_steps + [["qat", None]]})
        rows = measured(_run(src, task, per_channel_dense, specs, opts, seed, progress), specs)
        chosen = rows[-1]
    else:
        rows, chosen = _fit(src, task, per_channel_dense, opts, seed, progress, measured, start,
                            (opts.fit_board or board).id)
    report = {"metric": metric, "candidates": rows, "chosen": chosen["label"],
              "board": (opts.fit_board or board).id,
              "runtime": runtime, "headroom": opts.headroom if opts.fit else None,
              "max_instructions": opts.max_instructions, "latency_ms": opts.latency_ms,
              "latency_board": opts.latency_board if opts.max_instructions else None}
    if chosen["label"] != "original":
        src.model_path = work / chosen["keras"]
        src.description += f", compressed: {chosen['label']}"
    return report


def _refuse(board_id: str, best: dict, opts: Options) -> DoesNotFit:
    what = (f"needs flash {best['flash_bytes']:,} / {best['flash_budget']:,} B and RAM {best['ram_bytes']:,} / "
            f"{best['ram_budget']:,} B with {opts.headroom:.0%} headroom")
    if best.get("instructions") is not None:
        what += (f" and runs {best['instructions']:,} instructions per inference on {opts.latency_board} "
                 f"(bound {opts.max_instructions:,})")
    return DoesNotFit(f"no compression tried fits {board_id}: the smallest, {best['label']}, {what}; use a "
                      "smaller model, a larger board or a looser latency bound")


def _fit(src, task, per_channel_dense, opts: Options, seed, progress, measured, start, board_id: str):
    work = Path(src.work.path)
    # (MACs, RAM) -> (instructions, label of the model run): a shape measured once.  Not parameters:
    # the converter shares equal constant buffers (an untrained student's zero biases), so the same
    # shape can count fewer.
    runs = {}
    dirs = iter(range(1 << 30))

    def size(specs: list[dict], with_original: bool) -> list[dict]:
        specs = ([{"label": "original", "steps": []}] if with_original else []) + specs
        rows = measured(_run(src, task, per_channel_dense, specs, opts, seed, progress,
                             epochs={"prune": 0, "qat": 0, "distill": 0}), specs, accuracy={"original"})
        for row in rows:
            row["fits"] = fits_with_headroom(row, opts.headroom)
            row["trained"] = row["label"] == "original"
        return rows

    def timed(row: dict, reuse: bool = True) -> bool:
        """Does a row that fits flash and RAM also meet the latency bound (measured on QEMU)?"""
        if opts.max_instructions is None or not row.get("fits"):
            return bool(row.get("fits"))
        key = (row["macs"], row["ram_bytes"])
        if not (reuse and key in runs):
            over = "run limit" if len(runs) >= MAX_LATENCY_RUNS else (
                "time limit" if time.monotonic() - start > opts.time_limit else None)
            if over and not row.get("trained"):
                row["fits"], row["latency_skipped"] = False, over
                return False
            progress(f"measuring {row['label']}: instructions per inference on {opts.latency_board} (QEMU)")
            runs[key] = (int(opts.measure_instructions(work / row["tflite"], work / "latency" / f"m{next(dirs)}")),
                         row["label"])
        row["instructions"] = runs[key][0]
        if runs[key][1] != row["label"]:
            row["instructions_same_shape"] = True
        row["fits"] = row["instructions"] <= opts.max_instructions
        return row["fits"]

    # The original and the most aggressive ratio first: either may end the search at once.  The
    # students (a conversion each) are sized in the same run, which saves starting the child again.
    progress("sizing the original, the most pruned model and the students")
    ratios = sorted(opts.fit_ratios)
    prune_spec = [{"label": _label([["prune", r]]), "steps": [["prune", r]]} for r in ratios]
    student_spec = [{"label": _label([["distill", w]]), "steps": [["distill", w]]}
                    for w in sorted(opts.fit_widths, reverse=True)]
    first = size(prune_spec[-1:] + student_spec, True)
    if timed(first[0]):
        return first[:1], first[0]
    if not timed(first[1]):
        raise _refuse(board_id, first[1], opts)
    students = first[2:]
    progress("sizing every pruning ratio (no training yet)")
    pruned = (size(prune_spec[:-1], False) if len(ratios) > 1 else []) + first[1:2]
    picks = []
    for row in pruned:  # ascending ratio: the least pruned that fit first
        if len(picks) < TRAINED_FITS and timed(row):
            picks.append(row)
    for row in students:  # descending width: the widest student that fits
        if timed(row):
            picks.append(row)
            break
    train_specs = []
    for s in picks:
        steps = s["steps"] + ([["qat", None]] if opts.qat else [])
        train_specs.append({"label": _label(steps), "steps": steps})
    remaining = max(60.0, opts.time_limit - (time.monotonic() - start))
    trained = measured(_run(src, task, per_channel_dense, train_specs, opts, seed, progress,
                            deadline=remaining), train_specs)
    for row in trained:
        row["fits"] = "skipped" not in row and fits_with_headroom(row, opts.headroom)
        row["trained"] = True
    sign = 1 if task == "classification" else -1
    done = sorted((r for r in trained if r["fits"]),
                  key=lambda r: (r.get("int8_metric") is None, -sign * (r.get("int8_metric") or 0), r["flash_bytes"]))
    chosen = None
    for r in done:  # the trained models themselves, best first, until one meets the latency bound
        if timed(r, reuse=False):
            chosen = r
            break
    for r in done:  # not run itself: the figure of a model of the same shape, marked so
        if opts.max_instructions is not None and "instructions" not in r and (r["macs"], r["ram_bytes"]) in runs:
            r["instructions"], r["instructions_same_shape"] = runs[(r["macs"], r["ram_bytes"])][0], True
    if chosen is None:
        tried = [r for r in trained if "skipped" not in r] or picks
        raise _refuse(board_id, min(tried, key=lambda r: (r.get("instructions") or 0, r["flash_bytes"])), opts)
    return [first[0]] + pruned + students + trained, chosen


def deciding_resources(report: dict) -> list[str]:
    """Which budgets decided the fit: ["flash"], ["RAM"] or both.  A resource decided when some
    candidate (sized or trained) was over it, less the headroom; when none was over either, the one
    the chosen candidate uses the larger share of."""
    headroom = report.get("headroom") or 0.0
    rows = [r for r in report["candidates"] if "flash_bytes" in r and "ram_bytes" in r]
    over = {"flash": False, "RAM": False}
    for r in rows:
        over["flash"] |= r["flash_bytes"] > (1 - headroom) * r["flash_budget"]
        over["RAM"] |= r["ram_bytes"] > (1 - headroom) * r["ram_budget"]
    decided = [k for k in ("flash", "RAM") if over[k]]
    if decided:
        return decided
    chosen = next((r for r in rows if r["label"] == report["chosen"]), rows[-1] if rows else None)
    if chosen is None:
        return ["flash"]
    ram_share = chosen["ram_bytes"] / max(1, chosen["ram_budget"])
    return ["RAM"] if ram_share > chosen["flash_bytes"] / max(1, chosen["flash_budget"]) else ["flash"]


def chart(report: dict, path: Path, root: Path | None = None) -> Path | None:
    """Int8 accuracy against the resources, as a PNG (matplotlib, Agg: no display; no timestamp in
    the file): vs flash, vs RAM when RAM decided the fit (:func:`deciding_resources`; the title says
    which decided), and vs instructions per inference measured on QEMU (or vs MACs when no latency
    was measured: the panel's axis says which).  Written inside ``root`` (default: its directory)."""
    rows = [r for r in report["candidates"] if r.get("int8_metric") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed = [r for r in rows if r.get("instructions") is not None]
    if timed:
        speed, key, scale = timed, "instructions", 1e3
        xlabel = f"instructions per inference (thousands, QEMU -icount on {report.get('latency_board')})"
    else:
        speed, key, scale = rows, "macs", 1e3
        xlabel = "MACs per inference (thousands; no latency measured)"
    decided = deciding_resources(report)
    memory = [("flash", "flash_bytes", "flash_budget", "firmware flash (KiB, model + runtime)")]
    if "RAM" in decided:
        memory.append(("RAM", "ram_bytes", "ram_budget", "RAM (KiB, arena + I/O + runtime)"))
    fig, axes = plt.subplots(1, len(memory) + 1, figsize=(5 * (len(memory) + 1), 4), dpi=100, sharey=True)
    color = {id(r): f"C{i % 10}" for i, r in enumerate(rows)}  # a candidate has one colour in every panel
    panels = [(axes[i], rows, lambda r, k=m[1]: r[k] / 1024) for i, m in enumerate(memory)]
    panels.append((axes[-1], speed, lambda r: r[key] / scale))
    for panel, data, get in panels:
        for r in data:
            marker = "*" if r["label"] == report["chosen"] else ("o" if r.get("trained", True) else "x")
            panel.scatter(get(r), r["int8_metric"], marker=marker, s=80 if marker == "*" else 30, color=color[id(r)])
            panel.annotate(r["label"], (get(r), r["int8_metric"]), fontsize=7, xytext=(3, 3),
                           textcoords="offset points")
    for ax, (name, _, budget_key, label) in zip(axes, memory):
        budget_kib = rows[0][budget_key] / 1024
        ax.axvline(budget_kib, color="red", linestyle="--", linewidth=1, label=f"{name} budget")
        if report.get("headroom"):
            ax.axvline(budget_kib * (1 - report["headroom"]), color="orange", linestyle=":", linewidth=1,
                       label=f"budget less {report['headroom']:.0%} headroom")
        ax.set_xlabel(label)
        ax.legend(loc="best", fontsize=7)
    ax2 = axes[-1]
    if timed and report.get("max_instructions"):
        ax2.axvline(report["max_instructions"] / scale, color="red", linestyle="--", linewidth=1,
                    label="latency bound")
        ax2.legend(loc="best", fontsize=7)
    ax2.set_xlabel(xlabel, fontsize=8)
    axes[0].set_ylabel(f"int8 {report['metric']} (tflite_micro, held-out)")
    if report.get("max_instructions") and any((r.get("instructions") or 0) > report["max_instructions"]
                                              for r in report["candidates"]):
        decided = decided + ["latency"]
    what = " and ".join(decided)
    verdict = f"{what} decided the fit" if report.get("headroom") is not None else f"{what}: the tighter budget"
    fig.suptitle(f"compression candidates for {report['board']} ({report['runtime']}): {verdict}")
    fig.tight_layout()
    import io

    from tinygen.common.safe_write import write_file

    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={"Software": None})
    plt.close(fig)
    return write_file(path, png.getvalue(), root=root)
