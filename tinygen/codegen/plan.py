"""The build pipeline up to the plan: source -> int8 model -> analysis -> reference -> Plan.

Nothing here writes into the output directory; :mod:`tinygen.codegen.render` turns the
plan into file contents and :mod:`tinygen.codegen.project` writes them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinygen.analysis import ops as an
from tinygen.codegen import refusals
from tinygen.codegen.compiled import CompiledBuild, compile_model
from tinygen.common.boards import Board
from tinygen.common.errors import DoesNotFit, TinygenError, UnsupportedModel
from tinygen.analysis.equivalence import check_equivalent
from tinygen.analysis.reference import ArenaInfo, measure_arena, run_reference
from tinygen.tflite import fc_rewrite as rewrite
from tinygen.tflite.int8 import ModelIo, check_int8, model_io
from tinygen.tflite.model import TfliteModel, parse_model
from tinygen.intake.sources import Source
from tinygen.analysis.vectors import dequantize, quantize_input, quality

DEFAULT_VECTORS = 32
RUNTIMES = ("tflm", "compiled")


@dataclass
class Plan:
    board: Board
    runtime: str
    name: str  # C-identifier-safe model name
    model: TfliteModel = field(repr=False)
    analysis: an.Analysis = field(repr=False)
    arena: ArenaInfo
    source: str
    task: str
    quantization_note: str
    vectors: dict = field(repr=False)
    quality: dict
    budget: dict
    compiled: CompiledBuild | None = field(default=None, repr=False)  # the IR + memory plan; C at render time
    tflm_dir: str | None = None
    class_names: tuple[str, ...] | None = None  # output labels when the recipe knows them
    recipe: str | None = None  # the built-in recipe it was trained from (None: the user's model)
    frontend: dict | None = None  # the front end's FrontendSpec JSON (tinygen.intake.frontend); None: none
    io: ModelIo = field(init=False, repr=False)  # the model's input and output quantization, read once

    def __post_init__(self) -> None:
        self.io = model_io(self.model)


def c_identifier(name: str) -> str:
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name).strip("_").lower() or "model"
    ident = re.sub(r"_+", "_", ident)
    if ident[0].isdigit():
        ident = "m_" + ident
    return ident[:48]


def budget_parts(board: Board, runtime: str, model: TfliteModel, arena: ArenaInfo,
                 compiled_peak: int | None, compiled_const: int | None = None, frontend=None) -> list[dict]:
    """Where the flash and RAM go, part by part, each marked exact (from the model), measured (by
    tests/codegen/test_board_truth.py against the real core and library) or estimate (what no tree here can
    link: mbed-os, ESP-IDF)."""
    est = board.estimates
    io_bytes = model.input_tensor().nbytes + model.output_tensor().nbytes

    def part(name, flash, ram, kind):
        return {"part": name, "flash_bytes": int(flash), "ram_bytes": int(ram), "kind": kind}

    if runtime == "tflm":
        parts = [part("model flatbuffer", len(model.raw), 0, "exact"),
                 part("TFLM arena + I/O", 0, arena.recommended_bytes + io_bytes, "exact")]
        op_sizes = est.tflm_op_flash
        parts.append(part("TFLM runtime" + (" base" if op_sizes else ""), est.tflm_flash, est.tflm_ram,
                          est.kind("tflm_flash")))
        if op_sizes:
            ops = sorted(set(model.op_names))
            known = [op for op in ops if op in op_sizes]
            if known:
                parts.append(part(f"TFLM kernels ({', '.join(known)})", sum(op_sizes[op] for op in known), 0,
                                  est.kind("tflm_op_flash")))
            unknown = [op for op in ops if op not in op_sizes]
            if unknown:
                parts.append(part(f"TFLM kernels ({', '.join(unknown)})",
                                  len(unknown) * max(op_sizes.values()), 0, "estimate"))
    else:
        # The constants as the compiled model stores them (widened depthwise weights, folded biases,
        # per-channel requantization constants), not the .tflite's weight bytes: exact either way,
        # and the board file's measured compiled_flash is then code only (tests/codegen/test_board_truth.py).
        weights = compiled_const if compiled_const is not None else _compiled_constant_bytes(model)
        parts = [part("weights and constants", weights, 0, "exact"),
                 part("compiled arena + I/O", 0, (compiled_peak or 0) + io_bytes, "exact"),
                 part("compiled runtime", est.compiled_flash, est.compiled_ram, est.kind("compiled_flash"))]
    if est.core_flash is not None:
        parts.append(part(est.core_name, est.core_flash, est.core_ram, est.kind("core_flash")))
        parts.append(part(est.os_name, est.os_flash, est.os_ram, est.kind("os_flash")))
    else:
        parts.append(part(est.framework_name, est.framework_flash, est.framework_ram, est.kind("framework_flash")))
    if frontend is not None:  # (FrontendSpec, Requant): raw samples in (docs/frontend.md)
        from tinygen.codegen.frontend_budget import frontend_parts

        parts += frontend_parts(frontend[0], frontend[1], model.input_tensor().nbytes)
    return parts


def _compiled_constant_bytes(model: TfliteModel) -> int:
    try:
        return compile_model(model).constant_bytes
    except TinygenError:  # not compilable: the budget is never the one used, the raw weights do
        return sum(t.nbytes for t in model.tensors if t.is_constant)


def budget(board: Board, runtime: str, model: TfliteModel, arena: ArenaInfo, compiled_peak: int | None,
           compiled_const: int | None = None, frontend=None) -> dict:
    parts = budget_parts(board, runtime, model, arena, compiled_peak, compiled_const, frontend)
    flash = sum(p["flash_bytes"] for p in parts)
    ram = sum(p["ram_bytes"] for p in parts)

    def by_kind(key: str, kind: str) -> int:
        return sum(p[key] for p in parts if p["kind"] == kind)

    return {"flash_bytes": int(flash), "flash_budget": int(board.flash_bytes),
            "ram_bytes": int(ram), "ram_budget": int(board.ram_bytes),
            "fits": flash <= board.flash_bytes and ram <= board.ram_bytes,
            "flash_estimated_bytes": by_kind("flash_bytes", "estimate"),
            "ram_estimated_bytes": by_kind("ram_bytes", "estimate"),
            "parts": parts,
            **({"frontend": _frontend_totals(parts)} if frontend is not None else {})}


def _frontend_totals(parts: list[dict]) -> dict:
    from tinygen.codegen.frontend_budget import frontend_totals

    return frontend_totals(parts)


def budget_note(b: dict) -> str:
    """One line: which parts of a budget are estimates (the rest is exact or measured)."""
    est = [p["part"] for p in b.get("parts", []) if p["kind"] == "estimate"]
    return ("estimated: " + ", ".join(est)) if est else "no estimated parts"


def check_fits(plan_budget: dict, board: Board, runtime: str, plan: "Plan | None" = None) -> None:
    """Raise DoesNotFit (one line) when the budget is over the board's; with the plan, the line says how
    to fit: how far the weights must shrink (--fit, --prune, --distill) and the other runtime if it fits."""
    b = plan_budget
    problems = []
    if b["flash_bytes"] > b["flash_budget"]:
        problems.append(f"flash {b['flash_bytes']:,} B > {b['flash_budget']:,} B")
    if b["ram_bytes"] > b["ram_budget"]:
        problems.append(f"RAM {b['ram_bytes']:,} B > {b['ram_budget']:,} B")
    if problems:
        advice = fit_advice(plan) if plan is not None else \
            "use a smaller model" + (" or --runtime compiled" if runtime == "tflm" else "")
        raise DoesNotFit(f"model does not fit {board.id} with the {runtime} runtime: "
                         f"{'; '.join(problems)} (model + runtime + framework; {budget_note(b)}); {advice}")


_MODEL_PARTS = {"flash": ("model flatbuffer", "weights and constants"),
                "ram": ("TFLM arena + I/O", "compiled arena + I/O")}


def _keep_share(b: dict, key: str) -> float | None:
    """The share of the model's own part (weights for flash, arena for RAM) that may stay so that this
    budget fits: 1.0 when it already fits, None when not even an empty model would."""
    over = b[f"{key}_bytes"] - b[f"{key}_budget"]
    if over <= 0:
        return 1.0
    own = sum(p[f"{key}_bytes"] for p in b["parts"] if p["part"] in _MODEL_PARTS[key])
    return (own - over) / own if own > over else None


def _other_budget(plan: "Plan") -> tuple[str, dict] | None:
    """The other runtime's budget for the same int8 model, if the board offers it and it can run it."""
    board, m = plan.board, plan.model
    other = "compiled" if plan.runtime == "tflm" else "tflm"
    if other not in board.runtimes:
        return None
    try:
        if other == "compiled":
            c = compile_model(m)
            return other, budget(board, other, m, plan.arena, c.peak_bytes, c.constant_bytes, _plan_frontend(plan))
        if board.tflm.needs_tree and not plan.tflm_dir:
            return None
        if any(op not in an.TFLM_RESOLVER_METHODS for op in m.op_names) or (
                an.dense_per_channel(m) and not board.tflm.per_channel_fully_connected):
            return None
        return other, budget(board, other, m, plan.arena, None, None, _plan_frontend(plan))
    except TinygenError:  # the compiled runtime refuses an op or its arena
        return None


