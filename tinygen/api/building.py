"""The conductor of a build: :func:`build` takes a recipe or the user's model through intake,
compression, analysis and codegen in that order and writes the project; ``--fit``'s latency
meter builds and verifies candidates on the emulated core."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

from tinygen.api.project import Progress, Project, TASKS, silent, verify
from tinygen.common.boards import Board
from tinygen.common.errors import TinygenError
from tinygen.compress.options import CompressOptions


LATENCY_VECTORS = 4  # inputs each --fit latency measurement runs


def default_out_dir(board: str, name_hint: str) -> Path:
    """tinygen-<board>-<model stem>, made of [A-Za-z0-9._-] only: the model's file name is user text,
    and this directory reaches PlatformIO and SCons, which expand ``$`` (and SCons runs Python in it)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{board}-{name_hint}")
    stem = re.sub(r"\.{2,}", ".", stem).strip("._-")[:100] or "model"
    return Path(f"tinygen-{stem}")


def name_hint(model: str | Path | None, recipe: str | None) -> str:
    """What :func:`default_out_dir` names a build's project after: the model file's stem, or the recipe."""
    from tinygen.intake.recipes import DEFAULT_RECIPE

    return Path(model).stem if model else (recipe or DEFAULT_RECIPE)


def _check_build_arguments(b: Board, board: str, runtime: str, model, recipe, data, tflm_dir) -> str | None:
    """Refuse contradictory arguments before minutes of training; return the TFLM tree to use (or None)."""
    from tinygen.codegen.plan import check_runtime
    from tinygen.common.escape import pio_path
    from tinygen.intake.recipes import RECIPES

    check_runtime(b, runtime)
    if model and recipe:
        raise TinygenError("give either --model or --recipe, not both")
    if recipe and recipe not in RECIPES:
        raise TinygenError(f"unknown recipe '{recipe}'; choose one of: {', '.join(RECIPES)}")
    if data and not model:
        raise TinygenError("--data goes with --model (recipes bring their own data)")
    if tflm_dir and not Path(tflm_dir, "src", "tensorflow", "lite", "micro").is_dir():
        # the tinygen-mps2 platform also compiles a create_tflm_tree.py tree (tensorflow/ at its top)
        if not (b.hal == "mps2" and Path(tflm_dir, "tensorflow", "lite", "micro").is_dir()):
            raise TinygenError(f"--tflm-dir {tflm_dir} is not a TFLM tree in Arduino-library layout "
                               "(expected src/tensorflow/lite/micro/ inside it; the emulated mps2 boards "
                               "also take a create_tflm_tree.py tree, tensorflow/lite/micro/ at its top)")
    if tflm_dir and runtime != "tflm":
        tflm_dir = None
    if tflm_dir:
        pio_path(Path(tflm_dir).resolve(), "--tflm-dir")
    if runtime == "tflm" and b.tflm.needs_tree and not tflm_dir:
        raise TinygenError(f"board {board} builds TFLM from a source tree: pass --tflm-dir DIR or set "
                           "TINYGEN_TFLM_DIR (Arduino-library layout), or use --runtime compiled")
    return tflm_dir


