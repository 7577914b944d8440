"""The ``tinygen`` command line.

One function per command (``<noun>_cmd``); each parses its arguments, calls
:mod:`tinygen.api` and prints the result (:mod:`tinygen.cli.output`).  The API
raises :class:`TinygenError` for anything the user can fix; :func:`main` turns
those into one line on stderr and the error's exit code, never a traceback
(set TINYGEN_DEBUG=1 to see one for unexpected errors).  The device commands
live in :mod:`tinygen.cli.device`.
"""

from __future__ import annotations

import os
import sys

import click
from rich.table import Table
from rich.text import Text

from tinygen import __version__, api
from tinygen.cli import bench, device
from tinygen.cli import cache as cache_cli
from tinygen.cli.options import build_arguments, build_options, print_compression, print_notes
from tinygen.cli.output import StatusLine, err, grouped, out, print_build_summary, print_json
from tinygen.common.errors import TinygenError
from tinygen.common.escape import terminal


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
        print_json([b.as_json() for b in boards.values()])
        return
    t = Table(title="tinygen boards")
    for col in ("board", "MCU", "flash", "RAM", "PlatformIO (platform / board / framework)", "runtimes",
                "TFLM library"):
        t.add_column(col)
    for b in boards.values():
        pio = b.platformio
        t.add_row(b.id + (" (emulated)" if is_emulated(b) else ""), b.mcu, grouped(b.flash_bytes),
                  grouped(b.ram_bytes),
                  f"{pio.platform} / {pio.board} / {pio.framework or '(bare metal)'}",
                  ", ".join(b.runtimes),
                  ", ".join(b.tflm.lib_deps)
                  or ("(TINYGEN_TFLM_DIR tree)" if "tflm" in b.runtimes else "-"))
    out.print(t)


# ----------------------------------------------------------------- build