def _plan_frontend(plan: "Plan"):
    """(FrontendSpec, Requant) of a plan with a front end, for its budget; None without one."""
    if plan.frontend is None:
        return None
    from tinygen.intake.frontend import for_model

    t = plan.io.input
    return for_model(plan.frontend, t.shape, t.scale, t.zero_point)


def fit_advice(plan: "Plan") -> str:
    """How to make the model fit: the other runtime when its budget fits, and how far --prune or
    --distill must shrink the model for this runtime (--fit searches it)."""
    b = plan.budget
    keeps = [_keep_share(b, "flash"), _keep_share(b, "ram")]
    other = _other_budget(plan)
    tips = []
    if other is not None and other[1]["fits"]:
        ob = other[1]
        tips.append(f"--runtime {other[0]} fits (flash {ob['flash_bytes']:,} B, RAM {ob['ram_bytes']:,} B)")
    if None in keeps:
        if not tips:
            tips.append(f"the {plan.runtime} runtime and the framework alone leave no room for this model on "
                        f"{plan.board.id}: use a board with more memory")
    else:
        flash_keep, ram_keep = keeps
        need = []
        if flash_keep < 1:
            need.append(f"the weights to {math.floor(flash_keep * 100)}% of their size")
        if ram_keep < 1:
            need.append(f"the arena to {math.floor(ram_keep * 100)}%")
        # Pruning a share r of every layer's filters/units, or a student of width w, leaves each layer's
        # weights and activations at most (1 - r) or w of what they were (inner layers lose inputs too, so
        # usually less): these two are enough, --fit searches for the least that is.
        keep = max(0.01, min(flash_keep, ram_keep))
        width = math.floor(keep * 100) / 100
        tips.append(f"shrink the model from its Keras source ({' and '.join(need)}): --fit searches the "
                    f"smallest pruning or student that fits; --prune {1 - width:.2f} or --distill {width:.2f} "
                    "shrink every layer at least that far")
    return "; or ".join(tips)


