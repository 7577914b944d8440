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

May import: every stage; never :mod:`tinygen.cli`.
"""

from __future__ import annotations

import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Union

from tinygen.common.errors import TinygenError
from tinygen.verification.workflow import Report

if TYPE_CHECKING:
    from tinygen.analysis.ops import Analysis, OpInfo
    from tinygen.analysis.reference import ArenaInfo
    from tinygen.codegen.plan import Plan
    from tinygen.device.emulator import QemuBoard
    from tinygen.verification.host_check import HostCheckResult
    from tinygen.tflite.model import TfliteModel

__all__ = ["build", "verify", "verify_twin", "inspect", "flash", "doctor", "Project", "Report", "ModelInfo", "default_out_dir",
           "bench", "BenchRow"]

Progress = Callable[[str], None]
RUNTIMES = ("tflm", "compiled")
TASKS = ("classification", "binary", "regression")
LATENCY_VECTORS = 4  # inputs each --fit latency measurement runs
# A real board reboots after an upload; its port answers only after that.
REBOOT_AFTER_UPLOAD_S = 2.0


def _silent(text: str) -> None:
    pass


# ----------------------------------------------------------------- projects

@dataclass
class Project:
    """A generated PlatformIO project: its directory, manifest (tinygen.json) and board file.

    ``plan`` and ``files`` (``{relative path: bytes}``) are there when :func:`build` made the
    project in this process; :meth:`load` opens one from disk without them."""

    path: Path
    manifest: dict = field(repr=False)
    board: dict = field(repr=False)
    plan: Plan | None = field(default=None, repr=False)
    files: dict[str, bytes] | None = field(default=None, repr=False)
    compression: dict | None = field(default=None, repr=False)  # build(prune=/qat=/distill=/fit=): candidates
    notes: list[str] = field(default_factory=list)  # what build changed in the user's data, one line each
    cache: list[str] = field(default_factory=list)  # what build reused from tinygen's cache (tinygen.common.cache)

    @classmethod
    def load(cls, path: str | Path) -> Project:
        from tinygen.codegen.project import load_manifest
        from tinygen.common.boards import get_board

        path = Path(path)
        man = load_manifest(path)
        return cls(path, man, get_board(man["board"]))

    @property
    def runtime(self) -> str:
        return self.manifest["runtime"]

    @property
    def emulated(self) -> bool:
        from tinygen.common.boards import is_emulated

        return is_emulated(self.board)

    def build_firmware(self, progress: Progress | None = None) -> Path:
        """``pio run`` (emulated boards: offline, in tinygen's own PlatformIO home); returns the ELF."""
        from tinygen.device.pio import build_firmware, firmware_elf

        if not self.emulated:
            from tinygen.device.realboard import check_first_build

            check_first_build(self.path, self.board, self.runtime)
        (progress or _silent)(f"pio run in {self.path}")
        build_firmware(self.path, self.board)
        return firmware_elf(self.path, self.board["id"])

    def flash(self, port: str | None = None, *, build: bool = True,
              progress: Progress | None = None) -> QemuBoard | None:
        """See :func:`flash`."""
        return flash(self, port, build=build, progress=progress)

    def verify(self, port: str | None = None, **options) -> Report:
        """See :func:`verify` (same keyword options)."""
        return verify(self, port=port, **options)


ProjectLike = Union[Project, str, Path]


def _as_project(project: ProjectLike) -> Project:
    return project if isinstance(project, Project) else Project.load(project)


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


# ----------------------------------------------------------------- build

def _check_build_arguments(b: dict, board: str, runtime: str, model, recipe, data, tflm_dir) -> str | None:
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
        raise TinygenError(f"--tflm-dir {tflm_dir} is not a TFLM tree in Arduino-library layout "
                           "(expected src/tensorflow/lite/micro/ inside it)")
    if tflm_dir and runtime != "tflm":
        tflm_dir = None
    if tflm_dir:
        pio_path(Path(tflm_dir).resolve(), "--tflm-dir")
    if runtime == "tflm" and b.get("tflm", {}).get("needs_tree") and not tflm_dir:
        raise TinygenError(f"board {board} builds TFLM from a source tree: pass --tflm-dir DIR or set "
                           "TINYGEN_TFLM_DIR (Arduino-library layout), or use --runtime compiled")
    return tflm_dir


def _cache_session(fn):
    """Run ``fn`` (build) in a cache session (``use_cache``); the project says what it reused, and the
    cache's warnings (a damaged entry, a cache that cannot be written) join its notes."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from tinygen.common import cache

        with cache.session(bool(kwargs.get("use_cache", True))) as cs:
            project = fn(*args, **kwargs)
        project.cache = cs.summary()
        project.notes.extend(w for w in cs.warnings if w not in project.notes)
        return project
    return wrapper


@_cache_session
def build(model: str | Path | None = None, *, board: str, recipe: str | None = None, data: str | Path | None = None,
          out: str | Path | None = None, force: bool = False, runtime: str | None = None, vectors: int = 32,
          seed: int = 1234, epochs: int | None = None, tflm_dir: str | Path | None = None,
          task: str | None = None, progress: Progress | None = None, prune: float | dict | None = None,
          qat: bool = False, distill: float | None = None, fit: bool = False, fit_budget: dict | None = None,
          fit_headroom: float = 0.10, compress_epochs: dict | None = None,
          fit_board: str | None = None, fit_ratios: tuple | None = None,
          fit_max_instructions: int | None = None, fit_latency_ms: float | None = None,
          fit_widths: tuple | None = None, use_cache: bool = True,
          frontend: str | Path | dict | None = None) -> Project:
    """Train a recipe or load ``model`` (.keras, .h5, SavedModel dir or int8 .tflite), quantize it to int8,
    and write a PlatformIO project for ``board`` into ``out`` (default ``tinygen-<board>-<model>``).

    ``data`` (.npz x[, y], .npy or .csv) goes with a user model; ``runtime`` is "tflm" or "compiled" (default:
    the board's); ``vectors`` reference vectors are saved into the project; ``force`` replaces an existing
    tinygen project in ``out``; ``tflm_dir`` is a TFLM source tree in Arduino-library layout; ``task``
    ("classification", "binary" or "regression") overrides the guess from the output shape and labels.
    What was changed in ``data`` to fit the model (channels-first samples transposed, one-hot labels
    made integer) is in ``project.notes``, one line each (the CLI prints them as ``note:`` lines).

    Compression (:mod:`tinygen.compress`) before conversion: ``prune`` (a ratio, or {layer: ratio}),
    ``qat``, ``distill`` (the student's width), or ``fit`` (search the smallest pruning or student that fits
    the board's flash and RAM, or ``fit_board``'s, or ``fit_budget`` {"flash_bytes", "ram_bytes"}, with
    ``fit_headroom``, trying ``fit_ratios`` and distilled students of ``fit_widths``);
    ``fit_max_instructions`` (or ``fit_latency_ms``, times the fit board's clock) bounds the instructions
    per inference measured on the emulated core (QEMU -icount);
    the candidates measured are in ``project.compression`` and PROJECT/reports/compress.{json,png}.

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
    from tinygen.compress.fit import check_options as check_fit_options
    from tinygen.intake.recipes import DEFAULT_RECIPE
    from tinygen.intake.sources import source_from_recipe, source_from_user

    progress = progress or _silent
    model = str(model) if model is not None else None
    data = str(data) if data is not None else None
    if task is not None and task not in TASKS:
        raise TinygenError(f"unknown task '{task}'; choose one of: {', '.join(TASKS)}")
    b = get_board(board)
    runtime = runtime or b["default_runtime"]
    tflm_dir = _check_build_arguments(b, board, runtime, model, recipe, data, str(tflm_dir) if tflm_dir else None)
    target = Path(out) if out else default_out_dir(board, name_hint(model, recipe))
    check_out_dir(target, force)  # fail before minutes of training
    fe_json = _frontend_json(frontend, model)
    if not b.get("emulator"):
        from tinygen.device.pio import check_third_party_path

        # A real board's vendor PlatformIO platform runs its commands through a shell: a path it
        # would act on is refused now, not after training (and not first at flash time).
        check_third_party_path(target.absolute())
    if b.get("emulator"):
        from tinygen.device.toolcheck import check_board_tools

        # Its project is built and run here: a missing compiler or QEMU is said now, not after
        # training; and tinygen's PlatformIO home is set up for the `pio run` the project's README prints.
        check_board_tools(b, runtime)
    copts = _compress_options(prune, qat, distill, fit, fit_budget, fit_headroom, compress_epochs, fit_ratios)
    if fit_board:
        if not fit:
            raise TinygenError("--fit-board goes with --fit")
        copts.fit_board = get_board(fit_board)
    if fit_widths is not None:
        copts.fit_widths = tuple(fit_widths)
        check_fit_options(copts)
    if fit_max_instructions is not None or fit_latency_ms is not None:
        _latency_options(copts, b, runtime, tflm_dir, fit_max_instructions, fit_latency_ms)
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
    compression = None
    if copts.active:
        try:
            compression = _compress(src, b, runtime, copts, seed, progress)
        except BaseException:
            if src.work is not None:  # make_plan's conversion would have removed it
                src.work.cleanup()
            raise
    plan = make_plan(src, b, runtime, n_vectors=vectors, seed=seed, progress=progress, tflm_dir=tflm_dir)
    check_fits(plan.budget, b, runtime, plan)
    progress("rendering the project")
    files = render(plan)
    write_project(files, target, force=force)
    if compression is not None:
        _write_compression_report(compression, target)
    return Project(target, json.loads(files["tinygen.json"]), b, plan, files, compression, list(src.notes))


def _frontend_json(frontend, model) -> dict | None:
    """--frontend FILE.json (or a dict) read and validated before any training; None without one."""
    if frontend is None:
        return None
    if not model:
        raise TinygenError("--frontend goes with --model (the kws and imu recipes bring their own front end)")
    from tinygen.intake.frontend import load_spec, spec_from_json

    spec = spec_from_json(frontend, "frontend") if isinstance(frontend, dict) else load_spec(frontend)
    return spec.to_json()


def _latency_options(copts, b: dict, runtime: str, tflm_dir, max_instructions, latency_ms) -> None:
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
        max_instructions = int(latency_ms * 1e-3 * int(fb["clock_hz"]))
    if not (isinstance(max_instructions, int) and max_instructions > 0):
        raise TinygenError(f"--fit-max-instructions {max_instructions} is not a positive number of instructions")
    eb = b if is_emulated(b) else get_board("qemu-m4")
    rt = runtime if runtime in fb["runtimes"] else fb["default_runtime"]
    if rt not in eb["runtimes"]:
        rt = eb["default_runtime"]
    if rt == "tflm" and eb.get("tflm", {}).get("needs_tree") and not tflm_dir:
        raise TinygenError(f"the latency bound runs TFLM on {eb['id']}, which builds TFLM from a source tree: "
                           "pass --tflm-dir DIR (or TINYGEN_TFLM_DIR), or use --runtime compiled")
    copts.max_instructions = max_instructions
    copts.latency_ms = latency_ms
    copts.latency_board = eb["id"]
    copts.measure_instructions = _instruction_meter(eb, rt, tflm_dir)


def _instruction_meter(eb: dict, runtime: str, tflm_dir) -> Callable[[Path, Path], int]:
    def measure(tflite: Path, out: Path) -> int:
        """Instructions per inference of an int8 model: built for ``eb`` into ``out`` and run on QEMU.
        The most over a few seeded vectors: some kernels branch on values, and a bound should hold
        for other inputs too."""
        project = build(tflite, board=eb["id"], runtime=runtime, out=out, force=True, vectors=LATENCY_VECTORS,
                        tflm_dir=tflm_dir if runtime == "tflm" else None)
        project.build_firmware()
        report = verify(project, fresh_vectors=0, timeout=60.0)
        return int(report.metrics["instructions_per_inference"]["max"])

    return measure


def _compress_options(prune, qat, distill, fit, fit_budget, headroom, epochs, fit_ratios):
    from tinygen.compress.fit import Options, check_options, parse_prune

    if isinstance(prune, str):
        prune = parse_prune(prune)
    opts = Options(prune=prune, qat=bool(qat), distill=distill, fit=bool(fit), fit_budget=fit_budget,
                   headroom=headroom, epochs=dict(epochs or {}))
    if fit_ratios:
        opts.fit_ratios = tuple(fit_ratios)
    check_options(opts)
    return opts


def _compress(src, b: dict, runtime: str, opts, seed: int, progress: Progress) -> dict:
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
    per_channel_dense = bool(b.get("tflm", {}).get("per_channel_fully_connected", False)) \
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


# ----------------------------------------------------------------- flash and verify

def flash(project: ProjectLike, port: str | None = None, *, build: bool = True,
          progress: Progress | None = None) -> QemuBoard | None:
    """Put the project's firmware on its board.

    A real board: ``pio run -t upload`` (to ``port``, default PlatformIO's choice), then the wait for the
    board's reboot; returns None.  An emulated board: ``pio run`` (unless ``build=False``), then QEMU
    boots the ELF; returns the running :class:`~tinygen.device.emulator.QemuBoard` (its ``.port`` is the
    pty): stop it with ``.stop()`` or use it in a ``with`` block."""
    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.pio import build_firmware

    project = _as_project(project)
    if not project.emulated:
        from tinygen.device.realboard import check_first_build

        check_first_build(project.path, project.board, project.runtime)
        (progress or _silent)(f"pio run -t upload in {project.path}")
        build_firmware(project.path, project.board, target="upload",
                       upload_port=None if port in (None, "auto") else port)
        time.sleep(REBOOT_AFTER_UPLOAD_S)
        return None
    if build:
        project.build_firmware(progress)
    return qemu_for_project(project.path, project.board).start()


def _check_verify_options(fresh_vectors: int, tolerance: int, timeout: float, retries: int) -> None:
    # nan compares false with everything: a plain range check would let it through (and hang).
    if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and 0 < timeout <= 3600):
        raise TinygenError(f"timeout {timeout} is not a number of seconds in (0, 3600]")
    if not 0 <= fresh_vectors <= 100000:
        raise TinygenError(f"fresh_vectors {fresh_vectors} is not in 0..100000")
    if not 0 <= tolerance <= 255:
        raise TinygenError(f"tolerance {tolerance} is not a number of LSB in 0..255")
    if not 0 <= retries <= 100:
        raise TinygenError(f"retries {retries} is not in 0..100")


def _stderr_trace(line: str) -> None:
    print(line, file=sys.stderr)


def verify(project: ProjectLike, *, port: str | None = None, fresh_vectors: int = 16, tolerance: int = 0,
           report_dir: str | Path | None = None, timeout: float = 10.0, retries: int = 3, seed: int = 0,
           trace: Callable[[str], None] | bool | None = None, progress: Progress | None = None,
           place: str | None = None, coordinator: str | None = None,
           layers: bool = False, profile: bool = False) -> Report:
    """Send the project's vectors (plus ``fresh_vectors`` random ones, seeded by ``seed``) to the board and
    compare its outputs with the tflite_micro reference; write verify.json/.md/.png into ``report_dir``
    (default PROJECT/reports).

    ``port``: a serial port, "auto" (the board's USB VID/PID), or None: "auto" for a real board, and for an
    emulated one QEMU booted on the project's built firmware (see :meth:`Project.build_firmware`) for the
    duration of the run.  ``trace`` gets a hex dump of the traffic (True: stderr).  Outputs off by more
    than ``tolerance`` LSB give ``report.passed == False`` (``report.raise_if_failed()`` turns that into
    VerificationFailed); a board running another model raises VerificationFailed at once.

    ``place``: a labgrid place (instead of ``port``) on the coordinator ``coordinator`` (HOST[:PORT],
    default $LG_COORDINATOR): acquired for the run, its NetworkSerialPort used, released afterwards.
    ``layers``: name the first op whose output differs from the reference (``report.layers``);
    ``profile``: ticks per op (``report.profile``, and reports/profile.png)."""
    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.ports import resolve_port
    from tinygen.verification.workflow import verify_project

    _check_verify_options(fresh_vectors, tolerance, timeout, retries)
    project = _as_project(project)
    progress = progress or _silent

    def run_on(p: str) -> Report:
        return verify_project(project.path, p, project.board, fresh=fresh_vectors, tolerance=tolerance,
                              report_dir=Path(report_dir) if report_dir is not None else None, timeout=timeout,
                              retries=retries, seed=seed, trace=_stderr_trace if trace is True else (trace or None),
                              progress=progress, layers=layers, profile=profile)

    if place is not None:
        from tinygen.device.farm import place_port

        if port is not None:
            raise TinygenError("give either a port or a labgrid place, not both")
        with place_port(place, coordinator) as url:
            progress(f"labgrid place {place}: {url}")
            return run_on(url)
    if port is None and project.emulated:
        with qemu_for_project(project.path, project.board) as qb:
            progress(f"QEMU {project.board['emulator']['machine']} up, UART0 on {qb.port}")
            return run_on(qb.port)
    return run_on(resolve_port("auto" if port is None else port, project.board))


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

    _check_verify_options(fresh_vectors, tolerance, timeout, retries)
    progress = progress or _silent
    plan = twin.plan_twin(_as_project(project).path, runtime=runtime, tflm_dir=str(tflm_dir) if tflm_dir else None)
    twin.build_twin(plan, build, progress)
    return twin.run_twin(plan, progress, fresh=fresh_vectors, tolerance=tolerance, seed=seed, timeout=timeout,
                         report_dir=Path(report_dir) if report_dir is not None else None, retries=retries,
                         trace=_stderr_trace if trace is True else (trace or None), layers=layers, profile=profile)


def doctor(boards: tuple[str, ...] | list[str] = ("qemu-m4",)) -> dict:
    """{"tools": [{"tool", "ok", "detail", "fix"}], "boards": [{"board", "usable", "what"}], "required":
    {"boards": [...], "missing": [{"board", "tool", "fix"}]}}: which toolchains are installed here and so
    which boards can be built, flashed and verified here.  ``boards`` are the ones that must be usable
    (default qemu-m4, the main job's board; "all": every board); what they lack is in "missing"
    (``tinygen doctor`` exits 4 then).  An unknown board id raises TinygenError before anything is checked."""
    from tinygen.common.boards import all_boards, get_board
    from tinygen.device.toolcheck import board_problems, check_tools, usable_boards

    wanted = [b for name in boards for b in (all_boards().values() if name == "all" else [get_board(name)])]
    tools = check_tools()
    missing = [{"board": b["id"], "tool": c["tool"], "fix": c["fix"]} for b in wanted for c in board_problems(b, tools)]
    return {"tools": tools, "boards": usable_boards(tools),
            "required": {"boards": sorted({b["id"] for b in wanted}), "missing": missing}}


# ----------------------------------------------------------------- inspect

@dataclass
class ModelInfo:
    """What :func:`inspect` found in an int8 .tflite.  :meth:`to_dict` is ``tinygen inspect --json``."""

    path: Path
    model: TfliteModel = field(repr=False)
    analysis: Analysis = field(repr=False)
    arena: ArenaInfo
    tensors: list[dict] = field(repr=False)  # index, name, shape, dtype, scale, zero_point, constant, bytes
    fits: dict[str, dict[str, dict]] = field(repr=False)  # {board id: {runtime: budget}}
    compiled_memory_plan: dict | None = field(default=None, repr=False)  # {"peak_bytes", "tensors"}
    host_check: HostCheckResult | None = None  # inspect(..., check=True): the emitted C run on this host

    @property
    def sha256(self) -> str:
        return self.model.sha256

    @property
    def ops(self) -> list[str]:
        return self.analysis.ops

    @property
    def op_counts(self) -> dict[str, int]:
        return self.analysis.op_counts

    @property
    def params(self) -> int:
        return self.analysis.params

    @property
    def macs(self) -> int:
        return self.analysis.macs

    @property
    def model_bytes(self) -> int:
        return self.analysis.model_bytes

    @property
    def layers(self) -> list[OpInfo]:
        return self.analysis.layers

    def to_dict(self) -> dict:
        data = {"model": str(self.path), "sha256": self.sha256, "ops": self.ops, "op_counts": self.op_counts,
                "params": self.params, "macs": self.macs, "model_bytes": self.model_bytes,
                "arena": self.arena.as_dict(), "tensors": self.tensors, "fits": self.fits}
        if self.compiled_memory_plan is not None:
            data["compiled_memory_plan"] = self.compiled_memory_plan
        if self.host_check is not None:
            data["host_check"] = self.host_check.as_dict()
        return data


def _tensor_rows(m: TfliteModel) -> list[dict]:
    return [{"index": t.index, "name": t.name, "shape": list(t.shape), "dtype": t.dtype,
             "scale": list(t.scale) if len(t.scale) <= 1 else f"per-channel ({len(t.scale)}, axis "
             f"{t.quantized_dimension})", "zero_point": list(t.zero_point[:1]) if t.zero_point else [],
             "constant": t.is_constant, "bytes": t.nbytes} for t in m.tensors]


def inspect(path: str | Path, runtime: str = "tflm", *, check: bool = False, vectors: int = 32,
            progress: Progress | None = None) -> ModelInfo:
    """Ops, tensors, parameters, MACs, the measured TFLM arena and the fit on every board of an int8
    .tflite; with ``runtime="compiled"`` also the compiled runtime's static memory plan, and with
    ``check=True`` the emitted C compiled and run on this host (ASan/UBSan) against tflite_micro
    on ``vectors`` inputs (:attr:`ModelInfo.host_check`; a mismatch is reported there, not raised)."""
    from tinygen.analysis import ops as an
    from tinygen.analysis.reference import measure_arena
    from tinygen.codegen import compiled as cmod
    from tinygen.codegen import refusals
    from tinygen.codegen.board_fit import fits_per_board
    from tinygen.tflite.int8 import check_int8
    from tinygen.tflite.model import read_model
    from tinygen.verification import host_check

    if runtime not in RUNTIMES:
        raise TinygenError(f"unknown runtime '{runtime}'; choose one of: {', '.join(RUNTIMES)}")
    if check and runtime != "compiled":
        raise TinygenError("--check runs the compiled runtime's C on this host; add --runtime compiled")
    if check:
        host_check.find_compiler()  # a missing compiler is named before the slow arena bisection
    progress = progress or _silent
    p = Path(path)
    if p.exists() and p.suffix.lower() != ".tflite":
        raise TinygenError(f"inspect reads .tflite files; {p.name} is not one (convert it with "
                           f"'tinygen build --model {p}')")
    m = read_model(p)
    check_int8(m, str(p))
    refusals.check_ops(m, {}, "tflm", name=str(p))  # the arena is measured with TFLM: its missing ops first
    an.check_tflm_ops(m, str(p))
    analysis = an.analyze(m)
    progress("measuring the TFLM arena (tflite_micro, bisection)")
    arena = measure_arena(m.raw, m, str(p))
    program = cmod.lower(m)  # once: the support check and the memory plan read the same IR
    if runtime == "compiled":
        if program.refusals:
            # in Keras terms; inspect runs either runtime on any model, whatever the board
            refusals.check_ops(m, {"runtimes": RUNTIMES}, "compiled", name=str(p))
        cmod.check_supported(program)
    # One static plan serves every board's fit check (and the memory table when runtime="compiled").
    compiled_plan = cmod.plan_memory(program) if program.supported else None
    fits = fits_per_board(m, arena, str(p), compiled_plan.peak_bytes if compiled_plan else None, progress)
    memory = None
    if runtime == "compiled":
        memory = {"peak_bytes": compiled_plan.peak_bytes, "tensors": cmod.memory_table(compiled_plan)}
    hc = None
    if check:
        progress(f"host check: compiling the emitted C (ASan/UBSan), running {vectors} vectors vs tflite_micro")
        hc = host_check.check_model(m, vectors=vectors, name=str(p))
    return ModelInfo(p, m, analysis, arena, _tensor_rows(m), fits, memory, hc)


# ----------------------------------------------------------------- bench

@dataclass
class BenchRow:
    """One emulated core running one runtime of a model (:func:`bench`).  ``ram_bytes`` is static
    RAM (.data + .bss: globals, the arena, the I/O buffers) plus the stack high-water mark."""

    board: str
    cpu: str
    runtime: str
    instructions: float  # per inference, median over the vectors (QEMU -icount)
    flash_bytes: int  # every allocated section with contents in the ELF
    static_ram_bytes: int
    stack_bytes: int | None  # None: the firmware does not paint its stack
    arena_bytes: int  # the compiled runtime's static arena, or TFLM's
    bit_exact: bool
    fits: list[str]  # the real boards this model and runtime fit, by tinygen's own budget check
    project: Path = field(repr=False)

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + (self.stack_bytes or 0)

    def to_dict(self) -> dict:
        return {"board": self.board, "cpu": self.cpu, "runtime": self.runtime, "instructions": self.instructions,
                "flash_bytes": self.flash_bytes, "static_ram_bytes": self.static_ram_bytes,
                "stack_bytes": self.stack_bytes, "ram_bytes": self.ram_bytes, "arena_bytes": self.arena_bytes,
                "bit_exact": self.bit_exact, "fits": self.fits, "project": str(self.project)}


def _bench_boards(boards) -> list[dict]:
    from tinygen.common.boards import all_boards, get_board, is_emulated

    if boards is None:
        return [b for b in all_boards().values() if is_emulated(b)]
    chosen = []
    for bid in boards:
        b = get_board(str(bid))
        if not is_emulated(b):
            raise TinygenError(f"bench runs on emulated boards; {bid} is a real board (choose from: "
                               f"{', '.join(k for k, v in all_boards().items() if is_emulated(v))})")
        if b not in chosen:
            chosen.append(b)
    if not chosen:
        raise TinygenError("bench needs at least one board")
    return chosen


def _real_fits(plan: Plan) -> list[str]:
    from tinygen.codegen.board_fit import fits_per_board
    from tinygen.common.boards import all_boards, is_emulated

    fits = fits_per_board(plan.model, plan.arena, plan.name, plan.compiled.peak_bytes if plan.compiled else None)
    return [bid for bid, b in all_boards().items()
            if not is_emulated(b) and fits.get(bid, {}).get(plan.runtime, {}).get("fits")]


def bench(model: str | Path | None = None, *, boards: list[str] | None = None, recipe: str | None = None,
          tflm_dir: str | Path | None = None, out: str | Path | None = None, vectors: int = 4,
          progress: Progress | None = None) -> list[BenchRow]:
    """Build and run ``model`` (or ``recipe``) on each emulated board in ``boards`` (default: every one)
    with the compiled runtime, and with TFLM too when ``tflm_dir`` is given; return a row per board and
    runtime: instructions per inference, flash, RAM (static + measured stack high-water), whether the
    board's outputs were bit-exact with tflite_micro, and which real boards the model fits.

    Every board runs the same int8 model bytes: the first build's model.tflite.  Projects go into
    ``out`` (default: a new temporary directory), one per board and runtime."""
    import tempfile

    from tinygen.device.emulator import qemu_for_project
    from tinygen.device.guest_memory import elf_footprint, stack_high_water

    progress = progress or _silent
    chosen = _bench_boards(boards)
    if not 0 <= vectors <= 10000:
        raise TinygenError(f"vectors {vectors} is not in 0..10000")
    work = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="tinygen-bench-"))
    runtimes = ["compiled"] + (["tflm"] if tflm_dir else [])
    rows: list[BenchRow] = []
    fits: dict[str, list[str]] = {}
    source = {"model": model, "recipe": recipe}
    for rt in runtimes:
        for b in chosen:
            if rt not in b["runtimes"]:
                continue
            progress(f"{b['id']} {rt}: building")
            project = build(**source, board=b["id"], runtime=rt, out=work / f"{b['id']}-{rt}", force=True,
                            vectors=max(vectors, 1), tflm_dir=tflm_dir if rt == "tflm" else None, progress=progress)
            source = {"model": project.path / "model.tflite", "recipe": None}  # same bytes everywhere
            if rt not in fits:
                fits[rt] = _real_fits(project.plan)
            elf = project.build_firmware(progress)
            foot = elf_footprint(elf)
            with tempfile.TemporaryDirectory(prefix="tg-mon-") as tmp:
                sock = str(Path(tmp) / "monitor")
                with qemu_for_project(project.path, b, monitor_socket=sock) as qb:
                    progress(f"{b['id']} {rt}: running on QEMU {b['emulator']['machine']}")
                    report = verify(project, port=qb.port, fresh_vectors=0, timeout=60.0)
                    stack = stack_high_water(sock, foot)
            plan = project.plan
            rows.append(BenchRow(
                board=b["id"], cpu=b["cpu"], runtime=rt,
                instructions=float(report.metrics["instructions_per_inference"]["median"]),
                flash_bytes=foot["flash_bytes"], static_ram_bytes=foot["static_ram_bytes"], stack_bytes=stack,
                arena_bytes=int(plan.compiled.peak_bytes if plan.compiled else plan.arena.recommended_bytes),
                bit_exact=bool(report.metrics["max_abs_diff_lsb"] == 0), fits=fits[rt], project=project.path))
    return rows