@cli.command("build")
@click.option("--board", required=True, metavar="BOARD", help="Target board id (see `tinygen boards`).")
@build_options
@click.option("--vectors", "n_vectors", type=click.IntRange(1, 10000), default=32, show_default=True,
              help="Reference vectors saved into the project.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=1234, show_default=True,
              help="Seed for training and vectors.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
def build_cmd(board, n_vectors, seed, as_json, **options) -> None:
    """Train or load a model, quantize it to int8, and emit a PlatformIO project."""
    import shlex

    kwargs = build_arguments(options)
    with StatusLine(not as_json) as progress:
        project = api.build(kwargs.pop("model"), board=board, vectors=n_vectors, seed=seed, progress=progress,
                            **kwargs)
    if as_json:
        data = dict(project.manifest)
        data["project"] = str(project.path)
        data["files"] = sorted(project.files)
        data["notes"] = project.notes
        data["cache"] = project.cache
        if project.compression is not None:
            data["compression"] = project.compression
        print_json(data)
        return
    print_build_summary(project.plan, project.cache, project.path)
    if project.compression is not None:
        print_compression(project.compression)
    print_notes(project, as_json)
    # After `cd DIR` the project is `.`: a hint that repeats DIR breaks for relative paths.
    q = shlex.quote(str(project.path))
    nxt = (f"tinygen run --project {q}" if project.emulated
           else f"cd {q} && pio run -t upload && tinygen verify --project . --port auto")
    out.print(terminal(f"wrote {project.path} ({len(project.files)} files). Next: {nxt}"), markup=False,
              soft_wrap=True)


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
@click.option("--frontend", "frontend_path", metavar="FILE.json",
              help="MODEL's front end (raw int16 samples -> its input, docs/frontend.md; a project's tinygen.json "
                   "names it too): its flash and RAM, counted in every board's fit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def inspect_cmd(model: str, runtime: str, check: bool, vectors: int, frontend_path: str | None,
                as_json: bool) -> None:
    """Ops, tensors, parameters, MACs, measured arena and board fit of an int8 .tflite."""
    with StatusLine(not as_json) as progress:
        info = api.inspect(model, runtime, check=check, vectors=vectors, progress=progress, frontend=frontend_path)
    if as_json:
        print_json(info.to_dict())
    else:
        print_model_info(info)
    _host_check_verdict(info.host_check, as_json)


def print_model_info(info: api.ModelInfo) -> None:
    a = info.analysis
    t = Table(title=Text(terminal(f"{info.path.name}: {len(info.model.operators)} ops, {grouped(a.params)} "
                                  f"parameters, {grouped(a.macs)} MACs, "
                                  f"{grouped(a.model_bytes)} bytes, sha256 {info.sha256[:12]}…")))
    for col in ("#", "op", "output shape", "MACs"):
        t.add_column(col)
    for layer in a.layers:
        t.add_row(str(layer.index), Text(terminal(layer.opcode)), str(list(layer.output_shape)), grouped(layer.macs))
    out.print(t)
    tt = Table(title="tensors")
    for col in ("#", "name", "shape", "dtype", "scale", "zero point", "const", "bytes"):
        tt.add_column(col)
    for d in info.tensors:
        scale = d["scale"] if isinstance(d["scale"], str) else (f"{d['scale'][0]:.6g}" if d["scale"] else "-")
        # Tensor names come from the model file: no control characters, no rich markup.
        tt.add_row(str(d["index"]), Text(terminal(d["name"])[:48]), str(d["shape"]), d["dtype"], scale,
                   str(d["zero_point"][0]) if d["zero_point"] else "-", "yes" if d["constant"] else "",
                   grouped(d["bytes"]))
    out.print(tt)
    arena = info.arena
    out.print(f"TFLM arena: {grouped(arena.recommended_bytes)} B recommended (host minimum "
              f"{grouped(arena.host_min_bytes)} B, scratch bound {grouped(arena.scratch_bound_bytes)} B, +10% +1 KiB)")
    if info.compiled_memory_plan is not None:
        ct = Table(title=f"compiled runtime memory plan: peak {grouped(info.compiled_memory_plan['peak_bytes'])} B "
                         f"(TFLM arena measured: {grouped(arena.host_min_bytes)} B)")
        rows = info.compiled_memory_plan["tensors"]
        for col in rows[0].keys() if rows else ("tensor",):
            ct.add_column(str(col))
        for r in rows:
            ct.add_row(*[Text(terminal(v)) for v in r.values()])
        out.print(ct)
    fe = info.frontend_budget
    if fe is not None:  # raw samples in: the front end's share, the same on every board (docs/frontend.md)
        out.print(f"front end ({info.frontend['kind']}, raw samples in): flash {grouped(fe['flash_bytes'])} B, "
                  f"RAM {grouped(fe['ram_bytes'])} B (" + "; ".join(
                      f"{p['part']} {grouped(p['flash_bytes'])}/{grouped(p['ram_bytes'])} B {p['kind']}"
                      for p in info.frontend_parts) + "; flash/RAM)")
    ft = Table(title="fits each board? (flash / RAM estimate vs budget" +
                     ("; model + front end" if fe is not None else "") + ")")
    for col in ("board", "runtime", "flash", "RAM", "fits"):
        ft.add_column(col)
    for bid, per in info.fits.items():
        for rt, bud in per.items():
            ft.add_row(bid, rt + (" (FC rewritten to CONV_2D)" if bud.get("rewrite") else ""),
                       f"{grouped(bud['flash_bytes'])} / {grouped(bud['flash_budget'])}",
                       f"{grouped(bud['ram_bytes'])} / {grouped(bud['ram_budget'])}", "yes" if bud["fits"] else "NO")
    out.print(ft)


def _host_check_verdict(hc, as_json: bool) -> None:
    """Passed: one line on stdout (text mode). Failed: one error line on stderr and exit 5."""
    from tinygen.common.errors import VerificationFailed

    if hc is None:
        return
    if not hc.matches:
        raise VerificationFailed(hc.verdict())
    if not as_json:
        out.print(Text(terminal(hc.verdict())), soft_wrap=True)


# ----------------------------------------------------------------- doctor, flash, verify, run

device.register(cli)
bench.register(cli)
cache_cli.register(cli)


def main(argv: list[str] | None = None) -> None:
    from tinygen.common import child

    try:
        with child.warm():  # one worker for the whole command: build, then verify's reference
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