def _sigmoid_output(m: TfliteModel | None) -> bool:
    """The model output is a LOGISTIC's (through reshapes): values in [0, 1]."""
    if m is None:
        return False
    writer = {t: op for op in m.operators for t in op.outputs}
    t = m.outputs[0]
    while t in writer and writer[t].opcode in ("RESHAPE", "SQUEEZE") and writer[t].inputs:
        t = writer[t].inputs[0]
    return t in writer and writer[t].opcode == "LOGISTIC"


def _binary_labels(y) -> bool:
    y = np.asarray(y)
    return y.ndim == 1 and y.dtype.kind in "iuf" and bool(np.all((y == 0) | (y == 1)))


def infer_task(src: Source, out_shape: tuple[int, ...], model: TfliteModel | None = None) -> str:
    """classification (several outputs, integer labels), binary (one sigmoid output, labels 0/1),
    regression, or what the recipe or ``--task`` said (checked against the output and labels)."""
    n_out = int(np.prod(out_shape))
    y = src.y_test
    if src.task != "unknown":
        return _checked_task(src.task, n_out, y)
    if y is not None and np.asarray(y).ndim == 1 and np.issubdtype(np.asarray(y).dtype, np.integer) and n_out > 1:
        return "classification"
    if n_out == 1 and y is not None and _binary_labels(y) and _sigmoid_output(model):
        return "binary"
    return "regression" if n_out <= 1 or y is not None else "unknown"