def _cache_session(fn):
    """Run ``fn`` (build) in a cache session (``use_cache``); the project says what it reused, and the
    cache's warnings (a damaged entry, a cache that cannot be written) join its notes."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tinygen.common import cache, child

        # One worker for the whole build (TensorFlow and tflite_micro imported once: tinygen.common.child)
        with cache.session(bool(kwargs.get("use_cache", True))) as cs, child.warm():
            _prestart_worker(args[0] if args else kwargs.get("model"), kwargs)
            project = fn(*args, **kwargs)
        project.cache = cs.summary()
        project.notes.extend(w for w in cs.warnings if w not in project.notes)
        return project
    return wrapper


def _prestart_worker(model, kwargs: dict) -> None:
    """Have the command's worker start importing TensorFlow now, while this process checks the arguments,
    the board's tools and sets up PlatformIO, when the build will train or read a float model (not for
    an int8 .tflite, nor for a recipe tinygen's cache holds): on two cores that import is then off the
    critical path.  Unused (arguments refused), the worker is killed at the end of the scope."""
    from tinygen.common import child
    from tinygen.intake.jobs import will_need_tensorflow

    seed = kwargs.get("seed", 1234)
    if will_need_tensorflow(model, kwargs.get("recipe"), seed if isinstance(seed, int) else -1,
                            kwargs.get("epochs")):
        child.prestart("tinygen.intake.jobs")


@_cache_session
def build(model: str | Path | None = None, *, board: str, recipe: str | None = None, data: str | Path | None = None,
          out: str | Path | None = None, force: bool = False, runtime: str | None = None, vectors: int = 32,
          seed: int = 1234, epochs: int | None = None, tflm_dir: str | Path | None = None,
          task: str | None = None, progress: Progress | None = None, compress: CompressOptions | None = None,
          use_cache: bool = True, frontend: str | Path | dict | None = None) -> Project:
    """Train a recipe or load ``model`` (.keras, .h5, SavedModel dir or int8 .tflite), quantize it to int8,
    and write a PlatformIO project for ``board`` into ``out`` (default ``tinygen-<board>-<model>``).

    ``data`` (.npz x[, y], .npy or .csv) goes with a user model; ``runtime`` is "tflm" or "compiled" (default:
    the board's); ``vectors`` reference vectors are saved into the project; ``force`` replaces an existing
    tinygen project in ``out``; ``tflm_dir`` is a TFLM source tree in Arduino-library layout; ``task``
    ("classification", "binary" or "regression") overrides the guess from the output shape and labels.
    What was changed in ``data`` to fit the model (channels-first samples transposed, one-hot labels
    made integer) is in ``project.notes``, one line each (the CLI prints them as ``note:`` lines).

    ``compress`` (a :class:`~tinygen.compress.options.CompressOptions`: pruning, QAT, distillation or the
    ``fit`` search, docs/compression.md) compresses the float model before conversion; the candidates
    measured are in ``project.compression`` and PROJECT/reports/compress.{json,png}.

    ``use_cache`` (default True): reuse and keep the trained recipe model, the int8 conversion, the
    reference outputs and the arena in tinygen's cache (:mod:`tinygen.common.cache`); what was reused is
    in ``project.cache``.  The project's files are the same bytes either way.

    ``frontend`` (a user's model): a front-end definition (``--frontend FILE.json``, or its dict) that turns
    raw int16 samples into the model's input (docs/frontend.md); the kws and imu recipes bring their own."""
    import json

    from tinygen.codegen.plan import check_fits, make_plan
    from tinygen.codegen.project import check_out_dir, write_project
    from tinygen.codegen.render import render
    from tinygen.common.boards import get_board
    from tinygen.intake.recipes import DEFAULT_RECIPE
    from tinygen.intake.sources import source_from_recipe, source_from_user

    progress = progress or silent
    model = str(model) if model is not None else None
    data = str(data) if data is not None else None
    if task is not None and task not in TASKS:
        raise TinygenError(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    b = get_board(board)
    runtime = runtime or b.default_runtime
    tflm_dir = _check_build_arguments(b, board, runtime, model, recipe, data, str(tflm_dir) if tflm_dir else None)
    target = Path(out) if out else default_out_dir(board, name_hint(model, recipe))
    check_out_dir(target, force)  # fail before minutes of training
    fe_json = _frontend_json(frontend, model)
    raw_test = _raw_data(data, fe_json)  # --data's raw samples for the front end: checked before any work
    if not b.emulated:
        from tinygen.device.pio_build import check_third_party_path

        # A real board's vendor PlatformIO platform runs its commands through a shell: a path it
        # would act on is refused now, not after training (and not first at flash time).
        check_third_party_path(target.absolute())
    if b.emulated:
        from tinygen.device.toolcheck import check_board_tools

        # Its project is built and run here: a missing compiler or QEMU is said now, not after
        # training; and tinygen's PlatformIO home is set up for the `pio run` the project's README prints.
        check_board_tools(b, runtime)
    copts = _compress_options(compress or CompressOptions(), b, runtime, tflm_dir)
    if model:
        from tinygen.intake.loader import model_kind

        kind = model_kind(Path(model))
        if copts.active:
            from tinygen.compress.fit import check_model_kind

            check_model_kind(kind)  # before the model is even described
        progress(f"loading {model}")
        if kind == "onnx":  # a PyTorch export: tinygen.intake.onnx_source (onnx2tf, then the int8 path)
            from tinygen.intake.onnx_source import source_from_onnx

            src = source_from_onnx(Path(model), data)
        else:
            src = source_from_user(model, data, task)
    else:
        progress(f"training recipe '{recipe or DEFAULT_RECIPE}'")
        src = source_from_recipe(recipe or DEFAULT_RECIPE, seed, epochs, progress)
    if task:
        src.task = task  # before compression, which fine-tunes for the task
    if fe_json is not None:
        src.frontend = fe_json  # make_plan checks it against the model's input (one line, exit 2)
        if raw_test is not None:
            src.raw_test = raw_test
    compression = None
    if copts.active:
        try:
            compression = _compress(src, b, runtime, copts, seed, progress)
        except BaseException:
            if src.work is not None:  # the conversion would have removed it
                src.work.cleanup()
            raise
    int8 = None
    if src.tflite is None:  # intake's last step, for what this board's runtime computes exactly; then codegen
        from tinygen.codegen.plan import per_channel_dense_exact
        from tinygen.codegen.refusals import runtime_ops
        from tinygen.intake.sources import convert

        progress("quantizing to int8 (TFLite converter)")
        int8 = convert(src, per_channel_dense_exact(b, runtime), runtime_ops(runtime))
    plan = make_plan(src, b, runtime, int8=int8, n_vectors=vectors, seed=seed, progress=progress, tflm_dir=tflm_dir)
    check_fits(plan.budget, b, runtime, plan)
    progress("rendering the project")
    files = render(plan)
    write_project(files, target, force=force)
    if compression is not None:
        _write_compression_report(compression, target)
    return Project(target, json.loads(files["tinygen.json"]), b, plan, files, compression, list(src.notes))


def _raw_data(data, fe_json: dict | None):
    if fe_json is None or not data:
        return None
    from tinygen.intake.frontend import spec_from_json
    from tinygen.intake.raw_data import load_raw_samples

    return load_raw_samples(data, spec_from_json(fe_json, "--frontend"))


def _frontend_json(frontend, model) -> dict | None:
    """--frontend FILE.json (or a dict) read and validated before any training; None without one."""
    if frontend is None:
        return None
    if not model:
        raise TinygenError("--frontend goes with --model (the kws and imu recipes bring their own front end)")
    from tinygen.intake.frontend import load_spec, spec_from_json

    spec = spec_from_json(frontend, "frontend") if isinstance(frontend, dict) else load_spec(frontend)
    return spec.to_json()


def _latency_options(copts, b: Board, runtime: str, tflm_dir, max_instructions, latency_ms) -> None:
    """The latency bound of --fit, in instructions per inference on an emulated core: the build's
    board when it is emulated (its instructions are what verify will measure), else qemu-m4 (the
    Cortex-M4 of the Nano 33 BLE).  Milliseconds become instructions at the fit board's clock, one
    instruction per cycle: an optimistic bound on a real core (wait states, multi-cycle loads)."""
    from tinygen.common.boards import get_board, is_emulated

    if not copts.fit:
        raise TinygenError("--fit-max-instructions/--fit-latency-ms go with --fit")
    if max_instructions is not None and latency_ms is not None:
        raise TinygenError("give --fit-max-instructions or --fit-latency-ms, not both")
    fb = copts.fit_board or b
    if latency_ms is not None:
        if not (isinstance(latency_ms, (int, float)) and math.isfinite(latency_ms) and latency_ms > 0):
            raise TinygenError(f"--fit-latency-ms {latency_ms} is not a positive number of milliseconds")
        max_instructions = int(latency_ms * 1e-3 * int(fb.clock_hz))
    if not (isinstance(max_instructions, int) and max_instructions > 0):
        raise TinygenError(f"--fit-max-instructions {max_instructions} is not a positive number of instructions")
    eb = b if is_emulated(b) else get_board("qemu-m4")
    rt = runtime if runtime in fb.runtimes else fb.default_runtime
    if rt not in eb.runtimes:
        rt = eb.default_runtime
    if rt == "tflm" and eb.tflm.needs_tree and not tflm_dir:
        raise TinygenError(f"the latency bound runs TFLM on {eb.id}, which builds TFLM from a source tree: "
                           "pass --tflm-dir DIR (or TINYGEN_TFLM_DIR), or use --runtime compiled")
    copts.max_instructions = max_instructions
    copts.latency_ms = latency_ms
    copts.latency_board = eb.id
    copts.measure_instructions = _instruction_meter(eb, rt, tflm_dir)


def _instruction_meter(eb: Board, runtime: str, tflm_dir) -> Callable[[Path, Path], int]:
    def measure(tflite: Path, out: Path) -> int:
        """Instructions per inference of an int8 model: built for ``eb`` into ``out`` and run on QEMU.
        The most over a few seeded vectors: some kernels branch on values, and a bound should hold
        for other inputs too."""
        project = build(tflite, board=eb.id, runtime=runtime, out=out, force=True, vectors=LATENCY_VECTORS,
                        tflm_dir=tflm_dir if runtime == "tflm" else None)
        project.build_firmware()
        report = verify(project, fresh_vectors=0, timeout=60.0)
        return int(report.metrics["instructions_per_inference"]["max"])

    return measure


def _compress_options(c: CompressOptions, b, runtime: str, tflm_dir):
    """The search's working options (:class:`tinygen.compress.fit.Options`) from what the user asked,
    checked before any training."""
    from tinygen.common.boards import get_board
    from tinygen.compress.fit import Options, check_options, parse_prune

    if not isinstance(c, CompressOptions):
        raise TinygenError(f"compress= takes a tinygen.CompressOptions, not {type(c).__name__}")
    prune = parse_prune(c.prune) if isinstance(c.prune, str) else c.prune
    opts = Options(prune=prune, qat=bool(c.qat), distill=c.distill, fit=bool(c.fit), fit_budget=c.fit_budget,
                   headroom=c.fit_headroom, epochs=dict(c.epochs or {}))
    if c.fit_ratios:
        opts.fit_ratios = tuple(c.fit_ratios)
    check_options(opts)
    if c.fit_board:
        if not c.fit:
            raise TinygenError("--fit-board goes with --fit")
        opts.fit_board = get_board(c.fit_board)
    if c.fit_widths is not None:
        opts.fit_widths = tuple(c.fit_widths)
        check_options(opts)
    if c.fit_max_instructions is not None or c.fit_latency_ms is not None:
        _latency_options(opts, b, runtime, tflm_dir, c.fit_max_instructions, c.fit_latency_ms)
    return opts


def _compress(src, b: Board, runtime: str, opts, seed: int, progress: Progress) -> dict:
    """Check the source against the options (task, layers, data: seconds), then train and measure
    the candidates (minutes)."""
    import numpy as np

    from tinygen.codegen.plan import infer_task
    from tinygen.compress.fit import check_source, compress

    out_shape = src.output_shape
    if out_shape is None:  # not described (a SavedModel, refused below): guess from the labels
        y = src.y_test
        out_shape = (2,) if y is not None and np.asarray(y).ndim == 1 and np.issubdtype(np.asarray(y).dtype,
                                                                                       np.integer) else (1,)
    task = infer_task(src, out_shape)
    check_source(src, opts)
    per_channel_dense = b.tflm.per_channel_fully_connected \
        if runtime == "tflm" else True
    return compress(src, b, runtime, opts, task=task, per_channel_dense=per_channel_dense, seed=seed,
                    progress=progress)


def _write_compression_report(report: dict, target: Path) -> None:
    import json

    from tinygen.compress.fit import chart

    from tinygen.common.safe_write import write_text

    reports = target / "reports"
    write_text(reports / "compress.json", json.dumps(report, indent=2, sort_keys=True, default=str) + "\n",
               root=target)
    png = chart(report, reports / "compress.png", root=target)
    report["chart"] = str(png) if png else None
