"""The ``tinygen`` command line.

One function per command (``<noun>_cmd``); each validates its arguments and
raises :class:`TinygenError` for anything the user can fix.  :func:`main`
turns those into one line on stderr and a non-zero exit, never a traceback
(set TINYGEN_DEBUG=1 to see one for unexpected errors).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tinygen import __version__
from tinygen.common.errors import TinygenError
from tinygen.common.escape import pio_path, rich_text, terminal

# Piped output (CI logs, tests) gets wide tables instead of rich's 80-column default.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def _emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class _Progress:
    """A status line on stderr for long steps (training, conversion, bisection)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._status = None

    def __enter__(self):
        if self.enabled:
            self._status = err.status("starting")
            self._status.__enter__()
        return self

    def __call__(self, text: str) -> None:
        if self._status is not None:
            text = rich_text(text)  # may quote file names: no control characters, no markup
            self._status.update(text)
            if not err.is_terminal:
                err.print(f"[dim]… {text}[/dim]")

    def __exit__(self, *exc):
        if self._status is not None:
            self._status.__exit__(*exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tinygen")
def cli() -> None:
    """tinygen: tiny neural networks onto microcontrollers, verified over the serial port.

    Typical use: `tinygen build --board esp32` (train the default recipe, quantize to int8 and
    emit a PlatformIO project), or `tinygen run --board qemu-m4` (build, flash an emulated
    Cortex-M4 and verify it bit-exactly over its serial port).
    """


# ----------------------------------------------------------------- boards

@cli.command("boards")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def boards_cmd(as_json: bool) -> None:
    """List the known boards: MCU, flash, RAM, PlatformIO target and TFLM library."""
    from tinygen.common.boards import all_boards, is_emulated

    boards = all_boards()
    if as_json:
        _emit_json([{k: v for k, v in b.items() if not k.startswith("_")} for b in boards.values()])
        return
    t = Table(title="tinygen boards")
    for col in ("board", "MCU", "flash", "RAM", "PlatformIO (platform / board / framework)", "runtimes",
                "TFLM library"):
        t.add_column(col)
    for b in boards.values():
        pio = b["platformio"]
        t.add_row(b["id"] + (" (emulated)" if is_emulated(b) else ""), b["mcu"], _fmt(b["flash_bytes"]),
                  _fmt(b["ram_bytes"]),
                  f"{pio['platform']} / {pio['board']} / {pio.get('framework') or '(bare metal)'}",
                  ", ".join(b["runtimes"]),
                  ", ".join(b.get("tflm", {}).get("lib_deps", [])) or "(TINYGEN_TFLM_DIR tree)")
    out.print(t)


# ----------------------------------------------------------------- build

def _summary_tables(plan) -> None:
    a, m = plan.analysis, plan.model
    it, ot = m.input_tensor(), m.output_tensor()
    t = Table(title=Text(terminal(f"tinygen build: {plan.name} → {plan.board['id']} ({plan.runtime})")),
              show_header=False)
    t.add_column("what")
    t.add_column("value")
    t.add_row("source", Text(terminal(plan.source)))
    t.add_row("ops", Text(terminal(", ".join(f"{op}×{a.op_counts[op]}" for op in a.ops))))  # CUSTOM:<name>
    t.add_row("parameters", _fmt(a.params))
    t.add_row("MACs / inference", _fmt(a.macs))
    t.add_row("model bytes", _fmt(a.model_bytes))
    t.add_row("input", f"{it.dtype} {list(it.shape)} scale={it.scale[0]:.6g} zp={it.zero_point[0]}")
    t.add_row("output", f"{ot.dtype} {list(ot.shape)} scale={ot.scale[0]:.6g} zp={ot.zero_point[0]}")
    t.add_row("quantization", Text(terminal(f"full-integer int8; {plan.quantization_note}")))
    t.add_row("TFLM arena", f"{_fmt(plan.arena.recommended_bytes)} B (host minimum {_fmt(plan.arena.host_min_bytes)} B"
                            f" + scratch {_fmt(plan.arena.scratch_bound_bytes)} B + 10% + 1 KiB)")
    if plan.compiled:
        t.add_row("compiled arena", f"{_fmt(plan.compiled.peak_bytes)} B (static plan)")
    b = plan.budget
    t.add_row("flash", f"{_fmt(b['flash_bytes'])} / {_fmt(b['flash_budget'])} B "
                       f"({100 * b['flash_bytes'] / b['flash_budget']:.1f}%; {_fmt(b['flash_estimated_bytes'])} B estimated)")
    t.add_row("RAM", f"{_fmt(b['ram_bytes'])} / {_fmt(b['ram_budget'])} B "
                     f"({100 * b['ram_bytes'] / b['ram_budget']:.1f}%; {_fmt(b['ram_estimated_bytes'])} B estimated)")
    t.add_row("budget parts", "; ".join(f"{p['part']} {_fmt(p['flash_bytes'])}/{_fmt(p['ram_bytes'])} B {p['kind']}"
                                        for p in b["parts"]) + " (flash/RAM)")
    q = plan.quality
    if q.get("task") == "classification":
        parts = []
        if "float_accuracy" in q:
            parts.append(f"float accuracy {100 * q['float_accuracy']:.1f}%")
        if "int8_accuracy" in q:
            parts.append(f"int8 accuracy {100 * q['int8_accuracy']:.1f}%")
        if "top1_agreement" in q:
            parts.append(f"top-1 agreement {100 * q['top1_agreement']:.1f}%")
        t.add_row(f"quality ({q['samples']} held-out)", ", ".join(parts))
    elif "int8_vs_float_rmse" in q or "int8_rmse" in q:
        parts = []
        if "float_rmse" in q:
            parts.append(f"float RMSE {q['float_rmse']:.4f}")
        if "int8_rmse" in q:
            parts.append(f"int8 RMSE {q['int8_rmse']:.4f}")
        if "int8_vs_float_rmse" in q:
            parts.append(f"int8 vs float RMSE {q['int8_vs_float_rmse']:.4f} (max {q['int8_vs_float_max_abs']:.4f})")
        t.add_row(f"quality ({q['samples']} held-out)", ", ".join(parts))
    else:
        t.add_row("quality", "no held-out data (pass --data to report it)")
    out.print(t)


def default_out_dir(board: str, name_hint: str) -> Path:
    """tinygen-<board>-<model stem>, made of [A-Za-z0-9._-] only: the model's file name is user text,
    and this directory reaches PlatformIO and SCons, which expand ``$`` (and SCons runs Python in it)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{board}-{name_hint}")
    stem = re.sub(r"\.{2,}", ".", stem).strip("._-")[:100] or "model"
    return Path(f"tinygen-{stem}")


def build_project(board, model_path=None, recipe=None, data_path=None, out_dir=None, force=False, runtime=None,
                  n_vectors=32, seed=1234, epochs=None, tflm_dir=None, show_progress=True):
    """The whole of `tinygen build`: returns (plan, project dir, {path: bytes})."""
    from tinygen.common.boards import get_board
    from tinygen.codegen.plan import check_fits, make_plan
    from tinygen.intake.sources import source_from_recipe, source_from_user
    from tinygen.codegen.project import check_out_dir, write_project
    from tinygen.intake.recipes import DEFAULT_RECIPE, RECIPES
    from tinygen.codegen.render import render

    b = get_board(board)
    runtime = runtime or b["default_runtime"]
    if runtime not in b["runtimes"]:
        raise TinygenError(f"board {board} does not support --runtime {runtime}; "
                           f"choose one of: {', '.join(b['runtimes'])}")
    if model_path and recipe:
        raise TinygenError("give either --model or --recipe, not both")
    if recipe and recipe not in RECIPES:
        raise TinygenError(f"unknown recipe '{recipe}'; choose one of: {', '.join(RECIPES)}")
    if data_path and not model_path:
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
    name_hint = Path(model_path).stem if model_path else (recipe or DEFAULT_RECIPE)
    target = Path(out_dir) if out_dir else default_out_dir(board, name_hint)
    check_out_dir(target, force)  # fail before minutes of training
    if model_path:
        from tinygen.intake.loader import model_kind

        model_kind(Path(model_path))
    with _Progress(show_progress) as progress:
        if model_path:
            progress(f"loading {model_path}")
            src = source_from_user(model_path, data_path)
        else:
            progress(f"training recipe '{recipe or DEFAULT_RECIPE}'")
            src = source_from_recipe(recipe or DEFAULT_RECIPE, seed, epochs, progress)
        plan = make_plan(src, b, runtime, n_vectors=n_vectors, seed=seed, progress=progress, tflm_dir=tflm_dir)
        check_fits(plan.budget, b, runtime)
        progress("rendering the project")
        files = render(plan)
        write_project(files, target, force=force)
    return plan, target, files


@cli.command("build")
@click.option("--board", required=True, metavar="BOARD", help="Target board id (see `tinygen boards`).")
@click.option("--model", "model_path", metavar="FILE", help=".keras, .h5, SavedModel dir or int8 .tflite.")
@click.option("--recipe", metavar="NAME", help="Built-in recipe to train when no --model (default: sine).")
@click.option("--data", "data_path", metavar="FILE", help="Samples for a user model: .npz (x[, y]), .npy or .csv.")
@click.option("--out", "out_dir", metavar="DIR", help="Output project directory (default: tinygen-<board>-<model>).")
@click.option("--force", is_flag=True, help="Replace an existing tinygen project in --out.")
@click.option("--runtime", type=click.Choice(["tflm", "compiled"]), default=None,
              help="tflm (TensorFlow Lite Micro, default on real boards) or compiled (plain C, no interpreter).")
@click.option("--vectors", "n_vectors", type=click.IntRange(1, 10000), default=32, show_default=True,
              help="Reference vectors saved into the project.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=1234, show_default=True,
              help="Seed for training and vectors.")
@click.option("--epochs", type=click.IntRange(1, 10000), default=None, help="Override the recipe's epochs.")
@click.option("--tflm-dir", envvar="TINYGEN_TFLM_DIR", metavar="DIR",
              help="Build TFLM from this source tree (Arduino-library layout) instead of the registry library.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
def build_cmd(board, model_path, recipe, data_path, out_dir, force, runtime, n_vectors, seed, epochs, tflm_dir,
              as_json) -> None:
    """Train or load a model, quantize it to int8, and emit a PlatformIO project."""
    from tinygen.codegen.render import manifest

    plan, target, files = build_project(board, model_path, recipe, data_path, out_dir, force, runtime, n_vectors,
                                        seed, epochs, tflm_dir, show_progress=not as_json)
    b = plan.board
    if as_json:
        data = manifest(plan)
        data["project"] = str(target)
        data["files"] = sorted(files)
        _emit_json(data)
        return
    _summary_tables(plan)
    import shlex

    # After `cd DIR` the project is `.`: a hint that repeats DIR breaks for relative paths.
    q = shlex.quote(str(target))
    nxt = (f"tinygen run --project {q}" if b.get("emulator")
           else f"cd {q} && pio run -t upload && tinygen verify --project . --port auto")
    out.print(terminal(f"wrote {target} ({len(files)} files). Next: {nxt}"), markup=False, soft_wrap=True)


# ----------------------------------------------------------------- inspect

@cli.command("inspect")
@click.argument("model", metavar="MODEL")
@click.option("--runtime", type=click.Choice(["tflm", "compiled"]), default="tflm", show_default=True,
              help="compiled: also print the compiled runtime's static memory plan.")
@click.option("--check", is_flag=True,
              help="With --runtime compiled: compile the emitted C on this host (ASan/UBSan) and compare it with "
                   "tflite_micro; exit 5 if they differ.")
@click.option("--vectors", type=click.IntRange(1, 100_000), default=32, show_default=True,
              help="Input vectors for --check (4 extreme patterns, then seeded random).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect_cmd(model: str, runtime: str, check: bool, vectors: int, as_json: bool) -> None:
    """Ops, tensors, parameters, MACs, measured arena and board fit of an int8 .tflite."""
    from tinygen.verification import host_check

    if check and runtime != "compiled":
        raise TinygenError("--check runs the compiled runtime's C on this host; add --runtime compiled")
    if check:
        host_check.find_compiler()  # a missing compiler is named before the slow arena bisection
    from tinygen.analysis import ops as an
    from tinygen.codegen import fc_rewrite as rewrite
    from tinygen.common.boards import all_boards
    from tinygen.codegen.plan import budget
    from tinygen.analysis.reference import measure_arena
    from tinygen.tflite.int8 import check_int8
    from tinygen.tflite.model import parse_model, read_model

    p = Path(model)
    if p.exists() and p.suffix.lower() != ".tflite":
        raise TinygenError(f"inspect reads .tflite files; {p.name} is not one (convert it with "
                           f"'tinygen build --model {p}')")
    m = read_model(p)
    check_int8(m, str(p))
    an.check_tflm_ops(m, str(p))  # the arena is measured with TFLM: name its missing ops first
    a = an.analyze(m)
    with _Progress(not as_json) as progress:
        progress("measuring the TFLM arena (tflite_micro, bisection)")
        arena = measure_arena(m.raw, m, str(p))
    from tinygen.codegen import compiled as cmod
    program = cmod.lower(m)
    if runtime == "compiled":
        cmod.check_supported(program)
    # One static plan serves every board's fit check (and the table when --runtime compiled).
    compiled_plan = cmod.plan_memory(program) if program.supported else None
    cplan = compiled_plan if runtime == "compiled" else None
    tflm_ok = all(op in an.TFLM_RESOLVER_METHODS for op in a.ops)
    # What build would run under each board's TFLM library (per-channel FC rewritten to CONV_2D
    # where it computes FC per-tensor); a model build would refuse gets no tflm row.
    tflm_models = {m.raw: (m, arena)}
    fits = {}
    for bid, b in all_boards().items():
        fits[bid] = {}
        for rt in b["runtimes"]:
            if rt == "tflm" and tflm_ok:
                raw2, rw_note = rewrite.for_board(m.raw, b)
                if raw2 not in tflm_models:
                    m2 = parse_model(raw2, str(p))
                    with _Progress(not as_json) as progress:
                        progress("measuring the TFLM arena of the CONV_2D rewrite (tflite_micro, bisection)")
                        tflm_models[raw2] = (m2, measure_arena(raw2, m2, str(p)))
                m2, arena2 = tflm_models[raw2]
                if an.dense_per_channel(m2) and not b.get("tflm", {}).get("per_channel_fully_connected"):
                    continue
                fits[bid][rt] = budget(b, rt, m2, arena2, None)
                if rw_note:
                    fits[bid][rt]["rewrite"] = rw_note
            elif rt == "compiled" and compiled_plan is not None:
                fits[bid][rt] = budget(b, rt, m, arena, compiled_plan.peak_bytes)
    tensors = [{"index": t.index, "name": t.name, "shape": list(t.shape), "dtype": t.dtype,
                "scale": list(t.scale) if len(t.scale) <= 1 else f"per-channel ({len(t.scale)}, axis "
                f"{t.quantized_dimension})", "zero_point": list(t.zero_point[:1]) if t.zero_point else [],
                "constant": t.is_constant, "bytes": t.nbytes} for t in m.tensors]
    hc = None
    if check:
        with _Progress(not as_json) as progress:
            progress(f"host check: compiling the emitted C (ASan/UBSan), running {vectors} vectors vs tflite_micro")
            hc = host_check.check_model(m, vectors=vectors, name=str(p))
    if as_json:
        data = {"model": str(p), "sha256": m.sha256, "ops": a.ops, "op_counts": a.op_counts, "params": a.params,
                "macs": a.macs, "model_bytes": a.model_bytes, "arena": arena.as_dict(), "tensors": tensors,
                "fits": fits}
        if cplan is not None:
            data["compiled_memory_plan"] = {"peak_bytes": cplan.peak_bytes, "tensors": cmod.memory_table(cplan)}
        if hc is not None:
            data["host_check"] = hc.as_dict()
        _emit_json(data)
        _host_check_verdict(hc, as_json)
        return
    t = Table(title=Text(terminal(f"{p.name}: {len(m.operators)} ops, {_fmt(a.params)} parameters, "
                                  f"{_fmt(a.macs)} MACs, "
                                  f"{_fmt(a.model_bytes)} bytes, sha256 {m.sha256[:12]}…")))
    for col in ("#", "op", "output shape", "MACs"):
        t.add_column(col)
    for layer in a.layers:
        t.add_row(str(layer.index), Text(terminal(layer.opcode)), str(list(layer.output_shape)), _fmt(layer.macs))
    out.print(t)
    tt = Table(title="tensors")
    for col in ("#", "name", "shape", "dtype", "scale", "zero point", "const", "bytes"):
        tt.add_column(col)
    for d in tensors:
        scale = d["scale"] if isinstance(d["scale"], str) else (f"{d['scale'][0]:.6g}" if d["scale"] else "-")
        # Tensor names come from the model file: no control characters, no rich markup.
        tt.add_row(str(d["index"]), Text(terminal(d["name"])[:48]), str(d["shape"]), d["dtype"], scale,
                   str(d["zero_point"][0]) if d["zero_point"] else "-", "yes" if d["constant"] else "",
                   _fmt(d["bytes"]))
    out.print(tt)
    out.print(f"TFLM arena: {_fmt(arena.recommended_bytes)} B recommended (host minimum {_fmt(arena.host_min_bytes)} B,"
              f" scratch bound {_fmt(arena.scratch_bound_bytes)} B, +10% +1 KiB)")
    if cplan is not None:
        ct = Table(title=f"compiled runtime memory plan: peak {_fmt(cplan.peak_bytes)} B "
                         f"(TFLM arena measured: {_fmt(arena.host_min_bytes)} B)")
        rows = cmod.memory_table(cplan)
        for col in rows[0].keys() if rows else ("tensor",):
            ct.add_column(str(col))
        for r in rows:
            ct.add_row(*[Text(terminal(v)) for v in r.values()])
        out.print(ct)
    ft = Table(title="fits each board? (flash / RAM estimate vs budget)")
    for col in ("board", "runtime", "flash", "RAM", "fits"):
        ft.add_column(col)
    for bid, per in fits.items():
        for rt, bud in per.items():
            ft.add_row(bid, rt + (" (FC rewritten to CONV_2D)" if bud.get("rewrite") else ""),
                       f"{_fmt(bud['flash_bytes'])} / {_fmt(bud['flash_budget'])}",
                       f"{_fmt(bud['ram_bytes'])} / {_fmt(bud['ram_budget'])}", "yes" if bud["fits"] else "NO")
    out.print(ft)
    _host_check_verdict(hc, as_json)


def _host_check_verdict(hc, as_json: bool) -> None:
    """Passed: one line on stdout (text mode). Failed: one error line on stderr and exit 5."""
    from tinygen.common.errors import VerificationFailed

    if hc is None:
        return
    if not hc.matches:
        raise VerificationFailed(hc.verdict())
    if not as_json:
        out.print(Text(terminal(hc.verdict())), soft_wrap=True)


def _register_optional_commands() -> None:
    """Commands living in their own modules (flash/verify/run/doctor), added when present."""
    import importlib

    for mod in ("tinygen.cli.device",):
        try:
            importlib.import_module(mod).register(cli)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise


_register_optional_commands()


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="tinygen", standalone_mode=False)
    except TinygenError as exc:
        # Messages quote user text (file and tensor names): never raw control characters on the terminal.
        err.print(f"error: {terminal(exc)}", markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(130)
    except click.ClickException as exc:
        err.print(f"error: {terminal(exc.format_message())} (see 'tinygen --help')", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("error: interrupted", markup=False)
        sys.exit(130)
    except Exception as exc:  # a bug: still one line, traceback on request
        if os.environ.get("TINYGEN_DEBUG"):
            raise
        err.print(f"error: internal error: {type(exc).__name__}: {terminal(exc)} "
                  "(set TINYGEN_DEBUG=1 for the traceback)",
                  markup=False)
        sys.exit(70)


if __name__ == "__main__":
    main()