def _checked_task(task: str, n_out: int, y) -> str:
    if task == "classification" and n_out == 1:
        task = "binary"  # one output: the class is the output thresholded at 0.5
    if task == "binary":
        if n_out != 1:
            raise TinygenError(f"--task binary needs a model with one output (a sigmoid); this one has {n_out}; "
                               "use --task classification")
        if y is not None and not _binary_labels(y):
            raise TinygenError("--task binary needs labels y of 0 and 1 in --data; use --task regression for "
                               "other targets")
    if task == "classification" and y is not None:
        y = np.asarray(y)
        if y.ndim != 1 or y.dtype.kind not in "iuf" or not np.all((y == np.round(y)) & (y >= 0) & (y < n_out)):
            raise TinygenError(f"--task classification needs integer labels y in 0..{n_out - 1} (one per sample) "
                               "in --data; use --task regression for other targets")
    return task


def _float_outputs(src: Source, x: np.ndarray | None) -> np.ndarray | None:
    """The float model's outputs on the held-out samples, which intake's conversion left on the source."""
    pred = src.float_pred
    if x is None or pred is None or len(pred) != len(x):
        return None
    return pred


def check_runtime(board: Board, runtime: str) -> None:
    """The one place a board's runtimes are enforced (the API calls it before training too)."""
    if runtime not in board.runtimes:
        raise TinygenError(f"board {board.id} does not support --runtime {runtime}; "
                           f"choose one of: {', '.join(board.runtimes)}")


def per_channel_dense_exact(board: Board, runtime: str) -> bool:
    """Whether ``runtime`` on ``board`` computes per-channel FULLY_CONNECTED exactly: the compiled runtime
    always, a TFLM library as its board file says.  Models tinygen converts get per-channel Dense weights
    only then (the conductor passes it to intake's converter)."""
    return board.tflm.per_channel_fully_connected if runtime == "tflm" else True


def make_plan(src: Source, board: Board, runtime: str, *, int8: bytes | None = None, n_vectors: int = DEFAULT_VECTORS,
              seed: int = 0, progress: Callable[[str], None] = lambda s: None, tflm_dir: str | None = None) -> Plan:
    """What to emit for ``src`` on ``board`` with ``runtime``.  ``int8``: the int8 model the conductor
    (:mod:`tinygen.api.building`) had intake convert from ``src``'s float model, with
    :func:`per_channel_dense_exact` and the runtime's ops; None for a user's int8 .tflite
    (``src.tflite``), used as is or rewritten for the board.  Runs no intake step itself."""
    check_runtime(board, runtime)
    per_channel_dense = per_channel_dense_exact(board, runtime)
    if src.tflite is not None:
        raw = src.tflite
        note = "int8 .tflite used as is"
        if runtime == "tflm":
            # A user's per-channel FULLY_CONNECTED becomes CONV_2D 1x1 where the library computes FC
            # per-tensor; the reference below stays the user's own model and the rewrite must match it.
            raw, rewrite_note = rewrite.for_board(raw, board)
            if rewrite_note:  # the build stops below unless the check holds
                note = f"{rewrite_note}, bit-exact with the original on tflite_micro (checked)"
    else:
        # Models we convert ourselves get per-tensor Dense weights instead of the rewrite: exact as
        # well, and the model keeps the library's FULLY_CONNECTED kernel (the fastest path, no
        # RESHAPE copies) and the op set the budgets were measured with.
        if int8 is None:
            raise TinygenError(f"{src.name}: no int8 model to plan; the conductor converts the float model first "
                               "(tinygen.intake.sources.convert) and passes it as int8=")
        raw = int8
        note = ("Dense per-channel (runtime computes per-channel FULLY_CONNECTED exactly)" if per_channel_dense
                else "Dense per-tensor (the board's TFLM library computes per-tensor FULLY_CONNECTED only)")
    rewritten = src.tflite is not None and raw is not src.tflite
    m = parse_model(raw, src.name)
    check_int8(m, src.name)
    io = model_io(m)
    in_t, out_t = io.input, io.output
    fe = None
    if src.frontend is not None:  # before minutes of arena bisection: the front end must feed this input
        from tinygen.intake.frontend import for_model

        fe = for_model(src.frontend, in_t.shape, in_t.scale, in_t.zero_point,
                       "--frontend" if src.recipe is None else f"recipe {src.recipe}'s front end")
    if runtime == "tflm":
        refusals.check_ops(m, board, runtime, name=src.name, layers=src.layers, tflm_dir=tflm_dir)
        an.check_tflm_ops(m, src.name)
        if src.tflite is not None and an.dense_per_channel(m) and not per_channel_dense:
            raise TinygenError(
                f"{src.name} has per-channel FULLY_CONNECTED weights in a form tinygen cannot rewrite to CONV_2D, "
                f"which {board.id}'s TFLM library ({rewrite.library_name(board)}) computes wrongly; re-convert "
                "with per-tensor Dense quantization (pass the .keras model instead) or use --runtime compiled")
    try:
        compiled = compile_model(m) if runtime == "compiled" else None
    except UnsupportedModel:  # said again in Keras terms when ops are the reason
        refusals.check_ops(m, board, runtime, name=src.name, layers=src.layers, tflm_dir=tflm_dir)
        raise
    analysis = an.analyze(m)
    progress("measuring the TFLM arena (tflite_micro, bisection)")
    arena = measure_arena(raw, m, src.name)

    rng = np.random.default_rng(seed)
    if src.x_test is not None:
        x_float = np.asarray(src.x_test, dtype=np.float32)
        q_in = quantize_input(x_float, in_t.scale, in_t.zero_point).reshape((len(x_float),) + in_t.shape)
    else:
        x_float = None
        q_in = rng.integers(-128, 128, size=(max(n_vectors, 1),) + in_t.shape, dtype=np.int16).astype(np.int8)
    progress("running the tflite_micro reference on held-out data")
    if rewritten:
        # Outputs do not depend on the arena size; the original's own need is not measured.
        ref_arena = max(2 * arena.recommended_bytes, 1 << 20)
        q_out = run_reference(src.tflite, q_in, src.name, arena_bytes=ref_arena)
        progress("checking the CONV_2D rewrite against the original (tflite_micro, bit-exact)")
        check_equivalent(src.tflite, raw, q_in, q_out, src.name, board, arena_bytes=ref_arena)
    else:
        q_out = run_reference(raw, q_in, src.name, arena_bytes=arena.recommended_bytes)
    float_out = _float_outputs(src, x_float)
    if float_out is not None:
        float_out = float_out.reshape((len(float_out),) + out_t.shape)
    task = infer_task(src, out_t.shape, m)
    qual = quality(task, dequantize(q_out, out_t.scale, out_t.zero_point), float_out, src.y_test) \
        if (float_out is not None or src.y_test is not None) else {"task": task}
    if getattr(src, "quality_extra", None):  # an ONNX model: onnx2tf's float graph vs onnxruntime
        qual.update(src.quality_extra)
    names = getattr(src, "class_names", None)
    if task == "classification" and names and len(names) == int(np.prod(out_t.shape)):
        qual["class_names"] = [str(c) for c in names]  # the confusion matrices' row/column names

    n = min(n_vectors, len(q_in))
    vec = {"inputs": q_in[:n], "outputs": q_out[:n].astype(np.int8)}
    if x_float is not None:
        vec["float_inputs"] = x_float[:n].reshape((n,) + in_t.shape).astype(np.float32)
    if float_out is not None:
        vec["float_outputs"] = float_out[:n].astype(np.float32)
    if task in ("classification", "binary") and src.y_test is not None:
        vec["labels"] = np.asarray(src.y_test[:n]).astype(np.int64)
    if fe is not None:  # raw samples -> the twin's int8 features -> tflite_micro: what INFER_RAW must answer
        from tinygen.intake.frontend import raw_vectors

        rv = raw_vectors(fe[0], fe[1], src.raw_test, n_vectors, seed, in_t.shape)
        rv["raw_outputs"] = run_reference(raw, rv["raw_features"], src.name,
                                          arena_bytes=arena.recommended_bytes).astype(np.int8)
        vec.update(rv)
    plan_budget = budget(board, runtime, m, arena, compiled.peak_bytes if compiled else None,
                         compiled.constant_bytes if compiled else None, fe)
    description = src.description.replace(", used as is", ", layers rewritten") if rewritten else src.description
    return Plan(board, runtime, c_identifier(src.name), m, analysis, arena, description, task, note,
                vec, qual, plan_budget, compiled, tflm_dir,
                tuple(src.class_names) if getattr(src, "class_names", None) else None, src.recipe,
                fe[0].to_json() if fe is not None else None)
